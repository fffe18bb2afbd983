//! The concern traits on PostgreSQL: the same operations as SQLite's, in
//! PostgreSQL's SQL and types (times are `timestamptz`, read back in the
//! store's RFC 3339 form).

use super::{PgStore, PgTx, Sql};
use crate::manifest::Mode;
use crate::model::{self, Agent, Channel, TicketState};
use crate::store::*;
use chrono::{DateTime, Utc};
use postgres::Row;
use postgres::types::FromSql;
use std::collections::{BTreeSet, HashSet};

/// Column `i` of `r`, as `T`.
fn col<'r, T: FromSql<'r>>(r: &'r Row, i: usize) -> Result<T> {
    r.try_get(i)
        .map_err(|e| StoreError::Postgres(format!("column {:?}: {e}", r.columns()[i].name())))
}

/// A `timestamptz` column in the store's form ([`ts`]).
fn time(r: &Row, i: usize) -> Result<String> {
    Ok(ts(col::<DateTime<Utc>>(r, i)?))
}

fn time_opt(r: &Row, i: usize) -> Result<Option<String>> {
    Ok(col::<Option<DateTime<Utc>>>(r, i)?.map(ts))
}

/// A time the caller gives as text (RFC 3339).
fn parse_time(what: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Postgres(format!("{what} {s:?} is not an RFC 3339 time: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    Ok(serde_json::from_str(col::<&str>(r, i)?)?)
}

/// A JSON column, `null` if it does not parse (as SQLite's readers do).
fn json_or_null(r: &Row, i: usize) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(col::<&str>(r, i)?).unwrap_or(serde_json::Value::Null))
}

fn limit(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

// Tenants.

fn tenant_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: col(r, 0)?,
        name: col(r, 1)?,
        created_at: time(r, 2)?,
    })
}

fn agents_of(db: &mut dyn Sql, tenant: &str) -> Result<Vec<Agent>> {
    db.rows(
        "SELECT data FROM agents WHERE tenant = $1 ORDER BY id",
        &[&tenant],
    )?
    .iter()
    .map(|r| json(r, 0))
    .collect()
}

fn agent_of(db: &mut dyn Sql, tenant: &str, id: &str) -> Result<Option<Agent>> {
    agent_by(
        db,
        "SELECT data FROM agents WHERE tenant = $1 AND id = $2",
        tenant,
        id,
    )
}

/// One agent, read by `sql` (plain, or `FOR UPDATE`).
fn agent_by(db: &mut dyn Sql, sql: &str, tenant: &str, id: &str) -> Result<Option<Agent>> {
    db.opt(sql, &[&tenant, &id])?
        .map(|r| json(&r, 0))
        .transpose()
}

impl Tenants for PgStore {
    fn tenant_by_token(&self, hash: &str) -> Result<Option<Tenant>> {
        self.conn()?
            .opt(
                "SELECT id, name, created_at FROM tenants WHERE token_hash = $1 \
                 AND revoked_at IS NULL",
                &[&hash],
            )?
            .map(|r| tenant_row(&r))
            .transpose()
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.conn()?
            .rows("SELECT id, name, created_at FROM tenants ORDER BY id", &[])?
            .iter()
            .map(tenant_row)
            .collect()
    }

    fn settings(&self, tenant: &str) -> Result<serde_json::Value> {
        match self
            .conn()?
            .opt("SELECT settings FROM tenants WHERE id = $1", &[&tenant])?
        {
            Some(r) => json(&r, 0),
            None => Ok(serde_json::json!({})),
        }
    }

    fn settings_if_changed(
        &self,
        tenant: &str,
        known: Option<i64>,
    ) -> Result<Option<(i64, Option<serde_json::Value>)>> {
        let Some(r) = self.conn()?.opt(
            "SELECT settings_rev, CASE WHEN settings_rev IS NOT DISTINCT FROM $2 THEN NULL \
             ELSE settings END FROM tenants WHERE id = $1",
            &[&tenant, &known],
        )?
        else {
            return Ok(None);
        };
        let text: Option<&str> = col(&r, 1)?;
        Ok(Some((
            col(&r, 0)?,
            text.map(serde_json::from_str).transpose()?,
        )))
    }

    fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&mut *self.conn()?, tenant)
    }

    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&mut *self.conn()?, tenant, id)
    }

    fn all_agents(&self) -> Result<Vec<(String, Agent)>> {
        self.conn()?
            .rows("SELECT tenant, data FROM agents ORDER BY tenant, id", &[])?
            .iter()
            .map(|r| Ok((col(r, 0)?, json(r, 1)?)))
            .collect()
    }
}

impl TenantsTx for PgTx<'_> {
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.db().exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn create_tenant(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(self.db().exec(
            "INSERT INTO tenants (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&id, &name, &token_hash, &now],
        )? == 1)
    }

    fn set_tenant_token(
        &self,
        id: &str,
        token_hash: &str,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        Ok(self.db().exec(
            "UPDATE tenants SET token_hash = $2, revoked_at = $3 WHERE id = $1",
            &[&id, &token_hash, &revoked_at],
        )? == 1)
    }

    fn set_settings(&self, tenant: &str, settings: &serde_json::Value) -> Result<()> {
        self.db().exec(
            "UPDATE tenants SET settings = $2, settings_rev = settings_rev + 1 WHERE id = $1",
            &[&tenant, &settings.to_string()],
        )?;
        Ok(())
    }

    fn put_agent(&self, tenant: &str, agent: &Agent) -> Result<()> {
        self.db().exec(
            "INSERT INTO agents (tenant, id, data) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data",
            &[&tenant, &agent.id, &serde_json::to_string(agent)?],
        )?;
        Ok(())
    }

    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&mut *self.db(), tenant, id)
    }

    fn agent_for_update(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_by(
            &mut *self.db(),
            "SELECT data FROM agents WHERE tenant = $1 AND id = $2 FOR UPDATE",
            tenant,
            id,
        )
    }

    fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&mut *self.db(), tenant)
    }
}

