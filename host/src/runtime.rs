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

pub mod cache;
pub mod inspect;
pub mod sandbox;
pub mod wit;

use cache::{ArtifactCache, Origin};
use inspect::{Inspection, Kind};
use sandbox::{CallState, LogLine};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

/// Settings of the runtime as a whole (not of one plugin).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances: the granularity of call deadlines.
    pub epoch_tick: Duration,
    /// How many plugin instances may be alive at once (pool slots).
    pub max_concurrent_instances: u32,
    /// The most linear memory any plugin may be given, in bytes.
    pub max_memory_bytes: usize,
    /// The largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Write `/tmp/perf-PID.map` so `perf` can name plugin functions
    /// (`ESCALATOR_PERFMAP=1`).
    pub perf_map: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            // 5 ms: a deadline overshoots by at most one tick, and the ticker
            // thread costs nothing measurable.
            epoch_tick: Duration::from_millis(5),
            // Enough for every core of a large machine to run a few plugins
            // at once; each slot only reserves address space until used.
            max_concurrent_instances: 256,
            // Python and JS components need tens of MiB; nothing needs more.
            max_memory_bytes: 512 << 20,
            max_component_bytes: 64 << 20,
            perf_map: std::env::var_os("ESCALATOR_PERFMAP").is_some_and(|v| v == "1"),
        }
    }
}

/// The wasmtime settings, each with its reason.
fn engine_config(rc: &RuntimeConfig) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    // Plugins are components with WIT interfaces.
    c.wasm_component_model(true);
    // Fuel bounds the work of a call deterministically: the same ticket
    // burns the same fuel, so a limit behaves the same on every machine.
    c.consume_fuel(true);
    // Epochs bound wall-clock time (a host call that blocks, a slow path
    // that fuel does not see) at almost no cost per instruction.
    c.epoch_interruption(true);
    // Guest backtraces (function names) in trap errors, 32 frames at most;
    // no DWARF parsing.
    c.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32));
    c.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    // Deep recursion traps cleanly long before the host thread's stack is
    // at risk.
    c.max_wasm_stack(1 << 20);
    // Optimised code: plugins run on every event.
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c.parallel_compilation(true);
    // A fresh instance maps its initial memory copy-on-write from an image
    // instead of copying data segments: the key to cheap instantiation.
    c.memory_init_cow(true);
    // For profiling plugins with `perf`; off by default.
    if rc.perf_map {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }

    let mut pool = wasmtime::PoolingAllocationConfig::default();
    // Pre-reserved slots make instantiation a matter of reusing memory that
    // is already mapped.
    pool.total_component_instances(rc.max_concurrent_instances);
    // Language runtimes (Python, JS) have many core instances, memories and
    // tables per component; Rust and C have one or two.
    pool.max_core_instances_per_component(64);
    pool.max_memories_per_component(8);
    pool.max_tables_per_component(16);
    pool.total_core_instances(rc.max_concurrent_instances * 8);
    pool.total_memories(rc.max_concurrent_instances * 2);
    pool.total_tables(rc.max_concurrent_instances * 4);
    pool.max_memory_size(rc.max_memory_bytes);
    pool.table_elements(100_000);
    pool.max_core_instance_size(4 << 20);
    pool.max_component_instance_size(4 << 20);
    // When an instance is freed, find the pages it dirtied (Linux
    // PAGEMAP_SCAN, kernel 6.7+; elsewhere this falls back) and restore just
    // those in place, up to 1 MiB, instead of madvise(DONTNEED): no syscall
    // per call, no TLB-shootdown IPIs, and the next instance finds its pages
    // resident (no page faults). Without the scan, keep-resident would
    // memset the first MiB on every call, which costs more than it saves.
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(1 << 20);
    pool.table_keep_resident(64 << 10);
    c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    c
}

/// Limits of one plugin's calls (from its manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (roughly, wasm instructions).
    pub fuel: u64,
    /// Linear memory per call, all memories together, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time per call.
    pub timeout: Duration,
    /// The largest output accepted, in bytes of text it carries.
    pub output_bytes: usize,
    /// The largest plugin log kept per call, in bytes.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // ~100x what a keyword scan of a 1 KB ticket burns; a few ms of
            // compute at most.
            fuel: 100_000_000,
            memory_bytes: 64 << 20,
            timeout: Duration::from_millis(100),
            output_bytes: 1 << 20,
            log_bytes: 16 << 10,
        }
    }
}

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

