//! The replay loop: one ticket's events through the server's own decision
//! procedure, on a virtual clock.

use super::Case;
use crate::matrix::ResponseTargets;
use crate::model::{self, Event, EventKind, FallbackStep, Ticket, TicketStatus, Tier};
use crate::pipeline::{self, Deadlines, PluginSet, apply};
use crate::runtime::Runtime;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What a replay decides with: the plugins, the roster and the matrix's
/// response targets.
#[derive(Debug, Clone, Copy)]
pub struct Offline<'a> {
    /// The plugin runtime.
    pub runtime: &'a Runtime,
    /// The plugin set.
    pub set: &'a PluginSet,
    /// The roster (each ticket starts from it as given).
    pub roster: &'a [model::Agent],
    /// Response targets per tier.
    pub targets: &'a ResponseTargets,
}

/// What replaying one ticket decided.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// Ticket id.
    pub id: String,
    /// The tier it reached (`None`: stayed with the AI).
    pub tier: Option<Tier>,
    /// When it first escalated, minutes after creation.
    pub minutes_to_escalation: Option<f64>,
    /// The keys of the escalate signals that fired, in order.
    pub reasons: Vec<String>,
    /// Who has it at the end (an agent), if anyone.
    pub assignee: Option<String>,
    /// The queue it waits in at the end, when no agent has it.
    pub queue: Option<String>,
    /// Whether an SLA breach fired.
    pub sla_breach: bool,
    /// Evaluations run.
    pub evaluations: usize,
    /// Plugin errors.
    pub errors: usize,
    /// Calls made again after missing their wall-clock deadline (the
    /// machine was busy; the result does not depend on it).
    #[serde(skip_serializing_if = "is_zero")]
    pub deadline_retries: usize,
    /// The expected tier, if labelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Option<Tier>>,
    /// The SLA outcome, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made_sla: Option<bool>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The most evaluations one ticket gets (a trigger that keeps asking to be
/// woken cannot stall a replay).
pub const MAX_EVALUATIONS: usize = 256;

/// A historical ticket as the events a server would have received: the
/// ticket as created (what had happened by its creation), then each later
/// message and status change at its own time, up to when the ticket ended
/// (solved or closed), or, if it never did, a close at its last moment.
pub fn events(ticket: &Ticket) -> (Ticket, Vec<(DateTime<Utc>, Event)>) {
    let created = ticket.created_at;
    let end = ticket
        .status_history
        .iter()
        .find(|s| matches!(s.status, TicketStatus::Solved | TicketStatus::Closed))
        .map(|s| s.at);
    let last = ticket
        .messages
        .iter()
        .map(|m| m.sent_at)
        .chain(ticket.status_history.iter().map(|s| s.at))
        .max()
        .unwrap_or(created)
        .max(created);
    let until = end.unwrap_or(last);
    let mut first = ticket.clone();
    first.messages.retain(|m| m.sent_at <= created);
    first.status_history.retain(|s| s.at <= created);
    first.status = first
        .status_history
        .last()
        .map_or(TicketStatus::Open, |s| s.status);
    first.updated_at = None;
    let mut later: Vec<(DateTime<Utc>, Event)> = ticket
        .messages
        .iter()
        .filter(|m| m.sent_at > created && m.sent_at <= until)
        .map(|m| {
            (
                m.sent_at,
                Event::Message {
                    author: m.author,
                    author_id: m.author_id.clone(),
                    body: m.body.clone(),
                    id: (!m.id.is_empty()).then(|| m.id.clone()),
                    sent_at: Some(m.sent_at),
                    sentiment: m.sentiment,
                },
            )
        })
        .collect();
    // Status changes after the messages of the same moment (stable sort).
    later.extend(
        ticket
            .status_history
            .iter()
            .filter(|s| s.at > created && s.at <= until)
            .map(|s| (s.at, Event::Status { status: s.status })),
    );
    later.sort_by_key(|(at, _)| *at);
    let resolved_at_end = later
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::Status { status } => Some(*status),
            _ => None,
        })
        .or(Some(first.status))
        .is_some_and(|s| matches!(s, TicketStatus::Solved | TicketStatus::Closed));
    if !resolved_at_end {
        later.push((
            until,
            Event::Status {
                status: TicketStatus::Closed,
            },
        ));
    }
    (first, later)
}

