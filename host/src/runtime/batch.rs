//! Several calls for one ticket, one after the other on one call thread.
//!
//! Every call of an event used to be handed to a call thread and back on
//! its own: two thread wake-ups per call, eighteen for a decision with
//! nine plugins. On a busy machine each wake-up may wait a scheduler slice
//! for a core, so another tenant's load reached the victim's latency
//! through the hand-offs rather than through any shared resource. A batch
//! is handed over once and its results come back once, and the watchdog is
//! the same as for a single call: the caller knows which call is running
//! and since when, and stops waiting at that call's deadline plus four
//! ticks. The call is then reported as past its deadline, the thread
//! (stuck in a host call) keeps only its own tenant's share, and the calls
//! not yet started go to a fresh thread.
//!
//! The batch's answers go back before its last store is freed: freeing an
//! instance restores the pages it dirtied, which the caller need not wait
//! for. The call's share (its slot and memory) is held until then.
//!
//! A call thread is for calls that can get stuck, in host code the epoch
//! cannot interrupt (wasmtime issue #9188): only a plugin that imports
//! WASI can block there (a sleep, a poll). A normal-lane batch of plugins
//! that import none (Rust plugins built with the SDK, and all the
//! defaults) runs on the caller's own thread, when its stack has room
//! for a plugin's wasm stack: no hand-off, no thread spinning or sleeping
//! for the other. The epoch still ends each call at its deadline, fuel
//! and memory still bound it, and it still takes its tenant's share. A
//! low-lane batch keeps its call threads, which run at a lower priority.

use super::shares::{self, CallThreads, Shares};
use super::{CallError, CallReport, Outcome, Plugin, PluginError, output, panic_message};
use super::{CallState, Pause, run_in_store};
use crate::lane::Lane;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store};

/// [`crate::lane::LOW_PAUSES_AT_MOST`] in nanoseconds: what a batch's calls
/// may pause in all.
const PAUSE_CAP_NANOS: u64 = crate::lane::LOW_PAUSES_AT_MOST.as_nanos() as u64;

/// What a call runs in its fresh store.
pub(super) type CallFn<T> =
    Box<dyn FnOnce(&Plugin, &mut Store<CallState>) -> Result<Result<T, String>, CallError> + Send>;

/// One call of a batch.
pub(super) struct Call<T> {
    pub plugin: Arc<Plugin>,
    /// The evaluation's time (the guest's virtual clocks start there).
    pub now: i64,
    /// The seed of the guest's randomness.
    pub seed: u64,
    pub f: CallFn<T>,
}

/// Everything a batch's thread needs besides its calls.
#[derive(Clone)]
pub(super) struct Env {
    pub engine: Engine,
    pub shares: Arc<Shares>,
    pub tenant: String,
    pub tick: Duration,
    /// Whether calls that cannot block may run on the caller's thread
    /// ([`super::RuntimeConfig::inline_calls`]).
    pub inline: bool,
}

