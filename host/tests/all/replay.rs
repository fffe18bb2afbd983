//! Replay: hand-computed reports on small fixtures, and slices of the three
//! real data sets.

use crate::support::runtime;
use escalator::matrix::Matrix;
use escalator::model::Tier;
use escalator::replay::{self, Aggregate, Format, Report};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn shared(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    assert!(
        p.exists(),
        "{}: the shared data sets sit beside the repository",
        p.display()
    );
    p
}

/// A replay with no roster and the default matrix's targets.
fn offline(set: &escalator::pipeline::PluginSet) -> replay::Offline<'_> {
    static TARGETS: std::sync::OnceLock<escalator::matrix::ResponseTargets> =
        std::sync::OnceLock::new();
    replay::Offline {
        runtime: runtime(),
        set,
        roster: &[],
        targets: TARGETS.get_or_init(|| Matrix::default_matrix().response_targets()),
    }
}

fn run(path: &Path, format: Format, plugins: Option<&Path>, limit: Option<usize>) -> Report {
    let set = replay::plugin_set(runtime(), &Matrix::default_matrix(), plugins).unwrap();
    let mut agg = Aggregate::default();
    replay::read(path, format, limit, 64, |cases| {
        agg.add(&replay::replay_batch(&offline(&set), &cases));
        Ok(())
    })
    .unwrap();
    agg.report(1.0)
}

#[test]
fn a_labelled_replay_reports_hand_computed_tiers_agreement_and_confusion() {
    let r = run(&data("replay-small.jsonl"), Format::Escalator, None, None);
    assert_eq!(r.tickets, 6);
    assert_eq!(r.plugin_errors, 0);
    let tiers: Vec<(&str, usize)> = r.tiers.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        tiers,
        [
            ("critical", 1),
            ("high", 2),
            ("low", 0),
            ("medium", 1),
            ("none", 2)
        ],
        "{:?}",
        r.over_escalated
    );
    assert!((r.escalation_rate - 4.0 / 6.0).abs() < 1e-9);
    assert_eq!(r.agreement, Some(0.5));
    let c = |k: &str| {
        let s = &r.classes[k];
        (s.support, s.predicted, s.correct, s.precision, s.recall)
    };
    assert_eq!(c("critical"), (2, 1, 1, 1.0, 0.5));
    assert_eq!(c("high"), (1, 2, 1, 0.5, 1.0));
    assert_eq!(c("medium"), (1, 1, 0, 0.0, 0.0), "{:?}", r.confusion);
    assert_eq!(c("low"), (2, 2, 1, 0.5, 0.5));
    assert_eq!(r.confusion["critical"]["high"], 1);
    assert_eq!(r.confusion["medium"]["low"], 1);
    let ids = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|x| x["ticket"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&r.over_escalated), ["R-6"]);
    assert_eq!(ids(&r.under_escalated), ["R-3", "R-4"]);
    // Escalations happen at creation: zero minutes.
    assert_eq!(r.minutes_to_escalation["max"], 0.0);
}

#[test]
fn servicenow_sla_breaches_are_counted_against_made_sla() {
    let r = run(
        &data("servicenow-small.csv"),
        Format::Servicenow,
        None,
        None,
    );
    let sla = r.sla.unwrap();
    // Incident 1 (critical) waited 2 h for a first reply: flagged, and it
    // missed its SLA. Incident 3 (low: no target) missed it unflagged.
    assert_eq!(sla["tickets"], 3.0);
    assert_eq!(sla["missed_sla"], 2.0);
    assert_eq!(sla["flagged_breach"], 1.0);
    assert_eq!(sla["flagged_and_missed"], 1.0);
    assert_eq!((sla["precision"], sla["recall"]), (1.0, 0.5));
}

#[test]
fn the_sla_clock_follows_the_tickets_own_timestamps() {
    // A critical incident answered after 2 h: the breach fired at 30 min,
    // on the virtual clock, with the 50 % and 75 % warnings before it.
    let mut out = Vec::new();
    let set = replay::plugin_set(runtime(), &Matrix::default_matrix(), None).unwrap();
    replay::read(
        &data("servicenow-small.csv"),
        Format::Servicenow,
        Some(1),
        8,
        |cases| {
            out = replay::replay_batch(&offline(&set), &cases);
            Ok(())
        },
    )
    .unwrap();
    let r = &out[0];
    assert!(r.sla_breach);
    assert_eq!(r.tier, Some(Tier::Critical));
    assert_eq!(r.minutes_to_escalation, Some(30.0));
    // Created, 15 min, 22.5 min, 30 min, the reply, the resolution, and
    // the resolution clock's own thresholds before it.
    assert!(r.evaluations >= 5, "{}", r.evaluations);
}

