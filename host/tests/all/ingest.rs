//! Events in: an event and its decision are one write transaction (on a
//! real SQLite file, counting its commits); a decision that cannot be
//! stored leaves its event stored alone, marked failed, and nothing else
//! of it (on both backends).

use crate::support::Db;
use escalator::engine::{Engine, EngineError};
use escalator::model::{self, Event};
use escalator::runtime::{Runtime, RuntimeConfig};
use escalator::store::{Durability, SqliteStore, Store, TimerKind};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const T0: &str = "2026-11-27T12:00:00Z";

/// An engine with the default plugins on `store` (its compiled code cached
/// in `dir`), tenant `acme` with one agent.
fn engine_on(dir: &Path, store: Arc<Store>) -> Engine {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.join("cache")),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let engine = crate::support::builtin_engine(store.clone(), &runtime, T0);
    let ana: model::Agent = serde_json::from_value(json!({
        "id": "ana", "name": "Ana", "skills": ["account"], "team": "support"
    }))
    .unwrap();
    store
        .write(|tx| {
            tx.create_tenant("acme", "Acme", "x", T0.parse().unwrap())?;
            tx.put_agent("acme", &ana)
        })
        .unwrap();
    engine
}

/// [`engine_on`] a SQLite file in `dir`, and the store as itself (to count
/// its commits).
fn engine(dir: &Path) -> (Engine, Arc<SqliteStore>) {
    let sqlite = Arc::new(SqliteStore::open(&dir.join("db"), Durability::Process).unwrap());
    (engine_on(dir, sqlite.clone()), sqlite)
}

/// Run `sql` on `db` through a connection of its own (not the store's).
fn sql(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("escalator.db"))
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
        Db::Postgres(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
    }
}

/// The one number `query` selects from `db`.
fn count(db: &Db, query: &str) -> i64 {
    match db {
        Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("escalator.db"))
            .unwrap()
            .query_row(query, [], |r| r.get(0))
            .unwrap(),
        Db::Postgres(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
            .unwrap()
            .query_one(query, &[])
            .unwrap()
            .get(0),
    }
}

fn lawyer(id: &str) -> model::Ticket {
    serde_json::from_value(json!({
        "id": id, "created_at": T0, "category": "account",
        "messages": [{"author": "customer", "body": "I will call my lawyer", "sent_at": T0}]
    }))
    .unwrap()
}

fn message(body: &str) -> Event {
    serde_json::from_value(json!({"type": "message", "author": "customer", "body": body})).unwrap()
}

/// The customer's messages on a ticket (an escalation adds a note of its
/// own).
fn from_customer(s: &model::TicketState) -> usize {
    s.ticket
        .messages
        .iter()
        .filter(|m| m.author == model::AuthorKind::Customer)
        .count()
}

#[test]
fn a_new_ticket_or_a_message_is_stored_with_its_decision_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, sqlite) = engine(dir.path());
    let store: &Store = &*sqlite;

    let before = sqlite.commits();
    let created = engine.create_ticket("acme", lawyer("T-1"), None).unwrap();
    assert_eq!(sqlite.commits() - before, 1, "creation and its decision");
    assert!(created.escalated, "{created:?}");

    let wakes = || -> Vec<(i64, i64)> {
        store
            .timers("acme", "T-1")
            .unwrap()
            .iter()
            .filter(|t| t.kind == TimerKind::Wake && t.state == "pending")
            .map(|t| (t.id, t.due_at))
            .collect()
    };
    let wake = wakes();
    assert_eq!(wake.len(), 1, "the SLA's next threshold: {wake:?}");
    let before = sqlite.commits();
    let added = engine
        .add_event("acme", "T-1", message("Still nothing?"), Some("k-1"))
        .unwrap();
    assert_eq!(sqlite.commits() - before, 1, "a message and its decision");
    // The message moves no SLA threshold: the same wake-up timer stays.
    assert_eq!(wakes(), wake);

    // Both events are stored as decided, each decision names its event,
    // and so does each call in its audit trail.
    let events = store.events("acme", "T-1").unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.seq, e.processed, e.failed.is_none()))
            .collect::<Vec<_>>(),
        vec![(created.event, true, true), (added.event, true, true)]
    );
    let decisions = store.decisions("acme", "T-1").unwrap();
    for (d, (event, id)) in decisions.iter().zip([
        (created.event, created.decision),
        (added.event, added.decision),
    ]) {
        let cause = format!("event:{event}");
        assert_eq!((d.id, d.cause.as_str()), (id, cause.as_str()));
        assert_eq!(d.data["event"]["cause"], cause.as_str());
        assert!(!d.audit.is_empty());
        for a in &d.audit {
            assert_eq!(a["input_event"]["cause"], cause.as_str(), "{a}");
        }
    }
    let ticket = store.ticket("acme", "T-1").unwrap().unwrap();
    assert_eq!(from_customer(&ticket), 2);
    assert!(ticket.escalation.is_some());

    // The same request again (its idempotency key) gets the first answer
    // and writes nothing.
    let before = sqlite.commits();
    let again = engine
        .add_event("acme", "T-1", message("Still nothing?"), Some("k-1"))
        .unwrap();
    assert_eq!(
        (again.event, again.decision, sqlite.commits() - before),
        (added.event, added.decision, 0)
    );

    // A claim moves the agent's load, which routing reads: it is stored
    // first, then decided.
    let claim: Event = serde_json::from_value(json!({"type": "claim", "agent": "ana"})).unwrap();
    let claimed = engine.add_event("acme", "T-1", claim, None).unwrap();
    assert_eq!(claimed.assignee.as_deref(), Some("ana"));
    assert_eq!(store.agent("acme", "ana").unwrap().unwrap().open_tickets, 1);
    assert!(
        store
            .events("acme", "T-1")
            .unwrap()
            .iter()
            .all(|e| e.processed)
    );

    // A ticket that exists is refused before any plugin runs on it.
    let before = sqlite.commits();
    match engine.create_ticket("acme", lawyer("T-1"), None) {
        Err(EngineError::Conflict(code, _)) => assert_eq!(code, "ticket.exists"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sqlite.commits() - before, 0);
}

