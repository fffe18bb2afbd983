//! The server's configuration: flags and environment variables over the
//! TOML file over the defaults.

use super::*;

/// Flags of `escalator serve` (each also an environment variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ESCALATOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the database, compiled plugins and admin token live
    /// [default: ./escalator-data].
    #[arg(long, env = "ESCALATOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database: `postgres://USER:PASSWORD@HOST/DB` for PostgreSQL
    /// (several instances may share it), or a SQLite file's path
    /// [default: DATA_DIR/escalator.db].
    #[arg(long, env = "ESCALATOR_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// This instance's name, as the `instance` label of every line of
    /// `/metrics` (for several instances on one database whose scraper
    /// does not label them itself).
    #[arg(long, env = "ESCALATOR_INSTANCE")]
    pub instance: Option<String>,
    /// A TOML configuration file [default: DATA_DIR/escalator.toml if it
    /// exists].
    #[arg(long, env = "ESCALATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// The admin token (default: generated on first start and printed).
    #[arg(long, env = "ESCALATOR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A read-only token for `GET /metrics` (a scraper needs no admin
    /// token).
    #[arg(long, env = "ESCALATOR_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Watch this directory for plugins: `DIR/TENANT/PLUGIN/` (hot swap).
    #[arg(long, env = "ESCALATOR_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Where compiled plugins are cached: the global `--cache-dir` /
    /// `ESCALATOR_CACHE_DIR` when given (set by the CLI, not a flag of its
    /// own), else `cache-dir` in the file, else `DATA_DIR/cache`.
    #[arg(skip)]
    pub cache_dir: Option<PathBuf>,
    /// Run on a manual clock starting at this time (RFC 3339, or `now`);
    /// `POST /v1/clock` moves it. For tests and demos.
    #[arg(long, env = "ESCALATOR_MANUAL_CLOCK")]
    pub manual_clock: Option<String>,
}

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// The database (`postgres://…` or a SQLite file's path).
    pub database: Option<String>,
    /// This instance's name in `/metrics`.
    pub instance: Option<String>,
    /// Admin token.
    pub admin_token: Option<String>,
    /// A directory of plugins to watch.
    pub plugins_dir: Option<PathBuf>,
    /// Where compiled plugins are cached (default `DATA_DIR/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Largest plugin upload, bytes (default 64 MiB).
    pub max_upload_bytes: Option<usize>,
    /// `process` (default: survives kill -9) or `power` (syncs every
    /// commit).
    pub durability: Durability,
    /// Largest request body, bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Connections open at once (default: the open-file limit less 64).
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, and the longest an
    /// idle connection is kept, ms (default 10000).
    pub header_timeout_ms: Option<u64>,
    /// Time a client has to send a request's body, ms (default 30000).
    pub body_timeout_ms: Option<u64>,
    /// Delivery retries, shares and circuit breakers.
    pub delivery: DeliveryConfig,
    /// Where tenants' webhooks, Slack and SMTP may go.
    pub outbound: OutboundConfig,
    /// Per-tenant quotas.
    pub limits: LimitsConfig,
    /// A read-only token for `GET /metrics`.
    pub metrics_token: Option<String>,
    /// How plugin execution is shared out, and what a manifest may ask for.
    pub plugins: PluginsConfig,
}

/// `[plugins]`: fair shares of plugin execution, and the ceiling on what a
/// plugin's manifest may ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginsConfig {
    /// Concurrent plugin calls per tenant (default: half the cores, at
    /// least 1), so one tenant's slow plugins leave the other cores free.
    pub tenant_concurrency: Option<usize>,
    /// All running calls' memory caps together, MiB (default 4096).
    pub memory_budget_mib: Option<usize>,
    /// How long a call waits for its share before failing, ms (default
    /// 10000).
    pub queue_timeout_ms: Option<u64>,
    /// The most fuel a manifest may ask for (default 100 000 000 000).
    pub max_fuel: Option<u64>,
    /// The most memory, MiB (default 256).
    pub max_memory_mib: Option<usize>,
    /// The longest timeout, ms (default 10000).
    pub max_timeout_ms: Option<u64>,
    /// The largest output, bytes (default 16 MiB).
    pub max_output_bytes: Option<usize>,
    /// The largest log per call, bytes (default 1 MiB).
    pub max_log_bytes: Option<usize>,
    /// The most compiled plugin code kept in memory, MiB (default: all of
    /// it); beyond it the least recently used is loaded again from the
    /// artifact cache at its next call.
    pub resident_code_mib: Option<usize>,
    /// The CPU priority low-lane (over-share) tenants' plugin calls run at,
    /// as a nice value 0–19 (default 19, the lowest).
    pub low_lane_nice: Option<i32>,
}

