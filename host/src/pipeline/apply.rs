//! What an event and a decision do to a ticket's state: pure changes, the
//! same in the server and in replay. What they mean for the rest of the
//! world (an agent's load, timers to cancel or set) is returned as
//! [`Effects`] for the caller to carry out: the engine in its transaction,
//! replay on its virtual clock.

use super::{Decision, Escalated};
use crate::model::{
    Agent, AuthorKind, EscalationState, Event, HistoryEntry, Message, NotificationPlan,
    NotificationStep, Recipient, Routing, SignalAction, StatusChange, Target, Ticket, TicketState,
    TicketStatus, Tier,
};
use chrono::{DateTime, Utc};

/// Timers an event or a decision ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Pending fallback reassignments (the ticket was claimed, or
    /// routed again).
    Fallbacks,
    /// Plan steps that stop when the ticket is claimed.
    StepsStoppedByClaim,
    /// Every plan step and fallback (a new escalation's plan supersedes
    /// them).
    Plan,
}

/// What the caller must do besides the ticket's own state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// One open ticket of load moves from the first agent to the second
    /// (either may be absent; the second was just assigned it).
    pub load: Option<(Option<String>, Option<String>)>,
    /// Timers to cancel, with the reason recorded on them.
    pub cancel: Vec<(Cancel, &'static str)>,
    /// Whether [`decision`] changed the ticket's own state: most
    /// decisions (no escalation, no news, no warning) do not, and the
    /// caller then need not write the ticket back (a megabyte, for a
    /// ticket with thousands of messages).
    pub ticket_changed: bool,
}

impl Effects {
    fn load(&mut self, from: Option<String>, to: Option<String>) {
        if from != to {
            self.load = Some((from, to));
        }
    }
}

/// A new ticket as the server stores it: a tier the client sent is the
/// desk's priority (triggers see it; it is not an escalation, and
/// escalations only raise it); assignee and claim are Escalator's to
/// decide; each message has an
/// id (a message the desk sent twice is kept once); the status history
/// starts at creation.
pub fn created(mut ticket: Ticket, tenant: &str, now: DateTime<Utc>) -> TicketState {
    ticket.tenant = tenant.to_string();
    ticket.assignee = None;
    ticket.claimed_at = None;
    if ticket.status_history.is_empty() {
        ticket.status_history.push(StatusChange {
            status: ticket.status,
            at: ticket.created_at,
        });
    }
    for (i, m) in ticket.messages.iter_mut().enumerate() {
        if m.id.is_empty() {
            m.id = format!("m{}", i + 1);
        }
    }
    let mut seen = std::collections::HashSet::new();
    ticket.messages.retain(|m| seen.insert(m.id.clone()));
    ticket.updated_at = Some(now);
    TicketState::new(ticket)
}

/// Why `event` changes nothing because the ticket already has it, if so.
pub fn already_applied(state: &TicketState, event: &Event) -> Option<String> {
    let t = &state.ticket;
    match event {
        Event::Message { id: Some(id), .. } if t.messages.iter().any(|m| &m.id == id) => {
            Some(format!("message {id} is already on the ticket"))
        }
        Event::Claim { agent }
            if t.claimed_at.is_some() && t.assignee.as_deref() == Some(agent.as_str()) =>
        {
            Some(format!("already claimed by {agent}"))
        }
        _ => None,
    }
}

