//! The default plugins against the real server do what the playbook says:
//! low tickets stay with the AI, the matrix's team owns a ticket, a
//! critical ticket reaches someone available now, an escalated tier's clock
//! starts at the escalation, duplicates change nothing, and the dashboard
//! counts the tickets nobody claimed. Each test drives `escalator serve`
//! on a manual clock with the example roster.

use crate::serve::{Api, Escalator, LOOPBACK_RECEIVERS};
use serde_json::{Value, json};
use std::path::Path;

const T0: &str = "2026-11-27T12:00:00Z";

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/tickets")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn start() -> (tempfile::TempDir, Escalator, Api) {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, Some(LOOPBACK_RECEIVERS));
    let acme = server.tenant("acme");
    acme.roster();
    (dir, server, acme)
}

/// A ticket of `category` with one customer message, created at `T0`.
fn ticket(id: &str, category: &str, body: &str) -> Value {
    json!({
        "id": id, "subject": body, "category": category, "status": "open",
        "created_at": T0,
        "messages": [{"id": format!("{id}-1"), "author": "customer", "body": body, "sent_at": T0}],
    })
}

fn set_status(api: &Api, agent: &str, status: &str) -> Value {
    api.ok(
        "POST",
        &format!("/v1/agents/{agent}/status"),
        Some(json!({"status": status})),
    )
}

/// Every signal key acted on, with the time of the decision that acted.
fn fired(api: &Api, ticket: &str) -> Vec<(String, String)> {
    let t = api.ok("GET", &format!("/v1/tickets/{ticket}"), None);
    t["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            let at = d["at"].as_str().unwrap().to_string();
            d["data"]["new_keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |k| (at.clone(), k.as_str().unwrap().to_string()))
        })
        .collect()
}

fn deliveries(api: &Api, ticket: &str) -> Vec<Value> {
    api.ok("GET", &format!("/v1/deliveries?ticket={ticket}"), None)
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_password_reset_answered_by_the_ai_never_escalates_on_time_alone() {
    let (_dir, server, acme) = start();
    let out = acme.ok("POST", "/v1/tickets", Some(example("password-reset.json")));
    assert_eq!(out["tier"], Value::Null, "{out}");
    // Three days open, the AI's answer the only one.
    for _ in 0..6 {
        server.advance(12 * 60);
    }
    let t = acme.ok("GET", "/v1/tickets/T-1002", None);
    assert_eq!(t["tier"], Value::Null, "{}", t["history"]);
    assert!(
        fired(&acme, "T-1002").is_empty(),
        "{:?}",
        fired(&acme, "T-1002")
    );
    assert!(deliveries(&acme, "T-1002").is_empty());
    // Until the customer asks for a human.
    let asked = acme.ok(
        "POST",
        "/v1/tickets/T-1002/events",
        Some(json!({"type": "message", "author": "customer",
                    "body": "That did not work. Can I talk to a human please?"})),
    );
    assert_eq!(asked["escalated"], true, "{asked}");
}

#[test]
fn routing_follows_the_matrix_team_not_a_skill_named_like_the_category() {
    let (_dir, _server, acme) = start();
    // bug and integration belong to the technical team in the matrix; no
    // agent has a skill of either name. cy is in a meeting.
    for (id, category) in [("B-1", "bug"), ("I-1", "integration")] {
        let out = acme.ok(
            "POST",
            "/v1/tickets",
            Some(ticket(
                id,
                category,
                "The export still fails with error 500.",
            )),
        );
        assert!(out["escalated"] == true, "{out}");
        assert_eq!(out["assignee"], "dee", "{category}: {out}");
        let t = acme.ok("GET", &format!("/v1/tickets/{id}"), None);
        let fallback: Vec<Value> = t["escalation"]["routing"]["fallback"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["target"].clone())
            .collect();
        assert!(
            !fallback.iter().any(|f| f.to_string().contains("lee")),
            "the billing lead is not on a technical ticket's path: {fallback:?}"
        );
    }
}

#[test]
fn a_critical_ticket_nobody_of_its_team_can_take_reaches_someone_available_at_once() {
    let (_dir, _server, acme) = start();
    // Nobody is on the engineering team; billing is away, the leads out.
    for (agent, status) in [
        ("ana", "away"),
        ("bo", "away"),
        ("lee", "out-of-office"),
        ("tam", "out-of-office"),
    ] {
        set_status(&acme, agent, status);
    }
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket("O-1", "outage", "Production is down for everyone.")),
    );
    assert_eq!(out["tier"], "critical", "{out}");
    assert_eq!(out["assignee"], "dee", "the one agent available: {out}");
    let now: Vec<Value> = deliveries(&acme, "O-1")
        .into_iter()
        .filter(|d| d["recipient"] == "dee" && d["channel"] == "slack")
        .collect();
    assert_eq!(now.len(), 1, "dee is paged on Slack at minute 0");
    // No Slack or e-mail goes to a lead who is out.
    assert!(
        deliveries(&acme, "O-1")
            .iter()
            .all(|d| d["channel"] == "in-app"
                || (d["recipient"] != "lee" && d["recipient"] != "tam")),
        "{:?}",
        deliveries(&acme, "O-1")
    );
}

