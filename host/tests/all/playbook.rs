//! The default playbook, as compiled wasm plugins through the pipeline: the
//! seed's scenarios, and every real conversation of the Twitter
//! customer-care set.

use crate::support::*;
use escalator::model::{self, SignalAction, Tier};
use escalator::pipeline::{self, Decision, PluginSet, ResponseTargets};
use escalator::registry;
use std::collections::BTreeMap;
use std::path::Path;

fn defaults() -> PluginSet {
    PluginSet::new(registry::load_builtin(runtime()).expect("the default plugins load")).unwrap()
}

fn decide(t: &model::Ticket, roster: &[model::Agent]) -> Decision {
    let now = t
        .messages
        .iter()
        .map(|m| m.sent_at)
        .max()
        .unwrap_or(t.created_at);
    pipeline::decide(
        runtime(),
        &defaults(),
        t,
        roster,
        now,
        model::EventKind::MessageAdded,
        &ResponseTargets::default(),
    )
}

fn example(name: &str) -> model::Ticket {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/tickets")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn roster() -> Vec<model::Agent> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/roster.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn keys(d: &Decision) -> Vec<&str> {
    d.signals.iter().map(|s| s.key.as_str()).collect()
}

#[test]
fn an_enterprise_billing_dispute_with_a_legal_threat_is_critical_with_every_reason() {
    let d = decide(&example("enterprise-billing-dispute.json"), &roster());
    assert!(
        d.runs.iter().all(|r| r.error.is_none()),
        "{:?}",
        d.runs.iter().map(|r| &r.error).collect::<Vec<_>>()
    );
    assert_eq!(d.tier, Some(Tier::Critical));
    let k = keys(&d);
    for expected in [
        "phrases:critical",
        "phrases:high",
        "customer:enterprise",
        "customer:high-mrr",
        "customer:repeat-contacts",
        "ai-confidence:billing",
        "churn:valuable-customer-leaving",
        "scenario:billing",
    ] {
        assert!(k.contains(&expected), "{expected} missing from {k:?}");
    }
    let ai = d
        .signals
        .iter()
        .find(|s| s.key == "ai-confidence:billing")
        .unwrap();
    assert!(
        ai.evidence
            .iter()
            .any(|e| e.contains("refunds above $10K need human approval")),
        "{:?}",
        ai.evidence
    );
    assert_eq!(d.routing.unwrap().target, model::Target::Agent("bo".into()));
}

#[test]
fn a_calm_how_to_question_stays_with_the_ai() {
    let d = decide(&example("password-reset.json"), &roster());
    assert_eq!(d.tier, None, "{:?}", keys(&d));
    assert!(d.routing.is_none() && d.plan.is_none());
}

#[test]
fn enterprise_raises_an_escalation_but_does_not_start_one() {
    let mut t = ticket("Question", &["How do I add a user to my workspace?"]);
    // A how-to question: the matrix keeps it with the AI.
    t.category = Some("account".into());
    t.customer = Some(
        serde_json::from_str(
            r#"{"id":"C-1","name":"Acme","plan":"enterprise","mrr_cents":5000000}"#,
        )
        .unwrap(),
    );
    let calm = decide(&t, &[]);
    assert_eq!(
        calm.tier,
        None,
        "a raise alone escalates nothing: {:?}",
        keys(&calm)
    );
    assert!(calm.signals.iter().all(|s| s.action == SignalAction::Raise));

    t.messages.push(model::Message {
        body: "Let me speak to your manager.".into(),
        ..t.messages[0].clone()
    });
    let angry = decide(&t, &[]);
    // "speak to your manager" is high; the enterprise raise makes it critical.
    assert_eq!(angry.tier, Some(Tier::Critical), "{:?}", keys(&angry));
}

#[test]
fn a_trial_user_with_three_contacts_who_turns_negative_escalates_to_critical_at_once() {
    let mut t = ticket(
        "Export",
        &[
            "Hi, quick question about exporting big projects.",
            "This is useless. I'm fed up.",
        ],
    );
    t.customer = Some(
        serde_json::from_str(
            r#"{"id":"C-2","name":"Globex","plan":"team","trial":true,"contacts_this_week":3}"#,
        )
        .unwrap(),
    );
    let d = decide(&t, &[]);
    assert_eq!(d.tier, Some(Tier::Critical), "{:?}", keys(&d));
    assert!(keys(&d).contains(&"churn:trial-turning-negative"));
    assert!(keys(&d).contains(&"sentiment:shift"), "{:?}", keys(&d));
}

