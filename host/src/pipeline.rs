//! One evaluation of one ticket: triggers → compose → route → notify.
//!
//! This is the only place that knows that order. Composition rules:
//! - the highest tier among the *active* triggers' `escalate` signals wins,
//!   and every signal (with its evidence) is kept;
//! - if the ticket escalates, `raise` signals lift it one step, to the
//!   highest raise signal's tier at most (a raise alone escalates nothing);
//! - shadow-mode plugins run and are recorded, never acted on;
//! - a failed call gets its manifest's error policy: ignored, or turned into
//!   an escalation to the policy's tier that says which plugin failed and why.

use crate::manifest::{ErrorPolicy, Mode};
pub use crate::matrix::ResponseTargets;
use crate::model::{self, Tier, contract};
use crate::registry::LoadedPlugin;
use crate::runtime::inspect::Kind;
use crate::runtime::{CallReport, Plugin, PluginError, Runtime};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The plugins of one tenant, as an evaluation sees them.
#[derive(Debug, Clone, Default)]
pub struct PluginSet {
    /// Triggers (active and shadow; disabled ones are left out).
    pub triggers: Vec<LoadedPlugin>,
    /// The active router.
    pub router: Option<LoadedPlugin>,
    /// The active notifier.
    pub notifier: Option<LoadedPlugin>,
    /// Plugins of the set that are disabled (by the operator, or by the
    /// crash-loop guard): every decision names them as skipped.
    pub disabled: Vec<String>,
}

impl PluginSet {
    /// Sort loaded plugins into a set. At most one active router and one
    /// active notifier; the error names the extra one.
    pub fn new(plugins: impl IntoIterator<Item = LoadedPlugin>) -> Result<PluginSet, String> {
        let mut set = PluginSet::default();
        for p in plugins {
            if p.manifest.mode == Mode::Disabled {
                set.disabled.push(p.plugin.id().to_string());
                continue;
            }
            let slot = match p.manifest.kind {
                Kind::Trigger => {
                    set.triggers.push(p);
                    continue;
                }
                Kind::Router => &mut set.router,
                Kind::Notifier => &mut set.notifier,
            };
            if p.manifest.mode == Mode::Shadow {
                continue;
            }
            if let Some(existing) = slot {
                return Err(format!(
                    "two active {}s: {} and {}; set one to mode = \"shadow\" or \"disabled\"",
                    p.manifest.kind,
                    existing.plugin.id(),
                    p.plugin.id()
                ));
            }
            *slot = Some(p);
        }
        Ok(set)
    }
}

/// What one plugin call did, for the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRun {
    /// `name@version`.
    pub plugin: String,
    /// Its mode.
    pub mode: Mode,
    /// Its output as JSON, if it succeeded.
    pub output: Option<serde_json::Value>,
    /// The error kind (`out-of-fuel`, `trap`, ...), if it failed.
    pub error_kind: Option<&'static str>,
    /// The error message, if it failed.
    pub error: Option<String>,
    /// Fuel, memory, time, log.
    #[serde(flatten)]
    pub report: CallReport,
    /// Whether it is one of the vendor's built-in plugins (never disabled
    /// by the crash-loop guard).
    #[serde(skip)]
    pub vendor: bool,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The tier decided, if anything escalated.
    pub tier: Option<Tier>,
    /// Every active signal (escalations and warnings), in plugin order.
    pub signals: Vec<model::Signal>,
    /// Signals of shadow plugins: recorded, not acted on.
    pub shadow_signals: Vec<model::Signal>,
    /// The earliest time a trigger asked to be woken.
    pub wake_at: Option<DateTime<Utc>>,
    /// The routing, if the ticket escalated and a router ran.
    pub routing: Option<model::Routing>,
    /// The notification plan, if the ticket was routed and a notifier ran.
    pub plan: Option<model::NotificationPlan>,
    /// Every plugin call, in order.
    pub runs: Vec<PluginRun>,
}

/// A call's result in the model: its output converted by `convert` (which
/// may reject it as invalid), or the error's kind and message.
pub fn settle<T, U>(
    plugin: &Plugin,
    result: Result<T, PluginError>,
    convert: impl FnOnce(T) -> Result<U, String>,
) -> Result<U, (&'static str, String)> {
    result.map_err(|e| (e.kind(), e.to_string())).and_then(|t| {
        convert(t).map_err(|reason| {
            (
                "invalid-output",
                format!("{} returned invalid output: {reason}", plugin.id()),
            )
        })
    })
}