impl PluginsConfig {
    /// The shares and the ceiling, defaults filled in.
    pub fn resolve(
        &self,
    ) -> Result<(crate::runtime::shares::SharesConfig, crate::runtime::Limits)> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let tenant_concurrency = self.tenant_concurrency.unwrap_or((cores / 2).max(1));
        if tenant_concurrency == 0 {
            bail!("plugins.tenant-concurrency must be at least 1");
        }
        let d = crate::runtime::Limits::ceiling();
        let ceiling = crate::runtime::Limits {
            fuel: self.max_fuel.unwrap_or(d.fuel),
            memory_bytes: self.max_memory_mib.map_or(d.memory_bytes, |m| m << 20),
            timeout: self.max_timeout_ms.map_or(d.timeout, Duration::from_millis),
            output_bytes: self.max_output_bytes.unwrap_or(d.output_bytes),
            log_bytes: self.max_log_bytes.unwrap_or(d.log_bytes),
        };
        let budget = self.memory_budget_mib.map_or(4 << 30, |m| m << 20);
        if budget < ceiling.memory_bytes {
            bail!(
                "plugins.memory-budget-mib ({}) is below plugins.max-memory-mib ({}): no plugin at the ceiling could run",
                budget >> 20,
                ceiling.memory_bytes >> 20
            );
        }
        let low_lane_nice = self.low_lane_nice.unwrap_or(19);
        if !(0..=19).contains(&low_lane_nice) {
            bail!("plugins.low-lane-nice must be 0 to 19, not {low_lane_nice}");
        }
        Ok((
            crate::runtime::shares::SharesConfig {
                tenant_concurrency: Some(tenant_concurrency),
                memory_budget_bytes: budget,
                queue_timeout: self
                    .queue_timeout_ms
                    .map_or(Duration::from_secs(10), Duration::from_millis),
                low_lane_nice,
            },
            ceiling,
        ))
    }
}

/// `[delivery]`: retries, fair shares of senders, circuit breakers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeliveryConfig {
    /// First retry after this many ms (doubling after; default 2000).
    pub retry_base_ms: Option<u64>,
    /// Longest wait between attempts, ms (default 600000).
    pub retry_max_delay_ms: Option<u64>,
    /// Attempts before a delivery is marked failed (default 10).
    pub max_attempts: Option<u32>,
    /// Attempts in flight at once (default 64).
    pub senders: Option<usize>,
    /// Attempts in flight at once for one tenant (default 8).
    pub tenant_senders: Option<usize>,
    /// Attempts in flight at once for one endpoint (default 2).
    pub endpoint_senders: Option<usize>,
    /// Failures in a row that open an endpoint's circuit (default 5).
    pub breaker_failures: Option<u32>,
    /// An open circuit's first rest, ms (default 30000; doubles per
    /// failed probe up to 600000).
    pub breaker_cooldown_ms: Option<u64>,
}

impl DeliveryConfig {
    /// The queue's settings, defaults filled in.
    pub fn resolve(&self) -> Result<crate::delivery::QueueConfig> {
        let d = crate::delivery::QueueConfig::default();
        let r = d.retry;
        let q = crate::delivery::QueueConfig {
            senders: self.senders.unwrap_or(d.senders),
            tenant_senders: self.tenant_senders.unwrap_or(d.tenant_senders),
            endpoint_senders: self.endpoint_senders.unwrap_or(d.endpoint_senders),
            breaker_failures: self.breaker_failures.unwrap_or(d.breaker_failures),
            breaker_cooldown: self
                .breaker_cooldown_ms
                .map_or(d.breaker_cooldown, Duration::from_millis),
            breaker_max_cooldown: d.breaker_max_cooldown,
            retry: crate::delivery::RetryPolicy {
                base: self.retry_base_ms.map_or(r.base, Duration::from_millis),
                max_delay: self
                    .retry_max_delay_ms
                    .map_or(r.max_delay, Duration::from_millis),
                max_attempts: self.max_attempts.unwrap_or(r.max_attempts),
            },
        };
        if q.senders == 0 || q.tenant_senders == 0 || q.endpoint_senders == 0 {
            bail!("delivery.senders, tenant-senders and endpoint-senders must be at least 1");
        }
        if q.breaker_failures == 0 {
            bail!("delivery.breaker-failures must be at least 1");
        }
        Ok(q)
    }
}