struct State<T> {
    /// Calls not started yet, with their index.
    waiting: VecDeque<(usize, Call<T>)>,
    /// The call running: its index, and when its own time began (`None`
    /// while it waits for its share).
    running: Option<(usize, Option<Instant>)>,
    results: Vec<Option<Outcome<T>>>,
    /// Bumped when the caller walks away from a thread: that thread starts
    /// nothing more.
    generation: u64,
    /// The caller is asleep on `done` (not spinning): only then does the
    /// end of the batch notify it (a notification is a system call even
    /// with nobody waiting).
    caller_asleep: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    done: Condvar,
    finished: std::sync::atomic::AtomicBool,
    /// The running call's time paused for the normal lane (nanoseconds;
    /// low lane only), which its deadline does not count.
    paused: Arc<AtomicU64>,
    /// What the batch's calls may still pause (nanoseconds).
    pause_left: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A failed call's outcome.
fn failed<T>(error: PluginError, duration: Duration) -> Outcome<T> {
    Outcome {
        result: Err(error),
        report: CallReport {
            duration,
            ..CallReport::default()
        },
    }
}

/// Run `calls` in order on one call thread and wait for their outcomes,
/// each bounded by its own deadline (plus four epoch ticks, and up to
/// 50 ms more when it started while the caller slept between calls).
pub(super) fn run<T: output::Output + Send + 'static>(
    threads: &CallThreads,
    env: &Env,
    calls: Vec<Call<T>>,
) -> Vec<Outcome<T>> {
    let n = calls.len();
    if n == 0 {
        return Vec::new();
    }
    // The batch's lane: its request's (a request beyond its tenant's
    // normal-lane share runs low), or its tenant's as it is now. A
    // normal-lane batch makes other tenants' low-lane calls pause until it
    // is done.
    let lane = match (env.shares.lane(&env.tenant), crate::lane::current()) {
        (Lane::Low, _) => Lane::Low,
        (_, current) => current,
    };
    let _busy = (lane == Lane::Normal).then(|| env.shares.gate().enter(&env.tenant));
    if env.inline
        && lane == Lane::Normal
        && calls.iter().all(|c| !c.plugin.may_block())
        && room_for_wasm()
    {
        return calls.into_iter().map(|c| inline(env, c)).collect();
    }
    let plugins: Vec<Arc<Plugin>> = calls.iter().map(|c| c.plugin.clone()).collect();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            waiting: calls.into_iter().enumerate().collect(),
            running: None,
            results: (0..n).map(|_| None).collect(),
            generation: 0,
            caller_asleep: false,
        }),
        done: Condvar::new(),
        finished: std::sync::atomic::AtomicBool::new(false),
        paused: Arc::default(),
        pause_left: Arc::new(AtomicU64::new(PAUSE_CAP_NANOS)),
    });
    let overloaded = |s: &mut State<T>, reason: String| {
        for (i, c) in s.waiting.drain(..) {
            s.results[i] = Some(failed(
                PluginError::Overloaded {
                    plugin: c.plugin.id.clone(),
                    reason: reason.clone(),
                },
                Duration::ZERO,
            ));
        }
    };
    if let Err(e) = start(threads, env, &shared, 0, lane) {
        let mut s = lock(&shared.state);
        overloaded(&mut s, format!("no thread to run the call on: {e}"));
        return s.results.drain(..).flatten().collect();
    }
    // The calls of one event are short: look for the end a little before
    // sleeping (a futex wake-up costs tens of µs on a VM).
    shares::spin_until(
        || shared.finished.load(std::sync::atomic::Ordering::Acquire),
        shares::SPIN_PLACE_WAIT,
    );
    let slack = env.tick.saturating_mul(4);
    let mut s = lock(&shared.state);
    loop {
        if s.results.iter().all(Option::is_some) {
            break;
        }
        let now = Instant::now();
        // The running call's deadline; between calls, or while a call
        // waits for its share (which the share's own queue timeout
        // bounds), look again within 50 ms (the thread does not wake the
        // caller when a call starts: that would be the hand-off a batch
        // saves), so a call that sticks is left up to 50 ms after its
        // deadline plus four ticks.
        let until = match s.running {
            Some((i, Some(began))) => {
                let paused = Duration::from_nanos(shared.paused.load(Ordering::Acquire));
                Some((
                    i,
                    began + plugins[i].limits.timeout.saturating_add(slack) + paused,
                ))
            }
            _ => None,
        };
        match until {
            Some((i, at)) if now >= at => {
                let (plugin, timeout) = (&plugins[i], plugins[i].limits.timeout);
                tracing::warn!(plugin = %plugin.id, ?timeout, "plugin call abandoned past its deadline (blocked in a host call)");
                s.results[i] = Some(failed(
                    PluginError::Deadline {
                        plugin: plugin.id.clone(),
                        timeout,
                    },
                    now.duration_since(at) + timeout + slack,
                ));
                s.running = None;
                s.generation += 1;
                if !s.waiting.is_empty() {
                    let generation = s.generation;
                    drop(s);
                    let started = start(threads, env, &shared, generation, lane);
                    s = lock(&shared.state);
                    if let Err(e) = started {
                        overloaded(&mut s, format!("no thread to run the call on: {e}"));
                    }
                }
            }
            Some((_, at)) => {
                s.caller_asleep = true;
                s = shared
                    .done
                    .wait_timeout(s, at - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                s.caller_asleep = false;
            }
            None => {
                s.caller_asleep = true;
                s = shared
                    .done
                    .wait_timeout(s, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                s.caller_asleep = false;
            }
        }
    }
    if lane.yields() {
        // What the batch paused, noted for its tenant's charge. (Waiting
        // for its share behind its own paused calls is charged: a tenant
        // over its share that sends many requests at once while others
        // are busy gets few done.)
        let left = shared.pause_left.load(Ordering::Acquire);
        crate::lane::note_paused(Duration::from_nanos(PAUSE_CAP_NANOS.saturating_sub(left)));
    }
    s.results.drain(..).flatten().collect()
}

/// Start a thread working through the batch's waiting calls.
fn start<T: output::Output + Send + 'static>(
    threads: &CallThreads,
    env: &Env,
    shared: &Arc<Shared<T>>,
    generation: u64,
    lane: Lane,
) -> std::io::Result<()> {
    let (env, shared) = (env.clone(), shared.clone());
    threads.submit(
        Box::new(move || work(&env, &shared, generation, lane)),
        lane,
    )
}

