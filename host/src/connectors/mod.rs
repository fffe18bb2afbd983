//! Help-desk connectors, inbound: each desk's own webhook payloads, signed
//! by the desk's own scheme, mapped to Escalator's tickets and events
//! (`POST /v1/connectors/{desk}/events`).
//!
//! A mapping is a pure function of the request: the same delivery (a desk
//! retries) maps to the same ticket, event and idempotency key, so the
//! engine answers it once. Desk ids become ours with the desk's name in
//! front (`zendesk-5158`), so two desks never collide.

mod chatwoot;
mod intercom;
pub mod writeback;
mod zammad;
mod zendesk;

use crate::model::{AuthorKind, Customer, Event, Ticket, TicketChannel, TicketStatus};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A help desk Escalator takes webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desk {
    /// Zendesk event webhooks (`zen:event-type:ticket.*`).
    Zendesk,
    /// Intercom webhook topics (`conversation.*`).
    Intercom,
    /// Chatwoot account webhooks.
    Chatwoot,
    /// Zammad trigger webhooks.
    Zammad,
}

impl Desk {
    /// Every desk.
    pub const ALL: [Desk; 4] = [Desk::Zendesk, Desk::Intercom, Desk::Chatwoot, Desk::Zammad];

    /// Its name in URLs and settings.
    pub fn name(self) -> &'static str {
        match self {
            Desk::Zendesk => "zendesk",
            Desk::Intercom => "intercom",
            Desk::Chatwoot => "chatwoot",
            Desk::Zammad => "zammad",
        }
    }

    /// The desk named `name`.
    pub fn parse(name: &str) -> Option<Desk> {
        Desk::ALL.into_iter().find(|d| d.name() == name)
    }
}

thread_local! {
    static ARRIVING: std::cell::Cell<Option<Desk>> = const { std::cell::Cell::new(None) };
}

/// Run `f` as the handling of a delivery from `desk`: what it decides is
/// not written back to that desk as news (the desk already has it).
pub fn arriving<T>(desk: Desk, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Desk>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ARRIVING.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(ARRIVING.with(|c| c.replace(Some(desk))));
    f()
}

/// The desk whose delivery this thread is handling, if any.
pub fn arriving_from() -> Option<Desk> {
    ARRIVING.with(std::cell::Cell::get)
}

/// A tenant's connectors, one per desk (`connectors` in
/// `PUT /v1/settings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Connectors {
    /// Zendesk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zendesk: Option<Connector>,
    /// Intercom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intercom: Option<Connector>,
    /// Chatwoot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chatwoot: Option<Connector>,
    /// Zammad.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zammad: Option<Connector>,
}

/// Read from a JSON object only (serde would take a struct from an array
/// too, by position).
impl<'de> Deserialize<'de> for Connectors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Fields {
            zendesk: Option<Connector>,
            intercom: Option<Connector>,
            chatwoot: Option<Connector>,
            zammad: Option<Connector>,
        }
        let map = serde_json::Map::<String, Value>::deserialize(d)?;
        if let Some((desk, _)) = map.iter().find(|(_, v)| !(v.is_object() || v.is_null())) {
            return Err(serde::de::Error::custom(format!(
                "{desk}: a connector is an object"
            )));
        }
        let f = Fields::deserialize(Value::Object(map)).map_err(serde::de::Error::custom)?;
        Ok(Connectors {
            zendesk: f.zendesk,
            intercom: f.intercom,
            chatwoot: f.chatwoot,
            zammad: f.zammad,
        })
    }
}

impl Connectors {
    /// The connector of `desk`, if set.
    pub fn get(&self, desk: Desk) -> Option<&Connector> {
        match desk {
            Desk::Zendesk => self.zendesk.as_ref(),
            Desk::Intercom => self.intercom.as_ref(),
            Desk::Chatwoot => self.chatwoot.as_ref(),
            Desk::Zammad => self.zammad.as_ref(),
        }
    }

    fn slot(&mut self, desk: Desk) -> &mut Option<Connector> {
        match desk {
            Desk::Zendesk => &mut self.zendesk,
            Desk::Intercom => &mut self.intercom,
            Desk::Chatwoot => &mut self.chatwoot,
            Desk::Zammad => &mut self.zammad,
        }
    }