/// Why a component cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a component at all.
    #[error("{plugin}: {reason}")]
    Malformed {
        /// The plugin.
        plugin: PluginId,
        /// What is wrong with the bytes.
        reason: String,
    },
    /// Too big.
    #[error("{plugin}: component is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The plugin.
        plugin: PluginId,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// It does not compile.
    #[error("{plugin}: component does not compile: {source:#}")]
    Compile {
        /// The plugin.
        plugin: PluginId,
        /// wasmtime's error.
        source: anyhow::Error,
    },
    /// It imports what we do not grant.
    #[error(
        "{plugin}: imports {}, which Escalator does not grant (plugins get no sockets, HTTP, files or environment; see `escalator plugin inspect`)",
        imports.join(", ")
    )]
    UngrantedImport {
        /// The plugin.
        plugin: PluginId,
        /// The imports refused.
        imports: Vec<String>,
    },
    /// It implements another world than its manifest says.
    #[error("{plugin}: manifest says kind = \"{expected}\", but the component {}", match found {
        Some(k) => format!("implements the {k} world (it exports `{}`)", k.export()),
        None => format!("exports none of `evaluate`, `route`, `plan` (it exports: {})", exports.join(", ")),
    })]
    WrongWorld {
        /// The plugin.
        plugin: PluginId,
        /// The kind the manifest names.
        expected: Kind,
        /// The world the component implements, if any.
        found: Option<Kind>,
        /// What it exports.
        exports: Vec<String>,
    },
    /// It names the right world but its types do not match this host's
    /// contract (built against another version?).
    #[error("{plugin}: does not match the {kind} world of escalator:plugin@0.1.0: {source:#}")]
    Incompatible {
        /// The plugin.
        plugin: PluginId,
        /// The world.
        kind: Kind,
        /// wasmtime's type-check error.
        source: anyhow::Error,
    },
}

/// Why one call failed. Every variant names the plugin and version.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// It used up its fuel.
    #[error("{plugin} ran out of fuel (limit {limit})")]
    OutOfFuel {
        /// The plugin.
        plugin: PluginId,
        /// The fuel limit.
        limit: u64,
    },
    /// It tried to grow its memory past the limit.
    #[error("{plugin} hit its memory limit of {limit} bytes (it asked for {requested})")]
    MemoryLimit {
        /// The plugin.
        plugin: PluginId,
        /// The limit.
        limit: usize,
        /// What it asked for.
        requested: usize,
    },
    /// It ran past its wall-clock deadline.
    #[error("{plugin} ran past its deadline of {timeout:?}")]
    Deadline {
        /// The plugin.
        plugin: PluginId,
        /// The deadline.
        timeout: Duration,
    },
    /// It recursed too deep.
    #[error("{plugin} overflowed its stack\n{backtrace}")]
    StackOverflow {
        /// The plugin.
        plugin: PluginId,
        /// The guest backtrace.
        backtrace: String,
    },
    /// It trapped (a panic, `unreachable`, out-of-bounds access, ...).
    #[error("{plugin} trapped: {trap}{}\n{backtrace}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Trap {
        /// The plugin.
        plugin: PluginId,
        /// The trap, e.g. `wasm \`unreachable\` instruction executed`.
        trap: String,
        /// The panic message, when the guest logged one.
        message: Option<String>,
        /// The guest backtrace.
        backtrace: String,
    },
    /// Its output is over the size limit.
    #[error("{plugin} returned {size} bytes of output, over the limit of {limit}")]
    OutputTooLarge {
        /// The plugin.
        plugin: PluginId,
        /// The output's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Its output makes no sense (empty keys, invalid values).
    #[error("{plugin} returned invalid output: {reason}")]
    InvalidOutput {
        /// The plugin.
        plugin: PluginId,
        /// What is wrong.
        reason: String,
    },
    /// It returned `err(...)`: a clean refusal.
    #[error("{plugin} returned an error: {message}")]
    Refused {
        /// The plugin.
        plugin: PluginId,
        /// Its message.
        message: String,
    },
    /// The host could not instantiate it (e.g. all instance slots busy).
    #[error("{plugin} could not be instantiated: {source:#}")]
    Instantiate {
        /// The plugin.
        plugin: PluginId,
        /// wasmtime's error.
        source: anyhow::Error,
    },
}

