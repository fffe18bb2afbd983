//! Virtual clocks: wall and monotonic time read the evaluation's `now`,
//! sleeps advance virtual time, and randomness is seeded per evaluation.

use super::*;

/// Virtual time of one call, in nanoseconds since the Unix epoch: the
/// evaluation's `now` plus whatever the guest slept. Clones share it.
#[derive(Clone, Debug)]
pub struct VirtualTime {
    pub(super) base_ns: u64,
    pub(super) slept_ns: Arc<AtomicU64>,
}

impl VirtualTime {
    /// Time that starts at `now_ms`.
    pub fn at(now_ms: i64) -> VirtualTime {
        let base_ns = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000_000);
        VirtualTime {
            base_ns,
            slept_ns: Arc::default(),
        }
    }

    /// Now, in nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.base_ns
            .saturating_add(self.slept_ns.load(Ordering::Relaxed))
    }

    /// How long the guest has slept, in virtual nanoseconds.
    pub fn slept_ns(&self) -> u64 {
        self.slept_ns.load(Ordering::Relaxed)
    }

    /// Move time forward to `at_ns` (never back).
    pub(super) fn advance_to(&self, at_ns: u64) {
        let slept = at_ns.saturating_sub(self.base_ns);
        self.slept_ns.fetch_max(slept, Ordering::Relaxed);
    }
}

/// The wall clock: virtual time.
pub(super) struct VirtualWallClock(pub(super) VirtualTime);

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.now_ns())
    }
}

/// The monotonic clock for anything inside wasmtime-wasi that reads it:
/// virtual time too.
pub(super) struct VirtualMonotonicClock(pub(super) VirtualTime);

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.now_ns()
    }
}

/// `wasi:clocks/monotonic-clock` on virtual time.
pub(super) struct VirtualMonotonic;

impl HasData for VirtualMonotonic {
    type Data<'a> = MonotonicView<'a>;
}

/// What the monotonic clock's host functions see of the call.
pub(super) struct MonotonicView<'a> {
    pub(super) time: &'a VirtualTime,
    pub(super) table: &'a mut ResourceTable,
}

/// A pollable that is ready at once and, when polled, moves virtual time
/// to its deadline: sleeping costs the guest nothing and the host no
/// thread.
pub(super) struct VirtualDeadline {
    pub(super) time: VirtualTime,
    pub(super) at_ns: u64,
}

#[wasmtime_wasi::async_trait]
impl Pollable for VirtualDeadline {
    async fn ready(&mut self) {
        self.time.advance_to(self.at_ns);
    }
}

impl MonotonicView<'_> {
    pub(super) fn deadline(&mut self, at_ns: u64) -> Result<Resource<DynPollable>> {
        let deadline = self.table.push(VirtualDeadline {
            time: self.time.clone(),
            at_ns,
        })?;
        wasmtime_wasi_io::poll::subscribe(self.table, deadline)
    }
}

impl monotonic_clock::Host for MonotonicView<'_> {
    fn now(&mut self) -> Result<monotonic_clock::Instant> {
        Ok(self.time.now_ns())
    }

    fn resolution(&mut self) -> Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> Result<Resource<DynPollable>> {
        self.deadline(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> Result<Resource<DynPollable>> {
        let at = self.time.now_ns().saturating_add(duration);
        self.deadline(at)
    }
}

/// `n` pseudo-random bytes from `seed` (SplitMix64): cheap, and the same
/// seed gives the same bytes.
pub(super) fn seeded_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}