    /// No desk set.
    pub fn is_empty(&self) -> bool {
        Desk::ALL.iter().all(|d| self.get(*d).is_none())
    }

    /// The desks set, with their connectors.
    pub fn iter(&self) -> impl Iterator<Item = (Desk, &Connector)> {
        Desk::ALL
            .into_iter()
            .filter_map(|d| self.get(d).map(|c| (d, c)))
    }

    /// Each connector's secrets replaced by `***`, for reading back.
    pub fn redact(&mut self) {
        for d in Desk::ALL {
            if let Some(c) = self.slot(d) {
                c.secret = "***".into();
                if let Some(w) = &mut c.writeback {
                    w.token = "***".into();
                }
            }
        }
    }

    /// Where a PUT carries `***`, keep the secret `stored` has.
    pub fn keep_secrets_from(&mut self, stored: &Connectors) {
        for d in Desk::ALL {
            if let (Some(new), Some(old)) = (self.slot(d), stored.get(d)) {
                if new.secret == "***" {
                    new.secret = old.secret.clone();
                }
                if let (Some(w), Some(o)) = (&mut new.writeback, &old.writeback)
                    && w.token == "***"
                {
                    w.token = o.token.clone();
                }
            }
        }
    }
}

/// A tenant's settings for one desk (`connectors` in `PUT /v1/settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// The desk's webhook signing secret (Zendesk's signing secret,
    /// Intercom's client secret, Chatwoot's webhook secret, Zammad's
    /// HMAC-SHA1 token). Write-only.
    #[schemars(length(min = 1))]
    pub secret: String,
    /// The desk's user ids of the AI agent: their messages are the AI's,
    /// not a human agent's.
    #[serde(default)]
    pub ai_agents: Vec<String>,
    /// The desk's agent ids → Escalator's agent ids, where they differ
    /// (default: the desk's id).
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
    /// Write Escalator's decisions back to the desk (none without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writeback: Option<writeback::WriteBack>,
}

impl Connector {
    /// Escalator's id of the desk's agent `id`.
    fn agent(&self, id: &str) -> String {
        self.agents
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Who a staff member's message is from: the AI agent or a human.
    fn staff(&self, id: Option<&str>) -> AuthorKind {
        if id.is_some_and(|id| self.ai_agents.iter().any(|a| a == id)) {
            AuthorKind::AiAgent
        } else {
            AuthorKind::HumanAgent
        }
    }
}

/// The request's headers, by lower-case name.
pub type Headers = BTreeMap<String, String>;

/// What one delivery says happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The delivery's own id at the desk (the idempotency key).
    pub delivery: String,
    /// The desk's name for what happened, e.g. `ticket.comment_added`.
    pub kind: String,
    /// The ticket as the delivery describes it: what a ticket Escalator
    /// has not seen yet is created from (a message in `event` joins it).
    pub ticket: Ticket,
    /// What happened to it; `None` when the delivery only says it exists.
    pub event: Option<Event>,
}

/// A delivery, mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Something Escalator acts on.
    Inbound(Box<Inbound>),
    /// A delivery with nothing for Escalator (an internal note, a topic
    /// it does not follow): accepted, and why it was ignored.
    Ignored(String),
}

/// How old a signed timestamp may be (Zendesk, Chatwoot): a captured
/// delivery cannot be replayed later than this.
pub const MAX_SKEW_SECS: i64 = 300;

