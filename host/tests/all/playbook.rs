//! The default playbook, as compiled wasm plugins through the pipeline: the
//! seed's scenarios, and every real conversation of the Twitter
//! customer-care set.

use crate::support::*;
use escalator::model::{self, SignalAction, Tier};
use escalator::pipeline::{Decision, PluginSet};
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
    crate::support::decide(&defaults(), t, roster, now, model::EventKind::MessageAdded)
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
    assert_eq!(
        d.routing().unwrap().target,
        model::Target::Agent("bo".into())
    );
}

#[test]
fn a_calm_how_to_question_stays_with_the_ai() {
    let d = decide(&example("password-reset.json"), &roster());
    assert_eq!(d.tier, None, "{:?}", keys(&d));
    assert!(d.routing().is_none() && d.plan().is_none());
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
        d.routing().unwrap().target,
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
        let d = crate::support::decide(&set, t, &[], now, model::EventKind::MessageAdded);
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
        crate::support::decide(&defaults(), &t, &[], now, model::EventKind::Tick)
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
            .any(|s| s.key == "sla:first-reply:cycle-0:critical:50"
                && s.action == SignalAction::Warn)
    );
    assert_eq!(warned.tier, None, "a warning does not re-tier");
    let breached = at(31);
    assert!(
        keys(&breached).contains(&"sla:first-reply:cycle-0:critical:breach"),
        "{:?}",
        keys(&breached)
    );
    assert_eq!(breached.tier, Some(Tier::Critical));
}

// Scenarios with the operator's own configuration, through the compiled
// plugins (the same scenarios are unit-tested natively in each plugin).

/// Built-in plugin `name` with `patch` merged into its configuration, the
/// way an operator's `[config]` table overrides the defaults.
fn configured(name: &str, patch: serde_json::Value) -> registry::LoadedPlugin {
    let mut p = builtin(name).with_matrix(&escalator::matrix::Matrix::default_matrix());
    let mut config: serde_json::Value = serde_json::from_str(&p.config_json).unwrap();
    for (k, v) in patch.as_object().unwrap() {
        config[k] = v.clone();
    }
    p.config_json = config.to_string().into();
    p
}

fn at(t: &str) -> chrono::DateTime<chrono::Utc> {
    t.parse().unwrap()
}

fn sla_at(p: &registry::LoadedPlugin, t: &model::Ticket, now: &str) -> model::Evaluation {
    let ctx = contract_ctx(at(now), model::EventKind::Tick, &p.config_json);
    let out = runtime().evaluate(&p.plugin, &std::sync::Arc::new(contract::ticket(t)), &ctx);
    contract::evaluation_from(out.result.expect("sla succeeds")).unwrap()
}

fn contract_ctx(
    now: chrono::DateTime<chrono::Utc>,
    event: model::EventKind,
    config: &str,
) -> escalator::runtime::wit::Context {
    contract::context(now, event, config.into())
}

use escalator::pipeline::contract;

