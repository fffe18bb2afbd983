//! The wasmtime engine: its settings, each with its reason, and the epoch
//! ticker that drives call deadlines.

use std::path::PathBuf;
use std::time::Duration;
use wasmtime::Engine;

/// Settings of the runtime as a whole (not of one plugin).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The bytes of compiled functions kept in memory for reuse by later
    /// compiles (see [`super::functions`]); 0 turns the function cache off.
    /// With a `cache_dir`, they are also kept on disk under `functions/`.
    pub function_cache_bytes: usize,
    /// The most compiled code (bytes of compiled images) kept in memory;
    /// beyond it the least recently used is dropped and loaded again from
    /// the artifact cache when next called. 0 (the default) keeps every
    /// loaded plugin's code; needs a `cache_dir`.
    pub resident_code_bytes: usize,
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
    /// How plugin execution is shared between tenants.
    pub shares: super::shares::SharesConfig,
    /// The most a manifest may ask for; a plugin asking for more is refused
    /// at load.
    pub ceiling: super::Limits,
    /// Call the vendor's default triggers together in one instance of the
    /// trigger set ([`super::TriggerSet`]); off, each in its own (for
    /// benchmarks comparing the two).
    pub trigger_set: bool,
    /// Parse a plugin's configuration once per version, into the memory
    /// image its instances start from, when the component can
    /// ([`super::preinit`]); off, every call parses it (for benchmarks and
    /// tests comparing the two).
    pub configure_ahead: bool,
    /// The most configurations of one component parsed ahead, each a
    /// compiled component of its own: plugins configured some other way
    /// share the component's own code (and parse theirs per call), so
    /// many tenants configuring one default plugin apart do not each cost
    /// a compiled copy.
    pub configured_variants: usize,
    /// Run a call on the caller's own thread when nothing in it can block
    /// (see [`super::batch`]); off, every call is handed to a call thread
    /// (for benchmarks and tests comparing the two).
    pub inline_calls: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            // A Python plugin's CPython is about 20 MiB of compiled
            // functions; room for it, SpiderMonkey and the Rust plugins.
            function_cache_bytes: 64 << 20,
            resident_code_bytes: 0,
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
            shares: super::shares::SharesConfig::default(),
            ceiling: super::Limits::ceiling(),
            trigger_set: true,
            configure_ahead: true,
            configured_variants: 16,
            inline_calls: true,
        }
    }
}

/// The most stack a plugin's wasm code may use: deep recursion traps
/// there, long before the host thread's stack is at risk.
pub(super) const MAX_WASM_STACK: usize = 1 << 20;

/// The wasmtime settings, each with its reason.
pub(super) fn engine_config(
    rc: &RuntimeConfig,
    functions: Option<&std::sync::Arc<super::functions::FunctionCache>>,
) -> wasmtime::Config {
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
    c.max_wasm_stack(MAX_WASM_STACK);
    // Optimised code: plugins run on every event.
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c.parallel_compilation(true);
    // Functions already compiled for another component (the same language
    // runtime, the same std) are reused instead of compiled again.
    if let Some(cache) = functions
        && let Err(e) = c.enable_incremental_compilation(cache.clone())
    {
        tracing::warn!(error = %e, "compiling without the function cache");
    }
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

/// Advances the engine's epoch every tick; stops by itself when the engine
/// is dropped (it holds only a weak reference).
pub(super) fn spawn_epoch_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
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