fn run_record<T: Serialize>(
    p: &LoadedPlugin,
    result: &Result<T, (&'static str, String)>,
    report: CallReport,
) -> PluginRun {
    PluginRun {
        plugin: p.plugin.id().to_string(),
        mode: p.manifest.mode,
        output: result
            .as_ref()
            .ok()
            .and_then(|o| serde_json::to_value(o).ok()),
        error_kind: result.as_ref().err().map(|(kind, _)| *kind),
        error: result.as_ref().err().map(|(_, message)| message.clone()),
        report,
        vendor: p.source.starts_with("builtin:"),
    }
}

/// The signal an error policy produces for a failed plugin, if any.
fn policy_signal(p: &LoadedPlugin, kind: &str, message: &str) -> Option<model::Signal> {
    match p.manifest.on_error {
        ErrorPolicy::Ignore => None,
        ErrorPolicy::Escalate { tier } => Some(model::Signal {
            action: model::SignalAction::Escalate,
            tier,
            key: format!("plugin-error:{}:{kind}", p.manifest.name),
            reason: format!(
                "rule {} failed ({kind}); escalating by its error policy",
                p.plugin.id()
            ),
            evidence: vec![message.to_string()],
            target_skill: None,
            target_queue: None,
        }),
    }
}

/// The tier of a set of active signals: the highest escalation, raised
/// one step (to the highest raise's tier at most) if any raise applies.
pub fn compose(signals: &[model::Signal]) -> Option<Tier> {
    let of = |action| {
        signals
            .iter()
            .filter(move |s| s.action == action)
            .map(|s| s.tier)
            .max()
    };
    let base = of(model::SignalAction::Escalate)?;
    Some(match of(model::SignalAction::Raise) {
        Some(cap) if cap > base => base.next().min(cap),
        _ => base,
    })
}

/// What the triggers said about a ticket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// The tier of the active signals (see [`compose`]).
    pub tier: Option<Tier>,
    /// Every active signal (escalations, warnings, raises), in plugin order.
    pub signals: Vec<model::Signal>,
    /// Signals of shadow plugins: recorded, not acted on.
    pub shadow_signals: Vec<model::Signal>,
    /// The earliest time a trigger asked to be woken.
    pub wake_at: Option<DateTime<Utc>>,
    /// Every trigger call, in order.
    pub runs: Vec<PluginRun>,
}

/// Run every trigger of `set` on `ticket` at `now` for `event`, and compose.
pub fn run_triggers(
    runtime: &Runtime,
    set: &PluginSet,
    ticket: &model::Ticket,
    now: DateTime<Utc>,
    event: model::EventKind,
) -> Findings {
    let wit_ticket = std::sync::Arc::new(contract::ticket(ticket));
    let mut f = Findings::default();
    for p in &set.triggers {
        let ctx = contract::context(now, event, p.config_json.to_string());
        let outcome = runtime.evaluate(&p.plugin, &wit_ticket, &ctx);
        let result = settle(&p.plugin, outcome.result, contract::evaluation_from);
        let shadow = p.manifest.mode == Mode::Shadow;
        match &result {
            Ok(evaluation) if shadow => f.shadow_signals.extend(evaluation.signals.iter().cloned()),
            Ok(evaluation) => {
                f.signals.extend(evaluation.signals.iter().cloned());
                f.wake_at = match (f.wake_at, evaluation.wake_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err((kind, message)) => {
                tracing::warn!(plugin = %p.plugin.id(), kind, %message, "trigger failed");
                if let (false, Some(s)) = (shadow, policy_signal(p, kind, message)) {
                    f.signals.push(s);
                }
            }
        }
        f.runs.push(run_record(p, &result, outcome.report));
    }
    f.tier = compose(&f.signals);
    f
}

/// The roster as plugins see it at `now`; agents that do not convert (an
/// unknown time zone) are left out with a warning.
pub fn wit_roster(
    roster: &[model::Agent],
    now: DateTime<Utc>,
) -> std::sync::Arc<Vec<crate::runtime::wit::Agent>> {
    let agents = roster
        .iter()
        .filter_map(|a| match contract::agent(a, now) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(error = %e, "agent left out of the roster");
                None
            }
        })
        .collect();
    std::sync::Arc::new(agents)
}

/// Ask the router who gets `ticket` for `escalation`. Without a router, or
/// when it fails, the ticket goes to the general queue.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per part of the router's input"
)]
pub fn route(
    runtime: &Runtime,
    set: &PluginSet,
    ticket: &model::Ticket,
    escalation: &model::Escalation,
    roster: &[model::Agent],
    now: DateTime<Utc>,
    event: model::EventKind,
    runs: &mut Vec<PluginRun>,
) -> model::Routing {
    let routing = set.router.as_ref().and_then(|r| {
        let ctx = contract::context(now, event, r.config_json.to_string());
        let outcome = runtime.route(
            &r.plugin,
            &std::sync::Arc::new(contract::ticket(ticket)),
            &contract::escalation(escalation),
            &wit_roster(roster, now),
            &ctx,
        );
        let result = settle(&r.plugin, outcome.result, |x| Ok(contract::routing_from(x)));
        runs.push(run_record(r, &result, outcome.report));
        result.ok()
    });
    routing.unwrap_or_else(|| model::Routing {
        target: model::Target::Queue("general".into()),
        reason: "no router answered: general queue".into(),
        fallback: Vec::new(),
    })
}