on_both_backends!(a_decision_that_cannot_be_stored_leaves_its_event_stored_alone_and_marked_failed);

fn a_decision_that_cannot_be_stored_leaves_its_event_stored_alone_and_marked_failed(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let store = db.open();
    let engine = engine_on(dir.path(), store.clone());
    let store: &Store = &*store;
    // The database refuses every decision (as a full disk or a broken
    // constraint would), through a connection of its own.
    sql(
        db,
        match db {
            Db::Sqlite(_) => {
                "CREATE TRIGGER no_decisions BEFORE INSERT ON decisions \
                 BEGIN SELECT RAISE(ABORT, 'no room for decisions'); END;"
            }
            Db::Postgres(_) => {
                "CREATE FUNCTION no_decisions() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'no room for decisions'; END $$; \
                 CREATE TRIGGER no_decisions BEFORE INSERT ON decisions \
                 FOR EACH ROW EXECUTE FUNCTION no_decisions();"
            }
        },
    );

    let failed_with = |r: Result<_, EngineError>| match r {
        Err(EngineError::Failed { event, reason }) => {
            assert!(reason.contains("no room for decisions"), "{reason}");
            event
        }
        other => panic!("{other:?}"),
    };
    let created = failed_with(engine.create_ticket("acme", lawyer("T-2"), None));
    let added = failed_with(engine.add_event("acme", "T-2", message("Hello?"), None));

    // Each event is stored, marked failed with the reason; the ticket holds
    // both messages; no decision, no escalation, no key acted on, nothing
    // scheduled or sent.
    let events = store.events("acme", "T-2").unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![created, added]
    );
    for e in &events {
        assert!(e.processed, "{e:?}");
        assert!(
            e.failed
                .as_deref()
                .is_some_and(|f| f.contains("no room for decisions")),
            "{e:?}"
        );
    }
    let (failed, total) = store.failed_events("acme", 10).unwrap();
    assert_eq!((failed.len(), total), (2, 2));
    let ticket = store.ticket("acme", "T-2").unwrap().unwrap();
    assert_eq!(from_customer(&ticket), 2);
    assert!(ticket.escalation.is_none());
    assert!(store.decisions("acme", "T-2").unwrap().is_empty());
    assert!(store.fired("acme", "T-2").unwrap().is_empty());
    let left = count(
        db,
        "SELECT (SELECT count(*) FROM timers WHERE ticket = 'T-2') \
         + (SELECT count(*) FROM deliveries WHERE ticket = 'T-2') \
         + (SELECT count(*) FROM feed)",
    );
    assert_eq!(left, 0);

    // Once decisions can be stored again, the next event decides on the
    // whole ticket.
    sql(
        db,
        match db {
            Db::Sqlite(_) => "DROP TRIGGER no_decisions",
            Db::Postgres(_) => "DROP TRIGGER no_decisions ON decisions",
        },
    );
    let out = engine
        .add_event("acme", "T-2", message("I will call my lawyer"), None)
        .unwrap();
    assert!(out.escalated, "{out:?}");
    assert_eq!(store.decisions("acme", "T-2").unwrap().len(), 1);
    assert_eq!(
        from_customer(&store.ticket("acme", "T-2").unwrap().unwrap()),
        3
    );
}
