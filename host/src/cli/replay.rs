//! `escalator replay`: historical tickets through a plugin set.

use super::*;

/// The history a command reads: `replay`, `tune` and `learn` take it alike.
#[derive(Debug, clap::Args)]
pub struct History {
    /// The tickets: Escalator JSONL (with `expected` labels for `learn`
    /// and the `agreement` objective of `tune`), or one of the shared data
    /// sets (the Hadoop priorities, ServiceNow's `made_sla`).
    #[arg(long)]
    pub tickets: PathBuf,
    /// The input format (default: detected from the first line).
    #[arg(long, value_enum)]
    pub format: Option<crate::replay::Format>,
}

impl History {
    /// The format given, or the one the file's first line shows.
    pub fn format(&self) -> Result<crate::replay::Format> {
        match self.format {
            Some(f) => Ok(f),
            None => crate::replay::Format::detect(&self.tickets),
        }
    }
}

/// `escalator replay ...`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The tickets and their format.
    #[command(flatten)]
    pub history: History,
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

pub(super) fn replay(cli: &Cli, matrix: &Matrix, args: &ReplayArgs) -> Result<i32> {
    use crate::replay::{self, Aggregate};
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache_dir(cli),
        ..RuntimeConfig::default()
    })?;
    let format = args.history.format()?;
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
    replay::read(&args.history.tickets, format, args.limit, 512, |cases| {
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
        args.history.tickets.display(),
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
            "SLA: {} tickets, {} missed their SLA; sla trigger flagged {} breaches, {} of them missed (precision {:.1} %, recall {:.1} %); flagged exactly when missed: {:.1} %",
            sla["tickets"],
            sla["missed_sla"],
            sla["flagged_breach"],
            sla["flagged_and_missed"],
            sla["precision"] * 100.0,
            sla["recall"] * 100.0,
            sla["agreement"] * 100.0
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
