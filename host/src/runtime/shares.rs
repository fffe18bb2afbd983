//! Fair shares of plugin execution, and the threads calls run on.
//!
//! - **Admission**: before a call runs it takes a permit: one of its
//!   tenant's concurrent-call slots, one of the process's call slots (the
//!   pooling allocator's instances), and its memory cap out of the
//!   process-wide plugin-memory budget. A permit is given back when the call
//!   has really ended, so a tenant whose calls are slow or blocked waits
//!   behind itself, never in front of anyone else. A call that cannot be
//!   admitted within the queue timeout fails as `Overloaded` without running.
//! - **Threads**: every call runs on a dedicated call thread, never on the
//!   caller's thread (an async runtime's worker, or `main` inside
//!   `block_on`). The caller waits for the result until the call's deadline
//!   and then walks away, so no host call, however long it blocks, holds the
//!   caller; a thread whose call overran is simply not reused until it
//!   returns, and a fresh thread takes its place. The calls of
//!   one event go to a call thread together ([`super::batch`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How plugin execution is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharesConfig {
    /// Concurrent calls one tenant may have running (`None`: no cap, for
    /// the CLI and replay, where one operator owns everything).
    pub tenant_concurrency: Option<usize>,
    /// The memory caps of all calls running at once, added up, in bytes.
    pub memory_budget_bytes: usize,
    /// How long a call may wait for its share before it fails.
    pub queue_timeout: Duration,
    /// The CPU priority (nice, 0–19) low-lane calls run at: 19, the
    /// lowest, so an over-share tenant's plugins take only what the others
    /// leave.
    pub low_lane_nice: i32,
}

impl Default for SharesConfig {
    fn default() -> Self {
        SharesConfig {
            tenant_concurrency: None,
            // 4 GiB: a sixth of a 24 GiB machine; 64 calls of the default
            // 64 MiB cap, or 16 at the 256 MiB ceiling.
            memory_budget_bytes: 4 << 30,
            queue_timeout: Duration::from_secs(10),
            low_lane_nice: 19,
        }
    }
}

struct State {
    per_tenant: HashMap<String, usize>,
    calls: usize,
    memory: usize,
    /// Tenants whose calls run in the low lane.
    low: HashSet<String>,
    /// Time each tenant's work waited for the normal lane, not yet taken
    /// off what it is charged.
    paused: HashMap<String, Duration>,
    /// Calls asleep in [`Shares::admit`] now: a share given back with none
    /// wakes nobody (a notification is a system call even then).
    asleep: usize,
}

pub use crate::lane::Lane;

/// The shares of one runtime.
pub struct Shares {
    config: SharesConfig,
    max_calls: usize,
    state: Mutex<State>,
    freed: Condvar,
    gate: Arc<crate::lane::Gate>,
}

