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
    /// Hot-swap benchmark: upload → live for 140 KB to 1 MB components, and
    /// restart time with 100 plugins registered (cached and cold).
    BenchLifecycle,
    /// Isolation benchmark: a victim tenant's p50/p99 before and during
    /// each attack a hostile tenant's plugins can make.
    BenchIsolation(crate::bench::isolation::IsolationArgs),
    /// Run the default plugins on the example tickets and show each decision.
    Demo {
        /// Ticket JSON files to use instead of the built-in examples.
        tickets: Vec<PathBuf>,
        /// A roster (JSON array of agents) instead of the example one.
        #[arg(long)]
        roster: Option<PathBuf>,
    },
}

/// `escalator replay ...`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The tickets: Escalator JSONL, or one of the shared data sets.
    #[arg(long)]
    pub tickets: PathBuf,
    /// The input format (default: detected from the first line).
    #[arg(long, value_enum)]
    pub format: Option<crate::replay::Format>,
    /// Plugin directories overlaying the built-in set (by name).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Compare with this plugin set (same form as --plugins; `builtin`
    /// for the built-in set).
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Replay only the first N tickets.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The roster routers see (a JSON array of agents, as `PUT
    /// /v1/agents` takes them); default: none, so escalations go to the
    /// general queue.
    #[arg(long)]
    pub roster: Option<PathBuf>,
}

