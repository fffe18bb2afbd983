//! The delivery queue: which notification is sent next, by how many
//! senders at once, and which endpoints are resting.
//!
//! - **Urgency first**: due deliveries are taken most urgent first
//!   (critical, high, medium, low), then oldest.
//! - **Fair shares**: at most `senders` attempts run at once, at most
//!   `tenant_senders` of them for one tenant and `endpoint_senders` for one
//!   endpoint. A tenant whose endpoints are slow or dead fills only its own
//!   share; everyone else's deliveries are taken past it.
//! - **Circuit breaker** per endpoint: after `breaker_failures` failed
//!   attempts in a row (no response, 5xx, 429) it opens; its deliveries are
//!   put off, without using up attempts, until the cool-down ends; then
//!   one attempt probes it: success closes it, failure reopens it for
//!   twice as long (up to `breaker_max_cooldown`).

use super::{Policy, RetryPolicy, Sender, SettingsCache};
use crate::store::{Delivery, Store};
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How deliveries are shared out and retried.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Attempts in flight at once, in all.
    pub senders: usize,
    /// Attempts in flight at once for one tenant.
    pub tenant_senders: usize,
    /// Attempts in flight at once for one endpoint (a URL or an address).
    pub endpoint_senders: usize,
    /// Failed attempts in a row that open an endpoint's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit rests first.
    pub breaker_cooldown: Duration,
    /// The longest rest (each failed probe doubles it).
    pub breaker_max_cooldown: Duration,
    /// Retries of a failed delivery.
    pub retry: RetryPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            senders: 64,
            tenant_senders: 8,
            endpoint_senders: 2,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            breaker_max_cooldown: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

/// A tenant's endpoint.
type Endpoint = (String, String);

/// One endpoint's circuit.
#[derive(Debug, Clone, Copy)]
struct Breaker {
    /// Failed attempts in a row.
    failures: u32,
    /// While open: until when (ms, real time).
    open_until: Option<i64>,
    /// The next rest.
    cooldown: Duration,
}

/// What a finished attempt reports back.
struct Done {
    id: i64,
    endpoint: Endpoint,
    /// Sent.
    ok: bool,
    /// Failed in a way that says the endpoint is unwell.
    unwell: bool,
}

/// The queue's state between rounds.
struct Queue {
    config: QueueConfig,
    running: HashSet<i64>,
    per_tenant: HashMap<String, usize>,
    per_endpoint: HashMap<Endpoint, usize>,
    breakers: HashMap<Endpoint, Breaker>,
}

impl Queue {
    fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            running: HashSet::new(),
            per_tenant: HashMap::new(),
            per_endpoint: HashMap::new(),
            breakers: HashMap::new(),
        }
    }

    /// How many attempts `endpoint` may have in flight now: none while its
    /// circuit is open, one probe once the rest is over.
    fn endpoint_limit(&self, endpoint: &Endpoint, now_ms: i64) -> usize {
        match self.breakers.get(endpoint).and_then(|b| b.open_until) {
            Some(until) if until > now_ms => 0,
            Some(_) => 1,
            None => self.config.endpoint_senders,
        }
    }

    /// Whether an attempt to `endpoint` may start now: within its tenant's
    /// and its own share, and within the total unless its tenant has
    /// nothing in flight.
    fn has_room(&self, endpoint: &Endpoint, now_ms: i64) -> bool {
        let tenant_running = self.per_tenant.get(&endpoint.0).copied().unwrap_or(0);
        (self.running.len() < self.config.senders || tenant_running == 0)
            && tenant_running < self.config.tenant_senders
            && self.per_endpoint.get(endpoint).copied().unwrap_or(0)
                < self.endpoint_limit(endpoint, now_ms)
    }

    /// Attempts `tenant` may still start.
    #[cfg(test)]
    fn tenant_free(&self, tenant: &str) -> usize {
        self.config
            .tenant_senders
            .saturating_sub(self.per_tenant.get(tenant).copied().unwrap_or(0))
    }

    fn full_endpoints(&self, now_ms: i64) -> HashSet<Endpoint> {
        self.per_endpoint
            .iter()
            .filter(|(e, n)| **n >= self.endpoint_limit(e, now_ms))
            .map(|(e, _)| e.clone())
            .collect()
    }

    fn start(&mut self, d: &Delivery) {
        self.running.insert(d.id);
        *self.per_tenant.entry(d.tenant.clone()).or_default() += 1;
        *self
            .per_endpoint
            .entry((d.tenant.clone(), d.address.clone()))
            .or_default() += 1;
    }

    fn finish(&mut self, done: &Done, now_ms: i64) {
        self.running.remove(&done.id);
        let tenant = &done.endpoint.0;
        if let Some(n) = self.per_tenant.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                self.per_tenant.remove(tenant);
            }
        }
        if let Some(n) = self.per_endpoint.get_mut(&done.endpoint) {
            *n -= 1;
            if *n == 0 {
                self.per_endpoint.remove(&done.endpoint);
            }
        }
        if done.ok {
            self.breakers.remove(&done.endpoint);
            return;
        }
        if !done.unwell {
            return;
        }
        let c = self.config;
        let b = self
            .breakers
            .entry(done.endpoint.clone())
            .or_insert(Breaker {
                failures: 0,
                open_until: None,
                cooldown: c.breaker_cooldown,
            });
        b.failures += 1;
        // A failed probe (the circuit was open) or too many failures in a
        // row open it.
        if b.open_until.is_some() || b.failures >= c.breaker_failures {
            b.open_until = Some(now_ms.saturating_add(b.cooldown.as_millis() as i64));
            tracing::warn!(tenant = %done.endpoint.0, endpoint = %host_of(&done.endpoint.1),
                failures = b.failures, rest = ?b.cooldown, "endpoint circuit open");
            b.cooldown = (b.cooldown * 2).min(c.breaker_max_cooldown);
        }
    }
}