// Tickets, events, decisions.

/// A ticket's conversation batches from index `from` on.
fn batches(
    db: &mut dyn Sql,
    tenant: &str,
    id: &str,
    from: usize,
) -> Result<Vec<conversations::Batch>> {
    db.rows(
        "SELECT first, messages FROM conversation WHERE tenant = $1 AND ticket = $2 \
         AND first >= $3 ORDER BY first",
        &[&tenant, &id, &(from as i64)],
    )?
    .iter()
    .map(|r| Ok((col::<i64>(r, 0)? as usize, col::<String>(r, 1)?)))
    .collect()
}

/// A ticket's state from its stored head and its conversation's batches.
fn assemble(db: &mut dyn Sql, tenant: &str, id: &str, head: &str) -> Result<TicketState> {
    let mut state: TicketState = serde_json::from_str(head)?;
    state.ticket.messages = conversations::whole(batches(db, tenant, id, 0)?)?;
    Ok(state)
}

/// The tickets `sql` selects (its columns: `id`, `data`), whole.
fn tickets_of(
    db: &mut dyn Sql,
    tenant: &str,
    sql: &str,
    params: super::Params<'_>,
) -> Result<Vec<TicketState>> {
    let heads = db.rows(sql, params)?;
    heads
        .iter()
        .map(|r| assemble(db, tenant, col(r, 0)?, col(r, 1)?))
        .collect()
}

/// One ticket, its conversation read through `cache`.
fn ticket_of(
    db: &mut dyn Sql,
    cache: &conversations::ConversationCache,
    tenant: &str,
    id: &str,
) -> Result<Option<TicketState>> {
    let Some(r) = db.opt(
        "SELECT data, messages FROM tickets WHERE tenant = $1 AND id = $2",
        &[&tenant, &id],
    )?
    else {
        return Ok(None);
    };
    let mut state: TicketState = serde_json::from_str(col(&r, 0)?)?;
    let count = col::<i64>(&r, 1)?.max(0) as usize;
    state.ticket.messages = cache.read(tenant, id, count, |from| batches(db, tenant, id, from))?;
    Ok(Some(state))
}

/// Columns: seq, ticket, kind, payload, received_at, processed, error.
fn event_row(r: &Row) -> Result<EventRecord> {
    Ok(EventRecord {
        seq: col(r, 0)?,
        ticket: col(r, 1)?,
        kind: col(r, 2)?,
        payload: json_or_null(r, 3)?,
        received_at: time(r, 4)?,
        processed: col::<i64>(r, 5)? != 0,
        failed: col(r, 6)?,
    })
}

const EVENT_COLUMNS: &str = "seq, ticket, kind, payload, received_at, processed, error";

fn not_done(s: &TicketState) -> bool {
    !matches!(
        s.ticket.status,
        model::TicketStatus::Solved | model::TicketStatus::Closed
    )
}

impl Tickets for PgStore {
    fn ticket(&self, tenant: &str, id: &str) -> Result<Option<TicketState>> {
        ticket_of(&mut *self.conn()?, &self.conversations, tenant, id)
    }

    fn has_ticket(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .conn()?
            .opt(
                "SELECT 1 FROM tickets WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )?
            .is_some())
    }

