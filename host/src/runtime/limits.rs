//! A plugin's limits: fuel, memory, time, output, log; from its manifest
//! within the operator's caps.

use super::*;

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

impl Limits {
    /// The default ceiling on what a manifest may ask for: enough for the
    /// Python and JavaScript runtimes (256 MiB, 10 s), far below what would
    /// let one plugin crowd out a server.
    pub fn ceiling() -> Limits {
        Limits {
            fuel: 100_000_000_000,
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(10),
            output_bytes: 16 << 20,
            log_bytes: 1 << 20,
        }
    }

    /// The first limit over `ceiling`, as `(key, asked, allowed)`.
    pub fn over(&self, ceiling: &Limits) -> Option<(&'static str, String, String)> {
        let checks = [
            (
                "fuel",
                self.fuel > ceiling.fuel,
                self.fuel.to_string(),
                ceiling.fuel.to_string(),
            ),
            (
                "memory-mib",
                self.memory_bytes > ceiling.memory_bytes,
                (self.memory_bytes >> 20).to_string(),
                (ceiling.memory_bytes >> 20).to_string(),
            ),
            (
                "timeout-ms",
                self.timeout > ceiling.timeout,
                self.timeout.as_millis().to_string(),
                ceiling.timeout.as_millis().to_string(),
            ),
            (
                "output-bytes",
                self.output_bytes > ceiling.output_bytes,
                self.output_bytes.to_string(),
                ceiling.output_bytes.to_string(),
            ),
            (
                "log-bytes",
                self.log_bytes > ceiling.log_bytes,
                self.log_bytes.to_string(),
                ceiling.log_bytes.to_string(),
            ),
        ];
        checks
            .into_iter()
            .find(|c| c.1)
            .map(|(key, _, asked, allowed)| (key, asked, allowed))
    }
}
