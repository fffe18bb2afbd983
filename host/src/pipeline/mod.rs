//! The one decider: what the server, replay, fixtures, `plugin run` and the
//! demo all ask. Given a ticket as it stands, the signal keys already acted
//! on and the moment, [`decide`] runs the triggers, composes, applies the
//! escalation policy and, if the ticket escalates, routes it and plans its
//! notifications; it returns the whole decision. It changes nothing: the
//! engine persists and acts on the decision, replay applies it to its own
//! copy ([`apply`] is what a decision does to a ticket, in both).
//!
//! This is the only place that knows the order triggers → compose →
//! escalate → route → plan. Composition rules:
//! - the highest tier among the *active* triggers' `escalate` signals wins,
//!   and every signal (with its evidence) is kept;
//! - if the ticket escalates, `raise` signals lift it one step, to the
//!   highest raise signal's tier at most (a raise alone escalates nothing);
//! - shadow-mode plugins run and are recorded, never acted on;
//! - a failed call gets its manifest's error policy: ignored, or turned into
//!   an escalation to the policy's tier that says which plugin failed and why.
//!
//! The escalation policy:
//! - a signal key is acted on once per ticket: a key that fired before
//!   counts toward the tier but cannot start an escalation by itself;
//! - tiers only rise: a ticket escalates when it is unresolved and the
//!   composed tier is above its current one, with at least one new key
//!   (or when it had no tier yet);
//! - a claimed ticket stays with whoever claimed it (no router call);
//! - after an escalation the triggers are asked again on the ticket as it
//!   now stands (the new tier, the escalation's note), so the new tier's
//!   clocks start at once and their next threshold is the wake-up;
//! - new causes on an escalated ticket that do not lift it are an update
//!   for whoever has it.

pub mod apply;
mod call;
pub(crate) use call::is_zero;
pub mod contract;

pub use crate::matrix::ResponseTargets;
pub use call::{
    Call, Called, Deadlines, Input, OFFLINE_RETRIES, Output, PluginRun, call, triggers, wit_roster,
};

use crate::manifest::Mode;
use crate::model::{self, Target, TicketState, Tier};
use crate::registry::LoadedPlugin;
use crate::runtime::Runtime;
use crate::runtime::inspect::Kind;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

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

/// Everything a decision is made with besides the ticket: the tenant's
/// plugins, roster and response targets, the moment and the event.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The plugin runtime.
    pub runtime: &'a Runtime,
    /// The tenant's plugins.
    pub set: &'a PluginSet,
    /// The roster, as stored.
    pub roster: &'a [model::Agent],
    /// Response targets per tier (from the matrix).
    pub targets: &'a ResponseTargets,
    /// The decision's time.
    pub now: DateTime<Utc>,
    /// What caused it.
    pub event: model::EventKind,
    /// What a missed deadline does.
    pub deadlines: Deadlines,
}

/// An escalation decided: its tier and reasons, who gets it, the plan,
/// and the note it adds to the conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Escalated {
    /// The tier, every active signal and the tier's response target.
    pub escalation: model::Escalation,
    /// Who gets it, and the fallback path.
    pub routing: model::Routing,
    /// The notification plan (`None` without a notifier, or when it failed).
    pub plan: Option<model::NotificationPlan>,
    /// The escalation's conversation note.
    pub note: model::Message,
}

/// The whole decision on a ticket at a moment.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The tier of the active signals (whether or not it escalates).
    pub tier: Option<Tier>,
    /// Every active signal (escalations, warnings, raises), in plugin order.
    pub signals: Vec<model::Signal>,
    /// Signals of shadow plugins: recorded, not acted on.
    pub shadow_signals: Vec<model::Signal>,
    /// The earliest time a trigger asked to be woken.
    pub wake_at: Option<DateTime<Utc>>,
    /// The signals whose keys are acted on for the first time.
    pub fresh: Vec<model::Signal>,
    /// The escalation, if the ticket escalates now.
    pub escalation: Option<Escalated>,
    /// New causes (not raises) on an already escalated ticket that did not
    /// lift it: news for whoever has it.
    pub update: Vec<model::Signal>,
    /// The ticket's next wake-up (none once it is resolved).
    pub wake: Option<DateTime<Utc>>,
    /// Every plugin call, in order.
    pub runs: Vec<PluginRun>,
}