/// Apply `event` to the ticket at `now`. An out-of-range value is an
/// error (nothing changed). A claim's agent must exist: the caller checks.
pub fn event(
    state: &mut TicketState,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Effects, String> {
    let mut fx = Effects::default();
    let t = &mut state.ticket;
    let next_id = |t: &Ticket| format!("m{}", t.messages.len() + 1);
    let set_status = |t: &mut Ticket, status: TicketStatus| {
        if t.status != status {
            t.status = status;
            t.status_history.push(StatusChange { status, at: now });
        }
    };
    match event {
        Event::Message { author, .. } => {
            if let Some(m) = event.to_message(|| next_id(t), now) {
                t.messages.push(m);
            }
            if *author == AuthorKind::HumanAgent {
                state.human_replied_at = Some(now);
            }
            // A customer writing again reopens a solved or pending ticket.
            if *author == AuthorKind::Customer
                && matches!(
                    t.status,
                    TicketStatus::Pending | TicketStatus::Solved | TicketStatus::OnHold
                )
            {
                set_status(t, TicketStatus::Open);
            }
        }
        Event::AiAnalysis {
            confidence,
            intent,
            category,
            reasoning,
            solutions_tried,
        } => {
            if !(0.0..=1.0).contains(confidence) {
                return Err(format!("confidence {confidence} is outside 0..1"));
            }
            t.ai_analysis = Some(crate::model::AiAnalysis {
                confidence: *confidence,
                intent: intent.clone(),
                category: category.clone(),
                reasoning: reasoning.clone(),
                solutions_tried: solutions_tried.clone(),
                analyzed_at: Some(now),
            });
        }
        Event::Claim { agent } => {
            let previous = t.assignee.replace(agent.clone());
            t.claimed_at = Some(now);
            state.queue = None;
            fx.load(previous, Some(agent.clone()));
            fx.cancel.push((Cancel::Fallbacks, "claimed"));
            fx.cancel.push((Cancel::StepsStoppedByClaim, "claimed"));
            state.history.push(HistoryEntry {
                at: now,
                what: "claimed".into(),
                detail: format!("claimed by {agent}"),
            });
        }
        Event::Reply { agent, body } => {
            let id = next_id(t);
            t.messages.push(Message {
                id,
                author: AuthorKind::HumanAgent,
                author_id: Some(agent.clone()),
                body: body.clone(),
                sent_at: now,
                sentiment: None,
            });
            state.human_replied_at = Some(now);
        }
        Event::Status { status } => {
            let was_open = t.unresolved();
            set_status(t, *status);
            if was_open && !t.unresolved() {
                fx.load(t.assignee.clone(), None);
            }
        }
        Event::Resolve {} => {
            if t.unresolved() {
                set_status(t, TicketStatus::Solved);
                fx.load(t.assignee.clone(), None);
            }
        }
        Event::Csat { score, comment } => {
            if !(1..=5).contains(score) {
                return Err(format!("score {score} is outside 1..5"));
            }
            t.tags.retain(|x| !x.starts_with("csat:"));
            t.tags.push(format!("csat:{score}"));
            state.csat = Some(crate::model::CsatRating {
                score: *score,
                at: now,
            });
            if let Some(c) = comment {
                let id = next_id(t);
                t.messages.push(Message {
                    id,
                    author: AuthorKind::Customer,
                    author_id: None,
                    body: c.clone(),
                    sent_at: now,
                    sentiment: None,
                });
            }
        }
    }
    t.updated_at = Some(now);
    Ok(fx)
}

/// The recipient a routing target is notified as.
pub fn recipient_of(target: &Target) -> Recipient {
    match target {
        Target::Agent(a) => Recipient::Agent(a.clone()),
        Target::Queue(q) => Recipient::Team(q.clone()),
    }
}

/// The plan's steps that alert the routed-to recipient at once.
pub fn first_steps<'a>(
    plan: Option<&'a NotificationPlan>,
    routing: &Routing,
) -> Vec<&'a NotificationStep> {
    let primary = recipient_of(&routing.target);
    plan.map(|p| {
        p.steps
            .iter()
            .filter(|s| s.delay_ms == 0 && s.recipient == primary)
            .collect()
    })
    .unwrap_or_default()
}

/// The conversation note of an escalation to `tier` at `at`: the line for
/// the customer if the notifier wrote one, else a note. Triggers read its
/// time as the moment the ticket reached its tier (the SLA clocks start
/// the tier's response target there). Its id counts the ticket's
/// escalations, so it does not depend on where the decision is stored.
pub fn escalation_note(
    ticket: &Ticket,
    tier: Tier,
    plan: Option<&NotificationPlan>,
    at: DateTime<Utc>,
) -> Message {
    let n = ticket
        .messages
        .iter()
        .filter(|m| m.id.starts_with(crate::model::ESCALATION_NOTE))
        .count();
    let body = plan
        .and_then(|p| p.customer_message.clone())
        .unwrap_or_else(|| format!("Escalated to the {} tier.", tier.name()));
    Message::escalation_note(n + 1, body, at)
}

