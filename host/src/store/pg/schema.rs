//! PostgreSQL's schema and the versioned migrations that bring a database
//! to it.
//!
//! The schema holds the same tables and columns as SQLite's (a test
//! compares them), in PostgreSQL's own types: times are `timestamptz`,
//! counters and milliseconds `bigint`, row ids identity columns, plugin
//! components `bytea`; JSON documents stay text, written and read whole as
//! in SQLite. PostgreSQL keeps its own migration history, independent of
//! SQLite's `user_version`.
//!
//! Several instances may start at once on one database: migrating takes a
//! transaction-scoped advisory lock first, so one instance applies each
//! migration and the others find it applied.

use crate::store::{Result, StoreError};

/// Schema migrations, in order; `schema_migrations` records those applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: the schema as SQLite has it after its sixth migration.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ,
        settings_rev BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE agents (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE tickets (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        tier TEXT,
        assignee TEXT,
        status TEXT NOT NULL,
        escalated_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        messages BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX tickets_escalated ON tickets (tenant, escalated_at);
    CREATE INDEX tickets_assignee ON tickets (tenant, assignee);
    CREATE TABLE conversation (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        first BIGINT NOT NULL,
        messages TEXT NOT NULL,
        PRIMARY KEY (tenant, ticket, first)
    );
    CREATE TABLE events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        idempotency_key TEXT,
        processed BIGINT NOT NULL DEFAULT 0,
        response TEXT,
        error TEXT,
        request_hash TEXT
    );
    CREATE INDEX events_ticket ON events (tenant, ticket, seq);
    CREATE UNIQUE INDEX events_idempotency ON events (tenant, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX events_unprocessed ON events (processed) WHERE processed = 0;
    CREATE INDEX events_failed ON events (tenant, seq) WHERE processed = 2;
    CREATE TABLE decisions (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        cause TEXT NOT NULL,
        escalated BOOLEAN NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX decisions_ticket ON decisions (tenant, ticket, id);
    CREATE INDEX decisions_at ON decisions (tenant, at);
    CREATE TABLE audit (
        decision BIGINT NOT NULL REFERENCES decisions(id),
        idx BIGINT NOT NULL,
        plugin TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (decision, idx)
    );
    CREATE TABLE fired (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        key TEXT NOT NULL,
        decision BIGINT NOT NULL,
        PRIMARY KEY (tenant, ticket, key)
    );
    CREATE TABLE timers (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        due_at BIGINT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        done_at TIMESTAMPTZ,
        outcome TEXT,
        attempts BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
    CREATE INDEX timers_ticket ON timers (tenant, ticket, state);
    CREATE TABLE deliveries (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_error TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        sent_at TIMESTAMPTZ,
        priority BIGINT NOT NULL DEFAULT 2
    );
    CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_ticket ON deliveries (tenant, ticket);
    CREATE INDEX deliveries_recent ON deliveries (tenant, channel, address, created_at);
    CREATE INDEX deliveries_fair
        ON deliveries (tenant, priority, next_attempt_at, id, address, status)
        WHERE status = 'pending';
    CREATE TABLE feed (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        ticket TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX feed_agent ON feed (tenant, agent, id);
    CREATE TABLE plugin_versions (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        manifest TEXT NOT NULL,
        wasm BYTEA NOT NULL,
        digest TEXT NOT NULL,
        fixtures TEXT NOT NULL,
        validation TEXT NOT NULL,
        source TEXT NOT NULL,
        uploaded_at TIMESTAMPTZ NOT NULL,
        uploaded_by TEXT NOT NULL,
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE plugin_slots (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        version TEXT,
        mode TEXT,
        previous TEXT,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE plugin_changes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX plugin_changes_tenant ON plugin_changes (tenant, id);
    "#,
    // 2: the crash-loop guard's window (SQLite's seventh).
    r#"
    CREATE TABLE plugin_health (
        tenant TEXT NOT NULL,
        plugin TEXT NOT NULL,
        recent TEXT NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (tenant, plugin)
    );
    "#,
    // 3: the last delivery to an address read from the index (SQLite's
    // eighth).
    r#"
    DROP INDEX deliveries_recent;
    CREATE INDEX deliveries_recent ON deliveries (tenant, channel, address, created_at, status);
    "#,
    // 4: the audit trail's key as SQLite's ninth has it (there the row id,
    // so the trail is one b-tree). PostgreSQL keeps its primary key
    // (decision, idx) and computes the same key.
    r#"
    ALTER TABLE audit ADD COLUMN key BIGINT GENERATED ALWAYS AS (decision * 65536 + idx) STORED;
    "#,
];

/// The advisory lock key migrations are applied under (any constant both
/// instances agree on: "escalator" in ASCII, truncated to 8 bytes).
const MIGRATION_LOCK: i64 = 0x6573_6361_6c61_746f;

pub(super) fn pg(context: &str, e: postgres::Error) -> StoreError {
    // The driver's Display of a server error is only "db error"; the
    // server's own message and code say what went wrong.
    match e.as_db_error() {
        Some(db) => StoreError::Postgres(format!(
            "{context}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Postgres(format!("{context}: {e}")),
    }
}

/// Bring the database `client` is connected to up to date; returns the
/// schema version. Safe to call from several instances at once: the
/// migrations not yet applied are applied once, in one transaction, under
/// an advisory lock.
pub fn migrate(client: &mut postgres::Client) -> Result<i64> {
    let mut tx = client
        .transaction()
        .map_err(|e| pg("starting the migration", e))?;
    // The lock comes first, before the version table is created: two
    // instances running `CREATE TABLE IF NOT EXISTS` at once race on the
    // catalog and one of them fails (seen in CI).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| pg("taking the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .map_err(|e| pg("creating schema_migrations", e))?;
    let applied: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .map_err(|e| pg("reading the schema version", e))?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::Postgres(format!(
            "the database's schema is version {applied}, newer than this escalator ({known}); \
             upgrade escalator"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = i as i64 + 1;
        tx.batch_execute(sql)
            .map_err(|e| pg(&format!("applying migration {version}"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .map_err(|e| pg(&format!("recording migration {version}"), e))?;
    }
    tx.commit()
        .map_err(|e| pg("committing the migrations", e))?;
    Ok(known)
}
