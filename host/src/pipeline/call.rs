//! The one place a plugin of any kind is called: the server's decisions,
//! replay, fixtures and `plugin run` all come through [`call`], so a
//! plugin's input, the checks on its output and the error it becomes are
//! the same wherever it runs.

use super::contract;
use crate::manifest::{ErrorPolicy, Mode};
use crate::model;
use crate::registry::LoadedPlugin;
use crate::runtime::{CallReport, ErrorKind, Outcome, Plugin, PluginError, Runtime, wit};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// What to do when a call misses its wall-clock deadline (or finds the
/// runtime at capacity): both depend on the machine's load, not on the
/// plugin's input, so they must not change an offline result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deadlines {
    /// The server: a missed deadline is the plugin's error (the ticket
    /// cannot wait), with its manifest's error policy.
    #[default]
    Live,
    /// Replay, fixtures and `plugin run`: the call is made again, up to
    /// [`OFFLINE_RETRIES`] times; fuel, which does not depend on load,
    /// stays the bound. Retries are counted in [`PluginRun::retries`].
    Retried,
}

/// The most times an offline call is made again after missing its
/// deadline.
pub const OFFLINE_RETRIES: u32 = 4;

/// The kind of call, with what that kind is given beyond the ticket.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// A trigger's `evaluate`.
    Trigger,
    /// A router's `route` for this escalation.
    Router(&'a model::Escalation),
    /// A notifier's `plan` for this escalation, routed so.
    Notifier(&'a model::Escalation, &'a model::Routing),
}

/// What every call is given: the ticket and roster as WIT values
/// (converted once, shared by every call on them), the moment and the
/// event.
#[derive(Debug, Clone)]
pub struct Input {
    /// The ticket.
    pub ticket: Arc<wit::Ticket>,
    /// The roster at `now`.
    pub roster: Arc<Vec<wit::Agent>>,
    /// The evaluation's time.
    pub now: DateTime<Utc>,
    /// What caused it.
    pub event: model::EventKind,
}

impl Input {
    /// The input for `ticket` and `roster` at `now`.
    pub fn new(
        ticket: &model::Ticket,
        roster: &[model::Agent],
        now: DateTime<Utc>,
        event: model::EventKind,
    ) -> Input {
        Input {
            ticket: Arc::new(contract::ticket(ticket)),
            roster: wit_roster(roster, now),
            now,
            event,
        }
    }

    /// The same roster, moment and event for another version of the ticket.
    pub fn with_ticket(&self, ticket: &model::Ticket) -> Input {
        Input {
            ticket: Arc::new(contract::ticket(ticket)),
            ..self.clone()
        }
    }
}

/// A plugin's answer, in the model.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// A trigger's.
    Evaluation(model::Evaluation),
    /// A router's.
    Routing(model::Routing),
    /// A notifier's.
    Plan(model::NotificationPlan),
}

/// One call's result and report.
#[derive(Debug)]
pub struct Called {
    /// The output, checked and converted, or why there is none: the
    /// plugin's own typed error (an output the model refuses is
    /// [`PluginError::InvalidOutput`]).
    pub result: Result<Output, PluginError>,
    /// Fuel, memory, time and log of the call that counted.
    pub report: CallReport,
    /// Calls made again after a missed deadline ([`Deadlines::Retried`]).
    pub retries: u32,
}

/// Call `plugin` (`config` is its `[config]` as JSON).
pub fn call(
    runtime: &Runtime,
    plugin: &Arc<Plugin>,
    config: &str,
    what: Call<'_>,
    input: &Input,
    deadlines: Deadlines,
) -> Called {
    call_after(runtime, plugin, config, what, input, deadlines, 0)
}