impl PluginError {
    /// A short stable name for metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::OutOfFuel { .. } => "out-of-fuel",
            PluginError::MemoryLimit { .. } => "memory-limit",
            PluginError::Deadline { .. } => "deadline",
            PluginError::StackOverflow { .. } => "stack-overflow",
            PluginError::Trap { .. } => "trap",
            PluginError::OutputTooLarge { .. } => "output-too-large",
            PluginError::InvalidOutput { .. } => "invalid-output",
            PluginError::Refused { .. } => "refused",
            PluginError::Instantiate { .. } => "instantiate",
        }
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
    pre: Pre,
    digest: String,
    size: usize,
    origin: Origin,
    inspection: Inspection,
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
    /// Whether it came from the artifact cache or was compiled.
    pub fn origin(&self) -> Origin {
        self.origin
    }
    /// What it imports and exports.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }
}

/// What a call cost, whether it succeeded or not.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallReport {
    /// Fuel burnt (instantiation included).
    pub fuel_used: u64,
    /// The most linear memory the instance had at once, in bytes.
    pub peak_memory_bytes: usize,
    /// Wall-clock time of instantiation plus the call.
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

/// Advances the engine's epoch every tick; stops by itself when the engine
/// is dropped (it holds only a weak reference).
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("escalator-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .map(drop)
}

/// The plugin runtime. Share it (`Arc<Runtime>`); all methods take `&self`.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<ArtifactCache>,
    config: RuntimeConfig,
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
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| e.context("creating the wasmtime engine"))?;
        let linker =
            sandbox::linker(&engine).map_err(|e| e.context("linking the host interfaces"))?;
        spawn_epoch_ticker(&engine, config.epoch_tick).context("starting the epoch ticker")?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| ArtifactCache::new(dir, &engine));
        Ok(Runtime {
            engine,
            linker,
            cache,
            config,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile (or fetch from the cache) a component without checking it
    /// against a manifest: for `escalator plugin inspect`.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<(Component, Origin)> {
        check_header(wasm).map_err(anyhow::Error::msg)?;
        self.compile_unchecked(wasm, &cache::wasm_digest(wasm))
    }

    fn compile_unchecked(&self, wasm: &[u8], digest: &str) -> anyhow::Result<(Component, Origin)> {
        let compiled = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm, digest),
            None => Component::new(&self.engine, wasm).map(|c| (c, Origin::Compiled)),
        };
        Ok(compiled?)
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
        let digest = cache::wasm_digest(wasm);
        let (component, origin) = match self.compile_unchecked(wasm, &digest) {
            Ok(c) => c,
            Err(source) => return Err(LoadError::Compile { plugin: id, source }),
        };
        let inspection = inspect::inspect(&self.engine, &component);
        let ungranted: Vec<String> = inspection.ungranted().map(String::from).collect();
        if !ungranted.is_empty() {
            return Err(LoadError::UngrantedImport {
                plugin: id,
                imports: ungranted,
            });
        }
        if inspection.world != Some(kind) {
            return Err(LoadError::WrongWorld {
                plugin: id,
                expected: kind,
                found: inspection.world,
                exports: inspection.exports.clone(),
            });
        }
        let incompatible = |plugin: PluginId, e: wasmtime::Error| LoadError::Incompatible {
            plugin,
            kind,
            source: e.into(),
        };
        let pre = match self.linker.instantiate_pre(&component) {
            Ok(pre) => pre,
            Err(e) => return Err(incompatible(id, e)),
        };
        let pre = match kind {
            Kind::Trigger => wit::trigger::TriggerPre::new(pre).map(Pre::Trigger),
            Kind::Router => wit::router::RouterPre::new(pre).map(Pre::Router),
            Kind::Notifier => wit::notifier::NotifierPre::new(pre).map(Pre::Notifier),
        };
        let pre = match pre {
            Ok(pre) => pre,
            Err(e) => return Err(incompatible(id, e)),
        };
        Ok(Plugin {
            id,
            kind,
            limits,
            pre,
            digest,
            size: wasm.len(),
            origin,
            inspection,
        })
    }

    /// Run a trigger on a ticket.
    pub fn evaluate(
        &self,
        plugin: &Plugin,
        ticket: &wit::Ticket,
        ctx: &wit::Context,
    ) -> Outcome<wit::Evaluation> {
        let Pre::Trigger(pre) = &plugin.pre else {
            return wrong_kind(plugin, Kind::Trigger);
        };
        self.call(plugin, ctx.now, seed(&ticket.id, ctx.now), |store| {
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_evaluate(store, ticket, ctx)
                .map_err(CallError::Run)
        })
    }

    /// Run a router.
    pub fn route(
        &self,
        plugin: &Plugin,
        ticket: &wit::Ticket,
        escalation: &wit::Escalation,
        roster: &[wit::Agent],
        ctx: &wit::Context,
    ) -> Outcome<wit::Routing> {
        let Pre::Router(pre) = &plugin.pre else {
            return wrong_kind(plugin, Kind::Router);
        };
        self.call(plugin, ctx.now, seed(&ticket.id, ctx.now), |store| {
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_route(store, ticket, escalation, roster, ctx)
                .map_err(CallError::Run)
        })
    }

    /// Run a notifier.
    pub fn plan(
        &self,
        plugin: &Plugin,
        ticket: &wit::Ticket,
        escalation: &wit::Escalation,
        routing: &wit::Routing,
        roster: &[wit::Agent],
        ctx: &wit::Context,
    ) -> Outcome<wit::NotificationPlan> {
        let Pre::Notifier(pre) = &plugin.pre else {
            return wrong_kind(plugin, Kind::Notifier);
        };
        self.call(plugin, ctx.now, seed(&ticket.id, ctx.now), |store| {
            pre.instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_plan(store, ticket, escalation, routing, roster, ctx)
                .map_err(CallError::Run)
        })
    }

    /// One call in a fresh store: set the limits, run `f`, account, classify.
    fn call<T: output::Output>(
        &self,
        plugin: &Plugin,
        now: i64,
        seed: u64,
        f: impl FnOnce(&mut Store<CallState>) -> Result<Result<T, String>, CallError>,
    ) -> Outcome<T> {
        let limits = plugin.limits;
        let start = Instant::now();
        let state = CallState::new(now, seed, limits.memory_bytes, limits.log_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = limits
            .timeout
            .as_nanos()
            .div_ceil(self.config.epoch_tick.as_nanos().max(1));
        // +1: the current tick may be about to end.
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1));
        store.epoch_deadline_trap();
        let raw = match store.set_fuel(limits.fuel) {
            Ok(()) => f(&mut store),
            Err(e) => Err(CallError::Instantiate(e)),
        };
        let duration = start.elapsed();
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let id = || plugin.id.clone();
        let result = match raw {
            Ok(Ok(output)) => {
                let size = output.size();
                if size > limits.output_bytes {
                    Err(PluginError::OutputTooLarge {
                        plugin: id(),
                        size,
                        limit: limits.output_bytes,
                    })
                } else {
                    output.validate().map(|()| output).map_err(|reason| {
                        PluginError::InvalidOutput {
                            plugin: id(),
                            reason,
                        }
                    })
                }
            }
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
        let state = store.into_data();
        let (log, log_dropped_bytes) = state.log.finish();
        Outcome {
            result,
            report: CallReport {
                fuel_used,
                peak_memory_bytes: state.limiter.peak,
                duration,
                log,
                log_dropped_bytes,
            },
        }
    }
}