    fn fired(&self, tenant: &str, ticket: &str) -> Result<BTreeSet<String>> {
        self.conn()?
            .rows(
                "SELECT key FROM fired WHERE tenant = $1 AND ticket = $2",
                &[&tenant, &ticket],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect()
    }

    fn events(&self, tenant: &str, ticket: &str) -> Result<Vec<EventRecord>> {
        self.conn()?
            .rows(
                &format!(
                    "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events \
                     WHERE tenant = $1 AND ticket = $2 ORDER BY seq DESC LIMIT $3) AS e \
                     ORDER BY seq"
                ),
                &[&tenant, &ticket, &TICKET_HISTORY],
            )?
            .iter()
            .map(event_row)
            .collect()
    }

    fn unprocessed_events(&self) -> Result<Vec<(String, EventRecord)>> {
        self.conn()?
            .rows(
                &format!(
                    "SELECT {EVENT_COLUMNS}, tenant FROM events WHERE processed = 0 ORDER BY seq"
                ),
                &[],
            )?
            .iter()
            .map(|r| Ok((col(r, 7)?, event_row(r)?)))
            .collect()
    }

    fn decisions(&self, tenant: &str, ticket: &str) -> Result<Vec<DecisionRecord>> {
        let mut c = self.conn()?;
        let rows = c.rows(
            "SELECT * FROM (SELECT id, at, cause, escalated, data FROM decisions \
             WHERE tenant = $1 AND ticket = $2 ORDER BY id DESC LIMIT $3) AS d ORDER BY id",
            &[&tenant, &ticket, &TICKET_HISTORY],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = col(r, 0)?;
            let mut audit = c
                .rows(
                    "SELECT data FROM audit WHERE decision = $1 ORDER BY idx",
                    &[&id],
                )?
                .iter()
                .map(|a| json(a, 0))
                .collect::<Result<Vec<_>>>()?;
            let data: serde_json::Value = json(r, 4)?;
            crate::store::tickets::restore_outputs(&data, &mut audit);
            out.push(DecisionRecord {
                id,
                at: time(r, 1)?,
                cause: col(r, 2)?,
                escalated: col(r, 3)?,
                data,
                audit,
            });
        }
        Ok(out)
    }

    fn ticket_heads(&self, tenant: &str, n: u32) -> Result<Vec<TicketState>> {
        self.conn()?
            .rows(
                "SELECT data FROM tickets WHERE tenant = $1 ORDER BY updated_at DESC, id LIMIT $2",
                &[&tenant, &limit(n)],
            )?
            .iter()
            .map(|r| Ok(serde_json::from_str(col(r, 0)?)?))
            .collect()
    }

    fn escalated(&self, tenant: &str, n: u32) -> Result<Vec<TicketState>> {
        tickets_of(
            &mut *self.conn()?,
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = $1 AND escalated_at IS NOT NULL \
             ORDER BY escalated_at DESC, id LIMIT $2",
            &[&tenant, &limit(n)],
        )
    }

    fn unclaimed_of(&self, tenant: &str, agent: &str) -> Result<Vec<TicketState>> {
        let all = tickets_of(
            &mut *self.conn()?,
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = $1 AND assignee = $2 \
             AND escalated_at IS NOT NULL ORDER BY id",
            &[&tenant, &agent],
        )?;
        Ok(all
            .into_iter()
            .filter(|s| s.ticket.claimed_at.is_none() && not_done(s))
            .collect())
    }

    fn queued(&self, tenant: &str, n: u32) -> Result<Vec<TicketState>> {
        let all = tickets_of(
            &mut *self.conn()?,
            tenant,
            "SELECT id, data FROM tickets WHERE tenant = $1 AND assignee IS NULL \
             AND escalated_at IS NOT NULL AND status NOT IN ('solved', 'closed') \
             ORDER BY escalated_at, id LIMIT $2",
            &[&tenant, &limit(n)],
        )?;
        Ok(all
            .into_iter()
            .filter(|s| s.ticket.claimed_at.is_none() && s.queue.is_some())
            .collect())
    }

    fn event_failed(&self, seq: i64, error: &str) -> Result<()> {
        self.conn()?.exec(
            "UPDATE events SET processed = 2, error = $2 WHERE seq = $1 AND processed = 0",
            &[&seq, &error],
        )?;
        Ok(())
    }

    fn failed_events(&self, tenant: &str, n: u32) -> Result<(Vec<EventRecord>, i64)> {
        let mut c = self.conn()?;
        let total: i64 = col(
            &c.one(
                "SELECT count(*) FROM events WHERE tenant = $1 AND processed = 2",
                &[&tenant],
            )?,
            0,
        )?;
        let events = c
            .rows(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant = $1 AND processed = 2 \
                     ORDER BY seq DESC LIMIT $2"
                ),
                &[&tenant, &limit(n)],
            )?
            .iter()
            .map(event_row)
            .collect::<Result<_>>()?;
        Ok((events, total))
    }

    fn event_by_key(&self, tenant: &str, key: &str) -> Result<Option<KeyedEvent>> {
        self.conn()?
            .opt(
                "SELECT seq, processed, response, error, request_hash FROM events \
                 WHERE tenant = $1 AND idempotency_key = $2",
                &[&tenant, &key],
            )?
            .map(|r| {
                Ok(KeyedEvent {
                    seq: col(&r, 0)?,
                    processed: col(&r, 1)?,
                    response: col(&r, 2)?,
                    error: col(&r, 3)?,
                    request_hash: col(&r, 4)?,
                })
            })
            .transpose()
    }

    fn tickets_per_day(&self, tenant: &str) -> Result<Vec<(String, i64)>> {
        self.conn()?
            .rows(
                "SELECT substr(data::jsonb #>> '{ticket,created_at}', 1, 10) AS day, count(*) \
                 FROM tickets WHERE tenant = $1 GROUP BY day ORDER BY day",
                &[&tenant],
            )?
            .iter()
            .map(|r| Ok((col::<Option<String>>(r, 0)?.unwrap_or_default(), col(r, 1)?)))
            .collect()
    }
}

