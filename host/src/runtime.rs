//! The sandboxed plugin runtime.
//!
//! One wasmtime [`Engine`] (fuel, epoch interruption, pooling allocator,
//! copy-on-write memory images); per WIT version one [`Linker`]; per plugin a
//! compiled [`Component`] and its pre-instantiated, type-checked
//! `TriggerPre`/`RouterPre`/`NotifierPre`; per call a fresh [`Store`] and
//! instance with fuel, a memory cap and a deadline. Nothing survives a call,
//! so no state leaks between tickets or tenants, and a trapped instance is
//! simply dropped.
//!
//! This module knows the WIT types and nothing else of tickets.

mod batch;
pub mod cache;
mod engine;
mod error;
pub mod functions;
pub mod inspect;
mod limits;
pub mod loader;
pub mod output;
pub mod preinit;
mod reuse;
pub mod sandbox;
mod set;
pub mod shares;
pub mod wit;

pub use limits::*;
pub use reuse::*;
pub use set::{Member, SetMember, SetStats, TriggerSet};

use cache::{ArtifactCache, Origin};
pub use engine::RuntimeConfig;
pub use error::{ErrorKind, LoadError, PluginError};
use inspect::{Inspection, Kind};
use loader::{Code, Loader};
pub use preinit::Configure;
use sandbox::{CallState, LogLine};

use engine::{engine_config, spawn_epoch_ticker};
use error::classify;
use shares::{CallThreads, Shares};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{Engine, Store, Trap};

/// Who a plugin is: name and version, as every error and audit line says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginId {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl std::fmt::Display for PluginId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The pre-instantiated, type-checked entry point of a plugin.
enum Pre {
    Trigger(wit::trigger::TriggerPre<CallState>),
    Router(wit::router::RouterPre<CallState>),
    Notifier(wit::notifier::NotifierPre<CallState>),
}

/// A loaded plugin, ready to call. Cheap to share behind an `Arc`.
pub struct Plugin {
    id: PluginId,
    kind: Kind,
    limits: Limits,
    digest: String,
    /// The digest its code is kept under: `digest`, or with its
    /// configuration parsed ahead, that of the pre-initialised component
    /// ([`preinit`]).
    code_digest: String,
    size: usize,
    origin: Origin,
    inspection: Arc<Inspection>,
    /// The code while it is in memory (see [`loader`]).
    code: std::sync::Mutex<std::sync::Weak<Code>>,
    /// Without a budget, the plugin keeps its code.
    pinned: Option<Arc<Code>>,
    loader: Arc<Loader>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("limits", &self.limits)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Name and version.
    pub fn id(&self) -> &PluginId {
        &self.id
    }
    /// Whether a call of it can block in host code, where the epoch
    /// cannot interrupt it: only through WASI (a sleep, a poll). Our own
    /// host functions (`log`, `utc-offset`, the trigger set's marks)
    /// return at once.
    pub fn may_block(&self) -> bool {
        self.inspection.uses_wasi
    }
    /// The world it implements.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// SHA-256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// Whether its configuration is parsed ahead, in the memory image its
    /// instances start from ([`preinit`]), rather than per call.
    pub fn configured_ahead(&self) -> bool {
        self.code_digest != self.digest
    }
    /// The digest its code is kept under (see [`Plugin::configured_ahead`]).
    pub fn code_digest(&self) -> &str {
        &self.code_digest
    }
    /// Whether it came from the artifact cache or was compiled.
    pub fn origin(&self) -> Origin {
        self.origin
    }
    /// What it imports and exports.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }

    /// Its code: in memory, or loaded again from the artifact cache after
    /// the budget dropped it.
    fn code(&self) -> wasmtime::Result<Arc<Code>> {
        if let Some(code) = &self.pinned {
            return Ok(code.clone());
        }
        let mut slot = self
            .code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(code) = slot.upgrade() {
            self.loader.touch(&self.code_digest, &code);
            return Ok(code);
        }
        let code = match self.loader.reload(&self.id, self.kind, &self.code_digest) {
            Ok(code) => code,
            // The pre-initialised code could not come back: the original,
            // which parses its configuration per call.
            Err(e) if self.configured_ahead() => {
                tracing::warn!(plugin = %self.id, error = %e, "pre-initialised code lost; loading the original");
                self.loader.reload(&self.id, self.kind, &self.digest)?
            }
            Err(e) => return Err(e),
        };
        *slot = Arc::downgrade(&code);
        Ok(code)
    }
}

