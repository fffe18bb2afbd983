//! The vendor's default triggers called together: one instance of the
//! trigger set (`world trigger-set`) per event instead of one instance per
//! trigger, the ticket copied in once.
//!
//! Isolation between the vendor's own triggers buys nothing, so they share
//! an instance; a customer's trigger never joins them. Each trigger is
//! still held to its own limits and reported on its own: the set tells the
//! host before each trigger ([`super::sandbox::Mark`]), so each one's fuel,
//! time and log are known; a trigger over its own fuel, or whose answer is
//! too large or makes no sense, fails as it would alone. Time is bounded
//! for the set as a whole (its deadline is its triggers' added; a
//! trigger's own time is reported, not enforced apart, since a low-lane
//! pause falls inside it). If the set's call fails as a whole (a trap, its
//! memory, its deadline) or its answer does not split, the caller calls
//! the triggers one by one, so a decision is never worse than without the
//! set.

use super::sandbox::Mark;
use super::*;

/// A trigger the set can run.
#[derive(Debug, Clone)]
pub struct SetMember {
    /// The name the set runs it by.
    pub name: &'static str,
    /// The digest of the trigger's own component.
    pub digest: String,
    /// The limits of the trigger's own manifest: only a plugin with them
    /// joins the set (the set's instance cannot give one trigger less
    /// memory than the others).
    pub limits: Limits,
}

/// The vendor's default triggers as one component.
#[derive(Debug)]
pub struct TriggerSet {
    plugin: Arc<Plugin>,
    members: Vec<SetMember>,
    /// Calls answered for their triggers, and calls that failed as a
    /// whole or did not split (their triggers then called one by one).
    answered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// What a trigger set did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetStats {
    /// Calls whose answer went to their triggers.
    pub answered: u64,
    /// Calls that failed as a whole or did not split.
    pub failed: u64,
}

impl TriggerSet {
    /// The set `plugin` (a component exporting `evaluate-each`), running
    /// `members`. Its limits should be the members' together: their fuel,
    /// time, output and log added, the most memory of any.
    pub fn new(plugin: Plugin, members: Vec<SetMember>) -> Result<TriggerSet, String> {
        let code = plugin.code().map_err(|e| format!("{e:#}"))?;
        if code.set.is_none() {
            return Err(format!("{} does not export evaluate-each", plugin.id));
        }
        Ok(TriggerSet {
            plugin: Arc::new(plugin),
            members,
            answered: Default::default(),
            failed: Default::default(),
        })
    }

    /// The set's own plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// What it did so far.
    pub fn stats(&self) -> SetStats {
        use std::sync::atomic::Ordering::Relaxed;
        SetStats {
            answered: self.answered.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    /// The limits the set's call needs for `members`: their fuel, time,
    /// output and log added, the most memory of any.
    pub fn limits_for(members: &[Limits]) -> Limits {
        let mut l = Limits {
            fuel: 0,
            memory_bytes: 0,
            timeout: Duration::ZERO,
            output_bytes: 0,
            log_bytes: 0,
        };
        for m in members {
            l.fuel = l.fuel.saturating_add(m.fuel);
            l.memory_bytes = l.memory_bytes.max(m.memory_bytes);
            l.timeout = l.timeout.saturating_add(m.timeout);
            l.output_bytes = l.output_bytes.saturating_add(m.output_bytes);
            l.log_bytes = l.log_bytes.saturating_add(m.log_bytes);
        }
        l
    }

    /// The name the set runs `plugin` by, if it is one of the set's
    /// triggers, unchanged, with its own manifest's limits.
    pub fn member(&self, plugin: &Plugin) -> Option<&'static str> {
        self.members
            .iter()
            .find(|m| {
                plugin.kind == Kind::Trigger
                    && m.digest == plugin.digest
                    && m.limits == plugin.limits
            })
            .map(|m| m.name)
    }
}

/// What one call of the set returns: each trigger's answer, and where the
/// call stood as each began and at the end.
pub(super) struct SetAnswer {
    answers: Vec<Result<wit::Evaluation, String>>,
    marks: Vec<Mark>,
    end: Mark,
}

impl output::Output for SetAnswer {
    fn size(&self) -> usize {
        self.answers
            .iter()
            .map(|a| match a {
                Ok(e) => e.size(),
                Err(m) => m.len(),
            })
            .sum()
    }

