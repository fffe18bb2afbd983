//! `escalator bench-isolation`: a victim tenant's latency before and during
//! each attack a hostile tenant's plugins can make, on one in-process
//! server over loopback HTTP.
//!
//! For every attack the victim sends the same sequence of events (a ticket,
//! then a message on it, alternately) from one client while the attacker's
//! clients keep sending tickets that trigger the attack, and the report
//! says the victim's p50 and p99 against its baseline (the first one, and
//! one taken just before that attack), and how long the attacker's own
//! calls took. With `--repeat N` each attack is measured N times, each
//! round by a new attacker against its own baseline just before, and
//! judged by the median of the rounds' ratios.

use super::Sample;
use crate::matrix::Matrix;
use crate::server::{BenchServer, PluginsConfig};
use anyhow::{Context as _, Result};
use base64::Engine as _;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Flags of `escalator bench-isolation`.
#[derive(Debug, Clone, clap::Args)]
pub struct IsolationArgs {
    /// Victim events per attack.
    #[arg(long, default_value_t = 300)]
    pub events: usize,
    /// Concurrent attacker clients.
    #[arg(long, default_value_t = 8)]
    pub attackers: usize,
    /// Requests per second each attacker client sends at most (0: as fast
    /// as answers come). Paced, an attack measures what its plugin does; a
    /// flood of requests is a matter of request quotas, measured by the
    /// control row at the same rate.
    #[arg(long, default_value_t = 10.0)]
    pub attacker_rate: f64,
    /// Events per second the victim sends at most (0: back to back). The
    /// default is the default event quota: an ordinary tenant's pace,
    /// within its default budget of server time.
    #[arg(long, default_value_t = 50.0)]
    pub victim_rate: f64,
    /// Where the test guests' components are (built by the host's build
    /// script into `target/wasm-guests/guest`).
    #[arg(long)]
    pub guests: Option<PathBuf>,
    /// Run only the attacks whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Drive a server already running here (e.g. another build of
    /// escalator) instead of one in this process.
    #[arg(long, requires = "admin_token")]
    pub url: Option<String>,
    /// The admin token of the server at `--url`.
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Dead webhook endpoints of the attacker in the delivery attack.
    #[arg(long, default_value_t = 1000)]
    pub dead_endpoints: usize,
    /// Victim escalations per round of the delivery attack.
    #[arg(long, default_value_t = 20)]
    pub deliveries: usize,
    /// Measure each attack this many times, each round against a baseline
    /// taken just before it and by a new attacker tenant (a plugin the
    /// breaker turned off in one round does not soften the next), and
    /// judge it by the median ratio (of an even N, the upper of the middle
    /// two): one p99 of a thousand events on a
    /// shared machine moves by 1.5x from round to round with no attack.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// One attack: the plugin the attacker uploads and the ticket subject that
/// sets it off.
struct Attack {
    name: &'static str,
    guest: &'static str,
    plugin: &'static str,
    kind: &'static str,
    limits: &'static str,
    subject: &'static str,
    big: bool,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "control: ordinary tickets at the same rate",
        guest: "",
        plugin: "",
        kind: "",
        limits: "",
        subject: "ordinary",
        big: false,
    },
    Attack {
        name: "sleep 30 s (timeout 100 ms)",
        guest: "sleeper",
        plugin: "sleeper",
        kind: "trigger",
        limits: "[limits]\ntimeout-ms = 100\n",
        subject: "sleep",
        big: false,
    },
    Attack {
        name: "spin on the clock (timeout 100 ms)",
        guest: "sleeper",
        plugin: "sleeper",
        kind: "trigger",
        limits: "[limits]\ntimeout-ms = 100\nfuel = 100_000_000_000\n",
        subject: "spin-clock",
        big: false,
    },
    Attack {
        name: "busy loop (timeout 100 ms)",
        guest: "hostile",
        plugin: "hostile",
        kind: "trigger",
        limits: "[limits]\ntimeout-ms = 100\nfuel = 100_000_000_000\n",
        subject: "loop",
        big: false,
    },
    Attack {
        name: "delay = 2^63 ms (notifier)",
        guest: "rogue-notifier",
        plugin: "tiered",
        kind: "notifier",
        limits: "",
        subject: "delay-2^63",
        big: false,
    },
    Attack {
        name: "fallback = 2^63 ms (router)",
        guest: "rogue-router",
        plugin: "skills",
        kind: "router",
        limits: "",
        subject: "fallback-2^63",
        big: false,
    },
    Attack {
        name: "hoard 200 MiB (cap 256 MiB)",
        guest: "sleeper",
        plugin: "sleeper",
        kind: "trigger",
        limits: "[limits]\nmemory-mib = 256\ntimeout-ms = 2000\n",
        subject: "hoard:200",
        big: false,
    },
    Attack {
        name: "10,000 signal keys",
        guest: "hostile",
        plugin: "hostile",
        kind: "trigger",
        limits: "",
        subject: "keys",
        big: false,
    },
    Attack {
        name: "~1 MiB tickets, 3,500 messages",
        guest: "",
        plugin: "",
        kind: "",
        limits: "",
        subject: "big",
        big: true,
    },
    // Each client creates one ~1 MiB ticket, then adds messages to it: a
    // megabyte ticket that changes at the attacker's rate.
    Attack {
        name: "messages added to ~1 MiB tickets",
        guest: "",
        plugin: "",
        kind: "",
        limits: "",
        subject: "grow",
        big: true,
    },
];