/// Apply a decision to the ticket: an escalation's tier, assignment,
/// reasons, history and note; new causes on an escalated ticket; warnings.
/// `decision` is the stored decision's id (its plan is the one in force).
pub fn decision(
    state: &mut TicketState,
    d: &Decision,
    decision: i64,
    now: DateTime<Utc>,
) -> Effects {
    let mut fx = Effects::default();
    match &d.escalation {
        Some(e) => {
            escalation(state, e, decision, now, &mut fx);
            fx.ticket_changed = true;
        }
        None => {
            if let (Some(esc), false) = (&mut state.escalation, d.update.is_empty()) {
                esc.reasons.extend(d.update.iter().cloned());
                fx.ticket_changed = true;
            }
            for s in d.fresh.iter().filter(|s| s.action == SignalAction::Warn) {
                state.history.push(HistoryEntry {
                    at: now,
                    what: if s.is_sla_breach() {
                        "breached"
                    } else {
                        "warning"
                    }
                    .into(),
                    detail: s.reason.clone(),
                });
                fx.ticket_changed = true;
            }
        }
    }
    fx
}

fn escalation(
    state: &mut TicketState,
    x: &Escalated,
    decision: i64,
    now: DateTime<Utc>,
    fx: &mut Effects,
) {
    let (e, routing, plan) = (&x.escalation, &x.routing, x.plan.as_ref());
    fx.cancel
        .push((Cancel::Plan, "superseded by a new escalation"));
    let previous = assign(state, &routing.target);
    fx.load(previous.clone(), state.ticket.assignee.clone());
    // A tier the desk gave the ticket stays if it is higher.
    state.ticket.tier = state.ticket.tier.max(Some(e.tier));
    let mut reasons = state
        .escalation
        .as_ref()
        .map(|x| x.reasons.clone())
        .unwrap_or_default();
    for s in &e.signals {
        if !reasons.iter().any(|r| r.key == s.key) {
            reasons.push(s.clone());
        }
    }
    state.escalation = Some(EscalationState {
        tier: e.tier,
        escalated_at: now,
        reasons,
        response_target_ms: e.response_target_ms,
        routing: routing.clone(),
        plan_decision: decision,
        alert_channels: first_steps(plan, routing)
            .iter()
            .map(|s| s.channel)
            .collect(),
        customer_message: plan.and_then(|p| p.customer_message.clone()),
    });
    let again = previous.is_some() || state.history.iter().any(|h| h.what == "escalated");
    state.history.push(HistoryEntry {
        at: now,
        what: if again { "re-escalated" } else { "escalated" }.into(),
        detail: format!(
            "{} tier: {}",
            e.tier.name(),
            e.signals
                .iter()
                .filter(|s| s.action == SignalAction::Escalate)
                .map(|s| s.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    });
    state.history.push(HistoryEntry {
        at: now,
        what: "assigned".into(),
        detail: format!("{}: {}", target_name(&routing.target), routing.reason),
    });
    state.ticket.messages.push(x.note.clone());
}

/// Give the ticket to an agent, or put it in a queue; who had it before.
fn assign(state: &mut TicketState, target: &Target) -> Option<String> {
    let previous = state.ticket.assignee.clone();
    match target {
        Target::Agent(a) => {
            state.ticket.assignee = Some(a.clone());
            state.queue = None;
        }
        Target::Queue(q) => {
            state.ticket.assignee = None;
            state.queue = Some(q.clone());
        }
    }
    previous
}

/// Give the ticket to `target` (a fallback, or a new routing after an
/// agent left or came back), saying why.
pub fn reassignment(
    state: &mut TicketState,
    target: &Target,
    why: &str,
    at: DateTime<Utc>,
) -> Effects {
    let mut fx = Effects::default();
    let previous = assign(state, target);
    fx.load = Some((previous.clone(), state.ticket.assignee.clone()));
    state.history.push(HistoryEntry {
        at,
        what: "reassigned".into(),
        detail: format!(
            "{} → {}: {why}",
            previous.as_deref().unwrap_or("nobody"),
            target_name(target)
        ),
    });
    fx
}

/// Move one open ticket of load in `roster`: the first agent loses it, the
/// second gains it and was just assigned (either may be absent).
pub fn move_load(
    roster: &mut [Agent],
    (from, to): &(Option<String>, Option<String>),
    now: DateTime<Utc>,
) {
    if let Some(a) = from
        .as_ref()
        .and_then(|id| roster.iter_mut().find(|a| &a.id == id))
    {
        a.open_tickets = a.open_tickets.saturating_sub(1);
    }
    if let Some(a) = to
        .as_ref()
        .and_then(|id| roster.iter_mut().find(|a| &a.id == id))
    {
        a.open_tickets += 1;
        a.last_assigned_at = Some(now);
    }
}

/// Why a due fallback does not move the ticket, if it does not.
pub fn fallback_skipped(ticket: &Ticket) -> Option<&'static str> {
    if ticket.claimed_at.is_some() {
        Some("skipped: claimed")
    } else if !ticket.unresolved() {
        Some("skipped: resolved")
    } else {
        None
    }
}

/// Why a due fallback moves the ticket.
pub fn fallback_reason(step: &crate::model::FallbackStep) -> String {
    format!(
        "unclaimed after {} min: {}",
        step.after_ms / 60_000,
        step.reason
    )
}

/// An agent's id, or `queue NAME`, for people.
pub fn target_name(t: &Target) -> String {
    match t {
        Target::Agent(a) => a.clone(),
        Target::Queue(q) => format!("queue {q}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noon() -> DateTime<Utc> {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    fn state() -> TicketState {
        created(Ticket::new("T", noon()), "acme", noon())
    }

    #[test]
    fn a_claim_moves_the_load_and_ends_the_fallbacks_and_claim_bound_steps() {
        let mut s = state();
        s.ticket.assignee = Some("ana".into());
        s.queue = None;
        let fx = event(&mut s, &Event::Claim { agent: "bo".into() }, noon()).unwrap();
        assert_eq!(fx.load, Some((Some("ana".into()), Some("bo".into()))));
        assert_eq!(
            fx.cancel.iter().map(|c| c.0).collect::<Vec<_>>(),
            [Cancel::Fallbacks, Cancel::StepsStoppedByClaim]
        );
        assert_eq!(s.ticket.claimed_at, Some(noon()));
        // Claimed by whoever has it already: no load moves.
        let fx = event(&mut s, &Event::Claim { agent: "bo".into() }, noon()).unwrap();
        assert_eq!(fx.load, None);
    }

    #[test]
    fn solving_frees_the_assignee_once_and_out_of_range_values_change_nothing() {
        let mut s = state();
        s.ticket.assignee = Some("bo".into());
        let fx = event(&mut s, &Event::Resolve {}, noon()).unwrap();
        assert_eq!(fx.load, Some((Some("bo".into()), None)));
        let fx = event(&mut s, &Event::Resolve {}, noon()).unwrap();
        assert_eq!(fx.load, None, "already solved");
        let before = s.clone();
        let bad = Event::Csat {
            score: 9,
            comment: None,
        };
        assert!(event(&mut s, &bad, noon()).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn a_decision_that_neither_escalates_nor_tells_nor_warns_leaves_the_ticket_as_it_was() {
        let mut s = state();
        let quiet = Decision {
            tier: None,
            signals: Vec::new(),
            shadow_signals: Vec::new(),
            wake_at: None,
            fresh: Vec::new(),
            escalation: None,
            update: Vec::new(),
            wake: None,
            runs: Vec::new(),
        };
        let before = serde_json::to_string(&s).unwrap();
        let fx = decision(&mut s, &quiet, 7, noon());
        assert!(!fx.ticket_changed);
        assert_eq!(serde_json::to_string(&s).unwrap(), before);
        // A warning changes it (its history), and says so.
        let warn = crate::model::Signal {
            action: SignalAction::Warn,
            tier: Tier::High,
            key: "sla:first-reply:warn".into(),
            reason: "first reply due in 10 min".into(),
            evidence: Vec::new(),
            target_skill: None,
            target_queue: None,
        };
        let warned = Decision {
            fresh: vec![warn],
            ..quiet
        };
        let fx = decision(&mut s, &warned, 8, noon());
        assert!(fx.ticket_changed);
        assert_ne!(serde_json::to_string(&s).unwrap(), before);
    }

    #[test]
    fn escalation_notes_count_the_tickets_escalations() {
        let mut t = Ticket::new("T", noon());
        let first = escalation_note(&t, Tier::High, None, noon());
        assert_eq!(first.id, "escalation-1");
        assert_eq!(first.body, "Escalated to the high tier.");
        t.messages.push(first);
        assert_eq!(
            escalation_note(&t, Tier::Critical, None, noon()).id,
            "escalation-2"
        );
    }

    #[test]
    fn a_desk_given_tier_is_kept_and_the_assignee_is_left_to_escalator() {
        let mut t = Ticket::new("T", noon());
        t.tier = Some(Tier::Critical);
        t.assignee = Some("someone".into());
        let s = created(t, "acme", noon());
        assert_eq!(s.ticket.tier, Some(Tier::Critical));
        assert_eq!(s.ticket.assignee, None, "Escalator decides who has it");
    }
}