#[test]
fn the_sla_clock_runs_in_the_owning_teams_time_zone_and_business_hours() {
    // Billing works 09:00-17:00 New York time and is closed on Thanksgiving.
    let sla = configured(
        "sla",
        serde_json::json!({
            "calendars": {"billing": {
                "time-zone": "America/New_York",
                "hours": ["mon-fri 09:00-12:00", "mon-fri 13:00-17:00"],
                "holidays": ["2026-11-26"]}},
            "around-the-clock": []
        }),
    );
    // A high billing ticket on Thanksgiving evening (UTC): the clock starts
    // Friday 09:00 EST (14:00 UTC). 2 h of 4 h (the 50% warning) with the
    // lunch break: Friday 16:00 UTC.
    let mut t = ticket("Charged twice", &["I was charged twice"]);
    t.tier = Some(Tier::High);
    t.created_at = at("2026-11-26T22:00:00Z");
    t.messages[0].sent_at = t.created_at;
    let e = sla_at(&sla, &t, "2026-11-26T22:05:00Z");
    assert!(e.signals.is_empty(), "{:?}", e.signals);
    assert_eq!(e.wake_at, Some(at("2026-11-27T16:00:00Z")));
    let warned = sla_at(&sla, &t, "2026-11-27T16:00:00Z");
    assert_eq!(
        warned
            .signals
            .iter()
            .map(|s| s.key.as_str())
            .collect::<Vec<_>>(),
        ["sla:first-reply:cycle-0:high:50"]
    );
    assert!(
        warned.signals[0]
            .evidence
            .iter()
            .any(|e| e.contains("2h of 4h used (high target, billing business hours)")),
        "{:?}",
        warned.signals[0].evidence
    );
    // 75% (3 h) at 12:00 EST, the lunch break; the breach after 4 business
    // hours at 14:00 EST (19:00 UTC), not 13:00.
    assert_eq!(warned.wake_at, Some(at("2026-11-27T17:00:00Z")));
    let lunch = sla_at(&sla, &t, "2026-11-27T18:59:00Z");
    assert!(
        !lunch
            .signals
            .iter()
            .any(|s| s.action == SignalAction::Escalate)
    );
    assert_eq!(lunch.wake_at, Some(at("2026-11-27T19:00:00Z")));
    let breached = sla_at(&sla, &t, "2026-11-27T19:00:00Z");
    assert!(
        breached
            .signals
            .iter()
            .any(|s| s.key == "sla:first-reply:cycle-0:high:breach" && s.tier == Tier::Critical),
        "a high breach escalates to critical: {:?}",
        breached.signals
    );
}

#[test]
fn the_next_reply_clock_runs_from_the_customers_answer_as_wasm() {
    let sla = configured("sla", serde_json::json!({}));
    let mut t = ticket("Outage", &["Nothing loads"]);
    t.tier = Some(Tier::Critical);
    let t0 = t.created_at;
    t.messages.push(model::Message {
        id: "r1".into(),
        author: model::AuthorKind::HumanAgent,
        body: "Looking into it".into(),
        sent_at: t0 + chrono::Duration::minutes(5),
        ..t.messages[0].clone()
    });
    t.messages.push(model::Message {
        id: "c2".into(),
        body: "Still down".into(),
        sent_at: t0 + chrono::Duration::minutes(20),
        ..t.messages[0].clone()
    });
    let now = (t0 + chrono::Duration::minutes(81)).to_rfc3339();
    let e = sla_at(&sla, &t, &now);
    let keys: Vec<_> = e.signals.iter().map(|s| s.key.as_str()).collect();
    assert!(
        keys.contains(&"sla:next-reply:cycle-0:critical:breach"),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.starts_with("sla:first-reply")),
        "{keys:?}"
    );
}

fn route_with(
    p: &registry::LoadedPlugin,
    t: &model::Ticket,
    roster: &[model::Agent],
) -> model::Routing {
    let esc = escalator::runtime::wit::Escalation {
        tier: escalator::runtime::wit::Tier::High,
        signals: vec![],
        response_target: None,
    };
    let roster: Vec<_> = roster
        .iter()
        .map(|a| contract::agent(a, noon()).unwrap())
        .collect();
    let ctx = contract_ctx(noon(), model::EventKind::MessageAdded, &p.config_json);
    let out = runtime().route(
        &p.plugin,
        &std::sync::Arc::new(contract::ticket(t)),
        esc,
        &std::sync::Arc::new(roster),
        ctx,
    );
    contract::routing_from(out.result.expect("skills succeeds"))
}

#[test]
fn round_robin_and_load_balanced_routing_pick_different_specialists_as_wasm() {
    let mut team = roster();
    // Ana: assigned recently but holding nothing; Bo: idle longer, busier.
    team[0].open_tickets = 0;
    team[0].capacity = 8;
    team[1].open_tickets = 4;
    let t = ticket("Charged twice", &["help"]);
    let rr = route_with(&configured("skills", serde_json::json!({})), &t, &team);
    assert_eq!(
        rr.target,
        model::Target::Agent("bo".into()),
        "{}",
        rr.reason
    );
    let lb = route_with(
        &configured("skills", serde_json::json!({"strategy": "load-balanced"})),
        &t,
        &team,
    );
    assert_eq!(
        lb.target,
        model::Target::Agent("ana".into()),
        "{}",
        lb.reason
    );
    assert!(lb.reason.contains("least loaded"), "{}", lb.reason);
    // Both specialists away: the fallback path is what is left.
    team[0].status = model::AgentStatus::OutOfOffice;
    team[1].status = model::AgentStatus::Away;
    let nobody = route_with(&configured("skills", serde_json::json!({})), &t, &team);
    assert_ne!(nobody.target, model::Target::Agent("ana".into()));
    assert_ne!(nobody.target, model::Target::Agent("bo".into()));
}

