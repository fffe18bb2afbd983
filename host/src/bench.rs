//! `escalator bench-lifecycle`: what hot swap costs; `bench-isolation`
//! (in [`isolation`]): what a hostile tenant costs a victim;
//! `bench-memory` (in [`memory`]): what registered plugins cost in memory.
//!
//! - Upload → live: validate (world, imports, limits), compile, run the
//!   fixtures, store, and publish the new set, for components of about
//!   140 KB, 410 KB and 1 MB. Each upload has bytes never seen before (a
//!   unique custom section), so nothing comes from the artifact cache:
//!   this is the path a new version takes.
//! - Restart with `--registered` plugins (100; five per tenant), each with
//!   bytes of its own: the engine, the built-in set and the stored
//!   versions loaded back, with the artifact cache warm (a normal
//!   restart) and cold (a new machine); and with a budget for compiled
//!   code, where a start registers the stored versions without loading
//!   them, and what a tenant's first decision then costs.

pub mod isolation;
pub mod memory;

/// An HTTP receiver on loopback that answers every request 200 and hands
/// each one's headers and body to `note`; returns its URL (`/hook`).
pub(crate) async fn loopback_receiver(
    note: impl Fn(&hyper::HeaderMap, &[u8]) + Send + Sync + 'static,
) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let note = std::sync::Arc::new(note);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let note = note.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let note = note.clone();
                        async move {
                            use http_body_util::BodyExt as _;
                            let (head, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            note(&head.headers, &body);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

/// CPU time this process has used (user + system), from
/// `/proc/self/stat` (Linux; clock ticks of 10 ms, the kernel's usual
/// `USER_HZ`). `None` elsewhere.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which may hold spaces), from the
    // state on: utime and stime are the 12th and 13th of those.
    let after = stat.rsplit_once(')')?.1;
    let mut f = after.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Latencies in ms, sorted once: percentiles for the benchmarks' reports.
pub struct Sample(Vec<f64>);

impl Sample {
    /// Latencies in ms, in any order.
    pub fn from_ms(mut ms: Vec<f64>) -> Sample {
        ms.sort_by(f64::total_cmp);
        Sample(ms)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p` quantile (0..=1), ms; 0 with no latencies.
    pub fn pct(&self, p: f64) -> f64 {
        let i = ((self.0.len() as f64 * p) as usize).min(self.0.len().saturating_sub(1));
        self.0.get(i).copied().unwrap_or(0.0)
    }
}

use crate::clock::Clock;
use crate::engine::{Engine, Upload};
use crate::matrix::Matrix;
use crate::registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{Durability, SqliteStore, Store};
use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `wasm` with a custom section `name` holding `payload` appended (valid
/// anywhere in a component; changes the bytes, not the code).
pub fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend(body);
    out
}

fn engine(
    dir: &std::path::Path,
    matrix: &Matrix,
    resident_code_bytes: usize,
    configure_ahead: bool,
) -> Result<(Arc<Engine>, Duration)> {
    let started = Instant::now();
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        resident_code_bytes,
        configure_ahead,
        ..RuntimeConfig::default()
    })?);
    let store: Arc<Store> = Arc::new(SqliteStore::open(
        &dir.join("escalator.db"),
        Durability::Process,
    )?);
    let builtins = registry::load_builtin_with(&runtime, matrix)?;
    let engine = Arc::new(Engine::new(
        store,
        runtime,
        Clock::System,
        builtins,
        matrix.clone(),
    )?);
    engine.load_tenant_plugins()?;
    Ok((engine, started.elapsed()))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Flags of `escalator bench-lifecycle`.
#[derive(Debug, Clone, clap::Args)]
pub struct LifecycleArgs {
    /// Plugins registered (five per tenant) for the restart measurement.
    #[arg(long, default_value_t = 100)]
    pub registered: usize,
    /// Plugins parse their configuration in every call instead of once per
    /// version (the baseline of configuring ahead).
    #[arg(long)]
    pub parse_per_call: bool,
}

/// Run the benchmark and print its numbers.
pub fn lifecycle(args: &LifecycleArgs, matrix: &Matrix) -> Result<i32> {
    anyhow::ensure!(args.registered > 0, "--registered: at least 1");
    let dir = tempfile::Builder::new()
        .prefix("escalator-bench-lifecycle")
        .tempdir()?;
    let (engine, _) = engine(dir.path(), matrix, 0, !args.parse_per_call)?;
    engine.store.write(|tx| -> Result<_> {
        tx.create_tenant("bench", "bench", "-", chrono::Utc::now())?;
        Ok(())
    })?;
    println!(
        "bench-lifecycle: upload → live (validate, compile, fixtures, store, publish), median of 5"
    );
    let mut n = 0;
    for (label, base, pad_to) in [
        ("customer-value", "customer-value", 0usize),
        ("churn-risk", "churn-risk", 0),
        ("churn-risk padded to 1 MB", "churn-risk", 1 << 20),
    ] {
        let b = registry::builtin(base).context("a built-in plugin")?;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            n += 1;
            let mut wasm = with_custom_section(b.wasm, "bench-id", format!("{n}").as_bytes());
            if pad_to > wasm.len() {
                wasm =
                    with_custom_section(&wasm, "bench-pad", &vec![0u8; pad_to - wasm.len() - 16]);
            }
            size = wasm.len();
            let manifest = format!(
                "name = \"{base}\"\nkind = \"trigger\"\nversion = \"9.{n}.0\"\n{}",
                b.manifest
                    .lines()
                    .skip_while(|l| !l.starts_with("[limits]"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let t = Instant::now();
            engine
                .upload(
                    "bench",
                    Upload {
                        manifest,
                        wasm,
                        fixtures: Vec::new(),
                        source: "bench".into(),
                        quota: None,
                    },
                    "bench",
                    true,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            times.push(t.elapsed());
        }
        println!(
            "  {label:<28} {:>5} KB: {:>7.1} ms",
            size / 1024,
            median(times).as_secs_f64() * 1000.0
        );
    }

    // `registered` plugins, five per tenant (as 10,000 tenants with five
    // plugins each would be), each with bytes of its own.
    let phrases = registry::builtin("phrases").context("phrases")?;
    let tenants = args.registered.div_ceil(5);
    engine.store.write(|tx| -> Result<_> {
        for t in 0..tenants {
            tx.create_tenant(&format!("r{t}"), "r", &format!("-r{t}"), chrono::Utc::now())?;
        }
        Ok(())
    })?;
    let uploading = Instant::now();
    for i in 0..args.registered {
        let wasm = with_custom_section(phrases.wasm, "bench-id", format!("p{i}").as_bytes());
        let manifest = format!(
            "name = \"p{}\"\nkind = \"trigger\"\nversion = \"1.0.0\"\nmode = \"shadow\"\n",
            i % 5
        );
        engine
            .upload(
                &format!("r{}", i / 5),
                Upload {
                    manifest,
                    wasm,
                    fixtures: Vec::new(),
                    source: "bench".into(),
                    quota: None,
                },
                "bench",
                true,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    println!(
        "{} plugins uploaded in {:.1} s",
        args.registered,
        uploading.elapsed().as_secs_f64()
    );
    drop(engine);
    let last = format!("r{}", tenants - 1);
    let in_last = args.registered - 5 * (tenants - 1);
    let restart = |budget: usize| -> Result<(Arc<Engine>, Duration)> {
        let (e, took) = self::engine(dir.path(), matrix, budget, !args.parse_per_call)?;
        anyhow::ensure!(
            e.plugins(&last).triggers.len() == 7 + in_last,
            "the restarted engine lost plugins"
        );
        Ok((e, took))
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut warm = Vec::new();
    for _ in 0..3 {
        warm.push(restart(0)?.1);
    }
    // With a budget for compiled code: the first start keeps each
    // component's bytes and imports beside its artifact; later starts
    // register the stored versions from them without loading any.
    const BUDGET: usize = 64 << 20;
    let (_, keeping) = restart(BUDGET)?;
    let mut registering = Vec::new();
    let mut first_calls = Vec::new();
    for n in 0..3 {
        let (e, took) = restart(BUDGET)?;
        registering.push(took);
        // A tenant's first decision loads its plugins' code.
        let ticket: crate::model::Ticket = serde_json::from_value(serde_json::json!({
            "id": format!("cold-{n}"), "created_at": chrono::Utc::now(),
            "messages": [{"author": "customer", "body": "I will call my lawyer",
                          "sent_at": chrono::Utc::now()}]
        }))?;
        let t = Instant::now();
        e.create_ticket(&last, ticket, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        first_calls.push(t.elapsed());
    }
    let mut cold = Vec::new();
    for _ in 0..3 {
        std::fs::remove_dir_all(dir.path().join("cache")).ok();
        cold.push(restart(0)?.1);
    }
    println!(
        "restart with {} plugins registered ({tenants} tenants, + 9 built-in), median of 3:\n  \
         all code kept: artifact cache warm {:.0} ms, cold {:.0} ms\n  \
         a {} MiB code budget: first start {:.0} ms (once), then {:.0} ms (registered, not loaded); \
         a tenant's first decision then {:.1} ms (its {in_last} plugins loaded)",
        args.registered,
        ms(median(warm)),
        ms(median(cold)),
        BUDGET >> 20,
        ms(keeping),
        ms(median(registering)),
        ms(median(first_calls)),
    );
    Ok(0)
}
