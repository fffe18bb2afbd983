//! Delivery: the channel adapters and the worker that drains the delivery
//! log with retries.
//!
//! - **Slack**: an incoming-webhook POST with Block Kit blocks.
//! - **E-mail**: SMTP through lettre (plain, STARTTLS or TLS).
//! - **Webhook**: JSON signed with HMAC-SHA256 over `timestamp.body`, in
//!   `X-Escalator-Signature: sha256=HEX` with `X-Escalator-Timestamp`.
//! - **In-app**: written to the agent's feed in the same transaction that
//!   decides it, and streamed over SSE by the API; it needs no worker.
//!
//! Every notification carries an idempotency key (`Idempotency-Key` header,
//! the e-mail's `Message-ID`); a retry after a timeout or a crash sends the
//! same key again, so a receiver can drop duplicates. Failures are retried
//! with exponential backoff (honouring `Retry-After`), up to a limit, and
//! every attempt is in the delivery log.

pub mod outbound;
pub mod queue;

pub use outbound::Policy;
pub use queue::{QueueConfig, worker};

use crate::model::Channel;
use crate::store::{Delivery, Store};
use chrono::Utc;
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tenant's channel settings (`PUT /v1/settings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// Slack incoming-webhook URL.
    pub slack_webhook_url: Option<String>,
    /// The SMTP server e-mail goes through.
    pub smtp: Option<SmtpSettings>,
    /// Named webhook endpoints; `default` gets webhook-channel steps sent
    /// to agents and teams.
    pub webhooks: BTreeMap<String, WebhookEndpoint>,
    /// Help desks this tenant takes webhooks from
    /// (`POST /v1/connectors/{desk}/events?tenant=ID`).
    #[serde(skip_serializing_if = "crate::connectors::Connectors::is_empty")]
    pub connectors: crate::connectors::Connectors,
}

/// Each tenant's channel settings, parsed once per change: every event
/// and every delivery attempt reads them, and a tenant's settings may list
/// many endpoints.
#[derive(Debug, Default)]
pub struct SettingsCache(Mutex<HashMap<String, (i64, Arc<ChannelSettings>)>>);

impl SettingsCache {
    /// `tenant`'s settings as stored now (the defaults if it has none or
    /// they cannot be read).
    pub fn get(&self, store: &Store, tenant: &str) -> Arc<ChannelSettings> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned();
        match store.settings_if_changed(tenant, known.as_ref().map(|k| k.0)) {
            Ok(Some((_, None))) => known.map(|k| k.1).unwrap_or_default(),
            Ok(Some((rev, Some(v)))) => {
                let parsed = Arc::new(serde_json::from_value(v).unwrap_or_else(|e| {
                    tracing::error!(tenant, error = %e, "stored channel settings do not parse");
                    ChannelSettings::default()
                }));
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(tenant.to_string(), (rev, parsed.clone()));
                parsed
            }
            Ok(None) => Arc::default(),
            Err(e) => {
                tracing::error!(tenant, error = %e, "reading channel settings failed");
                known.map(|k| k.1).unwrap_or_default()
            }
        }
    }
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port (default 587).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The From address.
    pub from: String,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// How SMTP is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain text (a relay on the same host).
    None,
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Where to POST.
    #[schemars(regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"))]
    pub url: String,
    /// The HMAC-SHA256 key.
    #[schemars(length(min = 1))]
    pub secret: String,
    /// Engine events this endpoint gets on its own, besides the steps
    /// addressed to it: `escalated` (with the handoff packet), `resolved`
    /// (an escalated ticket resolved, with what the humans did).
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^(escalated|resolved)$")))]
    pub events: Vec<String>,
}

/// The engine events a webhook endpoint may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 2] = ["escalated", "resolved"];

impl WebhookEndpoint {
    /// Whether it gets every `event` (one of [`WEBHOOK_EVENTS`]).
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

impl ChannelSettings {
    /// The settings with secrets replaced by `***`, for reading back: the
    /// SMTP password, webhook signing secrets, and the Slack URL's path
    /// (the URL is itself the credential; its host stays, to say which).
    pub fn redacted(&self) -> ChannelSettings {
        let mut s = self.clone();
        if let Some(u) = &mut s.slack_webhook_url {
            *u = match reqwest::Url::parse(u) {
                Ok(p) => format!("{}://{}/***", p.scheme(), p.host_str().unwrap_or("")),
                Err(_) => "***".into(),
            };
        }
        if let Some(smtp) = &mut s.smtp
            && smtp.password.is_some()
        {
            smtp.password = Some("***".into());
        }
        for w in s.webhooks.values_mut() {
            w.secret = "***".into();
        }
        s.connectors.redact();
        s
    }

