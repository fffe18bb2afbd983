//! A ticket's state as the engine keeps it, and the events that change it:
//! the same types in the server, in replay and in the store.

use super::*;
use schemars::JsonSchema;

/// What the engine keeps about a ticket beyond the ticket itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketState {
    /// The ticket as plugins see it.
    pub ticket: Ticket,
    /// The queue it sits in when no agent has it.
    #[serde(default)]
    pub queue: Option<String>,
    /// The current escalation, if it escalated.
    #[serde(default)]
    pub escalation: Option<EscalationState>,
    /// What happened to it, oldest first: escalations, assignments,
    /// claims, notifications planned.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// The customer's latest satisfaction rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csat: Option<CsatRating>,
    /// When a human agent last wrote to the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_replied_at: Option<DateTime<Utc>>,
}

/// A satisfaction rating, as a value (plugins still see it as the tag
/// `csat:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsatRating {
    /// 1 (very unsatisfied) to 5.
    pub score: u8,
    /// When it was given.
    pub at: DateTime<Utc>,
}

/// An escalation in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationState {
    /// Its tier.
    pub tier: Tier,
    /// When it (last) escalated.
    pub escalated_at: DateTime<Utc>,
    /// Every reason, with evidence, accumulated over the ticket's life.
    pub reasons: Vec<Signal>,
    /// The response target of the tier, ms.
    pub response_target_ms: Option<u64>,
    /// Who got it and the fallback path.
    pub routing: Routing,
    /// The decision whose plan is in force (its steps are timers).
    pub plan_decision: i64,
    /// The channels the first recipient was alerted on (a fallback
    /// assignee is alerted the same way).
    pub alert_channels: Vec<Channel>,
    /// The line for the customer, if the notifier gave one.
    pub customer_message: Option<String>,
}

impl TicketState {
    /// When the ticket first escalated (its history), else the
    /// escalation's time.
    pub fn first_escalated(&self) -> Option<DateTime<Utc>> {
        self.history
            .iter()
            .find(|h| h.what == "escalated")
            .map(|h| h.at)
            .or_else(|| self.escalation.as_ref().map(|e| e.escalated_at))
    }

    /// When the ticket was resolved (solved or closed, the last time), if
    /// it is.
    pub fn resolved_at(&self) -> Option<DateTime<Utc>> {
        if self.ticket.unresolved() {
            return None;
        }
        self.ticket
            .status_history
            .iter()
            .rev()
            .find(|c| matches!(c.status, TicketStatus::Solved | TicketStatus::Closed))
            .map(|c| c.at)
    }

    /// Escalated, then resolved without a human writing to the customer
    /// after the escalation: a human was called for nothing.
    pub fn over_escalated(&self) -> bool {
        match (self.first_escalated(), self.resolved_at()) {
            (Some(first), Some(_)) => self.human_replied_at.is_none_or(|at| at < first),
            _ => false,
        }
    }

    /// Why a ticket that never escalated should have: its SLA breached
    /// (`sla-breach`), or the customer rated it 1 or 2 (`low-csat`).
    pub fn under_escalated(&self) -> Option<&'static str> {
        if self.escalation.is_some() {
            return None;
        }
        if self.history.iter().any(|h| h.what == "breached") {
            Some("sla-breach")
        } else if self.csat.is_some_and(|c| c.score <= 2) {
            Some("low-csat")
        } else {
            None
        }
    }

    /// A ticket that has not escalated, with no history.
    pub fn new(ticket: Ticket) -> TicketState {
        TicketState {
            ticket,
            queue: None,
            escalation: None,
            history: Vec::new(),
            csat: None,
            human_replied_at: None,
        }
    }

    /// `f` of the state without its conversation: the messages are set
    /// aside (not copied) and put back. The store keeps the conversation
    /// apart, so a big ticket is not rewritten whole on every change.
    pub fn apart_from_messages<R>(&mut self, f: impl FnOnce(&TicketState) -> R) -> R {
        let messages = std::mem::take(&mut self.ticket.messages);
        let r = f(self);
        self.ticket.messages = messages;
        r
    }
}

