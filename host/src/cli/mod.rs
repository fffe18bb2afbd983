//! The `escalator` command.

use crate::matrix::Matrix;
use crate::model;
use crate::pipeline::contract;
use crate::pipeline::{self, Call, Deadlines, PluginSet};
use crate::registry::{self, LoadedPlugin};
use crate::runtime::inspect::{self, Kind};
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// `println!` that returns the error instead of panicking (a closed pipe,
/// as in `escalator demo | head`, ends the command quietly in `main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod demo;
mod learn;
mod plugin;
mod replay;
mod tune;

use demo::*;
pub use learn::LearnArgs;
pub use plugin::PluginCommand;
use plugin::*;
pub use replay::ReplayArgs;
use replay::*;
pub use tune::TuneArgs;

/// Escalator: support escalation rules as sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "escalator", version, about)]
pub struct Cli {
    /// Where compiled plugins are cached (default: ~/.cache/escalator).
    #[arg(long, global = true, env = "ESCALATOR_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every plugin afresh; read and write no cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// The escalation matrix (default: the built-in plugins/matrix.toml).
    #[arg(long, global = true, env = "ESCALATOR_MATRIX")]
    pub matrix: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check the escalation matrix and print it as a table.
    Matrix,
    /// Run the server: HTTP API, SQLite store, timers and delivery, with
    /// the default plugins.
    Serve(crate::server::ServeArgs),
    /// Load benchmark: a server on loopback driven by a real HTTP client;
    /// prints events/s and latency percentiles.
    BenchServe(crate::server::BenchArgs),
    /// Replay historical tickets through a plugin set on a virtual clock
    /// and report tiers, escalation rate, time to escalation, agreement
    /// with labels, SLA breaches, and what another plugin set would change.
    Replay(ReplayArgs),
    /// Fit the `learned` trigger (a text classifier) on labelled history,
    /// report it on the later tickets it never saw, and write it as a
    /// plugin directory.
    Learn(LearnArgs),
    /// Search plugins' numeric settings (e.g. SLA targets per tier) by
    /// replaying the earlier part of a history, report the choice on the
    /// later part, and write the tuned plugins' directories.
    Tune(TuneArgs),
    /// Hot-swap benchmark: upload → live for 140 KB to 1 MB components, and
    /// restart time with N plugins registered (cached, cold, and with a
    /// code budget).
    BenchLifecycle(crate::bench::LifecycleArgs),
    /// Isolation benchmark: a victim tenant's p50/p99 before and during
    /// each attack a hostile tenant's plugins can make.
    BenchIsolation(crate::bench::isolation::IsolationArgs),
    /// Memory benchmark: N tenants x M plugins registered, resident memory
    /// per plugin, load time, a tenant's first evaluation.
    BenchMemory(crate::bench::memory::MemoryArgs),
    /// Run the default plugins on the example tickets and show each decision.
    Demo {
        /// Ticket JSON files to use instead of the built-in examples.
        tickets: Vec<PathBuf>,
        /// A roster (JSON array of agents) instead of the example one.
        #[arg(long)]
        roster: Option<PathBuf>,
    },
}

/// Run the command line; the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let matrix = match &cli.matrix {
        Some(path) => Matrix::load(path)?,
        None => Matrix::default_matrix(),
    };
    match &cli.command {
        Command::Matrix => {
            out!("{}", matrix.table());
            return Ok(0);
        }
        Command::Serve(args) => {
            let args = crate::server::ServeArgs {
                cache_dir: cli.cache_dir.clone(),
                ..args.clone()
            };
            return crate::server::serve(&args, &matrix);
        }
        Command::BenchServe(args) => return crate::server::bench(args, &matrix),
        Command::BenchLifecycle(args) => return crate::bench::lifecycle(args, &matrix),
        Command::BenchIsolation(args) => return crate::bench::isolation::run(args, &matrix),
        Command::BenchMemory(args) => return crate::bench::memory::run(args),
        Command::Replay(args) => return replay(&cli, &matrix, args),
        Command::Learn(args) => return learn::learn(args),
        Command::Tune(args) => return tune::tune(&cli, &matrix, args),
        _ => {}
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache_dir(&cli),
        ..RuntimeConfig::default()
    })?;
    match cli.command {
        Command::Plugin(PluginCommand::Run {
            plugin,
            ticket,
            now,
            event,
            roster,
            escalation,
            routing,
            config,
        }) => {
            let input = RunInput {
                ticket,
                now,
                event,
                roster,
                escalation,
                routing,
                config,
            };
            plugin_run(&runtime, &matrix, &plugin, &input)
        }
        Command::Matrix
        | Command::Serve(_)
        | Command::BenchServe(_)
        | Command::BenchLifecycle(_)
        | Command::BenchIsolation(_)
        | Command::BenchMemory(_)
        | Command::Replay(_)
        | Command::Learn(_)
        | Command::Tune(_) => Ok(0),
        Command::Plugin(PluginCommand::Inspect { wasm }) => plugin_inspect(&runtime, &wasm),
        Command::Plugin(PluginCommand::List) => plugin_list(&runtime),
        Command::Plugin(PluginCommand::Test { dir }) => plugin_test(&runtime, &matrix, &dir),
        Command::Plugin(PluginCommand::New {
            kind,
            lang,
            dir,
            sdk,
        }) => {
            let sdk = sdk.or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../guest-sdk")
                    .canonicalize()
                    .ok()
            });
            let files = crate::scaffold::new(kind, lang, &dir, sdk.as_deref())?;
            out!("created {} ({} files):", dir.display(), files.len());
            for f in files {
                out!("  {f}");
            }
            out!(
                "next: {}/build.sh && escalator plugin test {}",
                dir.display(),
                dir.display()
            );
            Ok(0)
        }
        Command::Demo { tickets, roster } => demo(&runtime, &matrix, &tickets, roster.as_deref()),
    }
}

fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    if cli.no_cache {
        return None;
    }
    cli.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("escalator"))
    })
}

/// Load a plugin from a path or `builtin:NAME`.
pub fn load_plugin(runtime: &Runtime, spec: &str) -> Result<LoadedPlugin> {
    if let Some(name) = spec.strip_prefix("builtin:") {
        let b = registry::builtin(name).with_context(|| {
            let names: Vec<_> = registry::DEFAULT_PLUGINS.iter().map(|b| b.dir).collect();
            format!(
                "no built-in plugin {name:?} (there are: {})",
                names.join(", ")
            )
        })?;
        let path = PathBuf::from(format!("builtin:{name}/plugin.toml"));
        return Ok(registry::load_parts(
            runtime,
            b.manifest,
            &path,
            b.wasm,
            spec.to_string(),
        )?);
    }
    Ok(registry::load_path(runtime, Path::new(spec))?)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!("{at}: ")
        };
        anyhow::anyhow!(
            "{} is not a valid {what}: {at}{}",
            path.display(),
            e.into_inner()
        )
    })
}