fn ticket(id: &str, subject: &str, body: &str) -> serde_json::Value {
    let now = chrono::Utc::now();
    json!({
        "id": id, "subject": subject, "category": "billing", "created_at": now,
        "messages": [{"author": "customer", "body": body, "sent_at": now}],
    })
}

/// A ~1 MiB ticket's JSON after its id: built once, so the attacker's
/// clients spend no time making bodies (they share the process, and the
/// runtime, with the victim's client being measured).
fn big_ticket_rest() -> String {
    let body = "I have been waiting for days and nobody answers my billing question, ".repeat(3);
    let now = chrono::Utc::now();
    // Just under the default 1 MiB body limit.
    let messages: Vec<_> = (0..3_500)
        .map(|_| json!({"author": "customer", "body": body, "sent_at": now}))
        .collect();
    let rest =
        json!({"subject": "big", "category": "billing", "created_at": now, "messages": messages})
            .to_string();
    rest[1..].to_string()
}

/// A ~1 MiB ticket with this id.
fn big_ticket(id: &str, rest: &str) -> Vec<u8> {
    format!("{{\"id\":{},{rest}", serde_json::Value::from(id)).into_bytes()
}

/// The victim's events (see [`victim_events`]) from a thread and runtime of
/// their own, with a client of their own: the attacker's clients share this
/// process, and sending megabyte bodies on the same runtime would delay the
/// victim's requests before they reach the server, which is not what is
/// measured.
async fn victim(
    b: &BenchServer,
    token: &str,
    round: &str,
    n: usize,
    rate: f64,
) -> Result<(Sample, usize)> {
    let (base, token, round) = (b.base.clone(), token.to_string(), round.to_string());
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(victim_events(
            &reqwest::Client::new(),
            &base,
            &token,
            &round,
            n,
            rate,
        ))
    })
    .await?
}

/// The victim's events: create a ticket, add a message to it, repeat.
async fn victim_events(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    round: &str,
    n: usize,
    rate: f64,
) -> Result<(Sample, usize)> {
    let pace = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let bodies = [
        "I was charged twice this month and nobody answers. This is unacceptable, I want a refund now.",
        "Hi, how do I export my projects to CSV?",
    ];
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let body = bodies[i % 2];
        let t0 = Instant::now();
        let next = pace.map(|p| tokio::time::Instant::now() + p);
        let resp = if i % 2 == 0 {
            http.post(format!("{base}/v1/tickets"))
                .bearer_auth(token)
                .json(&ticket(&format!("{round}-{i}"), "ordinary", body))
                .send()
                .await
        } else {
            http.post(format!("{base}/v1/tickets/{round}-{}/events", i - 1))
                .bearer_auth(token)
                .json(&json!({"type": "message", "author": "customer", "body": body}))
                .send()
                .await
        };
        match resp {
            Ok(r) if r.status().is_success() => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
            other => {
                if errors == 0 {
                    let why = match other {
                        Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(e) => format!("{e:?}"),
                    };
                    eprintln!(
                        "bench-isolation: the victim's first failed request ({round}): {why}"
                    );
                }
                errors += 1;
            }
        }
        if let Some(next) = next {
            tokio::time::sleep_until(next).await;
        }
    }
    Ok((Sample::from_ms(lat), errors))
}