fn plan_with(
    p: &registry::LoadedPlugin,
    t: &model::Ticket,
    tier: Tier,
    now: chrono::DateTime<chrono::Utc>,
    event: model::EventKind,
) -> model::NotificationPlan {
    use escalator::runtime::wit;
    let esc = wit::Escalation {
        tier: contract::tier(tier),
        signals: vec![],
        response_target: None,
    };
    let routing = wit::Routing {
        target: wit::Target::Agent("ana".into()),
        reason: "billing specialist".into(),
        fallback: vec![],
    };
    let roster: Vec<_> = roster()
        .iter()
        .map(|a| contract::agent(a, now).unwrap())
        .collect();
    let ctx = contract_ctx(now, event, &p.config_json);
    let out = runtime().plan(
        &p.plugin,
        &std::sync::Arc::new(contract::ticket(t)),
        esc,
        routing,
        &std::sync::Arc::new(roster),
        ctx,
    );
    contract::plan_from(out.result.expect("tiered succeeds"))
}

fn steps_to(plan: &model::NotificationPlan, who: &str) -> Vec<(u64, model::Channel)> {
    plan.steps
        .iter()
        .filter(|s| s.recipient == model::Recipient::Agent(who.into()))
        .map(|s| (s.delay_ms / 60_000, s.channel))
        .collect()
}

#[test]
fn quiet_hours_repeats_and_digests_shape_the_plan_as_wasm() {
    use model::Channel::*;
    let tiered = configured(
        "tiered",
        serde_json::json!({"quiet-hours": {"start": "22:00", "end": "07:00"}, "repeats": 2}),
    );
    let t = ticket("Charged twice", &["help"]);
    // 22:30 UTC is 23:30 in Madrid for ana: a high alert waits 7.5 h for
    // her morning; a critical one goes now.
    let late = at("2026-11-27T22:30:00Z");
    let high = plan_with(
        &tiered,
        &t,
        Tier::High,
        late,
        model::EventKind::MessageAdded,
    );
    assert_eq!(steps_to(&high, "ana")[0], (450, Slack));
    assert!(high.steps.iter().all(|s| s.digest_window_ms == 5 * 60_000));
    let critical = plan_with(
        &tiered,
        &t,
        Tier::Critical,
        late,
        model::EventKind::MessageAdded,
    );
    let ana: Vec<_> = steps_to(&critical, "ana")
        .into_iter()
        .filter(|s| s.1 == Slack)
        .map(|s| s.0)
        .collect();
    // Alert and reminder in each of three rounds (45 minutes apart).
    assert_eq!(ana, [0, 10, 45, 55, 90, 100]);
    assert!(critical.steps.iter().all(|s| s.digest_window_ms == 0));
}

#[test]
fn a_claimed_but_unanswered_ticket_restarts_the_chain_as_wasm() {
    use model::Channel::*;
    let tiered = configured("tiered", serde_json::json!({}));
    let mut t = ticket("Charged twice", &["help"]);
    t.assignee = Some("ana".into());
    t.claimed_at = Some(noon());
    let plan = plan_with(
        &tiered,
        &t,
        Tier::Critical,
        noon(),
        model::EventKind::Claimed,
    );
    assert_eq!(steps_to(&plan, "ana"), [(15, Slack)]);
    assert_eq!(
        steps_to(&plan, "lee"),
        [(30, Slack), (30, Email), (30, InApp)]
    );
    assert_eq!(
        steps_to(&plan, "max"),
        [(45, Slack), (45, Email), (45, InApp)]
    );
    assert!(
        plan.steps
            .iter()
            .all(|s| s.stop_when_answered && !s.stop_when_claimed)
    );
}