/// A running call's share; given back on drop.
pub struct Permit {
    shares: Arc<Shares>,
    tenant: String,
    memory: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shares {
    /// Shares for at most `max_calls` calls at once in the whole process.
    pub fn new(config: SharesConfig, max_calls: usize) -> Arc<Shares> {
        Arc::new(Shares {
            config,
            max_calls: max_calls.max(1),
            state: Mutex::new(State {
                per_tenant: HashMap::new(),
                calls: 0,
                memory: 0,
                low: HashSet::new(),
                paused: HashMap::new(),
                asleep: 0,
            }),
            freed: Condvar::new(),
            gate: Arc::default(),
        })
    }

    /// Normal-lane work in progress, which low-lane calls pause for.
    pub fn gate(&self) -> &Arc<crate::lane::Gate> {
        &self.gate
    }

    /// The configuration.
    pub fn config(&self) -> SharesConfig {
        self.config
    }

    /// Take a share for one call of `tenant` that may use `memory` bytes;
    /// waits up to the queue timeout. The error says which share was full.
    pub fn admit(self: &Arc<Self>, tenant: &str, memory: usize) -> Result<Permit, String> {
        // A call bigger than the whole budget could never run; let it run
        // alone rather than never.
        let memory = memory.min(self.config.memory_budget_bytes);
        let until = Instant::now() + self.config.queue_timeout;
        let mut s = lock(&self.state);
        loop {
            let mine = s.per_tenant.get(tenant).copied().unwrap_or(0);
            let full = if self
                .config
                .tenant_concurrency
                .is_some_and(|cap| mine >= cap)
            {
                Some("its tenant's share of concurrent plugin calls")
            } else if s.calls >= self.max_calls {
                Some("every plugin call slot of the process")
            } else if s.memory + memory > self.config.memory_budget_bytes {
                Some("the process's plugin-memory budget")
            } else {
                None
            };
            let Some(full) = full else { break };
            let now = Instant::now();
            if now >= until {
                return Err(format!(
                    "{full} stayed in use for {:?}",
                    self.config.queue_timeout
                ));
            }
            s.asleep += 1;
            s = self
                .freed
                .wait_timeout(s, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            s.asleep -= 1;
        }
        *s.per_tenant.entry(tenant.to_string()).or_default() += 1;
        s.calls += 1;
        s.memory += memory;
        Ok(Permit {
            shares: self.clone(),
            tenant: tenant.to_string(),
            memory,
        })
    }

    /// Put `tenant`'s calls from now on in `lane`.
    pub fn set_lane(&self, tenant: &str, lane: Lane) {
        let mut s = lock(&self.state);
        match lane {
            Lane::Low if !s.low.contains(tenant) => {
                s.low.insert(tenant.to_string());
            }
            Lane::Normal => {
                s.low.remove(tenant);
            }
            // A tenant is in the normal or the low lane; a request yields.
            Lane::Low | Lane::Yield => {}
        }
    }

    /// Note that `tenant`'s work waited `d` for the normal lane.
    pub fn paused(&self, tenant: &str, d: Duration) {
        if d.is_zero() {
            return;
        }
        let mut s = lock(&self.state);
        let p = s.paused.entry(tenant.to_string()).or_default();
        *p = p.saturating_add(d);
    }

    /// Up to `at_most` of `tenant`'s noted waits, taken (the rest stays
    /// for its next request): time it is not charged for.
    pub fn take_paused(&self, tenant: &str, at_most: Duration) -> Duration {
        let mut s = lock(&self.state);
        let Some(p) = s.paused.get_mut(tenant) else {
            return Duration::ZERO;
        };
        let taken = (*p).min(at_most);
        *p -= taken;
        if p.is_zero() {
            s.paused.remove(tenant);
        }
        taken
    }

    /// Run `f` on this thread as `tenant`'s work in `lane`; what it
    /// waited for the normal lane is noted for `tenant`. Low-lane work
    /// (reading and parsing a megabyte ticket, lowering it for its calls)
    /// starts when no normal-lane work is in progress, or after
    /// [`crate::lane::LOW_WAITS_AT_MOST`].
    pub fn within<T>(&self, tenant: &str, lane: Lane, f: impl FnOnce() -> T) -> T {
        // Waits noted on this thread for other work are not this tenant's.
        let _ = crate::lane::take_paused();
        if lane.yields() {
            crate::lane::note_paused(self.gate.wait_idle(tenant, crate::lane::LOW_WAITS_AT_MOST));
        }
        let out = crate::lane::within_for(tenant, lane, f);
        self.paused(tenant, crate::lane::take_paused());
        out
    }

    /// The lane `tenant`'s calls run in.
    pub fn lane(&self, tenant: &str) -> Lane {
        if lock(&self.state).low.contains(tenant) {
            Lane::Low
        } else {
            Lane::Normal
        }
    }

    /// Calls running now: (all tenants, this tenant).
    pub fn running(&self, tenant: &str) -> (usize, usize) {
        let s = lock(&self.state);
        (s.calls, s.per_tenant.get(tenant).copied().unwrap_or(0))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = lock(&self.shares.state);
        if let Some(n) = s.per_tenant.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                s.per_tenant.remove(&self.tenant);
            }
        }
        s.calls -= 1;
        s.memory -= self.memory;
        let asleep = s.asleep > 0;
        drop(s);
        if asleep {
            self.shares.freed.notify_all();
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads free for a job: spinning for one, or asleep.
    idle: usize,
    /// Of those, asleep on the condition variable (need a notify).
    asleep: usize,
}

/// How long a free thread (or a caller waiting for its result) keeps
/// looking before it sleeps: the calls of one event come back to back, and
/// a futex wake-up costs tens of µs on a VM. It yields while it looks, so
/// under load the time goes to whoever has work.
const SPIN: Duration = Duration::from_micros(200);

/// Threads that may spin at once; the others sleep at once. With more,
/// a loaded machine's cores go to threads yielding to each other (14 % of
/// the server's CPU at 4 clients on 2 cores).
const SPINNERS_AT_MOST: usize = 1;

/// Threads spinning now.
static SPINNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How long a thread waits (yielding) for the spinner's place when
/// another thread holds it, before it sleeps: a caller that has just
/// handed over its calls, and a call thread that has just finished them.
/// Between the two of them, the place is most often held by the other
/// one, which lets go within a few µs (the call thread when it takes the
/// job, the caller when it sees the result). Without the wait, each hand-off
/// of an event's stages (triggers, router, notifier) ended in a futex
/// wake-up: a fresh call took 47 µs against 25 µs on the caller's own
/// thread; with it, 29 µs.
pub(super) const SPIN_PLACE_WAIT: Duration = Duration::from_micros(50);

/// Look at `ready` until it says yes or [`SPIN`] is over. When
/// [`SPINNERS_AT_MOST`] threads spin already, keep trying for the place
/// (yielding, and looking at `ready`) for up to `wait`, then give up:
/// `false`.
pub(super) fn spin_until(ready: impl Fn() -> bool, wait: Duration) -> bool {
    use std::sync::atomic::Ordering;
    if ready() {
        return true;
    }
    let asked = Instant::now();
    while SPINNING.fetch_add(1, Ordering::AcqRel) >= SPINNERS_AT_MOST {
        SPINNING.fetch_sub(1, Ordering::AcqRel);
        if asked.elapsed() >= wait {
            return false;
        }
        std::thread::yield_now();
        if ready() {
            return true;
        }
    }
    let until = Instant::now() + SPIN;
    let ready = loop {
        if ready() {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        std::thread::yield_now();
    };
    SPINNING.fetch_sub(1, Ordering::AcqRel);
    ready
}

/// The threads plugin calls run on: grown on demand (a thread stuck in an
/// overrunning call is not waited for), shrunk when idle; one set per
/// [`Lane`].
pub struct CallThreads {
    normal: Arc<(Mutex<Queue>, Condvar)>,
    low: Arc<(Mutex<Queue>, Condvar)>,
    /// The nice value of the low lane's threads.
    low_nice: i32,
}

/// An idle call thread exits after this long.
const IDLE_EXIT: Duration = Duration::from_secs(60);
/// Stack of a call thread: wasm's own stack (1 MiB, `max_wasm_stack`) plus
/// room for the host functions it calls.
const STACK_BYTES: usize = 8 << 20;

impl CallThreads {
    /// No threads yet; the low lane's will run at `low_nice`.
    pub fn new(low_nice: i32) -> CallThreads {
        let queue = || {
            Arc::new((
                Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    asleep: 0,
                }),
                Condvar::new(),
            ))
        };
        CallThreads {
            normal: queue(),
            low: queue(),
            low_nice,
        }
    }

    /// Run `job` on a call thread of `lane`.
    pub fn submit(&self, job: Job, lane: Lane) -> std::io::Result<()> {
        let queue = match lane {
            Lane::Normal | Lane::Yield => &self.normal,
            Lane::Low => &self.low,
        };
        let (m, cv) = &**queue;
        let mut q = lock(m);
        q.jobs.push_back(job);
        let spawn = q.idle < q.jobs.len();
        // A thread that is still looking takes the job without a wake-up;
        // wake a sleeper only for the jobs the lookers cannot take.
        let wake = q.asleep > 0 && q.idle - q.asleep < q.jobs.len();
        drop(q);
        if spawn {
            let queue = queue.clone();
            let low_nice = self.low_nice;
            let name = match lane {
                Lane::Normal | Lane::Yield => "escalator-plugin",
                // 15 characters at most (what /proc/PID/task/TID/comm keeps).
                Lane::Low => "escalator-low",
            };
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .stack_size(STACK_BYTES)
                .spawn(move || {
                    if lane == Lane::Low {
                        crate::lane::lower_this_thread(low_nice);
                    }
                    work(&queue)
                });
            if let Err(e) = spawned {
                // Take the job back out if no thread can be had and none
                // is idle: the caller reports it.
                let mut q = lock(m);
                if q.idle == 0 {
                    q.jobs.pop_back();
                    return Err(e);
                }
            }
        }
        if wake {
            cv.notify_one();
        }
        Ok(())
    }
}

impl Default for CallThreads {
    fn default() -> Self {
        CallThreads::new(SharesConfig::default().low_lane_nice)
    }
}

fn work(queue: &(Mutex<Queue>, Condvar)) {
    let (m, cv) = queue;
    loop {
        let mut q = lock(m);
        let job = loop {
            if let Some(job) = q.jobs.pop_front() {
                break job;
            }
            // Free: look for the next job a little, then sleep.
            q.idle += 1;
            drop(q);
            spin_until(|| !lock(m).jobs.is_empty(), SPIN_PLACE_WAIT);
            q = lock(m);
            if !q.jobs.is_empty() {
                q.idle -= 1;
                continue;
            }
            q.asleep += 1;
            let (next, timeout) = cv
                .wait_timeout(q, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            q = next;
            q.asleep -= 1;
            q.idle -= 1;
            if timeout.timed_out() && q.jobs.is_empty() {
                return;
            }
        };
        drop(q);
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cap: Option<usize>, budget: usize) -> SharesConfig {
        SharesConfig {
            tenant_concurrency: cap,
            memory_budget_bytes: budget,
            queue_timeout: Duration::from_millis(50),
            low_lane_nice: 19,
        }
    }

    #[test]
    fn a_tenant_at_its_cap_waits_while_another_tenant_runs() {
        let shares = Shares::new(config(Some(2), 1 << 30), 100);
        let a1 = shares.admit("a", 1).unwrap();
        let _a2 = shares.admit("a", 1).unwrap();
        let err = shares.admit("a", 1).err().unwrap();
        assert!(err.contains("tenant's share"), "{err}");
        let _b = shares.admit("b", 1).expect("another tenant is not held up");
        drop(a1);
        let _a3 = shares.admit("a", 1).expect("a slot came back");
        assert_eq!(shares.running("a"), (3, 2));
    }

    #[test]
    fn the_memory_budget_bounds_all_calls_together() {
        let shares = Shares::new(config(None, 100), 100);
        let big = shares.admit("a", 70).unwrap();
        let err = shares.admit("b", 40).err().unwrap();
        assert!(err.contains("plugin-memory budget"), "{err}");
        let _small = shares.admit("b", 30).unwrap();
        drop(big);
        let _again = shares.admit("b", 70).unwrap();
    }

    #[test]
    fn a_waiting_call_runs_as_soon_as_a_share_is_freed() {
        let shares = Shares::new(
            SharesConfig {
                queue_timeout: Duration::from_secs(10),
                ..config(Some(1), 1 << 30)
            },
            100,
        );
        let held = shares.admit("a", 1).unwrap();
        let s2 = shares.clone();
        let waiter = std::thread::spawn(move || s2.admit("a", 1).map(drop));
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap().expect("admitted after the release");
    }

    #[test]
    fn call_threads_run_jobs_and_do_not_wait_for_a_stuck_one() {
        let threads = CallThreads::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        threads
            .submit(
                Box::new(move || {
                    let _ = stuck.recv();
                }),
                Lane::Normal,
            )
            .unwrap();
        for i in 0..4 {
            let tx = tx.clone();
            threads
                .submit(Box::new(move || tx.send(i).unwrap()), Lane::Normal)
                .unwrap();
        }
        let mut got: Vec<i32> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2, 3]);
        release.send(()).unwrap();
    }