/// `escalator plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run one plugin on one ticket; print its output, fuel, memory and time
    /// as JSON. Exits 2 if the plugin fails.
    Run {
        /// The plugin: a directory with plugin.toml, a manifest file, or
        /// `builtin:NAME`.
        #[arg(long)]
        plugin: String,
        /// The ticket, as JSON.
        #[arg(long)]
        ticket: PathBuf,
        /// The evaluation time (RFC 3339); default: now.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// The event that caused the evaluation.
        #[arg(long, default_value = "message-added")]
        event: String,
        /// Routers and notifiers: the roster, a JSON array of agents.
        #[arg(long)]
        roster: Option<PathBuf>,
        /// Routers and notifiers: the escalation as JSON (default: the
        /// ticket's tier, or high, with no signals).
        #[arg(long)]
        escalation: Option<PathBuf>,
        /// Notifiers: the routing as JSON (default: the ticket's assignee,
        /// or the general queue).
        #[arg(long)]
        routing: Option<PathBuf>,
        /// Replace the manifest's [config] with this JSON.
        #[arg(long)]
        config: Option<String>,
    },
    /// Say which world a component implements and what it imports.
    Inspect {
        /// The component (.wasm).
        wasm: PathBuf,
    },
    /// List the default plugins built into this binary.
    List,
    /// Start a plugin: a directory with a manifest, fixtures, the contract's
    /// WIT, the source and a build script (`./build.sh && escalator plugin
    /// test DIR` passes out of the box).
    New {
        /// What kind of plugin.
        #[arg(value_enum)]
        kind: crate::scaffold::NewKind,
        /// The language.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The directory to create (its name names the plugin).
        dir: PathBuf,
        /// Rust: the escalator-guest crate to depend on (default: this
        /// checkout's guest-sdk if it exists, else the git repository).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Validate a plugin directory the way the server does before a version
    /// may serve (world, imports, size, limits, compiles) and run its
    /// `fixtures/*.json`; prints a table of cases. Exits 2 if any fails.
    Test {
        /// The plugin directory.
        dir: PathBuf,
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
        Command::Serve(args) => return crate::server::serve(args, &matrix),
        Command::BenchServe(args) => return crate::server::bench(args, &matrix),
        Command::BenchLifecycle => return crate::bench::lifecycle(&matrix),
        Command::BenchIsolation(args) => return crate::bench::isolation::run(args, &matrix),
        Command::Replay(args) => return replay(&cli, &matrix, args),
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
        | Command::BenchLifecycle
        | Command::BenchIsolation(_)
        | Command::Replay(_) => Ok(0),
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

/// Inputs of `plugin run` besides the plugin.
struct RunInput {
    ticket: PathBuf,
    now: Option<DateTime<Utc>>,
    event: String,
    roster: Option<PathBuf>,
    escalation: Option<PathBuf>,
    routing: Option<PathBuf>,
    config: Option<String>,
}

fn plugin_run(runtime: &Runtime, matrix: &Matrix, spec: &str, input: &RunInput) -> Result<i32> {
    let loaded = load_plugin(runtime, spec)?.with_matrix(matrix);
    let ticket: model::Ticket = read_json(&input.ticket, "ticket")?;
    let now = input.now.unwrap_or_else(Utc::now);
    let event: model::EventKind = serde_json::from_value(serde_json::Value::String(input.event.clone()))
        .map_err(|_| anyhow::anyhow!("--event {:?}: use one of ticket-created, message-added, ai-analysis, claimed, agent-replied, status-changed, csat-rating, agent-availability, tick", input.event))?;
    let config = match &input.config {
        Some(c) => {
            serde_json::from_str::<serde_json::Value>(c).context("--config is not valid JSON")?;
            c.clone()
        }
        None => loaded.config_json.to_string(),
    };
    let roster: Vec<model::Agent> = match &input.roster {
        Some(p) => read_json(p, "roster")?,
        None => Vec::new(),
    };
    // Here a roster entry that does not convert is an error, not left out.
    for a in &roster {
        contract::agent(a, now).map_err(anyhow::Error::msg)?;
    }
    let escalation: model::Escalation = match &input.escalation {
        Some(p) => read_json(p, "escalation")?,
        None => model::Escalation {
            tier: ticket.tier.unwrap_or(model::Tier::High),
            signals: Vec::new(),
            response_target_ms: matrix
                .response_targets()
                .get(ticket.tier.unwrap_or(model::Tier::High)),
        },
    };
    let routing: model::Routing = match &input.routing {
        Some(p) => read_json(p, "routing")?,
        None => model::Routing {
            target: ticket
                .assignee
                .clone()
                .map_or(model::Target::Queue("general".into()), model::Target::Agent),
            reason: "given".into(),
            fallback: Vec::new(),
        },
    };
    let plugin = &loaded.plugin;
    let what = match plugin.kind() {
        Kind::Trigger => Call::Trigger,
        Kind::Router => Call::Router(&escalation),
        Kind::Notifier => Call::Notifier(&escalation, &routing),
    };
    let input = pipeline::Input::new(&ticket, &roster, now, event);
    let called = pipeline::call(runtime, plugin, &config, what, &input, Deadlines::Retried);
    let report = called.report;
    let (output, error) = match called.result.map(serde_json::to_value) {
        Ok(Ok(v)) => (Some(v), None),
        Ok(Err(e)) => (
            None,
            Some((
                "invalid-output",
                format!("{} returned invalid output: {e}", plugin.id()),
            )),
        ),
        Err(e) => (None, Some(e)),
    };
    let failed = error.is_some();
    let report_json = serde_json::json!({
        "plugin": plugin.id().to_string(),
        "kind": plugin.kind(),
        "source": loaded.source,
        "now": now,
        "compiled": matches!(plugin.origin(), crate::runtime::cache::Origin::Compiled),
        "output": output,
        "error": error.as_ref().map(|(kind, message)| serde_json::json!({"kind": kind, "message": message})),
        "fuel_used": report.fuel_used,
        "peak_memory_bytes": report.peak_memory_bytes,
        "duration_us": report.duration.as_micros() as u64,
        "log": report.log,
        "log_dropped_bytes": report.log_dropped_bytes,
    });
    out!("{}", serde_json::to_string_pretty(&report_json)?);
    if let Some((kind, message)) = error {
        eprintln!("error ({kind}): {message}");
    }
    Ok(if failed { 2 } else { 0 })
}

fn plugin_inspect(runtime: &Runtime, path: &Path) -> Result<i32> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (component, _) = runtime
        .compile(&wasm)
        .with_context(|| format!("{} is not a loadable component", path.display()))?;
    let i = inspect::inspect(runtime.engine(), &component);
    out!("{}", path.display());
    out!("  size:     {} bytes", wasm.len());
    match i.world {
        Some(k) => out!("  world:    {k} (exports `{}`)", k.export()),
        None => out!(
            "  world:    none of trigger, router, notifier (exports: {})",
            i.exports.join(", ")
        ),
    }
    out!(
        "  contract: escalator:plugin@{}",
        i.contract.as_deref().unwrap_or("?")
    );
    out!("  imports:");
    for imp in &i.imports {
        out!(
            "    {} {}",
            if imp.granted { "ok     " } else { "REFUSED" },
            imp.name
        );
    }
    if i.uses_wasi {
        out!("  note: imports WASI; a build without it instantiates about twice as fast");
    }
    let refused: Vec<&str> = i.ungranted().collect();
    if !refused.is_empty() {
        bail!(
            "the host will refuse this component: it imports {}",
            refused.join(", ")
        );
    }
    if i.world.is_none() {
        bail!("not an Escalator plugin: it implements none of the plugin worlds");
    }
    Ok(0)
}

fn plugin_list(runtime: &Runtime) -> Result<i32> {
    for p in registry::load_builtin(runtime)? {
        let m = &p.manifest;
        out!(
            "{:<15} {:<9} {:<8} {:>5} KB  {}",
            m.name,
            m.kind,
            m.version,
            p.plugin.size() / 1024,
            m.description
        );
    }
    Ok(0)
}

fn plugin_test(runtime: &Runtime, matrix: &Matrix, dir: &Path) -> Result<i32> {
    let plugin = match registry::load_path(runtime, dir) {
        Ok(p) => p.with_matrix(matrix),
        Err(e) => {
            out!("refused: {e}");
            return Ok(2);
        }
    };
    let cases = match registry::fixtures::read(dir) {
        Ok(c) => c,
        Err(e) => {
            out!("fixtures: {e}");
            return Ok(2);
        }
    };
    out!(
        "{} ({}, {} KB): loads and compiles",
        plugin.plugin.id(),
        plugin.manifest.kind,
        plugin.plugin.size() / 1024
    );
    if cases.is_empty() {
        out!("no fixtures in {}", dir.join("fixtures").display());
        return Ok(0);
    }
    let results = registry::fixtures::run(runtime, &plugin, &cases);
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out!(
        "{:<width$}  result  {:>12}  {:>8}  detail",
        "case",
        "fuel",
        "µs"
    );
    for r in &results {
        out!(
            "{:<width$}  {:<6}  {:>12}  {:>8}  {}",
            r.name,
            if r.passed { "pass" } else { "FAIL" },
            r.fuel,
            r.micros,
            if r.passed { "" } else { r.detail.as_str() }
        );
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    out!("{} passed, {failed} failed", results.len() - failed);
    Ok(if failed == 0 { 0 } else { 2 })
}

fn replay(cli: &Cli, matrix: &Matrix, args: &ReplayArgs) -> Result<i32> {
    use crate::replay::{self, Aggregate};
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache_dir(cli),
        ..RuntimeConfig::default()
    })?;
    let format = match args.format {
        Some(f) => f,
        None => replay::Format::detect(&args.tickets)?,
    };
    let set_of = |dir: Option<&Path>| {
        let dir = dir.filter(|d| d.as_os_str() != "builtin");
        replay::plugin_set(&runtime, matrix, dir)
    };
    let set = set_of(args.plugins.as_deref())?;
    let other = args
        .against
        .as_deref()
        .map(|d| set_of(Some(d)))
        .transpose()?;
    let roster: Vec<model::Agent> = match &args.roster {
        Some(p) => read_json(p, "roster")?,
        None => Vec::new(),
    };
    let targets = matrix.response_targets();
    let offline = |set| replay::Offline {
        runtime: &runtime,
        set,
        roster: &roster,
        targets: &targets,
    };
    let started = std::time::Instant::now();
    let (mut agg, mut agg_other) = (Aggregate::default(), Aggregate::default());
    let mut changes: Vec<serde_json::Value> = Vec::new();
    let mut changed = 0usize;
    let mut done = 0usize;
    replay::read(&args.tickets, format, args.limit, 512, |cases| {
        let results = replay::replay_batch(&offline(&set), &cases);
        agg.add(&results);
        if let Some(other) = &other {
            let theirs = replay::replay_batch(&offline(other), &cases);
            for (a, b) in results.iter().zip(&theirs) {
                if a.tier != b.tier {
                    changed += 1;
                    if changes.len() < 50 {
                        let only = |x: &[String], y: &[String]| -> Vec<String> {
                            x.iter().filter(|k| !y.contains(k)).cloned().collect()
                        };
                        changes.push(serde_json::json!({
                            "ticket": a.id, "tier": a.tier, "against": b.tier,
                            "reasons_only_here": only(&a.reasons, &b.reasons),
                            "reasons_only_against": only(&b.reasons, &a.reasons),
                        }));
                    }
                }
            }
            agg_other.add(&theirs);
        }
        done += cases.len();
        let secs = started.elapsed().as_secs_f64();
        eprint!("\r{done} tickets, {:.0}/s   ", done as f64 / secs.max(1e-9));
        Ok(())
    })?;
    eprintln!();
    let secs = started.elapsed().as_secs_f64();
    let report = agg.report(secs);
    out!(
        "{} tickets from {} ({format:?}) in {secs:.1} s: {:.0} tickets/s, {} evaluations, {} plugin errors",
        report.tickets,
        args.tickets.display(),
        report.tickets_per_second,
        report.evaluations,
        report.plugin_errors
    );
    out!(
        "tiers: {}",
        report
            .tiers
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out!("escalation rate: {:.1} %", report.escalation_rate * 100.0);
    if !report.minutes_to_escalation.is_empty() {
        let m = &report.minutes_to_escalation;
        out!(
            "minutes to escalation: p50 {:.1}, p90 {:.1}, max {:.1}",
            m["p50"],
            m["p90"],
            m["max"]
        );
    }
    out!(
        "top reasons: {}",
        report
            .top_reasons
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(a) = report.agreement {
        out!(
            "labelled: {}; agreement {:.1} %",
            report.labelled,
            a * 100.0
        );
        out!(
            "{:<10} {:>8} {:>9} {:>8} {:>9} {:>7}",
            "class",
            "support",
            "predicted",
            "correct",
            "precision",
            "recall"
        );
        for c in ["critical", "high", "medium", "low"] {
            let s = &report.classes[c];
            out!(
                "{c:<10} {:>8} {:>9} {:>8} {:>8.1}% {:>6.1}%",
                s.support,
                s.predicted,
                s.correct,
                s.precision * 100.0,
                s.recall * 100.0
            );
        }
        out!(
            "confusion (expected → predicted): {}",
            serde_json::to_string(&report.confusion)?
        );
    }
    if let Some(sla) = &report.sla {
        out!(
            "SLA: {} tickets, {} missed their SLA; sla trigger flagged {} breaches, {} of them missed (precision {:.1} %, recall {:.1} %)",
            sla["tickets"],
            sla["missed_sla"],
            sla["flagged_breach"],
            sla["flagged_and_missed"],
            sla["precision"] * 100.0,
            sla["recall"] * 100.0
        );
    }
    let mut json = serde_json::to_value(&report)?;
    if other.is_some() {
        let theirs = agg_other.report(secs);
        out!(
            "against {}: {changed} ticket(s) change tier; their tiers: {}",
            args.against.as_deref().unwrap_or(Path::new("")).display(),
            theirs
                .tiers
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for c in changes.iter().take(10) {
            out!("  {c}");
        }
        json["against"] =
            serde_json::json!({"changed": changed, "changes": changes, "report": theirs});
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(0)
}

const DEMO_TICKETS: &[&str] = &[
    include_str!("../../examples/tickets/enterprise-billing-dispute.json"),
    include_str!("../../examples/tickets/password-reset.json"),
    include_str!("../../examples/tickets/asks-for-a-human.json"),
];
const DEMO_ROSTER: &str = include_str!("../../examples/roster.json");

fn demo(
    runtime: &Runtime,
    matrix: &Matrix,
    paths: &[PathBuf],
    roster: Option<&Path>,
) -> Result<i32> {
    let plugins = registry::load_builtin(runtime)?
        .into_iter()
        .map(|p| p.with_matrix(matrix));
    let set = PluginSet::new(plugins).map_err(anyhow::Error::msg)?;
    let targets = matrix.response_targets();
    let tickets: Vec<model::Ticket> = if paths.is_empty() {
        DEMO_TICKETS
            .iter()
            .map(|t| serde_json::from_str(t))
            .collect::<Result<_, _>>()?
    } else {
        paths
            .iter()
            .map(|p| read_json(p, "ticket"))
            .collect::<Result<_>>()?
    };
    let roster: Vec<model::Agent> = match roster {
        Some(p) => read_json(p, "roster")?,
        None => serde_json::from_str(DEMO_ROSTER)?,
    };
    for ticket in &tickets {
        let now = ticket
            .messages
            .iter()
            .map(|m| m.sent_at)
            .max()
            .unwrap_or(ticket.created_at);
        let ask = pipeline::Ask {
            runtime,
            set: &set,
            roster: &roster,
            targets: &targets,
            now,
            event: model::EventKind::MessageAdded,
            deadlines: Deadlines::Retried,
        };
        let state = pipeline::apply::created(ticket.clone(), &ticket.tenant, ticket.created_at);
        let d = pipeline::decide(&ask, &state, &Default::default());
        out!("━━ {} · {}", ticket.id, ticket.subject);
        match d.tier {
            None => out!("   stays with the AI agent: no trigger fired"),
            Some(t) => out!(
                "   tier: {}",
                serde_json::to_value(t)?.as_str().unwrap_or("?")
            ),
        }
        for s in &d.signals {
            let action = match s.action {
                model::SignalAction::Escalate => "",
                model::SignalAction::Raise => " (raises)",
                model::SignalAction::Warn => " (warns)",
            };
            out!("   • [{}]{action} {}", s.key, s.reason);
            for e in &s.evidence {
                out!("       {e}");
            }
        }
        let routing = d.escalation.as_ref().map(|e| &e.routing);
        if let Some(r) = routing {
            out!(
                "   → {}: {}",
                pipeline::apply::target_name(&r.target),
                r.reason
            );
            for f in &r.fallback {
                out!(
                    "     after {} min → {} ({})",
                    f.after_ms / 60_000,
                    pipeline::apply::target_name(&f.target),
                    f.reason
                );
            }
        }
        if let Some(p) = d.escalation.as_ref().and_then(|e| e.plan.as_ref()) {
            for s in &p.steps {
                out!(
                    "   ✉ +{:>3} min {:<8} {:<8} {}",
                    s.delay_ms / 60_000,
                    recipient(&s.recipient),
                    format!("{:?}", s.channel),
                    s.title
                );
            }
            if let Some(m) = &p.customer_message {
                out!("   customer sees: {m}");
            }
        }
        for r in &d.runs {
            let status = r.error_kind.unwrap_or("ok");
            out!(
                "   [{} {status}: {} fuel, {} µs]",
                r.plugin,
                r.report.fuel_used,
                r.report.duration.as_micros()
            );
        }
        out!();
    }
    Ok(0)
}

fn recipient(r: &model::Recipient) -> String {
    match r {
        model::Recipient::Agent(a) | model::Recipient::Team(a) | model::Recipient::Endpoint(a) => {
            a.clone()
        }
    }
}
