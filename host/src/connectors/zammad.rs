//! Zammad trigger webhooks: the ticket and, when the trigger fired on one,
//! the article, with `X-Zammad-Trigger` and `X-Zammad-Delivery` headers
//! (docs.zammad.org, "Webhook" and its payload example).

use super::{Connector, Headers, Json, Mapped, customer, inbound, message, text_of_html, ticket};
use crate::model::{AuthorKind, Event, TicketChannel, TicketStatus};
use serde_json::Value;

pub(super) fn map(c: &Connector, headers: &Headers, v: &Value) -> Result<Mapped, String> {
    let j = Json(v, "Zammad");
    let id = j.need("ticket.id")?;
    let created = j
        .time("ticket.created_at")
        .ok_or("Zammad payload: no ticket.created_at")?;
    let article = j
        .at("article")
        .filter(|a| a.is_object())
        .map(|a| Json(a, "Zammad"));
    let mut t = ticket(
        format!("zammad-{id}"),
        j.text("ticket.title").unwrap_or_default(),
        created,
        match article.as_ref().and_then(|a| a.text("type")).as_deref() {
            Some("email") => TicketChannel::Email,
            Some("phone") => TicketChannel::Phone,
            Some("web") => TicketChannel::WebForm,
            Some("chat") => TicketChannel::Chat,
            Some(
                "twitter status"
                | "twitter direct-message"
                | "facebook feed post"
                | "telegram personal-message"
                | "whatsapp message",
            ) => TicketChannel::Social,
            _ => TicketChannel::Other,
        },
    );
    t.tags = j.strings("ticket.tags");
    if let Some(id) = j
        .text("ticket.customer.id")
        .or_else(|| j.text("ticket.customer_id"))
    {
        let name = [
            j.text("ticket.customer.firstname"),
            j.text("ticket.customer.lastname"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        t.customer = Some(customer(format!("zammad-{id}"), name));
    }
    let state = j
        .text("ticket.state")
        .or_else(|| j.text("ticket.state.name"))
        .unwrap_or_default();
    // Zammad's user 1 is "-": nobody.
    let owner = j
        .text("ticket.owner.id")
        .or_else(|| j.text("ticket.owner_id"))
        .filter(|o| !o.is_empty() && o != "1");
    let event = match article {
        Some(a) if a.at("internal") == Some(&Value::Bool(true)) => None,
        Some(a) => {
            let by = a.text("created_by_id").or_else(|| a.text("created_by.id"));
            let who = match a.text("sender").as_deref() {
                Some("Customer") => Some(AuthorKind::Customer),
                Some("Agent") => Some(c.staff(by.as_deref())),
                _ => None,
            };
            match who {
                Some(who) => {
                    let body = a.text("body").unwrap_or_default();
                    let body = if a.text("content_type").as_deref() == Some("text/html") {
                        text_of_html(&body)
                    } else {
                        body
                    };
                    Some(message(
                        who,
                        by,
                        format!("zammad-article-{}", a.need("id")?),
                        body,
                        a.time("created_at").unwrap_or(created),
                    ))
                }
                None => None,
            }
        }
        // A trigger without an article: a state or owner change.
        None => match state.as_str() {
            "closed" | "merged" => Some(Event::Status {
                status: TicketStatus::Solved,
            }),
            "pending reminder" | "pending close" => Some(Event::Status {
                status: TicketStatus::Pending,
            }),
            _ => owner.as_ref().map(|o| Event::Claim { agent: c.agent(o) }),
        },
    };
    let kind = headers
        .get("x-zammad-trigger")
        .cloned()
        .unwrap_or_else(|| "trigger".into());
    let delivery = headers
        .get("x-zammad-delivery")
        .cloned()
        .ok_or("Zammad delivery: no X-Zammad-Delivery header")?;
    inbound(delivery, kind, t, event)
}