    /// Secrets are write-only: where `self` (a PUT) carries the redacted
    /// placeholder read back from [`ChannelSettings::redacted`], keep what
    /// `stored` has, so a read-modify-write never stores `***`.
    pub fn keep_secrets_from(&mut self, stored: &ChannelSettings) {
        if self
            .slack_webhook_url
            .as_deref()
            .is_some_and(|u| u.ends_with("/***") || u == "***")
        {
            self.slack_webhook_url = stored.slack_webhook_url.clone();
        }
        if let (Some(new), Some(old)) = (&mut self.smtp, &stored.smtp)
            && new.password.as_deref() == Some("***")
        {
            new.password = old.password.clone();
        }
        for (name, w) in &mut self.webhooks {
            if w.secret == "***"
                && let Some(old) = stored.webhooks.get(name)
            {
                w.secret = old.secret.clone();
            }
        }
        self.connectors.keep_secrets_from(&stored.connectors);
    }

    /// Check URLs and addresses; the error names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let url = |field: &str, u: &str| {
            reqwest::Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|_| ())
                .ok_or_else(|| format!("{field}: {u:?} is not an http(s) URL"))
        };
        if let Some(u) = &self.slack_webhook_url {
            url("slack_webhook_url", u)?;
        }
        for (desk, c) in self.connectors.iter() {
            if c.secret.trim().is_empty() || c.secret == "***" {
                return Err(format!(
                    "connectors.{}.secret: the desk's webhook signing secret is required",
                    desk.name()
                ));
            }
            if let Some(w) = &c.writeback {
                url(
                    &format!("connectors.{}.writeback.base_url", desk.name()),
                    &w.base_url,
                )?;
                if w.token.trim().is_empty() || w.token == "***" {
                    return Err(format!(
                        "connectors.{}.writeback.token: the desk's API token is required",
                        desk.name()
                    ));
                }
            }
        }
        for (name, w) in &self.webhooks {
            url(&format!("webhooks.{name}.url"), &w.url)?;
            if w.secret.is_empty() {
                return Err(format!("webhooks.{name}.secret: must not be empty"));
            }
            if let Some(e) = w
                .events
                .iter()
                .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            {
                return Err(format!(
                    "webhooks.{name}.events: unknown event {e:?} (known: \"escalated\", \"resolved\")"
                ));
            }
        }
        if let Some(smtp) = &self.smtp {
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("smtp.from: {:?} is not an address: {e}", smtp.from))?;
        }
        Ok(())
    }

    /// Check every destination against the outbound policy (resolving
    /// names): the configuration-time half of the check that every
    /// connection repeats.
    pub async fn check_destinations(&self, policy: &Policy) -> Result<(), String> {
        let mut urls: Vec<(String, &str)> = Vec::new();
        if let Some(u) = &self.slack_webhook_url {
            urls.push(("slack_webhook_url".into(), u));
        }
        for (name, w) in &self.webhooks {
            urls.push((format!("webhooks.{name}.url"), &w.url));
        }
        for (desk, c) in self.connectors.iter() {
            if let Some(w) = &c.writeback {
                urls.push((
                    format!("connectors.{}.writeback.base_url", desk.name()),
                    &w.base_url,
                ));
            }
        }
        for (field, u) in urls {
            let url = reqwest::Url::parse(u).map_err(|_| format!("{field}: not a URL"))?;
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Err(format!("{field}: the URL has no host"));
            };
            policy
                .check_destination(host, port)
                .await
                .map_err(|r| format!("{field}: {r}"))?;
        }
        if let Some(smtp) = &self.smtp {
            policy
                .check_destination(&smtp.host, smtp.port)
                .await
                .map_err(|r| format!("smtp.host: {r}"))?;
        }
        Ok(())
    }
}

/// The signature header value for `body` sent at `timestamp` (seconds):
/// `sha256=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` under
/// `secret`. Receivers recompute it and compare.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first retry's delay; each next one doubles.
    pub base: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(600),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failed attempts, unless the receiver
    /// asked for `retry_after`; `None` once attempts run out.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let backoff = self
            .base
            .saturating_mul(1 << attempts.saturating_sub(1).min(20))
            .min(self.max_delay);
        Some(retry_after.map_or(backoff, |r| r.min(Duration::from_secs(3600))))
    }
}

/// Why a delivery attempt failed (or the sender could not be built).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What happened, for the log.
    pub message: String,
    /// Whether trying again may help (timeouts, 5xx, 429).
    pub retryable: bool,
    /// The receiver's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    fn permanent(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    fn refused(r: &outbound::Refusal) -> DeliveryError {
        DeliveryError::permanent(r.to_string())
    }

    fn transient(message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }
}