/// [`call`], the `retries`-th time (0: the first call).
fn call_after(
    runtime: &Runtime,
    plugin: &Arc<Plugin>,
    config: &str,
    what: Call<'_>,
    input: &Input,
    deadlines: Deadlines,
    mut retries: u32,
) -> Called {
    // Made for each attempt (the router's and notifier's calls take it
    // whole: no copy of the configuration beside this one).
    let ctx = || contract::context(input.now, input.event, config.to_string());
    loop {
        let (result, report) = match what {
            Call::Trigger => {
                let o = runtime.evaluate(plugin, &input.ticket, &ctx());
                let r = settle(plugin, o.result, contract::evaluation_from);
                (r.map(Output::Evaluation), o.report)
            }
            Call::Router(escalation) => {
                let o = runtime.route(
                    plugin,
                    &input.ticket,
                    contract::escalation(escalation),
                    &input.roster,
                    ctx(),
                );
                let r = settle(plugin, o.result, |x| Ok(contract::routing_from(x)));
                (r.map(Output::Routing), o.report)
            }
            Call::Notifier(escalation, routing) => {
                let o = runtime.plan(
                    plugin,
                    &input.ticket,
                    contract::escalation(escalation),
                    contract::routing(routing),
                    &input.roster,
                    ctx(),
                );
                let r = settle(plugin, o.result, |x| Ok(contract::plan_from(x)));
                (r.map(Output::Plan), o.report)
            }
        };
        if load_bound(&result) && deadlines == Deadlines::Retried && retries < OFFLINE_RETRIES {
            retries += 1;
            continue;
        }
        return Called {
            result,
            report,
            retries,
        };
    }
}

/// Call every trigger of `plugins` on `input`, handed to a call thread
/// once: the vendor's default triggers among them together in one
/// instance of the trigger set, the others each in its own
/// ([`Runtime::evaluate_triggers`]); if the set's call fails as a whole,
/// its triggers are called again one by one. Offline, a call that missed
/// its deadline is made again on its own, as [`call`] does. The outcomes
/// are in the order of `plugins`.
pub fn triggers(
    runtime: &Runtime,
    plugins: &[&LoadedPlugin],
    input: &Input,
    deadlines: Deadlines,
) -> Vec<Called> {
    let ctx =
        |p: &LoadedPlugin| contract::context(input.now, input.event, p.config_json.to_string());
    let set = runtime.trigger_set(crate::registry::trigger_set);
    let mut in_set: Vec<Option<&'static str>> = plugins
        .iter()
        .map(|p| set.and_then(|s| s.member(&p.plugin)))
        .collect();
    // One trigger alone gains nothing from the set.
    if in_set.iter().flatten().count() < 2 {
        in_set.fill(None);
    }
    let members: Vec<_> = plugins
        .iter()
        .zip(&in_set)
        .filter_map(|(p, name)| name.map(|name| (&p.plugin, name, ctx(p))))
        .collect();
    let others: Vec<_> = plugins
        .iter()
        .zip(&in_set)
        .filter(|(_, name)| name.is_none())
        .map(|(p, _)| (&p.plugin, ctx(p)))
        .collect();
    let (from_set, from_others) = runtime.evaluate_triggers(
        set.map(|s| (&**s, members.as_slice())),
        &others,
        &input.ticket,
    );
    let from_set = from_set.unwrap_or_else(|| {
        let one_by_one: Vec<_> = members.iter().map(|(p, _, c)| (*p, c.clone())).collect();
        runtime.evaluate_many(&one_by_one, &input.ticket)
    });
    let (mut from_set, mut from_others) = (from_set.into_iter(), from_others.into_iter());
    let outcomes: Vec<Option<Outcome<wit::Evaluation>>> = in_set
        .iter()
        .map(|name| match name {
            Some(_) => from_set.next(),
            None => from_others.next(),
        })
        .collect();
    let outcomes = outcomes
        .into_iter()
        .zip(plugins)
        .map(|(o, p)| o.unwrap_or_else(|| crate::runtime::lost(&p.plugin)));
    plugins
        .iter()
        .zip(outcomes)
        .map(|(p, o)| {
            let result = settle(&p.plugin, o.result, contract::evaluation_from);
            if load_bound(&result) && deadlines == Deadlines::Retried {
                return call_after(
                    runtime,
                    &p.plugin,
                    &p.config_json,
                    Call::Trigger,
                    input,
                    deadlines,
                    1,
                );
            }
            Called {
                result: result.map(Output::Evaluation),
                report: o.report,
                retries: 0,
            }
        })
        .collect()
}