/// Run every attack and print the table.
pub fn run(args: &IsolationArgs, matrix: &Matrix) -> Result<i32> {
    let guests = args
        .guests
        .clone()
        .or_else(|| option_env!("ESCALATOR_TEST_GUESTS").map(PathBuf::from))
        .context("--guests DIR: where the test guests were built")?;
    let dir = tempfile::Builder::new()
        .prefix("escalator-bench-isolation")
        .tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let b = match (&args.url, &args.admin_token) {
            (Some(url), Some(admin)) => BenchServer::external(url, admin),
            _ => BenchServer::start(dir.path(), matrix, Some(PluginsConfig::default()), true).await?,
        };
        // Tenant names unique per run, so an external server can be reused.
        let run_id = chrono::Utc::now().timestamp_millis();
        let victim_token = b.tenant(&format!("victim-{run_id}")).await?;
        let shares = match &b.server {
            Some(s) => {
                let c = s.engine.runtime.shares().config();
                format!(
                    "tenant concurrency {:?}, plugin-memory budget {} MiB",
                    c.tenant_concurrency,
                    c.memory_budget_bytes >> 20
                )
            }
            None => format!("external server at {}", b.base),
        };
        println!(
            "bench-isolation: victim {} events per round from 1 client at most {}/s; attacker {} clients at {} requests/s each; {shares}",
            args.events, args.victim_rate, args.attackers, args.attacker_rate,
        );
        // Warm up, then the baseline.
        victim(&b, &victim_token, "warm", 40, args.victim_rate).await?;
        let (base, base_errors) = victim(&b, &victim_token, "base", args.events, args.victim_rate).await?;
        // Each attack is also measured against a baseline taken just
        // before it: the machine drifts over a run (the database grows,
        // other work comes and goes), and a ratio to the first baseline
        // alone counts that drift as the attack's.
        println!(
            "\n| attack | victim p50 | victim p99 | baseline p99 just before | p99 / that | p99 / first baseline | victim errors | attacker requests | attacker p99 |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        println!(
            "| none (first baseline) | {:.2} ms | {:.2} ms | | | 1.00 | {base_errors} | | |",
            base.pct(0.5),
            base.pct(0.99)
        );
        let mut worst: f64 = 0.0;
        let mut worst_beside: f64 = 0.0;
        let mut summary = Vec::new();
        let big_rest = Arc::new(big_ticket_rest());
        for (n, attack) in ATTACKS.iter().enumerate() {
            if args.only.as_deref().is_some_and(|o| !attack.name.contains(o)) {
                continue;
            }
            let mut ratios = Vec::new();
            for rep in 0..args.repeat.max(1) {
                let tenant = format!("attacker{n}-{rep}-{run_id}");
                let token = b.tenant(&tenant).await?;
                if !attack.guest.is_empty() {
                    let wasm = std::fs::read(guests.join(attack.guest).join(format!("{}.wasm", attack.guest)))
                        .with_context(|| format!("reading guest {} from {}", attack.guest, guests.display()))?;
                    let manifest = format!(
                        "name = \"{}\"\nkind = \"{}\"\nversion = \"1.0.0\"\n{}",
                        attack.plugin, attack.kind, attack.limits
                    );
                    b.http
                        .post(format!("{}/v1/plugins", b.base))
                        .bearer_auth(&token)
                        .json(&json!({"manifest": manifest, "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm)}))
                        .send()
                        .await?
                        .error_for_status()
                        .with_context(|| format!("uploading {}", attack.plugin))?;
                }
                let (beside, _) =
                    victim(&b, &victim_token, &format!("b{n}-{rep}"), args.events, args.victim_rate).await?;
                let stop = Arc::new(AtomicBool::new(false));
                let sent = Arc::new(AtomicUsize::new(0));
                let mut clients = tokio::task::JoinSet::new();
                for c in 0..args.attackers {
                    let (http, base_url, token, stop, sent) =
                        (b.http.clone(), b.base.clone(), token.clone(), stop.clone(), sent.clone());
                    let (subject, big) = (attack.subject, attack.big.then(|| big_rest.clone()));
                    let pace = (args.attacker_rate > 0.0)
                        .then(|| Duration::from_secs_f64(1.0 / args.attacker_rate));
                    clients.spawn(async move {
                        let mut lat = Vec::new();
                        let mut failed = 0usize;
                        let mut i = 0;
                        // "grow": the one ticket this client made, once made.
                        let mut grown: Option<String> = None;
                        while !stop.load(Ordering::Relaxed) {
                            let id = format!("A{c}-{rep}-{i}");
                            let (url, body) = match (&big, &grown) {
                                (Some(_), Some(grown)) => (
                                    format!("{base_url}/v1/tickets/{grown}/events"),
                                    json!({"type": "message", "author": "customer",
                                           "body": "Still waiting. This is unacceptable."})
                                    .to_string()
                                    .into_bytes(),
                                ),
                                (Some(rest), None) => {
                                    (format!("{base_url}/v1/tickets"), big_ticket(&id, rest))
                                }
                                (None, _) => (
                                    format!("{base_url}/v1/tickets"),
                                    ticket(&id, subject, "This is unacceptable, I want a refund")
                                        .to_string()
                                        .into_bytes(),
                                ),
                            };
                            let t0 = Instant::now();
                            let next = pace.map(|p| tokio::time::Instant::now() + p);
                            let r = http
                                .post(url)
                                .bearer_auth(&token)
                                .timeout(Duration::from_secs(120))
                                .header("content-type", "application/json")
                                .body(body)
                                .send()
                                .await;
                            match r {
                                Ok(r) if r.status().is_success() => {
                                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                                    if subject == "grow" && grown.is_none() {
                                        grown = Some(id);
                                    }
                                }
                                _ => failed += 1,
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                            if let Some(next) = next {
                                tokio::time::sleep_until(next).await;
                            }
                        }
                        (lat, failed)
                    });
                }
                // Let the attack get going before measuring.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let (during, errors) = victim(&b, &victim_token, &format!("v{n}-{rep}"), args.events, args.victim_rate)
                    .await?;
                stop.store(true, Ordering::Relaxed);
                let mut attacker = Vec::new();
                let mut attacker_failed = 0;
                while let Some(l) = clients.join_next().await {
                    let (l, f) = l?;
                    attacker.extend(l);
                    attacker_failed += f;
                }
                let ratio = during.pct(0.99) / base.pct(0.99).max(0.001);
                let ratio_beside = during.pct(0.99) / beside.pct(0.99).max(0.001);
                ratios.push((ratio_beside, ratio));
                let round = if args.repeat > 1 {
                    format!(" (round {} of {})", rep + 1, args.repeat)
                } else {
                    String::new()
                };
                println!(
                    "| {}{round} | {:.2} ms | {:.2} ms | {:.2} ms | {ratio_beside:.2} | {:.2} | {errors} | {} ({attacker_failed} failed) | {:.0} ms |",
                    attack.name,
                    during.pct(0.5),
                    during.pct(0.99),
                    beside.pct(0.99),
                    ratio,
                    sent.load(Ordering::Relaxed),
                    Sample::from_ms(attacker).pct(0.99),
                );
            }
            let median = |pick: fn(&(f64, f64)) -> f64| {
                Sample::from_ms(ratios.iter().map(pick).collect()).pct(0.5)
            };
            let (beside_median, first_median) = (median(|r| r.0), median(|r| r.1));
            if ratios.len() > 1 {
                summary.push(format!(
                    "| {} | {} | {beside_median:.2} | {first_median:.2} |",
                    attack.name,
                    ratios
                        .iter()
                        .map(|(r, _)| format!("{r:.2}"))
                        .collect::<Vec<_>>()
                        .join(" / "),
                ));
            }
            worst = worst.max(first_median);
            worst_beside = worst_beside.max(beside_median);
        }
        if !summary.is_empty() {
            println!(
                "\n| attack | p99 / baseline just before, each round | median | median p99 / first baseline |"
            );
            println!("|---|---|---|---|");
            for line in &summary {
                println!("{line}");
            }
        }
        if args.only.as_deref().is_none_or(|o| "deliveries".contains(o)) {
            deliveries(&b, run_id, args).await?;
        }
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        println!(
            "\nworst victim p99 ratio (the median of an attack's rounds) {worst_beside:.2} to the baseline just before, {worst:.2} to the first; peak RSS {rss}"
        );
        Ok(0)
    })
}

/// A webhook receiver on loopback that notes when each ticket's
/// notification arrived.
async fn receiver() -> Result<(
    String,
    Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
)> {
    let arrived: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let seen = arrived.clone();
    let url = super::loopback_receiver(move |_, body| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(t) = v["ticket"].as_str()
        {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(t.to_string())
                .or_insert_with(Instant::now);
        }
    })
    .await?;
    Ok((url, arrived))
}

/// A port that accepts connections and never answers; returns its base
/// URL and how many connections it holds.
async fn black_hole() -> Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let held = Arc::new(AtomicUsize::new(0));
    let h = held.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                h.fetch_add(1, Ordering::Relaxed);
                open.push(stream);
            }
        }
    });
    Ok((url, held))
}

