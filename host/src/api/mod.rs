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

mod admin;
mod connector;
mod error;
mod http;
pub mod openapi;
pub mod quota;
mod tenant;

pub use error::ApiError;
use error::*;
use http::*;
pub use http::{new_token, token_hash};

use crate::codes;
use crate::delivery::ChannelSettings;
use crate::engine::{Engine, EngineError, FeedEvent};
use crate::lane::Lane;
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

/// A request's declared `Content-Length`, if it has a readable one.
fn declared_length(req: &Request<Incoming>) -> Option<usize> {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

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
    /// Each tenant's bytes of event bodies.
    volume: quota::RateLimiter,
    /// Each tenant's requests in the normal lane now.
    normal: Arc<quota::Slots>,
    /// Each tenant's server time deciding events (ms).
    work: quota::RateLimiter,
    feeds: Arc<quota::Slots>,
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

/// Bodies up to this size are parsed on the async worker that read them
/// (tens of microseconds); larger ones on a blocking thread.
const PARSE_INLINE_BYTES: usize = 64 << 10;

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
            volume: quota::RateLimiter::default(),
            normal: Arc::default(),
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
                let mut r = json(
                    e.status,
                    &serde_json::json!({"error": e.message, "code": e.code}),
                );
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

    /// Take an event body's bytes from the tenant's volume: its declared
    /// `Content-Length`, before a byte of it is read (a body without one is
    /// charged once read, by [`Self::body_in`], and is refused only while
    /// the tenant is in debt).
    fn body_volume(&self, tenant: &str, req: &Request<Incoming>) -> Result<(), ApiError> {
        self.volume_of(tenant, declared_length(req).unwrap_or(0))
    }

    /// Take `bytes` from the tenant's volume.
    fn volume_of(&self, tenant: &str, bytes: usize) -> Result<(), ApiError> {
        let q = self.quotas;
        self.volume
            .take_n(
                tenant,
                (bytes as f64).max(1.0),
                q.body_bytes_per_second,
                q.body_burst_bytes,
            )
            .map_err(|wait| {
                ApiError::too_many(
                    format!(
                        "over {} bytes of event bodies per second (burst {}); retry after the \
                         Retry-After seconds",
                        q.body_bytes_per_second, q.body_burst_bytes
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
        decide: impl AsyncFnOnce(Lane) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let q = self.quotas;
        let left = self
            .work
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
        // A tenant that has spent more than half its burst of server time,
        // of events or of body bytes (it sends faster than its rates, its
        // excess refused or not yet), is using more than its share: its
        // work runs in the low lane ([`lane`]) until it is back under, so
        // it takes only what nobody else wants.
        let lane_at = |left: f64| {
            let events_left = self.rates.left(tenant, q.events_per_second, q.event_burst);
            let bytes_left = self
                .volume
                .left(tenant, q.body_bytes_per_second, q.body_burst_bytes);
            if left < q.work_burst_ms / 2.0
                || events_left < q.event_burst / 2.0
                || bytes_left < q.body_burst_bytes / 2.0
            {
                Lane::Low
            } else {
                Lane::Normal
            }
        };
        let shares = self.engine.runtime.shares();
        let mut lane = lane_at(left);
        shares.set_lane(tenant, lane);
        // A tenant's requests at once beyond its share of the normal lane
        // yield ([`Lane::Yield`]): one tenant's many clients cannot hold
        // every core against the others (before any of their work is
        // charged), and alone they still run at full speed.
        let slot = match lane {
            Lane::Normal => self
                .normal
                .take_within(tenant, q.normal_requests_per_tenant),
            Lane::Low | Lane::Yield => None,
        };
        if slot.is_none() && lane == Lane::Normal {
            lane = Lane::Yield;
        }
        // While a normal-lane request is in progress, the other tenants'
        // low-lane work waits.
        let busy = (lane == Lane::Normal).then(|| shares.gate().enter(tenant));
        let started = std::time::Instant::now();
        let out = decide(lane).await;
        drop(busy);
        drop(slot);
        // Time its work waited for the normal lane is not its work.
        let took = started.elapsed();
        let ms = took
            .saturating_sub(shares.take_paused(tenant, took))
            .as_secs_f64()
            * 1000.0;
        let left = self
            .work
            .charge(tenant, ms, q.work_ms_per_second, q.work_burst_ms);
        shares.set_lane(tenant, lane_at(left));
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

    async fn body<T: DeserializeOwned + Send + 'static>(
        &self,
        req: Request<Incoming>,
    ) -> Result<T, ApiError> {
        self.body_up_to(req, self.max_body_bytes).await
    }

    /// The body parsed; a big one is parsed on a blocking thread, so a
    /// megabyte of JSON (several milliseconds of CPU) never holds an async
    /// worker that every other request's I/O waits on.
    async fn body_up_to<T: DeserializeOwned + Send + 'static>(
        &self,
        req: Request<Incoming>,
        limit: usize,
    ) -> Result<T, ApiError> {
        let bytes = self.raw_body(req, limit).await?;
        self.parse_in(bytes, "", Lane::Normal).await
    }

    /// [`Self::body`] of a request of `tenant` in `lane`: a big body of a
    /// low-lane tenant is parsed on a low-priority thread.
    async fn body_in<T: DeserializeOwned + Send + 'static>(
        &self,
        req: Request<Incoming>,
        tenant: &str,
        lane: Lane,
    ) -> Result<T, ApiError> {
        let undeclared = declared_length(&req).is_none();
        let bytes = self.raw_body(req, self.max_body_bytes).await?;
        if undeclared {
            // Not taken before it was read ([`Self::body_volume`]): charged
            // now, into debt if need be.
            let q = self.quotas;
            self.volume.charge(
                tenant,
                bytes.len() as f64,
                q.body_bytes_per_second,
                q.body_burst_bytes,
            );
        }
        self.parse_in(bytes, tenant, lane).await
    }

    /// `bytes` parsed; big ones on a blocking thread of `lane`.
    async fn parse_in<T: DeserializeOwned + Send + 'static>(
        &self,
        bytes: Bytes,
        tenant: &str,
        lane: Lane,
    ) -> Result<T, ApiError> {
        if bytes.len() <= PARSE_INLINE_BYTES {
            return parse_json(&bytes);
        }
        blocking_in(&self.engine.runtime, tenant, lane, move || {
            parse_json(&bytes)
        })
        .await
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
        let declared = declared_length(&req);
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
            // For a load balancer: the instance answers and reaches its
            // database.
            (&Method::GET, ["healthz"]) => {
                let store = self.engine.store.clone();
                blocking(move || {
                    store.schema_version().map_err(|e| {
                        tracing::warn!(error = %e, "health check: the database does not answer");
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the database does not answer",
                        )
                    })
                })
                .await?;
                ok(&serde_json::json!({"status": "ok"}))
            }
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
            (_, ["v1", "connectors", desk, "events"]) => {
                let desk = desk.to_string();
                self.connector_event(req, method, &desk).await
            }
            (_, ["v1", ..]) => {
                let tenant = self.tenant(&req).await?;
                self.tenant_route(req, method, &segs[1..], tenant).await
            }
            _ => Err(no_route(&method, &path)),
        }
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
            "/v1/connectors/{desk}/events",
            "/v1/agents/{id}/notifications",
        ] {
            assert!(paths.contains_key(p), "{p} missing from openapi.json");
        }
        assert_eq!(
            paths.len(),
            32,
            "a route in openapi.json that the API lacks"
        );
    }

    #[test]
    fn every_error_answer_carries_a_code_the_description_lists() {
        let doc = openapi::build();
        let schema =
            &doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"];
        let listed: Vec<&str> = schema["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert_eq!(listed.len(), codes::ALL.len());
        assert_eq!(schema["required"], serde_json::json!(["error", "code"]));
        // Each status's general code, and a precise one from the engine.
        for status in [400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503] {
            let e = ApiError::new(StatusCode::from_u16(status).unwrap(), "x");
            assert!(listed.contains(&e.code), "{status}: {}", e.code);
        }
        let e: ApiError =
            EngineError::NotFound(codes::TICKET_NOT_FOUND, "no ticket T".into()).into();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, "ticket.not_found")
        );
        let mut seen = std::collections::HashSet::new();
        assert!(
            codes::ALL.iter().all(|(c, _)| seen.insert(*c)),
            "codes are unique"
        );
    }
}