/// The call thread's side: the waiting calls one by one, each under its
/// tenant's share, until none is left or the caller walked away.
fn work<T: output::Output + Send + 'static>(
    env: &Env,
    shared: &Shared<T>,
    generation: u64,
    lane: Lane,
) {
    loop {
        let mut s = lock(&shared.state);
        if s.generation != generation {
            return;
        }
        let Some((i, call)) = s.waiting.pop_front() else {
            finish(shared, s);
            return;
        };
        s.running = Some((i, None));
        drop(s);
        let started = |began: Instant| {
            let mut s = lock(&shared.state);
            if s.generation != generation {
                return false;
            }
            s.running = Some((i, Some(began)));
            shared.paused.store(0, Ordering::Release);
            true
        };
        let pause = || {
            lane.yields().then(|| Pause {
                gate: env.shares.gate().clone(),
                tenant: env.tenant.clone(),
                paused: shared.paused.clone(),
                left: shared.pause_left.clone(),
            })
        };
        let Some((outcome, leftover)) = admit_and_run(env, call, pause, started) else {
            return;
        };
        let mut s = lock(&shared.state);
        // A call the caller walked away from keeps its reported deadline,
        // and another thread has the calls after it.
        if s.generation != generation {
            return;
        }
        s.results[i] = Some(outcome);
        s.running = None;
        if s.waiting.is_empty() {
            // The caller has every answer before the last store is freed:
            // freeing it (restoring its dirtied pages) is off the event's
            // path, and the share is held until it is done.
            finish(shared, s);
            drop(leftover);
            return;
        }
        drop(s);
        drop(leftover);
    }
}

/// A normal-lane call whose plugin cannot block, on the caller's own
/// thread: no hand-off to a call thread and back. Its deadline needs no
/// watchdog: only wasm code runs, which the epoch interrupts, and the host
/// functions it may call return at once.
fn inline<T: output::Output>(env: &Env, call: Call<T>) -> Outcome<T> {
    let plugin = call.plugin.clone();
    admit_and_run(env, call, || None, |_| true)
        .map_or_else(|| super::lost(&plugin), |(outcome, _freed_here)| outcome)
}

/// Whether this thread's stack has room for a plugin's wasm stack and the
/// host code around it: a call runs on the caller's thread only then (a
/// thread with a small stack hands its calls to a call thread).
fn room_for_wasm() -> bool {
    stack_left().is_some_and(|left| left >= super::engine::MAX_WASM_STACK + (512 << 10))
}

/// The bytes of stack left below this point of the current thread, if
/// known (Linux: the thread's stack bounds, read once per thread).
fn stack_left() -> Option<usize> {
    thread_local! {
        static LOWEST: Option<usize> = stack_lowest();
    }
    let here = 0u8;
    let here = std::ptr::addr_of!(here) as usize;
    LOWEST.with(|lowest| lowest.map(|l| here.saturating_sub(l)))
}

/// The lowest address of the current thread's stack.
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "pthread_getattr_np has no safe wrapper in std")]
fn stack_lowest() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is
    // read, and destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        // The guard page at the bottom is not usable stack.
        ok.then(|| addr as usize + page_size())
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    #[expect(unsafe_code, reason = "sysconf has no safe wrapper in std")]
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

#[cfg(not(target_os = "linux"))]
fn stack_lowest() -> Option<usize> {
    None
}

/// A call's store and share, to free once its outcome is handed on.
type Leftover = (Store<CallState>, shares::Permit);

