//! The engine: events in, durable decisions, timers and deliveries out.
//!
//! For each event: store it (one transaction, durable before anything
//! else), run the tenant's triggers, compose, and if the ticket escalates
//! (first time, or to a higher tier) route it and plan its notifications;
//! then store the decision with its audit trail, the keys acted on, the
//! timers (trigger wake-ups, plan steps, fallback reassignments) and the
//! deliveries due now, in a second transaction. A signal key is acted on
//! once per ticket, so re-evaluations never repeat a cause.
//!
//! Timers fire once each (taking a timer and doing its work is one
//! transaction). A plan step is skipped if the ticket was claimed (when
//! the step says so), answered, or resolved by then; a fallback step moves
//! an unclaimed ticket to the next target and alerts them the way the
//! first assignee was alerted. An agent who goes away or out of office
//! loses their unclaimed escalated tickets to the router again.

mod lifecycle;
mod locks;
mod timers;

pub use lifecycle::{GUARD_FAILURES, GUARD_WINDOW, Installed, PluginQuota, TenantSet, Upload};
pub use timers::TIMER_CONCURRENCY;

use crate::clock::Clock;
use crate::delivery::ChannelSettings;
use crate::matrix::{Matrix, ResponseTargets};
use crate::model::{
    self, AgentStatus, AuthorKind, Channel, EventKind, Recipient, Signal, SignalAction, Target,
    Ticket, TicketStatus, Tier,
};
use crate::pipeline::{self, PluginRun, PluginSet};
use crate::registry::LoadedPlugin;
use crate::runtime::Runtime;
use crate::store::{
    EscalationState, FeedItem, HistoryEntry, NewDelivery, Store, TicketState, Timer, Tx,
};
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast};

/// An event about a ticket, as the API receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    /// A message in the conversation.
    Message {
        /// Who wrote it.
        author: AuthorKind,
        /// The author's id.
        #[serde(default)]
        author_id: Option<String>,
        /// The text.
        body: String,
        /// The message's id in the source system.
        #[serde(default)]
        id: Option<String>,
        /// When it was sent (default: when received).
        #[serde(default)]
        sent_at: Option<DateTime<Utc>>,
        /// Sentiment from upstream, -1..1.
        #[serde(default)]
        sentiment: Option<f32>,
    },
    /// The AI agent's analysis.
    AiAnalysis {
        /// Confidence 0..1.
        #[schemars(range(min = 0.0, max = 1.0))]
        confidence: f32,
        /// Intent.
        #[serde(default)]
        intent: Option<String>,
        /// Category.
        #[serde(default)]
        category: Option<String>,
        /// Reasoning.
        #[serde(default)]
        reasoning: String,
        /// Solutions offered or tried.
        #[serde(default)]
        solutions_tried: Vec<String>,
    },
    /// A human claims (acknowledges) the ticket.
    Claim {
        /// The agent's id.
        agent: String,
    },
    /// A human agent replies to the customer.
    Reply {
        /// The agent's id.
        agent: String,
        /// The text.
        body: String,
    },
    /// The status changes.
    Status {
        /// The new status.
        status: TicketStatus,
    },
    /// The ticket is solved.
    Resolve {},
    /// The customer rated the support, 1..5.
    Csat {
        /// The score.
        #[schemars(range(min = 1, max = 5))]
        score: u8,
        /// The comment.
        #[serde(default)]
        comment: Option<String>,
    },
}

impl Event {
    /// The event kind plugins see.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Message {
                author: AuthorKind::HumanAgent,
                ..
            }
            | Event::Reply { .. } => EventKind::AgentReplied,
            Event::Message { .. } => EventKind::MessageAdded,
            Event::AiAnalysis { .. } => EventKind::AiAnalysis,
            Event::Claim { .. } => EventKind::Claimed,
            Event::Status { .. } | Event::Resolve {} => EventKind::StatusChanged,
            Event::Csat { .. } => EventKind::CsatRating,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Event::Message { .. } => "message",
            Event::AiAnalysis { .. } => "ai-analysis",
            Event::Claim { .. } => "claim",
            Event::Reply { .. } => "reply",
            Event::Status { .. } => "status",
            Event::Resolve {} => "resolve",
            Event::Csat { .. } => "csat",
        }
    }
}

/// What went wrong, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such ticket or agent (in this tenant).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The event was stored, but deciding on it failed (an error or a
    /// panic); it is marked failed with the reason and never retried.
    #[error("deciding on event {event} failed: {reason}")]
    Failed {
        /// The event's sequence number.
        event: i64,
        /// Why.
        reason: String,
    },
    /// Our fault.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the sender of an event gets back, once its decision is durable.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// The ticket.
    pub ticket: String,
    /// The event's sequence number.
    pub event: i64,
    /// The decision's id.
    pub decision: i64,
    /// The ticket's tier now.
    pub tier: Option<Tier>,
    /// Whether this event escalated it (first time or higher).
    pub escalated: bool,
    /// Signals acted on for the first time.
    pub new_signals: Vec<Signal>,
    /// The assignee now.
    pub assignee: Option<String>,
    /// The queue now, when no agent has it.
    pub queue: Option<String>,
    /// The line for the customer, when the ticket escalated.
    pub customer_message: Option<String>,
    /// Notifications sent or queued right away.
    pub notified: usize,
    /// Set when the event was already applied (a message with the same
    /// source id, a second claim by the same agent): why it was ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<String>,
}

/// Why `event` changes nothing because the ticket already has it, if so.
fn already_applied(state: &TicketState, event: &Event) -> Option<String> {
    let t = &state.ticket;
    match event {
        Event::Message { id: Some(id), .. } if t.messages.iter().any(|m| &m.id == id) => {
            Some(format!("message {id} is already on the ticket"))
        }
        Event::Claim { agent }
            if t.claimed_at.is_some() && t.assignee.as_deref() == Some(agent.as_str()) =>
        {
            Some(format!("already claimed by {agent}"))
        }
        _ => None,
    }
}

/// An in-app feed item for the SSE stream, with its tenant.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    /// The tenant.
    pub tenant: String,
    /// The item.
    pub item: FeedItem,
}

/// What caused an evaluation.
#[derive(Debug, Clone, Copy)]
enum Cause {
    Event(i64),
    Timer(i64),
    Agent,
}

impl Cause {
    fn label(&self) -> String {
        match self {
            Cause::Event(seq) => format!("event:{seq}"),
            Cause::Timer(id) => format!("timer:{id}"),
            Cause::Agent => "agent-availability".into(),
        }
    }
}

/// The most queued tickets offered again when an agent becomes available.
const QUEUED_OFFERED: u32 = 100;

/// The engine.
pub struct Engine {
    /// The store.
    pub store: Arc<Store>,
    /// The plugin runtime.
    pub runtime: Arc<Runtime>,
    /// The clock.
    pub clock: Clock,
    /// Response targets per tier (from the matrix).
    pub targets: ResponseTargets,
    matrix: Matrix,
    builtins: Vec<LoadedPlugin>,
    default_plugins: Arc<TenantSet>,
    tenant_plugins: RwLock<std::collections::HashMap<String, Arc<TenantSet>>>,
    generation: std::sync::atomic::AtomicU64,
    versions: Mutex<std::collections::HashMap<(String, String, String), LoadedPlugin>>,
    /// One plugin change at a time per tenant (compiling may take seconds;
    /// another tenant never waits for it).
    lifecycle: locks::TicketLocks,
    health: Mutex<std::collections::HashMap<(String, String), lifecycle::Health>>,
    locks: locks::TicketLocks,
    timers_running: Mutex<()>,
    /// New in-app feed items.
    pub feed: broadcast::Sender<FeedEvent>,
    /// Notified when deliveries are queued.
    pub delivery_wake: Arc<Notify>,
    /// Parsed channel settings, per tenant.
    pub channels: Arc<crate::delivery::SettingsCache>,
    /// Notified when timers are scheduled.
    pub timer_wake: Arc<Notify>,
    /// Counters and histograms for `/metrics` and the dashboard.
    pub metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unresolved(t: &Ticket) -> bool {
    !matches!(t.status, TicketStatus::Solved | TicketStatus::Closed)
}

fn available(s: AgentStatus) -> bool {
    s == AgentStatus::Available
}

impl Engine {
    /// An engine over `store`: every tenant runs `builtins` (configured
    /// with `matrix`) until it changes its plugins.
    pub fn new(
        store: Arc<Store>,
        runtime: Arc<Runtime>,
        clock: Clock,
        builtins: Vec<LoadedPlugin>,
        matrix: Matrix,
    ) -> Result<Engine> {
        let builtins: Vec<LoadedPlugin> = builtins
            .into_iter()
            .map(|p| p.with_matrix(&matrix))
            .collect();
        let set = PluginSet::new(builtins.clone()).map_err(anyhow::Error::msg)?;
        Ok(Engine {
            store,
            runtime,
            clock,
            targets: matrix.response_targets(),
            matrix,
            builtins,
            default_plugins: Arc::new(TenantSet { set, generation: 0 }),
            tenant_plugins: RwLock::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
            versions: Mutex::default(),
            lifecycle: locks::TicketLocks::default(),
            health: Mutex::default(),
            locks: locks::TicketLocks::default(),
            timers_running: Mutex::new(()),
            feed: broadcast::channel(1024).0,
            delivery_wake: Arc::new(Notify::new()),
            channels: Arc::default(),
            timer_wake: Arc::new(Notify::new()),
            metrics: crate::metrics::Metrics::default(),
        })
    }

