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

pub mod conversations;
mod deliveries;
mod error;
pub mod pg;
mod plugins;
mod schema;
mod tenants;
mod tickets;
mod timers;

use conversations::{Batch, ConversationCache};
pub use deliveries::*;
pub use error::{Result, StoreError};
pub use pg::PgStore;
pub use plugins::*;
use schema::MIGRATIONS;
pub use tenants::*;
pub use tickets::*;
pub use timers::*;

use crate::model::{self, Agent, TicketState};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

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

/// The store as the engine, the API and the workers use it: any backend.
/// Reads and single-row updates are methods of the concern traits
/// ([`Tenants`], [`Tickets`], [`Timers`], [`Deliveries`], [`Plugins`]);
/// everything else happens in one transaction through [`Store::write`],
/// whose [`Tx`] has the concern traits' `…Tx` halves. SQLite
/// ([`SqliteStore`]) is the first backend; a second implements the same
/// traits and nothing above the store changes.
pub type Store = dyn Backend;

/// A transaction of any backend (see [`Store::write`]).
pub type Tx<'a> = dyn Transaction + 'a;

/// A backend: every concern's operations outside a transaction, and
/// transactions.
pub trait Backend:
    Tenants + Tickets + Timers + Deliveries + Plugins + std::fmt::Debug + Send + Sync
{
    /// Run `f` in one transaction: commit if it returns `true`, roll back
    /// if it returns `false`. Callers use [`Store::write`].
    fn transaction(&self, f: &mut dyn FnMut(&Tx<'_>) -> bool) -> Result<()>;

    /// The schema version.
    fn schema_version(&self) -> Result<i64>;

    /// A value of the `meta` table.
    fn meta(&self, key: &str) -> Result<Option<String>>;

    /// Hold `(tenant, ticket)` against every other instance on this
    /// database until the returned value is dropped, so one ticket's
    /// events and timers are decided one at a time across instances. The
    /// engine holds its own in-process lock first; a store only one
    /// instance uses (SQLite) holds nothing more.
    fn hold_ticket(&self, _tenant: &str, _ticket: &str) -> Result<Box<dyn Hold + '_>> {
        Ok(Box::new(()))
    }

    /// Call `on` with each change any instance on this database commits
    /// (this one's too), as it commits, for as long as the process runs.
    /// `false`: this backend cannot, and the caller's periodic look is
    /// all there is (it stays on as a backstop either way).
    fn listen(&self, _on: Box<dyn Fn(Notice) + Send>) -> Result<bool> {
        Ok(false)
    }

    /// Let low-lane write transactions wait while `gate` says normal-lane
    /// work is in progress ([`crate::lane`]); a backend whose writers do
    /// not queue behind each other ignores it.
    fn defer_low_writes_to(&self, _gate: Arc<crate::lane::Gate>) {}
}

/// A change another instance on the database committed (see
/// [`Backend::listen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A tenant's plugin slots changed.
    Plugins(String),
    /// An in-app feed item was written (its id).
    Feed(i64),
}

/// Something held until dropped (see [`Backend::hold_ticket`]).
pub trait Hold {}

impl Hold for () {}

/// Everything a transaction can do.
pub trait Transaction: TenantsTx + TicketsTx + TimersTx + DeliveriesTx + PluginsTx {}

impl<T: TenantsTx + TicketsTx + TimersTx + DeliveriesTx + PluginsTx> Transaction for T {}

impl dyn Backend + '_ {
    /// Run `f` in one transaction; commit if it returns `Ok`, roll back
    /// if it returns an error (of the caller's type: the store's own
    /// errors convert into it).
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out = None;
        let done = self.transaction(&mut |tx| {
            let Some(f) = f.take() else { return false };
            let result = f(tx);
            let commit = result.is_ok();
            out = Some(result);
            commit
        });
        match (done, out) {
            // The closure failed: rolled back, its error stands.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            // Beginning or committing failed.
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => Err(StoreError::NotRun.into()),
        }
    }
}