#[test]
fn the_three_real_data_sets_replay_without_a_plugin_error() {
    let twitter = run(
        &shared("twitter_care_dev.jsonl"),
        Format::Twitter,
        None,
        Some(60),
    );
    assert_eq!((twitter.tickets, twitter.plugin_errors), (60, 0));
    assert!(twitter.evaluations >= 60);

    let hadoop_set = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/replay/hadoop");
    let hadoop = run(
        &shared("hadoop_bugs_2020_2022.csv"),
        Format::Hadoop,
        Some(&hadoop_set),
        Some(120),
    );
    assert_eq!(
        (hadoop.tickets, hadoop.labelled, hadoop.plugin_errors),
        (120, 120, 0)
    );
    let support: usize = hadoop.classes.values().map(|c| c.support).sum();
    assert_eq!(support, 120);

    let snow = run(
        &shared("servicenow_incidents.csv"),
        Format::Servicenow,
        None,
        Some(150),
    );
    assert_eq!((snow.tickets, snow.plugin_errors), (150, 0));
    let sla = snow.sla.unwrap();
    assert_eq!(sla["tickets"], 150.0);
    assert!(sla["flagged_and_missed"] <= sla["flagged_breach"].min(sla["missed_sla"]));

    // Deterministic: the same input gives the same report.
    let again = run(
        &shared("servicenow_incidents.csv"),
        Format::Servicenow,
        None,
        Some(150),
    );
    assert_eq!(
        serde_json::to_value(&snow.tiers).unwrap(),
        serde_json::to_value(&again.tiers).unwrap()
    );
    assert_eq!(snow.evaluations, again.evaluations);
    assert_eq!(snow.top_reasons, again.top_reasons);
}

#[test]
fn formats_are_detected_from_the_first_line() {
    assert_eq!(
        Format::detect(&data("replay-small.jsonl")).unwrap(),
        Format::Escalator
    );
    assert_eq!(
        Format::detect(&data("servicenow-small.csv")).unwrap(),
        Format::Servicenow
    );
    assert_eq!(
        Format::detect(&shared("hadoop_bugs_2020_2022.csv")).unwrap(),
        Format::Hadoop
    );
    assert_eq!(
        Format::detect(&shared("twitter_care_dev.jsonl")).unwrap(),
        Format::Twitter
    );
}

#[test]
fn a_call_that_misses_its_wall_clock_deadline_offline_is_made_again_and_counted() {
    // A trigger that loops with fuel for minutes and a 1 ms deadline: every
    // call misses the deadline, whatever the machine's load. Offline, each
    // is made again (4 times) before it counts as an error, and the report
    // says so; two runs give the same report.
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugins/hostile");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(
        plugin.join("plugin.toml"),
        "name = \"hostile\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n\
         [limits]\nfuel = 100_000_000_000\ntimeout-ms = 1\n",
    )
    .unwrap();
    std::fs::write(
        plugin.join("hostile.wasm"),
        crate::support::guest_wasm("hostile"),
    )
    .unwrap();
    let tickets = dir.path().join("tickets.jsonl");
    let line = |id: &str, subject: &str| {
        serde_json::json!({"id": id, "subject": subject, "created_at": "2026-11-27T12:00:00Z",
            "messages": [{"author": "customer", "body": "hello", "sent_at": "2026-11-27T12:00:00Z"}]})
        .to_string()
    };
    std::fs::write(
        &tickets,
        format!("{}\n{}\n", line("L-1", "loop"), line("L-2", "loop")),
    )
    .unwrap();
    let first = run(
        &tickets,
        Format::Escalator,
        Some(&dir.path().join("plugins")),
        None,
    );
    assert!(first.plugin_errors >= 2, "{first:?}");
    assert_eq!(
        first.deadline_retries,
        first.plugin_errors * escalator::pipeline::OFFLINE_RETRIES as usize,
        "{first:?}"
    );
    let again = run(
        &tickets,
        Format::Escalator,
        Some(&dir.path().join("plugins")),
        None,
    );
    assert_eq!(
        (again.plugin_errors, again.deadline_retries, &again.tiers),
        (first.plugin_errors, first.deadline_retries, &first.tiers)
    );
}