    /// Each answer is checked as its trigger's own (see [`split`]).
    fn validate(&self, _now: i64) -> Result<(), String> {
        Ok(())
    }
}

/// What one call of an event's triggers answers: a trigger's evaluation,
/// or the set's answer for its triggers.
pub(super) enum Answer {
    One(wit::Evaluation),
    Set(SetAnswer),
}

impl output::Output for Answer {
    fn size(&self) -> usize {
        match self {
            Answer::One(e) => e.size(),
            Answer::Set(a) => a.size(),
        }
    }

    fn validate(&self, now: i64) -> Result<(), String> {
        match self {
            Answer::One(e) => e.validate(now),
            Answer::Set(a) => a.validate(now),
        }
    }
}

/// A trigger of the set in a call: its plugin, the name the set runs it
/// by, its context.
pub type Member<'a> = (&'a Arc<Plugin>, &'static str, wit::Context);

impl Runtime {
    /// Evaluate `ticket` with `set`'s `members` in one instance of the set,
    /// and with each of `others` in an instance of its own, all handed to
    /// a call thread once (one hand-off for an event's triggers, as
    /// without the set). The set's outcomes, in the order of its members
    /// (`None` when its call failed as a whole or its answer does not
    /// split: then call them one by one), and the others', in order.
    pub fn evaluate_triggers(
        &self,
        set: Option<(&TriggerSet, &[Member<'_>])>,
        others: &[(&Arc<Plugin>, wit::Context)],
        ticket: &Arc<wit::Ticket>,
    ) -> (
        Option<Vec<Outcome<wit::Evaluation>>>,
        Vec<Outcome<wit::Evaluation>>,
    ) {
        let mut batch: Vec<batch::Call<Answer>> = Vec::new();
        let set = set.filter(|(_, members)| !members.is_empty());
        let set = set.and_then(|(set, members)| {
            let call = set_call(set, members, ticket)?;
            batch.push(call);
            Some((set, members))
        });
        let mut wrong = Vec::new();
        let mut called = Vec::new();
        for (i, (plugin, ctx)) in others.iter().enumerate() {
            match trigger_call(plugin, ctx, ticket) {
                Ok(c) => {
                    called.push(*plugin);
                    let f = c.f;
                    batch.push(batch::Call {
                        plugin: c.plugin,
                        now: c.now,
                        seed: c.seed,
                        f: Box::new(move |p: &Plugin, store: &mut Store<CallState>| {
                            f(p, store).map(|r| r.map(Answer::One))
                        }),
                    });
                }
                Err(outcome) => wrong.push((i, *outcome)),
            }
        }
        let mut out = self.calls(&ticket.tenant, batch).into_iter();
        let set_outcomes = set.map(|(set, members)| {
            let split = out.next().and_then(|o| match o.result {
                Ok(Answer::Set(answer)) => split(&set.plugin, members, answer, o.report),
                Ok(Answer::One(_)) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "the trigger set failed; its triggers are called one by one");
                    None
                }
            });
            let counter = if split.is_some() {
                &set.answered
            } else {
                &set.failed
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            split
        });
        let mut rest: Vec<Outcome<wit::Evaluation>> = called
            .into_iter()
            .map(|plugin| match out.next() {
                Some(Outcome {
                    result: Ok(Answer::One(e)),
                    report,
                }) => Outcome {
                    result: Ok(e),
                    report,
                },
                Some(Outcome {
                    result: Err(e),
                    report,
                }) => Outcome {
                    result: Err(e),
                    report,
                },
                Some(_) | None => lost(plugin),
            })
            .collect();
        for (i, o) in wrong {
            rest.insert(i, o);
        }
        (set_outcomes.flatten(), rest)
    }
}

/// The set's call for `members`, or `None` if its code cannot be had.
fn set_call(
    set: &TriggerSet,
    members: &[Member<'_>],
    ticket: &Arc<wit::Ticket>,
) -> Option<batch::Call<Answer>> {
    let now = members.first()?.2.now;
    let code = set.plugin.code().ok()?;
    let calls: Vec<(String, wit::Context)> = members
        .iter()
        .map(|(_, name, ctx)| ((*name).to_string(), ctx.clone()))
        .collect();
    let log_caps: Vec<usize> = members.iter().map(|(p, _, _)| p.limits.log_bytes).collect();
    let t = ticket.clone();
    Some(batch::Call {
        plugin: set.plugin.clone(),
        now,
        seed: seed(&ticket.id, now),
        f: Box::new(move |_: &Plugin, store: &mut Store<CallState>| {
            let Some(pre) = &code.set else {
                unreachable!("checked when the set was made")
            };
            store.data_mut().member_log_caps = log_caps;
            let answers = pre
                .instantiate(&mut *store)
                .map_err(CallError::Instantiate)?
                .call_evaluate_each(&mut *store, &t, &calls)
                .map_err(CallError::Run)?;
            let end = Mark::now(store.get_fuel().unwrap_or(0), store.data());
            let marks = std::mem::take(&mut store.data_mut().marks);
            Ok(Ok(Answer::Set(SetAnswer {
                answers,
                marks,
                end,
            })))
        }),
    })
}

/// Each trigger's outcome from the set's answer: its own answer, fuel,
/// time and log, checked against its own limits. `None` if the answer does
/// not split (a count or a mark missing).
fn split(
    set: &Plugin,
    members: &[Member<'_>],
    answer: SetAnswer,
    report: CallReport,
) -> Option<Vec<Outcome<wit::Evaluation>>> {
    let n = members.len();
    if answer.answers.len() != n || answer.marks.len() != n {
        tracing::warn!(
            answers = answer.answers.len(),
            marks = answer.marks.len(),
            triggers = n,
            "the trigger set's answer does not split; its triggers are called one by one"
        );
        return None;
    }
    let mut log = report.log.into_iter();
    let span = |i: usize| {
        let end = answer.marks.get(i + 1).copied().unwrap_or(answer.end);
        (answer.marks[i], end)
    };
    // Each trigger's time from its mark to the next; the first's is the
    // rest of the call's (it also paid for the instance).
    let times: Vec<Duration> = (0..n)
        .map(|i| {
            let (begin, end) = span(i);
            end.at.saturating_duration_since(begin.at)
        })
        .collect();
    let first_time = report
        .duration
        .saturating_sub(times[1..].iter().sum::<Duration>());
    let mut out = Vec::with_capacity(n);
    for (i, ((plugin, _, ctx), result)) in members.iter().zip(answer.answers).enumerate() {
        let (begin, end) = span(i);
        let (fuel_from, duration) = if i == 0 {
            (set.limits.fuel, first_time)
        } else {
            (begin.fuel_left, times[i])
        };
        let fuel_used = fuel_from.saturating_sub(end.fuel_left);
        // The last also gets the lines flushed at the call's end.
        let lines = if i + 1 == n {
            usize::MAX
        } else {
            end.log_lines
                .saturating_sub(if i == 0 { 0 } else { begin.log_lines })
        };
        let mut own_log: Vec<LogLine> = log.by_ref().take(lines).collect();
        // Its own bytes dropped over its cap (the log holds each trigger
        // to its own from its mark on); the last also gets the call's end.
        let dropped_from = if i == 0 { 0 } else { begin.log_dropped };
        let mut dropped = if i + 1 == n {
            report.log_dropped_bytes
        } else {
            end.log_dropped
        }
        .saturating_sub(dropped_from);
        // Its own log cap: the log already held it there from its mark on
        // (`LogSink::begin_segment`); this also holds the first trigger's
        // lines written before its mark, which no segment covers.
        let mut bytes = 0;
        own_log.retain(|l| {
            bytes += l.message.len();
            let keep = bytes <= plugin.limits.log_bytes;
            if !keep {
                dropped += l.message.len();
            }
            keep
        });
        let id = || plugin.id.clone();
        let result = if fuel_used > plugin.limits.fuel {
            Err(PluginError::OutOfFuel {
                plugin: id(),
                limit: plugin.limits.fuel,
            })
        } else {
            match result {
                Ok(e) => checked(plugin, e, ctx.now),
                Err(message) => Err(PluginError::Refused {
                    plugin: id(),
                    message,
                }),
            }
        };
        out.push(Outcome {
            result,
            report: CallReport {
                fuel_used,
                peak_memory_bytes: report.peak_memory_bytes,
                duration,
                log: own_log,
                log_dropped_bytes: dropped,
            },
        });
    }
    Some(out)
}
