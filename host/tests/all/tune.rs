//! `escalator tune`: SLA targets searched by replaying the earlier part of
//! the ServiceNow incidents, reported on the later part, written as a
//! plugin directory that replays.

use crate::support::{cli as escalator, text};
use serde_json::Value;
use std::path::Path;

#[test]
fn sla_targets_are_searched_on_earlier_incidents_and_reported_on_later_ones() {
    let csv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/servicenow_incidents.csv");
    let dir = tempfile::tempdir().unwrap();
    let (out, json) = (dir.path().join("tuned"), dir.path().join("tune.json"));
    let run = escalator(&[
        "tune",
        "--tickets",
        csv.to_str().unwrap(),
        "--limit",
        "450",
        "--vary",
        "sla.targets.low.resolution=60,1440,100000",
        "--vary",
        "sla.targets.medium.resolution=60,7200,100000",
        "--out",
        out.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let t = text(&run);
    assert_eq!(run.status.code(), Some(0), "{t}");
    assert!(
        t.contains("searched on 300 tickets"),
        "two thirds by time: {t}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["objective"], "sla", "ServiceNow has SLA outcomes: {r}");
    assert_eq!(r["held_out"]["tickets"], 150);
    assert_eq!(r["held_out_before"]["tickets"], 150);
    // Started where the plugin is (low is not timed: the first value),
    // and never ends worse on the part it searched.
    assert_eq!(r["started_from"]["sla.targets.medium.resolution"], 7200.0);
    let tried = r["tried"].as_array().unwrap();
    assert!(tried.len() >= 5, "each knob's other values at least: {r}");
    let best = tried[0]["score"]["objective"].as_f64().unwrap();
    let start = tried
        .iter()
        .find(|x| x["values"] == r["started_from"])
        .unwrap()["score"]["objective"]
        .as_f64()
        .unwrap();
    assert!(best >= start, "{r}");
    assert_eq!(tried[0]["values"], r["chosen"]);

    // The tuned plugin: the chosen values in its config, the built-in
    // component, and a set that replays.
    let manifest = std::fs::read_to_string(out.join("sla/plugin.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&manifest).unwrap();
    assert_eq!(doc["component"].as_str(), Some("builtin:sla"), "{manifest}");
    let chosen_low = r["chosen"]["sla.targets.low.resolution"].as_f64().unwrap();
    assert_eq!(
        doc["config"]["targets"]["low"]["resolution"].as_integer(),
        Some(chosen_low as i64),
        "{manifest}"
    );
    let replay = escalator(&[
        "replay",
        "--tickets",
        csv.to_str().unwrap(),
        "--limit",
        "50",
        "--plugins",
        out.to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(0), "{}", text(&replay));
}
