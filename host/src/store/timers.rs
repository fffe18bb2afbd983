//! Durable timers: scheduled, taken once, cancelled, retried with backoff,
//! dead-lettered.

use super::*;

/// The earliest due time (ms) of the timers this process's committed
/// transactions inserted since the scheduler last took it: what lets the
/// scheduler, told of new timers, know when to wake without reading the
/// store.
#[derive(Debug)]
pub struct Inserted(std::sync::atomic::AtomicI64);

impl Default for Inserted {
    fn default() -> Self {
        Inserted(std::sync::atomic::AtomicI64::new(i64::MAX))
    }
}

impl Inserted {
    /// A transaction that inserted a timer due at `ms` (or `i64::MAX`:
    /// none) committed.
    fn note(&self, ms: i64) {
        if ms != i64::MAX {
            self.0.fetch_min(ms, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// The earliest since the last take, if any was inserted.
    pub(crate) fn take(&self) -> Option<i64> {
        let ms = self.0.swap(i64::MAX, std::sync::atomic::Ordering::AcqRel);
        (ms != i64::MAX).then_some(ms)
    }
}

/// The earliest due time of the timers one transaction inserted, noted in
/// its store's [`Inserted`] once it commits (a rolled-back one tells
/// nothing).
#[derive(Debug)]
pub(crate) struct TxInserted(std::cell::Cell<i64>);

impl Default for TxInserted {
    fn default() -> Self {
        TxInserted(std::cell::Cell::new(i64::MAX))
    }
}

impl TxInserted {
    /// The transaction inserted a timer due at `due_at`.
    pub(crate) fn insert(&self, due_at: DateTime<Utc>) {
        self.0.set(self.0.get().min(due_at.timestamp_millis()));
    }

    /// The transaction committed.
    pub(crate) fn committed(self, into: &Inserted) {
        into.note(self.0.get());
    }
}

/// What a timer does when it falls due (stored as its name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// Decide on the ticket again: a trigger asked to be woken.
    Wake,
    /// A step of a notification plan.
    Step,
    /// A fallback reassignment of an unclaimed ticket.
    Fallback,
    /// The next chunk of an escalation's webhook fan-out.
    Fanout,
    /// Send the deliveries held for a digest.
    Digest,
    /// A kind this version does not know (written by another version):
    /// skipped when due.
    Unknown(String),
}

impl TimerKind {
    /// Its stored name.
    pub fn as_str(&self) -> &str {
        match self {
            TimerKind::Wake => "wake",
            TimerKind::Step => "step",
            TimerKind::Fallback => "fallback",
            TimerKind::Fanout => "fanout",
            TimerKind::Digest => "digest",
            TimerKind::Unknown(s) => s,
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> TimerKind {
        match s {
            "wake" => TimerKind::Wake,
            "step" => TimerKind::Step,
            "fallback" => TimerKind::Fallback,
            "fanout" => TimerKind::Fanout,
            "digest" => TimerKind::Digest,
            other => TimerKind::Unknown(other.to_string()),
        }
    }
}

impl std::fmt::Display for TimerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TimerKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Attempts after which a failing timer is dead-lettered.
pub const TIMER_MAX_ATTEMPTS: i64 = 5;
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
    pub kind: TimerKind,
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
pub(super) fn timer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Timer> {
    let payload: String = r.get(5)?;
    Ok(Timer {
        id: r.get(0)?,
        tenant: r.get(1)?,
        ticket: r.get(2)?,
        kind: TimerKind::parse(&r.get::<_, String>(3)?),
        due_at: r.get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        state: r.get(6)?,
        outcome: r.get(7)?,
        attempts: r.get(8)?,
    })
}
impl Timers for SqliteStore {
    fn due_timers_except(
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
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(args.as_slice(), timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn timer_failed(
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
            exec(
                &conn,
                "UPDATE timers SET state = 'dead', done_at = ?2, \
                 outcome = ?3 WHERE id = ?1 AND state = 'pending'",
                params![
                    id,
                    ts(now),
                    format!("dead-lettered after {attempts} failed attempts: {error}")
                ],
            )?;
        } else {
            exec(
                &conn,
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

    fn take_inserted(&self) -> Option<i64> {
        self.inserted.take()
    }

    fn next_timer_at(&self) -> Result<Option<i64>> {
        Ok(row(
            &self.read(),
            "SELECT min(due_at) FROM timers WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    fn timers(&self, tenant: &str, ticket: &str) -> Result<Vec<Timer>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers \
             WHERE tenant = ?1 AND ticket = ?2 ORDER BY due_at, id",
        )?;
        let rows = st.query_map([tenant, ticket], timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }
}

impl TimersTx for SqliteTx<'_> {
    fn insert_timer(
        &self,
        tenant: &str,
        ticket: &str,
        kind: TimerKind,
        due_at: DateTime<Utc>,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        self.inserted.insert(due_at);
        exec(
            &self.tx,
            "INSERT INTO timers (tenant, ticket, kind, due_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                tenant,
                ticket,
                kind.as_str(),
                due_at.timestamp_millis(),
                payload.to_string()
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn cancel_timers(
        &self,
        tenant: &str,
        ticket: &str,
        kinds: &[TimerKind],
        why: &str,
    ) -> Result<usize> {
        let mut n = 0;
        for kind in kinds {
            n += exec(
                &self.tx,
                "UPDATE timers SET state = 'cancelled', outcome = ?4 \
                 WHERE tenant = ?1 AND ticket = ?2 AND kind = ?3 AND state = 'pending'",
                params![tenant, ticket, kind.as_str(), why],
            )?;
        }
        Ok(n)
    }

    fn cancel_steps_on_claim(&self, tenant: &str, ticket: &str) -> Result<usize> {
        Ok(exec(
            &self.tx,
            "UPDATE timers SET state = 'cancelled', outcome = 'claimed' \
             WHERE tenant = ?1 AND ticket = ?2 AND kind = 'step' AND state = 'pending' \
             AND json_extract(payload, '$.step.stop_when_claimed') = 1",
            [tenant, ticket],
        )?)
    }

    fn pending_timers(&self, tenant: &str, ticket: &str, kind: TimerKind) -> Result<Vec<Timer>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers \
             WHERE tenant = ?1 AND ticket = ?2 AND kind = ?3 AND state = 'pending' ORDER BY due_at",
        )?;
        let rows = st.query_map([tenant, ticket, kind.as_str()], timer_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn cancel_timer(&self, id: i64, why: &str) -> Result<bool> {
        let n = exec(
            &self.tx,
            "UPDATE timers SET state = 'cancelled', outcome = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, why],
        )?;
        Ok(n == 1)
    }

    fn take_timer(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let n = exec(
            &self.tx,
            "UPDATE timers SET state = 'done', done_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, ts(now)],
        )?;
        Ok(n == 1)
    }

    fn timer_outcome(&self, id: i64, outcome: &str) -> Result<()> {
        exec(
            &self.tx,
            "UPDATE timers SET outcome = ?2 WHERE id = ?1",
            params![id, outcome],
        )?;
        Ok(())
    }
}

/// What the engine reads and records about durable timers, outside a transaction.
pub trait Timers {
    /// Pending timers due at `now_ms`, oldest first.
    fn due_timers(&self, now_ms: i64, limit: u32) -> Result<Vec<Timer>> {
        self.due_timers_except(now_ms, limit, &[], &[])
    }

    /// Timers due at `now_ms`, oldest first, leaving out those of the
    /// `(tenant, ticket)` pairs in `busy` (already being fired) and of the
    /// tenants in `full` (at their share of timer slots).
    fn due_timers_except(
        &self,
        now_ms: i64,
        limit: u32,
        busy: &[(String, String)],
        full: &[String],
    ) -> Result<Vec<Timer>>;

    /// A timer failed: back it off by `retry_in_ms`, or dead-letter it after
    /// [`TIMER_MAX_ATTEMPTS`]. Returns whether it was dead-lettered.
    fn timer_failed(
        &self,
        id: i64,
        now: DateTime<Utc>,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool>;

    /// When the next pending timer is due, ms.
    fn next_timer_at(&self) -> Result<Option<i64>>;

    /// The earliest due time (ms) of the timers this process inserted
    /// (in transactions that committed) since the last call; `None` if it
    /// inserted none. Timers other instances insert are not in it.
    fn take_inserted(&self) -> Option<i64>;

    /// A ticket's timers, by due time.
    fn timers(&self, tenant: &str, ticket: &str) -> Result<Vec<Timer>>;
}

/// What a transaction ([`Store::write`]) reads and writes of durable timers.
pub trait TimersTx {
    /// Schedule a timer; returns its id.
    fn insert_timer(
        &self,
        tenant: &str,
        ticket: &str,
        kind: TimerKind,
        due_at: DateTime<Utc>,
        payload: &serde_json::Value,
    ) -> Result<i64>;

    /// Cancel a ticket's pending timers of the given kinds, with a reason.
    fn cancel_timers(
        &self,
        tenant: &str,
        ticket: &str,
        kinds: &[TimerKind],
        why: &str,
    ) -> Result<usize>;

    /// Cancel a ticket's pending plan steps that stop when it is claimed.
    fn cancel_steps_on_claim(&self, tenant: &str, ticket: &str) -> Result<usize>;

    /// A ticket's pending timers of one kind.
    fn pending_timers(&self, tenant: &str, ticket: &str, kind: TimerKind) -> Result<Vec<Timer>>;

    /// Cancel one pending timer, with a reason; `false` if it was not
    /// pending.
    fn cancel_timer(&self, id: i64, why: &str) -> Result<bool>;

    /// Take a due timer: `pending` → `done`. `false` if it was not pending
    /// (already fired or cancelled), so each timer fires once.
    fn take_timer(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;

    /// Say what a fired timer did.
    fn timer_outcome(&self, id: i64, outcome: &str) -> Result<()>;
}