/// Sends deliveries, only where the outbound policy allows.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender under `policy`: names resolve only to allowed addresses,
    /// redirects are not followed, no proxy from the environment, 3 s to
    /// connect and 10 s per attempt.
    pub fn new(policy: Arc<Policy>) -> Result<Sender, DeliveryError> {
        Ok(Sender {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(policy.resolver())
                .user_agent(concat!("escalator/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| {
                    DeliveryError::permanent(format!(
                        "building the HTTP client: {}",
                        error_chain(&e)
                    ))
                })?,
            policy,
        })
    }

    /// Send one delivery with the tenant's settings.
    pub async fn send(
        &self,
        d: &Delivery,
        settings: &ChannelSettings,
    ) -> Result<(), DeliveryError> {
        match d.channel {
            Channel::Slack => {
                let blocks = serde_json::json!({
                    "text": d.title,
                    "blocks": [
                        {"type": "header", "text": {"type": "plain_text", "text": truncate(&d.title, 150)}},
                        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&d.body, 3000)}},
                        {"type": "context", "elements": [{"type": "mrkdwn",
                            "text": format!("ticket {} · for {} · escalator", d.ticket, d.recipient)}]}
                    ]
                });
                self.post(d, blocks.to_string(), None).await
            }
            Channel::Webhook => {
                let endpoint = settings
                    .webhooks
                    .values()
                    .find(|w| w.url == d.address)
                    .ok_or_else(|| DeliveryError::permanent("the webhook endpoint was removed"))?;
                // An engine event carries its JSON: the handoff packet of
                // an escalation, or `{"resolution": ...}` of a resolved one;
                // a plan's step carries its text.
                let data = serde_json::from_str::<serde_json::Value>(&d.body)
                    .ok()
                    .filter(|v| v.is_object());
                let resolution = data.as_ref().and_then(|v| v.get("resolution")).cloned();
                let event = match (&data, &resolution) {
                    (_, Some(_)) => "resolved",
                    (Some(_), None) => "escalated",
                    (None, _) => "notification",
                };
                let body = serde_json::json!({
                    "id": d.idempotency_key,
                    "event": event,
                    "tenant": d.tenant,
                    "ticket": d.ticket,
                    "recipient": d.recipient,
                    "title": d.title,
                    "body": if data.is_some() { None } else { Some(&d.body) },
                    "handoff": data.filter(|_| resolution.is_none()),
                    "resolution": resolution,
                    "created_at": d.created_at,
                })
                .to_string();
                self.post(d, body, Some(endpoint.secret.as_str())).await
            }
            Channel::Email => {
                let smtp = settings
                    .smtp
                    .as_ref()
                    .ok_or_else(|| DeliveryError::permanent("no SMTP server configured"))?;
                self.send_email(smtp, d).await
            }
            Channel::InApp => Err(DeliveryError::permanent(
                "in-app items are written to the feed, not delivered by the worker",
            )),
            // A request to the desk the ticket came from: its method in the
            // title, its URL the address, its JSON the body; the desk's
            // credentials are read at sending time, never stored with it.
            Channel::Desk => {
                let desk = crate::connectors::Desk::parse(&d.recipient)
                    .ok_or_else(|| DeliveryError::permanent("not a desk"))?;
                let wb = settings
                    .connectors
                    .get(desk)
                    .and_then(|c| c.writeback.as_ref())
                    .ok_or_else(|| {
                        DeliveryError::permanent("the desk's write-back settings were removed")
                    })?;
                let method = match d.title.as_str() {
                    "PUT" => reqwest::Method::PUT,
                    _ => reqwest::Method::POST,
                };
                let headers = crate::connectors::writeback::auth(desk, wb);
                self.request(d, method, d.body.clone(), &headers, None)
                    .await
            }
        }
    }

    /// POST `body` to the delivery's address. What the tenant reads back
    /// is "refused by policy", the HTTP status or "no response": never a
    /// response body or a connect-level detail (which would make the
    /// delivery log a port scanner); the detail goes to the server log.
    async fn post(
        &self,
        d: &Delivery,
        body: String,
        secret: Option<&str>,
    ) -> Result<(), DeliveryError> {
        self.request(d, reqwest::Method::POST, body, &[], secret)
            .await
    }

    /// [`Self::post`] with another method and extra headers.
    async fn request(
        &self,
        d: &Delivery,
        method: reqwest::Method,
        body: String,
        headers: &[(&'static str, String)],
        secret: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let url = reqwest::Url::parse(&d.address)
            .map_err(|_| DeliveryError::permanent("the address is not a URL"))?;
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(DeliveryError::permanent("the address has no host"));
        };
        self.policy
            .before_connect(host, port)
            .await
            .map_err(|r| DeliveryError::refused(&r))?;
        let mut req = self
            .http
            .request(method, url)
            .header("content-type", "application/json")
            .header("idempotency-key", &d.idempotency_key);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(secret) = secret {
            let now = Utc::now().timestamp();
            req = req.header("x-escalator-timestamp", now.to_string()).header(
                "x-escalator-signature",
                signature(secret, now, body.as_bytes()),
            );
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(r) = outbound::refusal_in(&e) {
                    return Err(DeliveryError::refused(r));
                }
                // Without the URL: a Slack URL is a credential.
                let e = e.without_url();
                tracing::warn!(tenant = %d.tenant, id = d.id, error = %error_chain(&e),
                    "delivery got no response");
                return Err(DeliveryError::transient("no response from the endpoint"));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_redirection() {
            return Err(DeliveryError::permanent(format!(
                "HTTP {} (redirects are not followed)",
                status.as_u16()
            )));
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Err(DeliveryError {
            message: format!("HTTP {}", status.as_u16()),
            retryable: status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408,
            retry_after,
        })
    }

    async fn send_email(&self, smtp: &SmtpSettings, d: &Delivery) -> Result<(), DeliveryError> {
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            DeliveryError::permanent(format!("{what}: {e}"))
        };
        let message = Message::builder()
            .from(smtp.from.parse().map_err(|e| bad("smtp.from", &e))?)
            .to(d
                .address
                .parse()
                .map_err(|e| bad("recipient address", &e))?)
            .subject(&d.title)
            .message_id(Some(format!("<{}@escalator>", d.idempotency_key)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(d.body.clone())
            .map_err(|e| bad("building the message", &e))?;
        // Connect to an address the policy allowed (lettre would resolve
        // the name again itself); TLS still verifies the host name.
        let addr = self
            .policy
            .resolve(&smtp.host, smtp.port)
            .await
            .map_err(|r| DeliveryError::refused(&r))?[0];
        let tls =
            |host: &str| TlsParameters::new(host.to_string()).map_err(|e| bad("smtp.host", &e));
        let tls = match smtp.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls(&smtp.host)?),
            SmtpTls::Tls => Tls::Wrapper(tls(&smtp.host)?),
        };
        let builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
                .port(addr.port())
                .tls(tls);
        let builder = match (&smtp.username, &smtp.password) {
            (Some(u), Some(p)) => builder.credentials(
                lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()),
            ),
            _ => builder,
        };
        let transport = builder.timeout(Some(Duration::from_secs(10))).build();
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(tenant = %d.tenant, id = d.id, error = %error_chain(&e),
                    "e-mail delivery failed");
                // The reply code, not the server's text.
                let code = e
                    .status()
                    .map(|c| format!(" (SMTP {c})"))
                    .unwrap_or_default();
                if e.is_permanent() {
                    Err(DeliveryError::permanent(format!(
                        "the SMTP server refused it{code}"
                    )))
                } else if e.is_transient() {
                    Err(DeliveryError::transient(format!(
                        "the SMTP server deferred it{code}"
                    )))
                } else {
                    Err(DeliveryError::transient("no response from the SMTP server"))
                }
            }
        }
    }
}

