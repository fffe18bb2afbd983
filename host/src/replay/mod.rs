//! `escalator replay`: historical tickets through a plugin set, on a
//! virtual clock that follows the tickets' own timestamps.
//!
//! Each ticket becomes the events the server would have received (its
//! creation, each message and status change at its own time, and a close
//! where the history ends unsolved), applied and decided exactly as the
//! server does: the same [`pipeline::decide`] and [`pipeline::apply`], with
//! the wake-ups the triggers ask for and the fallbacks the router plans as
//! timers on a virtual clock, so SLA clocks fire as they would have. Each
//! ticket is replayed alone with the roster as given (one ticket's load
//! does not carry to the next). A call that misses its wall-clock deadline
//! is made again (fuel is the bound), so the machine's load never changes
//! a report. Tickets are read as a stream and replayed in batches on all
//! cores; results are aggregated in input order, so the same input gives
//! the same report.
//!
//! Inputs: Escalator's own JSONL (a ticket per line, or
//! `{"ticket": ..., "expected": "high" | null}`), and importers for the
//! Twitter customer-care conversations, the Hadoop bug reports (human
//! priority as the expected tier) and the ServiceNow incident timings
//! (priority as the tier, `made_sla` as the SLA outcome).

mod formats;
mod report;
mod run;

pub use formats::{Format, hadoop_tier, read, servicenow_tier, twitter};
pub use report::{Aggregate, ClassScore, Report};
pub use run::{MAX_EVALUATIONS, Offline, Replayed, events, replay_batch, replay_case};

use crate::model::{Ticket, Tier};
use crate::pipeline::PluginSet;
use crate::runtime::Runtime;
use anyhow::{Context as _, Result, bail};
use std::path::Path;

/// One historical ticket.
#[derive(Debug, Clone)]
pub struct Case {
    /// The ticket as it ended, with its whole history.
    pub ticket: Ticket,
    /// The tier a person gave it (`Some(None)`: should not escalate).
    pub expected: Option<Option<Tier>>,
    /// Whether it met its SLA (ServiceNow).
    pub made_sla: Option<bool>,
}

/// Load a plugin set: the built-in plugins, overlaid by the plugin
/// directories in `dir` (a directory of plugin directories, or one plugin
/// directory), matched by name.
pub fn plugin_set(
    runtime: &Runtime,
    matrix: &crate::matrix::Matrix,
    dir: Option<&Path>,
) -> Result<PluginSet> {
    PluginSet::new(plugins(runtime, matrix, dir)?).map_err(anyhow::Error::msg)
}

/// The plugins of [`plugin_set`], before they are sorted into a set.
pub fn plugins(
    runtime: &Runtime,
    matrix: &crate::matrix::Matrix,
    dir: Option<&Path>,
) -> Result<Vec<crate::registry::LoadedPlugin>> {
    let mut plugins = crate::registry::load_builtin_with(runtime, matrix)?;
    if let Some(dir) = dir {
        let dirs: Vec<std::path::PathBuf> = if dir.join("plugin.toml").exists() {
            vec![dir.to_path_buf()]
        } else {
            let mut d: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("plugin.toml").exists())
                .collect();
            d.sort();
            d
        };
        if dirs.is_empty() {
            bail!(
                "{}: no plugin directories (with plugin.toml) in it",
                dir.display()
            );
        }
        for d in dirs {
            let p = crate::registry::load_path(runtime, &d)?.with_matrix(matrix);
            plugins.retain(|b| b.manifest.name != p.manifest.name);
            plugins.push(p);
        }
    }
    Ok(plugins)
}