    /// The plugin set of `tenant`: a snapshot; hold it for one evaluation.
    pub fn plugins(&self, tenant: &str) -> Arc<TenantSet> {
        self.tenant_plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.default_plugins.clone())
    }

    fn ticket_lock(&self, tenant: &str, ticket: &str) -> locks::TicketGuard<'_> {
        self.locks.lock(tenant, ticket)
    }

    fn settings(&self, tenant: &str) -> Arc<ChannelSettings> {
        self.channels.get(&self.store, tenant)
    }

    /// Create a ticket and evaluate it. `key` makes a retried request
    /// return the first answer instead of creating anything twice.
    pub fn create_ticket(
        &self,
        tenant: &str,
        mut ticket: Ticket,
        key: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        if ticket.id.trim().is_empty() {
            return Err(EngineError::Invalid("ticket id must not be empty".into()));
        }
        let key = key.map(|k| IdempotencyKey::new("create", &ticket.id, k, &ticket));
        let _g = self.ticket_lock(tenant, &ticket.id);
        if let Some(done) = self.replayed(tenant, key.as_ref())? {
            return Ok(done);
        }
        let now = self.clock.now();
        ticket.tenant = tenant.to_string();
        ticket.tier = None;
        ticket.assignee = None;
        ticket.claimed_at = None;
        if ticket.status_history.is_empty() {
            ticket.status_history.push(model::StatusChange {
                status: ticket.status,
                at: ticket.created_at,
            });
        }
        for (i, m) in ticket.messages.iter_mut().enumerate() {
            if m.id.is_empty() {
                m.id = format!("m{}", i + 1);
            }
        }
        // A message the desk sent twice (same source id) is kept once.
        let mut seen = std::collections::HashSet::new();
        ticket.messages.retain(|m| seen.insert(m.id.clone()));
        ticket.updated_at = Some(now);
        // Serialized before the writer is taken: a ticket may be a
        // megabyte, and every tenant's commits wait for the writer.
        let payload = serde_json::to_string(&ticket).map_err(anyhow::Error::from)?;
        let state = TicketState {
            ticket,
            queue: None,
            escalation: None,
            history: Vec::new(),
        };
        let state_json = serde_json::to_string(&state).map_err(anyhow::Error::from)?;
        let seq = self.store.write(|tx| {
            if tx.ticket_exists(tenant, &state.ticket.id)? {
                return Ok(None);
            }
            tx.put_ticket_json(tenant, &state, &state_json)?;
            Ok(Some(tx.insert_event_json(
                tenant,
                &state.ticket.id,
                "ticket-created",
                &payload,
                now,
                key.as_ref().map(IdempotencyKey::columns),
            )?))
        })?;
        let Some(seq) = seq else {
            return Err(EngineError::Conflict(format!(
                "ticket {} exists; add events to it instead",
                state.ticket.id
            )));
        };
        self.decide_event(tenant, state, now, EventKind::TicketCreated, seq)
    }

    /// Add an event to a ticket and evaluate it.
    pub fn add_event(
        &self,
        tenant: &str,
        ticket_id: &str,
        event: Event,
        key: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        let key = key.map(|k| IdempotencyKey::new("event", ticket_id, k, &event));
        let _g = self.ticket_lock(tenant, ticket_id);
        if let Some(done) = self.replayed(tenant, key.as_ref())? {
            return Ok(done);
        }
        let now = self.clock.now();
        let payload = serde_json::to_value(&event).map_err(anyhow::Error::from)?;
        let stored = self.store.write(|tx| {
            let Some(mut state) = tx.ticket(tenant, ticket_id)? else {
                return Ok(Err(EngineError::NotFound(format!("no ticket {ticket_id}"))));
            };
            if let Some(why) = already_applied(&state, &event) {
                return Ok(Ok(Err((why, state))));
            }
            if let Err(e) = self.apply(tx, tenant, &mut state, &event, now) {
                return Ok(Err(e));
            }
            tx.put_ticket(tenant, &state)?;
            let seq = tx.insert_event(
                tenant,
                ticket_id,
                event.name(),
                &payload,
                now,
                key.as_ref().map(IdempotencyKey::columns),
            )?;
            Ok(Ok(Ok((seq, state))))
        })?;
        let (seq, state) = match stored? {
            Ok(stored) => stored,
            // A desk's retry or a double click: nothing stored, nothing
            // decided, the ticket as it stands.
            Err((why, state)) => {
                tracing::debug!(tenant, ticket = ticket_id, why, "duplicate event ignored");
                return Ok(Outcome {
                    ticket: state.ticket.id.clone(),
                    event: 0,
                    decision: 0,
                    tier: state.escalation.as_ref().map(|e| e.tier),
                    escalated: false,
                    new_signals: Vec::new(),
                    assignee: state.ticket.assignee.clone(),
                    queue: state.queue.clone(),
                    customer_message: None,
                    notified: 0,
                    duplicate: Some(why),
                });
            }
        };
        if let (Event::Claim { .. }, Some(esc)) = (&event, &state.escalation) {
            let waited = (now - esc.escalated_at).num_milliseconds().max(0) as f64 / 1000.0;
            let within = esc
                .response_target_ms
                .is_none_or(|t| waited * 1000.0 <= t as f64);
            let tier = name(&esc.tier);
            self.metrics.observe(
                "escalator_time_to_claim_seconds",
                crate::metrics::TIME_BUCKETS,
                vec![("tenant", tenant.into()), ("tier", tier.clone())],
                waited,
            );
            self.metrics.add(
                "escalator_claims_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", tier),
                    ("within_target", within.to_string()),
                ],
                1.0,
            );
        }
        let outcome = self.decide_event(tenant, state, now, event.kind(), seq)?;
        if let Event::Claim { .. } = event {
            self.plan_after_claim(tenant, ticket_id, now)?;
        }
        drop(_g);
        Ok(outcome)
    }

    /// Decide on a stored event, whatever happens: if deciding fails (an
    /// error, or a panic anywhere in it), the event is marked failed with
    /// the reason, so it is never decided again (not at the next start
    /// either), and the caller hears why.
    fn decide_event(
        &self,
        tenant: &str,
        state: TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
        seq: i64,
    ) -> Result<Outcome, EngineError> {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate(tenant, state, now, kind, Cause::Event(seq))
        }));
        let reason = match run {
            Ok(Ok(outcome)) => return Ok(outcome),
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!("panicked: {}", crate::runtime::panic_message(&*panic)),
        };
        tracing::error!(tenant, seq, %reason, "deciding on an event failed; marked failed");
        if let Err(e) = self.store.event_failed(seq, &reason) {
            tracing::error!(seq, error = %e, "could not mark an event failed");
        }
        self.metrics.add(
            "escalator_events_failed_total",
            vec![("tenant", tenant.into())],
            1.0,
        );
        Err(EngineError::Failed { event: seq, reason })
    }

    /// The first answer to a request with this idempotency key, if there
    /// was one. Called under the ticket's lock, so a concurrent duplicate
    /// waits for the first and gets its answer.
    fn replayed(
        &self,
        tenant: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Outcome>, EngineError> {
        let Some(key) = key else { return Ok(None) };
        let Some(first) = self.store.event_by_key(tenant, &key.scoped)? else {
            return Ok(None);
        };
        if first.request_hash.as_deref() != Some(key.request_hash.as_str()) {
            return Err(EngineError::Invalid(format!(
                "idempotency key {:?} was already used for a different request on this ticket; use a new key for a new request",
                key.key
            )));
        }
        match (first.processed, first.response) {
            (1, Some(response)) => Ok(Some(
                serde_json::from_str(&response).map_err(anyhow::Error::from)?,
            )),
            (2, _) => Err(EngineError::Failed {
                event: first.seq,
                reason: first.error.unwrap_or_default(),
            }),
            _ => Err(EngineError::Conflict(format!(
                "the event with idempotency key {:?} is being decided; retry shortly",
                key.key
            ))),
        }
    }

    /// Apply an event to the ticket (in the same transaction that stores
    /// the event).
    fn apply(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        state: &mut TicketState,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let t = &mut state.ticket;
        let next_id = |t: &Ticket| format!("m{}", t.messages.len() + 1);
        let set_status = |t: &mut Ticket, status: TicketStatus| {
            if t.status != status {
                t.status = status;
                t.status_history
                    .push(model::StatusChange { status, at: now });
            }
        };
        match event {
            Event::Message {
                author,
                author_id,
                body,
                id,
                sent_at,
                sentiment,
            } => {
                let id = id.clone().unwrap_or_else(|| next_id(t));
                t.messages.push(model::Message {
                    id,
                    author: *author,
                    author_id: author_id.clone(),
                    body: body.clone(),
                    sent_at: sent_at.unwrap_or(now),
                    sentiment: *sentiment,
                });
                // A customer writing again reopens a solved or pending ticket.
                if *author == AuthorKind::Customer
                    && matches!(
                        t.status,
                        TicketStatus::Pending | TicketStatus::Solved | TicketStatus::OnHold
                    )
                {
                    set_status(t, TicketStatus::Open);
                }
            }
            Event::AiAnalysis {
                confidence,
                intent,
                category,
                reasoning,
                solutions_tried,
            } => {
                if !(0.0..=1.0).contains(confidence) {
                    return Err(EngineError::Invalid(format!(
                        "confidence {confidence} is outside 0..1"
                    )));
                }
                t.ai_analysis = Some(model::AiAnalysis {
                    confidence: *confidence,
                    intent: intent.clone(),
                    category: category.clone(),
                    reasoning: reasoning.clone(),
                    solutions_tried: solutions_tried.clone(),
                    analyzed_at: Some(now),
                });
            }
            Event::Claim { agent } => {
                if tx.agent(tenant, agent)?.is_none() {
                    return Err(EngineError::NotFound(format!("no agent {agent}")));
                }
                let previous = t.assignee.replace(agent.clone());
                t.claimed_at = Some(now);
                state.queue = None;
                if previous.as_deref() != Some(agent) {
                    self.move_load(tx, tenant, previous.as_deref(), Some(agent), now)?;
                }
                tx.cancel_timers(tenant, &t.id, &["fallback"], "claimed")?;
                tx.cancel_steps_on_claim(tenant, &t.id)?;
                state.history.push(HistoryEntry {
                    at: now,
                    what: "claimed".into(),
                    detail: format!("claimed by {agent}"),
                });
            }
            Event::Reply { agent, body } => {
                let id = next_id(t);
                t.messages.push(model::Message {
                    id,
                    author: AuthorKind::HumanAgent,
                    author_id: Some(agent.clone()),
                    body: body.clone(),
                    sent_at: now,
                    sentiment: None,
                });
            }
            Event::Status { status } => {
                let was_open = unresolved(t);
                set_status(t, *status);
                if was_open && !unresolved(t) {
                    self.move_load(tx, tenant, t.assignee.clone().as_deref(), None, now)?;
                }
            }
            Event::Resolve {} => {
                if unresolved(t) {
                    set_status(t, TicketStatus::Solved);
                    self.move_load(tx, tenant, t.assignee.clone().as_deref(), None, now)?;
                }
            }
            Event::Csat { score, comment } => {
                if !(1..=5).contains(score) {
                    return Err(EngineError::Invalid(format!(
                        "score {score} is outside 1..5"
                    )));
                }
                t.tags.retain(|x| !x.starts_with("csat:"));
                t.tags.push(format!("csat:{score}"));
                if let Some(c) = comment {
                    let id = next_id(t);
                    t.messages.push(model::Message {
                        id,
                        author: AuthorKind::Customer,
                        author_id: None,
                        body: c.clone(),
                        sent_at: now,
                        sentiment: None,
                    });
                }
            }
        }
        t.updated_at = Some(now);
        Ok(())
    }

    /// Move one open ticket of load from `from` to `to` (either may be
    /// absent); `to` also gets `last_assigned_at`.
    fn move_load(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Some(mut a) = from.map(|id| tx.agent(tenant, id)).transpose()?.flatten() {
            a.open_tickets = a.open_tickets.saturating_sub(1);
            tx.put_agent(tenant, &a)?;
        }
        if let Some(mut a) = to.map(|id| tx.agent(tenant, id)).transpose()?.flatten() {
            a.open_tickets += 1;
            a.last_assigned_at = Some(now);
            tx.put_agent(tenant, &a)?;
        }
        Ok(())
    }

    /// Run the triggers on the ticket and act on what is new.
    fn evaluate(
        &self,
        tenant: &str,
        mut state: TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
        cause: Cause,
    ) -> Result<Outcome, EngineError> {
        let set = self.plugins(tenant);
        let roster = self.store.agents(tenant)?;
        let settings = self.settings(tenant);
        let f = pipeline::run_triggers(&self.runtime, &set, &state.ticket, now, kind);
        let mut runs = f.runs.clone();
        let fired: BTreeSet<String> = self.store.write(|tx| tx.fired(tenant, &state.ticket.id))?;
        let fresh: Vec<Signal> = f
            .signals
            .iter()
            .filter(|s| !fired.contains(&s.key))
            .cloned()
            .collect();
        let current = state.escalation.as_ref().map(|e| e.tier);
        let escalates = unresolved(&state.ticket)
            && f.tier.is_some()
            && (current.is_none() || f.tier > current)
            && (!fresh.is_empty() || current.is_none());
        let mut escalation = None;
        let mut escalated_wake = None;
        if let (true, Some(tier)) = (escalates, f.tier) {
            let e = model::Escalation {
                tier,
                signals: f.signals.clone(),
                response_target_ms: self.targets.get(tier),
            };
            let routing = match (&state.ticket.claimed_at, &state.ticket.assignee) {
                (Some(_), Some(a)) => model::Routing {
                    target: Target::Agent(a.clone()),
                    reason: format!("claimed by {a}"),
                    fallback: Vec::new(),
                },
                _ => pipeline::route(
                    &self.runtime,
                    &set,
                    &state.ticket,
                    &e,
                    &roster,
                    now,
                    kind,
                    &mut runs,
                ),
            };
            let mut planned = state.ticket.clone();
            planned.tier = Some(tier);
            if let Target::Agent(a) = &routing.target {
                planned.assignee = Some(a.clone());
            }
            let plan = pipeline::plan(
                &self.runtime,
                &set,
                &planned,
                &e,
                &routing,
                &roster,
                now,
                kind,
                &mut runs,
            );
            // The triggers again on the ticket as it now stands (the new
            // tier, the escalation's note): the new tier's clocks start
            // now, and their next threshold is the ticket's wake-up. In
            // this evaluation, not a second one: a big ticket is read and
            // written once.
            planned
                .messages
                .push(model::Message::escalation_note("new", String::new(), now));
            let again = pipeline::run_triggers(&self.runtime, &set, &planned, now, kind);
            escalated_wake = if again.tier > Some(tier) {
                // Higher still at once (rare): decide again now.
                Some(now)
            } else {
                again.wake_at.filter(|at| *at > now)
            };
            runs.extend(again.runs);
            escalation = Some((e, routing, plan));
        }

        let event_json = serde_json::json!({"kind": kind, "cause": cause.label(), "at": now});
        let data = serde_json::json!({
            "event": event_json,
            "plugin_set": set.generation,
            "skipped_plugins": set.disabled,
            "tier": f.tier,
            "signals": f.signals,
            "new_keys": fresh.iter().map(|s| &s.key).collect::<Vec<_>>(),
            "shadow_signals": f.shadow_signals,
            "wake_at": f.wake_at,
            "escalated": escalation.is_some(),
            "routing": escalation.as_ref().map(|e| &e.1),
            "plan": escalation.as_ref().map(|e| &e.2),
        });
        let audit: Vec<serde_json::Value> =
            runs.iter().map(|r| audit_entry(r, &event_json)).collect();
        let mut feed = Vec::new();
        let mut notified = 0;
        let escalated = escalation.is_some();
        let first_escalation = (escalated && state.escalation.is_none())
            .then(|| (now - state.ticket.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        let outcome = self.store.write(|tx| {
            let decision = tx.insert_decision(
                tenant,
                &state.ticket.id,
                now,
                &cause.label(),
                escalated,
                &data,
                &audit,
            )?;
            for s in &fresh {
                tx.fire(tenant, &state.ticket.id, &s.key, decision)?;
            }
            let mut customer_message = None;
            if let Some((e, routing, plan)) = &escalation {
                customer_message = plan.as_ref().and_then(|p| p.customer_message.clone());
                notified += self.escalate(
                    tx,
                    tenant,
                    &mut state,
                    e,
                    routing,
                    plan.as_ref(),
                    decision,
                    now,
                    &settings,
                    &roster,
                    &mut feed,
                )?;
            } else if let Some(esc) = &state.escalation {
                // New causes on an escalated ticket: tell whoever has it.
                let news: Vec<&Signal> = fresh
                    .iter()
                    .filter(|s| s.action != SignalAction::Raise)
                    .collect();
                if !news.is_empty() {
                    let mut reasons = esc.reasons.clone();
                    reasons.extend(news.iter().map(|s| (*s).clone()));
                    let title = format!(
                        "Update on {} ticket {}: {}",
                        esc.tier_name(),
                        state.ticket.id,
                        news.iter()
                            .map(|s| s.reason.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    if let Some(a) = state.ticket.assignee.clone() {
                        notified += self.notify(
                            tx,
                            tenant,
                            &state.ticket.id,
                            &Recipient::Agent(a),
                            Channel::InApp,
                            &title,
                            &evidence_text(&news),
                            0,
                            &format!("update:{decision}"),
                            Tier::send_priority(Some(esc.tier)),
                            now,
                            &settings,
                            &roster,
                            &mut feed,
                        )?;
                    }
                    if let Some(esc) = &mut state.escalation {
                        esc.reasons = reasons;
                    }
                }
            }
            if !escalated {
                for s in fresh.iter().filter(|s| s.action == SignalAction::Warn) {
                    state.history.push(HistoryEntry {
                        at: now,
                        what: "warning".into(),
                        detail: s.reason.clone(),
                    });
                }
            }
            // One pending wake-up per ticket: the earliest a trigger asked
            // for (after an escalation, for the new tier).
            tx.cancel_timers(tenant, &state.ticket.id, &["wake"], "superseded")?;
            let wake = if escalated {
                escalated_wake
            } else {
                f.wake_at.filter(|at| *at > now)
            };
            if let Some(at) = wake.filter(|_| unresolved(&state.ticket)) {
                tx.insert_timer(tenant, &state.ticket.id, "wake", at, &serde_json::json!({}))?;
            }
            tx.put_ticket(tenant, &state)?;
            let outcome = Outcome {
                ticket: state.ticket.id.clone(),
                event: match cause {
                    Cause::Event(seq) => seq,
                    _ => 0,
                },
                decision,
                tier: state.escalation.as_ref().map(|e| e.tier),
                escalated,
                new_signals: fresh.clone(),
                assignee: state.ticket.assignee.clone(),
                queue: state.queue.clone(),
                customer_message,
                notified,
                duplicate: None,
            };
            if let Cause::Event(seq) = cause {
                tx.event_processed(seq, &serde_json::to_string(&outcome)?)?;
            }
            Ok(outcome)
        })?;
        self.publish(tenant, feed);
        self.timer_wake.notify_one();
        self.record(tenant, &runs, &fresh, &outcome, first_escalation);
        self.observe(tenant, &runs);
        Ok(outcome)
    }

    /// Count an evaluation: plugin calls, escalations, SLA breaches.
    fn record(
        &self,
        tenant: &str,
        runs: &[PluginRun],
        fresh: &[Signal],
        outcome: &Outcome,
        first_escalation: Option<f64>,
    ) {
        use crate::metrics::{CALL_BUCKETS, FUEL_BUCKETS, TIME_BUCKETS};
        let m = &self.metrics;
        for r in runs {
            let plugin = m.bounded("plugin", tenant, &r.plugin);
            let l = || vec![("tenant", tenant.to_string()), ("plugin", plugin.clone())];
            m.add("escalator_plugin_calls_total", l(), 1.0);
            if let Some(kind) = r.error_kind {
                let mut l = l();
                l.push(("kind", kind.to_string()));
                m.add("escalator_plugin_errors_total", l, 1.0);
            }
            m.observe(
                "escalator_plugin_call_seconds",
                CALL_BUCKETS,
                l(),
                r.report.duration.as_secs_f64(),
            );
            m.observe(
                "escalator_plugin_fuel",
                FUEL_BUCKETS,
                l(),
                r.report.fuel_used as f64,
            );
        }
        let tier = outcome.tier.map(|t| name(&t)).unwrap_or_default();
        if outcome.escalated {
            let cause = fresh
                .iter()
                .filter(|s| s.action == SignalAction::Escalate)
                .max_by_key(|s| s.tier)
                .or(fresh.first())
                .map(|s| m.bounded("cause", tenant, s.key.split(':').next().unwrap_or("")))
                .unwrap_or_else(|| "earlier".into());
            m.add(
                "escalator_escalations_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", tier.clone()),
                    ("cause", cause),
                ],
                1.0,
            );
        }
        if let Some(secs) = first_escalation {
            m.observe(
                "escalator_time_to_escalation_seconds",
                TIME_BUCKETS,
                vec![("tenant", tenant.into()), ("tier", tier.clone())],
                secs,
            );
        }
        for s in fresh
            .iter()
            .filter(|s| s.key.starts_with("sla:") && s.key.ends_with(":breach"))
        {
            let clock = m.bounded("clock", tenant, s.key.split(':').nth(1).unwrap_or(""));
            m.add(
                "escalator_sla_breaches_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", name(&s.tier)),
                    ("clock", clock),
                ],
                1.0,
            );
        }
    }

    fn publish(&self, tenant: &str, feed: Vec<FeedItem>) {
        let queued = !feed.is_empty();
        for item in feed {
            let _ = self.feed.send(FeedEvent {
                tenant: tenant.to_string(),
                item,
            });
        }
        if queued {
            tracing::debug!(tenant, "in-app items published");
        }
        self.delivery_wake.notify_one();
    }

    /// Act on an escalation: tier, assignment, fallbacks, the plan's steps,
    /// the customer's line. Returns the notifications sent now.
    #[allow(clippy::too_many_arguments, reason = "the parts of one escalation")]
    fn escalate(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        state: &mut TicketState,
        e: &model::Escalation,
        routing: &model::Routing,
        plan: Option<&model::NotificationPlan>,
        decision: i64,
        now: DateTime<Utc>,
        settings: &ChannelSettings,
        roster: &[model::Agent],
        feed: &mut Vec<FeedItem>,
    ) -> Result<usize> {
        let id = state.ticket.id.clone();
        // A new plan supersedes the old one.
        tx.cancel_timers(
            tenant,
            &id,
            &["step", "fallback"],
            "superseded by a new escalation",
        )?;
        let previous = state.ticket.assignee.clone();
        match &routing.target {
            Target::Agent(a) => {
                state.ticket.assignee = Some(a.clone());
                state.queue = None;
            }
            Target::Queue(q) => {
                state.ticket.assignee = None;
                state.queue = Some(q.clone());
            }
        }
        if previous != state.ticket.assignee {
            self.move_load(
                tx,
                tenant,
                previous.as_deref(),
                state.ticket.assignee.as_deref(),
                now,
            )?;
        }
        state.ticket.tier = Some(e.tier);
        let mut reasons = state
            .escalation
            .as_ref()
            .map(|x| x.reasons.clone())
            .unwrap_or_default();
        for s in &e.signals {
            if !reasons.iter().any(|r| r.key == s.key) {
                reasons.push(s.clone());
            }
        }
        let primary = recipient_of(&routing.target);
        let first: Vec<&model::NotificationStep> = plan
            .map(|p| {
                p.steps
                    .iter()
                    .filter(|s| s.delay_ms == 0 && s.recipient == primary)
                    .collect()
            })
            .unwrap_or_default();
        state.escalation = Some(EscalationState {
            tier: e.tier,
            escalated_at: now,
            reasons,
            response_target_ms: e.response_target_ms,
            routing: routing.clone(),
            plan_decision: decision,
            alert_channels: first.iter().map(|s| s.channel).collect(),
            customer_message: plan.and_then(|p| p.customer_message.clone()),
        });
        state.history.push(HistoryEntry {
            at: now,
            what: if previous.is_some() || state.history.iter().any(|h| h.what == "escalated") {
                "re-escalated".into()
            } else {
                "escalated".into()
            },
            detail: format!(
                "{} tier: {}",
                name(&e.tier),
                e.signals
                    .iter()
                    .filter(|s| s.action == SignalAction::Escalate)
                    .map(|s| s.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
        state.history.push(HistoryEntry {
            at: now,
            what: "assigned".into(),
            detail: format!("{}: {}", target_name(&routing.target), routing.reason),
        });
        for step in &routing.fallback {
            tx.insert_timer(
                tenant,
                &id,
                "fallback",
                later(now, step.after_ms)?,
                &serde_json::json!({"decision": decision, "step": step}),
            )?;
        }
        // The escalation goes in the conversation: the line for the
        // customer if the notifier wrote one, else a note. Triggers read its
        // time as the moment the ticket reached its tier (the SLA clocks
        // start the tier's response target there).
        let note = plan
            .and_then(|p| p.customer_message.clone())
            .unwrap_or_else(|| format!("Escalated to the {} tier.", name(&e.tier)));
        state
            .ticket
            .messages
            .push(model::Message::escalation_note(decision, note, now));
        // Endpoints subscribed to escalations get the handoff packet.
        let mut sent = 0;
        if settings.webhooks.values().any(|w| w.wants_escalations()) {
            let hooks = WebhookFanout {
                decision,
                priority: Tier::send_priority(Some(e.tier)),
                title: first.first().map_or_else(
                    || format!("{} escalation: ticket {id}", name_of_tier(e.tier)),
                    |s| s.title.clone(),
                ),
                body: handoff(state).to_string(),
                after: None,
            };
            sent += self.fan_out(tx, tenant, &id, &hooks, settings, now)?;
        }
        for (i, step) in plan
            .map(|p| p.steps.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if step.delay_ms == 0 {
                sent += self.notify(
                    tx,
                    tenant,
                    &id,
                    &step.recipient,
                    step.channel,
                    &step.title,
                    &step.body,
                    step.digest_window_ms,
                    &format!("d{decision}:s{i}"),
                    Tier::send_priority(Some(e.tier)),
                    now,
                    settings,
                    roster,
                    feed,
                )?;
            } else {
                tx.insert_timer(
                    tenant,
                    &id,
                    "step",
                    later(now, step.delay_ms)?,
                    &serde_json::json!({"decision": decision, "plan_at": now, "index": i, "step": step}),
                )?;
            }
        }
        Ok(sent)
    }

    /// After a claim, ask the notifier for its acknowledgement plan
    /// (reminders if the claimed ticket stays unanswered) and schedule it.
    /// The caller holds the ticket's lock.
    fn plan_after_claim(&self, tenant: &str, ticket: &str, now: DateTime<Utc>) -> Result<()> {
        let Some(state) = self.store.ticket(tenant, ticket)? else {
            return Ok(());
        };
        let Some(esc) = &state.escalation else {
            return Ok(());
        };
        let set = self.plugins(tenant);
        let roster = self.store.agents(tenant)?;
        let e = esc.as_escalation();
        let routing = model::Routing {
            target: Target::Agent(state.ticket.assignee.clone().unwrap_or_default()),
            reason: "claimed".into(),
            fallback: Vec::new(),
        };
        let mut runs = Vec::new();
        let plan = pipeline::plan(
            &self.runtime,
            &set,
            &state.ticket,
            &e,
            &routing,
            &roster,
            now,
            EventKind::Claimed,
            &mut runs,
        );
        let event_json = serde_json::json!({"kind": EventKind::Claimed, "at": now});
        let audit: Vec<_> = runs.iter().map(|r| audit_entry(r, &event_json)).collect();
        self.store.write(|tx| {
            let decision = tx.insert_decision(
                tenant,
                ticket,
                now,
                "claim-plan",
                false,
                &serde_json::json!({"event": event_json, "plan": plan}),
                &audit,
            )?;
            for (i, step) in plan.iter().flat_map(|p| p.steps.iter()).enumerate() {
                tx.insert_timer(
                    tenant,
                    ticket,
                    "step",
                    later(now, step.delay_ms)?,
                    &serde_json::json!({"decision": decision, "plan_at": now, "index": i, "step": step}),
                )?;
            }
            Ok(())
        })?;
        self.timer_wake.notify_one();
        Ok(())
    }

    /// Queue (or, in-app, write) one notification to `recipient` on
    /// `channel`; returns how many deliveries it made.
    #[allow(clippy::too_many_arguments, reason = "one notification's parts")]
    fn notify(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        ticket: &str,
        recipient: &Recipient,
        channel: Channel,
        title: &str,
        body: &str,
        digest_window_ms: u64,
        key: &str,
        priority: i64,
        now: DateTime<Utc>,
        settings: &ChannelSettings,
        roster: &[model::Agent],
        feed: &mut Vec<FeedItem>,
    ) -> Result<usize> {
        let agents: Vec<&model::Agent> = match recipient {
            Recipient::Agent(id) => roster.iter().filter(|a| &a.id == id).collect(),
            // A team (a queue): in-app to every member, to read when back;
            // e-mail only to those available now. A queue no team of the
            // roster is named after still has members: the team leads.
            Recipient::Team(t) => {
                let named = roster.iter().any(|a| &a.team == t);
                roster
                    .iter()
                    .filter(|a| {
                        if named {
                            &a.team == t
                        } else {
                            a.role == model::AgentRole::Lead
                        }
                    })
                    .filter(|a| channel == Channel::InApp || available(a.status))
                    .collect()
            }
            Recipient::Endpoint(_) => Vec::new(),
        };
        let who = match recipient {
            Recipient::Agent(x) | Recipient::Team(x) | Recipient::Endpoint(x) => x.clone(),
        };
        // (channel, address, status, note)
        let mut targets: Vec<(&str, String, &str, Option<String>)> = Vec::new();
        match (recipient, channel) {
            (Recipient::Endpoint(name), _) => match settings.webhooks.get(name) {
                Some(w) => targets.push(("webhook", w.url.clone(), "pending", None)),
                None => targets.push((
                    "webhook",
                    name.clone(),
                    "skipped",
                    Some(format!("no webhook endpoint {name:?} configured")),
                )),
            },
            (_, Channel::InApp) => {
                for a in &agents {
                    targets.push(("in-app", a.id.clone(), "sent", None));
                }
            }
            (_, Channel::Email) => {
                for a in &agents {
                    match &a.email {
                        Some(_) if settings.smtp.is_none() => targets.push((
                            "email",
                            a.id.clone(),
                            "skipped",
                            Some("no SMTP server configured".into()),
                        )),
                        Some(addr) => targets.push(("email", addr.clone(), "pending", None)),
                        None => targets.push((
                            "email",
                            a.id.clone(),
                            "skipped",
                            Some(format!("agent {} has no e-mail address", a.id)),
                        )),
                    }
                }
            }
            (_, Channel::Slack) => match &settings.slack_webhook_url {
                Some(url) => targets.push(("slack", url.clone(), "pending", None)),
                None => targets.push((
                    "slack",
                    "-".into(),
                    "skipped",
                    Some("no Slack webhook configured".into()),
                )),
            },
            (_, Channel::Webhook) => match settings.webhooks.get("default") {
                Some(w) => targets.push(("webhook", w.url.clone(), "pending", None)),
                None => targets.push((
                    "webhook",
                    "default".into(),
                    "skipped",
                    Some("no default webhook configured".into()),
                )),
            },
        }
        let slack_text = |body: &str| {
            let mentions: Vec<String> = agents
                .iter()
                .filter_map(|a| a.slack_id.as_ref().map(|s| format!("<@{s}>")))
                .collect();
            if mentions.is_empty() {
                body.to_string()
            } else {
                format!("{} {body}", mentions.join(" "))
            }
        };
        let mut made = 0;
        for (ch, address, status, note) in targets {
            let mut status = status.to_string();
            let body = if ch == "slack" {
                slack_text(body)
            } else {
                body.to_string()
            };
            // Digest: hold it if this address heard on this channel lately.
            if digest_window_ms > 0 && status != "skipped" {
                let window = delta(digest_window_ms)?;
                let since = now
                    .checked_sub_signed(window)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                if let Some(last) = tx.last_delivery_to(tenant, ch, &address, since)? {
                    status = "held".into();
                    let group =
                        serde_json::json!({"channel": ch, "address": address, "recipient": who});
                    let pending = tx.pending_timers(tenant, "*", "digest")?;
                    if !pending.iter().any(|t| t.payload == group) {
                        tx.insert_timer(
                            tenant,
                            "*",
                            "digest",
                            later(last, digest_window_ms)?,
                            &group,
                        )?;
                    }
                }
            }
            let key = format!("{tenant}:{ticket}:{key}:{ch}:{address}");
            let d = NewDelivery {
                ticket: ticket.to_string(),
                idempotency_key: hex_key(&key),
                channel: ch.to_string(),
                recipient: who.clone(),
                address: address.clone(),
                title: title.to_string(),
                body: body.clone(),
                status: status.clone(),
                note,
                priority,
            };
            if tx.insert_delivery(tenant, &d, now)? {
                made += 1;
                if ch == "in-app" && status == "sent" {
                    feed.push(tx.insert_feed(tenant, &address, ticket, title, &body, now)?);
                }
            }
        }
        Ok(made)
    }

    fn fire(&self, t: &Timer) -> Result<()> {
        let at = DateTime::from_timestamp_millis(t.due_at).unwrap_or_else(|| self.clock.now());
        if t.kind == "digest" {
            return self.fire_digest(t, at);
        }
        let _g = self.ticket_lock(&t.tenant, &t.ticket);
        if t.kind == "wake" {
            let state = self.store.ticket(&t.tenant, &t.ticket)?;
            let taken = self.store.write(|tx| tx.take_timer(t.id, at))?;
            if let (true, Some(state)) = (taken, state) {
                self.evaluate(&t.tenant, state, at, EventKind::Tick, Cause::Timer(t.id))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            return Ok(());
        }
        let settings = self.settings(&t.tenant);
        let roster = self.store.agents(&t.tenant)?;
        let mut feed = Vec::new();
        self.store.write(|tx| {
            if !tx.take_timer(t.id, at)? {
                return Ok(());
            }
            let Some(mut state) = tx.ticket(&t.tenant, &t.ticket)? else {
                tx.timer_outcome(t.id, "skipped: no such ticket")?;
                return Ok(());
            };
            let outcome = match t.kind.as_str() {
                "step" => self.fire_step(tx, t, &state, at, &settings, &roster, &mut feed)?,
                "fallback" => {
                    self.fire_fallback(tx, t, &mut state, at, &settings, &roster, &mut feed)?
                }
                "fanout" => {
                    let hooks: WebhookFanout = serde_json::from_value(t.payload.clone())?;
                    let n = self.fan_out(tx, &t.tenant, &t.ticket, &hooks, &settings, at)?;
                    format!("queued {n} more webhook deliveries")
                }
                other => format!("skipped: unknown timer kind {other}"),
            };
            tx.timer_outcome(t.id, &outcome)?;
            Ok(())
        })?;
        self.publish(&t.tenant, feed);
        if t.kind == "fanout" {
            // Its continuation is due at once, on a manual clock too.
            self.timer_wake.notify_one();
        }
        Ok(())
    }

    /// Queue the handoff packet for the next [`FANOUT_CHUNK`] endpoints
    /// subscribed to escalations (in name order, after `hooks.after`), and
    /// leave a `fanout` timer, due at once, for the rest: a tenant with a
    /// thousand endpoints writes them in short transactions that other
    /// tenants' events pass between, not in one long one.
    fn fan_out(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        ticket: &str,
        hooks: &WebhookFanout,
        settings: &ChannelSettings,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let after = hooks.after.as_deref();
        let mut subscribed = settings
            .webhooks
            .iter()
            .filter(|(name, w)| after.is_none_or(|a| name.as_str() > a) && w.wants_escalations())
            .peekable();
        let mut queued = 0;
        let mut last = None;
        for (name, w) in subscribed.by_ref().take(FANOUT_CHUNK) {
            let d = NewDelivery {
                ticket: ticket.to_string(),
                idempotency_key: hex_key(&format!(
                    "{tenant}:{ticket}:d{}:hook:{name}",
                    hooks.decision
                )),
                channel: "webhook".into(),
                recipient: name.clone(),
                address: w.url.clone(),
                title: hooks.title.clone(),
                body: hooks.body.clone(),
                status: "pending".into(),
                note: None,
                priority: hooks.priority,
            };
            if tx.insert_delivery(tenant, &d, now)? {
                queued += 1;
            }
            last = Some(name.clone());
        }
        if subscribed.peek().is_some() {
            let rest = WebhookFanout {
                after: last,
                ..hooks.clone()
            };
            // The timer and delivery workers are woken after the commit.
            tx.insert_timer(tenant, ticket, "fanout", now, &serde_json::to_value(&rest)?)?;
        }
        Ok(queued)
    }

    #[allow(clippy::too_many_arguments, reason = "a timer's context")]
    fn fire_step(
        &self,
        tx: &Tx<'_>,
        t: &Timer,
        state: &TicketState,
        at: DateTime<Utc>,
        settings: &ChannelSettings,
        roster: &[model::Agent],
        feed: &mut Vec<FeedItem>,
    ) -> Result<String> {
        let step: model::NotificationStep = serde_json::from_value(t.payload["step"].clone())?;
        let plan_at: DateTime<Utc> = serde_json::from_value(t.payload["plan_at"].clone())?;
        let ticket = &state.ticket;
        if !unresolved(ticket) {
            return Ok("skipped: resolved".into());
        }
        if step.stop_when_claimed && ticket.claimed_at.is_some_and(|c| c <= at) {
            return Ok("skipped: claimed".into());
        }
        if step.stop_when_answered && answered_since(ticket, plan_at) {
            return Ok("skipped: answered".into());
        }
        // Steps for the first assignee follow the ticket when a fallback or
        // a re-route moved it.
        let mut recipient = step.recipient.clone();
        if let Some(esc) = &state.escalation {
            let first = recipient_of(&esc.routing.target);
            if recipient == first {
                recipient = match (&ticket.assignee, &state.queue) {
                    (Some(a), _) => Recipient::Agent(a.clone()),
                    (None, Some(q)) => Recipient::Team(q.clone()),
                    (None, None) => recipient,
                };
            }
        }
        let n = self.notify(
            tx,
            &t.tenant,
            &t.ticket,
            &recipient,
            step.channel,
            &step.title,
            &step.body,
            step.digest_window_ms,
            &format!("t{}", t.id),
            Tier::send_priority(state.escalation.as_ref().map(|e| e.tier)),
            at,
            settings,
            roster,
            feed,
        )?;
        Ok(format!("sent: {n} notification(s)"))
    }

    #[allow(clippy::too_many_arguments, reason = "a timer's context")]
    fn fire_fallback(
        &self,
        tx: &Tx<'_>,
        t: &Timer,
        state: &mut TicketState,
        at: DateTime<Utc>,
        settings: &ChannelSettings,
        roster: &[model::Agent],
        feed: &mut Vec<FeedItem>,
    ) -> Result<String> {
        let step: model::FallbackStep = serde_json::from_value(t.payload["step"].clone())?;
        if state.ticket.claimed_at.is_some() {
            return Ok("skipped: claimed".into());
        }
        if !unresolved(&state.ticket) {
            return Ok("skipped: resolved".into());
        }
        let why = format!(
            "unclaimed after {} min: {}",
            step.after_ms / 60_000,
            step.reason
        );
        let sent = self.reassign(
            tx,
            &t.tenant,
            state,
            &step.target,
            &why,
            at,
            settings,
            roster,
            feed,
            &format!("t{}", t.id),
        )?;
        tx.put_ticket(&t.tenant, state)?;
        Ok(format!(
            "reassigned to {}; {sent} notification(s)",
            target_name(&step.target)
        ))
    }

    /// Give the ticket to `target` and alert them the way the first
    /// assignee was alerted.
    #[allow(clippy::too_many_arguments, reason = "a reassignment's context")]
    fn reassign(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        state: &mut TicketState,
        target: &Target,
        why: &str,
        at: DateTime<Utc>,
        settings: &ChannelSettings,
        roster: &[model::Agent],
        feed: &mut Vec<FeedItem>,
        key: &str,
    ) -> Result<usize> {
        let previous = state.ticket.assignee.clone();
        let recipient = match target {
            Target::Agent(a) => {
                state.ticket.assignee = Some(a.clone());
                state.queue = None;
                Recipient::Agent(a.clone())
            }
            Target::Queue(q) => {
                state.ticket.assignee = None;
                state.queue = Some(q.clone());
                Recipient::Team(q.clone())
            }
        };
        self.move_load(
            tx,
            tenant,
            previous.as_deref(),
            state.ticket.assignee.as_deref(),
            at,
        )?;
        state.history.push(HistoryEntry {
            at,
            what: "reassigned".into(),
            detail: format!(
                "{} → {}: {why}",
                previous.as_deref().unwrap_or("nobody"),
                target_name(target)
            ),
        });
        let Some(esc) = &state.escalation else {
            return Ok(0);
        };
        let title = format!(
            "Reassigned to you ({why}): {} ticket {} — {}",
            esc.tier_name(),
            state.ticket.id,
            state.ticket.subject
        );
        let body = evidence_text(&esc.reasons.iter().collect::<Vec<_>>());
        let channels = if esc.alert_channels.is_empty() {
            vec![Channel::InApp]
        } else {
            esc.alert_channels.clone()
        };
        let mut sent = 0;
        for ch in channels {
            sent += self.notify(
                tx,
                tenant,
                &state.ticket.id,
                &recipient,
                ch,
                &title,
                &body,
                0,
                key,
                Tier::send_priority(Some(esc.tier)),
                at,
                settings,
                roster,
                feed,
            )?;
        }
        Ok(sent)
    }

    fn fire_digest(&self, t: &Timer, at: DateTime<Utc>) -> Result<()> {
        let mut feed = Vec::new();
        self.store.write(|tx| {
            if !tx.take_timer(t.id, at)? {
                return Ok(());
            }
            let channel = t.payload["channel"].as_str().unwrap_or_default();
            let address = t.payload["address"].as_str().unwrap_or_default();
            let recipient = t.payload["recipient"].as_str().unwrap_or_default();
            let held = tx.take_held(&t.tenant, channel, address)?;
            if held.is_empty() {
                tx.timer_outcome(t.id, "nothing held")?;
                return Ok(());
            }
            let title = format!("Digest: {} escalation notice(s)", held.len());
            let body = held
                .iter()
                .map(|d| format!("• [{}] {}", d.ticket, d.title))
                .collect::<Vec<_>>()
                .join("\n");
            let d = NewDelivery {
                ticket: "*".into(),
                idempotency_key: hex_key(&format!("{}:digest:{}", t.tenant, t.id)),
                channel: channel.into(),
                recipient: recipient.into(),
                address: address.into(),
                title: title.clone(),
                body: body.clone(),
                status: if channel == "in-app" {
                    "sent"
                } else {
                    "pending"
                }
                .into(),
                note: None,
                // As urgent as the most urgent notice it gathers.
                priority: held.iter().map(|d| d.priority).min().unwrap_or(2),
            };
            tx.insert_delivery(&t.tenant, &d, at)?;
            if channel == "in-app" {
                feed.push(tx.insert_feed(&t.tenant, address, "*", &title, &body, at)?);
            }
            tx.timer_outcome(t.id, &format!("digest of {}", held.len()))?;
            Ok(())
        })?;
        self.publish(&t.tenant, feed);
        Ok(())
    }

    /// Insert or replace an agent.
    pub fn put_agent(&self, tenant: &str, agent: model::Agent) -> Result<(), EngineError> {
        if agent.id.trim().is_empty() {
            return Err(EngineError::Invalid("agent id must not be empty".into()));
        }
        crate::model::contract::agent(&agent, self.clock.now()).map_err(EngineError::Invalid)?;
        let was = self.store.agent(tenant, &agent.id)?;
        self.store.write(|tx| tx.put_agent(tenant, &agent))?;
        match was.map(|w| available(w.status)) {
            Some(true) if !available(agent.status) => {
                self.reroute_from(tenant, &agent.id)?;
            }
            Some(false) | None if available(agent.status) => {
                self.offer_queued(tenant, &agent.id)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Change an agent's availability; their unclaimed escalated tickets
    /// are routed again when they become unavailable. Returns the tickets
    /// moved.
    pub fn set_agent_status(
        &self,
        tenant: &str,
        id: &str,
        status: AgentStatus,
    ) -> Result<Vec<String>, EngineError> {
        let mut agent = self
            .store
            .agent(tenant, id)?
            .ok_or_else(|| EngineError::NotFound(format!("no agent {id}")))?;
        let was = agent.status;
        agent.status = status;
        self.store.write(|tx| tx.put_agent(tenant, &agent))?;
        if available(was) && !available(status) {
            return self.reroute_from(tenant, id);
        }
        if !available(was) && available(status) {
            return self.offer_queued(tenant, id);
        }
        Ok(Vec::new())
    }

    /// Route again the unclaimed escalated tickets of `agent`, who just
    /// became unavailable.
    fn reroute_from(&self, tenant: &str, agent: &str) -> Result<Vec<String>, EngineError> {
        let tickets = self.store.unclaimed_of(tenant, agent)?;
        self.reroute(tenant, tickets, agent, false)
    }

    /// Offer the tickets waiting in a queue again now that `agent` is
    /// available: each goes to whoever the router picks now (most often
    /// the agent who just came back), the longest waiting first.
    fn offer_queued(&self, tenant: &str, agent: &str) -> Result<Vec<String>, EngineError> {
        let tickets = self.store.queued(tenant, QUEUED_OFFERED)?;
        self.reroute(tenant, tickets, agent, true)
    }

    /// Route `tickets` again because `agent` left (`back` false: the
    /// tickets are theirs) or came back (`back` true: the tickets wait in a
    /// queue).
    fn reroute(
        &self,
        tenant: &str,
        tickets: Vec<TicketState>,
        agent: &str,
        back: bool,
    ) -> Result<Vec<String>, EngineError> {
        let mut moved = Vec::new();
        for s in tickets {
            let _g = self.ticket_lock(tenant, &s.ticket.id);
            let Some(mut state) = self.store.ticket(tenant, &s.ticket.id)? else {
                continue;
            };
            let Some(esc) = state.escalation.clone() else {
                continue;
            };
            let still = if back {
                state.ticket.assignee.is_none() && state.queue.is_some()
            } else {
                state.ticket.assignee.as_deref() == Some(agent)
            };
            if state.ticket.claimed_at.is_some() || !still || !unresolved(&state.ticket) {
                continue;
            }
            let now = self.clock.now();
            let set = self.plugins(tenant);
            let roster = self.store.agents(tenant)?;
            let settings = self.settings(tenant);
            let e = esc.as_escalation();
            let mut runs = Vec::new();
            let routing = pipeline::route(
                &self.runtime,
                &set,
                &state.ticket,
                &e,
                &roster,
                now,
                EventKind::AgentAvailability,
                &mut runs,
            );
            let unchanged = if back {
                matches!(routing.target, Target::Queue(_))
            } else {
                routing.target == Target::Agent(agent.to_string())
            };
            if unchanged {
                continue;
            }
            let event_json = serde_json::json!({"kind": EventKind::AgentAvailability, "agent": agent, "at": now});
            let audit: Vec<_> = runs.iter().map(|r| audit_entry(r, &event_json)).collect();
            let mut feed = Vec::new();
            self.store.write(|tx| {
                let decision = tx.insert_decision(
                    tenant,
                    &state.ticket.id,
                    now,
                    &Cause::Agent.label(),
                    false,
                    &serde_json::json!({"event": event_json, "routing": routing}),
                    &audit,
                )?;
                tx.cancel_timers(tenant, &state.ticket.id, &["fallback"], "rerouted")?;
                let why = if back {
                    format!("waiting in the queue; {agent} is available again")
                } else {
                    format!("{agent} is no longer available")
                };
                self.reassign(
                    tx,
                    tenant,
                    &mut state,
                    &routing.target,
                    &why,
                    now,
                    &settings,
                    &roster,
                    &mut feed,
                    &format!("r{decision}"),
                )?;
                for step in &routing.fallback {
                    tx.insert_timer(
                        tenant,
                        &state.ticket.id,
                        "fallback",
                        later(now, step.after_ms)?,
                        &serde_json::json!({"decision": decision, "step": step}),
                    )?;
                }
                tx.put_ticket(tenant, &state)?;
                Ok(())
            })?;
            self.publish(tenant, feed);
            moved.push(state.ticket.id.clone());
        }
        self.timer_wake.notify_one();
        Ok(moved)
    }

    /// Decide on events stored before a crash but not decided on.
    pub fn recover(&self) -> Result<usize> {
        let pending = self.store.unprocessed_events()?;
        let n = pending.len();
        for (tenant, ev) in pending {
            let _g = self.ticket_lock(&tenant, &ev.ticket);
            let state = match self.store.ticket(&tenant, &ev.ticket) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    let _ = self.store.event_failed(ev.seq, "its ticket is gone");
                    continue;
                }
                Err(e) => {
                    let _ = self
                        .store
                        .event_failed(ev.seq, &format!("reading its ticket: {e:#}"));
                    continue;
                }
            };
            let kind = match serde_json::from_value::<Event>(ev.payload.clone()) {
                Ok(e) => e.kind(),
                Err(_) => EventKind::TicketCreated,
            };
            let at = ev.received_at.parse().unwrap_or_else(|_| self.clock.now());
            // Exactly as live: plugins run on their call threads; a failure
            // marks the event failed and start-up goes on.
            if let Err(e) = self.decide_event(&tenant, state, at, kind, ev.seq) {
                tracing::error!(seq = ev.seq, error = %e, "recovering an event failed");
            }
        }
        Ok(n)
    }
}

impl EscalationState {
    fn tier_name(&self) -> String {
        name(&self.tier)
    }

    /// The escalation as routers and notifiers see it: every reason so far.
    fn as_escalation(&self) -> model::Escalation {
        model::Escalation {
            tier: self.tier,
            signals: self.reasons.clone(),
            response_target_ms: self.response_target_ms,
        }
    }
}

/// Who is told when a ticket goes to `target`: the agent, or the queue's team.
/// A client's idempotency key, scoped to the endpoint and the ticket, with
/// the hash of the request it came with.
struct IdempotencyKey {
    key: String,
    scoped: String,
    request_hash: String,
}

impl IdempotencyKey {
    fn new(endpoint: &str, ticket: &str, key: &str, request: &impl Serialize) -> IdempotencyKey {
        use sha2::Digest as _;
        let body = serde_json::to_vec(request).unwrap_or_default();
        IdempotencyKey {
            key: key.to_string(),
            scoped: format!("{endpoint}\n{ticket}\n{key}"),
            request_hash: hex::encode(sha2::Sha256::digest(&body)),
        }
    }

    fn columns(&self) -> (&str, &str) {
        (&self.scoped, &self.request_hash)
    }
}

/// `ms` milliseconds (from a plugin or a client) as a time delta, checked.
fn delta(ms: u64) -> anyhow::Result<Duration> {
    i64::try_from(ms)
        .ok()
        .and_then(Duration::try_milliseconds)
        .ok_or_else(|| anyhow::anyhow!("a duration of {ms} ms is out of range"))
}

/// `at` plus `ms` milliseconds, checked: never a panic, whatever `ms` is.
pub fn later(at: DateTime<Utc>, ms: u64) -> anyhow::Result<DateTime<Utc>> {
    delta(ms).and_then(|d| {
        at.checked_add_signed(d)
            .ok_or_else(|| anyhow::anyhow!("{at} + {ms} ms is out of range"))
    })
}

fn recipient_of(target: &Target) -> Recipient {
    match target {
        Target::Agent(a) => Recipient::Agent(a.clone()),
        Target::Queue(q) => Recipient::Team(q.clone()),
    }
}

fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Endpoints one transaction queues an escalation for; a `fanout` timer
/// queues the rest.
const FANOUT_CHUNK: usize = 32;

/// An escalation's handoff packet on its way to the subscribed endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WebhookFanout {
    decision: i64,
    priority: i64,
    title: String,
    body: String,
    /// The last endpoint (by name) already queued.
    after: Option<String>,
}

fn name_of_tier(t: Tier) -> String {
    let n = name(&t);
    let mut c = n.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Agent(a) => a.clone(),
        Target::Queue(q) => format!("queue {q}"),
    }
}

/// Whether a human answered (or the ticket left new/open) since `since`.
fn answered_since(t: &Ticket, since: DateTime<Utc>) -> bool {
    t.messages
        .iter()
        .any(|m| m.author == AuthorKind::HumanAgent && m.sent_at >= since)
        || !matches!(t.status, TicketStatus::New | TicketStatus::Open)
}

fn evidence_text(signals: &[&Signal]) -> String {
    signals
        .iter()
        .map(|s| {
            let mut line = format!("• {} ({})", s.reason, name(&s.tier));
            for e in &s.evidence {
                line.push_str(&format!("\n    {e}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn hex_key(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..16])
}

fn audit_entry(r: &PluginRun, event: &serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("input_event".into(), event.clone());
    }
    v
}

/// The handoff packet: everything a human needs to take the ticket over
/// from the AI without asking the customer to repeat anything.
pub fn handoff(state: &TicketState) -> serde_json::Value {
    let t = &state.ticket;
    let esc = state.escalation.as_ref();
    let respond_by = esc.and_then(|e| {
        e.response_target_ms
            .and_then(|ms| later(e.escalated_at, ms).ok())
    });
    let tried: Vec<&String> = t
        .ai_analysis
        .as_ref()
        .map(|a| a.solutions_tried.iter().collect())
        .unwrap_or_default();
    let mut summary = match (esc, &t.customer) {
        (Some(e), Some(c)) => format!(
            "{} escalation for {} ({} plan{}): {}",
            name(&e.tier),
            c.name,
            c.plan,
            if c.mrr_cents > 0 {
                format!(", ${} MRR", c.mrr_cents / 100)
            } else {
                String::new()
            },
            t.subject
        ),
        (Some(e), None) => format!("{} escalation: {}", name(&e.tier), t.subject),
        (None, _) => format!("Not escalated: {}", t.subject),
    };
    if let Some(a) = &t.ai_analysis {
        summary.push_str(&format!(
            ". AI confidence {:.0}%: {}",
            a.confidence * 100.0,
            a.reasoning.trim_end_matches('.')
        ));
    }
    if !tried.is_empty() {
        summary.push_str(&format!(
            ". Already tried: {}",
            tried
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    serde_json::json!({
        "ticket": {
            "id": t.id, "subject": t.subject, "category": t.category, "channel": t.channel,
            "status": t.status, "created_at": t.created_at, "tags": t.tags,
        },
        "summary": summary,
        "customer": t.customer,
        "conversation": t.messages,
        "ai": t.ai_analysis.as_ref().map(|a| serde_json::json!({
            "confidence": (f64::from(a.confidence) * 1000.0).round() / 1000.0, "intent": a.intent, "category": a.category,
            "reasoning": a.reasoning, "solutions_tried": a.solutions_tried,
            "analyzed_at": a.analyzed_at,
        })),
        "escalation": esc.map(|e| serde_json::json!({
            "tier": e.tier,
            "escalated_at": e.escalated_at,
            "respond_by": respond_by,
            "why": e.reasons.iter().map(|s| serde_json::json!({
                "reason": s.reason, "tier": s.tier, "action": s.action, "key": s.key,
                "evidence": s.evidence,
            })).collect::<Vec<_>>(),
            "routing": e.routing,
        })),
        "assignee": t.assignee,
        "queue": state.queue,
        "claimed_at": t.claimed_at,
        "customer_message": esc.and_then(|e| e.customer_message.clone()),
    })
}
