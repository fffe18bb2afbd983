//! The HTTP API (hyper 1, HTTP/1.1), multi-tenant.
//!
//! Every `/v1` request carries `Authorization: Bearer TOKEN`. A tenant's
//! token sees that tenant's tickets, agents, plugins, deliveries and feeds
//! and nothing else (every store query is scoped by the token's tenant, and
//! a ticket of another tenant is simply not found). The admin token manages
//! tenants (and, on a manual clock, moves time). Errors are JSON
//! `{"error": "what is wrong"}` with the matching status. Bodies are capped
//! (`max_body_bytes`). The OpenAPI description is served at
//! `/openapi.json`.

pub mod openapi;
pub mod quota;

use crate::delivery::ChannelSettings;
use crate::engine::{Engine, EngineError, FeedEvent};
use crate::model::Event;
use crate::model::{self, AgentStatus};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::Digest;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

/// The hand-written part of the OpenAPI description (the served one adds
/// the schemas generated from the types: [`openapi::document`]).
pub use openapi::PATHS as OPENAPI;

/// A response body.
pub type Body = BoxBody<Bytes, Infallible>;

/// The API's state.
pub struct Api {
    /// The engine.
    pub engine: Arc<Engine>,
    /// SHA-256 (hex) of the admin token.
    pub admin_hash: String,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The largest plugin upload accepted.
    pub max_upload_bytes: usize,
    /// The edge: connections, and how long a client may take to send.
    pub edge: Edge,
    /// Where tenants' destinations may point.
    pub outbound: Arc<crate::delivery::Policy>,
    /// Per-tenant quotas.
    pub quotas: quota::Quotas,
    /// SHA-256 (hex) of the read-only token for `/metrics`, if set.
    pub metrics_hash: Option<String>,
    rates: quota::RateLimiter,
    /// Each tenant's server time deciding events (ms).
    work: quota::RateLimiter,
    feeds: Arc<quota::FeedSlots>,
    tokens: RwLock<HashMap<String, String>>,
}

/// Bounds of the HTTP edge, so slow or idle clients cannot hold the server.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// Connections open at once; past it the server stops accepting until
    /// one closes (new ones wait in the kernel's backlog).
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest an idle
    /// keep-alive connection is kept.
    pub header_timeout: std::time::Duration,
    /// Time to send a request's body.
    pub body_timeout: std::time::Duration,
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            max_connections: default_max_connections(),
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// The process's open-file limit less 64 for the database, the artifact
/// cache and outbound calls (at least 16, at most 4096; 1024 if the limit
/// cannot be read).
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse::<usize>()
                .ok()
        });
    soft.map_or(1024, |n| n.saturating_sub(64).clamp(16, 4096))
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds, for `Retry-After` (429, 503).
    retry_after: Option<u64>,
    /// The methods the path takes, for `Allow` (405).
    allow: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// A 429 that says when to come back.
    fn too_many(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            allow: None,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            EngineError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            EngineError::Failed { event, .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "event {event} was stored, but deciding on it failed; the event is marked failed with its reason (GET the ticket) and will not be retried"
                ),
            ),
            EngineError::Internal(e) => internal(e),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        internal(e)
    }
}

fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{e:#}"), "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

type ApiResult = Result<Response<Body>, ApiError>;

/// SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A fresh random token: `esc_` and 32 random bytes in hex.
pub fn new_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("esc_{}", hex::encode(b)))
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response")
}

fn ok(v: &impl serde::Serialize) -> ApiResult {
    Ok(json(StatusCode::OK, v))
}

/// Percent-decode a path segment or query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// `?limit=N&after=CURSOR` of a list: at most `limit` items (default 100,
/// at most the operator's page size) after the cursor. The answer is the
/// array; a `Link: <…>; rel="next"` header points at the next page.
struct Page {
    after: Option<String>,
    limit: usize,
}