/// For benchmarks only: one instance reused across calls, to measure the
/// cost of a call apart from instantiation. Production never reuses an
/// instance (state would leak between tickets).
#[doc(hidden)]
pub struct ReusedTrigger {
    store: Store<CallState>,
    trigger: wit::trigger::Trigger,
    fuel: u64,
    ticks: u64,
}

impl Runtime {
    /// Instantiate `plugin` once for [`ReusedTrigger::evaluate`].
    #[doc(hidden)]
    pub fn reused_trigger(&self, plugin: &Plugin) -> anyhow::Result<ReusedTrigger> {
        let Pre::Trigger(pre) = &plugin.pre else {
            anyhow::bail!("{} is not a trigger", plugin.id)
        };
        let l = plugin.limits;
        let mut store = Store::new(
            &self.engine,
            CallState::new(0, 0, l.memory_bytes, l.log_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(l.fuel)?;
        let ticks = u64::try_from(
            l.timeout
                .as_nanos()
                .div_ceil(self.config.epoch_tick.as_nanos().max(1)),
        )
        .unwrap_or(u64::MAX);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let trigger = pre.instantiate(&mut store)?;
        Ok(ReusedTrigger {
            store,
            trigger,
            fuel: l.fuel,
            ticks,
        })
    }
}

impl ReusedTrigger {
    /// Call `evaluate` on the live instance, resetting fuel and deadline
    /// first (both belong to the store and are not reset per call).
    pub fn evaluate(
        &mut self,
        ticket: &wit::Ticket,
        ctx: &wit::Context,
    ) -> anyhow::Result<wit::Evaluation> {
        self.store.set_fuel(self.fuel)?;
        self.store.set_epoch_deadline(self.ticks);
        self.trigger
            .call_evaluate(&mut self.store, ticket, ctx)?
            .map_err(anyhow::Error::msg)
    }
}

/// Which half of a call failed.
enum CallError {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
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

/// Turn a failed call into its typed error. Traps are matched by type.
fn classify(e: wasmtime::Error, store: &Store<CallState>, plugin: &Plugin) -> PluginError {
    let id = plugin.id.clone();
    let limits = plugin.limits;
    let backtrace = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|b| b.to_string())
        .unwrap_or_default();
    // A denied grow makes the guest's allocator abort: report the cause.
    if let Some(requested) = store.data().limiter.denied {
        return PluginError::MemoryLimit {
            plugin: id,
            limit: limits.memory_bytes,
            requested,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
            plugin: id,
            limit: limits.fuel,
        },
        Some(Trap::Interrupt) => PluginError::Deadline {
            plugin: id,
            timeout: limits.timeout,
        },
        Some(Trap::StackOverflow) => PluginError::StackOverflow {
            plugin: id,
            backtrace,
        },
        Some(trap) => PluginError::Trap {
            plugin: id,
            trap: trap.to_string(),
            message: store.data().log.last_error(),
            backtrace,
        },
        // Not a trap: the output could not be lifted (invalid UTF-8, bad
        // discriminant, out-of-bounds pointers), i.e. garbage.
        None => PluginError::InvalidOutput {
            plugin: id,
            reason: format!("{e:#}"),
        },
    }
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

/// Output size and sanity checks, per output type.
mod output {
    use super::wit;

    /// What the runtime checks of a plugin's output.
    pub trait Output {
        /// Bytes of text (and a few bytes per item) it carries.
        fn size(&self) -> usize;
        /// Whether it makes sense; the error says what does not.
        fn validate(&self) -> Result<(), String>;
    }

    fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> usize {
        items.into_iter().map(|s| s.len() + 8).sum()
    }

    fn target_size(t: &wit::Target) -> usize {
        match t {
            wit::Target::Agent(s) | wit::Target::Queue(s) => s.len() + 8,
        }
    }

    fn check_target(t: &wit::Target, what: &str) -> Result<(), String> {
        match t {
            wit::Target::Agent(s) | wit::Target::Queue(s) if s.trim().is_empty() => {
                Err(format!("{what} names no one"))
            }
            _ => Ok(()),
        }
    }

    impl Output for wit::Evaluation {
        fn size(&self) -> usize {
            self.signals
                .iter()
                .map(|s| {
                    32 + s.key.len()
                        + s.reason.len()
                        + strings(&s.evidence)
                        + strings(s.target_skill.iter().chain(&s.target_queue))
                })
                .sum()
        }
        fn validate(&self) -> Result<(), String> {
            for (i, s) in self.signals.iter().enumerate() {
                if s.key.trim().is_empty() {
                    return Err(format!("signal {i} has an empty key"));
                }
                if s.reason.trim().is_empty() {
                    return Err(format!("signal {i} ({}) has an empty reason", s.key));
                }
            }
            Ok(())
        }
    }

    impl Output for wit::Routing {
        fn size(&self) -> usize {
            target_size(&self.target)
                + self.reason.len()
                + self
                    .fallback
                    .iter()
                    .map(|f| 16 + target_size(&f.target) + f.reason.len())
                    .sum::<usize>()
        }
        fn validate(&self) -> Result<(), String> {
            check_target(&self.target, "the routing target")?;
            for (i, f) in self.fallback.iter().enumerate() {
                check_target(&f.target, &format!("fallback step {i}"))?;
            }
            Ok(())
        }
    }

    impl Output for wit::NotificationPlan {
        fn size(&self) -> usize {
            self.customer_message.as_ref().map_or(0, String::len)
                + self
                    .steps
                    .iter()
                    .map(|s| {
                        let r = match &s.recipient {
                            wit::Recipient::Agent(x)
                            | wit::Recipient::Team(x)
                            | wit::Recipient::Endpoint(x) => x.len(),
                        };
                        32 + r + s.title.len() + s.body.len()
                    })
                    .sum::<usize>()
        }
        fn validate(&self) -> Result<(), String> {
            for (i, s) in self.steps.iter().enumerate() {
                let r = match &s.recipient {
                    wit::Recipient::Agent(x)
                    | wit::Recipient::Team(x)
                    | wit::Recipient::Endpoint(x) => x,
                };
                if r.trim().is_empty() {
                    return Err(format!("notification step {i} has no recipient"));
                }
                if s.title.trim().is_empty() && s.body.trim().is_empty() {
                    return Err(format!("notification step {i} has neither title nor body"));
                }
            }
            Ok(())
        }
    }
}
