//! Intercom webhooks: a `notification_event` with a `topic` and the
//! conversation in `data.item` (developers.intercom.com, "Webhook models"
//! and "Conversation model").

use super::{Connector, Json, Mapped, customer, inbound, message, text_of_html, ticket};
use crate::model::{AuthorKind, Event, TicketChannel, TicketStatus};
use serde_json::Value;

/// Who wrote a part: Intercom's author types.
fn author(c: &Connector, kind: Option<&str>, id: Option<&str>) -> AuthorKind {
    match kind {
        Some("admin") => c.staff(id),
        Some("bot") => AuthorKind::AiAgent,
        _ => AuthorKind::Customer,
    }
}

pub(super) fn map(c: &Connector, v: &Value) -> Result<Mapped, String> {
    let j = Json(v, "Intercom");
    let topic = j.need("topic")?;
    if !topic.starts_with("conversation.") {
        return Ok(Mapped::Ignored(format!(
            "{topic}: not a conversation topic"
        )));
    }
    let item = j.at("data.item").ok_or("Intercom payload: no data.item")?;
    let conv = Json(item, "Intercom");
    let id = conv.need("id")?;
    let at = j
        .time("created_at")
        .or_else(|| conv.time("updated_at"))
        .ok_or("Intercom payload: no created_at")?;
    let mut t = ticket(
        format!("intercom-{id}"),
        conv.text("title")
            .or_else(|| conv.text("source.subject"))
            .map(|s| text_of_html(&s))
            .unwrap_or_default(),
        conv.time("created_at").unwrap_or(at),
        match conv.text("source.delivered_as").as_deref() {
            Some("customer_initiated") | Some("automated") => TicketChannel::Chat,
            _ => match conv.text("source.type").as_deref() {
                Some("email") => TicketChannel::Email,
                _ => TicketChannel::Chat,
            },
        },
    );
    let contact = item
        .pointer("/contacts/contacts/0/id")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| {
            conv.text("source.author.id")
                .filter(|_| conv.text("source.author.type").as_deref() != Some("admin"))
        });
    if let Some(contact) = contact {
        t.customer = Some(customer(
            format!("intercom-{contact}"),
            conv.text("source.author.name").unwrap_or_default(),
        ));
    }
    // The newest part: what a reply, note or assignment topic is about.
    let last = item
        .pointer("/conversation_parts/conversation_parts")
        .and_then(Value::as_array)
        .and_then(|p| p.last())
        .map(|p| Json(p, "Intercom"));
    let event = match topic.as_str() {
        "conversation.user.created" | "conversation.admin.single.created" => {
            let kind = conv.text("source.author.type");
            let by = conv.text("source.author.id");
            Some(message(
                author(c, kind.as_deref(), by.as_deref()),
                by,
                format!(
                    "intercom-source-{}",
                    conv.text("source.id").unwrap_or(id.clone())
                ),
                text_of_html(&conv.need("source.body")?),
                t.created_at,
            ))
        }
        "conversation.user.replied" | "conversation.admin.replied" => {
            let p = last.ok_or_else(|| format!("{topic}: no conversation part"))?;
            let by = p.text("author.id");
            Some(message(
                author(c, p.text("author.type").as_deref(), by.as_deref()),
                by,
                format!("intercom-part-{}", p.need("id")?),
                text_of_html(&p.need("body")?),
                p.time("created_at").unwrap_or(at),
            ))
        }
        "conversation.admin.assigned" => {
            let agent = last
                .as_ref()
                .and_then(|p| p.text("assigned_to.id"))
                .or_else(|| conv.text("admin_assignee_id"))
                .filter(|a| !a.is_empty() && a != "0");
            match agent {
                Some(a) => Some(Event::Claim { agent: c.agent(&a) }),
                None => return Ok(Mapped::Ignored(format!("{topic}: not to an admin"))),
            }
        }
        "conversation.admin.closed" => Some(Event::Status {
            status: TicketStatus::Solved,
        }),
        "conversation.admin.opened" | "conversation.admin.unsnoozed" => Some(Event::Status {
            status: TicketStatus::Open,
        }),
        "conversation.admin.snoozed" => Some(Event::Status {
            status: TicketStatus::Pending,
        }),
        "conversation.rating.added" => {
            let score: u8 = conv
                .text("conversation_rating.rating")
                .and_then(|r| r.parse().ok())
                .filter(|r| (1..=5).contains(r))
                .ok_or("conversation.rating.added: no rating 1..5")?;
            Some(Event::Csat {
                score,
                comment: conv.text("conversation_rating.remark"),
            })
        }
        other => return Ok(Mapped::Ignored(format!("{other}: not followed"))),
    };
    inbound(j.need("id")?, topic.clone(), t, event)
}
