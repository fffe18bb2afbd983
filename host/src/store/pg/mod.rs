//! PostgreSQL, for several `escalator serve` instances on one database.
//!
//! [`PgStore`] implements the same concern traits as
//! [`SqliteStore`](super::SqliteStore); nothing above the store knows
//! which one it has. It holds a small pool of connections (rust-postgres's
//! synchronous client, called from blocking threads as rusqlite is), each
//! with its own cache of prepared statements, so a statement is parsed
//! once per connection. Every write is one transaction
//! ([`Store::write`](super::Store)), committed before the caller answers.
//!
//! Where SQLite has one writer, PostgreSQL has many: two instances (or two
//! threads of one) may write at once. The store's claims are therefore
//! single statements that test and set in one step (a timer is taken by
//! `UPDATE … WHERE state = 'pending'`, a delivery claimed by moving its
//! due time forward only if it is still due), which PostgreSQL's row locks
//! make exclusive: the second claimant waits for the first to commit and
//! then finds nothing to take.

mod concerns;
mod schema;

pub use schema::{MIGRATIONS, migrate};

use super::{Backend, Hold, Notice, Result, StoreError, Tx};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The channel of `NOTIFY`: plugin changes and feed items, as they commit.
const CHANNEL: &str = "escalator";

/// Pass each notice the listening `client` gets to `on`, until the
/// connection fails.
fn hear(client: &mut postgres::Client, on: &dyn Fn(Notice)) {
    loop {
        let next = client
            .notifications()
            .timeout_iter(Duration::from_secs(30))
            .next();
        match next {
            Ok(Some(n)) => {
                if let Some(notice) = parse_notice(n.payload()) {
                    on(notice);
                }
            }
            Ok(None) if client.is_closed() => return,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "listening to PostgreSQL failed; reconnecting");
                return;
            }
        }
    }
}

/// How long starting to listen waits for the first `LISTEN` to hold.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Connections per store, at most: enough for the blocking threads that
/// decide events and the workers beside them.
const MAX_CONNECTIONS: usize = 16;

/// How long a caller waits for a free connection before giving up.
const CONNECTION_WAIT: Duration = Duration::from_secs(30);

/// How long connecting may take (unless the URL says otherwise).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection and its prepared statements.
struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A parameter list.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What a statement runs on: a pooled connection or a transaction. The
/// concern implementations are written once against it.
trait Sql {
    /// The rows `sql` returns.
    fn rows(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>>;
    /// Run `sql`; how many rows it changed.
    fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64>;
    /// The row `sql` returns, if any (the first if several).
    fn opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
    /// The one row `sql` returns.
    fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.opt(sql, params)?
            .ok_or_else(|| StoreError::Postgres(format!("{}: no row", head(sql))))
    }
}

/// The start of a statement, to say which one failed.
fn head(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

fn failed(sql: &str, e: postgres::Error) -> StoreError {
    schema::pg(&head(sql), e)
}

/// `sql` prepared on `client`, through `cache`.
fn prepared<C: GenericClient>(
    client: &mut C,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(sql).map_err(|e| failed(sql, e))?;
    cache.insert(sql.to_string(), st.clone());
    Ok(st)
}

fn rows_on<C: GenericClient>(
    client: &mut C,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>> {
    let st = prepared(client, cache, sql)?;
    client.query(&st, params).map_err(|e| failed(sql, e))
}

fn exec_on<C: GenericClient>(
    client: &mut C,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
    params: Params<'_>,
) -> Result<u64> {
    let st = prepared(client, cache, sql)?;
    client.execute(&st, params).map_err(|e| failed(sql, e))
}

impl Sql for PgConn {
    fn rows(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        rows_on(&mut self.client, &mut self.statements, sql, params)
    }
    fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        exec_on(&mut self.client, &mut self.statements, sql, params)
    }
}

/// The open transaction of a [`PgTx`].
struct TxInner<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl Sql for TxInner<'_> {
    fn rows(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        rows_on(&mut self.tx, self.statements, sql, params)
    }
    fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        exec_on(&mut self.tx, self.statements, sql, params)
    }
}

/// A PostgreSQL transaction (see [`Store::write`](super::Store)). Its
/// methods take `&self`, as the traits' do; the transaction is used by one
/// thread at a time.
pub struct PgTx<'a> {
    inner: std::cell::RefCell<TxInner<'a>>,
    /// The earliest timer it inserted.
    pub(super) inserted: crate::store::timers::TxInserted,
}

