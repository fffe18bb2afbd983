//! Zendesk event webhooks: `zen:event-type:ticket.*`, a ticket in `detail`
//! and what changed in `event` (developer.zendesk.com, "Ticket events").

use super::{Connector, Json, Mapped, customer, inbound, message, ticket};
use crate::model::{AuthorKind, Event, TicketChannel, TicketStatus};
use serde_json::Value;

pub(super) fn map(c: &Connector, v: &Value) -> Result<Mapped, String> {
    let j = Json(v, "Zendesk");
    let kind = j.need("type")?;
    let Some(kind) = kind.strip_prefix("zen:event-type:") else {
        return Err(format!(
            "Zendesk payload: type {kind:?} is not zen:event-type:…"
        ));
    };
    if !kind.starts_with("ticket.") {
        return Ok(Mapped::Ignored(format!("{kind}: not a ticket event")));
    }
    let id = j.need("detail.id")?;
    let at = j
        .time("time")
        .ok_or("Zendesk payload: no time (RFC 3339)")?;
    let mut t = ticket(
        format!("zendesk-{id}"),
        j.text("detail.subject").unwrap_or_default(),
        j.time("detail.created_at").unwrap_or(at),
        match j.text("detail.via.channel").as_deref() {
            Some("email") => TicketChannel::Email,
            Some("web" | "web_form" | "web_widget") => TicketChannel::WebForm,
            Some("chat" | "native_messaging" | "messaging") => TicketChannel::Chat,
            Some("voice" | "phone") => TicketChannel::Phone,
            Some("api" | "web_service") => TicketChannel::Api,
            Some("twitter" | "facebook" | "instagram_dm" | "whatsapp") => TicketChannel::Social,
            _ => TicketChannel::Other,
        },
    );
    t.tags = j.strings("detail.tags");
    if let Some(r) = j.text("detail.requester_id") {
        t.customer = Some(customer(format!("zendesk-{r}"), String::new()));
    }
    let event = match kind {
        // The description is the customer's first message.
        "ticket.created" => j
            .text("detail.description")
            .filter(|d| !d.is_empty())
            .map(|d| {
                message(
                    AuthorKind::Customer,
                    j.text("detail.requester_id"),
                    format!("zendesk-{id}-description"),
                    d,
                    t.created_at,
                )
            }),
        "ticket.comment_added" => {
            if j.at("event.comment.is_public") == Some(&Value::Bool(false)) {
                return Ok(Mapped::Ignored(
                    "ticket.comment_added: an internal note".into(),
                ));
            }
            let author = j.text("event.comment.author.id");
            let who = if j.at("event.comment.author.is_staff") == Some(&Value::Bool(true)) {
                c.staff(author.as_deref())
            } else {
                AuthorKind::Customer
            };
            Some(message(
                who,
                author,
                format!("zendesk-comment-{}", j.need("event.comment.id")?),
                j.need("event.comment.body")?,
                at,
            ))
        }
        "ticket.status_changed" => Some(Event::Status {
            status: match j.need("event.current")?.to_ascii_lowercase().as_str() {
                "new" => TicketStatus::New,
                "open" => TicketStatus::Open,
                "pending" => TicketStatus::Pending,
                "hold" => TicketStatus::OnHold,
                "solved" => TicketStatus::Solved,
                "closed" => TicketStatus::Closed,
                other => {
                    return Ok(Mapped::Ignored(format!(
                        "ticket.status_changed: status {other:?} has no counterpart"
                    )));
                }
            },
        }),
        "ticket.agent_assignment_changed" => match j.text("event.current") {
            Some(agent) if !agent.is_empty() => Some(Event::Claim {
                agent: c.agent(&agent),
            }),
            _ => {
                return Ok(Mapped::Ignored(
                    "ticket.agent_assignment_changed: unassigned".into(),
                ));
            }
        },
        other => return Ok(Mapped::Ignored(format!("{other}: not followed"))),
    };
    inbound(j.need("id")?, kind.to_string(), t, event)
}