impl TicketsTx for PgTx<'_> {
    fn write_ticket(
        &self,
        tenant: &str,
        state: &TicketState,
        json: &TicketJson,
        stored: usize,
    ) -> Result<()> {
        let t = &state.ticket;
        let mut db = self.db();
        if stored == json.from {
            if let Some(tail) = &json.tail {
                db.exec(
                    "INSERT INTO conversation (tenant, ticket, first, messages) \
                     VALUES ($1, $2, $3, $4)",
                    &[&tenant, &t.id, &(json.from as i64), tail],
                )?;
            }
        } else {
            db.exec(
                "DELETE FROM conversation WHERE tenant = $1 AND ticket = $2",
                &[&tenant, &t.id],
            )?;
            if !t.messages.is_empty() {
                db.exec(
                    "INSERT INTO conversation (tenant, ticket, first, messages) \
                     VALUES ($1, $2, 0, $3)",
                    &[&tenant, &t.id, &serde_json::to_string(&t.messages)?],
                )?;
            }
        }
        db.exec(
            "INSERT INTO tickets (tenant, id, data, tier, assignee, status, escalated_at, \
             updated_at, messages) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data, tier = excluded.tier, \
             assignee = excluded.assignee, status = excluded.status, \
             escalated_at = excluded.escalated_at, updated_at = excluded.updated_at, \
             messages = excluded.messages",
            &[
                &tenant,
                &t.id,
                &json.head,
                &t.tier.map(|x| name_of(&x)),
                &t.assignee,
                &name_of(&t.status),
                &state.escalation.as_ref().map(|e| e.escalated_at),
                &t.updated_at.unwrap_or(t.created_at),
                &(json.len as i64),
            ],
        )?;
        Ok(())
    }
    fn ticket_exists(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .db()
            .opt(
                "SELECT 1 FROM tickets WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )?
            .is_some())
    }

    fn decision_data(&self, tenant: &str, id: i64) -> Result<Option<String>> {
        self.db()
            .opt(
                "SELECT data FROM decisions WHERE id = $1 AND tenant = $2",
                &[&id, &tenant],
            )?
            .map(|r| col(&r, 0))
            .transpose()
    }

    fn stored_messages(&self, tenant: &str, id: &str) -> Result<usize> {
        let n: Option<i64> = match self.db().opt(
            "SELECT messages FROM tickets WHERE tenant = $1 AND id = $2",
            &[&tenant, &id],
        )? {
            Some(r) => Some(col(&r, 0)?),
            None => None,
        };
        Ok(n.unwrap_or(0).max(0) as usize)
    }

    fn insert_event(&self, tenant: &str, e: &NewEvent<'_>) -> Result<i64> {
        col(
            &self.db().one(
                "INSERT INTO events (tenant, ticket, kind, payload, received_at, \
                 idempotency_key, request_hash, processed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING seq",
                &[
                    &tenant,
                    &e.ticket,
                    &e.kind,
                    &e.payload,
                    &e.received_at,
                    &e.idempotency_key.map(|k| k.0),
                    &e.idempotency_key.map(|k| k.1),
                    &i64::from(e.decided_here),
                ],
            )?,
            0,
        )
    }

    fn event_processed(&self, seq: i64, response: &str) -> Result<()> {
        self.db().exec(
            "UPDATE events SET processed = 1, response = $2 WHERE seq = $1",
            &[&seq, &response],
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
        let mut db = self.db();
        let id: i64 = col(
            &db.one(
                "INSERT INTO decisions (tenant, ticket, at, cause, escalated, data) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&tenant, &ticket, &at, &cause, &escalated, &data],
            )?,
            0,
        )?;
        // The whole trail in one statement (one round trip, not one per
        // plugin call).
        let idx: Vec<i64> = (0..audit.len() as i64).collect();
        let plugins: Vec<&str> = audit.iter().map(|a| a.plugin.as_str()).collect();
        let data: Vec<&str> = audit.iter().map(|a| a.data.as_str()).collect();
        if !audit.is_empty() {
            db.exec(
                "INSERT INTO audit (decision, idx, plugin, data) \
                 SELECT $1, i, p, d FROM unnest($2::bigint[], $3::text[], $4::text[]) AS a(i, p, d)",
                &[&id, &idx, &plugins, &data],
            )?;
        }
        Ok(id)
    }

    fn fire(&self, tenant: &str, ticket: &str, key: &str, decision: i64) -> Result<bool> {
        Ok(self.db().exec(
            "INSERT INTO fired (tenant, ticket, key, decision) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&tenant, &ticket, &key, &decision],
        )? == 1)
    }
}

// Timers.

const TIMER_COLUMNS: &str =
    "SELECT id, tenant, ticket, kind, due_at, payload, state, outcome, attempts FROM timers";

fn timer_row(r: &Row) -> Result<Timer> {
    Ok(Timer {
        id: col(r, 0)?,
        tenant: col(r, 1)?,
        ticket: col(r, 2)?,
        kind: TimerKind::parse(col(r, 3)?),
        due_at: col(r, 4)?,
        payload: json_or_null(r, 5)?,
        state: col(r, 6)?,
        outcome: col(r, 7)?,
        attempts: col(r, 8)?,
    })
}

impl Timers for PgStore {
    fn due_timers_except(
        &self,
        now_ms: i64,
        n: u32,
        busy: &[(String, String)],
        full: &[String],
    ) -> Result<Vec<Timer>> {
        let busy_tenants: Vec<&str> = busy.iter().map(|b| b.0.as_str()).collect();
        let busy_tickets: Vec<&str> = busy.iter().map(|b| b.1.as_str()).collect();
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.conn()?
            .rows(
                &format!(
                    "{TIMER_COLUMNS} WHERE state = 'pending' AND due_at <= $1 \
                     AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS b(tenant, ticket) \
                     WHERE b.tenant = timers.tenant AND b.ticket = timers.ticket) \
                     AND tenant <> ALL($5::text[]) ORDER BY due_at, id LIMIT $2"
                ),
                &[&now_ms, &limit(n), &busy_tenants, &busy_tickets, &full],
            )?
            .iter()
            .map(timer_row)
            .collect()
    }

    fn timer_failed(
        &self,
        id: i64,
        now: DateTime<Utc>,
        retry_in_ms: i64,
        error: &str,
    ) -> Result<bool> {
        let mut c = self.conn()?;
        let attempts: i64 = match c.opt(
            "UPDATE timers SET attempts = attempts + 1 WHERE id = $1 AND state = 'pending' \
             RETURNING attempts",
            &[&id],
        )? {
            Some(r) => col(&r, 0)?,
            None => TIMER_MAX_ATTEMPTS,
        };
        let dead = attempts >= TIMER_MAX_ATTEMPTS;
        if dead {
            c.exec(
                "UPDATE timers SET state = 'dead', done_at = $2, outcome = $3 \
                 WHERE id = $1 AND state = 'pending'",
                &[
                    &id,
                    &now,
                    &format!("dead-lettered after {attempts} failed attempts: {error}"),
                ],
            )?;
        } else {
            c.exec(
                "UPDATE timers SET due_at = $2, outcome = $3 WHERE id = $1 AND state = 'pending'",
                &[
                    &id,
                    &now.timestamp_millis().saturating_add(retry_in_ms),
                    &format!("attempt {attempts} failed, retrying: {error}"),
                ],
            )?;
        }
        Ok(dead)
    }

    fn take_inserted(&self) -> Option<i64> {
        self.inserted.take()
    }

    fn next_timer_at(&self) -> Result<Option<i64>> {
        col(
            &self.conn()?.one(
                "SELECT min(due_at) FROM timers WHERE state = 'pending'",
                &[],
            )?,
            0,
        )
    }