impl Page {
    fn of(req: &Request<Incoming>, max: usize) -> Result<Page, ApiError> {
        let q = query(req);
        let limit = match q.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=max).contains(l))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("limit must be a number from 1 to {max}"),
                    )
                })?,
            None => 100.min(max),
        };
        Ok(Page {
            after: q.get("after").cloned(),
            limit,
        })
    }

    /// The page of `all` (sorted by `key`) after the cursor, and the
    /// cursor of the next page if there is more.
    fn cut<T>(&self, all: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let rest: Vec<T> = all
            .into_iter()
            .filter(|t| self.after.as_ref().is_none_or(|a| key(t) > *a))
            .collect();
        self.trim(rest, key)
    }

    /// Items already after the cursor (a query fetched `limit + 1`): the
    /// page, and the cursor of the next page if there is more.
    fn trim<T>(&self, mut rest: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let more = rest.len() > self.limit;
        rest.truncate(self.limit);
        let next = if more { rest.last().map(&key) } else { None };
        (rest, next)
    }

    fn answer(
        &self,
        req: &Request<Incoming>,
        list: &impl serde::Serialize,
        next: Option<String>,
    ) -> Response<Body> {
        let mut r = json(StatusCode::OK, list);
        if let Some(next) = next {
            let link = format!(
                "<{}?limit={}&after={}>; rel=\"next\"",
                req.uri().path(),
                self.limit,
                encode(&next)
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&link) {
                r.headers_mut().insert("link", v);
            }
        }
        r
    }
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// JSON from `bytes`, borrowing from them where the type allows; the
/// error names where it went wrong.
fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // Every request body is an object (serde would also read a struct
    // from an array of its fields, which no client means).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid JSON: the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let typed: Result<T, _> = serde_path_to_error::deserialize(de);
    match typed {
        // A whole number written with a fraction (`587.0`) is still the
        // number JSON means: read it again with such numbers as integers
        // (only then: the fast path parses once).
        Err(e)
            if e.inner()
                .to_string()
                .starts_with("invalid type: floating point") =>
        {
            let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"))
            })?;
            whole_numbers_as_integers(&mut v);
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                invalid_json(&path, &e.into_inner())
            })
        }
        other => other.map_err(|e| {
            let path = e.path().to_string();
            invalid_json(&path, &e.into_inner())
        }),
    }
}

/// Replace every float with no fraction (within ±2^53) by the integer.
fn whole_numbers_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *v = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(m) => m.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// 400 for a body that does not parse as its type, naming where.
fn invalid_json(path: &str, inner: &dyn std::fmt::Display) -> ApiError {
    let at = if path == "." {
        String::new()
    } else {
        format!(" at {path}")
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("invalid JSON{at}: {inner}"),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(anyhow::anyhow!("a request task failed: {e}")))?
}

impl Api {
    /// The API over `engine`.
    pub fn new(engine: Arc<Engine>, admin_hash: String, max_body_bytes: usize) -> Api {
        Api {
            engine,
            admin_hash,
            max_body_bytes,
            max_upload_bytes: 64 << 20,
            edge: Edge::default(),
            outbound: Arc::default(),
            quotas: quota::Quotas::default(),
            metrics_hash: None,
            rates: quota::RateLimiter::default(),
            work: quota::RateLimiter::default(),
            feeds: Arc::default(),
            tokens: RwLock::default(),
        }
    }

