//! Persistence: tenants, tickets, events, decisions with their audit trail,
//! agents, durable timers, notification deliveries and in-app feeds.
//!
//! The default (and for now only) backend is an embedded SQLite file in WAL
//! mode. Every write happens in one transaction through [`Store::write`],
//! so an acknowledged change is on disk (in the WAL) before the caller
//! answers: `kill -9` loses nothing acknowledged. With
//! `synchronous = NORMAL` (the default) a power cut may lose the last
//! transactions; `FULL` syncs every commit. The schema is versioned with
//! `PRAGMA user_version` and migrated forward on open.
//!
//! Everything is scoped by tenant: no query here reads across tenants.

use crate::model::{self, Agent, TicketState};
use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Schema migrations, in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
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
        escalated_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX tickets_escalated ON tickets (tenant, escalated_at);
    CREATE INDEX tickets_assignee ON tickets (tenant, assignee);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at TEXT NOT NULL,
        idempotency_key TEXT,
        processed INTEGER NOT NULL DEFAULT 0,
        response TEXT
    );
    CREATE INDEX events_ticket ON events (tenant, ticket, seq);
    CREATE UNIQUE INDEX events_idempotency ON events (tenant, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX events_unprocessed ON events (processed) WHERE processed = 0;
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        at TEXT NOT NULL,
        cause TEXT NOT NULL,
        escalated INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX decisions_ticket ON decisions (tenant, ticket, id);
    CREATE TABLE audit (
        decision INTEGER NOT NULL REFERENCES decisions(id),
        idx INTEGER NOT NULL,
        plugin TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (decision, idx)
    );
    CREATE TABLE fired (
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        key TEXT NOT NULL,
        decision INTEGER NOT NULL,
        PRIMARY KEY (tenant, ticket, key)
    );
    CREATE TABLE timers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        done_at TEXT,
        outcome TEXT
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
    CREATE INDEX timers_ticket ON timers (tenant, ticket, state);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        ticket TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_ticket ON deliveries (tenant, ticket);
    CREATE INDEX deliveries_recent ON deliveries (tenant, channel, address, created_at);
    CREATE TABLE feed (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        ticket TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX feed_agent ON feed (tenant, agent, id);
    "#,
    // 2: plugin versions per tenant, the slot each name occupies, and the
    // change log.
    r#"
    CREATE TABLE plugin_versions (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        manifest TEXT NOT NULL,
        wasm BLOB NOT NULL,
        digest TEXT NOT NULL,
        fixtures TEXT NOT NULL,
        validation TEXT NOT NULL,
        source TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
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
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX plugin_changes_tenant ON plugin_changes (tenant, id);
    CREATE INDEX decisions_at ON decisions (tenant, at);
    "#,
    // 3: events whose decision failed (processed = 2, with the reason),
    // the hash of the request an idempotency key came with, and attempts
    // per timer (a failing timer backs off, then is dead-lettered).
    r#"
    ALTER TABLE events ADD COLUMN error TEXT;
    ALTER TABLE events ADD COLUMN request_hash TEXT;
    ALTER TABLE timers ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_failed ON events (tenant, seq) WHERE processed = 2;
    "#,
    // 4: deliveries carry their ticket's urgency (0 critical … 3 low) so
    // critical notifications are sent first; a tenant's token can be
    // revoked.
    r#"
    ALTER TABLE deliveries ADD COLUMN priority INTEGER NOT NULL DEFAULT 2;
    CREATE INDEX deliveries_queue ON deliveries (priority, next_attempt_at)
        WHERE status = 'pending';
    ALTER TABLE tenants ADD COLUMN revoked_at TEXT;
    "#,
    // 5: the queue reads each tenant's pending deliveries on their own,
    // from the index alone (`status` is in it so it covers the look-up),
    // so one tenant's backlog costs no one else a scan. Settings carry a
    // revision, so their parsed form is cached until they change.
    r#"
    DROP INDEX deliveries_queue;
    CREATE INDEX deliveries_fair
        ON deliveries (tenant, priority, next_attempt_at, id, address, status)
        WHERE status = 'pending';
    ALTER TABLE tenants ADD COLUMN settings_rev INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// How many of a ticket's newest events and decisions its detail shows.
pub const TICKET_HISTORY: i64 = 500;

/// Attempts after which a failing timer is dead-lettered.
pub const TIMER_MAX_ATTEMPTS: i64 = 5;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Survives a process crash (`kill -9`); a power cut may lose the last
    /// commits (`synchronous = NORMAL`).
    #[default]
    Process,
    /// Survives a power cut too: every commit is synced (`synchronous =
    /// FULL`).
    Power,
}

/// A tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Sequence number (global, increasing).
    pub seq: i64,
    /// Ticket.
    pub ticket: String,
    /// Kind.
    pub kind: String,
    /// The event as received.
    pub payload: serde_json::Value,
    /// When it was received.
    pub received_at: String,
    /// Whether its decision is stored (or it failed).
    pub processed: bool,
    /// Why deciding it failed, if it did: it is then never retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A durable timer.
#[derive(Debug, Clone, Serialize)]
pub struct Timer {
    /// Id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Ticket.
    pub ticket: String,
    /// `wake`, `step`, `fallback` or `digest`.
    pub kind: String,
    /// When it is due, ms since the epoch.
    pub due_at: i64,
    /// What to do.
    pub payload: serde_json::Value,
    /// `pending`, `done`, `cancelled`, or `dead` (failed too often).
    pub state: String,
    /// What happened when it fired.
    pub outcome: Option<String>,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// A notification to deliver (or delivered).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Ticket (`*` for a digest of several).
    pub ticket: String,
    /// The idempotency key sent with it.
    pub idempotency_key: String,
    /// `slack`, `email`, `in-app`, `webhook`.
    pub channel: String,
    /// Who it is for (agent id, team, endpoint name).
    pub recipient: String,
    /// Where it goes (URL, e-mail address, agent id).
    pub address: String,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// `pending`, `held` (waiting for a digest), `sent`, `failed`,
    /// `skipped`, `digested`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: String,
    /// Delivered.
    pub sent_at: Option<String>,
    /// Urgency: 0 (critical) to 3 (low); lower is sent first.
    pub priority: i64,
}

/// A new delivery.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Ticket.
    pub ticket: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Channel name.
    pub channel: String,
    /// Recipient.
    pub recipient: String,
    /// Address.
    pub address: String,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Initial status (`pending`, `held`, `sent`, `skipped`).
    pub status: String,
    /// Error or note for `skipped`.
    pub note: Option<String>,
    /// Urgency: 0 (critical) to 3 (low); lower is sent first.
    pub priority: i64,
}

/// One in-app feed item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedItem {
    /// Id (increasing per store; the SSE event id).
    pub id: i64,
    /// Agent.
    pub agent: String,
    /// Ticket.
    pub ticket: String,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// When.
    pub at: String,
}

/// A stored decision with its audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// What caused it (`event:SEQ`, `timer:ID`, `agent:ID`).
    pub cause: String,
    /// Whether the ticket escalated (or re-escalated) here.
    pub escalated: bool,
    /// The decision.
    pub data: serde_json::Value,
    /// Every plugin call: plugin, version, input event, output, fuel, time,
    /// error.
    pub audit: Vec<serde_json::Value>,
}

