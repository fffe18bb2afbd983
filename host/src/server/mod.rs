//! `escalator serve`: configuration, start-up and shutdown, and
//! `escalator bench-serve`, the load benchmark over loopback HTTP.
//!
//! Zero configuration works: an SQLite file in `./escalator-data`, the
//! built-in plugins, `127.0.0.1:8080`, and an admin token printed on the
//! first start (and kept in `DATA_DIR/admin-token`, mode 0600). A TOML
//! file (`--config`, or `DATA_DIR/escalator.toml` if present) overrides
//! the defaults; environment variables and flags override the file.

mod bench;
mod config;

pub use bench::*;
pub use config::*;

use crate::api::{self, Api};
use crate::clock::Clock;
use crate::engine::Engine;
use crate::matrix::Matrix;
use crate::registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{Durability, SqliteStore, Store};
use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A running server's parts.
pub struct Server {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The API.
    pub api: Arc<Api>,
    /// The admin token if it was generated now (print it once).
    pub new_admin_token: Option<String>,
    /// Where outbound calls may go.
    pub policy: Arc<crate::delivery::Policy>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// Open the store, load the plugins, settle the admin token and recover
/// events left undecided by a crash.
pub fn build(config: &ServeConfig, matrix: &Matrix) -> Result<Server> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir.clone()),
        shares: config.shares,
        ceiling: config.ceiling,
        resident_code_bytes: config.resident_code_bytes,
        ..RuntimeConfig::default()
    })?);
    let store = config.database.open(config.durability)?;
    let builtins = registry::load_builtin_with(&runtime, matrix)?;
    let clock = match config.manual_clock {
        Some(t) => Clock::manual(t),
        None => Clock::System,
    };
    let engine = Arc::new(Engine::new(
        store.clone(),
        runtime,
        clock,
        builtins,
        matrix.clone(),
    )?);
    engine.load_tenant_plugins()?;
    if engine.listen()? {
        tracing::info!("listening to the database for other instances' changes");
    }
    let (admin_hash, new_admin_token) = admin_token(&*store, config)?;
    let recovered = engine.recover()?;
    if recovered > 0 {
        tracing::warn!(recovered, "decided on events stored before a crash");
    }
    let policy = config.outbound.clone();
    let mut api = Api::new(engine.clone(), admin_hash, config.max_body_bytes);
    api.max_upload_bytes = config.max_upload_bytes;
    api.edge = config.edge;
    api.outbound = policy.clone();
    api.quotas = config.quotas;
    if let Some(t) = &config.metrics_token {
        if t.len() < 16 {
            bail!("the metrics token must be at least 16 characters");
        }
        api.metrics_hash = Some(api::token_hash(t));
    }
    let api = Arc::new(api);
    Ok(Server {
        engine,
        api,
        new_admin_token,
        policy,
    })
}

/// [`build`] on a blocking thread: the store's calls block (the
/// PostgreSQL client on a runtime of its own, which may not start on one
/// of tokio's threads).
pub async fn build_off_runtime(config: &ServeConfig, matrix: &Matrix) -> Result<Server> {
    let (config, matrix) = (config.clone(), matrix.clone());
    tokio::task::spawn_blocking(move || build(&config, &matrix)).await?
}

fn admin_token(store: &Store, config: &ServeConfig) -> Result<(String, Option<String>)> {
    if let Some(t) = &config.admin_token {
        if t.len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        let hash = api::token_hash(t);
        store.write(|tx| tx.set_meta("admin_token_hash", &hash))?;
        return Ok((hash, None));
    }
    if let Some(hash) = store.meta("admin_token_hash")? {
        return Ok((hash, None));
    }
    let token = api::new_token()?;
    let hash = api::token_hash(&token);
    store.write(|tx| tx.set_meta("admin_token_hash", &hash))?;
    write_secret(&config.data_dir.join("admin-token"), &token)?;
    Ok((hash, Some(token)))
}

fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a new file: an existing one is narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    writeln!(f, "{secret}")?;
    Ok(())
}