/// A timer on the virtual clock: what the server would have stored.
#[derive(Debug, Clone)]
enum Timer {
    Wake,
    Fallback(FallbackStep),
}

/// One ticket's replay in progress: its state and what the server would
/// keep beside it.
struct Life<'a> {
    offline: Offline<'a>,
    state: model::TicketState,
    roster: Vec<model::Agent>,
    fired: BTreeSet<String>,
    timers: BTreeMap<(DateTime<Utc>, u64), Timer>,
    next_timer: u64,
    decisions: i64,
    first: Option<DateTime<Utc>>,
    reasons: Vec<String>,
    sla_breach: bool,
    evaluations: usize,
    errors: usize,
    retries: usize,
}

impl Life<'_> {
    fn timer(&mut self, at: DateTime<Utc>, t: Timer) {
        self.timers.insert((at, self.next_timer), t);
        self.next_timer += 1;
    }

    fn carry_out(&mut self, fx: &apply::Effects, now: DateTime<Utc>) {
        if let Some(load) = &fx.load {
            apply::move_load(&mut self.roster, load, now);
        }
        // Plan steps are notifications only; fallbacks move the ticket.
        let ends_fallbacks = fx
            .cancel
            .iter()
            .any(|(c, _)| matches!(c, apply::Cancel::Fallbacks | apply::Cancel::Plan));
        if ends_fallbacks {
            self.timers.retain(|_, t| !matches!(t, Timer::Fallback(_)));
        }
    }

    /// Decide as the server does at `now` for `event`, and apply it.
    fn decide(&mut self, now: DateTime<Utc>, event: EventKind) {
        if self.evaluations >= MAX_EVALUATIONS {
            return;
        }
        self.evaluations += 1;
        let ask = pipeline::Ask {
            runtime: self.offline.runtime,
            set: self.offline.set,
            roster: &self.roster,
            targets: self.offline.targets,
            now,
            event,
            deadlines: Deadlines::Retried,
        };
        let d = pipeline::decide(&ask, &self.state, &self.fired);
        self.errors += d.runs.iter().filter(|r| r.error.is_some()).count();
        self.retries += d.runs.iter().map(|r| r.retries as usize).sum::<usize>();
        for s in &d.fresh {
            self.fired.insert(s.key.clone());
            if s.action == model::SignalAction::Escalate {
                self.reasons.push(s.key.clone());
            }
            if s.is_sla_breach() {
                self.sla_breach = true;
            }
        }
        self.decisions += 1;
        let fx = apply::decision(&mut self.state, &d, self.decisions, now);
        self.carry_out(&fx, now);
        if let Some(e) = &d.escalation {
            self.first.get_or_insert(now);
            for step in &e.routing.fallback {
                if let Some(at) = model::after(now, step.after_ms) {
                    self.timer(at, Timer::Fallback(step.clone()));
                }
            }
        }
        self.timers.retain(|_, t| !matches!(t, Timer::Wake));
        if let Some(at) = d.wake {
            self.timer(at, Timer::Wake);
        }
    }

    /// Fire every timer due by `until`, in order (each may set more).
    fn run_timers(&mut self, until: Option<DateTime<Utc>>) {
        while let Some(entry) = self.timers.first_entry() {
            let at = entry.key().0;
            if until.is_some_and(|u| at > u) || self.evaluations >= MAX_EVALUATIONS {
                return;
            }
            match entry.remove() {
                Timer::Wake => self.decide(at, EventKind::Tick),
                Timer::Fallback(step) => {
                    if apply::fallback_skipped(&self.state.ticket).is_none() {
                        let why = apply::fallback_reason(&step);
                        let fx = apply::reassignment(&mut self.state, &step.target, &why, at);
                        self.carry_out(&fx, at);
                    }
                }
            }
        }
    }
}

