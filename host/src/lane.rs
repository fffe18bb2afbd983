//! Lanes: how a tenant using more than its share of server time is kept
//! from slowing the others down.
//!
//! A tenant is in the low lane while it has spent more than half its burst
//! of server time, of events or of event-body bytes (the API decides, from
//! its quotas). Its work then
//! yields to everyone else's in the two places a tenant's work meets the
//! others':
//!
//! - **CPU**: its plugin calls, and the parsing of its big request bodies,
//!   run on threads of the lowest priority (nice 19), which get only the
//!   CPU the normal lane leaves and still run at full speed on an idle
//!   machine. Nothing run there holds a lock another tenant waits for, so
//!   a starved low thread never holds up a normal one.
//! - **The SQLite writer**: its write transactions run on ordinary threads
//!   (a transaction holds the one writer, and must not be starved while it
//!   does), but wait until no normal-lane transaction is waiting, so a
//!   victim's write queues behind at most the one transaction running,
//!   never behind a convoy of an attacker's megabyte writes.
//! - **Both cores**: a nice-19 thread still runs beside the others on an
//!   idle core, and there it takes the memory bandwidth and the shared
//!   caches a victim's event needs. So low-lane plugin code also pauses
//!   while any normal-lane work is in progress ([`Gate`]): the wasm stops
//!   at its next epoch check (the normal lane's arrival advances the
//!   epoch, so that is at once) and goes on when the normal lane is idle,
//!   for at most [`LOW_PAUSES_AT_MOST`] per event's calls, the pause not
//!   counted against a call's own deadline. Low-lane host work that can
//!   wait (a request's engine work, parsing a big body) and low-lane write
//!   transactions also wait for the normal lane to be idle, each at most
//!   [`LOW_WAITS_AT_MOST`].

use std::cell::Cell;

/// Which lane work runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    /// Everyone within their share.
    #[default]
    Normal,
    /// A tenant over its share: what the others leave.
    Low,
    /// A tenant's requests at once beyond its share of the normal lane:
    /// they wait for the other tenants' normal lane as the low lane does,
    /// but run at normal priority (the tenant is within its budgets, so
    /// its calls must not miss their deadlines for want of a core).
    Yield,
}

impl Lane {
    /// Whether work in this lane waits for the other tenants' normal lane.
    pub fn yields(self) -> bool {
        self != Lane::Normal
    }
}

thread_local! {
    static CURRENT: Cell<Lane> = const { Cell::new(Lane::Normal) };
    /// The tenant whose work this thread is doing (see [`within_for`]).
    static TENANT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    static PAUSED: Cell<std::time::Duration> = const { Cell::new(std::time::Duration::ZERO) };
}

/// Note that work on this thread waited `d` for the normal lane (time its
/// tenant is not charged for; see [`take_paused`]).
pub fn note_paused(d: std::time::Duration) {
    PAUSED.with(|p| p.set(p.get().saturating_add(d)));
}

/// The waits noted on this thread since the last take, and forget them.
pub fn take_paused() -> std::time::Duration {
    PAUSED.with(|p| p.replace(std::time::Duration::ZERO))
}

/// The lane of the work this thread is doing.
pub fn current() -> Lane {
    CURRENT.with(Cell::get)
}

/// Run `f` as work of `tenant` in `lane` on this thread (a low-lane write
/// transaction then waits for the other tenants' normal lane, not its
/// own).
pub fn within_for<T>(tenant: &str, lane: Lane, f: impl FnOnce() -> T) -> T {
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            TENANT.with(|t| std::mem::swap(&mut *t.borrow_mut(), &mut self.0));
        }
    }
    let _restore = Restore(TENANT.with(|t| t.replace(tenant.to_string())));
    within(lane, f)
}

/// Run `f` as work of `lane` on this thread.
pub fn within<T>(lane: Lane, f: impl FnOnce() -> T) -> T {
    struct Restore(Lane);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(lane)));
    f()
}

