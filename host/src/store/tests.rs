//! SQLite's own tests: its migrations and how it lays data out. The
//! store's behaviour is tested on both backends in `tests/all/store.rs`.

use super::*;

fn noon() -> DateTime<Utc> {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    drop(store);
    // Reopening does not migrate again.
    let store = SqliteStore::open(&path, Durability::Power).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    store
        .lock()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    drop(store);
    let err = SqliteStore::open(&path, Durability::Process).unwrap_err();
    assert!(
        format!("{err:#}").contains("newer than this escalator"),
        "{err:#}"
    );
    drop(dir);
}

#[test]
fn a_dropped_store_has_closed_every_connection_when_the_drop_returns() {
    // SQLite removes a database's WAL files when its last connection
    // closes. The checkpointer's connection has read the WAL once it has
    // run (every 200 ms), so right after the drop the files are gone only
    // if its connection was closed before the drop returned; one closed
    // later can write them again into a data directory being removed.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escalator.db");
        let store = SqliteStore::open(&path, Durability::Process).unwrap();
        store
            .lock()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        std::thread::sleep(CHECKPOINT_EVERY + std::time::Duration::from_millis(100));
        drop(store);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["escalator.db"], "{left:?}");
    }
}

fn message(i: usize) -> model::Message {
    model::Message {
        id: format!("m{i}"),
        author: model::AuthorKind::Customer,
        author_id: None,
        body: format!("message {i}"),
        sent_at: noon(),
        sentiment: None,
    }
}

fn conversation_of(store: &Store, id: &str) -> Vec<String> {
    let state = store.ticket("acme", id).unwrap().unwrap();
    state.ticket.messages.iter().map(|m| m.id.clone()).collect()
}

/// How SQLite lays a conversation out (the suite on both backends, in
/// `tests/all/store.rs`, checks that it reads back whole).
#[test]
fn a_conversation_is_stored_apart_in_the_batches_that_added_it() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("escalator.db"), Durability::Process).unwrap();
    let store: &Store = &sqlite;
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "h", noon()))
        .unwrap();
    let mut state = TicketState::new(model::Ticket {
        messages: (1..=3).map(message).collect(),
        ..model::Ticket::new("T1", noon())
    });
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    // Two more writes: one adds two messages, one changes only the head.
    state.ticket.messages.extend([message(4), message(5)]);
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    state.ticket.subject = "changed".into();
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    let conn = sqlite.lock();
    let batches: Vec<(i64, usize)> = conn
        .prepare("SELECT first, json_array_length(messages) FROM conversation ORDER BY first")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        batches,
        [(0, 3), (3, 2)],
        "each write stored only what it added"
    );
    let head: String = conn
        .query_row("SELECT data FROM tickets WHERE id = 'T1'", [], |r| r.get(0))
        .unwrap();
    assert!(
        !head.contains("message 1"),
        "the head holds no message: {head}"
    );
}

/// A database at `path` as the build with the first `version`
/// migrations left it.
fn at_version(path: &std::path::Path, version: usize) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    for (i, sql) in MIGRATIONS[..version].iter().enumerate() {
        let tx = conn.transaction().unwrap();
        tx.execute_batch(sql).unwrap();
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .unwrap();
        tx.commit().unwrap();
    }
    conn
}

#[test]
fn migrating_moves_each_stored_conversation_out_of_its_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    // A database as the build before the conversation moved left it.
    // (The conversation moved in migration 6.)
    let before = 5;
    {
        let conn = at_version(&path, before);
        for (id, n) in [("T1", 3), ("T2", 0)] {
            let state = TicketState::new(model::Ticket {
                messages: (1..=n).map(message).collect(),
                ..model::Ticket::new(id, noon())
            });
            conn.execute(
                "INSERT INTO tickets (tenant, id, data, status, updated_at) \
                 VALUES ('acme', ?1, ?2, 'open', '')",
                params![id, serde_json::to_string(&state).unwrap()],
            )
            .unwrap();
        }
    }
    let sqlite = SqliteStore::open(&path, Durability::Process).unwrap();
    let store: &Store = &sqlite;
    assert_eq!(conversation_of(store, "T1"), ["m1", "m2", "m3"]);
    assert!(conversation_of(store, "T2").is_empty());
    assert_eq!(
        store.write(|tx| tx.stored_messages("acme", "T1")).unwrap(),
        3
    );
    // A message added after the migration lands after the moved ones.
    let mut state = store.ticket("acme", "T1").unwrap().unwrap();
    state.ticket.messages.push(message(4));
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    assert_eq!(conversation_of(store, "T1"), ["m1", "m2", "m3", "m4"]);
}

#[test]
fn migrating_keys_each_audit_trail_by_its_decision_and_keeps_its_order_and_the_keys_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    // A database as the build before the trail was keyed by row id left
    // it (migration 9), with two decisions' trails.
    let before = 8;
    {
        let conn = at_version(&path, before);
        conn.execute(
            "INSERT INTO fired (tenant, ticket, key, decision) VALUES ('acme', 'T1', 'k1', 1)",
            [],
        )
        .unwrap();
        for (decision, calls) in [(1, 3), (2, 2)] {
            conn.execute(
                "INSERT INTO decisions (id, tenant, ticket, at, cause, escalated, data) \
                 VALUES (?1, 'acme', 'T1', '2026-11-27T12:00:00.000Z', 'event:1', 0, '{}')",
                [decision],
            )
            .unwrap();
            // Stored out of order: the trail is read back by its index.
            for idx in (0..calls).rev() {
                conn.execute(
                    "INSERT INTO audit (decision, idx, plugin, data) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        decision,
                        idx,
                        format!("p{idx}@1"),
                        format!(r#"{{"call":"{decision}.{idx}"}}"#)
                    ],
                )
                .unwrap();
            }
        }
    }
    let sqlite = SqliteStore::open(&path, Durability::Process).unwrap();
    let store: &Store = &sqlite;
    let trail = |store: &Store| -> Vec<Vec<String>> {
        store
            .decisions("acme", "T1")
            .unwrap()
            .iter()
            .map(|d| d.audit.iter().map(|a| a["call"].to_string()).collect())
            .collect()
    };
    assert_eq!(
        trail(store),
        [
            vec![r#""1.0""#, r#""1.1""#, r#""1.2""#],
            vec![r#""2.0""#, r#""2.1""#]
        ]
    );
    // A new decision's trail lands under its own id, and the table is one
    // b-tree: no index of its own beside it.
    let audit: Vec<AuditEntry> = (0..2)
        .map(|i| AuditEntry {
            plugin: format!("p{i}@1"),
            data: format!(r#"{{"call":"3.{i}"}}"#),
        })
        .collect();
    store
        .write(|tx| {
            tx.insert_decision(
                "acme",
                &NewDecision {
                    ticket: "T1",
                    at: noon(),
                    cause: "event:2",
                    escalated: false,
                    data: "{}",
                    audit: &audit,
                },
            )
        })
        .unwrap();
    assert_eq!(trail(store)[2], [r#""3.0""#, r#""3.1""#]);
    // The key acted on before is still known; a new one is recorded once.
    let fire = |key: &str| store.write(|tx| tx.fire("acme", "T1", key, 3)).unwrap();
    assert!(!fire("k1"));
    assert!(fire("k2"));
    assert!(!fire("k2"));
    let conn = Connection::open(&path).unwrap();
    for table in ["audit", "fired"] {
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "{table}");
    }
}