/// What a call cost, whether it succeeded or not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallReport {
    /// Fuel burnt (instantiation included).
    pub fuel_used: u64,
    /// The most linear memory the instance had at once, in bytes.
    pub peak_memory_bytes: usize,
    /// Wall-clock time of instantiation plus the call (less any pause of
    /// a low-lane call for the normal lane).
    #[serde(serialize_with = "serialize_micros", rename = "duration_us")]
    pub duration: Duration,
    /// The plugin's log: host-log lines, stdout and stderr.
    pub log: Vec<LogLine>,
    /// Log bytes dropped over the cap.
    pub log_dropped_bytes: usize,
}

fn serialize_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The result of one call and what it cost.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The output, or why there is none.
    pub result: Result<T, PluginError>,
    /// Fuel, memory, time and log.
    pub report: CallReport,
}

/// The plugin runtime. Share it (`Arc<Runtime>`); all methods take `&self`.
pub struct Runtime {
    engine: Engine,
    loader: Arc<Loader>,
    functions: Option<Arc<functions::FunctionCache>>,
    config: RuntimeConfig,
    shares: Arc<Shares>,
    threads: CallThreads,
    /// The vendor's trigger set, made on first use.
    trigger_set: std::sync::OnceLock<Option<Arc<TriggerSet>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with `config`.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        use anyhow::Context as _;
        let functions = (config.function_cache_bytes > 0).then(|| {
            Arc::new(functions::FunctionCache::new(
                config.function_cache_bytes,
                config.cache_dir.as_ref().map(|d| d.join("functions")),
            ))
        });
        let engine = Engine::new(&engine_config(&config, functions.as_ref()))
            .map_err(|e| e.context("creating the wasmtime engine"))?;
        let linker =
            sandbox::linker(&engine).map_err(|e| e.context("linking the host interfaces"))?;
        spawn_epoch_ticker(&engine, config.epoch_tick).context("starting the epoch ticker")?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| ArtifactCache::new(dir, &engine));
        let low_nice = config.shares.low_lane_nice;
        let shares = Shares::new(
            config.shares,
            usize::try_from(config.max_concurrent_instances).unwrap_or(usize::MAX),
        );
        // Normal-lane work arriving advances the epoch, so running low-lane
        // calls reach their next epoch check (and pause) at once.
        let weak = engine.weak();
        shares.gate().on_busy(Box::new(move || {
            if let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
            }
        }));
        let loader = Arc::new(Loader::new(
            engine.clone(),
            linker,
            cache,
            config.resident_code_bytes,
        ));
        Ok(Runtime {
            engine,
            loader,
            functions,
            config,
            shares,
            threads: CallThreads::new(low_nice),
            trigger_set: std::sync::OnceLock::new(),
        })
    }

    /// The code kept in memory under the budget.
    pub fn resident_code(&self) -> loader::ResidentStats {
        self.loader.resident()
    }

    /// What the function cache did so far (`None` when it is off).
    pub fn function_cache(&self) -> Option<functions::Stats> {
        self.functions.as_ref().map(|f| f.stats())
    }

    /// The fair shares of plugin execution.
    pub fn shares(&self) -> &Arc<Shares> {
        &self.shares
    }

    /// Run `job` on a thread of `lane` (the call threads'), for host work
    /// done on a tenant's behalf that should have its calls' priority.
    pub fn run_in_lane(
        &self,
        lane: shares::Lane,
        job: Box<dyn FnOnce() + Send>,
    ) -> std::io::Result<()> {
        self.threads.submit(job, lane)
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Forget the compiled artifact of `digest` (no stored plugin uses it
    /// any more).
    pub fn forget_artifact(&self, digest: &str) {
        self.loader.forget(digest);
    }

    /// Compile (or fetch from the cache) a component without checking it
    /// against a manifest: for `escalator plugin inspect`.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<(Component, Origin)> {
        check_header(wasm).map_err(anyhow::Error::msg)?;
        Ok(self.loader.compile(wasm, &cache::wasm_digest(wasm))?)
    }

    /// Load a plugin: check the bytes, compile (or load from the cache),
    /// refuse ungranted imports and the wrong world, and type-check it.
    pub fn load(
        &self,
        id: PluginId,
        kind: Kind,
        limits: Limits,
        wasm: &[u8],
    ) -> Result<Plugin, LoadError> {
        self.load_configured(id, kind, limits, wasm, Configure::Nothing)
    }

    /// [`Runtime::load`], and if the component can (a `configurable-*`
    /// world, no WASI) and `configure` names a configuration, with it
    /// parsed ahead into the memory image its instances start from
    /// ([`preinit`]). Whatever stops that leaves the plugin as
    /// [`Runtime::load`] makes it.
    pub fn load_configured(
        &self,
        id: PluginId,
        kind: Kind,
        limits: Limits,
        wasm: &[u8],
        configure: Configure<'_>,
    ) -> Result<Plugin, LoadError> {
        if wasm.len() > self.config.max_component_bytes {
            return Err(LoadError::TooLarge {
                plugin: id,
                size: wasm.len(),
                limit: self.config.max_component_bytes,
            });
        }
        if let Err(reason) = check_header(wasm) {
            return Err(LoadError::Malformed { plugin: id, reason });
        }
        if let Some((key, asked, allowed)) = limits.over(&self.config.ceiling) {
            return Err(LoadError::OverCeiling {
                plugin: id,
                key,
                asked,
                allowed,
            });
        }
        let digest = cache::wasm_digest(wasm);
        let (code, origin, code_digest) =
            match self.configured(&id, kind, limits, wasm, configure, &digest) {
                Some(made) => made,
                None => {
                    let (code, origin) = self.loader.code(&id, kind, wasm, &digest)?;
                    // Checked when the code was first loaded; the world asked
                    // for may still differ from the one these bytes implement.
                    if code.inspection.world != Some(kind) {
                        return Err(LoadError::WrongWorld {
                            plugin: id,
                            expected: kind,
                            found: code.inspection.world,
                            exports: code.inspection.exports.clone(),
                        });
                    }
                    (code, origin, digest.clone())
                }
            };
        Ok(Plugin {
            id,
            kind,
            limits,
            digest,
            code_digest,
            size: wasm.len(),
            origin,
            inspection: code.inspection.clone(),
            code: std::sync::Mutex::new(Arc::downgrade(&code)),
            pinned: (!self.loader.evicts()).then_some(code),
            loader: self.loader.clone(),
        })
    }

    /// The code of `wasm` (whose digest is `digest`) with `configure`
    /// parsed ahead, and the digest it is kept under: made before (in
    /// memory or the artifact cache: that code alone, without loading the
    /// component's own), or made now when the component exports the
    /// function and imports no WASI. `None`: load the component as it is.
    fn configured(
        &self,
        id: &PluginId,
        kind: Kind,
        limits: Limits,
        wasm: &[u8],
        configure: Configure<'_>,
        digest: &str,
    ) -> Option<(Arc<Code>, Origin, String)> {
        let export = configure.export().filter(|_| self.config.configure_ahead)?;
        let ahead = configure.digest(digest);
        let most = self.config.configured_variants;
        self.loader
            .configured_made(id, kind, &ahead, digest, most)
            .or_else(|| {
                preinit::worth_trying(wasm, export).then(|| {
                    self.loader.configured(
                        id,
                        kind,
                        wasm,
                        loader::Ahead {
                            configure,
                            digest: &ahead,
                            original_digest: digest,
                            limits: &limits,
                            epoch_tick: self.config.epoch_tick,
                            most,
                        },
                    )
                })?
            })
            .map(|(code, origin)| (code, origin, ahead))
    }

    /// Register a plugin without loading its code, when an earlier load
    /// kept what is needed to load it at its first call (a code budget,
    /// and its bytes and imports in the artifact cache): what a restart
    /// does for the stored versions, so it reads no component and compiles
    /// nothing. `None` when it cannot be deferred (then [`Runtime::load`]
    /// it); the checks made at load are made again when the code loads.
    pub fn register(
        &self,
        id: PluginId,
        kind: Kind,
        limits: Limits,
        digest: &str,
        size: usize,
    ) -> Option<Plugin> {
        self.register_configured(id, kind, limits, digest, size, Configure::Nothing)
    }

    /// [`Runtime::register`] with the configuration parsed ahead, if an
    /// earlier [`Runtime::load_configured`] kept the pre-initialised
    /// component (else as [`Runtime::register`]).
    pub fn register_configured(
        &self,
        id: PluginId,
        kind: Kind,
        limits: Limits,
        digest: &str,
        size: usize,
        configure: Configure<'_>,
    ) -> Option<Plugin> {
        if size > self.config.max_component_bytes || limits.over(&self.config.ceiling).is_some() {
            return None;
        }
        let ahead = configure
            .export()
            .filter(|_| self.config.configure_ahead)
            .map(|_| configure.digest(digest));
        let (code_digest, inspection) = match ahead
            .as_deref()
            .and_then(|a| Some((a, self.loader.deferrable(a)?)))
        {
            Some((a, inspection)) => (a.to_string(), inspection),
            None => (digest.to_string(), self.loader.deferrable(digest)?),
        };
        if inspection.world != Some(kind) || inspection.ungranted().next().is_some() {
            return None;
        }
        Some(Plugin {
            id,
            kind,
            limits,
            digest: digest.to_string(),
            code_digest,
            size,
            origin: Origin::Deferred,
            inspection: Arc::new(inspection),
            code: std::sync::Mutex::new(std::sync::Weak::new()),
            pinned: None,
            loader: self.loader.clone(),
        })
    }

    /// Run a trigger on a ticket.
    pub fn evaluate(
        &self,
        plugin: &Arc<Plugin>,
        ticket: &Arc<wit::Ticket>,
        ctx: &wit::Context,
    ) -> Outcome<wit::Evaluation> {
        self.evaluate_many(&[(plugin, ctx.clone())], ticket)
            .pop()
            .unwrap_or_else(|| lost(plugin))
    }

    /// Run several triggers on one ticket, in order, handed to a call
    /// thread once (every call still has its own share, fuel, memory cap
    /// and deadline): the outcomes in the same order.
    pub fn evaluate_many(
        &self,
        calls: &[(&Arc<Plugin>, wit::Context)],
        ticket: &Arc<wit::Ticket>,
    ) -> Vec<Outcome<wit::Evaluation>> {
        self.evaluate_triggers(None, calls, ticket).1
    }

    /// Run a router.
    pub fn route(
        &self,
        plugin: &Arc<Plugin>,
        ticket: &Arc<wit::Ticket>,
        escalation: wit::Escalation,
        roster: &Arc<Vec<wit::Agent>>,
        ctx: wit::Context,
    ) -> Outcome<wit::Routing> {
        if plugin.kind != Kind::Router {
            return wrong_kind(plugin, Kind::Router);
        }
        let (now, t, r) = (ctx.now, ticket.clone(), roster.clone());
        let code = match plugin.code() {
            Ok(code) => code,
            Err(e) => return unavailable(plugin, &e),
        };
        self.call(plugin, ticket, now, move |_, store| {
            let Pre::Router(pre) = &code.pre else {
                unreachable!("kind checked above")
            };
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_route(store, &t, &escalation, &r, &ctx)
                .map_err(CallError::Run)
        })
    }

    /// Run a notifier.
    pub fn plan(
        &self,
        plugin: &Arc<Plugin>,
        ticket: &Arc<wit::Ticket>,
        escalation: wit::Escalation,
        routing: wit::Routing,
        roster: &Arc<Vec<wit::Agent>>,
        ctx: wit::Context,
    ) -> Outcome<wit::NotificationPlan> {
        if plugin.kind != Kind::Notifier {
            return wrong_kind(plugin, Kind::Notifier);
        }
        let (now, t, r) = (ctx.now, ticket.clone(), roster.clone());
        let code = match plugin.code() {
            Ok(code) => code,
            Err(e) => return unavailable(plugin, &e),
        };
        self.call(plugin, ticket, now, move |_, store| {
            let Pre::Notifier(pre) = &code.pre else {
                unreachable!("kind checked above")
            };
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_plan(store, &t, &escalation, &routing, &r, &ctx)
                .map_err(CallError::Run)
        })
    }

    /// One call: take the tenant's share, run `f` on a call thread, and
    /// wait for it until its deadline (plus four epoch ticks: the epoch
    /// check itself lags by one or two). A call still running then is left
    /// to finish on its own thread, holding only its own tenant's share,
    /// and reported as past its deadline.
    fn call<T, F>(&self, plugin: &Arc<Plugin>, ticket: &wit::Ticket, now: i64, f: F) -> Outcome<T>
    where
        T: output::Output + Send + 'static,
        F: FnOnce(&Plugin, &mut Store<CallState>) -> Result<Result<T, String>, CallError>
            + Send
            + 'static,
    {
        let call = batch::Call {
            plugin: plugin.clone(),
            now,
            seed: seed(&ticket.id, now),
            f: Box::new(f),
        };
        self.calls(&ticket.tenant, vec![call])
            .pop()
            .unwrap_or_else(|| lost(plugin))
    }

    /// The vendor's trigger set, made by `make` on first use; `None` when
    /// there is none or [`RuntimeConfig::trigger_set`] is off.
    pub fn trigger_set(
        &self,
        make: impl FnOnce(&Runtime) -> Option<TriggerSet>,
    ) -> Option<&Arc<TriggerSet>> {
        if !self.config.trigger_set {
            return None;
        }
        self.trigger_set
            .get_or_init(|| make(self).map(Arc::new))
            .as_ref()
    }

    /// Calls of one tenant one after the other on one call thread (see
    /// [`batch`]), each under its own share and deadline.
    fn calls<T: output::Output + Send + 'static>(
        &self,
        tenant: &str,
        calls: Vec<batch::Call<T>>,
    ) -> Vec<Outcome<T>> {
        let env = batch::Env {
            engine: self.engine.clone(),
            shares: self.shares.clone(),
            tenant: tenant.to_string(),
            tick: self.config.epoch_tick,
            inline: self.config.inline_calls,
        };
        batch::run(&self.threads, &env, calls)
    }
}