/// Whether a call failed for the machine's load rather than its input.
fn load_bound<T>(result: &Result<T, PluginError>) -> bool {
    matches!(
        result,
        Err(PluginError::Deadline { .. } | PluginError::Overloaded { .. })
    )
}

/// A call's result in the model: its output converted by `convert` (which
/// may reject it as invalid output), or the plugin's error.
fn settle<T, U>(
    plugin: &Plugin,
    result: Result<T, PluginError>,
    convert: impl FnOnce(T) -> Result<U, String>,
) -> Result<U, PluginError> {
    result.and_then(|t| {
        convert(t).map_err(|reason| PluginError::InvalidOutput {
            plugin: plugin.id().clone(),
            reason,
        })
    })
}

/// The roster as plugins see it at `now`; agents that do not convert (an
/// unknown time zone) are left out with a warning.
pub fn wit_roster(roster: &[model::Agent], now: DateTime<Utc>) -> Arc<Vec<wit::Agent>> {
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
    Arc::new(agents)
}

/// What one plugin call did, for the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRun {
    /// `name@version`.
    pub plugin: String,
    /// Its mode.
    pub mode: Mode,
    /// Its output, if it succeeded (serialized only when the audit trail
    /// is written).
    pub output: Option<Output>,
    /// The error kind (`out-of-fuel`, `trap`, ...), if it failed.
    pub error_kind: Option<ErrorKind>,
    /// The error message, if it failed.
    pub error: Option<String>,
    /// Fuel, memory, time, log.
    #[serde(flatten)]
    pub report: CallReport,
    /// Calls made again after a missed deadline (offline only).
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Whether it is one of the vendor's built-in plugins (never disabled
    /// by the crash-loop guard).
    #[serde(skip)]
    pub vendor: bool,
}

/// Whether a count is zero (a field left out of a run's JSON then).
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Call a plugin of the set and record the run in `runs`; the output if
/// the call succeeded.
pub(super) fn run(
    runtime: &Runtime,
    p: &LoadedPlugin,
    what: Call<'_>,
    input: &Input,
    deadlines: Deadlines,
    runs: &mut Vec<PluginRun>,
) -> Result<Output, PluginError> {
    record(
        p,
        call(runtime, &p.plugin, &p.config_json, what, input, deadlines),
        runs,
    )
}

/// Record a call of a plugin of the set in `runs`; the output if the call
/// succeeded.
pub(super) fn record(
    p: &LoadedPlugin,
    called: Called,
    runs: &mut Vec<PluginRun>,
) -> Result<Output, PluginError> {
    if let Err(e) = &called.result {
        tracing::warn!(plugin = %p.plugin.id(), kind = %e.kind(), message = %e, "plugin call failed");
    }
    runs.push(PluginRun {
        plugin: p.plugin.id().to_string(),
        mode: p.manifest.mode,
        output: called.result.as_ref().ok().cloned(),
        error_kind: called.result.as_ref().err().map(PluginError::kind),
        error: called.result.as_ref().err().map(ToString::to_string),
        report: called.report,
        retries: called.retries,
        vendor: p.source.starts_with("builtin:"),
    });
    called.result
}

/// The signal an error policy produces for a failed plugin, if any.
pub(super) fn policy_signal(p: &LoadedPlugin, error: &PluginError) -> Option<model::Signal> {
    let kind = error.kind();
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
            evidence: vec![error.to_string()],
            target_skill: None,
            target_queue: None,
        }),
    }
}
