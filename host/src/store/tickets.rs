//! Tickets, their events (with idempotency keys) and decisions (with the
//! audit trail), and the signal keys acted on.

use super::*;

/// How many of a ticket's newest events and decisions its detail shows.
pub const TICKET_HISTORY: i64 = 500;

/// A decision's audit trail, in call order: its rows' keys are the
/// decision's id × 65,536 plus the call's index (schema 9).
const AUDIT_OF_DECISION: &str =
    "SELECT data FROM audit WHERE key BETWEEN ?1 * 65536 AND ?1 * 65536 + 65535 ORDER BY key";

/// An event to store.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// Its ticket.
    pub ticket: &'a str,
    /// Its kind (`ticket-created`, `message`, ...).
    pub kind: &'a str,
    /// The event as JSON text.
    pub payload: &'a str,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The client's idempotency key, with the hash of its request.
    pub idempotency_key: Option<(&'a str, &'a str)>,
    /// Whether its decision is stored in the same transaction: it is then
    /// stored as decided, and never enters the index of undecided events
    /// (what a restart decides) only to leave it before the commit.
    pub decided_here: bool,
}

/// A decision to store, with its audit trail.
#[derive(Debug, Clone, Copy)]
pub struct NewDecision<'a> {
    /// The ticket.
    pub ticket: &'a str,
    /// When.
    pub at: DateTime<Utc>,
    /// What caused it (`event:SEQ`, `timer:ID`, `claim-plan`, ...).
    pub cause: &'a str,
    /// Whether the ticket escalated.
    pub escalated: bool,
    /// The decision (signals, tier, routing, plan, ...), as JSON text.
    pub data: &'a str,
    /// One entry per plugin call.
    pub audit: &'a [AuditEntry],
}

/// One plugin call of a decision's audit trail, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The plugin (`name@version`).
    pub plugin: String,
    /// The entry as JSON text (plugin, version, input event, output, fuel,
    /// time, error).
    pub data: String,
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

/// The field an audit entry carries instead of its `output` when that
/// output is stored once, in its decision's data: its value names the
/// field of the decision that holds it (`"plan"`: the notifier's plan;
/// `"routing"`: the router's routing). Read back, the entry has its
/// `output` again.
pub const OUTPUT_IN_DECISION: &str = "output_in_decision";

/// Whether an entry of `audit` has its output in its decision's data
/// (read the decision only then).
pub(crate) fn outputs_in_decision(audit: &[serde_json::Value]) -> bool {
    audit.iter().any(|e| e.get(OUTPUT_IN_DECISION).is_some())
}