    /// Answer one request; never fails (errors become JSON answers).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let started = std::time::Instant::now();
        let resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = json(e.status, &serde_json::json!({"error": e.message}));
                if let Some(secs) = e.retry_after {
                    r.headers_mut()
                        .insert("retry-after", hyper::header::HeaderValue::from(secs));
                }
                if let Some(v) = e
                    .allow
                    .as_deref()
                    .and_then(|a| hyper::header::HeaderValue::from_str(a).ok())
                {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
                if e.retry_after.is_some() || e.status == StatusCode::UNAUTHORIZED {
                    // Refused before its body was read: the connection
                    // cannot carry another request, so the client must
                    // not reuse it.
                    r.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                r
            }
        };
        tracing::debug!(%method, %path, status = resp.status().as_u16(),
            micros = started.elapsed().as_micros() as u64, "request");
        Ok(resp)
    }

    fn bearer(req: &Request<Incoming>) -> Result<String, ApiError> {
        let h = req
            .headers()
            .get("authorization")
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer TOKEN",
                )
            })?
            .to_str()
            .unwrap_or("");
        h.strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authorization must be Bearer TOKEN",
                )
            })
    }

    fn admin(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        if token_hash(&Self::bearer(req)?) == self.admin_hash {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token",
            ))
        }
    }

    /// The admin token or the read-only metrics token.
    fn scraper(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let hash = token_hash(&Self::bearer(req)?);
        if hash == self.admin_hash || self.metrics_hash.as_deref() == Some(hash.as_str()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the metrics token (or the admin token)",
            ))
        }
    }

    /// Take one event from the tenant's rate.
    fn event_rate(&self, tenant: &str) -> Result<(), ApiError> {
        let q = self.quotas;
        self.rates
            .take(tenant, q.events_per_second, q.event_burst)
            .map_err(|wait| {
                ApiError::too_many(
                    format!(
                        "over {} events per second (burst {}); retry after the Retry-After seconds",
                        q.events_per_second, q.event_burst
                    ),
                    wait,
                )
            })
    }

    /// Run `decide` (reading, parsing and deciding one event) on the
    /// tenant's budget of server time: refused while the tenant is in
    /// debt, and charged what it took, whatever the answer.
    async fn metered<T>(
        &self,
        tenant: &str,
        decide: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let q = self.quotas;
        self.work
            .admit(tenant, q.work_ms_per_second, q.work_burst_ms)
            .map_err(|wait| {
                ApiError::too_many(
                    format!(
                        "this tenant's events took more than {} ms of server time per second \
                         (burst {} ms); retry after the Retry-After seconds",
                        q.work_ms_per_second, q.work_burst_ms
                    ),
                    wait,
                )
            })?;
        let started = std::time::Instant::now();
        let out = decide.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.work
            .charge(tenant, ms, q.work_ms_per_second, q.work_burst_ms);
        out
    }

    /// Forget cached tokens of `tenant` (rotated or revoked).
    fn forget_tokens(&self, tenant: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, t| t != tenant);
    }

    async fn tenant(&self, req: &Request<Incoming>) -> Result<String, ApiError> {
        let hash = token_hash(&Self::bearer(req)?);
        if let Some(t) = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            return Ok(t.clone());
        }
        let store = self.engine.store.clone();
        let h = hash.clone();
        let tenant = blocking(move || Ok(store.tenant_by_token(&h)?)).await?;
        match tenant {
            Some(t) => {
                self.tokens
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash, t.id.clone());
                Ok(t.id)
            }
            None if hash == self.admin_hash => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the admin token manages tenants; use a tenant's token here",
            )),
            None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")),
        }
    }

    async fn body<T: DeserializeOwned>(&self, req: Request<Incoming>) -> Result<T, ApiError> {
        self.body_up_to(req, self.max_body_bytes).await
    }

    async fn body_up_to<T: DeserializeOwned>(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<T, ApiError> {
        let bytes = self.raw_body(req, limit).await?;
        parse_json(&bytes)
    }

    /// The body's bytes, at most `limit`, within the body timeout.
    async fn raw_body(&self, req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
        if let Some(ct) = req.headers().get("content-type") {
            let ct = ct.to_str().unwrap_or("");
            if !ct.starts_with("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("send JSON (content-type: application/json), not {ct:?}"),
                ));
            }
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        // Frames go straight into one buffer sized from Content-Length (up
        // to 16 MiB before any byte arrives): the body is held once, never
        // as chunks and a copy of them.
        let mut body = req.into_body();
        let read = async {
            let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(16 << 20));
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
                })?;
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&data);
                }
            }
            Ok(Bytes::from(buf))
        };
        tokio::time::timeout(self.edge.body_timeout, read)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {:?}",
                        self.edge.body_timeout
                    ),
                )
            })?
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>) -> ApiResult {
        let path = req.uri().path().to_string();
        let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method = req.method().clone();
        match (&method, segs.as_slice()) {
            (&Method::GET, ["healthz"]) => ok(&serde_json::json!({"status": "ok"})),
            (&Method::GET, [""]) | (&Method::GET, ["dashboard"]) => Ok(Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .body(Full::new(Bytes::from_static(crate::dashboard::PAGE.as_bytes())).boxed())
                .expect("a valid response")),
            (&Method::GET, ["metrics"]) => {
                self.scraper(&req)?;
                let engine = self.engine.clone();
                let text = blocking(move || {
                    let mut gauges = Vec::new();
                    for (tenant, a) in engine.store.all_agents()? {
                        let l = vec![("tenant", tenant.clone()), ("agent", a.id.clone())];
                        gauges.push((
                            "escalator_agent_open_tickets",
                            l.clone(),
                            f64::from(a.open_tickets),
                        ));
                        gauges.push(("escalator_agent_capacity", l, f64::from(a.capacity)));
                    }
                    for (tenant, channel, status, n) in engine.store.delivery_counts()? {
                        gauges.push((
                            "escalator_notifications",
                            vec![("tenant", tenant), ("channel", channel), ("status", status)],
                            n as f64,
                        ));
                    }
                    Ok(engine.metrics.render(&gauges))
                })
                .await?;
                Ok(Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(Full::new(Bytes::from(text)).boxed())
                    .expect("a valid response"))
            }
            (&Method::GET, ["openapi.json"]) => Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(openapi::document().as_bytes())).boxed())
                .expect("a valid response")),
            (_, ["v1", "tenants"]) => self.tenants(req, method).await,
            (_, ["v1", "tenants", id, "token"]) => {
                let id = id.to_string();
                self.tenant_token(req, method, id).await
            }
            (_, ["v1", "clock"]) => self.clock(req, method).await,
            (_, ["v1", ..]) => {
                let tenant = self.tenant(&req).await?;
                self.tenant_route(req, method, &segs[1..], tenant).await
            }
            _ => Err(no_route(&method, &path)),
        }
    }

    async fn tenants(self: &Arc<Self>, req: Request<Incoming>, method: Method) -> ApiResult {
        self.admin(&req)?;
        let store = self.engine.store.clone();
        match method {
            Method::GET => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let (list, next) = page.cut(blocking(move || Ok(store.tenants()?)).await?, |t| {
                    t.id.clone()
                });
                Ok(page.answer(&req, &list, next))
            }
            Method::POST => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewTenant {
                    id: String,
                    #[serde(default)]
                    name: Option<String>,
                }
                let t: NewTenant = self.body(req).await?;
                let valid = !t.id.is_empty()
                    && t.id.len() <= 64
                    && t.id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "tenant id: 1-64 characters of a-z, A-Z, 0-9, - and _",
                    ));
                }
                let token = new_token()?;
                let hash = token_hash(&token);
                let now = self.engine.clock.now();
                let (id, name) = (t.id.clone(), t.name.unwrap_or_else(|| t.id.clone()));
                let created = blocking(move || {
                    Ok(store.write(|tx| tx.create_tenant(&id, &name, &hash, now))?)
                })
                .await?;
                if !created {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("tenant {} exists", t.id),
                    ));
                }
                Ok(json(
                    StatusCode::CREATED,
                    &serde_json::json!({"id": t.id, "token": token}),
                ))
            }
            _ => Err(no_route(&method, req.uri().path())),
        }
    }

    /// `POST /v1/tenants/{id}/token` issues a new token (the old one stops
    /// working at once); `DELETE` revokes the token (the tenant's requests
    /// fail until a new one is issued).
    async fn tenant_token(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
        id: String,
    ) -> ApiResult {
        self.admin(&req)?;
        let store = self.engine.store.clone();
        let now = self.engine.clock.now();
        let (token, hash) = match method {
            Method::POST => {
                let token = new_token()?;
                let hash = token_hash(&token);
                (Some(token), hash)
            }
            // A hash no token has: nothing authenticates as the tenant.
            Method::DELETE => (None, format!("revoked:{}", new_token()?)),
            _ => return Err(no_route(&method, req.uri().path())),
        };
        let (t, revoked) = (id.clone(), token.is_none());
        let found = blocking(move || {
            Ok(store.write(|tx| tx.set_tenant_token(&t, &hash, revoked.then_some(now)))?)
        })
        .await?;
        if !found {
            return Err(not_found(&format!("no tenant {id}")));
        }
        // Before answering: no request after this one gets in with the old
        // token, cached or not.
        self.forget_tokens(&id);
        tracing::info!(tenant = %id, revoked, "tenant token changed");
        match token {
            Some(token) => ok(&serde_json::json!({"id": id, "token": token})),
            None => ok(&serde_json::json!({"id": id, "revoked": true})),
        }
    }

    async fn clock(self: &Arc<Self>, req: Request<Incoming>, method: Method) -> ApiResult {
        self.admin(&req)?;
        if !self.engine.clock.is_manual() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the server runs on the system clock; start it with --manual-clock to move time",
            ));
        }
        match method {
            Method::GET => ok(&serde_json::json!({"now": self.engine.clock.now()})),
            Method::POST => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Move {
                    #[serde(default)]
                    advance_ms: Option<u64>,
                    #[serde(default)]
                    to: Option<chrono::DateTime<chrono::Utc>>,
                }
                let m: Move = self.body(req).await?;
                let engine = self.engine.clone();
                let (now, fired) = blocking(move || {
                    let target = match (m.advance_ms, m.to) {
                        (Some(ms), None) => {
                            crate::engine::later(engine.clock.now(), ms).map_err(|e| {
                                ApiError::new(
                                    StatusCode::UNPROCESSABLE_ENTITY,
                                    format!("advance_ms: {e}"),
                                )
                            })?
                        }
                        (None, Some(to)) => to,
                        _ => {
                            return Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "give advance_ms or to",
                            ));
                        }
                    };
                    // Step through the timers due before the target, so each
                    // fires at its own time.
                    let mut fired = 0;
                    while let Some(next) = engine.store.next_timer_at()?
                        && next <= target.timestamp_millis()
                    {
                        let at = chrono::DateTime::from_timestamp_millis(next).unwrap_or(target);
                        engine.clock.set(at);
                        let n = engine.run_due_timers()?;
                        fired += n;
                        // The scheduler may have fired them meanwhile; stop
                        // only when nothing moved on.
                        if n == 0 && engine.store.next_timer_at()? == Some(next) {
                            break;
                        }
                    }
                    let now = engine.clock.set(target).unwrap_or(target);
                    fired += engine.run_due_timers()?;
                    Ok((now, fired))
                })
                .await?;
                self.engine.delivery_wake.notify_one();
                ok(&serde_json::json!({"now": now, "fired": fired}))
            }
            _ => Err(no_route(&method, req.uri().path())),
        }
    }

    async fn tenant_route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
        segs: &[&str],
        tenant: String,
    ) -> ApiResult {
        let engine = self.engine.clone();
        let store = engine.store.clone();
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        match (&method, segs) {
            (&Method::GET, ["plugins"]) => {
                ok(&blocking(move || Ok(engine.plugin_list(&tenant))).await?)
            }
            (&Method::POST, ["plugins"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct UploadBody<'a> {
                    manifest: String,
                    // Borrowed from the body (base64 has nothing to
                    // unescape): the upload is held once as text, once as
                    // bytes, never copied in between.
                    #[serde(borrow)]
                    component_base64: std::borrow::Cow<'a, str>,
                    #[serde(default)]
                    fixtures: Vec<crate::registry::fixtures::Fixture>,
                    #[serde(default = "yes")]
                    activate: bool,
                }
                fn yes() -> bool {
                    true
                }
                let raw = self.raw_body(req, self.max_upload_bytes).await?;
                let UploadBody {
                    manifest,
                    component_base64,
                    fixtures,
                    activate,
                } = parse_json(&raw)?;
                use base64::Engine as _;
                // Standard base64; bits after the last byte need not be zero
                // (the bytes are the same either way).
                const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_allow_trailing_bits(true),
                );
                let wasm = BASE64.decode(component_base64.trim()).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("component_base64: {e}"))
                })?;
                // Decoded: the text goes before the plugin is compiled.
                drop(component_base64);
                drop(raw);
                let q = self.quotas;
                let up = crate::engine::Upload {
                    manifest,
                    wasm,
                    fixtures,
                    source: "api".into(),
                    quota: Some(crate::engine::PluginQuota {
                        plugins: q.plugins_per_tenant,
                        versions: q.versions_per_plugin,
                    }),
                };
                let out =
                    blocking(move || Ok(engine.upload(&tenant, up, "api", activate)?)).await?;
                Ok(json(StatusCode::CREATED, &out))
            }
            (&Method::GET, ["dashboard"]) => {
                ok(&blocking(move || Ok(crate::dashboard::data(&engine, &tenant)?)).await?)
            }
            (&Method::GET, ["reports", "feedback"]) => {
                ok(&blocking(move || Ok(crate::dashboard::feedback(&engine, &tenant)?)).await?)
            }
            (&Method::GET, ["plugin-changes"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let limit = page.limit as u32;
                let list = blocking(move || Ok(store.plugin_changes(&tenant, limit)?)).await?;
                ok(&list)
            }
            (&Method::GET, ["plugins", name, "versions"]) => {
                let name = name.to_string();
                ok(&blocking(move || Ok(store.plugin_versions(&tenant, &name)?)).await?)
            }
            (&Method::POST, ["plugins", name, "activate"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Activate {
                    version: String,
                }
                let a: Activate = self.body(req).await?;
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.activate(&tenant, &name, &a.version, "api")?))
                        .await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::POST, ["plugins", name, "mode"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct SetMode {
                    mode: String,
                }
                let m: SetMode = self.body(req).await?;
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.set_plugin_mode(&tenant, &name, &m.mode, "api")?))
                        .await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::POST, ["plugins", name, "rollback"]) => {
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.rollback(&tenant, &name, "api")?)).await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::DELETE, ["plugins", name, "versions", version]) => {
                let (name, version) = (name.to_string(), version.to_string());
                blocking(move || Ok(engine.delete_version(&tenant, &name, &version, "api")?))
                    .await?;
                ok(&serde_json::json!({"deleted": true}))
            }
            (&Method::DELETE, ["plugins", name]) => {
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.remove_plugin(&tenant, &name, "api")?)).await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::GET, ["plugins", name, "shadow-report"]) => {
                let q = query(&req);
                let now = engine.clock.now();
                let since = q
                    .get("since")
                    .cloned()
                    .unwrap_or_else(|| crate::store::ts(now - chrono::Duration::days(7)));
                let until = q
                    .get("until")
                    .cloned()
                    .unwrap_or_else(|| crate::store::ts(now + chrono::Duration::seconds(1)));
                for (k, v) in [("since", &since), ("until", &until)] {
                    if v.parse::<chrono::DateTime<chrono::Utc>>().is_err() {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("{k}: {v:?} is not an RFC 3339 time"),
                        ));
                    }
                }
                let name = name.to_string();
                let since = crate::store::ts(since.parse().expect("checked"));
                let until = crate::store::ts(until.parse().expect("checked"));
                ok(
                    &blocking(move || Ok(engine.shadow_report(&tenant, &name, &since, &until)?))
                        .await?,
                )
            }
            (&Method::GET, ["settings"]) => {
                let s: ChannelSettings = blocking(move || {
                    Ok(serde_json::from_value(store.settings(&tenant)?).unwrap_or_default())
                })
                .await?;
                ok(&s.redacted())
            }
            (&Method::PUT, ["settings"]) => {
                let mut s: ChannelSettings = self.body(req).await?;
                let (t, reader) = (tenant.clone(), store.clone());
                let stored: ChannelSettings = blocking(move || {
                    Ok(serde_json::from_value(reader.settings(&t)?).unwrap_or_default())
                })
                .await?;
                s.keep_secrets_from(&stored);
                if s.webhooks.len() > self.quotas.webhooks_per_tenant {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "webhooks: at most {} per tenant (the operator's [limits] webhooks-per-tenant)",
                            self.quotas.webhooks_per_tenant
                        ),
                    ));
                }
                s.validate()
                    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
                s.check_destinations(&self.outbound)
                    .await
                    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
                let v = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
                blocking(move || Ok(store.write(|tx| tx.set_settings(&tenant, &v))?)).await?;
                ok(&s.redacted())
            }
            (&Method::GET, ["agents"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let (list, next) = page
                    .cut(blocking(move || Ok(store.agents(&tenant)?)).await?, |a| {
                        a.id.clone()
                    });
                Ok(page.answer(&req, &list, next))
            }
            (&Method::GET, ["agents", id]) => {
                let id = id.to_string();
                let a = blocking(move || Ok(store.agent(&tenant, &id)?)).await?;
                a.map_or_else(|| Err(not_found("no such agent")), |a| ok(&a))
            }
            (&Method::PUT, ["agents", id]) => {
                let mut a: model::Agent = self.body(req).await?;
                if a.id.is_empty() {
                    a.id = id.to_string();
                }
                if a.id != *id {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("the body's id {:?} is not the path's {id:?}", a.id),
                    ));
                }
                let out = a.clone();
                blocking(move || Ok(engine.put_agent(&tenant, a)?)).await?;
                ok(&out)
            }
            (&Method::POST, ["agents", id, "status"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Status {
                    status: AgentStatus,
                }
                let s: Status = self.body(req).await?;
                let id = id.to_string();
                let moved =
                    blocking(move || Ok(engine.set_agent_status(&tenant, &id, s.status)?)).await?;
                ok(&serde_json::json!({"status": s.status, "rerouted": moved}))
            }
            (&Method::GET, ["agents", id, "feed"]) => {
                let id = id.to_string();
                let (s2, t2, i2) = (store.clone(), tenant.clone(), id.clone());
                if blocking(move || Ok(s2.agent(&t2, &i2)?)).await?.is_none() {
                    return Err(not_found("no such agent"));
                }
                // The feed item to start after: `Last-Event-ID` on a
                // reconnect, else `after`; anything but a number is refused.
                let cursor = |v: &str, what: &str| {
                    v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("{what} must be a feed item id (a number)"),
                        )
                    })
                };
                let from_query = query(&req)
                    .get("after")
                    .map(|a| cursor(a, "after"))
                    .transpose()?;
                let after = match req.headers().get("last-event-id") {
                    Some(h) => cursor(h.to_str().unwrap_or(""), "Last-Event-ID")?,
                    None => from_query.unwrap_or(0),
                };
                let wants_stream = req
                    .headers()
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/event-stream"));
                if wants_stream {
                    let q = self.quotas;
                    let slot = self
                        .feeds
                        .take(&tenant, q.sse_per_tenant, q.sse_total)
                        .map_err(|r| match r {
                            quota::FeedRefusal::Tenant(n) => ApiError::too_many(
                                format!("at most {n} live feeds per tenant are open; close one"),
                                std::time::Duration::from_secs(5),
                            ),
                            quota::FeedRefusal::Total(n) => ApiError {
                                status: StatusCode::SERVICE_UNAVAILABLE,
                                message: format!("the server has {n} live feeds open; try later"),
                                retry_after: Some(5),
                                allow: None,
                            },
                        })?;
                    Ok(self.feed_stream(tenant, id, after, slot))
                } else {
                    ok(&blocking(move || Ok(store.feed(&tenant, &id, after)?)).await?)
                }
            }
            (&Method::POST, ["tickets"]) => {
                self.event_rate(&tenant)?;
                let out = self
                    .metered(&tenant.clone(), async {
                        let t: model::Ticket = self.body(req).await?;
                        blocking(move || Ok(engine.create_ticket(&tenant, t, key.as_deref())?))
                            .await
                    })
                    .await?;
                Ok(json(StatusCode::CREATED, &out))
            }
            (&Method::GET, ["tickets", id]) => {
                let id = id.to_string();
                let v = blocking(move || {
                    let state = store
                        .ticket(&tenant, &id)?
                        .ok_or_else(|| not_found(&format!("no ticket {id}")))?;
                    Ok(serde_json::json!({
                        "ticket": state.ticket,
                        "tier": state.escalation.as_ref().map(|e| e.tier),
                        "assignee": state.ticket.assignee,
                        "queue": state.queue,
                        "escalation": state.escalation,
                        "history": state.history,
                        "handoff": crate::engine::handoff(&state),
                        "events": store.events(&tenant, &id)?,
                        "decisions": store.decisions(&tenant, &id)?,
                        "timers": store.timers(&tenant, &id)?,
                    }))
                })
                .await?;
                ok(&v)
            }
            (&Method::GET, ["tickets", id, "handoff"]) => {
                let id = id.to_string();
                let v = blocking(move || {
                    let state = store
                        .ticket(&tenant, &id)?
                        .ok_or_else(|| not_found(&format!("no ticket {id}")))?;
                    Ok(crate::engine::handoff(&state))
                })
                .await?;
                ok(&v)
            }
            (&Method::GET, ["tickets", id, "timers"]) => {
                let id = id.to_string();
                ok(&blocking(move || Ok(store.timers(&tenant, &id)?)).await?)
            }
            (&Method::POST, ["tickets", id, "events"]) => {
                self.event_rate(&tenant)?;
                let id = id.to_string();
                let out = self
                    .metered(&tenant.clone(), async {
                        let event: Event = self.body(req).await?;
                        blocking(move || {
                            Ok(engine.add_event(&tenant, &id, event, key.as_deref())?)
                        })
                        .await
                    })
                    .await?;
                ok(&out)
            }
            (&Method::GET, ["escalations"]) => {
                let limit = Page::of(&req, self.quotas.max_page)?.limit as u32;
                let tier = query(&req).get("tier").cloned();
                if let Some(t) = &tier
                    && serde_json::from_value::<model::Tier>(serde_json::Value::String(t.clone()))
                        .is_err()
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("tier {t:?}: must be one of low, medium, high, critical"),
                    ));
                }
                let list = blocking(move || Ok(store.escalated(&tenant, limit)?)).await?;
                let list: Vec<_> = list
                    .into_iter()
                    .filter(|s| {
                        tier.as_deref().is_none_or(|t| {
                            s.escalation.as_ref().is_some_and(|e| {
                                serde_json::to_value(e.tier).ok()
                                    == Some(serde_json::Value::String(t.into()))
                            })
                        })
                    })
                    .map(|s| {
                        serde_json::json!({
                            "ticket": s.ticket.id, "subject": s.ticket.subject,
                            "tier": s.escalation.as_ref().map(|e| e.tier),
                            "escalated_at": s.escalation.as_ref().map(|e| e.escalated_at),
                            "reasons": s.escalation.as_ref().map(|e| e.reasons.iter().map(|r| &r.reason).collect::<Vec<_>>()),
                            "assignee": s.ticket.assignee, "queue": s.queue,
                            "claimed_at": s.ticket.claimed_at, "status": s.ticket.status,
                        })
                    })
                    .collect();
                ok(&list)
            }
            (&Method::GET, ["deliveries"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let ticket = query(&req).get("ticket").cloned();
                let after = match &page.after {
                    Some(a) => a.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::new(StatusCode::BAD_REQUEST, "after must be a delivery id")
                    })?,
                    None => 0,
                };
                let limit = page.limit;
                let list = blocking(move || {
                    Ok(store.deliveries(&tenant, ticket.as_deref(), after, limit + 1)?)
                })
                .await?;
                let (list, next) = page.trim(list, |d| d.id.to_string());
                Ok(page.answer(&req, &list, next))
            }
            _ => Err(no_route(&method, &format!("/v1/{}", segs.join("/")))),
        }
    }

    /// The agent's in-app feed as Server-Sent Events: everything after
    /// `after` (the `Last-Event-ID` on a reconnect), then each new item as
    /// it is written, with a keep-alive comment every 15 seconds.
    fn feed_stream(
        &self,
        tenant: String,
        agent: String,
        after: i64,
        slot: quota::FeedSlot,
    ) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut live = self.engine.feed.subscribe();
        let store = self.engine.store.clone();
        tokio::spawn(async move {
            // Held while the stream lives.
            let _slot = slot;
            let frame = |item: &crate::store::FeedItem| {
                Bytes::from(format!(
                    "id: {}\nevent: notification\ndata: {}\n\n",
                    item.id,
                    serde_json::to_string(item).unwrap_or_default()
                ))
            };
            let mut last = after;
            if tx
                .send(Bytes::from_static(b": connected\n\n"))
                .await
                .is_err()
            {
                return;
            }
            loop {
                // Catch up from the store (at start, and after falling behind).
                let (s, t, a) = (store.clone(), tenant.clone(), agent.clone());
                let backlog = tokio::task::spawn_blocking(move || s.feed(&t, &a, last))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
                for item in &backlog {
                    if tx.send(frame(item)).await.is_err() {
                        return;
                    }
                    last = item.id;
                }
                loop {
                    tokio::select! {
                        ev = live.recv() => match ev {
                            Ok(FeedEvent { tenant: t, item }) => {
                                if t == tenant && item.agent == agent && item.id > last {
                                    if tx.send(frame(&item)).await.is_err() {
                                        return;
                                    }
                                    last = item.id;
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {
                            if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(ChannelBody(rx)))
            .expect("a valid response")
    }
}

/// The routes of the API description: each path's segments (`{x}` for a
/// parameter) and its methods, upper case.
fn routes() -> &'static [(Vec<String>, Vec<String>)] {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, ops)| {
                        let segs = path
                            .trim_matches('/')
                            .split('/')
                            .map(String::from)
                            .collect();
                        let methods = ops
                            .as_object()
                            .map(|o| {
                                o.keys()
                                    .filter(|k| *k != "parameters")
                                    .map(|k| k.to_uppercase())
                                    .collect()
                            })
                            .unwrap_or_default();
                        (segs, methods)
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// No handler for `method` on `path`: 405 with `Allow` when the API
/// describes the path with other methods, else 404.
fn no_route(method: &Method, path: &str) -> ApiError {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let matches = |template: &[String]| {
        template.len() == segs.len()
            && template
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
    };
    let mut allowed: Vec<&str> = routes()
        .iter()
        .filter(|(t, _)| matches(t))
        .flat_map(|(_, m)| m.iter().map(String::as_str))
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.is_empty() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path}; see /openapi.json"),
        );
    }
    let allow = allowed.join(", ");
    ApiError {
        allow: Some(allow.clone()),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes {allow}, not {method}"),
        )
    }
}

fn not_found(m: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, m)
}

/// A streaming body fed by a channel (the SSE feed).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Serve `api` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let edge = api.edge;
    let open = Arc::new(tokio::sync::Semaphore::new(edge.max_connections));
    let mut last_warning: Option<std::time::Instant> = None;
    let mut failed_accepts = 0u64;
    loop {
        // A connection slot first: at the cap, new clients wait in the
        // backlog instead of taking file descriptors the server needs.
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let conn = tokio::select! {
            _ = &mut shutdown => return,
            conn = listener.accept() => conn,
        };
        let stream = match conn {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or the like: back off, and say
                // so at most once a second.
                failed_accepts += 1;
                if last_warning.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                    tracing::warn!(error = %e, failed_accepts, "accept failed; backing off");
                    last_warning = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| api.clone().handle(req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(edge.header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_and_stray_percents() {
        assert_eq!(decode("T%2D1"), "T-1");
        assert_eq!(decode("a+b"), "a+b", "a plus in a path stays");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn tokens_are_random_and_stored_as_hashes() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("esc_") && a.len() == 4 + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn bodies_are_objects_and_whole_numbers_with_a_fraction_are_integers() {
        let s: crate::delivery::SmtpSettings =
            parse_json(br#"{"host": "h", "port": 587.0, "from": "a@b"}"#).unwrap();
        assert_eq!(s.port, 587);
        let e = parse_json::<crate::delivery::SmtpSettings>(
            br#"{"host": "h", "port": 587.5, "from": "a@b"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("port"), "{}", e.message);
        let e = parse_json::<crate::delivery::ChannelSettings>(b" [null, null]").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("must be a JSON object"), "{}", e.message);
    }

    #[test]
    fn a_described_path_with_another_method_is_405_with_allow_and_an_unknown_one_404() {
        let e = no_route(&Method::TRACE, "/v1/settings");
        assert_eq!(e.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.allow.as_deref(), Some("GET, PUT"));
        let e = no_route(&Method::PATCH, "/v1/tickets/T-1/events");
        assert_eq!(e.allow.as_deref(), Some("POST"));
        let e = no_route(&Method::GET, "/v1/no-such-thing");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.allow.is_none());
    }

    #[test]
    fn the_openapi_description_is_valid_json_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/healthz",
            "/openapi.json",
            "/v1/tenants",
            "/v1/tenants/{id}/token",
            "/v1/clock",
            "/v1/plugins",
            "/v1/settings",
            "/v1/agents",
            "/v1/agents/{id}",
            "/v1/agents/{id}/status",
            "/v1/agents/{id}/feed",
            "/v1/tickets",
            "/v1/tickets/{id}",
            "/v1/tickets/{id}/events",
            "/v1/tickets/{id}/handoff",
            "/v1/tickets/{id}/timers",
            "/v1/escalations",
            "/v1/deliveries",
            "/v1/plugin-changes",
            "/v1/plugins/{name}",
            "/v1/plugins/{name}/versions",
            "/v1/plugins/{name}/versions/{version}",
            "/v1/plugins/{name}/activate",
            "/v1/plugins/{name}/mode",
            "/v1/plugins/{name}/rollback",
            "/v1/plugins/{name}/shadow-report",
            "/",
            "/metrics",
            "/v1/dashboard",
            "/v1/reports/feedback",
        ] {
            assert!(paths.contains_key(p), "{p} missing from openapi.json");
        }
        assert_eq!(
            paths.len(),
            30,
            "a route in openapi.json that the API lacks"
        );
    }
}
