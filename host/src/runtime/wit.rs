//! Host bindings for the plugin contract, one module per WIT version.
//!
//! Released versions are frozen (`wit/since_vX.Y.Z/`); a new version gets a
//! module of its own here and the runtime keeps serving the old ones.

/// `escalator:plugin@0.1.0`.
pub mod v0_1_0 {
    /// The `trigger` world. Its bindings also hold the shared `types` and
    /// `host` interfaces that the other worlds reuse.
    pub mod trigger {
        wasmtime::component::bindgen!({
            path: "../wit/since_v0.1.0",
            world: "trigger",
            additional_derives: [PartialEq],
        });
    }

    /// The `router` world.
    pub mod router {
        wasmtime::component::bindgen!({
            path: "../wit/since_v0.1.0",
            world: "router",
            with: {
                "escalator:plugin/types": super::trigger::escalator::plugin::types,
                "escalator:plugin/host": super::trigger::escalator::plugin::host,
            },
        });
    }

    /// The `notifier` world.
    pub mod notifier {
        wasmtime::component::bindgen!({
            path: "../wit/since_v0.1.0",
            world: "notifier",
            with: {
                "escalator:plugin/types": super::trigger::escalator::plugin::types,
                "escalator:plugin/host": super::trigger::escalator::plugin::host,
            },
        });
    }

    /// The `trigger-set` world: the vendor's default triggers as one
    /// component. Its `trigger-set-host` import is linked by hand (it reads
    /// the store's fuel), not through these bindings.
    pub mod trigger_set {
        wasmtime::component::bindgen!({
            path: "../wit/since_v0.1.0",
            world: "trigger-set",
            with: {
                "escalator:plugin/types": super::trigger::escalator::plugin::types,
                "escalator:plugin/host": super::trigger::escalator::plugin::host,
            },
        });
    }

    pub use trigger::escalator::plugin::host::{Host, LogLevel};
    pub use trigger::escalator::plugin::types::*;

    /// The package name and version, as import and export names carry it.
    pub const PACKAGE: &str = "escalator:plugin@0.1.0";
}

pub use v0_1_0::*;
