//! Ready-made values for plugin unit tests: start from these and change the
//! fields a test is about with struct update syntax.
//!
//! ```
//! use escalator_guest::testing;
//! use escalator_guest::{AuthorKind, Ticket};
//!
//! let ticket = Ticket {
//!     subject: "Refund".into(),
//!     messages: vec![testing::message(AuthorKind::Customer, "I want a refund", 0)],
//!     ..testing::ticket()
//! };
//! assert_eq!(ticket.messages.len(), 1);
//! ```

use crate::{
    Agent, AgentRole, AgentStatus, AuthorKind, Customer, Escalation, Message, Ticket,
    TicketChannel, TicketStatus, Tier, Timestamp,
};
use alloc::string::String;
use alloc::vec::Vec;

/// A new, empty ticket `T-1` of tenant `acme`, created at time 0.
pub fn ticket() -> Ticket {
    Ticket {
        id: String::from("T-1"),
        tenant: String::from("acme"),
        subject: String::new(),
        category: None,
        channel: TicketChannel::Chat,
        status: TicketStatus::New,
        status_history: Vec::new(),
        created_at: 0,
        updated_at: 0,
        tier: None,
        assignee: None,
        claimed_at: None,
        tags: Vec::new(),
        messages: Vec::new(),
        customer: None,
        ai_analysis: None,
    }
}

/// Ticket `T-1` whose conversation is the customer's `bodies`, one
/// message a millisecond from time 0.
pub fn customer_ticket(bodies: &[&str]) -> Ticket {
    Ticket {
        messages: bodies
            .iter()
            .zip(0..)
            .map(|(body, at)| message(AuthorKind::Customer, body, at))
            .collect(),
        ..ticket()
    }
}

/// A message by `author` with `body` sent at `at`.
pub fn message(author: AuthorKind, body: &str, at: Timestamp) -> Message {
    Message {
        id: alloc::format!("m-{at}"),
        author,
        author_id: None,
        body: String::from(body),
        sent_at: at,
        sentiment: None,
    }
}

/// A self-serve customer `C-1` on the `pro` plan with no MRR to speak of.
pub fn customer() -> Customer {
    Customer {
        id: String::from("C-1"),
        name: String::from("Customer One"),
        plan: String::from("pro"),
        mrr_cents: 0,
        trial: false,
        contacts_this_week: 1,
        created_at: 0,
        attributes: Vec::new(),
    }
}

/// An available agent `id` on team `support` with the given skills, always
/// on, UTC, with room for ten tickets.
pub fn agent(id: &str, skills: &[&str]) -> Agent {
    Agent {
        id: String::from(id),
        name: String::from(id),
        role: AgentRole::Agent,
        team: String::from("support"),
        skills: skills.iter().map(|s| String::from(*s)).collect(),
        status: AgentStatus::Available,
        open_tickets: 0,
        capacity: 10,
        last_assigned_at: None,
        working_hours: Vec::new(),
        time_zone: String::from("UTC"),
        utc_offset_minutes: 0,
    }
}

/// An escalation to `tier` with no signals and no response target.
pub fn escalation(tier: Tier) -> Escalation {
    Escalation {
        tier,
        signals: Vec::new(),
        response_target: None,
    }
}
