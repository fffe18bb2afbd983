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

#[test]
fn migrating_moves_each_stored_conversation_out_of_its_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    // A database as the build before the conversation moved left it.
    // (The conversation moved in migration 6.)
    let before = 5;
    {
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for (i, sql) in MIGRATIONS[..before].iter().enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .unwrap();
            tx.commit().unwrap();
        }
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