/// The text of a panic's payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// How a low-lane call pauses for the normal lane ([`crate::lane::Gate`]).
pub(super) struct Pause {
    pub gate: Arc<crate::lane::Gate>,
    /// Whose call it is: it waits for the other tenants' normal lane.
    pub tenant: String,
    /// The running call's pause so far, in nanoseconds, and while it
    /// pauses all it may still pause: its watchdog adds this to the
    /// deadline.
    pub paused: Arc<std::sync::atomic::AtomicU64>,
    /// What its batch may still pause, in nanoseconds (of
    /// [`crate::lane::LOW_PAUSES_AT_MOST`]).
    pub left: Arc<std::sync::atomic::AtomicU64>,
}

impl Pause {
    /// Wait while the normal lane is busy, within what is left; how long.
    fn wait(&self) -> Duration {
        use std::sync::atomic::Ordering;
        if !self.gate.busy_for(&self.tenant) {
            return Duration::ZERO;
        }
        let left = self.left.swap(0, Ordering::AcqRel);
        if left == 0 {
            return Duration::ZERO;
        }
        // The watchdog allows the whole of it while it lasts.
        self.paused.fetch_add(left, Ordering::AcqRel);
        let waited = u64::try_from(
            self.gate
                .wait_idle(&self.tenant, Duration::from_nanos(left))
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
        .min(left);
        self.paused.fetch_sub(left - waited, Ordering::AcqRel);
        self.left.fetch_add(left - waited, Ordering::AcqRel);
        Duration::from_nanos(waited)
    }
}

/// One call in a fresh store: set the limits, run `f`, account, classify.
///
/// The deadline is checked at every epoch tick (and whenever the epoch is
/// advanced early): past its timeout, not counting time paused for the
/// normal lane, the call is interrupted. A low-lane call (`pause`) waits
/// there while normal-lane work is in progress.
///
/// The store is given back rather than dropped: dropping it frees its
/// instances (restores the pages they dirtied), which a caller may do
/// after handing the outcome on.
fn run_in_store<T: output::Output>(
    engine: &Engine,
    plugin: &Plugin,
    now: i64,
    seed: u64,
    pause: Option<Pause>,
    f: impl FnOnce(&Plugin, &mut Store<CallState>) -> Result<Result<T, String>, CallError>,
) -> (Outcome<T>, Store<CallState>) {
    let limits = plugin.limits;
    let start = Instant::now();
    let state = CallState::new(now, seed, limits.memory_bytes, limits.log_bytes);
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let mut deadline = start + limits.timeout;
    let paused = pause.as_ref().map(|p| p.paused.clone());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if let Some(p) = &pause {
            deadline += p.wait();
        }
        Ok(if Instant::now() >= deadline {
            wasmtime::UpdateDeadline::Interrupt
        } else {
            wasmtime::UpdateDeadline::Continue(1)
        })
    });
    let raw = match store.set_fuel(limits.fuel) {
        Ok(()) => f(plugin, &mut store),
        Err(e) => Err(CallError::Instantiate(e)),
    };
    // The plugin's own time: a pause for the normal lane was not it.
    let duration = start
        .elapsed()
        .saturating_sub(paused.map_or(Duration::ZERO, |p| {
            Duration::from_nanos(p.load(std::sync::atomic::Ordering::Acquire))
        }));
    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let id = || plugin.id.clone();
    let result = match raw {
        Ok(Ok(output)) => checked(plugin, output, now),
        Ok(Err(message)) => Err(PluginError::Refused {
            plugin: id(),
            message,
        }),
        Err(CallError::Instantiate(e)) if e.downcast_ref::<Trap>().is_none() => {
            Err(PluginError::Instantiate {
                plugin: id(),
                source: e.into(),
            })
        }
        Err(CallError::Instantiate(e) | CallError::Run(e)) => Err(classify(e, &store, plugin)),
    };
    let state = store.data();
    let (log, log_dropped_bytes) = state.log.finish();
    let outcome = Outcome {
        result,
        report: CallReport {
            fuel_used,
            peak_memory_bytes: state.limiter.peak,
            duration,
            log,
            log_dropped_bytes,
        },
    };
    (outcome, store)
}