impl EscalationState {
    /// The escalation as routers and notifiers see it: every reason so far.
    pub fn as_escalation(&self) -> Escalation {
        Escalation {
            tier: self.tier,
            signals: self.reasons.clone(),
            response_target_ms: self.response_target_ms,
        }
    }
}

/// One line of a ticket's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// What, e.g. `escalated`, `assigned`, `claimed`, `reassigned`.
    pub what: String,
    /// Details for people.
    pub detail: String,
}

/// An event about a ticket, as the API receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Event {
    /// A message in the conversation.
    Message {
        /// Who wrote it.
        author: AuthorKind,
        /// The author's id.
        #[serde(default)]
        author_id: Option<String>,
        /// The text.
        body: String,
        /// The message's id in the source system.
        #[serde(default)]
        id: Option<String>,
        /// When it was sent (default: when received).
        #[serde(default)]
        sent_at: Option<DateTime<Utc>>,
        /// Sentiment from upstream, -1..1.
        #[serde(default)]
        sentiment: Option<f32>,
    },
    /// The AI agent's analysis.
    AiAnalysis {
        /// Confidence 0..1.
        #[schemars(range(min = 0.0, max = 1.0))]
        confidence: f32,
        /// Intent.
        #[serde(default)]
        intent: Option<String>,
        /// Category.
        #[serde(default)]
        category: Option<String>,
        /// Reasoning.
        #[serde(default)]
        reasoning: String,
        /// Solutions offered or tried.
        #[serde(default)]
        solutions_tried: Vec<String>,
    },
    /// A human claims (acknowledges) the ticket.
    Claim {
        /// The agent's id.
        agent: String,
    },
    /// A human agent replies to the customer.
    Reply {
        /// The agent's id.
        agent: String,
        /// The text.
        body: String,
    },
    /// The status changes.
    Status {
        /// The new status.
        status: TicketStatus,
    },
    /// The ticket is solved.
    Resolve {},
    /// The customer rated the support, 1..5.
    Csat {
        /// The score.
        #[schemars(range(min = 1, max = 5))]
        score: u8,
        /// The comment.
        #[serde(default)]
        comment: Option<String>,
    },
}

impl Event {
    /// The message a `message` event adds to the conversation: its own id,
    /// or `id()` without one; sent when it says, or at `at`. `None` for
    /// any other event.
    pub fn to_message(&self, id: impl FnOnce() -> String, at: DateTime<Utc>) -> Option<Message> {
        let Event::Message {
            author,
            author_id,
            body,
            id: own,
            sent_at,
            sentiment,
        } = self
        else {
            return None;
        };
        Some(Message {
            id: own.clone().unwrap_or_else(id),
            author: *author,
            author_id: author_id.clone(),
            body: body.clone(),
            sent_at: sent_at.unwrap_or(at),
            sentiment: *sentiment,
        })
    }

    /// The event kind plugins see.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Message {
                author: AuthorKind::HumanAgent,
                ..
            }
            | Event::Reply { .. } => EventKind::AgentReplied,
            Event::Message { .. } => EventKind::MessageAdded,
            Event::AiAnalysis { .. } => EventKind::AiAnalysis,
            Event::Claim { .. } => EventKind::Claimed,
            Event::Status { .. } | Event::Resolve {} => EventKind::StatusChanged,
            Event::Csat { .. } => EventKind::CsatRating,
        }
    }

    /// Its name in the event log.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Message { .. } => "message",
            Event::AiAnalysis { .. } => "ai-analysis",
            Event::Claim { .. } => "claim",
            Event::Reply { .. } => "reply",
            Event::Status { .. } => "status",
            Event::Resolve {} => "resolve",
            Event::Csat { .. } => "csat",
        }
    }
}
