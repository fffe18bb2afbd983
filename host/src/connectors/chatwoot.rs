//! Chatwoot account webhooks: `conversation_created`, `message_created`,
//! `conversation_status_changed` and `conversation_updated`, each with the
//! `event` name in the body (chatwoot.com/hc/user-guide, "Webhook events"),
//! and `message_updated` of the CSAT survey message (`content_type`
//! `input_csat`) once the customer has answered it.

use super::{Connector, Headers, Json, Mapped, customer, inbound, message, text_of_html, ticket};
use crate::model::{AuthorKind, Event, TicketChannel, TicketStatus};
use serde_json::Value;

/// A message's author, from its type and sender: `incoming` is the
/// contact; `outgoing` from a `user` is an agent, from an agent bot the AI.
fn author(c: &Connector, m: &Json<'_>) -> Option<AuthorKind> {
    let kind = match m.at("message_type") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "incoming",
            Some(1) => "outgoing",
            _ => "other",
        }
        .to_string(),
        _ => m.text("message_type").unwrap_or_default(),
    };
    match kind.as_str() {
        "incoming" => Some(AuthorKind::Customer),
        "outgoing" => Some(match m.text("sender.type").as_deref() {
            Some("agent_bot" | "captain_assistant") => AuthorKind::AiAgent,
            _ => c.staff(m.text("sender.id").as_deref()),
        }),
        _ => None,
    }
}

fn status(s: &str) -> Option<TicketStatus> {
    Some(match s {
        "open" => TicketStatus::Open,
        "pending" => TicketStatus::Pending,
        "snoozed" => TicketStatus::OnHold,
        "resolved" => TicketStatus::Solved,
        _ => return None,
    })
}

pub(super) fn map(c: &Connector, headers: &Headers, v: &Value) -> Result<Mapped, String> {
    let j = Json(v, "Chatwoot");
    let kind = j.need("event")?;
    // A message carries its conversation; the conversation events are it.
    let conv = match kind.as_str() {
        "message_created" | "message_updated" => Json(
            j.at("conversation")
                .ok_or("Chatwoot payload: no conversation")?,
            "Chatwoot",
        ),
        "conversation_created" | "conversation_status_changed" | "conversation_updated" => {
            Json(v, "Chatwoot")
        }
        other => return Ok(Mapped::Ignored(format!("{other}: not followed"))),
    };
    let conv_id = conv
        .text("display_id")
        .or_else(|| conv.text("id"))
        .ok_or("Chatwoot payload: no conversation id")?;
    let account = j
        .text("account.id")
        .or_else(|| conv.text("account_id"))
        .or_else(|| conv.text("messages.0.account_id"));
    let id = match &account {
        Some(a) => format!("chatwoot-{a}-{conv_id}"),
        None => format!("chatwoot-{conv_id}"),
    };
    let first = conv
        .at("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .map(|m| Json(m, "Chatwoot"));
    let created = conv
        .time("created_at")
        .or_else(|| first.as_ref().and_then(|m| m.time("created_at")))
        .or_else(|| j.time("created_at"))
        .ok_or("Chatwoot payload: no created_at")?;
    let channel = match conv
        .text("channel")
        .or_else(|| j.text("inbox.channel_type"))
        .as_deref()
    {
        Some("Channel::Email") => TicketChannel::Email,
        Some("Channel::Api") => TicketChannel::Api,
        Some("Channel::WebWidget") => TicketChannel::Chat,
        Some(
            "Channel::Whatsapp"
            | "Channel::FacebookPage"
            | "Channel::TwitterProfile"
            | "Channel::Instagram"
            | "Channel::Telegram"
            | "Channel::Line",
        ) => TicketChannel::Social,
        Some("Channel::TwilioSms" | "Channel::Sms") => TicketChannel::Phone,
        _ => TicketChannel::Chat,
    };
    let subject = conv
        .text("additional_attributes.mail_subject")
        .unwrap_or_default();
    let mut t = ticket(id, subject, created, channel);
    let contact = conv
        .text("meta.sender.id")
        .or_else(|| conv.text("contact_inbox.contact_id"))
        .or_else(|| {
            (kind == "message_created")
                .then(|| j.text("sender.id"))
                .flatten()
                .filter(|_| j.text("sender.type").as_deref() == Some("contact"))
        });
    if let Some(contact) = contact {
        t.customer = Some(customer(
            format!("chatwoot-{contact}"),
            conv.text("meta.sender.name").unwrap_or_default(),
        ));
    }
    let event = match kind.as_str() {
        "conversation_created" => match first {
            Some(m) if m.at("private") != Some(&Value::Bool(true)) => match author(c, &m) {
                Some(who) => Some(message(
                    who,
                    m.text("sender.id").or_else(|| m.text("sender_id")),
                    format!("chatwoot-message-{}", m.need("id")?),
                    text_of_html(&m.text("content").unwrap_or_default()),
                    m.time("created_at").unwrap_or(created),
                )),
                None => None,
            },
            _ => None,
        },
        "message_created" => {
            if j.at("private") == Some(&Value::Bool(true)) {
                return Ok(Mapped::Ignored("message_created: a private note".into()));
            }
            let Some(who) = author(c, &j) else {
                return Ok(Mapped::Ignored(
                    "message_created: an activity or template message".into(),
                ));
            };
            Some(message(
                who,
                j.text("sender.id"),
                format!("chatwoot-message-{}", j.need("id")?),
                text_of_html(&j.text("content").unwrap_or_default()),
                j.time("created_at").unwrap_or(created),
            ))
        }
        // The survey's answer: the rating (1-5) and the customer's words.
        "message_updated" => {
            let response = j
                .at("content_attributes.submitted_values.csat_survey_response")
                .filter(|_| j.text("content_type").as_deref() == Some("input_csat"));
            let Some(score) = response
                .and_then(|r| r.get("rating"))
                .and_then(Value::as_u64)
            else {
                return Ok(Mapped::Ignored(
                    "message_updated: not an answered CSAT survey".into(),
                ));
            };
            let score = u8::try_from(score)
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| format!("Chatwoot CSAT rating {score} is not 1 to 5"))?;
            Some(Event::Csat {
                score,
                comment: response
                    .and_then(|r| r.get("feedback_message"))
                    .and_then(Value::as_str)
                    .map(text_of_html)
                    .filter(|c| !c.trim().is_empty()),
            })
        }
        "conversation_status_changed" => {
            let s = j.need("status")?;
            match status(&s) {
                Some(status) => Some(Event::Status { status }),
                None => {
                    return Ok(Mapped::Ignored(format!(
                        "conversation_status_changed: status {s:?} has no counterpart"
                    )));
                }
            }
        }
        // An assignment is the update Escalator follows.
        _ => {
            let changed = j
                .at("changed_attributes")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find_map(|c| c.get("assignee_id")))
                .and_then(|c| c.get("current_value"))
                .and_then(|v| match v {
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                });
            match changed.or_else(|| conv.text("meta.assignee.id")) {
                Some(agent) if !agent.is_empty() => Some(Event::Claim {
                    agent: c.agent(&agent),
                }),
                _ => {
                    return Ok(Mapped::Ignored(
                        "conversation_updated: no assignment".into(),
                    ));
                }
            }
        }
    };
    // Chatwoot names each delivery; without the header, the event, its
    // object and the signed time stand in.
    let delivery = headers
        .get("x-chatwoot-delivery")
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "{kind}:{}:{}",
                j.text("id").unwrap_or_default(),
                headers
                    .get("x-chatwoot-timestamp")
                    .cloned()
                    .unwrap_or_default()
            )
        });
    inbound(delivery, kind, t, event)
}
