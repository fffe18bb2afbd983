//! Escalator: a support-escalation engine whose rules are sandboxed
//! WebAssembly components.
//!
//! Modules, in the direction data flows:
//! - [`runtime`]: the wasmtime sandbox; knows the WIT types only.
//! - [`manifest`]: `plugin.toml`, what a plugin is and its limits.
//! - [`matrix`]: the escalation matrix, operator data.
//! - [`registry`]: loading plugins (from directories and the built-in set).
//! - [`model`]: tickets, customers, agents as JSON, and their WIT form.
//! - [`pipeline`]: triggers → compose → route → notify, stateless.
//! - [`engine`]: events in; durable decisions, timers and deliveries out.
//! - [`store`]: SQLite persistence.
//! - [`scheduler`]: fires durable timers when due.
//! - [`delivery`]: Slack, e-mail, webhook and in-app, with retries.
//! - [`watcher`]: hot-swaps plugins dropped into a directory.
//! - [`lane`]: how an over-share tenant yields CPU and the writer.
//! - [`api`]: the HTTP API; [`server`]: `escalator serve`.
//! - [`cli`]: the `escalator` command.

pub mod api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod codes;
pub mod connectors;
pub mod cores;
pub mod dashboard;
pub mod delivery;
pub mod engine;
pub mod lane;
pub mod learn;
pub mod manifest;
pub mod matrix;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod replay;
pub mod runtime;
pub mod scaffold;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tune;
pub mod watcher;
