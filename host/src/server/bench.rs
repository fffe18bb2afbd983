//! `escalator bench-serve`: the load benchmark over loopback HTTP.

use super::*;

/// Flags of `escalator bench-serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to send (each a new ticket with one customer message, or a
    /// message on an existing ticket).
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Run on this database (`postgres://…`) instead of a fresh SQLite
    /// file; its tables are used as they are (give an empty database).
    #[arg(long)]
    pub database: Option<String>,
    /// Instances on the database, in this process, each with its own
    /// engine, plugin runtime and HTTP listener; requests go to them in
    /// turn (a round-robin load balancer).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
}

/// A server in this process on a loopback port, for the benchmarks.
pub struct BenchServer {
    /// The server's parts (`None`: a server in another process).
    pub server: Option<Server>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client.
    pub http: reqwest::Client,
    admin: String,
}

impl BenchServer {
    /// Start on `data` (default plugin shares unless `plugins` says
    /// otherwise), with its scheduler and delivery loops. `budget`: keep
    /// the default budget of server time and event rate per tenant (the
    /// isolation benchmark: they are what holds the request-volume
    /// attack); without
    /// it one tenant may use the whole server (the load benchmark, whose
    /// one tenant would otherwise be measured against its own 429s).
    pub async fn start(
        data: &Path,
        matrix: &Matrix,
        plugins: Option<PluginsConfig>,
        budget: bool,
    ) -> Result<BenchServer> {
        BenchServer::start_on(data, None, matrix, plugins, budget).await
    }

    /// [`BenchServer::start`] on `database` (default: a SQLite file in
    /// `data`).
    pub async fn start_on(
        data: &Path,
        database: Option<&str>,
        matrix: &Matrix,
        plugins: Option<PluginsConfig>,
        budget: bool,
    ) -> Result<BenchServer> {
        let defaults = crate::api::quota::Quotas::default();
        let (work_ms_per_second, work_burst_ms) = if budget {
            (defaults.work_ms_per_second, defaults.work_burst_ms)
        } else {
            (1e9, 1e9)
        };
        let (shares, ceiling) = plugins.unwrap_or_default().resolve()?;
        let config = ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data.to_path_buf(),
            cache_dir: data.join("cache"),
            database: match database {
                Some(d) => Database::parse(d)?,
                None => Database::Sqlite(data.join("escalator.db")),
            },
            instance: None,
            admin_token: Some("bench-admin-token-0123456789".into()),
            durability: Durability::Process,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 64 << 20,
            edge: api::Edge::default(),
            plugins_dir: None,
            queue: Default::default(),
            // The benchmarks' receivers listen on loopback.
            outbound: Arc::new(
                crate::delivery::Policy::new(&["127.0.0.1".into()]).map_err(anyhow::Error::msg)?,
            ),
            // The load benchmark measures the engine, not the rate
            // limiter; the isolation benchmark keeps the default event rate
            // and volume
            // (its attackers send faster: what that costs them is part of
            // what is measured). The delivery attack needs its 1,000
            // endpoints.
            quotas: crate::api::quota::Quotas {
                events_per_second: if budget {
                    defaults.events_per_second
                } else {
                    1e6
                },
                event_burst: if budget { defaults.event_burst } else { 1e6 },
                body_bytes_per_second: if budget {
                    defaults.body_bytes_per_second
                } else {
                    1e12
                },
                body_burst_bytes: if budget {
                    defaults.body_burst_bytes
                } else {
                    1e12
                },
                webhooks_per_tenant: 1000,
                normal_requests_per_tenant: if budget {
                    defaults.normal_requests_per_tenant
                } else {
                    usize::MAX
                },
                work_ms_per_second,
                work_burst_ms,
                ..defaults
            },
            metrics_token: None,
            manual_clock: None,
            shares,
            ceiling,
            resident_code_bytes: 0,
        };
        let server = build_off_runtime(&config, matrix).await?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        server.policy.set_own_address(listener.local_addr()?);
        tokio::spawn(crate::scheduler::run(server.engine.clone()));
        tokio::spawn(crate::delivery::worker(
            server.engine.store.clone(),
            server.engine.channels.clone(),
            server.engine.delivery_wake.clone(),
            server.policy.clone(),
            config.queue,
        ));
        tokio::spawn(api::serve(
            listener,
            server.api.clone(),
            std::future::pending(),
        ));
        Ok(BenchServer {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            admin: config.admin_token.unwrap_or_default(),
        })
    }

    /// A server already running at `base` (another process, another
    /// build), driven with `admin_token`.
    pub fn external(base: &str, admin_token: &str) -> BenchServer {
        BenchServer {
            server: None,
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            admin: admin_token.to_string(),
        }
    }

    /// Create tenant `id`; its token.
    pub async fn tenant(&self, id: &str) -> Result<String> {
        let created: serde_json::Value = self
            .http
            .post(format!("{}/v1/tenants", self.base))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"id": id}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created["token"].as_str().unwrap_or_default().to_string())
    }
}

