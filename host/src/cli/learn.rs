//! `escalator learn`: fit the `learned` trigger on labelled history.

use super::*;

/// `escalator learn ...`
#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// The labelled history.
    #[command(flatten)]
    pub history: super::replay::History,
    /// The plugin directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Tickets created before this date (YYYY-MM-DD, UTC) are fitted on,
    /// the rest only reported on (default: the last --holdout share).
    #[arg(long)]
    pub split: Option<chrono::NaiveDate>,
    /// Without --split, the share of the newest tickets kept for the
    /// report.
    #[arg(long, default_value_t = 0.25)]
    pub holdout: f64,
    /// The recall of urgent tickets (critical and high) the threshold is
    /// chosen for, on the fitting part.
    #[arg(long, default_value_t = 0.85)]
    pub urgent_recall: f64,
    /// The urgency head's inverse regularisation strength
    /// (scikit-learn's C); repeat to let cross-validation on the fitting
    /// part choose (default: 0.3, 1 and 3).
    #[arg(long)]
    pub c: Vec<f64>,
    /// The class head's, likewise (default: 0.3, 1, 3, 10, 30 and 100).
    #[arg(long)]
    pub class_c: Vec<f64>,
    /// The plugin's version in its plugin.toml (raise it for each model
    /// you upload).
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    /// Also write the report as JSON here (it is also in the plugin
    /// directory as report.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub(super) fn learn(args: &LearnArgs) -> Result<i32> {
    use crate::learn;
    if !(0.0..1.0).contains(&args.holdout) || !(0.0..=1.0).contains(&args.urgent_recall) {
        bail!("--holdout must be in [0, 1) and --urgent-recall in [0, 1]");
    }
    let format = args.history.format()?;
    let mut cases = Vec::new();
    crate::replay::read(&args.history.tickets, format, None, 4096, |batch| {
        cases.extend(batch.into_iter().filter(|c| c.expected.is_some()));
        Ok(())
    })?;
    if cases.is_empty() {
        bail!(
            "{}: no labelled tickets (each needs an expected tier)",
            args.history.tickets.display()
        );
    }
    cases.sort_by(|a, b| {
        a.ticket
            .created_at
            .cmp(&b.ticket.created_at)
            .then_with(|| a.ticket.id.cmp(&b.ticket.id))
    });
    let started = std::time::Instant::now();
    let examples = learn::examples(&cases);
    let at = args
        .split
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc());
    let (fit_part, report_part) = learn::split(&examples, at, args.holdout);
    if report_part.is_empty() {
        bail!("nothing left to report on: choose an earlier --split or a larger --holdout");
    }
    let defaults = learn::Settings::default();
    let given_or = |given: &Vec<f64>, default: &Vec<f64>| {
        if given.is_empty() { default } else { given }.clone()
    };
    let settings = learn::Settings {
        urgent_recall: args.urgent_recall,
        c: given_or(&args.c, &defaults.c),
        class_c: given_or(&args.class_c, &defaults.class_c),
        ..defaults
    };
    let learned = learn::learn(&fit_part, &report_part, &settings)?;
    let e = &learned.held_out;
    let report = serde_json::json!({
        "tickets": args.history.tickets.display().to_string(),
        "fitted_on": learned.fitted_on,
        "fitted_from": fit_part.first().map(|e| e.at),
        "reported_from": learned.split_at,
        "reported_until": report_part.last().map(|e| e.at),
        "settings": {
            "c_tried": learned.tried.iter().map(|(c, p)| serde_json::json!({"c": c, "out_of_fold_precision": p})).collect::<Vec<_>>(),
            "c": learned.c,
            "class_c_tried": learned.class_tried.iter().map(|(c, a, l)| serde_json::json!({"c": c, "out_of_fold_agreement": a, "out_of_fold_log_loss": l})).collect::<Vec<_>>(),
            "class_c": learned.class_c, "temperature": learned.temperature,
            "iterations": settings.iterations,
            "urgent_recall": settings.urgent_recall, "folds": settings.folds,
        },
        "urgent_threshold": learned.urgent_threshold,
        "held_out": e,
    });
    let report_cases: Vec<&crate::replay::Case> =
        report_part.iter().map(|e| &cases[e.case]).collect();
    learn::write_plugin(&args.out, &args.version, &learned, &report_cases, &report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    out!(
        "fitted on {} tickets ({} .. {}), reported on the {} after {} (never fitted on)",
        learned.fitted_on,
        fit_part
            .first()
            .map(|e| e.at.date_naive().to_string())
            .unwrap_or_default(),
        fit_part
            .last()
            .map(|e| e.at.date_naive().to_string())
            .unwrap_or_default(),
        e.tickets,
        learned
            .split_at
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default(),
    );
    out!(
        "chosen on the fitting part by {}-fold time cross-validation: urgency C {} and threshold {:.4} (for {:.0} % recall); class C {} and temperature {:.3}",
        settings.folds,
        learned.c,
        learned.urgent_threshold,
        settings.urgent_recall * 100.0,
        learned.class_c,
        learned.temperature,
    );
    out!(
        "held out: agreement {:.3} (likeliest class {:.3}, log loss {:.3}), urgent recall {:.3} at precision {:.3}; precision at 80 % urgent recall {:.3}",
        e.agreement,
        e.argmax_agreement,
        e.log_loss,
        e.urgent_recall,
        e.urgent_precision,
        e.urgent_precision_at_80_recall
    );
    out!(
        "{:<10} {:>7} {:>9} {:>7}",
        "class",
        "tickets",
        "precision",
        "recall"
    );
    for c in &e.classes {
        out!(
            "{:<10} {:>7} {:>9.3} {:>7.3}",
            c.class,
            c.support,
            c.precision,
            c.recall
        );
    }
    out!(
        "wrote {} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
