//! Every way loading or calling a plugin can fail, as types.

use super::inspect::Kind;
use super::sandbox::CallState;
use super::{Plugin, PluginId};
use std::time::Duration;
use wasmtime::{Store, Trap};

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
    /// Its manifest asks for more than this server allows.
    #[error("{plugin}: limits.{key} = {asked} is over this server's ceiling of {allowed}")]
    OverCeiling {
        /// The plugin.
        plugin: PluginId,
        /// The manifest key.
        key: &'static str,
        /// What it asked for.
        asked: String,
        /// The most allowed.
        allowed: String,
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
        "{plugin}: imports {}, which Escalator does not grant (plugins get no HTTP, files, environment or network; see `escalator plugin inspect`)",
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
    /// Its tenant's share of plugin calls, or the process's plugin-memory
    /// budget, stayed full for longer than a call may wait: the call never
    /// ran. Not the plugin's fault; the crash-loop guard does not count it.
    #[error("{plugin} did not run: {reason}")]
    Overloaded {
        /// The plugin.
        plugin: PluginId,
        /// Which share was full, and for how long it waited.
        reason: String,
    },
    /// The host failed while running it (a bug in the host, never the
    /// plugin's doing); the call's thread was thrown away.
    #[error("{plugin}: the host failed during the call: {message}")]
    HostFault {
        /// The plugin.
        plugin: PluginId,
        /// What the host said.
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

/// What kind of failure a plugin call was: stable names (`out-of-fuel`,
/// `trap`, ...) for metrics, the audit log and fixtures' `expect_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Ran out of fuel.
    OutOfFuel,
    /// Asked for more memory than its limit.
    MemoryLimit,
    /// Ran past its wall-clock deadline.
    Deadline,
    /// Recursed too deep.
    StackOverflow,
    /// Trapped (a panic, `unreachable`, a bad access).
    Trap,
    /// Wrote more output than its limit.
    OutputTooLarge,
    /// Returned output the host does not accept.
    InvalidOutput,
    /// Refused the input (its own error).
    Refused,
    /// Could not be instantiated.
    Instantiate,
    /// The runtime was at capacity: the call never ran.
    Overloaded,
    /// The host failed.
    HostFault,
}

impl ErrorKind {
    /// Its stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::OutOfFuel => "out-of-fuel",
            ErrorKind::MemoryLimit => "memory-limit",
            ErrorKind::Deadline => "deadline",
            ErrorKind::StackOverflow => "stack-overflow",
            ErrorKind::Trap => "trap",
            ErrorKind::OutputTooLarge => "output-too-large",
            ErrorKind::InvalidOutput => "invalid-output",
            ErrorKind::Refused => "refused",
            ErrorKind::Instantiate => "instantiate",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::HostFault => "host-fault",
        }
    }

    /// Whether the plugin itself caused this failure (a trap, fuel, its
    /// deadline, memory, invalid or oversized output, a refusal), as
    /// opposed to the host being busy or failing. Only these count for the
    /// crash-loop guard.
    pub fn is_plugin_fault(self) -> bool {
        !matches!(
            self,
            ErrorKind::Overloaded | ErrorKind::HostFault | ErrorKind::Instantiate
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PluginError {
    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PluginError::OutOfFuel { .. } => ErrorKind::OutOfFuel,
            PluginError::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            PluginError::Deadline { .. } => ErrorKind::Deadline,
            PluginError::StackOverflow { .. } => ErrorKind::StackOverflow,
            PluginError::Trap { .. } => ErrorKind::Trap,
            PluginError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            PluginError::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            PluginError::Refused { .. } => ErrorKind::Refused,
            PluginError::Instantiate { .. } => ErrorKind::Instantiate,
            PluginError::Overloaded { .. } => ErrorKind::Overloaded,
            PluginError::HostFault { .. } => ErrorKind::HostFault,
        }
    }
}

/// Turn a failed call into its typed error. Traps are matched by type.
pub(super) fn classify(
    e: wasmtime::Error,
    store: &Store<CallState>,
    plugin: &Plugin,
) -> PluginError {
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
