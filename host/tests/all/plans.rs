//! A plan's waiting steps are one timer, a chain (on both backends): an
//! escalation whose plan has a dozen reminders writes one pending step
//! timer, not a dozen; the steps fire in order, each at its own time and
//! each leaving its row and outcome; a claim stops the steps that say so
//! and keeps the others waiting; a step carried whole (held for quiet
//! hours, or scheduled before chains) still fires. A fallback path is one
//! pending timer too.

use crate::support::Db;
use escalator::engine::Engine;
use escalator::model::{self, Event};
use escalator::store::{Store, Timer, TimerKind};
use serde_json::json;
use std::sync::Arc;

on_both_backends!(a_plans_waiting_steps_are_one_timer_that_walks_the_plan);

const T0: &str = "2026-11-27T12:00:00Z";

fn at(min: u64) -> chrono::DateTime<chrono::Utc> {
    T0.parse::<chrono::DateTime<chrono::Utc>>().unwrap() + chrono::Duration::minutes(min as i64)
}

/// A ticket's timers of one kind, oldest first.
fn of_kind(store: &Store, ticket: &str, kind: TimerKind) -> Vec<Timer> {
    let mut all = store.timers("acme", ticket).unwrap();
    all.retain(|t| t.kind == kind);
    all
}

fn steps(store: &Store, ticket: &str) -> Vec<Timer> {
    of_kind(store, ticket, TimerKind::Step)
}

fn pending(store: &Store, ticket: &str) -> Vec<Timer> {
    let mut steps = steps(store, ticket);
    steps.retain(|t| t.state == "pending");
    steps
}

fn fallbacks(store: &Store, ticket: &str) -> Vec<Timer> {
    of_kind(store, ticket, TimerKind::Fallback)
}