/// The victim's escalations, one at a time: how long from sending the
/// event to its webhook arriving.
async fn victim_deliveries(
    b: &BenchServer,
    token: &str,
    round: &str,
    n: usize,
    arrived: &std::sync::Mutex<std::collections::HashMap<String, Instant>>,
) -> Result<(Sample, usize)> {
    let mut delays = Vec::with_capacity(n);
    let mut lost = 0;
    for i in 0..n {
        let id = format!("{round}-{i}");
        let t0 = Instant::now();
        b.http
            .post(format!("{}/v1/tickets", b.base))
            .bearer_auth(token)
            .json(&ticket(
                &id,
                "dispute",
                "I will talk to my lawyer about this charge.",
            ))
            .send()
            .await?
            .error_for_status()?;
        let deadline = t0 + Duration::from_secs(60);
        loop {
            if let Some(at) = arrived.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok((Sample::from_ms(delays), lost))
}

/// Delivery starvation: the victim's webhook delay before and while an
/// attacker's escalations fan out to its dead endpoints.
async fn deliveries(b: &BenchServer, run_id: i64, args: &IsolationArgs) -> Result<()> {
    let (hook, arrived) = receiver().await?;
    let (dead, held) = black_hole().await?;
    let victim = b.tenant(&format!("victim-deliveries-{run_id}")).await?;
    b.http
        .put(format!("{}/v1/settings", b.base))
        .bearer_auth(&victim)
        .json(&json!({"webhooks": {"ops": {"url": hook, "secret": "k", "events": ["escalated"]}}}))
        .send()
        .await?
        .error_for_status()
        .context("the victim's webhook")?;
    let attacker = b.tenant(&format!("attacker-deliveries-{run_id}")).await?;
    let hooks: serde_json::Map<String, serde_json::Value> = (0..args.dead_endpoints)
        .map(|i| {
            (
                format!("d{i}"),
                json!({"url": format!("{dead}/dead/{i}"), "secret": "k", "events": ["escalated"]}),
            )
        })
        .collect();
    b.http
        .put(format!("{}/v1/settings", b.base))
        .bearer_auth(&attacker)
        .json(&json!({"webhooks": hooks}))
        .send()
        .await?
        .error_for_status()
        .context("the attacker's dead endpoints (raise [limits] webhooks-per-tenant on a server at --url)")?;
    let (base, base_lost) =
        victim_deliveries(b, &victim, "dbase", args.deliveries, &arrived).await?;
    // Three escalations fan out to every dead endpoint, then one a second.
    let stop = Arc::new(AtomicBool::new(false));
    let (http, base_url, token, s) = (
        b.http.clone(),
        b.base.clone(),
        attacker.clone(),
        stop.clone(),
    );
    let flood = tokio::spawn(async move {
        let mut i = 0;
        while !s.load(Ordering::Relaxed) {
            let _ = http
                .post(format!("{base_url}/v1/tickets"))
                .bearer_auth(&token)
                .json(&ticket(
                    &format!("AD-{i}"),
                    "dispute",
                    "I will talk to my lawyer about this charge.",
                ))
                .send()
                .await;
            i += 1;
            if i >= 3 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        i
    });
    // Until the attacker's attempts hang on the dead endpoints.
    let t0 = Instant::now();
    while held.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (during, lost) =
        victim_deliveries(b, &victim, "dattack", args.deliveries, &arrived).await?;
    stop.store(true, Ordering::Relaxed);
    let escalations = flood.await?;
    println!("\n| delivery starvation | victim webhook p50 | p99 | max | p99 / baseline | lost |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| none (baseline) | {:.1} ms | {:.1} ms | {:.1} ms | 1.00 | {base_lost} |",
        base.pct(0.5),
        base.pct(0.99),
        base.pct(1.0)
    );
    println!(
        "| {} dead endpoints, {escalations} attacker escalations ({} deliveries), {} connections held | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {lost} |",
        args.dead_endpoints,
        escalations * args.dead_endpoints,
        held.load(Ordering::Relaxed),
        during.pct(0.5),
        during.pct(0.99),
        during.pct(1.0),
        during.pct(0.99) / base.pct(0.99).max(0.001),
    );
    Ok(())
}
