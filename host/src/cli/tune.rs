//! `escalator tune`: search plugins' numeric settings by replay.

use super::*;

/// `escalator tune ...`
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// The history searched and reported on.
    #[command(flatten)]
    pub history: super::replay::History,
    /// Plugin directories overlaying the built-in set (by name): the
    /// plugins whose settings are tuned, and the rest of the set.
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// A setting to vary and the values to try:
    /// `PLUGIN.CONFIG.PATH=V1,V2,...`, e.g.
    /// `sla.targets.high.resolution=960,1440,2880`. Repeat for more.
    #[arg(long, required = true)]
    pub vary: Vec<String>,
    /// What to maximise (default: `sla` when the history has SLA outcomes,
    /// else `agreement`).
    #[arg(long, value_enum)]
    pub objective: Option<crate::tune::Objective>,
    /// Tickets created before this date (YYYY-MM-DD, UTC) are searched on,
    /// the rest only reported on (default: the newest --holdout share).
    #[arg(long)]
    pub split: Option<chrono::NaiveDate>,
    /// Without --split, the share of the newest tickets kept for the report.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    pub holdout: f64,
    /// Rounds of the coordinate search.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Use only the first N tickets of the file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the tuned plugins' directories here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the whole result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The manifest text of a plugin of the set: from the overlay directory
/// that names it, else the built-in one.
fn manifest_text(overlay: Option<&Path>, p: &LoadedPlugin) -> Result<String> {
    if let Some(dir) = overlay {
        let mut dirs = vec![dir.to_path_buf()];
        if !dir.join("plugin.toml").exists() {
            dirs = std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
        }
        for d in dirs {
            if let Ok(text) = std::fs::read_to_string(d.join("plugin.toml"))
                && toml::from_str::<toml::Table>(&text)
                    .ok()
                    .and_then(|t| t.get("name").and_then(|n| n.as_str().map(str::to_string)))
                    .is_some_and(|n| n == p.manifest.name)
            {
                return Ok(text);
            }
        }
    }
    registry::builtin(&p.manifest.name)
        .map(|b| b.manifest.to_string())
        .with_context(|| format!("no manifest found for plugin {}", p.manifest.name))
}

pub(super) fn tune(cli: &Cli, matrix: &Matrix, args: &TuneArgs) -> Result<i32> {
    use crate::replay::{self, Offline};
    use crate::tune::{self, Knob, Objective};
    if !(0.0..1.0).contains(&args.holdout) {
        bail!("--holdout must be in [0, 1)");
    }
    let knobs = args
        .vary
        .iter()
        .map(|v| Knob::parse(v))
        .collect::<Result<Vec<_>>>()?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: cache_dir(cli),
        ..RuntimeConfig::default()
    })?;
    let format = args.history.format()?;
    let base = replay::plugins(&runtime, matrix, args.plugins.as_deref())?;
    let mut cases = Vec::new();
    replay::read(&args.history.tickets, format, args.limit, 4096, |b| {
        cases.extend(b);
        Ok(())
    })?;
    cases.sort_by(|a, b| {
        a.ticket
            .created_at
            .cmp(&b.ticket.created_at)
            .then_with(|| a.ticket.id.cmp(&b.ticket.id))
    });
    let cut = match args.split {
        Some(d) => {
            let t = d.and_time(chrono::NaiveTime::MIN).and_utc();
            cases.partition_point(|c| c.ticket.created_at < t)
        }
        None => cases.len() - (cases.len() as f64 * args.holdout).round() as usize,
    };
    let (fit_part, report_part) = cases.split_at(cut);
    if fit_part.is_empty() || report_part.is_empty() {
        bail!(
            "{} tickets searched on, {} reported on: both parts need tickets (see --split / --holdout)",
            fit_part.len(),
            report_part.len()
        );
    }
    let objective = args
        .objective
        .unwrap_or(if cases.iter().any(|c| c.made_sla.is_some()) {
            Objective::Sla
        } else {
            Objective::Agreement
        });
    let roster: Vec<model::Agent> = Vec::new();
    let targets = matrix.response_targets();
    let offline = |set: &PluginSet, cases: &[replay::Case], o: Objective| {
        let off = Offline {
            runtime: &runtime,
            set,
            roster: &roster,
            targets: &targets,
        };
        tune::evaluate(&off, cases, o)
    };
    let started = std::time::Instant::now();
    let most: usize = knobs.iter().map(|k| k.values.len()).sum::<usize>() * args.rounds.max(1);
    let mut progress = |n: usize| {
        use std::io::Write as _;
        let secs = started.elapsed().as_secs_f64();
        let _ = write!(
            std::io::stderr(),
            "\rtried {n} settings (at most {most}) on {} tickets, {:.0} s, about {:.0} s each   ",
            fit_part.len(),
            secs,
            secs / n as f64
        );
    };
    let tuned = tune::tune(
        &base,
        &knobs,
        &offline,
        fit_part,
        report_part,
        objective,
        args.rounds,
        &mut progress,
    )?;
    eprintln!();
    out!(
        "searched on {} tickets (until {}), reported on the {} after (never searched on); objective {:?}",
        fit_part.len(),
        fit_part
            .last()
            .map(|c| c.ticket.created_at.date_naive().to_string())
            .unwrap_or_default(),
        report_part.len(),
        objective
    );
    out!("{:<44} {:>10} {:>10}", "setting", "started", "chosen");
    for (k, v) in &tuned.chosen {
        out!("{:<44} {:>10} {:>10}", k, tuned.started_from[k], v);
    }
    let line = |what: &str, s: &tune::Score| -> Result<()> {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
        out!(
            "{what:<28} objective {:.4}  agreement {:>7}  urgent recall {:>7} precision {:>7}  escalated {:>7}  SLA flagged exactly {:>7}",
            s.objective,
            pct(s.agreement),
            pct(s.urgent_recall),
            pct(s.urgent_precision),
            pct(Some(s.escalation_rate)),
            pct(s.sla_agreement)
        );
        Ok(())
    };
    line("held out, started from", &tuned.held_out_before)?;
    line("held out, chosen", &tuned.held_out)?;
    out!(
        "settings tried, best first (on the searched part; with labels, * marks the urgent recall/precision frontier):"
    );
    for t in tuned.tried.iter().take(15) {
        let values: Vec<String> = t.values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out!(
            "{} {:.4}  {}",
            if t.on_frontier { "*" } else { " " },
            t.score.objective,
            values.join(" ")
        );
    }
    if let Some(dir) = &args.out {
        let overlay = args.plugins.clone();
        let written = tune::write_plugins(
            dir,
            &base,
            &|p| manifest_text(overlay.as_deref(), p),
            &knobs,
            &tuned,
        )?;
        for d in written {
            out!("wrote {}", d.display());
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&tuned)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    out!("in {:.1} s", started.elapsed().as_secs_f64());
    Ok(0)
}
