//! The PostgreSQL store, against a real PostgreSQL server this test process
//! starts on loopback ([`crate::support::Postgres`]).

use crate::support::Postgres;
use escalator::store::pg;
use std::collections::BTreeSet;

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn instances_starting_at_once_migrate_the_database_once() {
    // Four instances start at the same moment on an empty database, on
    // several databases: the race of two first migrations is narrow (CI
    // met it once in a run of one).
    let mut url = String::new();
    for _ in 0..8 {
        url = Postgres::get().database();
        let clients: Vec<postgres::Client> = (0..4).map(|_| connect(&url)).collect();
        let start = std::sync::Barrier::new(4);
        let versions: Vec<i64> = std::thread::scope(|s| {
            let workers: Vec<_> = clients
                .into_iter()
                .map(|mut c| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        pg::migrate(&mut c)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(versions, vec![pg::MIGRATIONS.len() as i64; 4]);
    }
    let known = pg::MIGRATIONS.len() as i64;
    let mut c = connect(&url);
    let applied: Vec<i64> = c
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        applied,
        (1..=known).collect::<Vec<_>>(),
        "each applied once"
    );
    // Opening again applies nothing.
    assert_eq!(pg::migrate(&mut c).unwrap(), known);
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, known);
    // A database from a newer escalator is refused, not guessed at.
    c.execute(
        "INSERT INTO schema_migrations (version) VALUES ($1)",
        &[&(known + 1)],
    )
    .unwrap();
    let err = pg::migrate(&mut c).unwrap_err().to_string();
    assert!(err.contains("newer than this escalator"), "{err}");
}

#[test]
fn the_postgres_schema_has_every_table_and_column_sqlite_has() {
    // SQLite's schema at its newest version, from a fresh file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    drop(escalator::store::SqliteStore::open(&path, Default::default()).unwrap());
    let lite = rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = lite
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut sqlite_columns = BTreeSet::new();
    for t in &tables {
        let cols: Vec<String> = lite
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for c in cols {
            sqlite_columns.insert((t.clone(), c));
        }
    }
    assert!(sqlite_columns.len() > 100, "{sqlite_columns:?}");

    let url = Postgres::get().database();
    let mut c = connect(&url);
    pg::migrate(&mut c).unwrap();
    let pg_columns: BTreeSet<(String, String)> = c
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> 'schema_migrations'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        pg_columns
            .symmetric_difference(&sqlite_columns)
            .collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "columns in one schema and not the other"
    );
}