    fn timers(&self, tenant: &str, ticket: &str) -> Result<Vec<Timer>> {
        self.conn()?
            .rows(
                &format!("{TIMER_COLUMNS} WHERE tenant = $1 AND ticket = $2 ORDER BY due_at, id"),
                &[&tenant, &ticket],
            )?
            .iter()
            .map(timer_row)
            .collect()
    }
}

impl TimersTx for PgTx<'_> {
    fn insert_timer(
        &self,
        tenant: &str,
        ticket: &str,
        kind: TimerKind,
        due_at: DateTime<Utc>,
        payload: &serde_json::Value,
    ) -> Result<i64> {
        self.inserted.insert(due_at);
        col(
            &self.db().one(
                "INSERT INTO timers (tenant, ticket, kind, due_at, payload) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &tenant,
                    &ticket,
                    &kind.as_str(),
                    &due_at.timestamp_millis(),
                    &payload.to_string(),
                ],
            )?,
            0,
        )
    }

    fn cancel_timers(
        &self,
        tenant: &str,
        ticket: &str,
        kinds: &[TimerKind],
        why: &str,
    ) -> Result<usize> {
        let kinds: Vec<&str> = kinds.iter().map(TimerKind::as_str).collect();
        Ok(self.db().exec(
            "UPDATE timers SET state = 'cancelled', outcome = $4 \
             WHERE tenant = $1 AND ticket = $2 AND kind = ANY($3::text[]) AND state = 'pending'",
            &[&tenant, &ticket, &kinds, &why],
        )? as usize)
    }

    fn cancel_steps_on_claim(&self, tenant: &str, ticket: &str) -> Result<usize> {
        Ok(self.db().exec(
            "UPDATE timers SET state = 'cancelled', outcome = 'claimed' \
             WHERE tenant = $1 AND ticket = $2 AND kind = 'step' AND state = 'pending' \
             AND payload::jsonb #>> '{step,stop_when_claimed}' IN ('true', '1')",
            &[&tenant, &ticket],
        )? as usize)
    }

    fn pending_timers(&self, tenant: &str, ticket: &str, kind: TimerKind) -> Result<Vec<Timer>> {
        self.db()
            .rows(
                &format!(
                    "{TIMER_COLUMNS} WHERE tenant = $1 AND ticket = $2 AND kind = $3 \
                     AND state = 'pending' ORDER BY due_at"
                ),
                &[&tenant, &ticket, &kind.as_str()],
            )?
            .iter()
            .map(timer_row)
            .collect()
    }

    fn cancel_timer(&self, id: i64, why: &str) -> Result<bool> {
        Ok(self.db().exec(
            "UPDATE timers SET state = 'cancelled', outcome = $2 WHERE id = $1 AND state = 'pending'",
            &[&id, &why],
        )? == 1)
    }

    fn take_timer(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        Ok(self.db().exec(
            "UPDATE timers SET state = 'done', done_at = $2 WHERE id = $1 AND state = 'pending'",
            &[&id, &now],
        )? == 1)
    }

    fn timer_outcome(&self, id: i64, outcome: &str) -> Result<()> {
        self.db().exec(
            "UPDATE timers SET outcome = $2 WHERE id = $1",
            &[&id, &outcome],
        )?;
        Ok(())
    }
}

// Deliveries and feeds.

const DELIVERY_COLUMNS: &str = "SELECT id, tenant, ticket, idempotency_key, channel, recipient, \
     address, title, body, status, attempts, last_error, created_at, sent_at, priority \
     FROM deliveries";

fn delivery_row(r: &Row) -> Result<Delivery> {
    let channel: &str = col(r, 4)?;
    let status: &str = col(r, 9)?;
    Ok(Delivery {
        id: col(r, 0)?,
        tenant: col(r, 1)?,
        ticket: col(r, 2)?,
        idempotency_key: col(r, 3)?,
        channel: Channel::parse(channel)
            .ok_or_else(|| StoreError::Postgres(format!("unknown channel {channel:?}")))?,
        recipient: col(r, 5)?,
        address: col(r, 6)?,
        title: col(r, 7)?,
        body: col(r, 8)?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| StoreError::Postgres(format!("unknown delivery status {status:?}")))?,
        attempts: col(r, 10)?,
        last_error: col(r, 11)?,
        created_at: time(r, 12)?,
        sent_at: time_opt(r, 13)?,
        priority: col(r, 14)?,
    })
}

/// Columns: id, agent, ticket, title, body, at.
fn feed_row(r: &Row) -> Result<FeedItem> {
    Ok(FeedItem {
        id: col(r, 0)?,
        agent: col(r, 1)?,
        ticket: col(r, 2)?,
        title: col(r, 3)?,
        body: col(r, 4)?,
        at: time(r, 5)?,
    })
}

/// Due deliveries are read a page at a time per tenant.
const DUE_PAGE: i64 = 256;

impl Deliveries for PgStore {
    fn deliveries(
        &self,
        tenant: &str,
        ticket: Option<&str>,
        after: i64,
        n: usize,
    ) -> Result<Vec<Delivery>> {
        self.conn()?
            .rows(
                &format!(
                    "{DELIVERY_COLUMNS} WHERE tenant = $1 AND ($2::text IS NULL OR ticket = $2) \
                     AND id > $3 ORDER BY id LIMIT $4"
                ),
                &[&tenant, &ticket, &after, &limit(n)],
            )?
            .iter()
            .map(delivery_row)
            .collect()
    }