/// Run the server until SIGINT or SIGTERM.
pub fn serve(args: &ServeArgs, matrix: &Matrix) -> Result<i32> {
    let config = ServeConfig::resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = build_off_runtime(&config, matrix).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        server.policy.set_own_address(addr);
        let engine = server.engine.clone();
        if let Some(i) = &config.instance {
            engine.metrics.set_instance(i);
            println!("instance: {i}");
        }
        tokio::spawn(crate::scheduler::run(engine.clone()));
        tokio::spawn(crate::delivery::worker(
            engine.store.clone(),
            engine.channels.clone(),
            engine.delivery_wake.clone(),
            server.policy.clone(),
            config.queue,
        ));
        tokio::spawn(sync_plugins(engine.clone()));
        tokio::spawn(decide_orphans(engine.clone()));
        if let Some(dir) = &config.plugins_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the plugin directory {}", dir.display()))?;
            tokio::spawn(crate::watcher::run(
                engine.clone(),
                dir.clone(),
                Duration::from_millis(200),
            ));
            println!("watching {} for plugins (TENANT/PLUGIN/)", dir.display());
        }
        println!("escalator listening on http://{addr}");
        println!("data: {}", config.data_dir.display());
        println!("database: {:?}", config.database);
        match &server.new_admin_token {
            Some(t) => println!(
                "admin token: {t}\n  (shown once; also in {})",
                config.data_dir.join("admin-token").display()
            ),
            None => {
                println!("admin token: as configured or first printed (see DATA_DIR/admin-token)")
            }
        }
        if engine.clock.is_manual() {
            println!(
                "clock: manual, at {} (POST /v1/clock to move it)",
                engine.clock.now()
            );
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
        api::serve(listener, server.api, shutdown_signal()).await;
        println!("escalator stopped");
        Ok(0)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match &mut term { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How often a server looks for events stored but never decided.
const ORPHANS_EVERY: Duration = Duration::from_secs(5);

/// Decide, now and then, the events another instance stored and never
/// decided (it was killed between the two; its client got no answer).
/// An event being decided has its ticket held, so [`Engine::recover`]
/// waits for it and then finds it decided: only orphans are decided here.
async fn decide_orphans(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(ORPHANS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.recover()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(events = n, "looked at events stored but not decided"),
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for undecided events failed"),
            Err(e) => tracing::error!(error = %e, "looking for undecided events panicked"),
        }
    }
}

/// Publish the plugin changes other instances on the same database made,
/// when the database tells and every [`crate::engine::SYNC_PLUGINS_EVERY`].
async fn sync_plugins(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(crate::engine::SYNC_PLUGINS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.plugins_changed.notified() => {}
        }
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.sync_plugin_sets()).await {
            Ok(Ok(changed)) if !changed.is_empty() => {
                tracing::info!(tenants = ?changed, "plugin sets changed by another instance published")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "looking for plugin changes failed"),
            Err(e) => tracing::error!(error = %e, "looking for plugin changes panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_private_even_when_it_existed_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, "esc_new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "esc_new\n");
    }

    #[test]
    fn the_database_is_chosen_by_its_url_and_its_password_never_printed() {
        let pg = Database::parse("postgres://app:s3cret@db.internal:5432/escalator").unwrap();
        assert!(matches!(pg, Database::Postgres(_)));
        let shown = format!("{pg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("db.internal") && shown.contains("***"),
            "{shown}"
        );
        assert!(matches!(
            Database::parse("postgresql://db/x").unwrap(),
            Database::Postgres(_)
        ));
        assert_eq!(
            Database::parse("sqlite:/var/lib/e.db").unwrap(),
            Database::Sqlite("/var/lib/e.db".into())
        );
        assert_eq!(
            Database::parse("data/e.db").unwrap(),
            Database::Sqlite("data/e.db".into())
        );
        assert!(Database::parse("  ").is_err());
        // The file, the environment and the flag name it the same way; a
        // flag wins over the file.
        let file: FileConfig = toml::from_str("database = \"postgres://db/file\"\n").unwrap();
        assert_eq!(file.database.as_deref(), Some("postgres://db/file"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("escalator.toml"),
            "database = \"postgres://db/file\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let from_file = ServeConfig::resolve(&args).unwrap();
        assert_eq!(
            from_file.database,
            Database::Postgres("postgres://db/file".into())
        );
        let args = ServeArgs {
            database: Some("sqlite:other.db".into()),
            ..args
        };
        assert_eq!(
            ServeConfig::resolve(&args).unwrap().database,
            Database::Sqlite("other.db".into())
        );
        let none = ServeConfig::resolve(&ServeArgs {
            data_dir: Some(dir.path().join("fresh")),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(
            none.database,
            Database::Sqlite(dir.path().join("fresh").join("escalator.db")),
            "the quick start's default"
        );
    }

    #[test]
    fn limits_and_delivery_settings_are_checked() {
        let bad: FileConfig = toml::from_str("[limits]\nversions-per-plugin = 1\n").unwrap();
        assert!(bad.limits.resolve().is_err());
        let bad: FileConfig = toml::from_str("[limits]\nevents-per-second = 0\n").unwrap();
        assert!(bad.limits.resolve().is_err());
        for bad in [
            "body-bytes-per-second = 0",
            "body-bytes-per-second = -5.0",
            "body-burst-bytes = 100",
            "normal-requests-per-tenant = 0",
        ] {
            let bad: FileConfig = toml::from_str(&format!("[limits]\n{bad}\n")).unwrap();
            assert!(bad.limits.resolve().is_err(), "{bad:?}");
        }
        let ok: FileConfig =
            toml::from_str("[limits]\nbody-bytes-per-second = 2048\nbody-burst-bytes = 65536\n")
                .unwrap();
        let q = ok.limits.resolve().unwrap();
        assert_eq!(
            (q.body_bytes_per_second, q.body_burst_bytes),
            (2048.0, 65536.0)
        );
        let bad: FileConfig = toml::from_str("[delivery]\ntenant-senders = 0\n").unwrap();
        assert!(bad.delivery.resolve().is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nwebhooks = 3\n").is_err());
        let ok: FileConfig =
            toml::from_str("[outbound]\nallow = [\"10.0.0.0/8\"]\n[limits]\nevent-burst = 9\n")
                .unwrap();
        assert_eq!(ok.limits.resolve().unwrap().event_burst, 9.0);
        assert!(crate::delivery::Policy::new(&ok.outbound.allow).is_ok());
    }
}