/// A trigger's call for a batch, or its outcome if it cannot be made (not
/// a trigger, its code not loadable). The code is found (or loaded again)
/// here, before the call and outside its deadline.
fn trigger_call(
    plugin: &Arc<Plugin>,
    ctx: &wit::Context,
    ticket: &Arc<wit::Ticket>,
) -> Result<batch::Call<wit::Evaluation>, Box<Outcome<wit::Evaluation>>> {
    if plugin.kind != Kind::Trigger {
        return Err(Box::new(wrong_kind(plugin, Kind::Trigger)));
    }
    let code = plugin
        .code()
        .map_err(|e| Box::new(unavailable(plugin, &e)))?;
    let (t, c) = (ticket.clone(), ctx.clone());
    Ok(batch::Call {
        plugin: plugin.clone(),
        now: ctx.now,
        seed: seed(&ticket.id, ctx.now),
        f: Box::new(move |_: &Plugin, store: &mut Store<CallState>| {
            let Pre::Trigger(pre) = &code.pre else {
                unreachable!("kind checked above")
            };
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_evaluate(store, &t, &c)
                .map_err(CallError::Run)
        }),
    })
}

/// `output` if it is within `plugin`'s output limit and makes sense for an
/// evaluation at `now`.
fn checked<T: output::Output>(plugin: &Plugin, output: T, now: i64) -> Result<T, PluginError> {
    let size = output.size();
    if size > plugin.limits.output_bytes {
        return Err(PluginError::OutputTooLarge {
            plugin: plugin.id.clone(),
            size,
            limit: plugin.limits.output_bytes,
        });
    }
    output
        .validate(now)
        .map(|()| output)
        .map_err(|reason| PluginError::InvalidOutput {
            plugin: plugin.id.clone(),
            reason,
        })
}