    fn due_deliveries_except(
        &self,
        now_ms: i64,
        n: u32,
        busy: &HashSet<i64>,
        free: &dyn Fn(&str) -> usize,
        full_endpoints: &HashSet<(String, String)>,
    ) -> Result<Vec<Delivery>> {
        let mut c = self.conn()?;
        // (priority, due, id) of each pick.
        let mut picked: Vec<(i64, i64, i64)> = Vec::new();
        let mut tenant = String::new();
        // Each tenant with pending deliveries, through `deliveries_fair`
        // (one index seek per tenant), and its due ones, most urgent
        // first, a page at a time until its free share is picked.
        while let Some(r) = c.opt(
            "SELECT tenant FROM deliveries WHERE status = 'pending' AND tenant > $1 \
             ORDER BY tenant LIMIT 1",
            &[&tenant],
        )? {
            tenant = col(&r, 0)?;
            let mut want = free(&tenant).min(n as usize);
            let mut from = (i64::MIN, i64::MIN, i64::MIN);
            while want > 0 {
                let page = c.rows(
                    "SELECT id, address, priority, next_attempt_at FROM deliveries \
                     WHERE status = 'pending' AND tenant = $1 AND next_attempt_at <= $2 \
                     AND (priority, next_attempt_at, id) > ($3, $4, $5) \
                     ORDER BY priority, next_attempt_at, id LIMIT $6",
                    &[&tenant, &now_ms, &from.0, &from.1, &from.2, &DUE_PAGE],
                )?;
                for r in &page {
                    let (id, address, priority, due): (i64, String, i64, i64) =
                        (col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?);
                    from = (priority, due, id);
                    if want == 0
                        || busy.contains(&id)
                        || full_endpoints.contains(&(tenant.clone(), address))
                    {
                        continue;
                    }
                    picked.push((priority, due, id));
                    want -= 1;
                }
                if (page.len() as i64) < DUE_PAGE {
                    break;
                }
            }
        }
        picked.sort_unstable();
        picked.truncate(n as usize);
        let ids: Vec<i64> = picked.iter().map(|p| p.2).collect();
        let mut rows: Vec<Delivery> = c
            .rows(
                &format!("{DELIVERY_COLUMNS} WHERE id = ANY($1::bigint[])"),
                &[&ids],
            )?
            .iter()
            .map(delivery_row)
            .collect::<Result<_>>()?;
        rows.sort_by_key(|d| ids.iter().position(|i| *i == d.id));
        Ok(rows)
    }

    fn delivery_postponed(&self, id: i64, until_ms: i64, why: &str) -> Result<()> {
        self.conn()?.exec(
            "UPDATE deliveries SET next_attempt_at = $2, last_error = $3 \
             WHERE id = $1 AND status = 'pending'",
            &[&id, &until_ms, &why],
        )?;
        Ok(())
    }

    fn claim_delivery(&self, id: i64, now_ms: i64, lease_ms: i64) -> Result<bool> {
        Ok(self.conn()?.exec(
            "UPDATE deliveries SET next_attempt_at = $3 \
             WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2",
            &[&id, &now_ms, &now_ms.saturating_add(lease_ms)],
        )? == 1)
    }

    fn next_delivery_at(&self) -> Result<Option<i64>> {
        col(
            &self.conn()?.one(
                "SELECT min(next_attempt_at) FROM deliveries WHERE status = 'pending'",
                &[],
            )?,
            0,
        )
    }

    fn delivery_attempted(
        &self,
        id: i64,
        now: DateTime<Utc>,
        result: std::result::Result<(), (String, Option<i64>)>,
    ) -> Result<()> {
        let mut c = self.conn()?;
        match result {
            Ok(()) => c.exec(
                "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = $2, \
                 last_error = NULL WHERE id = $1",
                &[&id, &now],
            )?,
            Err((error, Some(retry_at))) => c.exec(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = $2, \
                 next_attempt_at = $3 WHERE id = $1",
                &[&id, &error, &retry_at],
            )?,
            Err((error, None)) => c.exec(
                "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, \
                 last_error = $2 WHERE id = $1",
                &[&id, &error],
            )?,
        };
        Ok(())
    }

    fn feed(&self, tenant: &str, agent: &str, after: i64) -> Result<Vec<FeedItem>> {
        self.conn()?
            .rows(
                "SELECT id, agent, ticket, title, body, at FROM feed \
                 WHERE tenant = $1 AND agent = $2 AND id > $3 ORDER BY id LIMIT 1000",
                &[&tenant, &agent, &after],
            )?
            .iter()
            .map(feed_row)
            .collect()
    }

    fn feed_item(&self, id: i64) -> Result<Option<(String, FeedItem)>> {
        self.conn()?
            .opt(
                "SELECT id, agent, ticket, title, body, at, tenant FROM feed WHERE id = $1",
                &[&id],
            )?
            .map(|r| Ok((col(&r, 6)?, feed_row(&r)?)))
            .transpose()
    }

    fn delivery_counts(&self) -> Result<Vec<(String, String, String, i64)>> {
        self.conn()?
            .rows(
                "SELECT tenant, channel, status, count(*) FROM deliveries \
                 GROUP BY tenant, channel, status",
                &[],
            )?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?)))
            .collect()
    }
}