#[test]
fn an_explicit_request_for_a_human_moves_a_low_ticket_to_a_human() {
    let d = decide(&example("asks-for-a-human.json"), &roster());
    assert!(
        keys(&d).contains(&"phrases:human-request"),
        "{:?}",
        keys(&d)
    );
    assert!(d.tier.is_some());
    assert_eq!(
        d.routing.unwrap().target,
        model::Target::Agent("dee".into())
    );
}

/// The Twitter customer-care conversations as tickets: customer turns
/// (`client`, `client1`) and the company's agent turns.
fn twitter_tickets() -> Vec<model::Ticket> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/twitter_care_dev.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the shared data sets sit beside the repository)",
            path.display()
        )
    });
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let messages: Vec<model::Message> = v["dialogContent"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(j, turn)| model::Message {
                    id: format!("m{j}"),
                    author: if turn.get("agent").is_some() {
                        model::AuthorKind::HumanAgent
                    } else {
                        model::AuthorKind::Customer
                    },
                    author_id: None,
                    body: turn["message"].as_str().unwrap().to_string(),
                    sent_at: turn["datetime"].as_str().unwrap().parse().unwrap(),
                    sentiment: None,
                })
                .collect();
            let created = messages[0].sent_at;
            model::Ticket {
                subject: messages[0].body.chars().take(80).collect(),
                channel: model::TicketChannel::Social,
                messages,
                ..model::Ticket::new(format!("twitter-{i}"), created)
            }
        })
        .collect()
}

#[test]
fn every_trigger_runs_on_all_525_real_conversations_without_a_plugin_error() {
    let tickets = twitter_tickets();
    assert_eq!(tickets.len(), 525);
    let set = defaults();
    let mut tiers: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tickets {
        let now = t.messages.iter().map(|m| m.sent_at).max().unwrap();
        let d = pipeline::decide(
            runtime(),
            &set,
            t,
            &[],
            now,
            model::EventKind::MessageAdded,
            &ResponseTargets::default(),
        );
        for r in &d.runs {
            assert!(r.error.is_none(), "{} on {}: {:?}", r.plugin, t.id, r.error);
        }
        *tiers
            .entry(
                d.tier
                    .map_or("none".into(), |t| format!("{t:?}").to_lowercase()),
            )
            .or_default() += 1;
        for s in &d.signals {
            *reasons.entry(s.key.clone()).or_default() += 1;
        }
    }
    let mut top: Vec<_> = reasons.into_iter().collect();
    top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    eprintln!("525 real conversations: tiers {tiers:?}");
    eprintln!("top reasons: {top:?}");
    assert_eq!(tiers.values().sum::<usize>(), 525);
}

#[test]
fn the_sla_trigger_wakes_the_ticket_when_the_next_warning_is_due_and_escalates_at_breach() {
    let mut t = ticket("Charged twice", &["help"]);
    t.tier = Some(Tier::Critical);
    // A category the matrix keeps with the AI, so only the SLA speaks.
    t.category = Some("account".into());
    let at = |minutes: i64| {
        let now = t.created_at + chrono::Duration::minutes(minutes);
        pipeline::decide(
            runtime(),
            &defaults(),
            &t,
            &[],
            now,
            model::EventKind::Tick,
            &ResponseTargets::default(),
        )
    };
    let early = at(10);
    assert_eq!(
        early.wake_at,
        Some(t.created_at + chrono::Duration::minutes(15))
    );
    assert_eq!(early.tier, None);
    let warned = at(16);
    assert!(
        warned
            .signals
            .iter()
            .any(|s| s.key == "sla:first-reply:cycle-0:50" && s.action == SignalAction::Warn)
    );
    assert_eq!(warned.tier, None, "a warning does not re-tier");
    let breached = at(31);
    assert!(
        keys(&breached).contains(&"sla:first-reply:cycle-0:breach"),
        "{:?}",
        keys(&breached)
    );
    assert_eq!(breached.tier, Some(Tier::Critical));
}
