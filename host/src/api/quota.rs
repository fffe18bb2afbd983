//! Per-tenant quotas of the API: how fast a tenant may send events, how
//! many webhooks, plugins, versions and live feeds it may have, and how
//! much one list answer may hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The quotas, each with its default.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Events (new tickets and ticket events) per second per tenant,
    /// sustained (default 50).
    pub events_per_second: f64,
    /// Events a tenant may send at once above the rate (default 200).
    pub event_burst: f64,
    /// Bytes of event bodies (new tickets, ticket events, help-desk
    /// deliveries) per second per tenant, sustained (default 1 MiB). Events
    /// are counted by number above; this counts their volume, so a tenant
    /// sending bodies near the size limit gets fewer of them than one
    /// sending ordinary tickets. A declared body is refused before a byte
    /// of it is read; one without `Content-Length` is charged once read.
    pub body_bytes_per_second: f64,
    /// Bytes of event bodies a tenant may send at once above the rate
    /// (default 8 MiB: eight bodies of the default size limit).
    pub body_burst_bytes: f64,
    /// Milliseconds of server time per second a tenant's events may take,
    /// sustained (default 500: half a core). What an event costs is known
    /// only once it is decided, so each is charged after the fact, and a
    /// tenant in debt is refused until it has paid it back.
    pub work_ms_per_second: f64,
    /// Milliseconds of server time a tenant may use at once above the
    /// rate (default 2000).
    pub work_burst_ms: f64,
    /// A tenant's event requests at once in the normal lane (default half
    /// the cores, at least 1); its others at the time yield
    /// ([`crate::lane::Lane::Yield`]): they wait for the other tenants'
    /// normal lane, never for its own, at normal priority.
    pub normal_requests_per_tenant: usize,
    /// Webhook endpoints per tenant (default 20).
    pub webhooks_per_tenant: usize,
    /// Plugins per tenant (default 32).
    pub plugins_per_tenant: usize,
    /// Versions kept per plugin; older inactive ones are pruned (default
    /// 5).
    pub versions_per_plugin: usize,
    /// Live feed (SSE) connections per tenant (default 16).
    pub sse_per_tenant: usize,
    /// Live feed connections in all (default 1024).
    pub sse_total: usize,
    /// The most items one list answer holds (`?limit=`; default 100, at
    /// most this, default 1000).
    pub max_page: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            events_per_second: 50.0,
            event_burst: 200.0,
            body_bytes_per_second: (1 << 20) as f64,
            body_burst_bytes: (8 << 20) as f64,
            work_ms_per_second: 500.0,
            work_burst_ms: 2000.0,
            normal_requests_per_tenant: std::thread::available_parallelism()
                .map_or(1, |n| n.get() / 2)
                .max(1),
            webhooks_per_tenant: 20,
            plugins_per_tenant: 32,
            versions_per_plugin: 5,
            sse_per_tenant: 16,
            sse_total: 1024,
            max_page: 1000,
        }
    }
}

/// A token bucket per tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `tenant`'s bucket, refilled to now.
    fn with<T>(&self, tenant: &str, rate: f64, burst: f64, f: impl FnOnce(&mut f64) -> T) -> T {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = buckets.entry(tenant.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        f(tokens)
    }

    /// Take one event for `tenant`; when its bucket is empty, how long
    /// until it holds one again.
    pub fn take(&self, tenant: &str, rate: f64, burst: f64) -> Result<(), Duration> {
        self.take_n(tenant, 1.0, rate, burst)
    }

    /// Take `n` for `tenant` (at most its whole burst, so anything the
    /// burst allows can pass); when its bucket holds less, how long until
    /// it holds that much.
    pub fn take_n(&self, tenant: &str, n: f64, rate: f64, burst: f64) -> Result<(), Duration> {
        let n = n.min(burst);
        self.with(tenant, rate, burst, |tokens| {
            if *tokens >= n {
                *tokens -= n;
                Ok(())
            } else {
                Err(Duration::from_secs_f64((n - *tokens) / rate.max(1e-9)))
            }
        })
    }

    /// What is left in `tenant`'s bucket now.
    pub fn left(&self, tenant: &str, rate: f64, burst: f64) -> f64 {
        self.with(tenant, rate, burst, |tokens| *tokens)
    }

    /// Whether `tenant` may start something whose cost is charged later:
    /// yes unless its bucket is in debt; else how long until it is not.
    /// Returns what is left in its bucket.
    pub fn admit(&self, tenant: &str, rate: f64, burst: f64) -> Result<f64, Duration> {
        self.with(tenant, rate, burst, |tokens| {
            if *tokens > 0.0 {
                Ok(*tokens)
            } else {
                Err(Duration::from_secs_f64(
                    (-*tokens).max(1.0) / rate.max(1e-9),
                ))
            }
        })
    }

    /// Charge `cost` to `tenant`'s bucket; it may go into debt. Returns
    /// what is left.
    pub fn charge(&self, tenant: &str, cost: f64, rate: f64, burst: f64) -> f64 {
        self.with(tenant, rate, burst, |tokens| {
            *tokens -= cost;
            *tokens
        })
    }
}

