//! Write Escalator plugins in Rust.
//!
//! A plugin is a struct, one `impl` of [`Trigger`], [`Router`] or
//! [`Notifier`], and one export macro:
//!
//! ```
//! use escalator_guest::prelude::*;
//!
//! #[derive(Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     phrase: String,
//! }
//!
//! impl Default for Config {
//!     fn default() -> Self {
//!         Config { phrase: "speak to your manager".into() }
//!     }
//! }
//!
//! struct Manager;
//!
//! impl Trigger for Manager {
//!     type Config = Config;
//!
//!     fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
//!         let asked = ticket
//!             .messages
//!             .iter()
//!             .any(|m| text::contains_phrase(&m.body, &ctx.config.phrase));
//!         let signals = if asked {
//!             vec![Signal::escalate(Tier::High, "phrase:manager", "customer asked for a manager")]
//!         } else {
//!             vec![]
//!         };
//!         Ok(Evaluation { signals, wake_at: None })
//!     }
//! }
//!
//! escalator_guest::export_trigger!(Manager);
//! ```
//!
//! Put `#![cfg_attr(target_arch = "wasm32", no_std)]` and `extern crate
//! alloc;` at the top of the plugin crate: on wasm the plugin then imports
//! nothing but Escalator's own interfaces (half the instantiation cost of a
//! std build), while natively it is an ordinary std crate whose logic you
//! unit-test and benchmark without wasm. [`prelude`] brings `String`, `Vec`,
//! `format!` and friends into scope either way.
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the output
//! `.wasm` is a component, ready for `escalator plugin run`.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "std")), no_std)]

extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
mod abi;
pub mod classify;
#[cfg(not(target_arch = "wasm32"))]
pub mod fit;
mod fnv1a;
pub mod kept;
mod macros;
pub mod matrix;
pub mod sentiment;
pub mod sla;
pub mod testing;
pub mod text;
pub mod time;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;

/// Bindings generated from the WIT contract (`escalator:plugin@0.1.0`).
///
/// Plugin authors rarely need this module directly: the types are
/// re-exported at the crate root and the export macros use the rest.
#[doc(hidden)]
pub mod bindings {
    /// The `trigger` world; also the home of the shared types.
    pub mod trigger {
        #![allow(missing_docs, reason = "generated code")]
        wit_bindgen::generate!({
            path: "../wit/since_v0.1.0",
            world: "configurable-trigger",
            pub_export_macro: true,
            export_macro_name: "__export_trigger",
            default_bindings_module: "escalator_guest::bindings::trigger",
            generate_unused_types: true,
            additional_derives: [PartialEq],
        });
    }
    /// The `router` world.
    pub mod router {
        #![allow(missing_docs, reason = "generated code")]
        wit_bindgen::generate!({
            path: "../wit/since_v0.1.0",
            world: "configurable-router",
            pub_export_macro: true,
            export_macro_name: "__export_router",
            default_bindings_module: "escalator_guest::bindings::router",
            with: {
                "escalator:plugin/types@0.1.0": crate::bindings::trigger::escalator::plugin::types,
                "escalator:plugin/host@0.1.0": crate::bindings::trigger::escalator::plugin::host,
            },
        });
    }
    /// The `trigger-set` world: the vendor's default triggers as one
    /// component ([`export_trigger_set!`](crate::export_trigger_set)).
    pub mod trigger_set {
        #![allow(missing_docs, reason = "generated code")]
        wit_bindgen::generate!({
            path: "../wit/since_v0.1.0",
            world: "configurable-trigger-set",
            pub_export_macro: true,
            export_macro_name: "__export_trigger_set",
            default_bindings_module: "escalator_guest::bindings::trigger_set",
            with: {
                "escalator:plugin/types@0.1.0": crate::bindings::trigger::escalator::plugin::types,
                "escalator:plugin/host@0.1.0": crate::bindings::trigger::escalator::plugin::host,
            },
        });
    }
    /// The `notifier` world.
    pub mod notifier {
        #![allow(missing_docs, reason = "generated code")]
        wit_bindgen::generate!({
            path: "../wit/since_v0.1.0",
            world: "configurable-notifier",
            pub_export_macro: true,
            export_macro_name: "__export_notifier",
            default_bindings_module: "escalator_guest::bindings::notifier",
            with: {
                "escalator:plugin/types@0.1.0": crate::bindings::trigger::escalator::plugin::types,
                "escalator:plugin/host@0.1.0": crate::bindings::trigger::escalator::plugin::host,
            },
        });
    }
}

pub use bindings::trigger::escalator::plugin::host::LogLevel;
pub use bindings::trigger::escalator::plugin::types::{
    Agent, AgentRole, AgentStatus, AiAnalysis, Attribute, AuthorKind, Channel, Context, Customer,
    Duration, Escalation, Evaluation, EventKind, FallbackStep, Message, NotificationPlan,
    NotificationStep, Recipient, Routing, Shift, Signal, SignalAction, StatusChange, Target,
    Ticket, TicketChannel, TicketStatus, Tier, Timestamp, Weekday,
};