/// An endpoint for the log: a URL's scheme, host and port only (a Slack
/// URL's path is a credential).
fn host_of(address: &str) -> String {
    match reqwest::Url::parse(address) {
        Ok(u) => format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => address.to_string(),
    }
}

/// Drain the delivery log forever: send what is due, most urgent first and
/// in fair shares, record every attempt, and sleep until something is due
/// or `wake` is notified.
pub async fn worker(
    store: Arc<Store>,
    settings: Arc<SettingsCache>,
    wake: Arc<Notify>,
    policy: Arc<Policy>,
    config: QueueConfig,
) {
    let sender = match Sender::new(policy) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "delivery worker cannot start");
            return;
        }
    };
    let mut queue = Queue::new(config);
    let mut set: tokio::task::JoinSet<Done> = tokio::task::JoinSet::new();
    // Which delivery each task sends, so even a task that panicked gives
    // its slots back.
    let mut tasks: HashMap<tokio::task::Id, (i64, Endpoint)> = HashMap::new();
    loop {
        let now_ms = Utc::now().timestamp_millis();
        let mut started = 0;
        let free = config.senders.saturating_sub(queue.running.len());
        // With every sender busy, a tenant with nothing in flight may
        // still start one: many tenants' dead endpoints together cannot
        // hold everyone else's notifications back either.
        let idle_tenants_only = free == 0;
        {
            let busy = queue.running.clone();
            let (running, full_endpoints) =
                (queue.per_tenant.clone(), queue.full_endpoints(now_ms));
            let share = config.tenant_senders;
            let reader = store.clone();
            let limit = (free * 2 + 16).min(512) as u32;
            let due = tokio::task::spawn_blocking(move || {
                // A tenant's free share, and a few more: some picks may be
                // put off (a resting endpoint).
                let free = |t: &str| match running.get(t).copied().unwrap_or(0) {
                    n if n >= share || (idle_tenants_only && n > 0) => 0,
                    n => share - n + 8,
                };
                reader.due_deliveries_except(now_ms, limit, &busy, &free, &full_endpoints)
            })
            .await;
            let due = match due {
                Ok(Ok(d)) => d,
                other => {
                    tracing::error!(?other, "reading due deliveries failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for d in due {
                let endpoint = (d.tenant.clone(), d.address.clone());
                if !queue.has_room(&endpoint, now_ms) {
                    if let Some(until) = queue
                        .breakers
                        .get(&endpoint)
                        .and_then(|b| b.open_until)
                        .filter(|u| *u > now_ms)
                    {
                        // Resting: put it off without using an attempt.
                        let store = store.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            store.delivery_postponed(
                                d.id,
                                until,
                                "the endpoint failed repeatedly: its circuit is open, \
                                 sending resumes after a rest",
                            )
                        })
                        .await;
                    }
                    continue;
                }
                queue.start(&d);
                started += 1;
                let (store, sender) = (store.clone(), sender.clone());
                let slot = (d.id, (d.tenant.clone(), d.address.clone()));
                let handle = set.spawn(attempt(store, settings.clone(), sender, d, config.retry));
                tasks.insert(handle.id(), slot);
            }
        }
        // Wait for an attempt to finish, new work, or the next due time.
        let wait = if !set.is_empty() {
            Duration::from_millis(250)
        } else {
            let store = store.clone();
            let next = tokio::task::spawn_blocking(move || store.next_delivery_at())
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten();
            let ms = next.map_or(60_000, |at| {
                (at - Utc::now().timestamp_millis()).clamp(0, 60_000)
            });
            // Due work that could not start (a resting endpoint was just
            // put off): never spin.
            Duration::from_millis(if started == 0 { ms.max(50) } else { ms } as u64)
        };
        tokio::select! {
            Some(first) = set.join_next_with_id() => {
                let mut next = Some(first);
                while let Some(joined) = next.take() {
                    let done = match joined {
                        Ok((task, done)) => {
                            tasks.remove(&task);
                            Some(done)
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "a delivery attempt failed to finish");
                            tasks.remove(&e.id()).map(|(id, endpoint)| Done {
                                id,
                                endpoint,
                                ok: false,
                                unwell: false,
                            })
                        }
                    };
                    if let Some(done) = done {
                        queue.finish(&done, Utc::now().timestamp_millis());
                    }
                    next = set.try_join_next_with_id();
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long a claimed delivery is another's to send: well past the longest
/// attempt (10 s for HTTP and for SMTP), so only a sender that died leaves
/// a claim to run out, and its delivery is taken over then.
const CLAIM_LEASE_MS: i64 = 60_000;

/// One attempt: claim, send, record it, report back.
async fn attempt(
    store: Arc<Store>,
    cache: Arc<SettingsCache>,
    sender: Sender,
    d: Delivery,
    retry: RetryPolicy,
) -> Done {
    let endpoint = (d.tenant.clone(), d.address.clone());
    // Claimed first: whoever else read it as due (another worker on the
    // same database) does not send it too.
    let (claimer, id) = (store.clone(), d.id);
    let claimed = tokio::task::spawn_blocking(move || {
        claimer.claim_delivery(id, Utc::now().timestamp_millis(), CLAIM_LEASE_MS)
    })
    .await;
    if !matches!(claimed, Ok(Ok(true))) {
        if !matches!(claimed, Ok(Ok(false))) {
            tracing::error!(id, ?claimed, "claiming a delivery failed");
        }
        return Done {
            id,
            endpoint,
            ok: false,
            unwell: false,
        };
    }
    let (reader, tenant) = (store.clone(), d.tenant.clone());
    let settings = tokio::task::spawn_blocking(move || cache.get(&*reader, &tenant))
        .await
        .unwrap_or_default();
    let result = sender.send(&d, &settings).await;
    let attempts = d.attempts as u32 + 1;
    let (ok, unwell) = match &result {
        Ok(()) => (true, false),
        Err(e) => (false, e.retryable),
    };
    let outcome = match result {
        Ok(()) => {
            tracing::info!(id = d.id, channel = %d.channel, "delivered");
            Ok(())
        }
        Err(e) => {
            let retry = e
                .retryable
                .then(|| retry.delay(attempts, e.retry_after))
                .flatten();
            tracing::warn!(id = d.id, tenant = %d.tenant, channel = %d.channel,
                error = %e.message, attempts, retry_in = ?retry, "delivery failed");
            Err((
                e.message,
                retry.map(|r| Utc::now().timestamp_millis() + r.as_millis() as i64),
            ))
        }
    };
    let id = d.id;
    let recorded =
        tokio::task::spawn_blocking(move || store.delivery_attempted(id, Utc::now(), outcome))
            .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::error!(id, ?recorded, "recording a delivery attempt failed");
    }
    Done {
        id,
        endpoint,
        ok,
        unwell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn delivery(id: i64, tenant: &str, address: &str) -> Delivery {
        Delivery {
            id,
            tenant: tenant.into(),
            ticket: "t".into(),
            idempotency_key: id.to_string(),
            channel: crate::model::Channel::Webhook,
            recipient: "r".into(),
            address: address.into(),
            title: String::new(),
            body: String::new(),
            status: crate::store::DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at: String::new(),
            sent_at: None,
            priority: 2,
        }
    }

    fn done(tenant: &str, address: &str, ok: bool) -> Done {
        Done {
            id: 1,
            endpoint: (tenant.into(), address.into()),
            ok,
            unwell: !ok,
        }
    }

    #[test]
    fn a_circuit_opens_after_failures_in_a_row_probes_once_and_backs_off() {
        let mut q = Queue::new(QueueConfig {
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(10),
            breaker_max_cooldown: Duration::from_secs(25),
            ..QueueConfig::default()
        });
        let e: Endpoint = ("t".into(), "http://x/".into());
        for _ in 0..2 {
            q.finish(&done("t", "http://x/", false), 0);
        }
        assert_eq!(q.endpoint_limit(&e, 0), 2, "closed after two failures");
        q.finish(&done("t", "http://x/", false), 0);
        assert_eq!(q.endpoint_limit(&e, 9_999), 0, "open for the rest");
        assert_eq!(q.endpoint_limit(&e, 10_000), 1, "one probe after it");
        // A failed probe reopens it for twice as long, then at most 25 s.
        q.finish(&done("t", "http://x/", false), 10_000);
        assert_eq!(q.endpoint_limit(&e, 29_999), 0);
        assert_eq!(q.endpoint_limit(&e, 30_000), 1);
        q.finish(&done("t", "http://x/", false), 30_000);
        assert_eq!(q.endpoint_limit(&e, 54_999), 0);
        assert_eq!(q.endpoint_limit(&e, 55_000), 1);
        // A success closes it.
        q.finish(&done("t", "http://x/", true), 55_000);
        assert_eq!(q.endpoint_limit(&e, 55_000), 2);
        // A refusal (the endpoint answered 4xx) says nothing about health.
        let mut d = done("t", "http://x/", false);
        d.unwell = false;
        for _ in 0..10 {
            q.finish(&d, 60_000);
        }
        assert_eq!(q.endpoint_limit(&e, 60_000), 2);
    }

    #[test]
    fn shares_fill_per_tenant_and_per_endpoint() {
        let mut q = Queue::new(QueueConfig {
            tenant_senders: 2,
            endpoint_senders: 1,
            ..QueueConfig::default()
        });
        let d = delivery;
        let endpoint = |a: &str| HashSet::from([("a".to_string(), a.to_string())]);
        q.start(&d(1, "a", "u1"));
        assert_eq!(q.full_endpoints(0), endpoint("u1"));
        assert_eq!(q.tenant_free("a"), 1);
        q.start(&d(2, "a", "u2"));
        assert_eq!(q.tenant_free("a"), 0);
        assert_eq!(q.tenant_free("b"), 2);
        q.finish(&done("a", "u1", true), 0);
        assert_eq!(q.tenant_free("a"), 1);
        assert_eq!(q.full_endpoints(0), endpoint("u2"));
    }

    #[test]
    fn with_every_sender_busy_only_a_tenant_with_nothing_in_flight_starts_one() {
        let mut q = Queue::new(QueueConfig {
            senders: 2,
            ..QueueConfig::default()
        });
        let d = delivery;
        let e = |t: &str, a: &str| (t.to_string(), a.to_string());
        q.start(&d(1, "a", "u1"));
        q.start(&d(2, "a", "u2"));
        assert!(!q.has_room(&e("a", "u3"), 0), "the total is reached");
        assert!(q.has_room(&e("b", "v1"), 0), "b has nothing in flight");
        q.start(&d(3, "b", "v1"));
        assert!(!q.has_room(&e("b", "v2"), 0), "b has one now");
        assert!(q.has_room(&e("c", "w1"), 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_on_one_database_send_each_delivery_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escalator.db");
        let open = || -> Arc<Store> {
            Arc::new(
                crate::store::SqliteStore::open(&path, crate::store::Durability::Process).unwrap(),
            )
        };
        let (a, b) = (open(), open());
        // A loopback receiver that counts each delivery's idempotency key.
        let seen: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = seen.clone();
        let url = crate::bench::loopback_receiver(move |headers, _| {
            let key = headers
                .get("idempotency-key")
                .and_then(|k| k.to_str().ok())
                .unwrap_or_default()
                .to_string();
            *counts.lock().unwrap().entry(key).or_insert(0) += 1;
        })
        .await
        .unwrap();
        let n = 100;
        let now = Utc::now();
        a.write(|tx| -> crate::store::Result<_> {
            tx.create_tenant("acme", "Acme", "h", now)?;
            for i in 0..n {
                let d = crate::store::NewDelivery {
                    ticket: "T-1".into(),
                    idempotency_key: format!("k{i}"),
                    channel: crate::model::Channel::Slack,
                    recipient: "ops".into(),
                    address: url.clone(),
                    title: "t".into(),
                    body: "b".into(),
                    status: crate::store::DeliveryStatus::Pending,
                    note: None,
                    priority: 2,
                };
                tx.insert_delivery("acme", &d, now)?;
            }
            Ok(())
        })
        .unwrap();
        let policy = Arc::new(Policy::new(&["127.0.0.1".into()]).unwrap());
        let workers: Vec<_> = [a.clone(), b]
            .into_iter()
            .map(|store| {
                tokio::spawn(worker(
                    store,
                    Arc::new(SettingsCache::default()),
                    Arc::new(Notify::new()),
                    policy.clone(),
                    QueueConfig::default(),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let store = a.clone();
            let sent =
                tokio::task::spawn_blocking(move || store.deliveries("acme", None, 0, 1_000))
                    .await
                    .unwrap()
                    .unwrap()
                    .iter()
                    .filter(|d| d.status == crate::store::DeliveryStatus::Sent)
                    .count();
            if sent == n || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Anything sent twice would have arrived by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for w in workers {
            w.abort();
        }
        let seen = seen.lock().unwrap().clone();
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
        assert_eq!(seen.len(), n, "every delivery arrived: {seen:?}");
        assert!(twice.is_empty(), "sent more than once: {twice:?}");
    }
}