/// Put back the `output` of each entry of `audit` that is stored in its
/// decision's data (`decision`).
pub(crate) fn restore_outputs(decision: &serde_json::Value, audit: &mut [serde_json::Value]) {
    for entry in audit {
        let Some(o) = entry.as_object_mut() else {
            continue;
        };
        let Some(field) = o.get(OUTPUT_IN_DECISION).and_then(|v| v.as_str()) else {
            continue;
        };
        let output = decision
            .get(field)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        o.remove(OUTPUT_IN_DECISION);
        o.insert("output".into(), output);
    }
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
/// A ticket serialized for the store: its state apart from the
/// conversation, and the messages from `from` on (the ones not stored yet)
/// as one batch.
#[derive(Debug)]
pub struct TicketJson {
    pub(super) head: String,
    pub(super) from: usize,
    pub(super) tail: Option<String>,
    pub(super) len: usize,
}

impl TicketJson {
    /// `state` serialized for a store that holds its first `from` messages.
    pub fn new(state: &mut TicketState, from: usize) -> Result<TicketJson> {
        let head = state.apart_from_messages(serde_json::to_string)?;
        let messages = &state.ticket.messages;
        let from = from.min(messages.len());
        let tail = (from < messages.len())
            .then(|| serde_json::to_string(&messages[from..]))
            .transpose()?;
        Ok(TicketJson {
            head,
            from,
            tail,
            len: messages.len(),
        })
    }

    /// The state this was serialized from, read back, when it holds every
    /// message (`from` 0); `None` when it holds only the later ones.
    pub fn whole(&self) -> Result<Option<TicketState>> {
        if self.from != 0 {
            return Ok(None);
        }
        let mut state: TicketState = serde_json::from_str(&self.head)?;
        if let Some(tail) = &self.tail {
            state.ticket.messages = serde_json::from_str(tail)?;
        }
        Ok(Some(state))
    }
}

/// A ticket's conversation batches from index `from` on.
fn batches(conn: &Connection, tenant: &str, id: &str, from: usize) -> Result<Vec<Batch>> {
    let mut st = conn.prepare_cached(
        "SELECT first, messages FROM conversation WHERE tenant = ?1 AND ticket = ?2 \
         AND first >= ?3 ORDER BY first",
    )?;
    let rows = st.query_map(params![tenant, id, from as i64], |r| {
        Ok((r.get::<_, i64>(0)? as usize, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A ticket's state from its stored head and its conversation's batches.
fn assemble(conn: &Connection, tenant: &str, id: &str, head: &str) -> Result<TicketState> {
    let mut state: TicketState = serde_json::from_str(head)?;
    state.ticket.messages = conversations::whole(batches(conn, tenant, id, 0)?)?;
    Ok(state)
}

/// The tickets `sql` selects (its columns: `id`, `data`), whole.
fn tickets_of(
    conn: &Connection,
    tenant: &str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<TicketState>> {
    let mut st = conn.prepare_cached(sql)?;
    let heads = st
        .query_map(params, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    heads
        .iter()
        .map(|(id, head)| assemble(conn, tenant, id, head))
        .collect()
}

/// One ticket, its conversation read through `cache`.
pub(super) fn ticket_of(
    conn: &Connection,
    cache: &ConversationCache,
    tenant: &str,
    id: &str,
) -> Result<Option<TicketState>> {
    let head: Option<(String, i64)> = conn
        .prepare_cached("SELECT data, messages FROM tickets WHERE tenant = ?1 AND id = ?2")?
        .query_row([tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((head, count)) = head else {
        return Ok(None);
    };
    let mut state: TicketState = serde_json::from_str(&head)?;
    state.ticket.messages = cache.read(tenant, id, count.max(0) as usize, |from| {
        batches(conn, tenant, id, from)
    })?;
    Ok(Some(state))
}
pub(super) fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRecord> {
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
impl Tickets for SqliteStore {
    fn ticket(&self, tenant: &str, id: &str) -> Result<Option<TicketState>> {
        ticket_of(&self.read(), &self.conversations, tenant, id)
    }

    fn has_ticket(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .read()
            .prepare_cached("SELECT 1 FROM tickets WHERE tenant = ?1 AND id = ?2")?
            .exists(params![tenant, id])?)
    }

    fn fired(&self, tenant: &str, ticket: &str) -> Result<std::collections::BTreeSet<String>> {
        let conn = self.read();
        let mut st =
            conn.prepare_cached("SELECT key FROM fired WHERE tenant = ?1 AND ticket = ?2")?;
        let rows = st.query_map([tenant, ticket], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn events(&self, tenant: &str, ticket: &str) -> Result<Vec<EventRecord>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT * FROM (SELECT seq, ticket, kind, payload, received_at, processed, error \
             FROM events WHERE tenant = ?1 AND ticket = ?2 ORDER BY seq DESC LIMIT ?3) \
             ORDER BY seq",
        )?;
        let rows = st.query_map(params![tenant, ticket, TICKET_HISTORY], event_row)?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn unprocessed_events(&self) -> Result<Vec<(String, EventRecord)>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT seq, ticket, kind, payload, received_at, processed, error, tenant FROM events \
             WHERE processed = 0 ORDER BY seq",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(7)?, event_row(r)?)))?;
        rows.map(|r| Ok(r?)).collect()
    }

    fn decisions(&self, tenant: &str, ticket: &str) -> Result<Vec<DecisionRecord>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
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
        let mut audit = conn.prepare_cached(AUDIT_OF_DECISION)?;
        for row in rows {
            let (id, at, cause, escalated, data) = row?;
            let mut trail = audit
                .query_map([id], |r| r.get::<_, String>(0))?
                .map(|t| Ok(serde_json::from_str(&t?)?))
                .collect::<Result<Vec<_>>>()?;
            let data: serde_json::Value = serde_json::from_str(&data)?;
            restore_outputs(&data, &mut trail);
            out.push(DecisionRecord {
                id,
                at,
                cause,
                escalated,
                data,
                audit: trail,
            });
        }
        Ok(out)
    }

    fn escalated(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>> {
        tickets_of(
            &self.read(),
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = ?1 AND escalated_at IS NOT NULL \
             ORDER BY escalated_at DESC, id LIMIT ?2",
            params![tenant, limit],
        )
    }

    fn unclaimed_of(&self, tenant: &str, agent: &str) -> Result<Vec<TicketState>> {
        let all = tickets_of(
            &self.read(),
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = ?1 AND assignee = ?2 \
             AND escalated_at IS NOT NULL ORDER BY id",
            [tenant, agent],
        )?;
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

    fn queued(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>> {
        let all = tickets_of(
            &self.read(),
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = ?1 AND assignee IS NULL \
             AND escalated_at IS NOT NULL AND status NOT IN ('solved', 'closed') \
             ORDER BY escalated_at, id LIMIT ?2",
            params![tenant, limit],
        )?;
        Ok(all
            .into_iter()
            .filter(|s| s.ticket.claimed_at.is_none() && s.queue.is_some())
            .collect())
    }

    fn event_failed(&self, seq: i64, error: &str) -> Result<()> {
        exec(
            &self.lock(),
            "UPDATE events SET processed = 2, error = ?2 WHERE seq = ?1 AND processed = 0",
            params![seq, error],
        )?;
        Ok(())
    }

    fn failed_events(&self, tenant: &str, limit: u32) -> Result<(Vec<EventRecord>, i64)> {
        let conn = self.read();
        let total: i64 = row(
            &conn,
            "SELECT count(*) FROM events WHERE tenant = ?1 AND processed = 2",
            [tenant],
            |r| r.get(0),
        )?;
        let mut st = conn.prepare_cached(
            "SELECT seq, ticket, kind, payload, received_at, processed, error FROM events \
             WHERE tenant = ?1 AND processed = 2 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], event_row)?;
        let events = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((events, total))
    }

    fn event_by_key(&self, tenant: &str, key: &str) -> Result<Option<KeyedEvent>> {
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
    fn ticket_heads(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT data FROM tickets WHERE tenant = ?1 ORDER BY updated_at DESC, id LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn tickets_per_day(&self, tenant: &str) -> Result<Vec<(String, i64)>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT substr(json_extract(data, '$.ticket.created_at'), 1, 10) AS day, count(*) \
             FROM tickets WHERE tenant = ?1 GROUP BY day ORDER BY day",
        )?;
        let rows = st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl TicketsTx for SqliteTx<'_> {
    fn write_ticket(
        &self,
        tenant: &str,
        state: &TicketState,
        json: &TicketJson,
        stored: usize,
    ) -> Result<()> {
        let t = &state.ticket;
        if stored == json.from {
            if let Some(tail) = &json.tail {
                exec(
                    &self.tx,
                    "INSERT INTO conversation (tenant, ticket, first, messages) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, t.id, json.from as i64, tail],
                )?;
            }
        } else {
            // Serialized against another stored length: the conversation
            // is written again whole (it only ever grows, so this is for a
            // caller that serialized too early).
            exec(
                &self.tx,
                "DELETE FROM conversation WHERE tenant = ?1 AND ticket = ?2",
                [tenant, &t.id],
            )?;
            if !t.messages.is_empty() {
                exec(
                    &self.tx,
                    "INSERT INTO conversation (tenant, ticket, first, messages) \
                     VALUES (?1, ?2, 0, ?3)",
                    params![tenant, t.id, serde_json::to_string(&t.messages)?],
                )?;
            }
        }
        exec(
            &self.tx,
            "INSERT INTO tickets (tenant, id, data, tier, assignee, status, escalated_at, updated_at, \
             messages) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data, tier = excluded.tier, \
             assignee = excluded.assignee, status = excluded.status, \
             escalated_at = excluded.escalated_at, updated_at = excluded.updated_at, \
             messages = excluded.messages",
            params![
                tenant,
                t.id,
                json.head,
                t.tier.map(|x| name_of(&x)),
                t.assignee,
                name_of(&t.status),
                state.escalation.as_ref().map(|e| ts(e.escalated_at)),
                ts(t.updated_at.unwrap_or(t.created_at)),
                json.len as i64,
            ],
        )?;
        Ok(())
    }
    fn stored_messages(&self, tenant: &str, id: &str) -> Result<usize> {
        let n: Option<i64> = self
            .tx
            .prepare_cached("SELECT messages FROM tickets WHERE tenant = ?1 AND id = ?2")?
            .query_row([tenant, id], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as usize)
    }

    fn ticket_exists(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM tickets WHERE tenant = ?1 AND id = ?2")?
            .exists(params![tenant, id])?)
    }

    fn decision_data(&self, tenant: &str, id: i64) -> Result<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT data FROM decisions WHERE id = ?1 AND tenant = ?2")?
            .query_row(params![id, tenant], |r| r.get(0))
            .optional()?)
    }

    fn insert_event(&self, tenant: &str, e: &NewEvent<'_>) -> Result<i64> {
        exec(
            &self.tx,
            "INSERT INTO events (tenant, ticket, kind, payload, received_at, idempotency_key, \
             request_hash, processed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                tenant,
                e.ticket,
                e.kind,
                e.payload,
                ts(e.received_at),
                e.idempotency_key.map(|k| k.0),
                e.idempotency_key.map(|k| k.1),
                i64::from(e.decided_here),
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn event_processed(&self, seq: i64, response: &str) -> Result<()> {
        exec(
            &self.tx,
            "UPDATE events SET processed = 1, response = ?2 WHERE seq = ?1",
            params![seq, response],
        )?;
        Ok(())
    }

    fn insert_decision(&self, tenant: &str, d: &NewDecision<'_>) -> Result<i64> {
        let NewDecision {
            ticket,
            at,
            cause,
            escalated,
            data,
            audit,
        } = *d;
        exec(
            &self.tx,
            "INSERT INTO decisions (tenant, ticket, at, cause, escalated, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, ticket, ts(at), cause, escalated, data],
        )?;
        let id = self.tx.last_insert_rowid();
        let mut st = self.tx.prepare_cached(
            "INSERT INTO audit (key, decision, idx, plugin, data) \
             VALUES (?1 * 65536 + ?2, ?1, ?2, ?3, ?4)",
        )?;
        for (i, a) in audit.iter().enumerate() {
            st.execute(params![id, i as i64, a.plugin, a.data])?;
        }
        Ok(id)
    }

    fn fire(&self, tenant: &str, ticket: &str, key: &str, decision: i64) -> Result<bool> {
        let n = exec(
            &self.tx,
            "INSERT OR IGNORE INTO fired (tenant, ticket, key, decision) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, ticket, key, decision],
        )?;
        Ok(n == 1)
    }
}

/// What the engine reads and records about tickets, events, decisions and the keys acted on, outside a transaction.
pub trait Tickets {
    /// A ticket's state.
    fn ticket(&self, tenant: &str, id: &str) -> Result<Option<TicketState>>;

    /// Whether a ticket exists (without reading it).
    fn has_ticket(&self, tenant: &str, id: &str) -> Result<bool>;

    /// The keys already acted on for a ticket.
    fn fired(&self, tenant: &str, ticket: &str) -> Result<std::collections::BTreeSet<String>>;

    /// A ticket's newest [`TICKET_HISTORY`] events, oldest first.
    fn events(&self, tenant: &str, ticket: &str) -> Result<Vec<EventRecord>>;

    /// Events stored but not yet decided on (after a crash), oldest first,
    /// as (tenant, event).
    fn unprocessed_events(&self) -> Result<Vec<(String, EventRecord)>>;

    /// A ticket's newest [`TICKET_HISTORY`] decisions with their audit
    /// trails, oldest first.
    fn decisions(&self, tenant: &str, ticket: &str) -> Result<Vec<DecisionRecord>>;

    /// The tenant's escalated tickets, most recent first.
    fn escalated(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>>;

    /// Escalated, unclaimed, unresolved tickets assigned to `agent`.
    fn unclaimed_of(&self, tenant: &str, agent: &str) -> Result<Vec<TicketState>>;

    /// Escalated tickets nobody has (they wait in a queue), unresolved,
    /// the longest waiting first: at most `limit`.
    fn queued(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>>;

    /// Mark an event whose decision failed: it is never decided again.
    fn event_failed(&self, seq: i64, error: &str) -> Result<()>;

    /// The most recent failed events of `tenant` (newest first), at most
    /// `limit`, and how many there are in all.
    fn failed_events(&self, tenant: &str, limit: u32) -> Result<(Vec<EventRecord>, i64)>;

    /// The event stored with this idempotency key, if any.
    fn event_by_key(&self, tenant: &str, key: &str) -> Result<Option<KeyedEvent>>;

    /// Tickets created per day (UTC, `YYYY-MM-DD`) of a tenant.
    fn tickets_per_day(&self, tenant: &str) -> Result<Vec<(String, i64)>>;

    /// The tenant's most recently changed tickets, at most `limit`, without
    /// their conversations (for figures over many tickets).
    fn ticket_heads(&self, tenant: &str, limit: u32) -> Result<Vec<TicketState>>;
}

/// What a transaction ([`Store::write`]) reads and writes of tickets, events, decisions and the keys acted on.
pub trait TicketsTx {
    /// Whether the ticket exists (without reading its state).
    fn ticket_exists(&self, tenant: &str, id: &str) -> Result<bool>;

    /// How many of a ticket's messages are stored (0 for no ticket).
    fn stored_messages(&self, tenant: &str, id: &str) -> Result<usize>;

    /// Insert or replace a ticket's state. Its conversation only grows:
    /// the messages past the stored ones are appended, as one batch.
    fn put_ticket(&self, tenant: &str, state: &mut TicketState) -> Result<()> {
        let stored = self.stored_messages(tenant, &state.ticket.id)?;
        let json = TicketJson::new(state, stored)?;
        self.write_ticket(tenant, state, &json, stored)
    }

    /// [`Tx::put_ticket`] with the state already serialized (`json` is
    /// `state`), so a big ticket is not serialized while the writer is
    /// held.
    fn put_ticket_json(&self, tenant: &str, state: &TicketState, json: &TicketJson) -> Result<()> {
        let stored = self.stored_messages(tenant, &state.ticket.id)?;
        self.write_ticket(tenant, state, json, stored)
    }

    /// Write a ticket serialized by [`TicketJson`] to a store that holds
    /// `stored` of its messages: the batch `json` adds if it was
    /// serialized against `stored`, else the whole conversation again.
    /// What [`TicketsTx::put_ticket`] and [`TicketsTx::put_ticket_json`]
    /// come to.
    fn write_ticket(
        &self,
        tenant: &str,
        state: &TicketState,
        json: &TicketJson,
        stored: usize,
    ) -> Result<()>;

    /// Store an event; returns its sequence number.
    fn insert_event(&self, tenant: &str, e: &NewEvent<'_>) -> Result<i64>;

    /// Mark an event decided, with the response its sender got.
    fn event_processed(&self, seq: i64, response: &str) -> Result<()>;

    /// Store a decision and its audit trail (one row per plugin call);
    /// returns its id.
    fn insert_decision(&self, tenant: &str, d: &NewDecision<'_>) -> Result<i64>;

    /// Record that `key` was acted on; `false` if it already was.
    fn fire(&self, tenant: &str, ticket: &str, key: &str, decision: i64) -> Result<bool>;

    /// A decision's data (its JSON), if the tenant has that decision.
    fn decision_data(&self, tenant: &str, id: i64) -> Result<Option<String>>;
}