/// Give the calling thread a lower CPU priority (nice `nice`, 19 the
/// lowest). Raising a thread's nice value needs no privilege; lowering it
/// again would, which is why the low lane has threads of its own.
#[cfg_attr(
    target_os = "linux",
    expect(unsafe_code, reason = "setpriority has no safe wrapper in std")
)]
pub fn lower_this_thread(nice: i32) {
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments; on Linux
    // PRIO_PROCESS with a thread id sets that one thread's nice value.
    unsafe {
        let tid = libc::gettid();
        if nice > 0 && libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) != 0 {
            tracing::warn!(
                "could not lower a low-lane thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The SQLite writer's turn-taking: one transaction at a time, and a
/// low-lane transaction only when no normal one is waiting (or after
/// [`LOW_WAITS_AT_MOST`], so an over-share tenant is slowed, never
/// stopped).
#[derive(Debug, Default)]
pub struct WriterTurns {
    state: std::sync::Mutex<Turns>,
    freed: std::sync::Condvar,
    /// Normal-lane work in progress: a low-lane transaction also waits
    /// while there is any of another tenant (up to its longest wait).
    gate: std::sync::OnceLock<std::sync::Arc<Gate>>,
}

#[derive(Debug, Default)]
struct Turns {
    held: bool,
    normal_waiting: usize,
    /// Threads asleep on `freed` now: a turn given back with none wakes
    /// nobody (a notification is a system call even then).
    asleep: usize,
}

/// A decision over more conversation than this (its subject and its
/// messages' bodies) yields to the other tenants' normal lane
/// ([`Lane::Yield`]), at normal priority: each call on a megabyte ticket
/// is tens of milliseconds of a core, which a victim's event should not
/// queue behind, while a tenant's ordinary tickets (a few KiB) keep the
/// normal lane. The yield delays a big ticket's decision only while other
/// tenants have work in progress, and by at most [`LOW_WAITS_AT_MOST`]
/// before its calls and [`LOW_PAUSES_AT_MOST`] during them.
pub const BIG_DECISION_BYTES: usize = 64 * 1024;

/// The longest one low-lane wait for the normal lane lasts: a write
/// transaction letting normal ones go first, or low-lane host work (a
/// request's engine work, a big body's parse) waiting for it to be idle.
pub const LOW_WAITS_AT_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// A turn at the writer; the next waiter goes when it is dropped.
#[derive(Debug)]
pub struct Turn<'a>(&'a WriterTurns);

impl WriterTurns {
    /// Let low-lane transactions also wait while `gate` is busy (once).
    pub fn defer_to(&self, gate: std::sync::Arc<Gate>) {
        let _ = self.gate.set(gate);
    }

    /// Wait for this thread's turn, by its [`current`] lane.
    pub fn take(&self) -> Turn<'_> {
        let lane = current();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match lane {
            Lane::Normal => {
                s.normal_waiting += 1;
                while s.held {
                    s.asleep += 1;
                    s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
                    s.asleep -= 1;
                }
                s.normal_waiting -= 1;
            }
            Lane::Low | Lane::Yield => {
                let began = std::time::Instant::now();
                let until = began + LOW_WAITS_AT_MOST;
                loop {
                    let now = std::time::Instant::now();
                    let busy = self
                        .gate
                        .get()
                        .is_some_and(|g| TENANT.with(|t| g.busy_for(&t.borrow())));
                    if !s.held && ((s.normal_waiting == 0 && !busy) || now >= until) {
                        break;
                    }
                    // The gate does not notify this condition: look again
                    // within a millisecond while it is busy.
                    let wait = if busy && !s.held {
                        std::time::Duration::from_millis(1)
                    } else {
                        until
                            .saturating_duration_since(now)
                            .max(std::time::Duration::from_millis(1))
                    };
                    s.asleep += 1;
                    s = self
                        .freed
                        .wait_timeout(s, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    s.asleep -= 1;
                }
                note_paused(began.elapsed());
            }
        }
        s.held = true;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.held = false;
        let asleep = s.asleep > 0;
        drop(s);
        if asleep {
            self.0.freed.notify_all();
        }
    }
}

/// The longest the plugin calls of one low-lane event pause for
/// normal-lane work, in all (they then run at nice 19 beside it): slowed,
/// never stopped.
pub const LOW_PAUSES_AT_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// Normal-lane work in progress, which low-lane work of other tenants
/// waits for. A tenant's low-lane work does not wait for the same tenant's
/// normal-lane work: the low lane yields to the others, not to itself (a
/// tenant with more requests at once than its normal-lane share is not
/// held up while it is alone).
#[derive(Default)]
pub struct Gate {
    /// All normal-lane work in progress (read without the lock, for the
    /// common case of none).
    busy: std::sync::atomic::AtomicUsize,
    /// Normal-lane work in progress per tenant (changed under this lock,
    /// with `busy`).
    by_tenant: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Callers of [`Gate::wait_idle`] waiting now.
    waiting: std::sync::atomic::AtomicUsize,
    idle: std::sync::Condvar,
    /// Called when a tenant's normal-lane work starts (advances the
    /// engine's epoch, so running low-lane calls of the others reach their
    /// pause at once).
    poke: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field(
                "busy",
                &self.busy.load(std::sync::atomic::Ordering::Acquire),
            )
            .finish_non_exhaustive()
    }
}

/// Normal-lane work of a tenant in progress while held (see
/// [`Gate::enter`]).
#[derive(Debug)]
pub struct Busy(std::sync::Arc<Gate>, String);

impl Gate {
    /// Set what is called when the normal lane gets busy (once).
    pub fn on_busy(&self, poke: Box<dyn Fn() + Send + Sync>) {
        // A second call keeps the first: one engine per runtime.
        let _ = self.poke.set(poke);
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.by_tenant.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Normal-lane work of `tenant` starts; it ends when the guard is
    /// dropped.
    pub fn enter(self: &std::sync::Arc<Self>, tenant: &str) -> Busy {
        use std::sync::atomic::Ordering;
        let first = {
            let mut m = self.tenants();
            self.busy.fetch_add(1, Ordering::AcqRel);
            let n = m.entry(tenant.to_string()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first && let Some(poke) = self.poke.get() {
            poke();
        }
        Busy(self.clone(), tenant.to_string())
    }

    /// Is normal-lane work of a tenant other than `tenant` in progress?
    pub fn busy_for(&self, tenant: &str) -> bool {
        use std::sync::atomic::Ordering;
        if self.busy.load(Ordering::Acquire) == 0 {
            return false;
        }
        let m = self.tenants();
        self.others(&m, tenant)
    }

    fn others(&self, m: &std::collections::HashMap<String, usize>, tenant: &str) -> bool {
        self.busy.load(std::sync::atomic::Ordering::Acquire) > m.get(tenant).copied().unwrap_or(0)
    }

    /// How many callers wait for the normal lane now (low-lane calls
    /// paused, low-lane host work held back).
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wait until no normal-lane work of a tenant other than `tenant` is in
    /// progress, or `at_most`; how long it waited.
    pub fn wait_idle(&self, tenant: &str, at_most: std::time::Duration) -> std::time::Duration {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        let until = started + at_most;
        if self.busy.load(Ordering::Acquire) == 0 {
            return std::time::Duration::ZERO;
        }
        let mut m = self.tenants();
        if !self.others(&m, tenant) {
            return std::time::Duration::ZERO;
        }
        let mut counted = false;
        loop {
            let now = std::time::Instant::now();
            if !self.others(&m, tenant) || now >= until {
                if counted {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                }
                return now - started;
            }
            if !counted {
                self.waiting.fetch_add(1, Ordering::AcqRel);
                counted = true;
            }
            m = self
                .idle
                .wait_timeout(m, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut m = self.0.tenants();
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
                // Under the lock: a waiter that saw the gate busy is asleep
                // (and counted) before this notification, so it cannot
                // miss it; with none, nobody is woken (a notification is
                // a system call even then).
                if self.0.waiting.load(std::sync::atomic::Ordering::Acquire) > 0 {
                    self.0.idle.notify_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn within_sets_the_lane_and_restores_it() {
        assert_eq!(current(), Lane::Normal);
        within(Lane::Low, || {
            assert_eq!(current(), Lane::Low);
            within(Lane::Normal, || assert_eq!(current(), Lane::Normal));
            assert_eq!(current(), Lane::Low);
        });
        assert_eq!(current(), Lane::Normal);
    }

    #[test]
    fn a_waiting_normal_transaction_goes_before_waiting_low_ones() {
        let turns = Arc::new(WriterTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take();
        let mut threads = Vec::new();
        // Three low-lane writers queue first, then one normal writer.
        for i in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                within(Lane::Low, || {
                    let _t = turns.take();
                    order.lock().unwrap().push(format!("low{i}"));
                    std::thread::sleep(Duration::from_millis(5));
                })
            }));
        }
        std::thread::sleep(Duration::from_millis(50));
        let (t2, o2) = (turns.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let _t = t2.take();
            o2.lock().unwrap().push("normal".to_string());
        }));
        // Released once the normal writer is seen waiting (a loaded
        // machine may take a while to start its thread).
        while turns.state.lock().unwrap().normal_waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 4);
        assert_eq!(order[0], "normal", "{order:?}");
    }

    #[test]
    fn low_lane_work_waits_for_the_normal_lane_to_be_idle_and_no_longer_than_its_cap() {
        let gate = Arc::new(Gate::default());
        let pokes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = pokes.clone();
        gate.on_busy(Box::new(move || {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        // Idle: no wait.
        assert!(gate.wait_idle("low", Duration::from_secs(5)) < Duration::from_secs(1));
        let outer = gate.enter("a");
        let inner = gate.enter("a");
        assert_eq!(
            pokes.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "poked when the tenant's normal lane got busy, once"
        );
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait_idle("low", Duration::from_secs(30)));
        // Counted while it waits (on a loaded machine its thread may take
        // a while to get there).
        while gate.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
        drop(inner);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "still busy: still waiting");
        drop(outer);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert_eq!(gate.waiting(), 0);
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        // Busy for ever: the wait ends at its cap.
        let _held = gate.enter("a");
        assert_eq!(pokes.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(gate.wait_idle("low", Duration::from_millis(50)) >= Duration::from_millis(50));
    }

    #[test]
    fn a_tenants_low_lane_work_waits_for_the_others_normal_lane_not_its_own() {
        let gate = Arc::new(Gate::default());
        let own = gate.enter("a");
        assert!(!gate.busy_for("a"));
        assert!(gate.busy_for("b"));
        assert_eq!(gate.wait_idle("a", Duration::from_secs(30)), Duration::ZERO);
        // Another tenant's normal lane: now it waits, until that ends.
        let other = gate.enter("b");
        assert!(gate.busy_for("a"));
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.wait_idle("a", Duration::from_secs(30)));
        while gate.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(other);
        let waited = waiter.join().unwrap();
        assert!(waited < Duration::from_secs(30), "{waited:?}");
        drop(own);
        assert!(!gate.busy_for("b"));
        // A low-lane write transaction of "a" goes though its own tenant's
        // normal lane is busy.
        let turns = WriterTurns::default();
        turns.defer_to(gate.clone());
        let _own = gate.enter("a");
        let started = std::time::Instant::now();
        within_for("a", Lane::Low, || drop(turns.take()));
        assert!(
            started.elapsed() < LOW_WAITS_AT_MOST,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_low_transaction_is_slowed_not_stopped() {
        let turns = Arc::new(WriterTurns::default());
        // A normal writer "waiting" forever: the low one still goes after
        // its longest wait.
        turns.state.lock().unwrap().normal_waiting = 1;
        let started = std::time::Instant::now();
        within(Lane::Low, || drop(turns.take()));
        assert!(started.elapsed() >= LOW_WAITS_AT_MOST);
    }
}