#[test]
fn a_queued_ticket_is_offered_to_the_agent_who_comes_back() {
    let (_dir, _server, acme) = start();
    for (agent, status) in [("ana", "away"), ("bo", "away"), ("lee", "out-of-office")] {
        set_status(&acme, agent, status);
    }
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket(
            "R-1",
            "refund",
            "I was charged twice, please refund.",
        )),
    );
    assert_eq!(out["tier"], "high", "{out}");
    assert_eq!(out["assignee"], Value::Null, "{out}");
    assert!(out["queue"].is_string(), "{out}");
    let back = set_status(&acme, "ana", "available");
    assert_eq!(back["rerouted"], json!(["R-1"]), "{back}");
    let t = acme.ok("GET", "/v1/tickets/R-1", None);
    assert_eq!(t["assignee"], "ana", "{}", t["history"]);
    let feed = acme.ok("GET", "/v1/agents/ana/feed", None);
    assert!(
        feed.as_array().unwrap().iter().any(|i| i["title"]
            .as_str()
            .unwrap()
            .contains("ana is available again")),
        "{feed}"
    );
}

#[test]
fn escalating_to_critical_starts_the_critical_response_clock_at_the_escalation() {
    let (_dir, server, acme) = start();
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket("C-1", "technical", "The sync keeps failing.")),
    );
    assert_eq!(out["tier"], "medium", "{out}");
    server.advance(5 * 60);
    let out = acme.ok(
        "POST",
        "/v1/tickets/C-1/events",
        Some(json!({"type": "message", "author": "customer",
                    "body": "Five hours and nothing. My lawyer will hear about this."})),
    );
    assert_eq!(out["tier"], "critical", "{out}");
    let critical = |acme: &Api| -> Vec<(String, String)> {
        fired(acme, "C-1")
            .into_iter()
            .filter(|(_, k)| k.starts_with("sla:first-reply") && k.contains(":critical:"))
            .collect()
    };
    assert!(critical(&acme).is_empty(), "{:?}", fired(&acme, "C-1"));
    server.advance(15);
    assert_eq!(
        critical(&acme),
        [(
            "2026-11-27T17:15:00.000Z".to_string(),
            "sla:first-reply:cycle-0:critical:50".to_string()
        )],
        "the 50% warning 15 minutes after the escalation"
    );
    server.advance(15);
    let keys: Vec<String> = critical(&acme).into_iter().map(|(_, k)| k).collect();
    assert!(
        keys.contains(&"sla:first-reply:cycle-0:critical:breach".to_string()),
        "{keys:?}"
    );
}

#[test]
fn a_message_with_a_known_source_id_and_a_second_claim_change_nothing() {
    let (_dir, server, acme) = start();
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket("D-1", "billing", "I was charged twice.")),
    );
    let message = json!({"type": "message", "author": "customer", "id": "desk-msg-2",
                         "body": "Any news on my refund?"});
    let first = acme.ok("POST", "/v1/tickets/D-1/events", Some(message.clone()));
    assert!(first.get("duplicate").is_none(), "{first}");
    let again = acme.ok("POST", "/v1/tickets/D-1/events", Some(message));
    assert!(again["duplicate"].is_string(), "{again}");
    let t = acme.ok("GET", "/v1/tickets/D-1", None);
    let from_customer = t["ticket"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["author"] == "customer")
        .count();
    assert_eq!(from_customer, 2, "{}", t["ticket"]["messages"]);
    assert_eq!(
        t["events"].as_array().unwrap().len(),
        2,
        "one stored event each"
    );

    let claim = json!({"type": "claim", "agent": "bo"});
    acme.ok("POST", "/v1/tickets/D-1/events", Some(claim.clone()));
    let steps = |acme: &Api| {
        acme.ok("GET", "/v1/tickets/D-1", None)["timers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "step" && t["state"] == "pending")
            .count()
    };
    let after_one = steps(&acme);
    server.advance(1);
    let second = acme.ok("POST", "/v1/tickets/D-1/events", Some(claim));
    assert!(second["duplicate"].is_string(), "{second}");
    assert_eq!(steps(&acme), after_one, "no second set of reminders");
    let t = acme.ok("GET", "/v1/tickets/D-1", None);
    let claims = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["what"] == "claimed")
        .count();
    assert_eq!(claims, 1, "{}", t["history"]);
}

#[test]
fn dashboard_sla_compliance_counts_the_escalations_nobody_claimed() {
    let (_dir, server, acme) = start();
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket("O-2", "outage", "Nothing loads.")),
    );
    acme.ok(
        "POST",
        "/v1/tickets/O-2/events",
        Some(json!({"type": "claim", "agent": "dee"})),
    );
    server.advance(60);
    let d = acme.ok("GET", "/v1/dashboard", None);
    let critical = &d["sla"]["critical"];
    assert_eq!(critical["within_target"], 1, "{d}");
    assert_eq!(critical["never_claimed"], 1, "{critical}");
    assert_eq!(critical["compliance"], 0.5, "{critical}");
}

#[test]
fn a_queue_no_team_is_named_after_reaches_the_team_leads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, Some(LOOPBACK_RECEIVERS));
    let acme = server.tenant("acme");
    // Nobody is on the `support` team, the general queue's; billing is away.
    for a in [
        json!({"id": "ana", "team": "billing", "skills": ["billing"], "status": "away"}),
        json!({"id": "lee", "team": "billing", "role": "lead", "status": "out-of-office"}),
        json!({"id": "tam", "team": "technical", "role": "lead"}),
    ] {
        let id = a["id"].as_str().unwrap().to_string();
        acme.ok("PUT", &format!("/v1/agents/{id}"), Some(a));
    }
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(ticket("Q-1", "refund", "Please refund the double charge.")),
    );
    assert_eq!(out["queue"], "support", "{out}");
    let in_app: Vec<String> = deliveries(&acme, "Q-1")
        .into_iter()
        .filter(|d| d["channel"] == "in-app")
        .map(|d| d["address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        in_app.contains(&"lee".to_string()) && in_app.contains(&"tam".to_string()),
        "the leads are the queue's members: {in_app:?}"
    );
}