/// Check the delivery's signature by the desk's own scheme, with the
/// tenant's secret. The error says what was wrong, never the expected
/// value.
pub fn verify(
    desk: Desk,
    secret: &str,
    headers: &Headers,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("no {name} header"))
    };
    let fresh = |ts: &str| -> Result<(), String> {
        let at: i64 = ts
            .trim()
            .parse()
            .ok()
            .or_else(|| {
                DateTime::parse_from_rfc3339(ts.trim())
                    .ok()
                    .map(|t| t.timestamp())
            })
            .ok_or_else(|| format!("timestamp {ts:?} is neither Unix seconds nor RFC 3339"))?;
        if (now.timestamp() - at).abs() > MAX_SKEW_SECS {
            return Err(format!(
                "timestamp {ts} is more than {MAX_SKEW_SECS} s from the server's clock"
            ));
        }
        Ok(())
    };
    match desk {
        // base64(HMAC-SHA256(secret, timestamp + body))
        Desk::Zendesk => {
            let ts = header("x-zendesk-webhook-signature-timestamp")?;
            fresh(ts)?;
            let given = header("x-zendesk-webhook-signature")?;
            let mac = hmac_sha256(secret, &[ts.as_bytes(), body]);
            use base64::Engine as _;
            let expected = base64::engine::general_purpose::STANDARD.encode(mac);
            same(given.trim(), &expected)
        }
        // sha1=hex(HMAC-SHA1(secret, body))
        Desk::Intercom | Desk::Zammad => {
            let given = header("x-hub-signature")?;
            let mut mac =
                Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
            mac.update(body);
            let expected = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
            same(given.trim(), &expected)
        }
        // sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))
        Desk::Chatwoot => {
            let ts = header("x-chatwoot-timestamp")?;
            fresh(ts)?;
            let given = header("x-chatwoot-signature")?;
            let mac = hmac_sha256(secret, &[ts.as_bytes(), b".", body]);
            let expected = format!("sha256={}", hex::encode(mac));
            same(given.trim(), &expected)
        }
    }
}

fn hmac_sha256(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time comparison of two signatures.
fn same(given: &str, expected: &str) -> Result<(), String> {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differ {
        Err("the signature does not match the body and this tenant's secret".into())
    } else {
        Ok(())
    }
}

/// Map a verified delivery. The error says what in the payload is missing
/// or malformed.
pub fn map(
    desk: Desk,
    connector: &Connector,
    headers: &Headers,
    body: &[u8],
) -> Result<Mapped, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if !v.is_object() {
        return Err("the payload is not a JSON object".into());
    }
    match desk {
        Desk::Zendesk => zendesk::map(connector, &v),
        Desk::Intercom => intercom::map(connector, &v),
        Desk::Chatwoot => chatwoot::map(connector, headers, &v),
        Desk::Zammad => zammad::map(connector, headers, &v),
    }
}

/// Reading fields of a desk's JSON, with errors that name the path.
struct Json<'a>(&'a Value, &'static str);

impl<'a> Json<'a> {
    fn at(&self, path: &str) -> Option<&'a Value> {
        path.split('.')
            .try_fold(self.0, |v, k| v.get(k))
            .filter(|v| !v.is_null())
    }

    /// A string or number at `path`, as text.
    fn text(&self, path: &str) -> Option<String> {
        match self.at(path)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The strings of the array at `path` (tags).
    fn strings(&self, path: &str) -> Vec<String> {
        match self.at(path) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn need(&self, path: &str) -> Result<String, String> {
        self.text(path)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{} payload: no {path}", self.1))
    }

    /// A time at `path`: RFC 3339, Zendesk's and Zammad's forms, or Unix
    /// seconds (Intercom, Chatwoot).
    fn time(&self, path: &str) -> Option<DateTime<Utc>> {
        match self.at(path)? {
            Value::Number(n) => DateTime::from_timestamp(n.as_i64()?, 0),
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .or_else(|| {
                    s.parse::<i64>()
                        .ok()
                        .and_then(|n| DateTime::from_timestamp(n, 0))
                }),
            _ => None,
        }
    }
}

/// A ticket with the fields every desk has, new.
fn ticket(
    id: String,
    subject: String,
    created_at: DateTime<Utc>,
    channel: TicketChannel,
) -> Ticket {
    Ticket {
        subject,
        channel,
        status: TicketStatus::New,
        ..Ticket::new(id, created_at)
    }
}

/// A delivery Escalator acts on.
fn inbound(
    delivery: String,
    kind: String,
    ticket: Ticket,
    event: Option<Event>,
) -> Result<Mapped, String> {
    Ok(Mapped::Inbound(Box::new(Inbound {
        delivery,
        kind,
        ticket,
        event,
    })))
}

/// The customer `id` (already prefixed with the desk) named `name`.
fn customer(id: String, name: String) -> Customer {
    Customer {
        id,
        name,
        plan: String::new(),
        mrr_cents: 0,
        trial: false,
        contacts_this_week: 0,
        created_at: None,
        attributes: Default::default(),
    }
}

/// A message event.
fn message(
    author: AuthorKind,
    author_id: Option<String>,
    id: String,
    body: String,
    sent_at: DateTime<Utc>,
) -> Event {
    Event::Message {
        author,
        author_id,
        body,
        id: Some(id),
        sent_at: Some(sent_at),
        sentiment: None,
    }
}

/// Strip HTML tags and decode the few entities desks use: Intercom,
/// Chatwoot and Zammad send HTML bodies; triggers read text.
pub fn text_of_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(name.as_str(), "br" | "p" | "div" | "li") && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ if in_tag => tag.push(c),
            _ => out.push(c),
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.trim().to_string()
}