/// `e` and its sources, for the server log.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(s) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let secs = (at.with_timezone(&Utc) - Utc::now()).num_seconds().max(0);
    Some(Duration::from_secs(secs as u64))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check against an independent computation.
        let sig = signature("key", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert_eq!(sig, signature("key", 1_700_000_000, b"{\"a\":1}"));
        assert_ne!(sig, signature("key", 1_700_000_001, b"{\"a\":1}"));
        assert_ne!(sig, signature("other", 1_700_000_000, b"{\"a\":1}"));
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn backoff_doubles_caps_honours_retry_after_and_gives_up() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_attempts: 5,
        };
        let d = |n| p.delay(n, None).map(|d| d.as_secs());
        assert_eq!(
            [d(1), d(2), d(3), d(4)],
            [Some(1), Some(2), Some(4), Some(5)]
        );
        assert_eq!(d(5), None);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn settings_are_validated_and_redacted() {
        let s: ChannelSettings = serde_json::from_value(serde_json::json!({
            "slack_webhook_url": "http://127.0.0.1:9/slack",
            "smtp": {"host": "127.0.0.1", "port": 2525, "from": "Escalator <esc@example.com>",
                     "tls": "none", "username": "u", "password": "p"},
            "webhooks": {"default": {"url": "http://127.0.0.1:9/hook", "secret": "s3cret"}}
        }))
        .unwrap();
        s.validate().unwrap();
        let r = s.redacted();
        let mut back = r.clone();
        back.keep_secrets_from(&s);
        assert_eq!(back, s, "a redacted read written back changes nothing");
        assert_eq!(r.webhooks["default"].secret, "***");
        if s.slack_webhook_url.is_some() {
            let slack = r.slack_webhook_url.clone().unwrap();
            assert_eq!(slack, "http://127.0.0.1/***");
        }
        assert_eq!(r.smtp.unwrap().password.as_deref(), Some("***"));
        let bad = ChannelSettings {
            slack_webhook_url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("slack_webhook_url"));
    }
}