/// A time as the store writes it (RFC 3339, milliseconds, `Z`).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// Read-only connections: WAL lets them read while the writer writes,
    /// so list endpoints, the dashboard and the delivery queue never wait
    /// behind a long transaction.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    path: PathBuf,
    /// Tells the checkpointer to stop.
    checkpointer: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Drop for Store {
    fn drop(&mut self) {
        let (stop, cv) = &*self.checkpointer;
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
}

/// Read-only connections per store.
const READERS: usize = 4;

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL pages at which a commit checkpoints by itself: only if the
/// checkpointer falls far behind.
const WAL_PAGES_INLINE: u32 = 16_384;

/// Copy the WAL into the database in the background, so no commit pays
/// for a checkpoint (a big fan-out once cost the next writer ~25 ms).
/// Passive: it never waits for, or blocks, readers and the writer.
fn checkpointer(path: &Path, stop: Arc<(Mutex<bool>, std::sync::Condvar)>) -> Result<()> {
    let conn = Connection::open(path)
        .with_context(|| format!("opening the checkpointer of {}", path.display()))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let (flag, cv) = &*stop;
            let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
            while !*stopped {
                stopped = cv
                    .wait_timeout(stopped, CHECKPOINT_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if let Err(e) =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })?;
    Ok(())
}

/// A write transaction (see [`Store::write`]).
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl Store {
    /// Open (creating if needed) the database at `path`, and migrate it.
    pub fn open(path: &Path, durability: Durability) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the data directory {}", dir.display()))?;
        }
        let mut conn = Connection::open(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = {WAL_PAGES_INLINE};"
        ))?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            bail!(
                "{} has schema version {version}, newer than this escalator ({}); upgrade escalator",
                path.display(),
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migrating {} to version {}", path.display(), i + 1))?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        let readers = (0..READERS)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("opening a reader of {}", path.display()))?;
                r.execute_batch("PRAGMA busy_timeout = 5000;")?;
                Ok(Mutex::new(r))
            })
            .collect::<Result<Vec<_>>>()?;
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        checkpointer(path, stop.clone())?;
        Ok(Store {
            conn: Mutex::new(conn),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            path: path.to_path_buf(),
            checkpointer: stop,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read-only connection: a free one if there is, else the next in
    /// turn.
    fn read(&self) -> std::sync::MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        self.readers[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` in one transaction; commit if it returns `Ok`.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = Tx {
            tx: conn.transaction()?,
        };
        let out = f(&tx)?;
        tx.tx.commit()?;
        Ok(out)
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The tenant whose token hashes to `hash`.
    pub fn tenant_by_token(&self, hash: &str) -> Result<Option<Tenant>> {
        Ok(self
            .read()
            .query_row(
                "SELECT id, name, created_at FROM tenants WHERE token_hash = ?1 \
                 AND revoked_at IS NULL",
                [hash],
                |r| {
                    Ok(Tenant {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every tenant.
    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT id, name, created_at FROM tenants ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Tenant {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A tenant's channel settings (JSON).
    pub fn settings(&self, tenant: &str) -> Result<serde_json::Value> {
        let text: Option<String> = self
            .read()
            .query_row(
                "SELECT settings FROM tenants WHERE id = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        Ok(serde_json::from_str(text.as_deref().unwrap_or("{}"))?)
    }

    /// A tenant's channel settings if they changed since revision `known`:
    /// `None` for no such tenant, `(rev, None)` when `known` is current.
    pub fn settings_if_changed(
        &self,
        tenant: &str,
        known: Option<i64>,
    ) -> Result<Option<(i64, Option<serde_json::Value>)>> {
        let row: Option<(i64, Option<String>)> = self
            .read()
            .prepare_cached(
                "SELECT settings_rev, CASE WHEN settings_rev IS ?2 THEN NULL ELSE settings END \
                 FROM tenants WHERE id = ?1",
            )?
            .query_row(params![tenant, known], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(rev, text)| Ok((rev, text.map(|t| serde_json::from_str(&t)).transpose()?)))
            .transpose()
    }

    /// A tenant's agents.
    pub fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&self.read(), tenant)
    }

    /// One agent.
    pub fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&self.read(), tenant, id)
    }

    /// A ticket's state.
    pub fn ticket(&self, tenant: &str, id: &str) -> Result<Option<TicketState>> {
        ticket_of(&self.read(), tenant, id)
    }

    /// A ticket's newest [`TICKET_HISTORY`] events, oldest first.
    pub fn events(&self, tenant: &str, ticket: &str) -> Result<Vec<EventRecord>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT * FROM (SELECT seq, ticket, kind, payload, received_at, processed, error \
             FROM events WHERE tenant = ?1 AND ticket = ?2 ORDER BY seq DESC LIMIT ?3) \
             ORDER BY seq",
        )?;
        let rows = st.query_map(params![tenant, ticket, TICKET_HISTORY], event_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Events stored but not yet decided on (after a crash), oldest first,
    /// as (tenant, event).
    pub fn unprocessed_events(&self) -> Result<Vec<(String, EventRecord)>> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT seq, ticket, kind, payload, received_at, processed, error, tenant FROM events \
             WHERE processed = 0 ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(7)?, event_row(r)?)))?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// A ticket's newest [`TICKET_HISTORY`] decisions with their audit
    /// trails, oldest first.
    pub fn decisions(&self, tenant: &str, ticket: &str) -> Result<Vec<DecisionRecord>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT * FROM (SELECT id, at, cause, escalated, data FROM decisions \
             WHERE tenant = ?1 AND ticket = ?2 ORDER BY id DESC LIMIT ?3) ORDER BY id",
        )?;
        let rows = st.query_map(params![tenant, ticket, TICKET_HISTORY], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        let mut audit = conn.prepare("SELECT data FROM audit WHERE decision = ?1 ORDER BY idx")?;
        for row in rows {
            let (id, at, cause, escalated, data) = row?;
            let trail = audit
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|t| Ok(serde_json::from_str(&t?)?))
                .collect::<Result<Vec<_>>>()?;
            out.push(DecisionRecord {
                id,
                at,
                cause,
                escalated,
                data: serde_json::from_str(&data)?,
                audit: trail,
            });
        }
        Ok(out)
    }

    /// The tenant's escalated tickets, most recent first.
    pub fn escalated(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT data FROM tickets WHERE tenant = ?1 AND escalated_at IS NOT NULL \
             ORDER BY escalated_at DESC, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    /// Escalated, unclaimed, unresolved tickets assigned to `agent`.
    pub fn unclaimed_of(&self, tenant: &str, agent: &str) -> Result<Vec<TicketState>> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT data FROM tickets WHERE tenant = ?1 AND assignee = ?2 \
             AND escalated_at IS NOT NULL ORDER BY id",
        )?;
        let rows = st.query_map([tenant, agent], |r| r.get::<_, String>(0))?;
        let all: Vec<TicketState> = rows
            .map(|r| Ok(serde_json::from_str(&r?)?))
            .collect::<Result<_>>()?;
        Ok(all
            .into_iter()
            .filter(|s| {
                s.ticket.claimed_at.is_none()
                    && !matches!(
                        s.ticket.status,
                        model::TicketStatus::Solved | model::TicketStatus::Closed
                    )
            })
            .collect())
    }

    /// Escalated tickets nobody has (they wait in a queue), unresolved,
    /// the longest waiting first: at most `limit`.
    pub fn queued(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT data FROM tickets WHERE tenant = ?1 AND assignee IS NULL              AND escalated_at IS NOT NULL AND status NOT IN ('solved', 'closed')              ORDER BY escalated_at, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], |r| r.get::<_, String>(0))?;
        let all: Vec<TicketState> = rows
            .map(|r| Ok(serde_json::from_str(&r?)?))
            .collect::<Result<_>>()?;
        Ok(all
            .into_iter()
            .filter(|s| s.ticket.claimed_at.is_none() && s.queue.is_some())
            .collect())
    }

    /// The tenant's deliveries, of one ticket or all, oldest first: at
    /// most `limit` with ids above `after`.
    pub fn deliveries(
        &self,
        tenant: &str,
        ticket: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT id, tenant, ticket, idempotency_key, channel, recipient, address, title, \
             body, status, attempts, last_error, created_at, sent_at, priority FROM deliveries \
             WHERE tenant = ?1 AND (?2 IS NULL OR ticket = ?2) AND id > ?3 ORDER BY id LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![tenant, ticket, after, limit], delivery_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Deliveries due for an attempt at `now_ms` (real time), most urgent
    /// first, then oldest.
    pub fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        self.due_deliveries_except(
            now_ms,
            limit,
            &HashSet::new(),
            &|_| usize::MAX,
            &HashSet::new(),
        )
    }

    /// Due deliveries, most urgent first, at most `free(tenant)` of each
    /// tenant, leaving out the ids in `busy` (being sent) and the
    /// `(tenant, address)` endpoints in `full_endpoints`.
    ///
    /// Each tenant's queue is read on its own, through `deliveries_fair`:
    /// a tenant with a long backlog (thousands of deliveries to dead
    /// endpoints) costs the look-up of everyone else one index seek, and a
    /// tenant with no free share is not read at all.
    pub fn due_deliveries_except(
        &self,
        now_ms: i64,
        limit: u32,
        busy: &HashSet<i64>,
        free: &dyn Fn(&str) -> usize,
        full_endpoints: &HashSet<(String, String)>,
    ) -> Result<Vec<Delivery>> {
        let conn = self.read();
        let mut next_tenant = conn.prepare_cached(
            "SELECT tenant FROM deliveries INDEXED BY deliveries_fair \
             WHERE status = 'pending' AND tenant > ?1 ORDER BY tenant LIMIT 1",
        )?;
        let mut heads = conn.prepare_cached(
            "SELECT id, address, priority, next_attempt_at FROM deliveries \
             INDEXED BY deliveries_fair WHERE status = 'pending' AND tenant = ?1 \
             AND next_attempt_at <= ?2 ORDER BY priority, next_attempt_at, id",
        )?;
        // (priority, due, id) of each pick.
        let mut picked: Vec<(i64, i64, i64)> = Vec::new();
        let mut tenant = String::new();
        while let Some(t) = next_tenant
            .query_row([&tenant], |r| r.get::<_, String>(0))
            .optional()?
        {
            tenant = t;
            let mut want = free(&tenant).min(limit as usize);
            if want == 0 {
                continue;
            }
            let mut rows = heads.query(params![tenant, now_ms])?;
            while want > 0
                && let Some(r) = rows.next()?
            {
                let (id, address): (i64, String) = (r.get(0)?, r.get(1)?);
                if busy.contains(&id) || full_endpoints.contains(&(tenant.clone(), address)) {
                    continue;
                }
                picked.push((r.get(2)?, r.get(3)?, id));
                want -= 1;
            }
        }
        picked.sort_unstable();
        picked.truncate(limit as usize);
        let mut row = conn.prepare_cached(
            "SELECT id, tenant, ticket, idempotency_key, channel, recipient, address, title, \
             body, status, attempts, last_error, created_at, sent_at, priority FROM deliveries \
             WHERE id = ?1",
        )?;
        picked
            .iter()
            .map(|(_, _, id)| Ok(row.query_row([id], delivery_row)?))
            .collect()
    }

    /// Put a pending delivery off until `until_ms` without counting an
    /// attempt (its endpoint's circuit is open), saying why.
    pub fn delivery_postponed(&self, id: i64, until_ms: i64, why: &str) -> Result<()> {
        self.lock().execute(
            "UPDATE deliveries SET next_attempt_at = ?2, last_error = ?3 \
             WHERE id = ?1 AND status = 'pending'",
            params![id, until_ms, why],
        )?;
        Ok(())
    }

    /// When the next pending delivery is due (real time, ms).
    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(self.read().query_row(
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Record a delivery attempt: sent, or failed with `error` and retried
    /// at `retry_at` (ms, real time) unless `retry_at` is `None` (given up).
    pub fn delivery_attempted(
        &self,
        id: i64,
        now: DateTime<Utc>,
        result: std::result::Result<(), (String, Option<i64>)>,
    ) -> Result<()> {
        let conn = self.lock();
        match result {
            Ok(()) => conn.execute(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?2, \
                 last_error = NULL WHERE id = ?1",
                params![id, ts(now)],
            )?,
            Err((error, Some(retry_at))) => conn.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_at = ?3 WHERE id = ?1",
                params![id, error, retry_at],
            )?,
            Err((error, None)) => conn.execute(
                "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, \
                 last_error = ?2 WHERE id = ?1",
                params![id, error],
            )?,
        };
        Ok(())
    }

    /// An agent's in-app feed after item `after`, oldest first.
    pub fn feed(&self, tenant: &str, agent: &str, after: i64) -> Result<Vec<FeedItem>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT id, agent, ticket, title, body, at FROM feed \
             WHERE tenant = ?1 AND agent = ?2 AND id > ?3 ORDER BY id LIMIT 1000",
        )?;
        let rows = st.query_map(params![tenant, agent, after], |r| {
            Ok(FeedItem {
                id: r.get(0)?,
                agent: r.get(1)?,
                ticket: r.get(2)?,
                title: r.get(3)?,
                body: r.get(4)?,
                at: r.get(5)?,
            })
        })?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Pending timers due at `now_ms`, oldest first.
    pub fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<Timer>> {
        self.due_timers_except(now_ms, limit, &[], &[])
    }

    /// Timers due at `now_ms`, oldest first, leaving out those of the
    /// `(tenant, ticket)` pairs in `busy` (already being fired) and of the
    /// tenants in `full` (at their share of timer slots).
    pub fn due_timers_except(
        &self,
        now_ms: i64,
        limit: u32,
        busy: &[(String, String)],
        full: &[String],
    ) -> Result<Vec<Timer>> {
        let conn = self.lock();
        let mut sql = String::from(
            "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers \
             WHERE state = 'pending' AND due_at <= ?1",
        );
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&now_ms];
        if !busy.is_empty() {
            let pairs: Vec<String> = (0..busy.len())
                .map(|i| format!("(?{}, ?{})", 3 + 2 * i, 4 + 2 * i))
                .collect();
            sql.push_str(&format!(
                " AND (tenant, ticket) NOT IN (VALUES {})",
                pairs.join(", ")
            ));
        }
        if !full.is_empty() {
            let first = 3 + 2 * busy.len();
            let marks: Vec<String> = (0..full.len()).map(|i| format!("?{}", first + i)).collect();
            sql.push_str(&format!(" AND tenant NOT IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY due_at, id LIMIT ?2");
        args.push(&limit);
        for (tenant, ticket) in busy {
            args.push(tenant);
            args.push(ticket);
        }
        for tenant in full {
            args.push(tenant);
        }
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map(args.as_slice(), timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// A timer failed: back it off by `retry_in_ms`, or dead-letter it after
    /// [`TIMER_MAX_ATTEMPTS`]. Returns whether it was dead-lettered.
    pub fn timer_failed(
        &self,
        id: i64,
        now: DateTime<Utc>,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool> {
        let conn = self.lock();
        let attempts: i64 = conn
            .query_row(
                "UPDATE timers SET attempts = attempts + 1 WHERE id = ?1 AND state = 'pending' \
                 RETURNING attempts",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(TIMER_MAX_ATTEMPTS);
        let dead = attempts >= TIMER_MAX_ATTEMPTS;
        if dead {
            conn.execute(
                "UPDATE timers SET state = 'dead', done_at = ?2, \
                 outcome = ?3 WHERE id = ?1 AND state = 'pending'",
                params![
                    id,
                    ts(now),
                    format!("dead-lettered after {attempts} failed attempts: {error}")
                ],
            )?;
        } else {
            conn.execute(
                "UPDATE timers SET due_at = ?2, outcome = ?3 WHERE id = ?1 AND state = 'pending'",
                params![
                    id,
                    now.timestamp_millis().saturating_add(retry_in_ms),
                    format!("attempt {attempts} failed, retrying: {error}")
                ],
            )?;
        }
        Ok(dead)
    }

    /// Mark an event whose decision failed: it is never decided again.
    pub fn event_failed(&self, seq: i64, error: &str) -> Result<()> {
        self.lock().execute(
            "UPDATE events SET processed = 2, error = ?2 WHERE seq = ?1 AND processed = 0",
            params![seq, error],
        )?;
        Ok(())
    }

    /// The most recent failed events of `tenant` (newest first), at most
    /// `limit`, and how many there are in all.
    pub fn failed_events(&self, tenant: &str, limit: u32) -> Result<(Vec<EventRecord>, i64)> {
        let conn = self.read();
        let total: i64 = conn.query_row(
            "SELECT count(*) FROM events WHERE tenant = ?1 AND processed = 2",
            [tenant],
            |r| r.get(0),
        )?;
        let mut st = conn.prepare(
            "SELECT seq, ticket, kind, payload, received_at, processed, error FROM events \
             WHERE tenant = ?1 AND processed = 2 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], event_row)?;
        let events = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((events, total))
    }

    /// When the next pending timer is due, ms.
    pub fn next_timer_at(&self) -> Result<Option<i64>> {
        Ok(self.read().query_row(
            "SELECT min(due_at) FROM timers WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    /// A ticket's timers, by due time.
    pub fn timers(&self, tenant: &str, ticket: &str) -> Result<Vec<Timer>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers \
             WHERE tenant = ?1 AND ticket = ?2 ORDER BY due_at, id",
        )?;
        let rows = st.query_map([tenant, ticket], timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// The event stored with this idempotency key, if any.
    pub fn event_by_key(&self, tenant: &str, key: &str) -> Result<Option<KeyedEvent>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT seq, processed, response, error, request_hash FROM events \
                 WHERE tenant = ?1 AND idempotency_key = ?2",
                [tenant, key],
                |r| {
                    Ok(KeyedEvent {
                        seq: r.get(0)?,
                        processed: r.get(1)?,
                        response: r.get(2)?,
                        error: r.get(3)?,
                        request_hash: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }
}

/// An event found by its idempotency key.
#[derive(Debug, Clone)]
pub struct KeyedEvent {
    /// Its sequence number.
    pub seq: i64,
    /// 0 undecided, 1 decided, 2 failed.
    pub processed: i64,
    /// The answer it got, once decided.
    pub response: Option<String>,
    /// Why deciding it failed.
    pub error: Option<String>,
    /// The hash of the request it came with.
    pub request_hash: Option<String>,
}

/// A stored plugin version.
#[derive(Debug, Clone, Serialize)]
pub struct PluginVersion {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// The manifest text.
    #[serde(skip)]
    pub manifest: String,
    /// The component.
    #[serde(skip)]
    pub wasm: Vec<u8>,
    /// Size of the component, bytes.
    pub size: usize,
    /// SHA-256 of the component.
    pub digest: String,
    /// What validation said.
    pub validation: serde_json::Value,
    /// Where it came from (`api`, `watcher:PATH`).
    pub source: String,
    /// When.
    pub uploaded_at: String,
    /// Who.
    pub uploaded_by: String,
}

/// Which version of a plugin name serves for a tenant, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSlot {
    /// Name.
    pub name: String,
    /// The uploaded version in force; `None`: the built-in one.
    pub version: Option<String>,
    /// A mode overriding the manifest's (`active`, `shadow`, `disabled`).
    pub mode: Option<String>,
    /// The version in force before (for rollback).
    pub previous: Option<String>,
}

/// One change to a tenant's plugins.
#[derive(Debug, Clone, Serialize)]
pub struct PluginChange {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who (`api`, `watcher:PATH`, `crash-loop-guard`).
    pub actor: String,
    /// `uploaded`, `activated`, `mode`, `rolled-back`, `deleted`,
    /// `removed`, `rejected`, `auto-disabled`, `auto-rolled-back`.
    pub action: String,
    /// Plugin name.
    pub name: String,
    /// Version.
    pub version: Option<String>,
    /// Details: validation results, the reason.
    pub detail: serde_json::Value,
}

impl Store {
    /// A tenant's plugin slots.
    pub fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        let conn = self.lock();
        slots(&conn, tenant)
    }

    /// Tenants that have plugin slots.
    pub fn tenants_with_plugins(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st = conn.prepare("SELECT DISTINCT tenant FROM plugin_slots ORDER BY tenant")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored version, with its bytes.
    pub fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginVersion>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("{VERSION_COLUMNS} WHERE tenant = ?1 AND name = ?2 AND version = ?3"),
                [tenant, name, version],
                version_row,
            )
            .optional()?)
    }

    /// A plugin's stored versions, oldest first, without their bytes.
    pub fn plugin_versions(&self, tenant: &str, name: &str) -> Result<Vec<PluginVersion>> {
        let conn = self.read();
        let mut st = conn.prepare(&format!(
            "{VERSION_COLUMNS} WHERE tenant = ?1 AND name = ?2 ORDER BY uploaded_at, rowid"
        ))?;
        let rows = st.query_map([tenant, name], |r| {
            let mut v = version_row(r)?;
            v.wasm = Vec::new();
            Ok(v)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The names of the plugins a tenant has uploaded versions of.
    pub fn uploaded_plugin_names(&self, tenant: &str) -> Result<Vec<String>> {
        let conn = self.read();
        let mut st = conn
            .prepare("SELECT DISTINCT name FROM plugin_versions WHERE tenant = ?1 ORDER BY name")?;
        let rows = st.query_map([tenant], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The change log of a tenant's plugins, newest first.
    pub fn plugin_changes(&self, tenant: &str, limit: u32) -> Result<Vec<PluginChange>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT id, at, actor, action, name, version, detail FROM plugin_changes \
             WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], |r| {
            let detail: String = r.get(6)?;
            Ok(PluginChange {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                name: r.get(4)?,
                version: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each decision of a tenant between `since` and `until` (RFC 3339):
    /// its composed active tier and its audit entries of plugin `name`.
    pub fn decisions_with_plugin(
        &self,
        tenant: &str,
        name: &str,
        since: &str,
        until: &str,
    ) -> Result<Vec<(Option<String>, Vec<serde_json::Value>)>> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT d.id, json_extract(d.data, '$.tier') FROM decisions d \
             WHERE d.tenant = ?1 AND d.at >= ?2 AND d.at < ?3 AND d.cause LIKE 'event:%' ORDER BY d.id",
        )?;
        let decisions: Vec<(i64, Option<String>)> = st
            .query_map([tenant, since, until], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut audit = conn.prepare(
            "SELECT data FROM audit WHERE decision = ?1 AND (plugin = ?2 OR plugin LIKE ?2 || '@%')",
        )?;
        let mut out = Vec::with_capacity(decisions.len());
        for (id, tier) in decisions {
            let runs = audit
                .query_map(params![id, name], |r| r.get::<_, String>(0))?
                .map(|t| Ok(serde_json::from_str(&t?)?))
                .collect::<Result<Vec<_>>>()?;
            out.push((tier, runs));
        }
        Ok(out)
    }
}

impl Store {
    /// Every tenant's agents, for the metrics gauges.
    pub fn all_agents(&self) -> Result<Vec<(String, Agent)>> {
        let conn = self.read();
        let mut st = conn.prepare("SELECT tenant, data FROM agents ORDER BY tenant, id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (t, d) = r?;
            Ok((t, serde_json::from_str(&d)?))
        })
        .collect()
    }

    /// Deliveries by tenant, channel and status.
    pub fn delivery_counts(&self) -> Result<Vec<(String, String, String, i64)>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT tenant, channel, status, count(*) FROM deliveries GROUP BY tenant, channel, status",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tickets created per day (UTC, `YYYY-MM-DD`) of a tenant.
    pub fn tickets_per_day(&self, tenant: &str) -> Result<Vec<(String, i64)>> {
        let conn = self.read();
        let mut st = conn.prepare(
            "SELECT substr(json_extract(data, '$.ticket.created_at'), 1, 10) AS day, count(*) \
             FROM tickets WHERE tenant = ?1 GROUP BY day ORDER BY day",
        )?;
        let rows = st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const VERSION_COLUMNS: &str = "SELECT name, version, kind, manifest, wasm, digest, validation, \
     source, uploaded_at, uploaded_by FROM plugin_versions";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginVersion> {
    let wasm: Vec<u8> = r.get(4)?;
    let validation: String = r.get(6)?;
    Ok(PluginVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        kind: r.get(2)?,
        manifest: r.get(3)?,
        size: wasm.len(),
        wasm,
        digest: r.get(5)?,
        validation: serde_json::from_str(&validation).unwrap_or(serde_json::Value::Null),
        source: r.get(7)?,
        uploaded_at: r.get(8)?,
        uploaded_by: r.get(9)?,
    })
}

/// The `data` column (JSON) of the one row `sql` selects, parsed.
fn json_row<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    let text: Option<String> = conn.query_row(sql, params, |r| r.get(0)).optional()?;
    text.map(|t| Ok(serde_json::from_str(&t)?)).transpose()
}

// Queries both the store and a transaction run (a transaction derefs to
// its connection).

fn agents_of(conn: &Connection, tenant: &str) -> Result<Vec<Agent>> {
    let mut st = conn.prepare_cached("SELECT data FROM agents WHERE tenant = ?1 ORDER BY id")?;
    let rows = st.query_map([tenant], |r| r.get::<_, String>(0))?;
    rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
}

fn agent_of(conn: &Connection, tenant: &str, id: &str) -> Result<Option<Agent>> {
    json_row(
        conn,
        "SELECT data FROM agents WHERE tenant = ?1 AND id = ?2",
        [tenant, id],
    )
}

fn ticket_of(conn: &Connection, tenant: &str, id: &str) -> Result<Option<TicketState>> {
    json_row(
        conn,
        "SELECT data FROM tickets WHERE tenant = ?1 AND id = ?2",
        [tenant, id],
    )
}

fn slots(conn: &Connection, tenant: &str) -> Result<Vec<PluginSlot>> {
    let mut st = conn.prepare(
        "SELECT name, version, mode, previous FROM plugin_slots WHERE tenant = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([tenant], |r| {
        Ok(PluginSlot {
            name: r.get(0)?,
            version: r.get(1)?,
            mode: r.get(2)?,
            previous: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
    let payload: String = r.get(3)?;
    Ok(EventRecord {
        seq: r.get(0)?,
        ticket: r.get(1)?,
        kind: r.get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        received_at: r.get(4)?,
        processed: r.get::<_, i64>(5)? != 0,
        failed: r.get(6)?,
    })
}

fn timer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Timer> {
    let payload: String = r.get(5)?;
    Ok(Timer {
        id: r.get(0)?,
        tenant: r.get(1)?,
        ticket: r.get(2)?,
        kind: r.get(3)?,
        due_at: r.get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        state: r.get(6)?,
        outcome: r.get(7)?,
        attempts: r.get(8)?,
    })
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        tenant: r.get(1)?,
        ticket: r.get(2)?,
        idempotency_key: r.get(3)?,
        channel: r.get(4)?,
        recipient: r.get(5)?,
        address: r.get(6)?,
        title: r.get(7)?,
        body: r.get(8)?,
        status: r.get(9)?,
        attempts: r.get(10)?,
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        sent_at: r.get(13)?,
        priority: r.get(14)?,
    })
}

impl Tx<'_> {
    /// Set a `meta` value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Create a tenant; `false` if the id is taken.
    pub fn create_tenant(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO tenants (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, token_hash, ts(now)],
        )?;
        Ok(n == 1)
    }

    /// Give a tenant a new token hash (`revoked_at` set: the token is
    /// revoked); `false` if there is no such tenant.
    pub fn set_tenant_token(
        &self,
        id: &str,
        token_hash: &str,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        Ok(self.tx.execute(
            "UPDATE tenants SET token_hash = ?2, revoked_at = ?3 WHERE id = ?1",
            params![id, token_hash, revoked_at.map(ts)],
        )? == 1)
    }

    /// Replace a tenant's channel settings.
    pub fn set_settings(&self, tenant: &str, settings: &serde_json::Value) -> Result<()> {
        self.tx.execute(
            "UPDATE tenants SET settings = ?2, settings_rev = settings_rev + 1 WHERE id = ?1",
            params![tenant, settings.to_string()],
        )?;
        Ok(())
    }

    /// Insert or replace an agent.
    pub fn put_agent(&self, tenant: &str, agent: &Agent) -> Result<()> {
        self.tx.execute(
            "INSERT INTO agents (tenant, id, data) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data",
            params![tenant, agent.id, serde_json::to_string(agent)?],
        )?;
        Ok(())
    }

    /// One agent.
    pub fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&self.tx, tenant, id)
    }

    /// A tenant's agents.
    pub fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&self.tx, tenant)
    }

    /// A ticket's state.
    pub fn ticket(&self, tenant: &str, id: &str) -> Result<Option<TicketState>> {
        ticket_of(&self.tx, tenant, id)
    }

    /// Whether the ticket exists (without reading its state).
    pub fn ticket_exists(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM tickets WHERE tenant = ?1 AND id = ?2")?
            .exists(params![tenant, id])?)
    }

    /// Insert or replace a ticket's state.
    pub fn put_ticket(&self, tenant: &str, state: &TicketState) -> Result<()> {
        self.put_ticket_json(tenant, state, &serde_json::to_string(state)?)
    }

    /// [`Tx::put_ticket`] with the state already serialized (`json` is
    /// `state` as JSON), so a big ticket is not serialized while the
    /// writer is held.
    pub fn put_ticket_json(&self, tenant: &str, state: &TicketState, json: &str) -> Result<()> {
        let t = &state.ticket;
        self.tx.execute(
            "INSERT INTO tickets (tenant, id, data, tier, assignee, status, escalated_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data, tier = excluded.tier, \
             assignee = excluded.assignee, status = excluded.status, \
             escalated_at = excluded.escalated_at, updated_at = excluded.updated_at",
            params![
                tenant,
                t.id,
                json,
                t.tier.map(|x| name_of(&x)),
                t.assignee,
                name_of(&t.status),
                state.escalation.as_ref().map(|e| ts(e.escalated_at)),
                ts(t.updated_at.unwrap_or(t.created_at)),
            ],
        )?;
        Ok(())
    }

    /// Store an event; returns its sequence number.
    pub fn insert_event(
        &self,
        tenant: &str,
        ticket: &str,
        kind: &str,
        payload: &serde_json::Value,
        received_at: DateTime<Utc>,
        idempotency_key: Option<(&str, &str)>,
    ) -> Result<i64> {
        self.insert_event_json(
            tenant,
            ticket,
            kind,
            &payload.to_string(),
            received_at,
            idempotency_key,
        )
    }

    /// [`Tx::insert_event`] with the payload already serialized.
    pub fn insert_event_json(
        &self,
        tenant: &str,
        ticket: &str,
        kind: &str,
        payload: &str,
        received_at: DateTime<Utc>,
        idempotency_key: Option<(&str, &str)>,
    ) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO events (tenant, ticket, kind, payload, received_at, idempotency_key, \
             request_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                tenant,
                ticket,
                kind,
                payload,
                ts(received_at),
                idempotency_key.map(|k| k.0),
                idempotency_key.map(|k| k.1),
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Mark an event decided, with the response its sender got.
    pub fn event_processed(&self, seq: i64, response: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE events SET processed = 1, response = ?2 WHERE seq = ?1",
            params![seq, response],
        )?;
        Ok(())
    }

    /// Store a decision and its audit trail (one row per plugin call);
    /// returns its id.
    #[allow(clippy::too_many_arguments, reason = "the columns of one decision")]
    pub fn insert_decision(
        &self,
        tenant: &str,
        ticket: &str,
        at: DateTime<Utc>,
        cause: &str,
        escalated: bool,
        data: &serde_json::Value,
        audit: &[serde_json::Value],
    ) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO decisions (tenant, ticket, at, cause, escalated, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, ticket, ts(at), cause, escalated, data.to_string()],
        )?;
        let id = self.tx.last_insert_rowid();
        let mut st = self.tx.prepare_cached(
            "INSERT INTO audit (decision, idx, plugin, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (i, a) in audit.iter().enumerate() {
            let plugin = a["plugin"].as_str().unwrap_or("");
            st.execute(params![id, i as i64, plugin, a.to_string()])?;
        }
        Ok(id)
    }

    /// The keys already acted on for a ticket.
    pub fn fired(&self, tenant: &str, ticket: &str) -> Result<std::collections::BTreeSet<String>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT key FROM fired WHERE tenant = ?1 AND ticket = ?2")?;
        let rows = st.query_map([tenant, ticket], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Record that `key` was acted on; `false` if it already was.
    pub fn fire(&self, tenant: &str, ticket: &str, key: &str, decision: i64) -> Result<bool> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO fired (tenant, ticket, key, decision) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, ticket, key, decision],
        )?;
        Ok(n == 1)
    }

    /// Schedule a timer; returns its id.
    pub fn insert_timer(
        &self,
        tenant: &str,
        ticket: &str,
        kind: &str,
        due_at: DateTime<Utc>,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO timers (tenant, ticket, kind, due_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                tenant,
                ticket,
                kind,
                due_at.timestamp_millis(),
                payload.to_string()
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Cancel a ticket's pending timers of the given kinds, with a reason.
    pub fn cancel_timers(
        &self,
        tenant: &str,
        ticket: &str,
        kinds: &[&str],
        why: &str,
    ) -> Result<usize> {
        let mut n = 0;
        for kind in kinds {
            n += self.tx.execute(
                "UPDATE timers SET state = 'cancelled', outcome = ?4 \
                 WHERE tenant = ?1 AND ticket = ?2 AND kind = ?3 AND state = 'pending'",
                params![tenant, ticket, kind, why],
            )?;
        }
        Ok(n)
    }

    /// Cancel a ticket's pending plan steps that stop when it is claimed.
    pub fn cancel_steps_on_claim(&self, tenant: &str, ticket: &str) -> Result<usize> {
        Ok(self.tx.execute(
            "UPDATE timers SET state = 'cancelled', outcome = 'claimed' \
             WHERE tenant = ?1 AND ticket = ?2 AND kind = 'step' AND state = 'pending' \
             AND json_extract(payload, '$.step.stop_when_claimed') = 1",
            [tenant, ticket],
        )?)
    }

    /// A ticket's pending timers of one kind.
    pub fn pending_timers(&self, tenant: &str, ticket: &str, kind: &str) -> Result<Vec<Timer>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers \
             WHERE tenant = ?1 AND ticket = ?2 AND kind = ?3 AND state = 'pending' ORDER BY due_at",
        )?;
        let rows = st.query_map([tenant, ticket, kind], timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Take a due timer: `pending` → `done`. `false` if it was not pending
    /// (already fired or cancelled), so each timer fires once.
    pub fn take_timer(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let n = self.tx.execute(
            "UPDATE timers SET state = 'done', done_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, ts(now)],
        )?;
        Ok(n == 1)
    }

    /// Say what a fired timer did.
    pub fn timer_outcome(&self, id: i64, outcome: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE timers SET outcome = ?2 WHERE id = ?1",
            params![id, outcome],
        )?;
        Ok(())
    }

    /// Queue a delivery; `false` if one with the same idempotency key
    /// exists (a notification is queued once).
    pub fn insert_delivery(
        &self,
        tenant: &str,
        d: &NewDelivery,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // Cached: an escalation fans out to every subscribed endpoint.
        let n = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO deliveries (tenant, ticket, idempotency_key, channel, recipient, \
             address, title, body, status, last_error, next_attempt_at, created_at, sent_at, \
             priority) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, \
             CASE WHEN ?9 = 'sent' THEN ?11 END, ?12)",
        )?.execute(
            params![
                tenant,
                d.ticket,
                d.idempotency_key,
                d.channel,
                d.recipient,
                d.address,
                d.title,
                d.body,
                d.status,
                d.note,
                ts(now),
                d.priority,
            ],
        )?;
        Ok(n == 1)
    }

    /// When `address` last got something on `channel` (not counting held
    /// ones), at or after `since`.
    pub fn last_delivery_to(
        &self,
        tenant: &str,
        channel: &str,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> = self.tx.query_row(
            "SELECT max(created_at) FROM deliveries WHERE tenant = ?1 AND channel = ?2 \
             AND address = ?3 AND created_at >= ?4 AND status IN ('pending', 'sent')",
            params![tenant, channel, address, ts(since)],
            |r| r.get(0),
        )?;
        Ok(at.and_then(|a| a.parse().ok()))
    }

    /// Held deliveries to `address` on `channel`, oldest first; marks them
    /// `digested`.
    pub fn take_held(&self, tenant: &str, channel: &str, address: &str) -> Result<Vec<Delivery>> {
        let held = {
            let mut st = self.tx.prepare_cached(
                "SELECT id, tenant, ticket, idempotency_key, channel, recipient, address, title, \
                 body, status, attempts, last_error, created_at, sent_at, priority FROM deliveries \
                 WHERE tenant = ?1 AND channel = ?2 AND address = ?3 AND status = 'held' ORDER BY id",
            )?;
            st.query_map([tenant, channel, address], delivery_row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        self.tx.execute(
            "UPDATE deliveries SET status = 'digested' WHERE tenant = ?1 AND channel = ?2 \
             AND address = ?3 AND status = 'held'",
            [tenant, channel, address],
        )?;
        Ok(held)
    }

    /// Store a plugin version; `false` if that version exists.
    pub fn insert_plugin_version(
        &self,
        tenant: &str,
        v: &PluginVersion,
        fixtures: &serde_json::Value,
    ) -> Result<bool> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO plugin_versions (tenant, name, version, kind, manifest, wasm, \
             digest, fixtures, validation, source, uploaded_at, uploaded_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                tenant,
                v.name,
                v.version,
                v.kind,
                v.manifest,
                v.wasm,
                v.digest,
                fixtures.to_string(),
                v.validation.to_string(),
                v.source,
                v.uploaded_at,
                v.uploaded_by
            ],
        )?;
        Ok(n == 1)
    }

    /// Delete a stored version.
    pub fn delete_plugin_version(&self, tenant: &str, name: &str, version: &str) -> Result<bool> {
        Ok(self.tx.execute(
            "DELETE FROM plugin_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
            [tenant, name, version],
        )? == 1)
    }

    /// The digest of a stored version.
    pub fn version_digest(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT digest FROM plugin_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                [tenant, name, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether any stored version of any tenant has `digest`.
    pub fn digest_in_use(&self, digest: &str) -> Result<bool> {
        Ok(self.tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM plugin_versions WHERE digest = ?1)",
            [digest],
            |r| r.get(0),
        )?)
    }

    /// A tenant's plugin slots.
    pub fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        slots(&self.tx, tenant)
    }

    /// Replace a tenant's plugin slots with `new` (the whole set).
    pub fn set_plugin_slots(&self, tenant: &str, new: &[PluginSlot]) -> Result<()> {
        self.tx
            .execute("DELETE FROM plugin_slots WHERE tenant = ?1", [tenant])?;
        for s in new {
            self.tx.execute(
                "INSERT INTO plugin_slots (tenant, name, version, mode, previous) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant, s.name, s.version, s.mode, s.previous],
            )?;
        }
        Ok(())
    }

    /// Log a change to a tenant's plugins.
    #[allow(clippy::too_many_arguments, reason = "the columns of one change")]
    pub fn plugin_change(
        &self,
        tenant: &str,
        at: DateTime<Utc>,
        actor: &str,
        action: &str,
        name: &str,
        version: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT INTO plugin_changes (tenant, at, actor, action, name, version, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                tenant,
                ts(at),
                actor,
                action,
                name,
                version,
                detail.to_string()
            ],
        )?;
        Ok(())
    }

    /// Append to an agent's in-app feed; returns the item.
    pub fn insert_feed(
        &self,
        tenant: &str,
        agent: &str,
        ticket: &str,
        title: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<FeedItem> {
        self.tx.execute(
            "INSERT INTO feed (tenant, agent, ticket, title, body, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, agent, ticket, title, body, ts(now)],
        )?;
        Ok(FeedItem {
            id: self.tx.last_insert_rowid(),
            agent: agent.into(),
            ticket: ticket.into(),
            title: title.into(),
            body: body.into(),
            at: ts(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("escalator.db"), Durability::Process).unwrap();
        (store, dir)
    }

    fn noon() -> DateTime<Utc> {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let (store, dir) = open();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let path = store.path().to_path_buf();
        drop(store);
        // Reopening does not migrate again.
        let store = Store::open(&path, Durability::Power).unwrap();
        store
            .write(|tx| {
                tx.tx.execute_batch("PRAGMA user_version = 99")?;
                Ok(())
            })
            .unwrap();
        drop(store);
        let err = Store::open(&path, Durability::Process).unwrap_err();
        assert!(
            format!("{err:#}").contains("newer than this escalator"),
            "{err:#}"
        );
        drop(dir);
    }

    #[test]
    fn due_timers_leave_out_busy_tickets_and_full_tenants_and_failures_back_off() {
        let (store, _dir) = open();
        let ids = store
            .write(|tx| {
                let mut ids = Vec::new();
                for (tenant, ticket) in [("a", "T-1"), ("a", "T-2"), ("b", "T-1"), ("c", "T-9")] {
                    ids.push(tx.insert_timer(
                        tenant,
                        ticket,
                        "step",
                        noon(),
                        &serde_json::json!({}),
                    )?);
                }
                Ok(ids)
            })
            .unwrap();
        let at = noon().timestamp_millis();
        let keys = |busy: &[(String, String)], full: &[String]| -> Vec<(String, String)> {
            store
                .due_timers_except(at, 10, busy, full)
                .unwrap()
                .into_iter()
                .map(|t| (t.tenant, t.ticket))
                .collect()
        };
        assert_eq!(keys(&[], &[]).len(), 4);
        let busy = [("a".to_string(), "T-1".to_string())];
        let left = keys(&busy, &[]);
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&busy[0]));
        assert!(
            left.contains(&("b".into(), "T-1".into())),
            "same ticket id, another tenant"
        );
        assert_eq!(
            keys(&busy, &["a".into(), "c".into()]),
            [("b".to_string(), "T-1".to_string())]
        );

        // Back-off, then the dead letter.
        for attempt in 1..TIMER_MAX_ATTEMPTS {
            assert!(
                !store.timer_failed(ids[3], noon(), 1_000, "boom").unwrap(),
                "{attempt}"
            );
        }
        assert!(
            keys(&[], &[]).iter().all(|k| k.0 != "c"),
            "backed off: not due now"
        );
        assert!(store.timer_failed(ids[3], noon(), 1_000, "boom").unwrap());
        let later = store
            .due_timers_except(at + 3_600_000, 10, &[], &[])
            .unwrap();
        assert!(
            later.iter().all(|t| t.id != ids[3]),
            "dead letters never fire"
        );
        let dead = store.timers("c", "T-9").unwrap();
        assert_eq!(dead[0].state, "dead");
        assert_eq!(dead[0].attempts, TIMER_MAX_ATTEMPTS);
    }

    #[test]
    fn a_timer_fires_once_and_cancelled_timers_never() {
        let (store, _dir) = open();
        let (a, b) = store
            .write(|tx| {
                tx.create_tenant("acme", "Acme", "h", noon())?;
                let a = tx.insert_timer("acme", "T-1", "step", noon(), &serde_json::json!({}))?;
                let b =
                    tx.insert_timer("acme", "T-1", "fallback", noon(), &serde_json::json!({}))?;
                Ok((a, b))
            })
            .unwrap();
        store
            .write(|tx| {
                assert_eq!(
                    tx.cancel_timers("acme", "T-1", &["fallback"], "claimed")?,
                    1
                );
                Ok(())
            })
            .unwrap();
        let due = store.due_timers(noon().timestamp_millis(), 10).unwrap();
        assert_eq!(due.iter().map(|t| t.id).collect::<Vec<_>>(), [a]);
        assert!(store.write(|tx| tx.take_timer(a, noon())).unwrap());
        assert!(!store.write(|tx| tx.take_timer(a, noon())).unwrap(), "once");
        assert!(!store.write(|tx| tx.take_timer(b, noon())).unwrap());
        assert_eq!(store.next_timer_at().unwrap(), None);
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_behind() {
        let (store, _dir) = open();
        let err: Result<()> = store.write(|tx| {
            tx.create_tenant("acme", "Acme", "h", noon())?;
            bail!("boom")
        });
        assert!(err.is_err());
        assert!(store.tenants().unwrap().is_empty());
    }

    #[test]
    fn deliveries_are_queued_once_per_idempotency_key() {
        let (store, _dir) = open();
        let d = NewDelivery {
            ticket: "T-1".into(),
            idempotency_key: "k1".into(),
            channel: "webhook".into(),
            recipient: "ops".into(),
            address: "http://127.0.0.1:1/hook".into(),
            title: "t".into(),
            body: "b".into(),
            status: "pending".into(),
            note: None,
            priority: 2,
        };
        store
            .write(|tx| {
                tx.create_tenant("acme", "Acme", "h", noon())?;
                assert!(tx.insert_delivery("acme", &d, noon())?);
                assert!(!tx.insert_delivery("acme", &d, noon())?);
                Ok(())
            })
            .unwrap();
        let due = store.due_deliveries(1, 10).unwrap();
        assert_eq!(due.len(), 1);
        store
            .delivery_attempted(due[0].id, noon(), Err(("503".into(), Some(5_000))))
            .unwrap();
        assert!(store.due_deliveries(4_999, 10).unwrap().is_empty());
        assert_eq!(store.next_delivery_at().unwrap(), Some(5_000));
        store.delivery_attempted(due[0].id, noon(), Ok(())).unwrap();
        let all = store.deliveries("acme", Some("T-1"), 0, 100).unwrap();
        assert_eq!((all[0].status.as_str(), all[0].attempts), ("sent", 2));
        assert!(store.deliveries("other", None, 0, 100).unwrap().is_empty());
    }

    #[test]
    fn each_tenant_queue_is_read_on_its_own_most_urgent_first() {
        let (store, _dir) = open();
        let d = |key: String, address: &str, priority: i64| NewDelivery {
            ticket: "T-1".into(),
            idempotency_key: key,
            channel: "webhook".into(),
            recipient: "ops".into(),
            address: address.into(),
            title: "t".into(),
            body: "b".repeat(4096),
            status: "pending".into(),
            note: None,
            priority,
        };
        store
            .write(|tx| {
                for t in ["attacker", "victim"] {
                    tx.create_tenant(t, t, t, noon())?;
                }
                // The attacker's backlog was queued first, at the same
                // urgency; the victim's one low delivery comes last.
                for i in 0..500 {
                    tx.insert_delivery(
                        "attacker",
                        &d(format!("a{i}"), &format!("http://dead/{}", i % 50), 0),
                        noon(),
                    )?;
                }
                tx.insert_delivery("victim", &d("v-low".into(), "http://v/", 3), noon())?;
                tx.insert_delivery("victim", &d("v-crit".into(), "http://v/", 0), noon())?;
                Ok(())
            })
            .unwrap();
        let pick = |free: &dyn Fn(&str) -> usize,
                    busy: &HashSet<i64>,
                    full: &HashSet<(String, String)>| {
            store
                .due_deliveries_except(1, 16, busy, free, full)
                .unwrap()
                .into_iter()
                .map(|d| (d.tenant, d.idempotency_key))
                .collect::<Vec<_>>()
        };
        let none = HashSet::new();
        // A tenant with no free share is not read at all.
        let victim_only = |t: &str| usize::from(t == "victim") * 8;
        assert_eq!(
            pick(&victim_only, &none, &HashSet::new()),
            [
                ("victim".into(), "v-crit".into()),
                ("victim".into(), "v-low".into())
            ]
        );
        // Shares are per tenant; the picks are merged most urgent first.
        let two_each = |_: &str| 2;
        let got = pick(&two_each, &none, &HashSet::new());
        let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["a0", "a1", "v-crit", "v-low"]);
        // Deliveries in flight and full endpoints are passed over.
        let first = store.due_deliveries(1, 1).unwrap()[0].id;
        let full = HashSet::from([("attacker".to_string(), "http://dead/1".to_string())]);
        let got = pick(&two_each, &HashSet::from([first]), &full);
        let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["a2", "a3", "v-crit", "v-low"]);
    }

    #[test]
    fn settings_carry_a_revision_that_moves_when_they_change() {
        let (store, _dir) = open();
        store
            .write(|tx| tx.create_tenant("acme", "Acme", "h", noon()))
            .unwrap();
        let (rev, first) = store.settings_if_changed("acme", None).unwrap().unwrap();
        assert_eq!(first, Some(serde_json::json!({})));
        assert_eq!(
            store.settings_if_changed("acme", Some(rev)).unwrap(),
            Some((rev, None))
        );
        let s = serde_json::json!({"slack_webhook_url": "https://hooks.slack.com/x"});
        store.write(|tx| tx.set_settings("acme", &s)).unwrap();
        let (next, now) = store
            .settings_if_changed("acme", Some(rev))
            .unwrap()
            .unwrap();
        assert!(next > rev);
        assert_eq!(now, Some(s));
        assert_eq!(store.settings_if_changed("nobody", None).unwrap(), None);
    }
}