/// Replay one case.
pub fn replay_case(offline: &Offline<'_>, case: &Case) -> Replayed {
    let (first, events) = events(&case.ticket);
    let created = first.created_at;
    let mut life = Life {
        offline: *offline,
        state: apply::created(first, "replay", created),
        roster: offline.roster.to_vec(),
        fired: BTreeSet::new(),
        timers: BTreeMap::new(),
        next_timer: 0,
        decisions: 0,
        first: None,
        reasons: Vec::new(),
        sla_breach: false,
        evaluations: 0,
        errors: 0,
        retries: 0,
    };
    life.decide(created, EventKind::TicketCreated);
    for (at, event) in events {
        life.run_timers(Some(at));
        if apply::already_applied(&life.state, &event).is_some() {
            continue;
        }
        match apply::event(&mut life.state, &event, at) {
            Ok(fx) => life.carry_out(&fx, at),
            Err(_) => continue,
        }
        life.decide(at, event.kind());
    }
    life.run_timers(None);
    let state = &life.state;
    Replayed {
        id: state.ticket.id.clone(),
        tier: state.escalation.as_ref().map(|e| e.tier),
        minutes_to_escalation: life
            .first
            .map(|f| (f - created).num_seconds() as f64 / 60.0),
        reasons: life.reasons,
        assignee: state.ticket.assignee.clone(),
        queue: state.queue.clone(),
        sla_breach: life.sla_breach,
        evaluations: life.evaluations,
        errors: life.errors,
        deadline_retries: life.retries,
        expected: case.expected,
        made_sla: case.made_sla,
    }
}

/// Replay `cases` on all cores; results in input order.
pub fn replay_batch(offline: &Offline<'_>, cases: &[Case]) -> Vec<Replayed> {
    crate::cores::map(cases, |case| replay_case(offline, case))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthorKind, Message, StatusChange};

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-11-27T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn message(id: &str, minutes: i64) -> Message {
        Message {
            id: id.into(),
            author: AuthorKind::Customer,
            author_id: None,
            body: id.into(),
            sent_at: at(minutes),
            sentiment: None,
        }
    }

    #[test]
    fn a_history_that_ends_unsolved_is_closed_at_its_last_moment() {
        let t = Ticket {
            messages: vec![message("m1", 0), message("m2", 5), message("m3", 9)],
            ..Ticket::new("T", at(0))
        };
        let (first, later) = events(&t);
        assert_eq!(first.messages.len(), 1, "what had happened by creation");
        assert_eq!(first.status, TicketStatus::Open);
        let moments: Vec<(i64, &str)> = later
            .iter()
            .map(|(when, e)| ((*when - at(0)).num_minutes(), e.name()))
            .collect();
        assert_eq!(moments, [(5, "message"), (9, "message"), (9, "status")]);
        assert!(matches!(
            later.last().unwrap().1,
            Event::Status {
                status: TicketStatus::Closed
            }
        ));
    }

    #[test]
    fn a_solved_ticket_ends_when_it_was_solved_and_nothing_after_counts() {
        let mut t = Ticket {
            messages: vec![message("m1", 0), message("m2", 30)],
            ..Ticket::new("T", at(0))
        };
        t.status_history = vec![
            StatusChange {
                status: TicketStatus::New,
                at: at(0),
            },
            StatusChange {
                status: TicketStatus::Solved,
                at: at(20),
            },
        ];
        let (first, later) = events(&t);
        assert_eq!(first.status, TicketStatus::New);
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(later[0].0, at(20));
        assert!(matches!(
            later[0].1,
            Event::Status {
                status: TicketStatus::Solved
            }
        ));
    }
}