/// Take `call`'s share, then run it in a fresh store (`pause`: how a
/// low-lane call pauses; `started`: told when the call's own time begins,
/// it answers `false` when nobody waits for the call any more, and the
/// call is not run). The outcome, and what is left to free once it is
/// handed on; `None` if the call was given up.
fn admit_and_run<T: output::Output>(
    env: &Env,
    call: Call<T>,
    pause: impl FnOnce() -> Option<Pause>,
    started: impl FnOnce(Instant) -> bool,
) -> Option<(Outcome<T>, Option<Leftover>)> {
    let queued = Instant::now();
    let permit = match env
        .shares
        .admit(&env.tenant, call.plugin.limits.memory_bytes)
    {
        Ok(permit) => permit,
        Err(reason) => {
            let error = PluginError::Overloaded {
                plugin: call.plugin.id.clone(),
                reason,
            };
            return Some((failed(error, queued.elapsed()), None));
        }
    };
    // The call's own time starts now; waiting for the share was not it.
    let began = Instant::now();
    if !started(began) {
        return None;
    }
    let Call {
        plugin,
        now,
        seed,
        f,
    } = call;
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_in_store(&env.engine, &plugin, now, seed, pause(), f)
    }));
    Some(match run {
        Ok((outcome, store)) => (outcome, Some((store, permit))),
        Err(panic) => {
            let error = PluginError::HostFault {
                plugin: plugin.id.clone(),
                message: panic_message(&*panic),
            };
            (failed(error, began.elapsed()), None)
        }
    })
}

