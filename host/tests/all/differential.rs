//! The server and `replay` are one decision procedure: real tickets sent
//! to `escalator serve --manual-clock` over HTTP, event by event at their
//! own timestamps, and replayed offline, end with the same tier, first
//! escalation time, reasons and assignee, ticket by ticket.
//!
//! Replay treats each ticket alone with the roster as given, so on the
//! server each ticket gets a tenant of its own with the same roster: one
//! ticket's load does not move another's routing in either.

use crate::serve::Escalator;
use crate::support::shared_cases;
use escalator::matrix::Matrix;
use escalator::model::{self, Event};
use escalator::replay::{self, Format};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// What one ticket came to.
#[derive(Debug, Clone, PartialEq)]
struct End {
    tier: Option<model::Tier>,
    escalated_after_s: Option<i64>,
    reasons: Vec<String>,
    assignee: Option<String>,
    queue: Option<String>,
}

/// The same as the server's decisions tell it.
fn served(ticket: &Value, created: chrono::DateTime<chrono::Utc>) -> End {
    let decisions = ticket["decisions"].as_array().unwrap();
    let first = decisions.iter().find(|d| d["escalated"] == true).map(|d| {
        d["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    });
    let mut reasons = Vec::new();
    for d in decisions {
        let data = &d["data"];
        let Some(keys) = data["new_keys"].as_array() else {
            continue;
        };
        let escalating: BTreeSet<&str> = data["signals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "escalate")
            .filter_map(|s| s["key"].as_str())
            .collect();
        reasons.extend(
            keys.iter()
                .filter_map(|k| k.as_str())
                .filter(|k| escalating.contains(k))
                .map(String::from),
        );
    }
    End {
        tier: serde_json::from_value(ticket["tier"].clone()).unwrap(),
        escalated_after_s: first.map(|f| (f - created).num_seconds()),
        reasons,
        assignee: ticket["assignee"].as_str().map(String::from),
        queue: ticket["queue"].as_str().map(String::from),
    }
}

#[test]
fn the_server_and_replay_decide_the_same_on_220_real_tickets() {
    let mut all = shared_cases("twitter_care_dev.jsonl", Format::Twitter, 120);
    all.extend(shared_cases(
        "servicenow_incidents.csv",
        Format::Servicenow,
        100,
    ));
    let roster_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/roster.json");
    let roster_json: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&roster_path).unwrap()).unwrap();
    let roster: Vec<model::Agent> = roster_json
        .iter()
        .map(|a| serde_json::from_value(a.clone()).unwrap())
        .collect();

    // Offline.
    let set =
        replay::plugin_set(crate::support::runtime(), &Matrix::default_matrix(), None).unwrap();
    let targets = Matrix::default_matrix().response_targets();
    let offline = replay::Offline {
        runtime: crate::support::runtime(),
        set: &set,
        roster: &roster,
        targets: &targets,
    };
    let replayed = replay::replay_batch(&offline, &all);

    // Served: every ticket's events in one timeline, at their own times.
    let mut timeline: Vec<(chrono::DateTime<chrono::Utc>, usize, Option<Event>)> = Vec::new();
    let mut firsts = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let (first, events) = replay::events(&case.ticket);
        timeline.push((first.created_at, i, None));
        timeline.extend(events.into_iter().map(|(at, e)| (at, i, Some(e))));
        firsts.push(first);
    }
    timeline.sort_by_key(|(at, _, _)| *at);
    let start = timeline[0].0 - chrono::Duration::minutes(1);
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        &dir.path().join("data"),
        &start.to_rfc3339(),
        Some(
            "[limits]\nevents-per-second = 1000000\nevent-burst = 1000000\n\
             work-ms-per-second = 1000000\nwork-burst-ms = 1000000\n",
        ),
    );
    let admin = server.admin();
    let tenants: Vec<_> = (0..all.len())
        .map(|i| {
            let t = server.tenant(&format!("d{i}"));
            for a in &roster_json {
                t.ok(
                    "PUT",
                    &format!("/v1/agents/{}", a["id"].as_str().unwrap()),
                    Some(a.clone()),
                );
            }
            t
        })
        .collect();
    let mut clock = start;
    for (at, i, event) in &timeline {
        if *at > clock {
            admin.ok("POST", "/v1/clock", Some(json!({"to": at})));
            clock = *at;
        }
        match event {
            None => {
                let body = serde_json::to_value(&firsts[*i]).unwrap();
                tenants[*i].ok("POST", "/v1/tickets", Some(body));
            }
            Some(e) => {
                let path = format!("/v1/tickets/{}/events", firsts[*i].id);
                tenants[*i].ok("POST", &path, Some(serde_json::to_value(e).unwrap()));
            }
        }
    }
    // Whatever is still due (fallbacks, wake-ups) fires.
    admin.ok(
        "POST",
        "/v1/clock",
        Some(json!({"to": clock + chrono::Duration::days(30)})),
    );

    let mut differ = Vec::new();
    let mut escalated = 0;
    for (i, r) in replayed.iter().enumerate() {
        assert_eq!(r.errors, 0, "{}: plugin errors in replay", r.id);
        let expect = End {
            tier: r.tier,
            escalated_after_s: r.minutes_to_escalation.map(|m| (m * 60.0).round() as i64),
            reasons: r.reasons.clone(),
            assignee: r.assignee.clone(),
            queue: r.queue.clone(),
        };
        let ticket = tenants[i].ok("GET", &format!("/v1/tickets/{}", r.id), None);
        let got = served(&ticket, firsts[i].created_at);
        escalated += usize::from(expect.tier.is_some());
        if got != expect {
            differ.push(format!("{}:\n  replay {expect:?}\n  server {got:?}", r.id));
        }
    }
    eprintln!(
        "differential: {} tickets, {escalated} escalated in both, {} differ",
        replayed.len(),
        differ.len()
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The comparison is not trivially empty: tickets escalate and route.
    assert!(escalated >= 20, "{escalated} escalated");
}