    /// This thread's nice value, from `/proc/thread-self/stat`.
    #[cfg(target_os = "linux")]
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // After the command name in parentheses: state is field 3, nice 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn low_lane_jobs_run_on_threads_of_the_lowest_priority() {
        let threads = CallThreads::default();
        let (tx, rx) = std::sync::mpsc::channel();
        for lane in [Lane::Normal, Lane::Low] {
            let tx = tx.clone();
            threads
                .submit(
                    Box::new(move || {
                        let name = std::thread::current().name().map(String::from);
                        tx.send((lane, name, nice())).unwrap()
                    }),
                    lane,
                )
                .unwrap();
        }
        let mut got: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort_by_key(|(lane, ..)| *lane == Lane::Low);
        let here = nice();
        assert_eq!(got[0].1.as_deref(), Some("escalator-plugin"));
        assert_eq!(
            got[0].2, here,
            "a normal-lane thread keeps the process's priority"
        );
        assert_eq!(got[1].1.as_deref(), Some("escalator-low"));
        assert_eq!(got[1].2, 19, "a low-lane thread runs at nice 19");
    }

    #[test]
    fn a_tenant_is_in_the_lane_it_was_last_put_in() {
        let shares = Shares::new(config(None, 1 << 30), 10);
        assert_eq!(shares.lane("a"), Lane::Normal);
        shares.set_lane("a", Lane::Low);
        shares.set_lane("a", Lane::Low);
        assert_eq!(shares.lane("a"), Lane::Low);
        assert_eq!(shares.lane("b"), Lane::Normal);
        shares.set_lane("a", Lane::Normal);
        assert_eq!(shares.lane("a"), Lane::Normal);
    }
}