impl DeliveriesTx for PgTx<'_> {
    fn insert_delivery(&self, tenant: &str, d: &NewDelivery, now: DateTime<Utc>) -> Result<bool> {
        let sent_at = (d.status == DeliveryStatus::Sent).then_some(now);
        Ok(self.db().exec(
            "INSERT INTO deliveries (tenant, ticket, idempotency_key, channel, recipient, \
             address, title, body, status, last_error, next_attempt_at, created_at, sent_at, \
             priority) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13) \
             ON CONFLICT DO NOTHING",
            &[
                &tenant,
                &d.ticket,
                &d.idempotency_key,
                &d.channel.as_str(),
                &d.recipient,
                &d.address,
                &d.title,
                &d.body,
                &d.status.as_str(),
                &d.note,
                &now,
                &sent_at,
                &d.priority,
            ],
        )? == 1)
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
        self.db()
            .opt(
                "SELECT created_at FROM deliveries WHERE tenant = $1 AND channel = $2 \
                 AND address = $3 AND created_at >= $4 AND status IN ('pending', 'sent') \
                 ORDER BY created_at DESC LIMIT 1",
                &[&tenant, &channel.as_str(), &address, &since],
            )?
            .map(|r| col(&r, 0))
            .transpose()
    }

    fn take_held(&self, tenant: &str, channel: Channel, address: &str) -> Result<Vec<Delivery>> {
        let mut db = self.db();
        // Locked as read: two instances digesting one address at once
        // take each held delivery once.
        let held = db
            .rows(
                &format!(
                    "{DELIVERY_COLUMNS} WHERE tenant = $1 AND channel = $2 AND address = $3 \
                     AND status = 'held' ORDER BY id FOR UPDATE"
                ),
                &[&tenant, &channel.as_str(), &address],
            )?
            .iter()
            .map(delivery_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = held.iter().map(|d| d.id).collect();
        db.exec(
            "UPDATE deliveries SET status = 'digested' WHERE id = ANY($1::bigint[])",
            &[&ids],
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
        let mut db = self.db();
        let id: i64 = col(
            &db.one(
                "INSERT INTO feed (tenant, agent, ticket, title, body, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&tenant, &agent, &ticket, &title, &body, &now],
            )?,
            0,
        )?;
        // Delivered to every listening instance when this commits.
        db.exec(
            "SELECT pg_notify($1, $2)",
            &[&super::CHANNEL, &format!("feed:{id}")],
        )?;
        Ok(FeedItem {
            id,
            agent: agent.into(),
            ticket: ticket.into(),
            title: title.into(),
            body: body.into(),
            at: ts(now),
        })
    }
}

// Plugins.

const VERSION_COLUMNS: &str = "SELECT name, version, kind, manifest, wasm, digest, validation, \
     source, uploaded_at, uploaded_by FROM plugin_versions";

fn version_row(r: &Row) -> Result<PluginVersion> {
    let wasm: Vec<u8> = col(r, 4)?;
    Ok(PluginVersion {
        name: col(r, 0)?,
        version: col(r, 1)?,
        kind: col(r, 2)?,
        manifest: col(r, 3)?,
        size: wasm.len(),
        wasm,
        digest: col(r, 5)?,
        validation: json_or_null(r, 6)?,
        source: col(r, 7)?,
        uploaded_at: time(r, 8)?,
        uploaded_by: col(r, 9)?,
    })
}

fn slots(db: &mut dyn Sql, tenant: &str) -> Result<Vec<PluginSlot>> {
    db.rows(
        "SELECT name, version, mode, previous FROM plugin_slots WHERE tenant = $1 ORDER BY name",
        &[&tenant],
    )?
    .iter()
    .map(|r| {
        Ok(PluginSlot {
            name: col(r, 0)?,
            version: col(r, 1)?,
            mode: col::<Option<&str>>(r, 2)?.and_then(Mode::parse),
            previous: col(r, 3)?,
        })
    })
    .collect()
}

impl Plugins for PgStore {
    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        slots(&mut *self.conn()?, tenant)
    }

    fn tenants_with_plugins(&self) -> Result<Vec<String>> {
        self.conn()?
            .rows(
                "SELECT DISTINCT tenant FROM plugin_slots ORDER BY tenant",
                &[],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect()
    }

    fn plugin_changes_after(&self, after: i64) -> Result<Vec<(i64, String)>> {
        self.conn()?
            .rows(
                "SELECT id, tenant FROM plugin_changes WHERE id > $1 ORDER BY id",
                &[&after],
            )?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
            .collect()
    }

    fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginVersion>> {
        self.conn()?
            .opt(
                &format!("{VERSION_COLUMNS} WHERE tenant = $1 AND name = $2 AND version = $3"),
                &[&tenant, &name, &version],
            )?
            .map(|r| version_row(&r))
            .transpose()
    }

    fn plugin_versions(&self, tenant: &str, name: &str) -> Result<Vec<PluginVersion>> {
        // The bytes are left out by the query, not dropped after reading.
        self.conn()?
            .rows(
                "SELECT name, version, kind, manifest, ''::bytea, digest, validation, source, \
                 uploaded_at, uploaded_by, length(wasm) FROM plugin_versions \
                 WHERE tenant = $1 AND name = $2 ORDER BY uploaded_at, version",
                &[&tenant, &name],
            )?
            .iter()
            .map(|r| {
                let mut v = version_row(r)?;
                v.size = usize::try_from(col::<i32>(r, 10)?).unwrap_or(0);
                Ok(v)
            })
            .collect()
    }

    fn uploaded_plugin_names(&self, tenant: &str) -> Result<Vec<String>> {
        self.conn()?
            .rows(
                "SELECT DISTINCT name FROM plugin_versions WHERE tenant = $1 ORDER BY name",
                &[&tenant],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect()
    }

    fn plugin_changes(&self, tenant: &str, n: u32) -> Result<Vec<PluginChange>> {
        self.conn()?
            .rows(
                "SELECT id, at, actor, action, name, version, detail FROM plugin_changes \
                 WHERE tenant = $1 ORDER BY id DESC LIMIT $2",
                &[&tenant, &limit(n)],
            )?
            .iter()
            .map(|r| {
                Ok(PluginChange {
                    id: col(r, 0)?,
                    at: time(r, 1)?,
                    actor: col(r, 2)?,
                    action: col(r, 3)?,
                    name: col(r, 4)?,
                    version: col(r, 5)?,
                    detail: json_or_null(r, 6)?,
                })
            })
            .collect()
    }

    fn decisions_with_plugin(
        &self,
        tenant: &str,
        name: &str,
        since: &str,
        until: &str,
    ) -> Result<Vec<(Option<String>, Vec<serde_json::Value>)>> {
        let (since, until) = (parse_time("since", since)?, parse_time("until", until)?);
        let mut c = self.conn()?;
        let decisions = c.rows(
            "SELECT id, data::jsonb ->> 'tier' FROM decisions \
             WHERE tenant = $1 AND at >= $2 AND at < $3 AND cause LIKE 'event:%' ORDER BY id",
            &[&tenant, &since, &until],
        )?;
        let mut out = Vec::with_capacity(decisions.len());
        for d in &decisions {
            let id: i64 = col(d, 0)?;
            let mut runs = c
                .rows(
                    "SELECT data FROM audit WHERE decision = $1 \
                     AND (plugin = $2 OR plugin LIKE $2 || '@%')",
                    &[&id, &name],
                )?
                .iter()
                .map(|a| json(a, 0))
                .collect::<Result<Vec<_>>>()?;
            if crate::store::tickets::outputs_in_decision(&runs) {
                let row = c.rows("SELECT data FROM decisions WHERE id = $1", &[&id])?;
                let data = row.first().map(|r| json(r, 0)).transpose()?;
                crate::store::tickets::restore_outputs(
                    data.as_ref().unwrap_or(&serde_json::Value::Null),
                    &mut runs,
                );
            }
            out.push((col(d, 1)?, runs));
        }
        Ok(out)
    }
}

impl PluginsTx for PgTx<'_> {
    fn plugin_health(&self, tenant: &str, plugin: &str) -> Result<(String, String)> {
        let mut db = self.db();
        // The row exists, then is locked: another instance's update waits
        // for this transaction.
        db.exec(
            "INSERT INTO plugin_health (tenant, plugin, recent, last_error) \
             VALUES ($1, $2, '', '') ON CONFLICT DO NOTHING",
            &[&tenant, &plugin],
        )?;
        let r = db.one(
            "SELECT recent, last_error FROM plugin_health WHERE tenant = $1 AND plugin = $2 \
             FOR UPDATE",
            &[&tenant, &plugin],
        )?;
        Ok((col(&r, 0)?, col(&r, 1)?))
    }

    fn clear_plugin_health(&self, tenant: &str, name: &str) -> Result<()> {
        self.db().exec(
            "DELETE FROM plugin_health WHERE tenant = $1 AND starts_with(plugin, $2 || '@')",
            &[&tenant, &name],
        )?;
        Ok(())
    }

    fn set_plugin_health(
        &self,
        tenant: &str,
        plugin: &str,
        recent: &str,
        last_error: &str,
    ) -> Result<()> {
        self.db().exec(
            "INSERT INTO plugin_health (tenant, plugin, recent, last_error) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, plugin) DO UPDATE \
             SET recent = excluded.recent, last_error = excluded.last_error",
            &[&tenant, &plugin, &recent, &last_error],
        )?;
        Ok(())
    }

    fn insert_plugin_version(
        &self,
        tenant: &str,
        v: &PluginVersion,
        fixtures: &serde_json::Value,
    ) -> Result<bool> {
        let uploaded_at = parse_time("uploaded_at", &v.uploaded_at)?;
        Ok(self.db().exec(
            "INSERT INTO plugin_versions (tenant, name, version, kind, manifest, wasm, digest, \
             fixtures, validation, source, uploaded_at, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
            &[
                &tenant,
                &v.name,
                &v.version,
                &v.kind,
                &v.manifest,
                &v.wasm,
                &v.digest,
                &fixtures.to_string(),
                &v.validation.to_string(),
                &v.source,
                &uploaded_at,
                &v.uploaded_by,
            ],
        )? == 1)
    }

    fn delete_plugin_version(&self, tenant: &str, name: &str, version: &str) -> Result<bool> {
        Ok(self.db().exec(
            "DELETE FROM plugin_versions WHERE tenant = $1 AND name = $2 AND version = $3",
            &[&tenant, &name, &version],
        )? == 1)
    }

    fn version_digest(&self, tenant: &str, name: &str, version: &str) -> Result<Option<String>> {
        self.db()
            .opt(
                "SELECT digest FROM plugin_versions WHERE tenant = $1 AND name = $2 \
                 AND version = $3",
                &[&tenant, &name, &version],
            )?
            .map(|r| col(&r, 0))
            .transpose()
    }

    fn digest_in_use(&self, digest: &str) -> Result<bool> {
        col(
            &self.db().one(
                "SELECT EXISTS (SELECT 1 FROM plugin_versions WHERE digest = $1)",
                &[&digest],
            )?,
            0,
        )
    }

    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        slots(&mut *self.db(), tenant)
    }

    fn set_plugin_slots(&self, tenant: &str, new: &[PluginSlot]) -> Result<()> {
        let mut db = self.db();
        db.exec("DELETE FROM plugin_slots WHERE tenant = $1", &[&tenant])?;
        for s in new {
            db.exec(
                "INSERT INTO plugin_slots (tenant, name, version, mode, previous) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &tenant,
                    &s.name,
                    &s.version,
                    &s.mode.map(Mode::as_str),
                    &s.previous,
                ],
            )?;
        }
        Ok(())
    }

    fn plugin_change(&self, tenant: &str, at: DateTime<Utc>, c: &ChangeLog<'_>) -> Result<()> {
        let ChangeLog {
            actor,
            action,
            name,
            version,
            detail,
        } = *c;
        self.db().exec(
            "INSERT INTO plugin_changes (tenant, at, actor, action, name, version, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &tenant,
                &at,
                &actor,
                &action,
                &name,
                &version,
                &detail.to_string(),
            ],
        )?;
        Ok(())
    }
}
