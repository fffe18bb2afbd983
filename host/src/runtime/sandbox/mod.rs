//! What a plugin instance can reach: the store state of one call.
//!
//! - `escalator:plugin/host`: a capped log.
//! - The WASI p2 subset that language runtimes need and nothing more:
//!   virtual clocks (wall and monotonic read the evaluation's `now` plus
//!   whatever the guest slept; a pollable for a duration or an instant is
//!   ready at once and moves virtual time to its deadline, so a guest that
//!   sleeps costs nothing, and a replay sees the same times), randomness
//!   seeded per evaluation,
//!   stdout/stderr captured into the same capped log, an empty environment,
//!   no arguments, no preopened directories, no stdin. Sockets and HTTP are
//!   not linked at all, and components importing them are refused at load.
//! - A memory limiter that records the peak and whether a grow was denied.

mod log;
mod virtual_time;

pub use log::*;
pub use virtual_time::*;

use super::wit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use wasmtime::component::{HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Interfaces a plugin may import, by name without the version. Anything
/// else (HTTP, a key-value store, ...) is refused at load. Sockets are
/// linked but powerless.
pub const GRANTED_IMPORTS: &[&str] = &[
    "escalator:plugin/types",
    "escalator:plugin/host",
    // What the vendor's trigger set tells the host between its triggers
    // (a mark of fuel, time and log; nothing else).
    "escalator:plugin/trigger-set-host",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    // Linked so that runtimes that import them (Python, JavaScript) load;
    // every call is denied: no TCP, no UDP, no name lookup.
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Whether an import name (e.g. `wasi:io/streams@0.2.6`) is granted.
pub fn is_granted(import: &str) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    GRANTED_IMPORTS.contains(&unversioned)
}

/// Whether an import is WASI (as opposed to our own contract).
pub fn is_wasi(import: &str) -> bool {
    import.starts_with("wasi:")
}

/// The linker for one WIT version: our `host` interface plus the granted WASI
/// subset, all synchronous.
pub fn linker(engine: &wasmtime::Engine) -> Result<Linker<CallState>> {
    let mut l = Linker::<CallState>::new(engine);
    wit::v0_1_0::trigger::Trigger::add_to_linker::<CallState, HasSelf<CallState>>(&mut l, |s| s)?;

    l.instance("escalator:plugin/trigger-set-host@0.1.0")?
        .func_wrap("begin", |store, (index,): (u32,)| {
            mark(store, index);
            Ok(())
        })?;

    type T = CallState;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(&mut l, T::clocks)?;
    // Our own monotonic clock, not wasmtime-wasi's: its pollables sleep in
    // real time (on the host thread, where epochs cannot interrupt them).
    clocks::monotonic_clock::add_to_linker::<T, VirtualMonotonic>(&mut l, |t| MonotonicView {
        time: &t.time,
        table: &mut t.table,
    })?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(&mut l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(&mut l, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(&mut l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(&mut l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(&mut l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(&mut l, T::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasSelf<ResourceTable>>(
        &mut l,
        |t| &mut t.table,
    )?;
    sync::io::poll::add_to_linker::<T, HasSelf<ResourceTable>>(&mut l, |t| &mut t.table)?;
    sync::io::streams::add_to_linker::<T, HasSelf<ResourceTable>>(&mut l, |t| &mut t.table)?;
    // Sockets: present, denied (see `build_wasi`).
    let network = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<T, WasiSockets>(&mut l, &network, T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    sync::sockets::tcp::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    sync::sockets::udp::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    sync::sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(&mut l, T::sockets)?;
    Ok(l)
}

/// The memory limiter of one call.
pub struct Limiter {
    /// The cap on all linear memories of the instance together, in bytes.
    max_bytes: usize,
    /// Bytes currently allocated.
    current: usize,
    /// The most allocated at once.
    pub peak: usize,
    /// Set when a grow was refused: how much was asked for.
    pub denied: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        let total = self.current - current.min(self.current) + desired;
        if total > self.max_bytes {
            self.denied = Some(total);
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The state of one call's store.
pub struct CallState {
    /// Built on the guest's first WASI call: plugins that import no WASI
    /// (the SDK's default) never pay for it.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    /// The call's virtual time (wall and monotonic clocks).
    pub time: VirtualTime,
    seed: u64,
    /// The memory limiter.
    pub limiter: Limiter,
    /// The capped log.
    pub log: LogSink,
    /// Where the vendor's trigger set began each of its triggers.
    pub marks: Vec<Mark>,
    /// In a trigger set's call, each trigger's own log cap, in order.
    pub member_log_caps: Vec<usize>,
}

/// Where a call stood when the trigger set began one of its triggers.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// When.
    pub at: std::time::Instant,
    /// The fuel left.
    pub fuel_left: u64,
    /// The log lines written so far.
    pub log_lines: usize,
    /// The log bytes dropped over a cap so far.
    pub log_dropped: usize,
}

/// The most marks a call keeps: a trigger set of more triggers than this
/// is a host fault, which the host answers by calling them one by one.
pub const MAX_MARKS: usize = 64;

impl Mark {
    /// Where a call with `fuel_left` and `state` stands now.
    pub fn now(fuel_left: u64, state: &CallState) -> Mark {
        let (log_lines, log_dropped) = state.log.written();
        Mark {
            at: std::time::Instant::now(),
            fuel_left,
            log_lines,
            log_dropped,
        }
    }
}

/// `trigger-set-host.begin(index)`: a mark, if it is the next one in
/// order and within [`MAX_MARKS`] (otherwise the set's answer does not
/// split into its triggers', and the host calls them one by one); from
/// there the log holds the trigger to its own cap.
fn mark(mut store: wasmtime::StoreContextMut<'_, CallState>, index: u32) {
    let state = store.data();
    let Some(i) = usize::try_from(index)
        .ok()
        .filter(|i| *i == state.marks.len() && *i < MAX_MARKS)
    else {
        return;
    };
    if let Some(cap) = state.member_log_caps.get(i) {
        state.log.begin_segment(*cap);
    }
    let m = Mark::now(store.get_fuel().unwrap_or(0), store.data());
    store.data_mut().marks.push(m);
}

impl CallState {
    /// State for a call at `now_ms` with randomness from `seed`.
    pub fn new(now_ms: i64, seed: u64, memory_bytes: usize, log_bytes: usize) -> CallState {
        CallState {
            wasi: None,
            table: ResourceTable::new(),
            time: VirtualTime::at(now_ms),
            seed,
            limiter: Limiter {
                max_bytes: memory_bytes,
                current: 0,
                peak: 0,
                denied: None,
            },
            log: LogSink::new(log_bytes),
            marks: Vec::new(),
            member_log_caps: Vec::new(),
        }
    }
}

/// The sandbox's WASI context: virtual clocks, seeded randomness, captured
/// stdio, and nothing else.
fn build_wasi(time: &VirtualTime, seed: u64, log: &LogSink) -> WasiCtx {
    let mut b = WasiCtx::builder();
    b.stdout(CapturedStream {
        sink: log.clone(),
        source: LogSource::Stdout,
    })
    .stderr(CapturedStream {
        sink: log.clone(),
        source: LogSource::Stderr,
    })
    .wall_clock(VirtualWallClock(time.clone()))
    .monotonic_clock(VirtualMonotonicClock(time.clone()))
    .secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(seed, 256)))
    .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(!seed, 256)))
    .insecure_random_seed(u128::from(seed) << 64 | u128::from(!seed))
    .allow_tcp(false)
    .allow_udp(false)
    .allow_ip_name_lookup(false)
    .socket_addr_check(|_, _| Box::pin(async { false }));
    b.build()
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (time, seed, log) = (&self.time, self.seed, &self.log);
        let wasi = self.wasi.get_or_insert_with(|| build_wasi(time, seed, log));
        WasiCtxView {
            ctx: wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for CallState {
    fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => "trace",
            wit::LogLevel::Debug => "debug",
            wit::LogLevel::Info => "info",
            wit::LogLevel::Warn => "warn",
            wit::LogLevel::Error => "error",
        };
        self.log.push(LogSource::Plugin, level, message);
    }

    fn utc_offset(&mut self, time_zone: String, at: i64) -> Option<i32> {
        utc_offset(&time_zone, at)
    }
}

/// The offset of IANA zone `zone` from UTC at `at_ms`, in minutes (the
/// `host.utc-offset` import). Unknown zones and out-of-range instants give
/// `None`.
pub fn utc_offset(zone: &str, at_ms: i64) -> Option<i32> {
    use chrono::{Offset, TimeZone};
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(at_ms)?;
    Some(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
            / 60,
    )
}

impl wit::trigger::escalator::plugin::types::Host for CallState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_follow_daylight_saving_time() {
        // 2026-01-15 and 2026-07-15, noon UTC.
        let (winter, summer) = (1_768_478_400_000, 1_784_116_800_000);
        assert_eq!(utc_offset("Europe/Berlin", winter), Some(60));
        assert_eq!(utc_offset("Europe/Berlin", summer), Some(120));
        assert_eq!(utc_offset("America/New_York", summer), Some(-240));
        assert_eq!(utc_offset("Asia/Kolkata", summer), Some(330));
        assert_eq!(utc_offset("UTC", summer), Some(0));
        assert_eq!(utc_offset("Mars/Olympus_Mons", summer), None);
        assert_eq!(utc_offset("Europe/Berlin", i64::MAX), None);
    }

    #[test]
    fn the_log_keeps_lines_up_to_the_cap_and_counts_the_rest() {
        let sink = LogSink::new(10);
        sink.push(LogSource::Plugin, "info", "hello".into());
        sink.push(LogSource::Plugin, "info", "world, again".into());
        sink.push(LogSource::Plugin, "info", "dropped".into());
        let (lines, dropped) = sink.finish();
        let texts: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["hello", "world"]);
        assert_eq!(dropped, ", again".len() + "dropped".len());
    }

    #[test]
    fn stream_bytes_become_lines_and_the_tail_is_flushed() {
        let sink = LogSink::new(1000);
        sink.with(|b| b.write_stream(LogSource::Stdout, b"one\ntw"));
        sink.with(|b| b.write_stream(LogSource::Stdout, b"o\nthree"));
        let (lines, _) = sink.finish();
        let texts: Vec<_> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
    }

    #[test]
    fn virtual_time_moves_only_forward_and_only_when_slept() {
        let t = VirtualTime::at(1_000);
        assert_eq!(t.now_ns(), 1_000_000_000);
        t.advance_to(1_500_000_000);
        assert_eq!(t.slept_ns(), 500_000_000);
        t.advance_to(1_200_000_000);
        assert_eq!(t.now_ns(), 1_500_000_000, "never back");
        t.advance_to(u64::MAX);
        assert_eq!(t.now_ns(), u64::MAX, "saturates");
        assert_eq!(VirtualTime::at(-5).now_ns(), 0);
    }

    #[test]
    fn seeded_bytes_are_stable_and_differ_by_seed() {
        assert_eq!(seeded_bytes(7, 40), seeded_bytes(7, 40));
        assert_ne!(seeded_bytes(7, 40), seeded_bytes(8, 40));
    }

    #[test]
    fn only_the_granted_interfaces_pass() {
        assert!(is_granted("wasi:io/streams@0.2.6"));
        assert!(is_granted("escalator:plugin/host@0.1.0"));
        assert!(
            is_granted("wasi:sockets/tcp@0.2.6"),
            "linked, every call denied"
        );
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.6"));
    }

    #[test]
    fn the_limiter_caps_all_memories_together_and_tracks_the_peak() {
        let mut l = Limiter {
            max_bytes: 100,
            current: 0,
            peak: 0,
            denied: None,
        };
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(!l.memory_growing(0, 60, None).unwrap());
        assert_eq!(l.denied, Some(120));
        assert!(l.memory_growing(60, 90, None).unwrap());
        assert_eq!(l.peak, 90);
    }
}
