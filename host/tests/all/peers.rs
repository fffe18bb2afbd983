//! Real peers on 127.0.0.1 for the server tests: an HTTP server that
//! records every request (and fails on demand), and an SMTP server that
//! speaks enough RFC 5321 for a real client (lettre) to deliver to it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request the recorder received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
    /// The status it answered.
    pub status: u16,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An HTTP server on loopback that records requests.
pub struct Recorder {
    /// Its base URL.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    fail: Arc<AtomicUsize>,
    limit: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

/// A one-thread runtime for a peer, and a listener on a free loopback
/// port.
fn loopback() -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    (rt, listener)
}

impl Recorder {
    /// Start one.
    pub fn start() -> Recorder {
        let (rt, listener) = loopback();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let fail = Arc::new(AtomicUsize::new(0));
        let limit = Arc::new(AtomicUsize::new(0));
        let (reqs, f, l) = (requests.clone(), fail.clone(), limit.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (reqs, f, l) = (reqs.clone(), f.clone(), l.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (reqs, f, l) = (reqs.clone(), f.clone(), l.clone());
                            async move {
                                let method = req.method().to_string();
                                let path = req.uri().path().to_string();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                // Fail while the failure budget lasts; the first
                                // failure asks for a one-second pause.
                                let failing = f
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                // `/redirect…` answers a redirect to an internal
                                // path; `/leak…` a 500 whose body must never reach
                                // the tenant.
                                // A desk's rate limit: 429 and a second's pause.
                                let limited = !failing
                                    && l.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                let status = if failing {
                                    503
                                } else if limited {
                                    429
                                } else if path.starts_with("/redirect") {
                                    307
                                } else if path.starts_with("/leak") {
                                    500
                                } else {
                                    200
                                };
                                reqs.lock().unwrap().push(Recorded {
                                    method,
                                    path,
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    status,
                                });
                                let mut resp = hyper::Response::builder().status(status);
                                if failing || limited {
                                    resp = resp.header("retry-after", "1");
                                }
                                if status == 307 {
                                    resp = resp.header("location", "/internal/admin?op=1");
                                }
                                let text: &'static [u8] = if status == 500 {
                                    b"internal: db password hunter2"
                                } else {
                                    b"ok"
                                };
                                Ok::<_, std::convert::Infallible>(
                                    resp.body(Full::new(Bytes::from_static(text))).unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder {
            url,
            requests,
            fail,
            limit,
            _rt: rt,
        }
    }

    /// Answer the next `n` requests with 503 and `Retry-After: 1`.
    pub fn fail_next(&self, n: usize) {
        self.fail.store(n, Ordering::SeqCst);
    }

    /// Answer the next `n` requests with 429 and `Retry-After: 1`, as a
    /// desk's API does when a client is over its rate limit.
    pub fn rate_limit_next(&self, n: usize) {
        self.limit.store(n, Ordering::SeqCst);
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests to `path` answered 200.
    pub fn delivered(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.status == 200)
            .collect()
    }
}

/// A port that accepts connections and never answers (a dead endpoint
/// that still completes the TCP handshake).
pub struct BlackHole {
    /// Its base URL.
    pub url: String,
    held: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl BlackHole {
    /// Start one.
    pub fn start() -> BlackHole {
        let (rt, listener) = loopback();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let held = Arc::new(AtomicUsize::new(0));
        let h = held.clone();
        rt.spawn(async move {
            let mut open = Vec::new();
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    h.fetch_add(1, Ordering::SeqCst);
                    open.push(stream);
                }
            }
        });
        BlackHole { url, held, _rt: rt }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// One e-mail the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`s.
    pub to: Vec<String>,
    /// The message, headers and body.
    pub data: String,
}

/// An SMTP server on loopback.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    _rt: tokio::runtime::Runtime,
}

impl Smtp {
    /// Start one.
    pub fn start() -> Smtp {
        let (rt, listener) = loopback();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let m = mails.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let m = m.clone();
                tokio::spawn(async move {
                    let _ = session(stream, m).await;
                });
            }
        });
        Smtp {
            port,
            mails,
            _rt: rt,
        }
    }

    /// Mails accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r);
    w.write_all(b"220 localhost ESMTP escalator-test\r\n")
        .await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 localhost\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().trim_matches(['<', '>']).to_string();
            from = from
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().trim_matches(['<', '>']).to_string());
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            w.write_all(b"250 OK queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

/// Wait until `f` returns `Some`, up to `secs` seconds.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
