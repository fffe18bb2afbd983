//! Escalator: a support-escalation engine whose rules are sandboxed
//! WebAssembly components.
//!
//! Modules, in the direction data flows:
//! - [`runtime`]: the wasmtime sandbox; knows the WIT types only.
//! - [`manifest`]: `plugin.toml`, what a plugin is and its limits.
//! - [`matrix`]: the escalation matrix, operator data.
//! - [`registry`]: loading plugins (from directories and the built-in set).
//! - [`model`]: tickets, customers, agents as JSON, and their WIT form.
//! - [`cli`]: the `escalator` command.

pub mod cli;
pub mod manifest;
pub mod matrix;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod runtime;