/// Start a server on loopback with a fresh data directory, drive it with
/// a real HTTP client, and report events/s and latency percentiles from
/// request to durable decision.
pub fn bench(args: &BenchArgs, matrix: &Matrix) -> Result<i32> {
    let dir = tempfile::Builder::new()
        .prefix("escalator-bench")
        .tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let n = args.instances.max(1);
        let mut servers = Vec::with_capacity(n);
        for k in 0..n {
            let data = dir.path().join(format!("instance-{k}"));
            servers.push(
                BenchServer::start_on(&data, args.database.as_deref(), matrix, None, false).await?,
            );
        }
        let bench = &servers[0];
        let (http, base) = (bench.http.clone(), bench.base.clone());
        let bases: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.base.clone()).collect());
        let token = bench.tenant("bench").await?;
        let roster: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../../examples/roster.json"))?;
        for a in &roster {
            http.put(format!("{base}/v1/agents/{}", a["id"].as_str().unwrap_or("")))
                .bearer_auth(&token)
                .json(a)
                .send()
                .await?
                .error_for_status()?;
        }
        let bodies = [
            "Hi, how do I export my projects to CSV?",
            "I was charged twice this month and nobody answers. This is unacceptable, I want a refund now.",
            "The integration keeps failing with a 500 error since this morning.",
            "Thanks, that worked!",
        ];
        println!(
            "bench-serve: {} events, {} concurrent clients, loopback HTTP, {} instance(s) on {}, default plugins",
            args.events,
            args.concurrency,
            n,
            if args.database.is_some() { "PostgreSQL" } else { "SQLite WAL" }
        );
        let started = std::time::Instant::now();
        let cpu_before = crate::bench::process_cpu();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency {
            let (http, bases, token, next) = (http.clone(), bases.clone(), token.clone(), next.clone());
            let total = args.events;
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                // Each client creates a ticket, then adds a message to it:
                // half the events are creations, half additions.
                let mut last_ticket = None;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return (lat, errors);
                    }
                    let body = bodies[i % bodies.len()];
                    let category = ["billing", "technical", "account"][i % 3];
                    let t0 = std::time::Instant::now();
                    let base = &bases[i % bases.len()];
                    let resp = if let Some(t) = last_ticket.take() {
                        http.post(format!("{base}/v1/tickets/{t}/events"))
                            .bearer_auth(&token)
                            .json(&serde_json::json!({"type": "message", "author": "customer", "body": body}))
                            .send()
                            .await
                    } else {
                        last_ticket = Some(format!("B-{i}"));
                        http.post(format!("{base}/v1/tickets"))
                            .bearer_auth(&token)
                            .json(&serde_json::json!({
                                "id": format!("B-{i}"), "subject": "bench", "created_at": chrono::Utc::now(),
                                "category": category,
                                "messages": [{"author": "customer", "body": body, "sent_at": chrono::Utc::now()}]
                            }))
                            .send()
                            .await
                    };
                    match resp {
                        Ok(r) if r.status().is_success() => lat.push(t0.elapsed()),
                        other => {
                            if errors == 0 {
                                let why = match other {
                                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                                    Err(e) => format!("{e:?}"),
                                };
                                eprintln!("bench-serve: a client's first failed request: {why}");
                            }
                            errors += 1;
                        }
                    }
                }
            });
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        while let Some(r) = tasks.join_next().await {
            let (l, e) = r?;
            lat.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed();
        let cpu = crate::bench::process_cpu()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        let lat = crate::bench::Sample::from_ms(
            lat.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        );
        let pct = |p: f64| lat.pct(p);
        println!(
            "{} ok, {errors} failed in {:.2} s: {:.0} events/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            elapsed.as_secs_f64(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(1.0)
        );
        if let Some(cpu) = cpu {
            println!(
                "CPU: {:.2} s, {:.0} µs per event (the server and this benchmark's HTTP clients: one process)",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / lat.len().max(1) as f64
            );
        }
        Ok(if errors == 0 { 0 } else { 1 })
    })
}