/// Things held at once, per tenant and in all: live feed connections,
/// requests in the normal lane.
#[derive(Debug, Default)]
pub struct Slots {
    total: AtomicUsize,
    per_tenant: Mutex<HashMap<String, usize>>,
}

/// A held slot; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    tenant: String,
}

/// Why a slot was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotRefusal {
    /// The tenant has its share open.
    Tenant(usize),
    /// The server has all it takes.
    Total(usize),
}

impl Slots {
    /// Take one of `per_tenant` slots of `tenant`, if it has one free;
    /// for what has no cap in all.
    pub fn take_within(self: &Arc<Self>, tenant: &str, per_tenant: usize) -> Option<Slot> {
        self.take(tenant, per_tenant, usize::MAX).ok()
    }

    /// Take a slot for `tenant`.
    pub fn take(
        self: &Arc<Self>,
        tenant: &str,
        per_tenant: usize,
        total: usize,
    ) -> Result<Slot, SlotRefusal> {
        let mut map = self.per_tenant.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.get(tenant).copied().unwrap_or(0);
        if n >= per_tenant {
            return Err(SlotRefusal::Tenant(per_tenant));
        }
        if self.total.load(Ordering::SeqCst) >= total {
            return Err(SlotRefusal::Total(total));
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        map.insert(tenant.to_string(), n + 1);
        Ok(Slot {
            slots: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .slots
            .per_tenant
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.tenant);
            }
        }
        self.slots.total.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_come_back() {
        let r = RateLimiter::default();
        for _ in 0..5 {
            r.take("a", 10.0, 5.0).unwrap();
        }
        let wait = r.take("a", 10.0, 5.0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.take("b", 10.0, 5.0).is_ok(), "each tenant has its own");
        std::thread::sleep(Duration::from_millis(120));
        assert!(r.take("a", 10.0, 5.0).is_ok(), "refilled");
        // What is left, refilled to now, without taking any.
        let left = r.left("b", 10.0, 5.0);
        assert!((4.0..=5.0).contains(&left), "{left}");
        assert_eq!(r.left("c", 10.0, 5.0), 5.0, "a new tenant's bucket is full");
    }

    #[test]
    fn a_volume_bucket_takes_what_is_asked_up_to_its_burst_and_says_how_long_for_the_rest() {
        let r = RateLimiter::default();
        r.take_n("a", 600.0, 100.0, 1000.0).unwrap();
        // 400 left: 500 more is 100 short, a second at 100 a second.
        let wait = r.take_n("a", 500.0, 100.0, 1000.0).unwrap_err();
        assert!(
            (Duration::from_millis(950)..=Duration::from_millis(1000)).contains(&wait),
            "{wait:?}"
        );
        // Refused takes nothing: 300 still fits.
        r.take_n("a", 300.0, 100.0, 1000.0).unwrap();
        // More than the burst asks for the whole burst, never for ever.
        let r = RateLimiter::default();
        r.take_n("b", 5000.0, 100.0, 1000.0).unwrap();
        assert!(r.left("b", 100.0, 1000.0) < 1.0);
        // Charged after the fact, a bucket goes into debt.
        let left = r.charge("b", 500.0, 100.0, 1000.0);
        assert!(left < -499.0, "{left}");
        assert!(r.take_n("b", 1.0, 100.0, 1000.0).is_err());
    }

    #[test]
    fn feed_slots_are_counted_per_tenant_and_in_all_and_freed_on_drop() {
        let s = Arc::new(Slots::default());
        let a1 = s.take("a", 2, 3).unwrap();
        let _a2 = s.take("a", 2, 3).unwrap();
        assert_eq!(s.take("a", 2, 3).unwrap_err(), SlotRefusal::Tenant(2));
        let _b1 = s.take("b", 2, 3).unwrap();
        assert_eq!(s.take("c", 2, 3).unwrap_err(), SlotRefusal::Total(3));
        drop(a1);
        assert!(s.take("c", 2, 3).is_ok());
    }
}