/// Tell the caller the batch is done (`s`: its state, locked): a caller
/// still spinning sees `finished`, one asleep is woken. Asleep is read
/// under the lock the caller sleeps with, so the wake-up cannot be missed.
fn finish<T>(shared: &Shared<T>, s: MutexGuard<'_, State<T>>) {
    let asleep = s.caller_asleep;
    drop(s);
    shared
        .finished
        .store(true, std::sync::atomic::Ordering::Release);
    if asleep {
        shared.done.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Limits, PluginId, Runtime, RuntimeConfig, wit};
    use super::*;

    fn phrases(rt: &Runtime, timeout_ms: u64) -> Arc<Plugin> {
        let b = crate::registry::builtin("phrases").expect("the built-in phrases trigger");
        let id = PluginId {
            name: "phrases".into(),
            version: "1.0.0".into(),
        };
        let limits = Limits {
            timeout: Duration::from_millis(timeout_ms),
            ..Limits::default()
        };
        Arc::new(
            rt.load(id, Kind::Trigger, limits, b.wasm)
                .expect("it loads"),
        )
    }

    fn ticket() -> Arc<wit::Ticket> {
        let t: crate::model::Ticket = serde_json::from_value(serde_json::json!({
            "id": "t1", "tenant": "acme", "subject": "I want a refund",
            "created_at": chrono::Utc::now(),
        }))
        .unwrap();
        Arc::new(crate::pipeline::contract::ticket(&t))
    }

    /// A real evaluation of `plugin`, or (`stuck`) a call that blocks in
    /// host code for 2 s, as a host call the epoch cannot interrupt would.
    fn call(plugin: &Arc<Plugin>, ticket: &Arc<wit::Ticket>, stuck: bool) -> Call<wit::Evaluation> {
        let t = ticket.clone();
        let ctx = crate::pipeline::contract::context(
            chrono::Utc::now(),
            crate::model::EventKind::TicketCreated,
            "{}".into(),
        );
        Call {
            plugin: plugin.clone(),
            now: ctx.now,
            seed: 1,
            f: Box::new(move |p: &Plugin, store: &mut Store<CallState>| {
                if stuck {
                    std::thread::sleep(Duration::from_secs(2));
                }
                let code = p.code().map_err(CallError::Instantiate)?;
                let super::super::Pre::Trigger(pre) = &code.pre else {
                    unreachable!("a trigger")
                };
                pre.instantiate(&mut *store)
                    .map_err(CallError::Instantiate)?
                    .call_evaluate(store, &t, &ctx)
                    .map_err(CallError::Run)
            }),
        }
    }

    fn env(rt: &Runtime) -> Env {
        Env {
            engine: rt.engine.clone(),
            shares: rt.shares.clone(),
            tenant: "acme".into(),
            tick: rt.config.epoch_tick,
            inline: rt.config.inline_calls,
        }
    }

    #[test]
    fn the_calls_of_a_batch_run_in_order_and_each_answers() {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let (p, t) = (phrases(&rt, 1000), ticket());
        let calls = (0..3).map(|_| call(&p, &t, false)).collect();
        let out = run(&rt.threads, &env(&rt), calls);
        assert_eq!(out.len(), 3);
        for o in out {
            assert!(o.result.is_ok(), "{:?}", o.result.err());
        }
    }

    /// A runtime that hands every call to a call thread.
    fn handing_off() -> Runtime {
        Runtime::new(RuntimeConfig {
            inline_calls: false,
            ..RuntimeConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn the_share_of_a_batch_comes_back_once_its_last_store_is_freed() {
        let rt = handing_off();
        let (p, t) = (phrases(&rt, 1000), ticket());
        for _ in 0..50 {
            let out = run(&rt.threads, &env(&rt), vec![call(&p, &t, false)]);
            assert!(out[0].result.is_ok(), "{:?}", out[0].result.as_ref().err());
            // The call thread frees the store after answering, and gives
            // the share back once it has: never kept.
            let back = Instant::now();
            while rt.shares.running("acme") != (0, 0) {
                assert!(
                    back.elapsed() < Duration::from_secs(10),
                    "the share never came back"
                );
                std::thread::yield_now();
            }
        }
    }

    /// Run `f` deeper in this thread's stack, once at most `left` bytes of
    /// it are left.
    fn with_stack_left<R>(left: usize, f: impl FnOnce() -> R) -> R {
        let pad = [0u8; 16 << 10];
        std::hint::black_box(&pad);
        let r = if stack_left().expect("known on Linux") > left {
            with_stack_left(left, f)
        } else {
            f()
        };
        std::hint::black_box(&pad);
        r
    }

    /// The thread each call of a batch of `n` ran on, from a thread with
    /// at most `left` bytes of stack left (`None`: as it comes); and that
    /// thread's.
    fn threads_of(
        rt: &Arc<Runtime>,
        n: usize,
        left: Option<usize>,
    ) -> (std::thread::ThreadId, Vec<std::thread::ThreadId>) {
        let rt = rt.clone();
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || {
                let (p, t) = (phrases(&rt, 1000), ticket());
                let ran = Arc::new(Mutex::new(Vec::new()));
                let calls: Vec<_> = (0..n)
                    .map(|_| {
                        let mut c = call(&p, &t, false);
                        let (f, ran) = (c.f, ran.clone());
                        c.f = Box::new(move |p: &Plugin, store: &mut Store<CallState>| {
                            lock(&ran).push(std::thread::current().id());
                            f(p, store)
                        });
                        c
                    })
                    .collect();
                let batch = || run(&rt.threads, &env(&rt), calls);
                let out = match left {
                    Some(left) => with_stack_left(left, batch),
                    None => batch(),
                };
                assert!(out.iter().all(|o| o.result.is_ok()));
                let ran = lock(&ran).clone();
                (std::thread::current().id(), ran)
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn calls_that_cannot_block_run_on_the_callers_thread_when_its_stack_has_room() {
        let rt = Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        assert!(!phrases(&rt, 1000).may_block(), "phrases imports no WASI");
        let (caller, ran) = threads_of(&rt, 3, None);
        assert_eq!(ran, vec![caller; 3]);
        // A caller with too little stack left for a plugin's wasm stack
        // hands its calls over.
        let (caller, ran) = threads_of(&rt, 3, Some(1 << 20));
        assert_eq!(ran.len(), 3);
        assert!(ran.iter().all(|t| *t != caller), "{ran:?}");
        // So does every caller when inline calls are off.
        let off = Arc::new(handing_off());
        let (caller, ran) = threads_of(&off, 2, None);
        assert_eq!(ran.len(), 2);
        assert!(ran.iter().all(|t| *t != caller), "{ran:?}");
    }

    #[test]
    fn a_call_stuck_in_host_code_is_left_behind_and_the_rest_of_the_batch_still_runs() {
        // The stuck call is simulated in host code around a plugin that
        // cannot block, so calls are handed to call threads here, as a
        // plugin that can block always is.
        let rt = handing_off();
        let t = ticket();
        let (quick, slow) = (phrases(&rt, 1000), phrases(&rt, 50));
        let calls = vec![
            call(&quick, &t, false),
            call(&slow, &t, true),
            call(&quick, &t, false),
        ];
        let started = Instant::now();
        let out = run(&rt.threads, &env(&rt), calls);
        let waited = started.elapsed();
        assert!(out[0].result.is_ok(), "{:?}", out[0].result);
        assert!(
            matches!(out[1].result, Err(PluginError::Deadline { .. })),
            "{:?}",
            out[1].result
        );
        assert!(out[2].result.is_ok(), "{:?}", out[2].result);
        // The caller walked away at the stuck call's deadline, not after
        // its 2 s: the call after it ran on another thread.
        assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
        // The stuck thread held the tenant's share until it came back.
        assert_ne!(rt.shares.running("acme"), (0, 0));
        let back = Instant::now();
        while rt.shares.running("acme") != (0, 0) {
            assert!(
                back.elapsed() < Duration::from_secs(60),
                "the share never came back"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
