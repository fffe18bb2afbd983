//! `escalator plugin run | test | inspect | list | new`.

use super::*;

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

/// Inputs of `plugin run` besides the plugin.
pub(super) struct RunInput {
    pub(super) ticket: PathBuf,
    pub(super) now: Option<DateTime<Utc>>,
    pub(super) event: String,
    pub(super) roster: Option<PathBuf>,
    pub(super) escalation: Option<PathBuf>,
    pub(super) routing: Option<PathBuf>,
    pub(super) config: Option<String>,
}

pub(super) fn plugin_run(
    runtime: &Runtime,
    matrix: &Matrix,
    spec: &str,
    input: &RunInput,
) -> Result<i32> {
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
                crate::runtime::ErrorKind::InvalidOutput,
                format!("{} returned invalid output: {e}", plugin.id()),
            )),
        ),
        Err(e) => (None, Some((e.kind(), e.to_string()))),
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

pub(super) fn plugin_inspect(runtime: &Runtime, path: &Path) -> Result<i32> {
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

pub(super) fn plugin_list(runtime: &Runtime) -> Result<i32> {
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

pub(super) fn plugin_test(runtime: &Runtime, matrix: &Matrix, dir: &Path) -> Result<i32> {
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