/// Ask the notifier for the plan of `escalation` routed by `routing`
/// (`None` without a notifier, or when it fails).
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per part of the notifier's input"
)]
pub fn plan(
    runtime: &Runtime,
    set: &PluginSet,
    ticket: &model::Ticket,
    escalation: &model::Escalation,
    routing: &model::Routing,
    roster: &[model::Agent],
    now: DateTime<Utc>,
    event: model::EventKind,
    runs: &mut Vec<PluginRun>,
) -> Option<model::NotificationPlan> {
    let n = set.notifier.as_ref()?;
    let ctx = contract::context(now, event, n.config_json.to_string());
    let outcome = runtime.plan(
        &n.plugin,
        &std::sync::Arc::new(contract::ticket(ticket)),
        &contract::escalation(escalation),
        &contract::routing(routing),
        &wit_roster(roster, now),
        &ctx,
    );
    let result = settle(&n.plugin, outcome.result, |x| Ok(contract::plan_from(x)));
    runs.push(run_record(n, &result, outcome.report));
    result.ok()
}

/// Evaluate `ticket` at `now` for `event`: run the triggers, compose, and if
/// the ticket escalates, route and plan notifications. Stateless: the
/// engine ([`crate::engine`]) adds what was already acted on.
pub fn decide(
    runtime: &Runtime,
    set: &PluginSet,
    ticket: &model::Ticket,
    roster: &[model::Agent],
    now: DateTime<Utc>,
    event: model::EventKind,
    targets: &ResponseTargets,
) -> Decision {
    let f = run_triggers(runtime, set, ticket, now, event);
    let mut decision = Decision {
        tier: f.tier,
        signals: f.signals,
        shadow_signals: f.shadow_signals,
        wake_at: f.wake_at,
        routing: None,
        plan: None,
        runs: f.runs,
    };
    let Some(tier) = decision.tier else {
        return decision;
    };
    let escalation = model::Escalation {
        tier,
        signals: decision.signals.clone(),
        response_target_ms: targets.get(tier),
    };
    let routing = route(
        runtime,
        set,
        ticket,
        &escalation,
        roster,
        now,
        event,
        &mut decision.runs,
    );
    decision.plan = plan(
        runtime,
        set,
        ticket,
        &escalation,
        &routing,
        roster,
        now,
        event,
        &mut decision.runs,
    );
    decision.routing = Some(routing);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::SignalAction::{Escalate, Raise, Warn};

    fn signal(action: model::SignalAction, tier: Tier) -> model::Signal {
        model::Signal {
            action,
            tier,
            key: format!("{action:?}:{tier:?}"),
            reason: "r".into(),
            evidence: vec![],
            target_skill: None,
            target_queue: None,
        }
    }

    #[test]
    fn the_highest_escalation_wins_and_warnings_do_not_count() {
        let s = [
            signal(Escalate, Tier::Medium),
            signal(Escalate, Tier::High),
            signal(Warn, Tier::Critical),
        ];
        assert_eq!(compose(&s), Some(Tier::High));
    }

    #[test]
    fn a_raise_lifts_an_escalation_one_step_up_to_its_tier() {
        assert_eq!(
            compose(&[signal(Escalate, Tier::High), signal(Raise, Tier::Critical)]),
            Some(Tier::Critical)
        );
        assert_eq!(
            compose(&[signal(Escalate, Tier::Low), signal(Raise, Tier::Critical)]),
            Some(Tier::Medium)
        );
        // Two raises still lift one step.
        let two = [
            signal(Escalate, Tier::Low),
            signal(Raise, Tier::Critical),
            signal(Raise, Tier::High),
        ];
        assert_eq!(compose(&two), Some(Tier::Medium));
        // A raise never lowers, and never lifts past its own tier.
        assert_eq!(
            compose(&[signal(Escalate, Tier::High), signal(Raise, Tier::Medium)]),
            Some(Tier::High)
        );
        assert_eq!(
            compose(&[signal(Escalate, Tier::High), signal(Raise, Tier::High)]),
            Some(Tier::High)
        );
    }

    #[test]
    fn a_raise_alone_escalates_nothing() {
        assert_eq!(
            compose(&[signal(Raise, Tier::Critical), signal(Warn, Tier::High)]),
            None
        );
        assert_eq!(compose(&[]), None);
    }
}