impl Decision {
    /// The routing, if the ticket escalates.
    pub fn routing(&self) -> Option<&model::Routing> {
        self.escalation.as_ref().map(|e| &e.routing)
    }

    /// The notification plan, if the ticket escalates and a notifier
    /// planned.
    pub fn plan(&self) -> Option<&model::NotificationPlan> {
        self.escalation.as_ref().and_then(|e| e.plan.as_ref())
    }
}

/// What the triggers said about a ticket.
#[derive(Debug, Clone, Default)]
struct Findings {
    tier: Option<Tier>,
    signals: Vec<model::Signal>,
    shadow_signals: Vec<model::Signal>,
    wake_at: Option<DateTime<Utc>>,
    /// What each trigger of the set said, in order, kept (in the first
    /// round only) for the triggers that do not depend on an escalation, so
    /// that the round after one can use their answers again.
    said: Vec<Option<Said>>,
}

/// One trigger's part in the findings.
#[derive(Debug, Clone)]
enum Said {
    /// Its evaluation.
    Evaluation(model::Evaluation),
    /// It failed; the signal its error policy made of that, if any.
    Failed(Option<model::Signal>),
}

/// Run the triggers of the set and compose; each call goes in `runs`.
/// With `earlier` (what each trigger said before an escalation), a
/// trigger whose manifest says it does not depend on the escalation is not
/// called: its earlier answer stands.
fn run_triggers(
    ask: &Ask<'_>,
    input: &Input,
    earlier: Option<&[Option<Said>]>,
    runs: &mut Vec<PluginRun>,
) -> Findings {
    let reused = |i: usize| earlier.and_then(|e| e.get(i).cloned().flatten());
    let mut said: Vec<Option<Said>> = (0..ask.set.triggers.len()).map(reused).collect();
    let asked: Vec<&LoadedPlugin> = ask
        .set
        .triggers
        .iter()
        .zip(&said)
        .filter(|(_, s)| s.is_none())
        .map(|(p, _)| p)
        .collect();
    let mut called = call::triggers(ask.runtime, &asked, input, ask.deadlines).into_iter();
    for (p, slot) in ask.set.triggers.iter().zip(&mut said) {
        if slot.is_some() {
            continue;
        }
        let Some(called) = called.next() else { break };
        *slot = Some(match call::record(p, called, runs) {
            Ok(Output::Evaluation(evaluation)) => Said::Evaluation(evaluation),
            Ok(_) => Said::Failed(None),
            Err(e) => Said::Failed(call::policy_signal(p, &e)),
        });
    }
    let mut f = Findings::default();
    for (p, s) in ask.set.triggers.iter().zip(said) {
        let s = s.unwrap_or(Said::Failed(None));
        let kept = (earlier.is_none() && !p.manifest.depends_on_escalation).then(|| s.clone());
        f.said.push(kept);
        let shadow = p.manifest.mode == Mode::Shadow;
        match s {
            Said::Evaluation(evaluation) if shadow => f.shadow_signals.extend(evaluation.signals),
            Said::Evaluation(evaluation) => {
                f.signals.extend(evaluation.signals);
                f.wake_at = match (f.wake_at, evaluation.wake_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Said::Failed(Some(signal)) if !shadow => f.signals.push(signal),
            Said::Failed(_) => {}
        }
    }
    f.tier = compose(&f.signals);
    f
}

/// Who gets `ticket` for `escalation`: the router's answer, or the general
/// queue without a router or when it fails.
fn route(
    ask: &Ask<'_>,
    input: &Input,
    escalation: &model::Escalation,
    runs: &mut Vec<PluginRun>,
) -> model::Routing {
    let answer = ask.set.router.as_ref().and_then(|r| {
        match call::run(
            ask.runtime,
            r,
            Call::Router(escalation),
            input,
            ask.deadlines,
            runs,
        ) {
            Ok(Output::Routing(routing)) => Some(routing),
            _ => None,
        }
    });
    answer.unwrap_or_else(|| model::Routing {
        target: Target::Queue("general".into()),
        reason: "no router answered: general queue".into(),
        fallback: Vec::new(),
    })
}

/// The notifier's plan for `escalation` routed by `routing` (`None`
/// without a notifier, or when it fails).
fn plan(
    ask: &Ask<'_>,
    input: &Input,
    escalation: &model::Escalation,
    routing: &model::Routing,
    runs: &mut Vec<PluginRun>,
) -> Option<model::NotificationPlan> {
    let n = ask.set.notifier.as_ref()?;
    let what = Call::Notifier(escalation, routing);
    match call::run(ask.runtime, n, what, input, ask.deadlines, runs) {
        Ok(Output::Plan(plan)) => Some(plan),
        _ => None,
    }
}

/// Decide on `state` (the ticket as it stands, with its current
/// escalation) given the keys already acted on (`fired`).
pub fn decide(ask: &Ask<'_>, state: &TicketState, fired: &BTreeSet<String>) -> Decision {
    let ticket = &state.ticket;
    // Triggers are not given the roster: it is converted only if the
    // ticket escalates and is routed.
    let input = Input::new(ticket, &[], ask.now, ask.event);
    let mut runs = Vec::new();
    let mut f = run_triggers(ask, &input, None, &mut runs);
    let said = std::mem::take(&mut f.said);
    let fresh: Vec<model::Signal> = f
        .signals
        .iter()
        .filter(|s| !fired.contains(&s.key))
        .cloned()
        .collect();
    let current = state.escalation.as_ref().map(|e| e.tier);
    let escalates = ticket.unresolved()
        && f.tier.is_some()
        && (current.is_none() || f.tier > current)
        && (!fresh.is_empty() || current.is_none());
    let mut decision = Decision {
        tier: f.tier,
        signals: f.signals,
        shadow_signals: f.shadow_signals,
        wake_at: f.wake_at,
        fresh,
        escalation: None,
        update: Vec::new(),
        wake: None,
        runs: Vec::new(),
    };
    let (true, Some(tier)) = (escalates, f.tier) else {
        if current.is_some() {
            decision.update = decision
                .fresh
                .iter()
                .filter(|s| s.action != model::SignalAction::Raise)
                .cloned()
                .collect();
        }
        decision.wake = f.wake_at.filter(|at| *at > ask.now && ticket.unresolved());
        decision.runs = runs;
        return decision;
    };
    let input = Input {
        roster: wit_roster(ask.roster, ask.now),
        ..input
    };
    let escalation = model::Escalation {
        tier,
        signals: decision.signals.clone(),
        response_target_ms: ask.targets.get(tier),
    };
    let routing = match (&ticket.claimed_at, &ticket.assignee) {
        (Some(_), Some(a)) => model::Routing {
            target: Target::Agent(a.clone()),
            reason: format!("claimed by {a}"),
            fallback: Vec::new(),
        },
        _ => route(ask, &input, &escalation, &mut runs),
    };
    // The notifier plans for the ticket as it will stand: its new tier and
    // assignee.
    let mut planned = ticket.clone();
    planned.tier = Some(tier);
    if let Target::Agent(a) = &routing.target {
        planned.assignee = Some(a.clone());
    }
    let plan = plan(
        ask,
        &input.with_ticket(&planned),
        &escalation,
        &routing,
        &mut runs,
    );
    let note = apply::escalation_note(ticket, tier, plan.as_ref(), ask.now);
    // The triggers again on the ticket as it now stands (the new tier, the
    // escalation's note): the new tier's clocks start now, and their next
    // threshold is the ticket's wake-up. In this decision, not a second
    // one: a big ticket is read and written once. Triggers that do not
    // depend on the escalation keep their first answer.
    planned.messages.push(note.clone());
    let again = run_triggers(ask, &input.with_ticket(&planned), Some(&said), &mut runs);
    decision.wake = if again.tier > Some(tier) {
        // Higher still at once (rare): decide again now.
        Some(ask.now)
    } else {
        again.wake_at.filter(|at| *at > ask.now)
    };
    decision.escalation = Some(Escalated {
        escalation,
        routing,
        plan,
        note,
    });
    decision.runs = runs;
    decision
}

/// After a claim: the notifier's acknowledgement plan for the claimed
/// ticket (reminders if it stays unanswered), with its runs. `None` if the
/// ticket never escalated.
pub fn after_claim(
    ask: &Ask<'_>,
    state: &TicketState,
) -> Option<(Option<model::NotificationPlan>, Vec<PluginRun>)> {
    let esc = state.escalation.as_ref()?;
    let routing = model::Routing {
        target: Target::Agent(state.ticket.assignee.clone().unwrap_or_default()),
        reason: "claimed".into(),
        fallback: Vec::new(),
    };
    let input = Input::new(&state.ticket, ask.roster, ask.now, ask.event);
    let mut runs = Vec::new();
    let plan = plan(ask, &input, &esc.as_escalation(), &routing, &mut runs);
    Some((plan, runs))
}

/// Route an escalated ticket again because `agent` left (`back` false: the
/// ticket is theirs) or came back (`back` true: the ticket waits in a
/// queue). `None` when the ticket is not affected (claimed, resolved, or
/// no longer theirs or queued) or the router keeps it where it is.
pub fn reroute(
    ask: &Ask<'_>,
    state: &TicketState,
    agent: &str,
    back: bool,
) -> Option<(model::Routing, Vec<PluginRun>)> {
    let esc = state.escalation.as_ref()?;
    let t = &state.ticket;
    let still = if back {
        t.assignee.is_none() && state.queue.is_some()
    } else {
        t.assignee.as_deref() == Some(agent)
    };
    if t.claimed_at.is_some() || !still || !t.unresolved() {
        return None;
    }
    let input = Input::new(t, ask.roster, ask.now, ask.event);
    let mut runs = Vec::new();
    let routing = route(ask, &input, &esc.as_escalation(), &mut runs);
    let unchanged = if back {
        matches!(routing.target, Target::Queue(_))
    } else {
        routing.target == Target::Agent(agent.to_string())
    };
    (!unchanged).then_some((routing, runs))
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

    /// Each default trigger that says it does not depend on the escalation
    /// answers every one of its fixtures' tickets the same before and after
    /// one (a tier, an assignee, the escalation's note): its first answer
    /// may stand.
    #[test]
    fn triggers_that_do_not_depend_on_the_escalation_answer_the_same_after_one() {
        use crate::runtime::{RuntimeConfig, inspect::Kind};
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let matrix = crate::matrix::Matrix::default_matrix();
        let plugins = crate::replay::plugins(&runtime, &matrix, None).unwrap();
        let src = std::path::Path::new(env!("ESCALATOR_PLUGINS_SRC"));
        let answer = |p: &LoadedPlugin, t: &model::Ticket, now, event| {
            let input = Input::new(t, &[], now, event);
            let c = call(
                &runtime,
                &p.plugin,
                &p.config_json,
                Call::Trigger,
                &input,
                Deadlines::Retried,
            );
            c.result
                .map(|o| serde_json::to_value(o).unwrap())
                .map_err(|e| e.to_string())
        };
        let mut independent = Vec::new();
        let mut checked = 0;
        for p in &plugins {
            if p.manifest.kind != Kind::Trigger || p.manifest.depends_on_escalation {
                continue;
            }
            independent.push(p.manifest.name.clone());
            let fixtures = crate::registry::fixtures::read(&src.join(&p.manifest.name)).unwrap();
            assert!(!fixtures.is_empty(), "{} has fixtures", p.manifest.name);
            for f in &fixtures {
                let now = f
                    .now
                    .unwrap_or(f.ticket.created_at + chrono::Duration::hours(1));
                let before = answer(p, &f.ticket, now, f.event);
                for tier in [Tier::Medium, Tier::Critical] {
                    let mut after = f.ticket.clone();
                    after.tier = Some(tier);
                    after.assignee = Some("ana".into());
                    after
                        .messages
                        .push(apply::escalation_note(&f.ticket, tier, None, now));
                    assert_eq!(
                        answer(p, &after, now, f.event),
                        before,
                        "{} on {:?} at {tier:?}",
                        p.manifest.name,
                        f.name
                    );
                    checked += 1;
                }
            }
        }
        independent.sort();
        assert_eq!(
            independent,
            [
                "ai-confidence",
                "churn-risk",
                "customer-value",
                "phrases",
                "scenario",
                "sentiment"
            ]
        );
        assert!(checked >= 40, "{checked} cases");
    }

    /// After an escalation only the triggers that depend on it are asked
    /// again, and the decision is the one asking every trigger again makes.
    #[test]
    fn after_an_escalation_only_the_triggers_that_depend_on_it_are_asked_again() {
        use crate::runtime::RuntimeConfig;
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let matrix = crate::matrix::Matrix::default_matrix();
        let plugins = crate::replay::plugins(&runtime, &matrix, None).unwrap();
        let every: Vec<LoadedPlugin> = plugins
            .iter()
            .cloned()
            .map(|mut p| {
                std::sync::Arc::make_mut(&mut p.manifest).depends_on_escalation = true;
                p
            })
            .collect();
        let now: DateTime<Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
        let ticket: model::Ticket = serde_json::from_value(serde_json::json!({
            "id": "T-1", "tenant": "acme", "subject": "Charged twice", "category": "billing",
            "created_at": "2026-11-27T11:00:00Z",
            "messages": [{"id": "m1", "author": "customer", "sent_at": "2026-11-27T11:00:00Z",
                          "body": "You charged me twice. This is unacceptable, I will call my lawyer."}],
            "customer": {"id": "c", "name": "Globex", "plan": "enterprise", "mrr_cents": 900000},
        }))
        .unwrap();
        let state = apply::created(ticket, "acme", now);
        let targets = matrix.response_targets();
        let decide_with = |plugins: Vec<LoadedPlugin>| {
            let set = PluginSet::new(plugins).unwrap();
            let ask = Ask {
                runtime: &runtime,
                set: &set,
                roster: &[],
                targets: &targets,
                now,
                event: model::EventKind::TicketCreated,
                deadlines: Deadlines::Retried,
            };
            decide(&ask, &state, &BTreeSet::new())
        };
        let (fewer, all) = (decide_with(plugins), decide_with(every));
        let called =
            |d: &Decision| -> Vec<String> { d.runs.iter().map(|r| r.plugin.clone()).collect() };
        assert_eq!(all.runs.len(), 16, "{:?}", called(&all));
        assert_eq!(
            &called(&fewer)[7..],
            ["skills@0.1.0", "tiered@0.1.0", "sla@0.1.0"],
            "the router, the notifier and the one trigger that reads the tier"
        );
        assert!(fewer.escalation.is_some());
        assert!(fewer.wake.is_some(), "sla's clock gives a wake-up");
        let decided = |d: &Decision| {
            let mut v = serde_json::to_value(d).unwrap();
            v.as_object_mut().unwrap().remove("runs");
            v
        };
        assert_eq!(decided(&fewer), decided(&all));
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