fn a_plans_waiting_steps_are_one_timer_that_walks_the_plan(db: &Db) {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<Store> = db.open();
    let runtime = crate::support::runtime_cached_in(cache.path());
    let engine: Engine = crate::support::builtin_engine(store.clone(), &runtime, T0);
    let roster: Vec<model::Agent> = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/roster.json"),
        )
        .unwrap(),
    )
    .unwrap();
    store
        .write(|tx| {
            tx.create_tenant("acme", "Acme", "x", at(0))?;
            roster.iter().try_for_each(|a| tx.put_agent("acme", a))
        })
        .unwrap();
    let ticket: model::Ticket = serde_json::from_value(json!({
        "id": "P-1", "created_at": T0, "category": "billing", "subject": "Charged twice",
        "messages": [{"author": "customer", "sent_at": T0,
            "body": "I was charged twice this month and nobody answers. This is unacceptable, I want a refund now."}]
    }))
    .unwrap();
    let out = engine.create_ticket("acme", ticket, None).unwrap();
    assert!(out.escalated, "{out:?}");

    // The plan, as its decision stored it: the steps that wait.
    let decision = store
        .decisions("acme", "P-1")
        .unwrap()
        .into_iter()
        .rfind(|d| d.escalated)
        .unwrap();
    let plan: model::NotificationPlan =
        serde_json::from_value(decision.data["plan"].clone()).unwrap();
    let mut waiting: Vec<(u64, usize)> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.delay_ms > 0)
        .map(|(i, s)| (s.delay_ms, i))
        .collect();
    waiting.sort();
    assert!(waiting.len() >= 6, "a plan with reminders: {plan:?}");

    // One pending timer for all of them, due with the first.
    let chain = pending(&*store, "P-1");
    assert_eq!(chain.len(), 1, "{chain:?}");
    assert_eq!(
        chain[0].due_at,
        decision_at(&decision.at) + waiting[0].0 as i64
    );

    // The fallback path: one pending timer, due with its first step.
    let path: Vec<model::FallbackStep> =
        serde_json::from_value(decision.data["routing"]["fallback"].clone()).unwrap();
    assert!(path.len() >= 2, "{path:?}");
    let first = fallbacks(&*store, "P-1");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        first[0].due_at,
        decision_at(&decision.at) + path[0].after_ms as i64
    );

    // The first two due times (the 4 h SLA, breached later, escalates the
    // ticket again with a plan of its own): each fires the steps due then,
    // in plan order, each in its own row; one timer still waits for the
    // rest.
    let mut fired = 0;
    let mut chain_row = chain[0].id;
    let mut delays: Vec<u64> = waiting.iter().map(|w| w.0).collect();
    delays.dedup();
    for &delay in &delays[..2] {
        engine.clock.set(at(delay / 60_000));
        engine.run_due_timers().unwrap();
        fired += waiting.iter().filter(|w| w.0 == delay).count();
        let done: Vec<Timer> = steps(&*store, "P-1")
            .into_iter()
            .filter(|t| t.state == "done")
            .collect();
        assert_eq!(done.len(), fired, "{done:?}");
        for t in &done {
            let outcome = t.outcome.as_deref().unwrap_or_default();
            assert!(outcome.starts_with("sent: "), "{t:?}");
        }
        let left = pending(&*store, "P-1");
        assert_eq!(left.len(), 1, "{left:?}");
        let next = waiting.iter().find(|w| w.0 > delay).unwrap();
        assert_eq!(left[0].due_at, decision_at(&decision.at) + next.0 as i64);
        chain_row = left[0].id;
    }
    // The fallbacks due by then moved the ticket, each in its own row;
    // the next waits, alone.
    let moved = path.iter().filter(|f| f.after_ms <= delays[1]).count();
    assert!(moved >= 1 && moved < path.len(), "{path:?}");
    let fb = fallbacks(&*store, "P-1");
    let done: Vec<&Timer> = fb.iter().filter(|t| t.state == "done").collect();
    assert_eq!(done.len(), moved, "{fb:?}");
    for (t, f) in done.iter().zip(&path) {
        assert_eq!(t.due_at, decision_at(&decision.at) + f.after_ms as i64);
        assert!(
            t.outcome.as_deref().unwrap().starts_with("reassigned to "),
            "{t:?}"
        );
    }
    let waiting_fb: Vec<&Timer> = fb.iter().filter(|t| t.state == "pending").collect();
    assert_eq!(waiting_fb.len(), 1, "{fb:?}");
    assert_eq!(
        waiting_fb[0].due_at,
        decision_at(&decision.at) + path[moved].after_ms as i64
    );

    // Each fired step is the plan's: the reminders went out with its
    // titles, in order.
    let titles: Vec<String> = waiting[..fired]
        .iter()
        .map(|(_, i)| plan.steps[*i].title.clone())
        .collect();
    let mut sent: Vec<String> = store
        .deliveries("acme", Some("P-1"), 0, 1000)
        .unwrap()
        .into_iter()
        .map(|d| d.title)
        .collect();
    for a in &roster {
        sent.extend(
            store
                .feed("acme", &a.id, 0)
                .unwrap()
                .into_iter()
                .map(|f| f.title),
        );
    }
    assert!(
        titles.iter().all(|t| sent.contains(t)),
        "{titles:?} not all in {sent:?}"
    );

    // A step carried whole (as one held for quiet hours is, and as every
    // step was before chains) fires as it did.
    let now = at(delays[1] / 60_000);
    let whole = plan.steps.iter().find(|s| s.delay_ms == 0).unwrap();
    let id = store
        .write(|tx| {
            tx.insert_timer(
                "acme",
                "P-1",
                TimerKind::Step,
                now,
                &json!({"decision": 0, "plan_at": T0, "index": 0, "step": whole}),
            )
        })
        .unwrap();
    engine.run_due_timers().unwrap();
    let t = steps(&*store, "P-1")
        .into_iter()
        .find(|t| t.id == id)
        .unwrap();
    assert_eq!(t.state, "done");
    assert!(t.outcome.unwrap().starts_with("sent: "));
    // So does a fallback step scheduled before paths were chained, and it
    // schedules nothing after it.
    let id = store
        .write(|tx| {
            tx.insert_timer(
                "acme",
                "P-1",
                TimerKind::Fallback,
                now,
                &json!({"decision": decision.id, "step": path.last().unwrap()}),
            )
        })
        .unwrap();
    engine.run_due_timers().unwrap();
    let fb = fallbacks(&*store, "P-1");
    let t = fb.iter().find(|t| t.id == id).unwrap();
    assert!(
        t.outcome
            .as_deref()
            .unwrap()
            .starts_with("reassigned to queue support;"),
        "{t:?}"
    );
    assert_eq!(
        fb.iter().filter(|t| t.state == "pending").count(),
        1,
        "{fb:?}"
    );

    // A chain with a step a claim does not stop (none of the defaults'
    // has one): the claim cancels the chain's timer and schedules that
    // step alone.
    let (kept_delay, kept) = *waiting.last().unwrap();
    let mixed = store
        .write(|tx| {
            tx.insert_timer(
                "acme",
                "P-1",
                TimerKind::Step,
                at(kept_delay / 60_000 - 1),
                &json!({"decision": decision.id, "plan_at": T0, "chain": [
                    {"index": waiting[fired].1, "delay_ms": kept_delay - 60_000, "stop_when_claimed": true},
                    {"index": kept, "delay_ms": kept_delay, "stop_when_claimed": false},
                ]}),
            )
        })
        .unwrap();
    let agent = out.assignee.clone().unwrap();
    engine
        .add_event("acme", "P-1", Event::Claim { agent }, None)
        .unwrap();
    let all = steps(&*store, "P-1");
    let outcome = |id: i64| {
        let t = all.iter().find(|t| t.id == id).unwrap();
        (t.state.clone(), t.outcome.clone().unwrap_or_default())
    };
    assert_eq!(outcome(chain_row), ("cancelled".into(), "claimed".into()));
    assert_eq!(outcome(mixed), ("cancelled".into(), "claimed".into()));
    let left: Vec<&Timer> = all
        .iter()
        .filter(|t| t.state == "pending" && t.payload["decision"] == decision.id)
        .collect();
    assert_eq!(left.len(), 1, "the step a claim does not stop: {left:?}");
    assert_eq!(
        left[0].payload["chain"],
        json!([{"index": kept, "delay_ms": kept_delay, "stop_when_claimed": false}])
    );
    assert_eq!(left[0].due_at, at(kept_delay / 60_000).timestamp_millis());
    // Any other waiting step is the claim's own plan, one chain too.
    let others: Vec<&Timer> = all
        .iter()
        .filter(|t| t.state == "pending" && t.payload["decision"] != decision.id)
        .collect();
    assert!(others.len() <= 1, "{others:?}");
}

/// A decision's time (as its record gives it) in ms since the epoch.
fn decision_at(at: &str) -> i64 {
    at.parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        .timestamp_millis()
}