/// `[limits]`: per-tenant quotas (defaults in [`crate::api::quota::Quotas`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Events per second per tenant, sustained (default 50).
    pub events_per_second: Option<f64>,
    /// Events at once above the rate (default 200).
    pub event_burst: Option<u32>,
    /// Bytes of event bodies per second per tenant, sustained (default
    /// 1 MiB).
    pub body_bytes_per_second: Option<f64>,
    /// Bytes of event bodies at once above that rate (default 8 MiB).
    pub body_burst_bytes: Option<f64>,
    /// Server time per second a tenant's events may take, in ms (default
    /// 500).
    pub work_ms_per_second: Option<f64>,
    /// Server time at once above that rate, in ms (default 2000).
    pub work_burst_ms: Option<f64>,
    /// A tenant's event requests at once in the normal lane (default half
    /// the cores, at least 1).
    pub normal_requests_per_tenant: Option<usize>,
    /// Webhook endpoints per tenant (default 20).
    pub webhooks_per_tenant: Option<usize>,
    /// Plugins per tenant (default 32).
    pub plugins_per_tenant: Option<usize>,
    /// Versions kept per plugin (default 5).
    pub versions_per_plugin: Option<usize>,
    /// Live feeds per tenant (default 16).
    pub sse_per_tenant: Option<usize>,
    /// Live feeds in all (default 1024).
    pub sse_total: Option<usize>,
    /// The most items of one list answer (default 1000).
    pub max_page: Option<usize>,
}

impl LimitsConfig {
    /// The quotas, defaults filled in.
    pub fn resolve(&self) -> Result<crate::api::quota::Quotas> {
        let d = crate::api::quota::Quotas::default();
        let q = crate::api::quota::Quotas {
            events_per_second: self.events_per_second.unwrap_or(d.events_per_second),
            event_burst: self.event_burst.map_or(d.event_burst, f64::from),
            body_bytes_per_second: self
                .body_bytes_per_second
                .unwrap_or(d.body_bytes_per_second),
            body_burst_bytes: self.body_burst_bytes.unwrap_or(d.body_burst_bytes),
            work_ms_per_second: self.work_ms_per_second.unwrap_or(d.work_ms_per_second),
            work_burst_ms: self.work_burst_ms.unwrap_or(d.work_burst_ms),
            normal_requests_per_tenant: self
                .normal_requests_per_tenant
                .unwrap_or(d.normal_requests_per_tenant),
            webhooks_per_tenant: self.webhooks_per_tenant.unwrap_or(d.webhooks_per_tenant),
            plugins_per_tenant: self.plugins_per_tenant.unwrap_or(d.plugins_per_tenant),
            versions_per_plugin: self.versions_per_plugin.unwrap_or(d.versions_per_plugin),
            sse_per_tenant: self.sse_per_tenant.unwrap_or(d.sse_per_tenant),
            sse_total: self.sse_total.unwrap_or(d.sse_total),
            max_page: self.max_page.unwrap_or(d.max_page),
        };
        if !(q.events_per_second.is_finite() && q.events_per_second > 0.0) || q.event_burst < 1.0 {
            bail!("limits.events-per-second must be above 0 and limits.event-burst at least 1");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !(positive(q.body_bytes_per_second)
            && q.body_burst_bytes.is_finite()
            && q.body_burst_bytes >= 1024.0)
        {
            bail!(
                "limits.body-bytes-per-second must be above 0 and limits.body-burst-bytes at least 1024"
            );
        }
        if !positive(q.work_ms_per_second) || !positive(q.work_burst_ms) {
            bail!("limits.work-ms-per-second and limits.work-burst-ms must be above 0");
        }
        if q.versions_per_plugin < 2 {
            bail!(
                "limits.versions-per-plugin must be at least 2 (the version in force and one to roll back to)"
            );
        }
        if q.max_page == 0
            || q.plugins_per_tenant == 0
            || q.sse_total == 0
            || q.normal_requests_per_tenant == 0
        {
            bail!(
                "limits.max-page, plugins-per-tenant, sse-total and normal-requests-per-tenant \
                 must be at least 1"
            );
        }
        Ok(q)
    }
}

/// `[outbound]`: the operator's exceptions to the outbound policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutboundConfig {
    /// Addresses (`10.1.2.3`), ranges (`10.0.0.0/8`), host names
    /// (`hooks.internal.example`) and domains (`*.corp.example`) tenants'
    /// destinations may use although they are private or reserved.
    pub allow: Vec<String>,
}