/// Which half of a call failed.
enum CallError {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

/// The outcome of a call whose plugin's code could not be loaded again.
fn unavailable<T>(plugin: &Plugin, e: &wasmtime::Error) -> Outcome<T> {
    Outcome {
        result: Err(PluginError::HostFault {
            plugin: plugin.id.clone(),
            message: format!("its code could not be loaded: {e:#}"),
        }),
        report: CallReport::default(),
    }
}

/// The outcome of a call whose result never came back (a bug: a batch
/// answers every call it is given).
pub fn lost<T>(plugin: &Plugin) -> Outcome<T> {
    Outcome {
        result: Err(PluginError::HostFault {
            plugin: plugin.id.clone(),
            message: "the call was lost".into(),
        }),
        report: CallReport::default(),
    }
}

fn wrong_kind<T>(plugin: &Plugin, wanted: Kind) -> Outcome<T> {
    Outcome {
        result: Err(PluginError::InvalidOutput {
            plugin: plugin.id.clone(),
            reason: format!("called as a {wanted}, but it is a {}", plugin.kind),
        }),
        report: CallReport::default(),
    }
}

/// The per-evaluation random seed: the same ticket at the same `now` gets
/// the same randomness, so a replay gives the same output.
fn seed(ticket_id: &str, now: i64) -> u64 {
    // FNV-1a over the id, mixed with the time.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ticket_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (now as u64).rotate_left(32)
}

/// Check the first bytes, to say precisely what is wrong with a file that
/// is not a component.
fn check_header(wasm: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err("not a WebAssembly file (no `\\0asm` header)".into());
    }
    if wasm[4..8] != COMPONENT {
        return Err(
            "a core WebAssembly module, not a component: build with `--target wasm32-wasip2` or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}
