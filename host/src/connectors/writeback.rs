//! Write-back: Escalator's decisions as each desk's own REST requests
//! (an internal note with the handoff summary, the priority, the assignee,
//! and the line for the customer as a public reply), sent as deliveries
//! like every other notification: queued in the decision's transaction,
//! retried, honouring `Retry-After`, through the outbound policy.

use super::{Connector, Desk};
use crate::model::Tier;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where and as whom Escalator writes to a desk
/// (`connectors.{desk}.writeback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteBack {
    /// The desk's API base: `https://acme.zendesk.com`,
    /// `https://api.intercom.io`, `https://app.chatwoot.com`,
    /// `https://acme.zammad.com`.
    #[schemars(regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"))]
    pub base_url: String,
    /// The API token (Zendesk API token, Intercom access token, Chatwoot
    /// user access token, Zammad token). Write-only.
    #[schemars(length(min = 1))]
    pub token: String,
    /// Zendesk: the agent whose `email/token` authenticates.
    #[serde(default)]
    pub email: Option<String>,
    /// Intercom: the admin notes and replies are written as.
    #[serde(default)]
    pub admin_id: Option<String>,
    /// Post the line for the customer as a public reply (default true).
    #[serde(default = "crate::model::yes")]
    pub public_reply: bool,
}

/// One request to a desk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeskRequest {
    /// `POST` or `PUT`.
    pub method: String,
    /// The path after the base URL.
    pub path: String,
    /// The JSON body.
    pub body: Value,
}

/// The desk a ticket came from and its id there (for Chatwoot, the
/// account and the conversation).
pub fn origin(ticket: &str) -> Option<(Desk, Vec<&str>)> {
    let (desk, rest) = ticket.split_once('-')?;
    let desk = Desk::parse(desk)?;
    let parts: Vec<&str> = rest.split('-').collect();
    let ok = match desk {
        Desk::Chatwoot => parts.len() == 2,
        _ => parts.len() == 1,
    } && parts.iter().all(|p| !p.is_empty());
    ok.then_some((desk, parts))
}

/// The desk's id of Escalator's agent `agent`: the reverse of the
/// connector's `agents` map. `None` without an entry: an id the desk does
/// not know is not sent.
fn desk_agent(c: &Connector, agent: &str) -> Option<String> {
    c.agents
        .iter()
        .find(|(_, ours)| ours.as_str() == agent)
        .map(|(theirs, _)| theirs.clone())
}

/// A number where the desk wants one (ids are numbers in Zendesk, Chatwoot
/// and Zammad), else the text.
fn id_value(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

fn req(method: &str, path: String, body: Value) -> DeskRequest {
    DeskRequest {
        method: method.into(),
        path,
        body,
    }
}

/// What an escalation writes to the desk the ticket came from.
pub struct Escalation<'a> {
    /// The new tier.
    pub tier: Tier,
    /// The internal note: the handoff summary and why.
    pub note: &'a str,
    /// The line for the customer, if the notifier wrote one.
    pub reply: Option<&'a str>,
    /// Escalator's agent the ticket went to, if any.
    pub assignee: Option<&'a str>,
}

/// The requests for an escalation of `ticket`.
pub fn escalation(
    c: &Connector,
    wb: &WriteBack,
    ticket: &str,
    e: &Escalation<'_>,
) -> Vec<DeskRequest> {
    let Some((desk, ids)) = origin(ticket) else {
        return Vec::new();
    };
    let assignee = e.assignee.and_then(|a| desk_agent(c, a));
    let reply = e.reply.filter(|_| wb.public_reply);
    let mut out = Vec::new();
    match desk {
        // One update carries the priority, the assignee and the note; the
        // public reply is a second comment.
        Desk::Zendesk => {
            let path = format!("/api/v2/tickets/{}.json", ids[0]);
            let priority = match e.tier {
                Tier::Critical => "urgent",
                Tier::High => "high",
                Tier::Medium => "normal",
                Tier::Low => "low",
            };
            let mut t = json!({"priority": priority, "comment": {"body": e.note, "public": false}});
            if let Some(a) = &assignee {
                t["assignee_id"] = id_value(a);
            }
            out.push(req("PUT", path.clone(), json!({"ticket": t})));
            if let Some(r) = reply {
                out.push(req(
                    "PUT",
                    path,
                    json!({"ticket": {"comment": {"body": r, "public": true}}}),
                ));
            }
        }
        Desk::Intercom => {
            let admin = wb.admin_id.clone().unwrap_or_default();
            let conv = ids[0];
            out.push(req(
                "POST",
                format!("/conversations/{conv}/reply"),
                json!({"message_type": "note", "type": "admin", "admin_id": admin, "body": e.note}),
            ));
            if let Some(a) = &assignee {
                out.push(req(
                    "POST",
                    format!("/conversations/{conv}/parts"),
                    json!({"message_type": "assignment", "type": "admin", "admin_id": admin, "assignee_id": a}),
                ));
            }
            if let Some(r) = reply {
                out.push(req(
                    "POST",
                    format!("/conversations/{conv}/reply"),
                    json!({"message_type": "comment", "type": "admin", "admin_id": admin, "body": r}),
                ));
            }
        }
        Desk::Chatwoot => {
            let base = format!("/api/v1/accounts/{}/conversations/{}", ids[0], ids[1]);
            let priority = match e.tier {
                Tier::Critical => "urgent",
                Tier::High => "high",
                Tier::Medium => "medium",
                Tier::Low => "low",
            };
            out.push(req(
                "POST",
                format!("{base}/messages"),
                json!({"content": e.note, "message_type": "outgoing", "private": true}),
            ));
            out.push(req(
                "POST",
                format!("{base}/toggle_priority"),
                json!({"priority": priority}),
            ));
            if let Some(a) = &assignee {
                out.push(req(
                    "POST",
                    format!("{base}/assignments"),
                    json!({"assignee_id": id_value(a)}),
                ));
            }
            if let Some(r) = reply {
                out.push(req(
                    "POST",
                    format!("{base}/messages"),
                    json!({"content": r, "message_type": "outgoing", "private": false}),
                ));
            }
        }
        Desk::Zammad => {
            let priority = match e.tier {
                Tier::Critical | Tier::High => "3 high",
                Tier::Medium => "2 normal",
                Tier::Low => "1 low",
            };
            let mut t = json!({
                "priority": priority,
                "article": {"body": e.note, "type": "note", "internal": true, "content_type": "text/plain"},
            });
            if let Some(a) = &assignee {
                t["owner_id"] = id_value(a);
            }
            out.push(req("PUT", format!("/api/v1/tickets/{}", ids[0]), t));
            if let Some(r) = reply {
                out.push(req(
                    "POST",
                    "/api/v1/ticket_articles".into(),
                    json!({"ticket_id": id_value(ids[0]), "body": r, "type": "note", "internal": false, "content_type": "text/plain"}),
                ));
            }
        }
    }
    out
}