/// The SQLite backend: one writer connection and a pool of readers on a
/// file in WAL mode.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Read-only connections: WAL lets them read while the writer writes,
    /// so list endpoints, the dashboard and the delivery queue never wait
    /// behind a long transaction.
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// Tells the checkpointer to stop.
    checkpointer: Arc<(Mutex<bool>, std::sync::Condvar)>,
    /// The checkpointer's thread, joined when the store is dropped: its
    /// connection is closed before the drop returns.
    checkpointer_thread: Option<std::thread::JoinHandle<()>>,
    /// Whose write transaction goes next: normal-lane ones before
    /// low-lane ones ([`crate::lane`]).
    turns: crate::lane::WriterTurns,
    /// Big conversations as last read ([`conversations`]).
    conversations: ConversationCache,
    /// Write transactions committed ([`SqliteStore::commits`]).
    commits: std::sync::atomic::AtomicU64,
    /// The earliest timer inserted since the scheduler last looked.
    inserted: timers::Inserted,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let (stop, cv) = &*self.checkpointer;
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        // Its connection closed now, not after the store is gone (a data
        // directory removed then could get a WAL file back).
        if let Some(t) = self.checkpointer_thread.take() {
            let _ = t.join();
        }
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
fn checkpointer(
    path: &Path,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
) -> Result<std::thread::JoinHandle<()>> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::open("opening the checkpointer of", path, e))?;
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
                if *stopped {
                    break;
                }
                if let Err(e) =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::open("starting the checkpointer of", path, e))
}

/// A SQLite write transaction (see [`Store::write`]).
pub struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    /// The earliest timer it inserted.
    inserted: timers::TxInserted,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, and migrate it.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::open("creating the data directory", dir, e))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::open("opening the database", path, e))?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = {WAL_PAGES_INLINE};"
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let migrate = |source| StoreError::Migration {
                path: path.to_path_buf(),
                version: i + 1,
                source,
            };
            let tx = conn.transaction()?;
            tx.execute_batch(sql).map_err(migrate)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(migrate)?;
            tx.commit().map_err(migrate)?;
        }
        let readers = (0..READERS)
            .map(|_| {
                let r = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| StoreError::open("opening a reader of", path, e))?;
                r.execute_batch("PRAGMA busy_timeout = 5000;")?;
                r.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(Mutex::new(r))
            })
            .collect::<Result<Vec<_>>>()?;
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let thread = checkpointer(path, stop.clone())?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            checkpointer: stop,
            checkpointer_thread: Some(thread),
            turns: crate::lane::WriterTurns::default(),
            conversations: ConversationCache::default(),
            commits: Default::default(),
            inserted: Default::default(),
        })
    }

    /// Write transactions committed since the store was opened: what an
    /// event costs the one writer.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
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
}

impl Backend for SqliteStore {
    fn transaction(&self, f: &mut dyn FnMut(&Tx<'_>) -> bool) -> Result<()> {
        let _turn = self.turns.take();
        let mut conn = self.lock();
        let tx = SqliteTx {
            tx: conn.transaction()?,
            inserted: Default::default(),
        };
        if f(&tx) {
            tx.tx.commit()?;
            tx.inserted.committed(&self.inserted);
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Otherwise dropping the transaction rolls it back.
        Ok(())
    }

    fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn defer_low_writes_to(&self, gate: Arc<crate::lane::Gate>) {
        self.turns.defer_to(gate);
    }
}

/// Run `sql` through the connection's cache of prepared statements: the
/// per-event statements are parsed once per connection, not on every call.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// The one row `sql` selects, through the statement cache (see [`exec`]).
fn row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// Statements each connection keeps prepared (rusqlite's default is 16;
/// the store has about 60).
const STATEMENT_CACHE: usize = 96;

/// The `data` column (JSON) of the one row `sql` selects, parsed.
fn json_row<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    let text: Option<String> = row(conn, sql, params, |r| r.get(0)).optional()?;
    text.map(|t| Ok(serde_json::from_str(&t)?)).transpose()
}

// Queries both the store and a transaction run (a transaction derefs to
// its connection).

#[cfg(test)]
mod tests;
