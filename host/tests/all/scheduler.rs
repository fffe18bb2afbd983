//! The scheduler on the system clock (on both backends): a timer this
//! process schedules while the scheduler sleeps until a later one is
//! fired when it falls due. Told of it, the scheduler takes the earliest
//! due time inserted since it last read the store, rather than reading the
//! store after every decision.

use crate::peers::eventually;
use crate::support::Db;
use escalator::clock::Clock;
use escalator::store::{Store, TimerKind};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

on_both_backends!(
    a_timer_scheduled_while_the_scheduler_sleeps_on_a_later_one_fires_when_due,
    only_committed_timers_are_told_to_the_scheduler,
);

/// What the scheduler is told: the earliest due time of the timers
/// inserted by transactions that committed, once.
fn only_committed_timers_are_told_to_the_scheduler(db: &Db) {
    let store: Arc<Store> = db.open();
    let now = chrono::Utc::now();
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "x", now))
        .unwrap();
    store.take_inserted();
    let at = |s: i64| now + chrono::Duration::seconds(s);
    let insert = |tx: &escalator::store::Tx<'_>, s: i64| {
        tx.insert_timer("acme", "T-1", TimerKind::Wake, at(s), &json!({}))
    };
    let rolled_back: anyhow::Result<()> = store.write(|tx| {
        insert(tx, 5)?;
        anyhow::bail!("rolled back")
    });
    assert!(rolled_back.is_err());
    assert_eq!(store.take_inserted(), None, "a rolled-back insert");
    store
        .write(|tx| {
            insert(tx, 60)?;
            insert(tx, 30)
        })
        .unwrap();
    store.write(|tx| insert(tx, 90)).unwrap();
    assert_eq!(
        store.take_inserted(),
        Some(at(30).timestamp_millis()),
        "the earliest of the committed"
    );
    assert_eq!(store.take_inserted(), None, "taken once");
}

fn a_timer_scheduled_while_the_scheduler_sleeps_on_a_later_one_fires_when_due(db: &Db) {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<Store> = db.open();
    let runtime = crate::support::runtime_cached_in(cache.path());
    let engine = Arc::new(crate::support::builtin_engine_on(
        store.clone(),
        &runtime,
        Clock::System,
    ));
    let now = chrono::Utc::now();
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "x", now))
        .unwrap();
    let ticket = serde_json::from_value(json!({
        "id": "T-1", "created_at": now,
        "messages": [{"author": "customer", "body": "Where is my invoice?", "sent_at": now}]
    }))
    .unwrap();
    engine.create_ticket("acme", ticket, None).unwrap();
    // A timer an hour away: what the scheduler sleeps until (a digest's,
    // which the wake-up below does not supersede).
    store
        .write(|tx| {
            tx.insert_timer(
                "acme",
                "T-1",
                TimerKind::Digest,
                now + chrono::Duration::hours(1),
                &json!({}),
            )
        })
        .unwrap();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    tokio.spawn(escalator::scheduler::run(engine.clone()));
    let pending = |id: i64| {
        store
            .timers("acme", "T-1")
            .unwrap()
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.state == "pending")
    };
    // Asleep: whatever was due at the start has fired.
    std::thread::sleep(Duration::from_millis(500));

    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let id = store
        .write(|tx| tx.insert_timer("acme", "T-1", TimerKind::Wake, soon, &json!({})))
        .unwrap();
    engine.timer_wake.notify_one();
    assert_eq!(pending(id), Some(true), "not due yet");
    // Without the notice's due time the scheduler would sleep on for the
    // hour.
    eventually(60, "the timer due in 300 ms fired", || {
        (pending(id) == Some(false)).then_some(())
    });
    let fired = store
        .timers("acme", "T-1")
        .unwrap()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap();
    assert_eq!(fired.state, "done", "{fired:?}");
    assert!(
        chrono::Utc::now().timestamp_millis() >= soon.timestamp_millis(),
        "not before it was due"
    );
    let later = store.timers("acme", "T-1").unwrap();
    assert!(
        later.iter().any(|t| t.state == "pending"
            && t.due_at >= (now + chrono::Duration::hours(1)).timestamp_millis()),
        "the hour-away timer still waits: {later:?}"
    );
}
