//! Notification deliveries (queued once per idempotency key, attempted,
//! held for digests) and the in-app feeds.

use super::*;
use crate::model::Channel;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for the worker (or its retry).
    Pending,
    /// Held for a digest.
    Held,
    /// Delivered (or, in-app, written to the feed).
    Sent,
    /// Given up after its attempts, or refused for good.
    Failed,
    /// Not sent, with the reason in its note (no address, no channel set up).
    Skipped,
    /// Sent as part of a digest.
    Digested,
}

impl DeliveryStatus {
    const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Held,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Skipped,
        DeliveryStatus::Digested,
    ];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Held => "held",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Digested => "digested",
        }
    }

    /// The status of a stored name.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ToSql for DeliveryStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeliveryStatus {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = v.as_str()?;
        DeliveryStatus::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown delivery status {s:?}").into()))
    }
}

impl ToSql for Channel {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Channel {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = v.as_str()?;
        Channel::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown channel {s:?}").into()))
    }
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
    pub channel: Channel,
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
    pub status: DeliveryStatus,
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
    /// The channel.
    pub channel: Channel,
    /// Recipient.
    pub recipient: String,
    /// Address.
    pub address: String,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Initial status (`pending`, `held`, `sent`, `skipped`).
    pub status: DeliveryStatus,
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
pub(super) fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
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
impl Deliveries for SqliteStore {
    fn deliveries(
        &self,
        tenant: &str,
        ticket: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT id, tenant, ticket, idempotency_key, channel, recipient, address, title, \
             body, status, attempts, last_error, created_at, sent_at, priority FROM deliveries \
             WHERE tenant = ?1 AND (?2 IS NULL OR ticket = ?2) AND id > ?3 ORDER BY id LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = st.query_map(params![tenant, ticket, after, limit], delivery_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn due_deliveries_except(
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

    fn delivery_postponed(&self, id: i64, until_ms: i64, why: &str) -> Result<()> {
        exec(
            &self.lock(),
            "UPDATE deliveries SET next_attempt_at = ?2, last_error = ?3 \
             WHERE id = ?1 AND status = 'pending'",
            params![id, until_ms, why],
        )?;
        Ok(())
    }

    fn claim_delivery(&self, id: i64, now_ms: i64, lease_ms: i64) -> Result<bool> {
        let n = exec(
            &self.lock(),
            "UPDATE deliveries SET next_attempt_at = ?3 \
             WHERE id = ?1 AND status = 'pending' AND next_attempt_at <= ?2",
            params![id, now_ms, now_ms.saturating_add(lease_ms)],
        )?;
        Ok(n == 1)
    }

    fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(row(
            &self.read(),
            "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    fn delivery_attempted(
        &self,
        id: i64,
        now: DateTime<Utc>,
        result: std::result::Result<(), (String, Option<i64>)>,
    ) -> Result<()> {
        let conn = self.lock();
        match result {
            Ok(()) => exec(
                &conn,
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?2, \
                 last_error = NULL WHERE id = ?1",
                params![id, ts(now)],
            )?,
            Err((error, Some(retry_at))) => exec(
                &conn,
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_at = ?3 WHERE id = ?1",
                params![id, error, retry_at],
            )?,
            Err((error, None)) => exec(
                &conn,
                "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, \
                 last_error = ?2 WHERE id = ?1",
                params![id, error],
            )?,
        };
        Ok(())
    }

    fn feed(&self, tenant: &str, agent: &str, after: i64) -> Result<Vec<FeedItem>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
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

    fn feed_item(&self, id: i64) -> Result<Option<(String, FeedItem)>> {
        Ok(row(
            &self.read(),
            "SELECT tenant, id, agent, ticket, title, body, at FROM feed WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get(0)?,
                    FeedItem {
                        id: r.get(1)?,
                        agent: r.get(2)?,
                        ticket: r.get(3)?,
                        title: r.get(4)?,
                        body: r.get(5)?,
                        at: r.get(6)?,
                    },
                ))
            },
        )
        .optional()?)
    }

    fn delivery_counts(&self) -> Result<Vec<(String, String, String, i64)>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT tenant, channel, status, count(*) FROM deliveries GROUP BY tenant, channel, status",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl DeliveriesTx for SqliteTx<'_> {
    fn insert_delivery(&self, tenant: &str, d: &NewDelivery, now: DateTime<Utc>) -> Result<bool> {
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

    fn last_delivery_to(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        // The newest first along `deliveries_recent`, which holds the
        // status: the deliveries held for a digest are passed over in the
        // index, and the first one that counts ends the look.
        let at: Option<String> = row(
            &self.tx,
            "SELECT created_at FROM deliveries WHERE tenant = ?1 AND channel = ?2 \
             AND address = ?3 AND created_at >= ?4 AND status IN ('pending', 'sent') \
             ORDER BY created_at DESC LIMIT 1",
            params![tenant, channel, address, ts(since)],
            |r| r.get(0),
        )
        .optional()?;
        Ok(at.and_then(|a| a.parse().ok()))
    }

    fn take_held(&self, tenant: &str, channel: Channel, address: &str) -> Result<Vec<Delivery>> {
        let held = {
            let mut st = self.tx.prepare_cached(
                "SELECT id, tenant, ticket, idempotency_key, channel, recipient, address, title, \
                 body, status, attempts, last_error, created_at, sent_at, priority FROM deliveries \
                 WHERE tenant = ?1 AND channel = ?2 AND address = ?3 AND status = 'held' ORDER BY id",
            )?;
            st.query_map(params![tenant, channel, address], delivery_row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        exec(
            &self.tx,
            "UPDATE deliveries SET status = 'digested' WHERE tenant = ?1 AND channel = ?2 \
             AND address = ?3 AND status = 'held'",
            params![tenant, channel, address],
        )?;
        Ok(held)
    }

    fn insert_feed(
        &self,
        tenant: &str,
        agent: &str,
        ticket: &str,
        title: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<FeedItem> {
        exec(
            &self.tx,
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

/// What the engine reads and records about deliveries and in-app feeds, outside a transaction.
pub trait Deliveries {
    /// The tenant's deliveries, of one ticket or all, oldest first: at
    /// most `limit` with ids above `after`.
    fn deliveries(
        &self,
        tenant: &str,
        ticket: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>>;

    /// Deliveries due for an attempt at `now_ms` (real time), most urgent
    /// first, then oldest.
    fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
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
    fn due_deliveries_except(
        &self,
        now_ms: i64,
        limit: u32,
        busy: &HashSet<i64>,
        free: &dyn Fn(&str) -> usize,
        full_endpoints: &HashSet<(String, String)>,
    ) -> Result<Vec<Delivery>>;

    /// Put a pending delivery off until `until_ms` without counting an
    /// attempt (its endpoint's circuit is open), saying why.
    fn delivery_postponed(&self, id: i64, until_ms: i64, why: &str) -> Result<()>;

    /// Claim a due delivery for one attempt: `false` if it is not due (any
    /// more), so someone else has it. The claim is a lease: the delivery
    /// is not due again until `lease_ms` from now, when, if its attempt
    /// was never recorded (the sender died), anyone may take it over.
    fn claim_delivery(&self, id: i64, now_ms: i64, lease_ms: i64) -> Result<bool>;

    /// When the next pending delivery is due (real time, ms).
    fn next_delivery_at(&self) -> Result<Option<i64>>;

    /// Record a delivery attempt: sent, or failed with `error` and retried
    /// at `retry_at` (ms, real time) unless `retry_at` is `None` (given up).
    fn delivery_attempted(
        &self,
        id: i64,
        now: DateTime<Utc>,
        result: std::result::Result<(), (String, Option<i64>)>,
    ) -> Result<()>;

    /// An agent's in-app feed after item `after`, oldest first.
    fn feed(&self, tenant: &str, agent: &str, after: i64) -> Result<Vec<FeedItem>>;

    /// One feed item, with its tenant.
    fn feed_item(&self, id: i64) -> Result<Option<(String, FeedItem)>>;

    /// Deliveries by tenant, channel and status.
    fn delivery_counts(&self) -> Result<Vec<(String, String, String, i64)>>;
}

/// What a transaction ([`Store::write`]) reads and writes of deliveries and in-app feeds.
pub trait DeliveriesTx {
    /// Queue a delivery; `false` if one with the same idempotency key
    /// exists (a notification is queued once).
    fn insert_delivery(&self, tenant: &str, d: &NewDelivery, now: DateTime<Utc>) -> Result<bool>;

    /// When `address` last got something on `channel` (not counting held
    /// ones), at or after `since`.
    fn last_delivery_to(
        &self,
        tenant: &str,
        channel: Channel,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>>;

    /// Held deliveries to `address` on `channel`, oldest first; marks them
    /// `digested`.
    fn take_held(&self, tenant: &str, channel: Channel, address: &str) -> Result<Vec<Delivery>>;

    /// Append to an agent's in-app feed; returns the item.
    fn insert_feed(
        &self,
        tenant: &str,
        agent: &str,
        ticket: &str,
        title: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<FeedItem>;
}