/// Into Escalator's ticket: the message of a message event joins a ticket
/// being created from the delivery, so it is decided once, with it.
impl Inbound {
    /// The ticket to create (with the event's message, if it is one), and
    /// the event left to add after it.
    pub fn for_creation(&self) -> (Ticket, Option<Event>) {
        let mut t = self.ticket.clone();
        // Without an id the message is numbered when the ticket is created.
        match self
            .event
            .as_ref()
            .and_then(|e| e.to_message(String::new, t.created_at))
        {
            Some(m) => {
                t.messages.push(m);
                (t, None)
            }
            None => (t, self.event.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            text_of_html(
                "<p>Hi&nbsp;there,</p><p>I was charged <b>twice</b> &amp; want a refund</p>"
            ),
            "Hi there,\nI was charged twice & want a refund"
        );
        assert_eq!(text_of_html("plain"), "plain");
    }

    /// Every value of every fixture replaced in turn by each other JSON
    /// type: the mapping answers (a ticket, ignored, or an error naming
    /// what is wrong) and never panics.
    #[test]
    fn any_mangled_payload_maps_or_is_refused_without_a_panic() {
        fn paths(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m.iter().for_each(|(k, v)| {
                    let p = format!("{at}/{k}");
                    out.push(p.clone());
                    paths(v, p, out)
                }),
                Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    paths(v, p, out)
                }),
                _ => {}
            }
        }
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/connectors");
        let c = Connector {
            secret: "s".into(),
            ai_agents: vec!["7".into()],
            agents: BTreeMap::new(),
            writeback: None,
        };
        let headers: Headers = [("x-zammad-delivery", "d"), ("x-chatwoot-delivery", "d")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut mapped = 0;
        for desk in Desk::ALL {
            for f in std::fs::read_dir(dir.join(desk.name())).unwrap() {
                let f = f.unwrap().path();
                if !f
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(|c: char| c.is_ascii_digit())
                {
                    continue;
                }
                let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
                assert!(
                    map(desk, &c, &headers, v.to_string().as_bytes()).is_ok(),
                    "{f:?}"
                );
                let mut all = Vec::new();
                paths(&v, String::new(), &mut all);
                for p in all {
                    for other in [
                        json!(null),
                        json!(-1),
                        json!("x"),
                        json!([1]),
                        json!({"a": 1}),
                        json!(true),
                    ] {
                        let mut m = v.clone();
                        *m.pointer_mut(&p).unwrap() = other;
                        let _ = map(desk, &c, &headers, m.to_string().as_bytes());
                        mapped += 1;
                    }
                }
            }
        }
        assert!(mapped > 1000, "{mapped}");
        for junk in ["", "[]", "null", "{", "\"x\"", "{\"type\": 5}"] {
            for desk in Desk::ALL {
                let _ = map(desk, &c, &headers, junk.as_bytes());
            }
        }
    }

    #[test]
    fn signatures_are_compared_whole() {
        assert!(same("sha1=abc", "sha1=abc").is_ok());
        assert!(same("sha1=abd", "sha1=abc").is_err());
        assert!(same("sha1=ab", "sha1=abc").is_err());
    }
}