/// Where the store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file (the default: one instance).
    Sqlite(PathBuf),
    /// A PostgreSQL database (several instances may share it).
    Postgres(String),
}

impl Database {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH` or
    /// anything else a SQLite file's path.
    pub fn parse(s: &str) -> Result<Database> {
        let s = s.trim();
        if s.is_empty() {
            bail!("the database is empty: give postgres://USER:PASSWORD@HOST/DB or a file path");
        }
        Ok(
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                Database::Postgres(s.to_string())
            } else {
                Database::Sqlite(PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s)))
            },
        )
    }

    /// Open (and migrate) the store.
    pub fn open(&self, durability: Durability) -> Result<Arc<Store>> {
        Ok(match self {
            Database::Sqlite(path) => Arc::new(SqliteStore::open(path, durability)?),
            Database::Postgres(url) => Arc::new(
                crate::store::PgStore::open(url, durability)
                    .with_context(|| format!("opening {self:?}"))?,
            ),
        })
    }
}

impl std::fmt::Debug for Database {
    /// A PostgreSQL URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => match url.parse::<reqwest::Url>() {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://(unparsed URL)"),
            },
        }
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The database.
    pub database: Database,
    /// This instance's name in `/metrics`, if given.
    pub instance: Option<String>,
    /// Admin token, if configured.
    pub admin_token: Option<String>,
    /// Durability.
    pub durability: Durability,
    /// Body cap.
    pub max_body_bytes: usize,
    /// Upload cap.
    pub max_upload_bytes: usize,
    /// Bounds of the HTTP edge.
    pub edge: api::Edge,
    /// Plugin directory to watch.
    pub plugins_dir: Option<PathBuf>,
    /// Where compiled plugins (whole components and functions) are cached.
    pub cache_dir: PathBuf,
    /// Delivery retries, shares and breakers.
    pub queue: crate::delivery::QueueConfig,
    /// Where outbound calls may go (the allow-list, parsed).
    pub outbound: Arc<crate::delivery::Policy>,
    /// Per-tenant quotas.
    pub quotas: crate::api::quota::Quotas,
    /// The read-only metrics token.
    pub metrics_token: Option<String>,
    /// Manual clock start.
    pub manual_clock: Option<chrono::DateTime<chrono::Utc>>,
    /// Fair shares of plugin execution.
    pub shares: crate::runtime::shares::SharesConfig,
    /// What a manifest may ask for.
    pub ceiling: crate::runtime::Limits,
    /// The most compiled code kept in memory, bytes (0: all).
    pub resident_code_bytes: usize,
}

impl ServeConfig {
    /// Defaults < file < environment and flags.
    pub fn resolve(args: &ServeArgs) -> Result<ServeConfig> {
        let default_dir = PathBuf::from("escalator-data");
        let file_path = args.config.clone().or_else(|| {
            let p = args
                .data_dir
                .clone()
                .unwrap_or_else(|| default_dir.clone())
                .join("escalator.toml");
            p.exists().then_some(p)
        });
        let file: FileConfig = match &file_path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("{} is not valid", p.display()))?
            }
            None => FileConfig::default(),
        };
        let (shares, ceiling) = file.plugins.resolve().with_context(|| {
            format!(
                "{}: [plugins]",
                file_path
                    .as_deref()
                    .unwrap_or(Path::new("defaults"))
                    .display()
            )
        })?;
        let manual_clock = match args.manual_clock.as_deref() {
            None => None,
            Some("now") => Some(chrono::Utc::now()),
            Some(t) => Some(t.parse().with_context(|| {
                format!("--manual-clock {t:?}: expected RFC 3339 (2026-11-27T12:00:00Z) or now")
            })?),
        };
        Ok(ServeConfig {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            database: match args.database.as_deref().or(file.database.as_deref()) {
                Some(d) => Database::parse(d)?,
                None => Database::Sqlite(
                    args.data_dir
                        .as_deref()
                        .or(file.data_dir.as_deref())
                        .unwrap_or(&default_dir)
                        .join("escalator.db"),
                ),
            },
            instance: args.instance.clone().or(file.instance),
            cache_dir: args
                .cache_dir
                .clone()
                .or(file.cache_dir)
                .unwrap_or_else(|| {
                    args.data_dir
                        .as_deref()
                        .or(file.data_dir.as_deref())
                        .unwrap_or(&default_dir)
                        .join("cache")
                }),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(default_dir),
            admin_token: args.admin_token.clone().or(file.admin_token),
            durability: file.durability,
            max_body_bytes: file.max_body_bytes.unwrap_or(1 << 20),
            max_upload_bytes: file.max_upload_bytes.unwrap_or(64 << 20),
            edge: {
                let d = api::Edge::default();
                api::Edge {
                    max_connections: file.max_connections.unwrap_or(d.max_connections).max(1),
                    header_timeout: file
                        .header_timeout_ms
                        .map_or(d.header_timeout, Duration::from_millis),
                    body_timeout: file
                        .body_timeout_ms
                        .map_or(d.body_timeout, Duration::from_millis),
                }
            },
            plugins_dir: args.plugins_dir.clone().or(file.plugins_dir),
            queue: file.delivery.resolve().context("[delivery]")?,
            quotas: file.limits.resolve().context("[limits]")?,
            metrics_token: args.metrics_token.clone().or(file.metrics_token.clone()),
            outbound: Arc::new(
                crate::delivery::Policy::new(&file.outbound.allow).map_err(anyhow::Error::msg)?,
            ),
            manual_clock,
            shares,
            ceiling,
            resident_code_bytes: file.plugins.resident_code_mib.unwrap_or(0) << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sets_the_cache_directory_and_the_resident_code_budget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("escalator.toml"),
            "cache-dir = \"/var/cache/escalator\"\n[plugins]\nresident-code-mib = 8\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(&args).unwrap();
        assert_eq!(c.resident_code_bytes, 8 << 20);
        assert_eq!(c.cache_dir, PathBuf::from("/var/cache/escalator"));
        // The command line's --cache-dir wins over the file.
        let flag = ServeArgs {
            cache_dir: Some("/tmp/elsewhere".into()),
            ..args
        };
        assert_eq!(
            ServeConfig::resolve(&flag).unwrap().cache_dir,
            PathBuf::from("/tmp/elsewhere")
        );
        // Neither: DATA_DIR/cache, and all code kept.
        let empty = tempfile::tempdir().unwrap();
        let c = ServeConfig::resolve(&ServeArgs {
            data_dir: Some(empty.path().into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.cache_dir, empty.path().join("cache"));
        assert_eq!(c.resident_code_bytes, 0);
    }

    #[test]
    fn the_low_lanes_cpu_priority_is_set_in_the_file_and_checked() {
        let plugins = |text: &str| toml::from_str::<PluginsConfig>(text).unwrap().resolve();
        assert_eq!(plugins("").unwrap().0.low_lane_nice, 19);
        assert_eq!(plugins("low-lane-nice = 10").unwrap().0.low_lane_nice, 10);
        for bad in ["low-lane-nice = 20", "low-lane-nice = -1"] {
            let e = plugins(bad).unwrap_err().to_string();
            assert!(e.contains("plugins.low-lane-nice must be 0 to 19"), "{e}");
        }
    }
}
