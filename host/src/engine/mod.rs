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

mod act;
mod agents;
mod decisions;
mod ingest;
mod lifecycle;
mod locks;
mod prefs;
mod tenants;
mod timers;

pub use act::handoff;
use act::*;
use decisions::{Kept, audit_trail};

pub use lifecycle::{
    GUARD_FAILURES, GUARD_WINDOW, Installed, PluginQuota, SYNC_PLUGINS_EVERY, TenantSet, Upload,
};
pub use timers::TIMER_CONCURRENCY;

use crate::clock::Clock;
use crate::codes;
use crate::delivery::ChannelSettings;
use crate::matrix::{Matrix, ResponseTargets};
use crate::model::{
    self, AgentStatus, AuthorKind, Channel, Event, EventKind, Recipient, Signal, SignalAction,
    Target, Ticket, TicketState, TicketStatus, Tier,
};
use crate::pipeline::{self, PluginRun, PluginSet, apply};
use crate::registry::LoadedPlugin;
use crate::runtime::Runtime;
use crate::store::{
    AuditEntry, DeliveryStatus, FeedItem, NewDecision, NewDelivery, NewEvent, Store, TicketJson,
    TimerKind, Tx,
};
/// An engine result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast};

/// What went wrong, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such ticket or agent (in this tenant): its code
    /// ([`crate::codes`]) and message.
    #[error("{1}")]
    NotFound(&'static str, String),
    /// The request conflicts with what exists.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// The request is malformed.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The event was stored, but deciding on it failed (an error or a
    /// panic); it is marked failed with the reason and never retried.
    #[error("deciding on event {event} failed: {reason}")]
    Failed {
        /// The event's sequence number.
        event: i64,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Our own JSON (a ticket, an event, an answer) failed to encode or
    /// decode.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A moment or duration (from a plugin's or a client's milliseconds)
    /// is past what a timestamp can hold.
    #[error("{0}")]
    OutOfRange(String),
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
    /// The newest plugin change the published sets reflect.
    plugins_seen: std::sync::atomic::AtomicI64,
    /// The plugin changes taken, of the last [`lifecycle::CHANGE_LOOKBACK`].
    plugin_changes_done: Mutex<std::collections::BTreeSet<i64>>,
    /// Notified when the database says a tenant's plugins changed.
    pub plugins_changed: Arc<Notify>,
    versions: Mutex<std::collections::HashMap<(String, String, String), LoadedPlugin>>,
    /// One plugin change at a time per tenant (compiling may take seconds;
    /// another tenant never waits for it).
    lifecycle: locks::TicketLocks,
    locks: locks::TicketLocks,
    timers_running: Mutex<()>,
    /// New in-app feed items.
    pub feed: broadcast::Sender<FeedEvent>,
    /// Whether other instances' feed items arrive by the database's
    /// notices ([`Engine::listen`]): a feed stream then also looks at the
    /// store now and then, for an item whose notice was missed.
    pub hears_others: std::sync::atomic::AtomicBool,
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
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        store.defer_low_writes_to(runtime.shares().gate().clone());
        // The default triggers' set: compiled (or read from the cache) now,
        // not on the first event.
        runtime.trigger_set(|rt| crate::registry::trigger_set_with(rt, &matrix));
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
            plugins_seen: std::sync::atomic::AtomicI64::new(0),
            plugin_changes_done: Mutex::default(),
            plugins_changed: Arc::new(Notify::new()),
            versions: Mutex::default(),
            lifecycle: locks::TicketLocks::default(),
            locks: locks::TicketLocks::default(),
            timers_running: Mutex::new(()),
            feed: broadcast::channel(1024).0,
            hears_others: std::sync::atomic::AtomicBool::new(false),
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

    /// Hear what other instances on the database commit, as they commit
    /// (where the store can say): a plugin change wakes the look for
    /// plugin changes; a feed item written elsewhere goes to this
    /// instance's SSE clients. Returns whether the store can.
    pub fn listen(&self) -> Result<bool> {
        let plugins = self.plugins_changed.clone();
        let feed = self.feed.clone();
        let store = self.store.clone();
        let hears = self.store.listen(Box::new(move |notice| match notice {
            crate::store::Notice::Plugins(_) => plugins.notify_one(),
            crate::store::Notice::Feed(id) => match store.feed_item(id) {
                Ok(Some((tenant, item))) => {
                    let _ = feed.send(FeedEvent { tenant, item });
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, id, "reading a feed item failed"),
            },
        }))?;
        self.hears_others
            .store(hears, std::sync::atomic::Ordering::Relaxed);
        Ok(hears)
    }

    /// Hold a ticket: in this process, then against every other instance
    /// on the database (see [`crate::store::Backend::hold_ticket`]).
    fn ticket_lock(&self, tenant: &str, ticket: &str) -> Result<TicketHeld<'_>> {
        let local = self.locks.lock(tenant, ticket);
        let shared = self.store.hold_ticket(tenant, ticket)?;
        Ok(TicketHeld {
            _shared: shared,
            _local: local,
        })
    }

    fn settings(&self, tenant: &str) -> Arc<ChannelSettings> {
        self.channels.get(&*self.store, tenant)
    }
}

/// A ticket held by [`Engine::ticket_lock`]; released when dropped (the
/// database's hold first, then this process's).
pub(crate) struct TicketHeld<'a> {
    _shared: Box<dyn crate::store::Hold + 'a>,
    _local: locks::TicketGuard<'a>,
}

/// `at` plus `ms` milliseconds, checked: never a panic, whatever `ms` is.
pub fn later(at: DateTime<Utc>, ms: u64) -> Result<DateTime<Utc>> {
    model::after(at, ms)
        .ok_or_else(|| EngineError::OutOfRange(format!("{at} + {ms} ms is out of range")))
}