/// The request for an internal note on `ticket` (the resolution of an
/// escalated ticket, for the desk's AI and its people).
pub fn note(wb: &WriteBack, ticket: &str, text: &str) -> Vec<DeskRequest> {
    let Some((desk, ids)) = origin(ticket) else {
        return Vec::new();
    };
    vec![match desk {
        Desk::Zendesk => req(
            "PUT",
            format!("/api/v2/tickets/{}.json", ids[0]),
            json!({"ticket": {"comment": {"body": text, "public": false}}}),
        ),
        Desk::Intercom => req(
            "POST",
            format!("/conversations/{}/reply", ids[0]),
            json!({"message_type": "note", "type": "admin",
                   "admin_id": wb.admin_id.clone().unwrap_or_default(), "body": text}),
        ),
        Desk::Chatwoot => req(
            "POST",
            format!(
                "/api/v1/accounts/{}/conversations/{}/messages",
                ids[0], ids[1]
            ),
            json!({"content": text, "message_type": "outgoing", "private": true}),
        ),
        Desk::Zammad => req(
            "POST",
            "/api/v1/ticket_articles".into(),
            json!({"ticket_id": id_value(ids[0]), "body": text, "type": "note",
                   "internal": true, "content_type": "text/plain"}),
        ),
    }]
}

/// The requests for a claim of `ticket` by Escalator's agent `agent`
/// (none for an agent the desk does not know).
pub fn claim(c: &Connector, wb: &WriteBack, ticket: &str, agent: &str) -> Vec<DeskRequest> {
    let (Some((desk, ids)), Some(a)) = (origin(ticket), desk_agent(c, agent)) else {
        return Vec::new();
    };
    vec![match desk {
        Desk::Zendesk => req(
            "PUT",
            format!("/api/v2/tickets/{}.json", ids[0]),
            json!({"ticket": {"assignee_id": id_value(&a), "status": "open"}}),
        ),
        Desk::Intercom => req(
            "POST",
            format!("/conversations/{}/parts", ids[0]),
            json!({"message_type": "assignment", "type": "admin",
                   "admin_id": wb.admin_id.clone().unwrap_or_default(), "assignee_id": a}),
        ),
        Desk::Chatwoot => req(
            "POST",
            format!(
                "/api/v1/accounts/{}/conversations/{}/assignments",
                ids[0], ids[1]
            ),
            json!({"assignee_id": id_value(&a)}),
        ),
        Desk::Zammad => req(
            "PUT",
            format!("/api/v1/tickets/{}", ids[0]),
            json!({"owner_id": id_value(&a)}),
        ),
    }]
}

/// The headers that authenticate Escalator to the desk.
pub fn auth(desk: Desk, wb: &WriteBack) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    match desk {
        Desk::Zendesk => vec![(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}/token:{}",
                    wb.email.as_deref().unwrap_or_default(),
                    wb.token
                ))
            ),
        )],
        Desk::Intercom => vec![
            ("authorization", format!("Bearer {}", wb.token)),
            ("intercom-version", "2.11".into()),
        ],
        Desk::Chatwoot => vec![("api_access_token", wb.token.clone())],
        Desk::Zammad => vec![("authorization", format!("Token token={}", wb.token))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickets_desk_and_ids_come_from_its_name() {
        assert_eq!(origin("zendesk-5158"), Some((Desk::Zendesk, vec!["5158"])));
        assert_eq!(
            origin("chatwoot-1-12"),
            Some((Desk::Chatwoot, vec!["1", "12"]))
        );
        assert_eq!(origin("chatwoot-12"), None);
        assert_eq!(origin("T-1001"), None);
        assert_eq!(origin("zammad-"), None);
    }
}