/// The evaluation context as a plugin sees it: the raw WIT [`Context`] with
/// the configuration already parsed into the plugin's own type.
#[derive(Debug, Clone)]
pub struct Ctx<C> {
    /// The evaluation's time (ms since the Unix epoch). Use this, never a
    /// clock: it makes replays exact.
    pub now: Timestamp,
    /// What caused this evaluation.
    pub event: EventKind,
    /// The plugin's configuration, from the `[config]` table of its manifest.
    pub config: C,
}

impl<C> Ctx<C> {
    /// A context at `now` for `event` with `config`: handy in native tests.
    pub fn new(now: Timestamp, event: EventKind, config: C) -> Self {
        Ctx { now, event, config }
    }
}

/// A trigger: looks at a ticket and returns zero or more signals.
pub trait Trigger {
    /// The plugin's configuration, parsed from the manifest's `[config]`
    /// table. Use `#[serde(default)]` so a missing key takes its default, and
    /// `deny_unknown_fields` so a typo is an error that names the key.
    type Config: DeserializeOwned + Default;

    /// Evaluate one ticket. `Err` refuses cleanly; the host then applies the
    /// manifest's error policy.
    fn evaluate(ticket: &Ticket, ctx: &Ctx<Self::Config>) -> Result<Evaluation, String>;
}

/// A router: picks who gets an escalated ticket, and the fallback path.
pub trait Router {
    /// The plugin's configuration (see [`Trigger::Config`]).
    type Config: DeserializeOwned + Default;

    /// Route one escalated ticket, given the whole roster.
    fn route(
        ticket: &Ticket,
        escalation: &Escalation,
        roster: &[Agent],
        ctx: &Ctx<Self::Config>,
    ) -> Result<Routing, String>;
}

/// A notifier: plans who is told, when, how and with which words.
pub trait Notifier {
    /// The plugin's configuration (see [`Trigger::Config`]).
    type Config: DeserializeOwned + Default;

    /// Plan the notifications for a routed escalation.
    fn plan(
        ticket: &Ticket,
        escalation: &Escalation,
        routing: &Routing,
        roster: &[Agent],
        ctx: &Ctx<Self::Config>,
    ) -> Result<NotificationPlan, String>;
}

/// Parse a plugin configuration from the JSON text the host passes. Empty
/// text or an empty object means "no configuration": the type's default (so
/// a plugin with `type Config = ()` works with no `[config]` table).
pub fn parse_config<C: DeserializeOwned + Default>(json: &str) -> Result<C, String> {
    let trimmed = json.trim();
    if trimmed.is_empty()
        || trimmed
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|r| r.trim().is_empty())
    {
        return Ok(C::default());
    }
    serde_json::from_str(json).map_err(|e| alloc::format!("invalid plugin config: {e}"))
}

/// Turn the host's [`Context`] into a [`Ctx`] with parsed configuration.
pub fn context<C: DeserializeOwned + Default>(ctx: Context) -> Result<Ctx<C>, String> {
    Ok(Ctx {
        now: ctx.now,
        event: ctx.event,
        config: parse_config(&ctx.config)?,
    })
}

/// As [`context`], taking the configuration [`kept`] for `name` if it was
/// kept from the same text (see [`kept`]).
pub fn context_kept<C: DeserializeOwned + Default + 'static>(
    name: &str,
    ctx: Context,
) -> Result<Ctx<C>, String> {
    Ok(Ctx {
        now: ctx.now,
        event: ctx.event,
        config: kept::config(name, &ctx.config)?,
    })
}

/// Evaluate `ticket` with each named trigger of a set and its context, in
/// order: what [`export_trigger_set!`](crate::export_trigger_set) exports,
/// natively callable for tests. `run` evaluates one by name (`None`: the
/// set has no trigger of that name); the host is told before each.
#[doc(hidden)]
pub fn evaluate_each(
    ticket: &Ticket,
    triggers: Vec<(String, Context)>,
    run: impl Fn(&str, &Ticket, Context) -> Option<Result<Evaluation, String>>,
) -> Vec<Result<Evaluation, String>> {
    triggers
        .into_iter()
        .enumerate()
        .map(|(i, (name, ctx))| {
            #[cfg(target_arch = "wasm32")]
            bindings::trigger_set::escalator::plugin::trigger_set_host::begin(
                u32::try_from(i).unwrap_or(u32::MAX),
            );
            #[cfg(not(target_arch = "wasm32"))]
            let _ = i;
            run(&name, ticket, ctx)
                .unwrap_or_else(|| Err(alloc::format!("the trigger set has no trigger {name}")))
        })
        .collect()
}

/// Evaluate `ticket` with trigger `T` and the host's context (the
/// configuration parsed): what a trigger's `evaluate` export does.
#[doc(hidden)]
pub fn evaluate_with<T: Trigger>(ticket: &Ticket, ctx: Context) -> Result<Evaluation, String>
where
    T::Config: 'static,
{
    evaluate_named::<T>("", ticket, ctx)
}

