//! HTTP plumbing: JSON answers, query strings, pagination, strict JSON
//! bodies, tokens, and running store work off the async threads.

use super::*;

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

pub(super) fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response")
}

pub(super) fn ok(v: &impl serde::Serialize) -> ApiResult {
    Ok(json(StatusCode::OK, v))
}

/// Percent-decode a path segment or query value.
pub(super) fn decode(s: &str) -> String {
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

pub(super) fn query(req: &Request<Incoming>) -> HashMap<String, String> {
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
pub(super) struct Page {
    pub(super) after: Option<String>,
    pub(super) limit: usize,
}

impl Page {
    pub(super) fn of(req: &Request<Incoming>, max: usize) -> Result<Page, ApiError> {
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
    pub(super) fn cut<T>(
        &self,
        all: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let rest: Vec<T> = all
            .into_iter()
            .filter(|t| self.after.as_ref().is_none_or(|a| key(t) > *a))
            .collect();
        self.trim(rest, key)
    }

    /// Items already after the cursor (a query fetched `limit + 1`): the
    /// page, and the cursor of the next page if there is more.
    pub(super) fn trim<T>(
        &self,
        mut rest: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let more = rest.len() > self.limit;
        rest.truncate(self.limit);
        let next = if more { rest.last().map(&key) } else { None };
        (rest, next)
    }

    pub(super) fn answer(
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
pub(super) fn encode(s: &str) -> String {
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
pub(super) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // Every request body is an object (serde would also read a struct
    // from an array of its fields, which no client means).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid JSON: the body must be a JSON object",
        )
        .code(codes::BODY_INVALID_JSON));
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
                    .code(codes::BODY_INVALID_JSON)
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
pub(super) fn whole_numbers_as_integers(v: &mut serde_json::Value) {
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
pub(super) fn invalid_json(path: &str, inner: &dyn std::fmt::Display) -> ApiError {
    let at = if path == "." {
        String::new()
    } else {
        format!(" at {path}")
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("invalid JSON{at}: {inner}"),
    )
    .code(codes::BODY_INVALID_JSON)
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(anyhow::anyhow!("a request task failed: {e}")))?
}
/// `f` on a thread of `lane`: [`blocking`]'s pool for the normal lane, a
/// low-priority call thread for the low one.
pub(super) async fn blocking_in<T: Send + 'static>(
    runtime: &crate::runtime::Runtime,
    tenant: &str,
    lane: crate::runtime::shares::Lane,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if lane == crate::runtime::shares::Lane::Normal {
        return blocking(f).await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Low-lane host work (parsing a megabyte of JSON) also starts only
    // when no normal-lane request is in progress, or after the cap.
    let shares = runtime.shares().clone();
    let tenant = tenant.to_string();
    runtime
        .run_in_lane(
            lane,
            Box::new(move || {
                let waited = shares
                    .gate()
                    .wait_idle(&tenant, crate::lane::LOW_WAITS_AT_MOST);
                shares.paused(&tenant, waited);
                let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
            }),
        )
        .map_err(|e| internal(anyhow::anyhow!("no thread for a request: {e}")))?;
    match rx.await {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => Err(internal(anyhow::anyhow!("a request task panicked"))),
        Err(_) => Err(internal(anyhow::anyhow!(
            "a request task ended without an answer"
        ))),
    }
}

/// A streaming body fed by a channel (the SSE feed).
pub(super) struct ChannelBody(pub(super) tokio::sync::mpsc::Receiver<Bytes>);

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