impl<'a> PgTx<'a> {
    fn db(&self) -> std::cell::RefMut<'_, TxInner<'a>> {
        self.inner.borrow_mut()
    }
}

/// Idle connections and how many are open in all.
struct Pool {
    idle: Vec<PgConn>,
    open: usize,
}

/// The PostgreSQL backend: a pool of connections to one database.
pub struct PgStore {
    config: postgres::Config,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// The connection that holds this instance's ticket locks, and the
    /// number of its session (a new one after a reconnect).
    locks: Mutex<Option<(PgConn, u64)>>,
    sessions: std::sync::atomic::AtomicU64,
    /// Big conversations as last read ([`crate::store::conversations`]).
    conversations: crate::store::conversations::ConversationCache,
    /// The earliest timer inserted since the scheduler last looked.
    pub(super) inserted: crate::store::timers::Inserted,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: only where it points.
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// A connection lent by the pool; back to it when dropped (unless it
/// broke).
struct Lent<'a> {
    store: &'a PgStore,
    conn: Option<PgConn>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn
            .as_ref()
            .expect("a lent connection is present until dropped")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn
            .as_mut()
            .expect("a lent connection is present until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut pool = self.store.pool();
        match self.conn.take() {
            Some(c) if !c.client.is_closed() => pool.idle.push(c),
            _ => pool.open -= 1,
        }
        drop(pool);
        self.store.freed.notify_one();
    }
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user:pass@host/db`)
    /// and migrate it. `durability`: [`Durability::Process`] commits
    /// without waiting for PostgreSQL's disk (`synchronous_commit = off`:
    /// an Escalator instance killed loses nothing acknowledged, a
    /// database server crash may lose its last commits);
    /// [`Durability::Power`] waits for it.
    pub fn open(url: &str, durability: super::Durability) -> Result<PgStore> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("the database URL: {e}")))?;
        if durability == super::Durability::Process {
            let options = match config.get_options() {
                Some(o) => format!("{o} -c synchronous_commit=off"),
                None => "-c synchronous_commit=off".to_string(),
            };
            config.options(&options);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("escalator");
        }
        let store = PgStore {
            config,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            locks: Mutex::new(None),
            sessions: std::sync::atomic::AtomicU64::new(0),
            conversations: Default::default(),
            inserted: Default::default(),
        };
        migrate(&mut store.conn()?.client)?;
        Ok(store)
    }

    /// The lock connection, connected if it is not (or broke).
    fn lock_conn(&self) -> Result<std::sync::MutexGuard<'_, Option<(PgConn, u64)>>> {
        let mut lock = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if lock.as_ref().is_none_or(|(c, _)| c.client.is_closed()) {
            if lock.is_some() {
                tracing::warn!(
                    "the ticket lock connection closed: its locks are released; reconnecting"
                );
            }
            let client = self
                .config
                .connect(NoTls)
                .map_err(|e| schema::pg("connecting the ticket lock session", e))?;
            let session = self
                .sessions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *lock = Some((
                PgConn {
                    client,
                    statements: HashMap::new(),
                },
                session,
            ));
        }
        Ok(lock)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than
    /// [`MAX_CONNECTIONS`] are open, else the next one freed.
    fn conn(&self) -> Result<Lent<'_>> {
        let deadline = std::time::Instant::now() + CONNECTION_WAIT;
        let mut pool = self.pool();
        loop {
            if let Some(c) = pool.idle.pop() {
                return Ok(Lent {
                    store: self,
                    conn: Some(c),
                });
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                drop(pool);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Lent {
                        store: self,
                        conn: Some(PgConn {
                            client,
                            statements: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.pool().open -= 1;
                        self.freed.notify_one();
                        Err(schema::pg("connecting to PostgreSQL", e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Postgres(format!(
                    "no free connection after {} s ({MAX_CONNECTIONS} in use)",
                    CONNECTION_WAIT.as_secs()
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Backend for PgStore {
    fn transaction(&self, f: &mut dyn FnMut(&Tx<'_>) -> bool) -> Result<()> {
        let mut lent = self.conn()?;
        let PgConn { client, statements } = &mut *lent;
        let tx = client
            .transaction()
            .map_err(|e| schema::pg("beginning a transaction", e))?;
        let tx = PgTx {
            inner: std::cell::RefCell::new(TxInner { tx, statements }),
            inserted: Default::default(),
        };
        if f(&tx) {
            let PgTx { inner, inserted } = tx;
            inner
                .into_inner()
                .tx
                .commit()
                .map_err(|e| schema::pg("committing", e))?;
            inserted.committed(&self.inserted);
        }
        // Otherwise dropping the transaction rolls it back.
        Ok(())
    }

    fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn()?
            .one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0))
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        match self
            .conn()?
            .opt("SELECT value FROM meta WHERE key = $1", &[&key])?
        {
            Some(r) => r
                .try_get(0)
                .map_err(|e| StoreError::Postgres(format!("meta {key}: {e}"))),
            None => Ok(None),
        }
    }

    /// A connection of its own that `LISTEN`s, on a thread; reconnects
    /// after a second when the connection drops (what is committed
    /// meanwhile is found by the caller's periodic looks). Returns once
    /// the first `LISTEN` holds (or after [`LISTEN_WAIT`]), so an instance
    /// that says it is ready hears what others commit.
    fn listen(&self, on: Box<dyn Fn(Notice) + Send>) -> Result<bool> {
        let config = self.config.clone();
        let (ready, listening) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || {
                loop {
                    match config.connect(NoTls) {
                        Ok(mut client) => {
                            match client.batch_execute(&format!("LISTEN {CHANNEL}")) {
                                Ok(()) => {
                                    let _ = ready.send(());
                                    hear(&mut client, &*on);
                                }
                                Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "connecting to listen failed; retrying")
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .map_err(|e| StoreError::Postgres(format!("starting the listener: {e}")))?;
        if listening.recv_timeout(LISTEN_WAIT).is_err() {
            tracing::warn!(
                "not listening to PostgreSQL yet; going on, the periodic looks catch up"
            );
        }
        Ok(true)
    }

    /// A session-level advisory lock, taken on the store's one lock
    /// connection (a session holds any number of them; polled with
    /// `pg_try_advisory_lock`, since a waiting `pg_advisory_lock` would
    /// hold that connection for everyone), held until the hold is
    /// dropped. A killed instance's session ends and PostgreSQL releases
    /// its locks. The engine holds the ticket in-process first: a
    /// session's advisory locks are re-entrant.
    fn hold_ticket(&self, tenant: &str, ticket: &str) -> Result<Box<dyn Hold + '_>> {
        let key = ticket_key(tenant, ticket);
        let mut wait = Duration::from_millis(1);
        loop {
            let (got, session) = {
                let mut lock = self.lock_conn()?;
                let (conn, session) = lock.as_mut().expect("connected by lock_conn");
                let got: bool = match conn.one("SELECT pg_try_advisory_lock($1)", &[&key]) {
                    Ok(r) => r
                        .try_get(0)
                        .map_err(|e| StoreError::Postgres(format!("locking a ticket: {e}")))?,
                    Err(e) => {
                        if conn.client.is_closed() {
                            *lock = None;
                        }
                        return Err(e);
                    }
                };
                (got, *session)
            };
            if got {
                return Ok(Box::new(TicketHold {
                    store: self,
                    key,
                    session,
                }));
            }
            // Another instance decides this ticket now.
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(20));
        }
    }
}

/// A notification's payload: `plugins:TENANT` or `feed:ID`.
fn parse_notice(payload: &str) -> Option<Notice> {
    match payload.split_once(':')? {
        ("plugins", tenant) => Some(Notice::Plugins(tenant.to_string())),
        ("feed", id) => id.parse().ok().map(Notice::Feed),
        _ => None,
    }
}

/// The advisory lock key of a ticket: 64 bits of SHA-256 of its tenant and
/// id (two tickets sharing a key would only be decided one at a time).
fn ticket_key(tenant: &str, ticket: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0])
        .chain_update(ticket.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A ticket held by [`PgStore::hold_ticket`]: its key, in the lock
/// session `session`.
struct TicketHold<'a> {
    store: &'a PgStore,
    key: i64,
    session: u64,
}

impl Hold for TicketHold<'_> {}

impl Drop for TicketHold<'_> {
    fn drop(&mut self) {
        let mut lock = self.store.locks.lock().unwrap_or_else(|e| e.into_inner());
        match lock.as_mut() {
            // The session it was taken in ended: PostgreSQL released it.
            Some((_, session)) if *session != self.session => {}
            None => {}
            Some((conn, _)) => {
                if let Err(e) = conn.exec("SELECT pg_advisory_unlock($1)", &[&self.key]) {
                    tracing::warn!(error = %e, "releasing a ticket's lock failed");
                    if conn.client.is_closed() {
                        *lock = None;
                    }
                }
            }
        }
    }
}