/// As [`evaluate_with`], for the trigger kept under `name` (see [`kept`]).
#[doc(hidden)]
pub fn evaluate_named<T: Trigger>(
    name: &str,
    ticket: &Ticket,
    ctx: Context,
) -> Result<Evaluation, String>
where
    T::Config: 'static,
{
    let ctx = context_kept::<T::Config>(name, ctx)?;
    T::evaluate(ticket, &ctx)
}

/// What a trigger set's `configure-each` does: keep each named trigger's
/// configuration, one answer per trigger. `keep` keeps one by name
/// (`None`: the set has no trigger of that name).
#[doc(hidden)]
pub fn configure_each(
    configs: Vec<(String, String)>,
    keep: impl Fn(&str, &str) -> Option<Result<(), String>>,
) -> Vec<Result<(), String>> {
    configs
        .iter()
        .map(|(name, text)| {
            keep(name, text)
                .unwrap_or_else(|| Err(alloc::format!("the trigger set has no trigger {name}")))
        })
        .collect()
}

/// Write a line to this call's plugin log (capped by the host). Natively
/// (in unit tests) the line goes to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::trigger::escalator::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    std::eprintln!("[plugin {level:?}] {message}");
}

impl Signal {
    /// An escalation to `tier`, with a stable `key` and a readable `reason`.
    pub fn escalate(tier: Tier, key: impl ToString, reason: impl ToString) -> Signal {
        Signal {
            action: SignalAction::Escalate,
            tier,
            key: key.to_string(),
            reason: reason.to_string(),
            evidence: Vec::new(),
            target_skill: None,
            target_queue: None,
        }
    }

    /// A warning at `tier` (no re-tiering), with a stable `key` and a reason.
    pub fn warn(tier: Tier, key: impl ToString, reason: impl ToString) -> Signal {
        Signal {
            action: SignalAction::Warn,
            ..Signal::escalate(tier, key, reason)
        }
    }

    /// A raise: if the ticket escalates for another reason, lift it one
    /// step, to `tier` at most.
    pub fn raise(tier: Tier, key: impl ToString, reason: impl ToString) -> Signal {
        Signal {
            action: SignalAction::Raise,
            ..Signal::escalate(tier, key, reason)
        }
    }

    /// Add a piece of evidence.
    pub fn with_evidence(mut self, evidence: impl ToString) -> Signal {
        self.evidence.push(evidence.to_string());
        self
    }

    /// Name the skill the ticket needs.
    pub fn with_skill(mut self, skill: impl ToString) -> Signal {
        self.target_skill = Some(skill.to_string());
        self
    }

    /// Name the queue the ticket should go to.
    pub fn with_queue(mut self, queue: impl ToString) -> Signal {
        self.target_queue = Some(queue.to_string());
        self
    }
}

impl Evaluation {
    /// No signals, no wake-up.
    pub fn none() -> Evaluation {
        Evaluation {
            signals: Vec::new(),
            wake_at: None,
        }
    }
}

impl Tier {
    /// The tier's name as the WIT and manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    /// The next tier up (critical stays critical).
    pub fn next(self) -> Tier {
        match self {
            Tier::Low => Tier::Medium,
            Tier::Medium => Tier::High,
            Tier::High | Tier::Critical => Tier::Critical,
        }
    }

    /// Parse `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "low" => Some(Tier::Low),
            "medium" => Some(Tier::Medium),
            "high" => Some(Tier::High),
            "critical" => Some(Tier::Critical),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_is_the_default_even_for_unit() {
        parse_config::<()>("{}").unwrap();
        parse_config::<()>(" { } ").unwrap();
        parse_config::<()>("").unwrap();
        assert!(parse_config::<()>("{\"x\": 1}").is_err());
    }

    #[test]
    fn tiers_parse_from_config_by_name() {
        let t: Tier = serde_json::from_str("\"critical\"").unwrap();
        assert_eq!(t, Tier::Critical);
        let e = serde_json::from_str::<Tier>("\"urgent\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("one of low, medium, high, critical"), "{e}");
    }
}

impl<'de> serde::Deserialize<'de> for Tier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tier, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        Tier::parse(&s).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&s),
                &"one of low, medium, high, critical",
            )
        })
    }
}

/// What most plugins need, in one `use`.
pub mod prelude {
    pub use crate::{
        Agent, AgentRole, AgentStatus, AuthorKind, Channel, Ctx, Customer, Escalation, Evaluation,
        EventKind, FallbackStep, LogLevel, Message, NotificationPlan, NotificationStep, Notifier,
        Recipient, Router, Routing, Shift, Signal, SignalAction, Target, Ticket, TicketStatus,
        Tier, Timestamp, Trigger, Weekday, log, sentiment, sla, text, time,
    };
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::collections::{BTreeMap, BTreeSet};
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
    pub use serde::Deserialize;
}

#[doc(hidden)]
pub mod __private {
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}
