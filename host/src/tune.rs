//! `escalator tune`: search a plugin set's numeric settings by replaying
//! labelled history, and write the chosen setting as plugin directories.
//!
//! The settings to vary are paths into plugins' `[config]`
//! (`sla.targets.critical.resolution`), each with the values to try. The
//! search is coordinate-wise: from the current values, each setting in
//! turn takes the value that scores best with the others held, for a few
//! rounds or until nothing changes; every setting tried is remembered, so
//! none is replayed twice. Each try replays the earlier part of the
//! history through the server's own decider on all cores
//! ([`crate::replay::replay_batch`]); ties keep the current value, so the
//! search is deterministic. The chosen setting and the one it started from
//! are then reported on the later part, which the search never saw.

use crate::pipeline::PluginSet;
use crate::registry::LoadedPlugin;
use crate::replay::{Aggregate, Case, Offline, Report, replay_batch};
use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;

/// One setting to vary: a plugin, a path in its config, the values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knob {
    /// The plugin's name.
    pub plugin: String,
    /// The path in its `[config]`, dot-separated.
    pub path: Vec<String>,
    /// The values to try.
    pub values: Vec<f64>,
}

impl Knob {
    /// Parse `PLUGIN.PATH=V1,V2,...`.
    pub fn parse(s: &str) -> Result<Knob> {
        let (name, values) = s
            .split_once('=')
            .context("--vary takes PLUGIN.CONFIG.PATH=V1,V2,...")?;
        let mut parts = name.split('.').map(str::to_string);
        let plugin = parts.next().unwrap_or_default();
        let path: Vec<String> = parts.collect();
        if plugin.is_empty() || path.is_empty() || path.iter().any(String::is_empty) {
            bail!(
                "--vary {s}: name a plugin and a path in its config, e.g. sla.targets.high.resolution=..."
            );
        }
        let values = values
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("--vary {s}: {v:?} is not a number"))
            })
            .collect::<Result<Vec<_>>>()?;
        if values.is_empty() || values.len() > 50 {
            bail!("--vary {s}: give 1 to 50 values");
        }
        Ok(Knob {
            plugin,
            path,
            values,
        })
    }

    /// The dotted name.
    pub fn name(&self) -> String {
        format!("{}.{}", self.plugin, self.path.join("."))
    }
}

/// What the search maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Share of labelled tickets put in their expected tier.
    Agreement,
    /// Share of tickets with a known SLA outcome whose breach the sla
    /// trigger flagged exactly when it happened (ServiceNow's `made_sla`).
    Sla,
    /// Recall of the urgent tiers (critical and high), then precision.
    UrgentRecall,
}

/// How a setting did on some tickets.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    /// The objective's value.
    pub objective: f64,
    /// Tickets replayed.
    pub tickets: usize,
    /// Labelled agreement.
    pub agreement: Option<f64>,
    /// Recall of critical and high together (a ticket labelled either,
    /// decided either).
    pub urgent_recall: Option<f64>,
    /// Precision of critical and high decisions.
    pub urgent_precision: Option<f64>,
    /// Share escalated.
    pub escalation_rate: f64,
    /// Share of tickets with a known SLA outcome flagged exactly when they
    /// breached.
    pub sla_agreement: Option<f64>,
}

fn score(report: &Report, objective: Objective) -> Score {
    let urgent = ["critical", "high"];
    let cell = |e: &str, p: &str| {
        report
            .confusion
            .get(e)
            .and_then(|r| r.get(p))
            .copied()
            .unwrap_or(0)
    };
    let hits: usize = urgent
        .iter()
        .flat_map(|e| urgent.iter().map(move |p| (e, p)))
        .map(|(e, p)| cell(e, p))
        .sum();
    let labelled_urgent: usize = urgent
        .iter()
        .map(|e| report.confusion.get(*e).map_or(0, |r| r.values().sum()))
        .sum();
    let decided_urgent: usize = report
        .confusion
        .values()
        .map(|r| {
            urgent
                .iter()
                .map(|p| r.get(*p).copied().unwrap_or(0))
                .sum::<usize>()
        })
        .sum();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let sla_agreement = report
        .sla
        .as_ref()
        .and_then(|s| s.get("agreement").copied());
    let urgent_recall = ratio(hits, labelled_urgent);
    let urgent_precision = ratio(hits, decided_urgent);
    let objective_value = match objective {
        Objective::Agreement => report.agreement.unwrap_or(0.0),
        Objective::Sla => sla_agreement.unwrap_or(0.0),
        // Recall first; precision breaks ties (scaled below one step of
        // recall on any real history).
        Objective::UrgentRecall => {
            urgent_recall.unwrap_or(0.0) + 1e-6 * urgent_precision.unwrap_or(0.0)
        }
    };
    Score {
        objective: objective_value,
        tickets: report.tickets,
        agreement: report.agreement,
        urgent_recall,
        urgent_precision,
        escalation_rate: report.escalation_rate,
        sla_agreement,
    }
}

/// Set `path` in a config (JSON) to `value`, creating tables on the way;
/// a whole number is written as an integer.
pub fn set_path(config: &mut serde_json::Value, path: &[String], value: f64) -> Result<()> {
    let mut at = config;
    for (i, key) in path.iter().enumerate() {
        if !at.is_object() {
            if at.is_null() {
                *at = serde_json::json!({});
            } else {
                bail!("{} is not a table", path[..i].join("."));
            }
        }
        let map = at.as_object_mut().context("a table")?;
        if i + 1 == path.len() {
            let v = if value.fract() == 0.0 && value.abs() < 9e15 {
                serde_json::json!(value as i64)
            } else {
                serde_json::json!(value)
            };
            map.insert(key.clone(), v);
            return Ok(());
        }
        at = map.entry(key.clone()).or_insert(serde_json::Value::Null);
    }
    Ok(())
}

/// The current value at `path`, if it is a number.
pub fn get_path(config: &serde_json::Value, path: &[String]) -> Option<f64> {
    path.iter()
        .try_fold(config, |v, k| v.get(k))
        .and_then(serde_json::Value::as_f64)
}

/// A plugin set with the knobs at `choice` (an index into each knob's
/// values).
fn with_choice(base: &[LoadedPlugin], knobs: &[Knob], choice: &[usize]) -> Result<PluginSet> {
    let mut plugins = base.to_vec();
    for (k, &i) in knobs.iter().zip(choice) {
        let p = plugins
            .iter_mut()
            .find(|p| p.manifest.name == k.plugin)
            .with_context(|| format!("--vary {}: no plugin named {}", k.name(), k.plugin))?;
        let mut config: serde_json::Value = serde_json::from_str(&p.config_json)?;
        set_path(&mut config, &k.path, k.values[i])?;
        p.config_json = config.to_string().into();
    }
    PluginSet::new(plugins).map_err(anyhow::Error::msg)
}

/// One setting tried: the knobs' values and how it scored on the earlier
/// part.
#[derive(Debug, Clone, Serialize)]
pub struct Tried {
    /// Each knob's value.
    pub values: BTreeMap<String, f64>,
    /// On the earlier part.
    pub score: Score,
    /// With labels: no other setting tried has both higher urgent recall
    /// and higher precision.
    pub on_frontier: bool,
}

/// What the search found.
#[derive(Debug, Clone, Serialize)]
pub struct Tuned {
    /// The knobs' values chosen.
    pub chosen: BTreeMap<String, f64>,
    /// The values the search started from.
    pub started_from: BTreeMap<String, f64>,
    /// The objective.
    pub objective: Objective,
    /// Every setting tried, best first.
    pub tried: Vec<Tried>,
    /// The chosen setting on the later part.
    pub held_out: Score,
    /// The starting setting on the later part.
    pub held_out_before: Score,
    /// The chosen index of each knob's value.
    #[serde(skip)]
    pub choice: Vec<usize>,
}

/// Replay `cases` with `set` and score them.
pub fn evaluate(offline: &Offline<'_>, cases: &[Case], objective: Objective) -> Score {
    let mut agg = Aggregate::default();
    for chunk in cases.chunks(512) {
        agg.add(&replay_batch(offline, chunk));
    }
    score(&agg.report(0.0), objective)
}

/// Search the knobs on `fit_part`, report on `report_part`; `progress` is
/// told after each replay (settings tried so far).
#[allow(
    clippy::too_many_arguments,
    reason = "the search's inputs, each used once"
)]
pub fn tune(
    base: &[LoadedPlugin],
    knobs: &[Knob],
    offline: &dyn Fn(&PluginSet, &[Case], Objective) -> Score,
    fit_part: &[Case],
    report_part: &[Case],
    objective: Objective,
    rounds: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Tuned> {
    if knobs.is_empty() {
        bail!("nothing to tune: give --vary PLUGIN.CONFIG.PATH=V1,V2,...");
    }
    // Start where the plugins are (the nearest value offered), or at the
    // first value offered.
    let mut start = Vec::new();
    for k in knobs {
        let p = base
            .iter()
            .find(|p| p.manifest.name == k.plugin)
            .with_context(|| format!("--vary {}: no plugin named {}", k.name(), k.plugin))?;
        let config: serde_json::Value = serde_json::from_str(&p.config_json)?;
        let i = get_path(&config, &k.path).map_or(0, |now| {
            (0..k.values.len())
                .min_by(|a, b| {
                    (k.values[*a] - now)
                        .abs()
                        .total_cmp(&(k.values[*b] - now).abs())
                })
                .unwrap_or(0)
        });
        start.push(i);
    }
    let mut seen: BTreeMap<Vec<usize>, Score> = BTreeMap::new();
    let mut eval = |choice: &[usize], seen: &mut BTreeMap<Vec<usize>, Score>| -> Result<Score> {
        if let Some(s) = seen.get(choice) {
            return Ok(s.clone());
        }
        let set = with_choice(base, knobs, choice)?;
        let s = offline(&set, fit_part, objective);
        seen.insert(choice.to_vec(), s.clone());
        progress(seen.len());
        Ok(s)
    };
    let mut best = start.clone();
    let mut best_score = eval(&best, &mut seen)?;
    for _ in 0..rounds.max(1) {
        let mut moved = false;
        for k in 0..knobs.len() {
            for i in 0..knobs[k].values.len() {
                if i == best[k] {
                    continue;
                }
                let mut c = best.clone();
                c[k] = i;
                let s = eval(&c, &mut seen)?;
                if s.objective > best_score.objective {
                    best = c;
                    best_score = s;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let values_of = |choice: &[usize]| -> BTreeMap<String, f64> {
        knobs
            .iter()
            .zip(choice)
            .map(|(k, &i)| (k.name(), k.values[i]))
            .collect()
    };
    let all: Vec<(Vec<usize>, Score)> = seen.into_iter().collect();
    let mut tried: Vec<Tried> =
        all.iter()
            .map(|(c, s)| Tried {
                values: values_of(c),
                score: s.clone(),
                on_frontier: s.urgent_recall.is_some() && !all.iter().any(|(_, o)| {
                    matches!(
                        (o.urgent_recall, o.urgent_precision, s.urgent_recall, s.urgent_precision),
                        (Some(or), Some(op), Some(sr), Some(sp)) if or > sr && op > sp
                    )
                }),
            })
            .collect();
    tried.sort_by(|a, b| b.score.objective.total_cmp(&a.score.objective));
    let held_out = offline(&with_choice(base, knobs, &best)?, report_part, objective);
    // Unmoved: the start is the choice, already replayed there.
    let held_out_before = if best == start {
        held_out.clone()
    } else {
        offline(&with_choice(base, knobs, &start)?, report_part, objective)
    };
    Ok(Tuned {
        chosen: values_of(&best),
        started_from: values_of(&start),
        objective,
        tried,
        held_out,
        held_out_before,
        choice: best,
    })
}

/// Write each tuned plugin's directory under `out`: its manifest with the
/// chosen values in `[config]` (and the built-in component named, when it
/// is one).
pub fn write_plugins(
    out: &std::path::Path,
    base: &[LoadedPlugin],
    manifests: &dyn Fn(&LoadedPlugin) -> Result<String>,
    knobs: &[Knob],
    tuned: &Tuned,
) -> Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let mut names: Vec<&str> = knobs.iter().map(|k| k.plugin.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let p = base
            .iter()
            .find(|p| p.manifest.name == name)
            .with_context(|| format!("no plugin named {name}"))?;
        let text = manifests(p)?;
        let mut doc: toml::Table =
            toml::from_str(&text).context("reading the plugin's manifest")?;
        let mut config = serde_json::to_value(
            doc.get("config")
                .cloned()
                .unwrap_or(toml::Value::Table(Default::default())),
        )?;
        for (k, &i) in knobs.iter().zip(&tuned.choice) {
            if k.plugin == name {
                set_path(&mut config, &k.path, k.values[i])?;
            }
        }
        doc.insert("config".into(), toml::Value::try_from(config)?);
        if let Some(b) = p.source.strip_prefix("builtin:")
            && !doc.contains_key("component")
        {
            doc.insert(
                "component".into(),
                toml::Value::String(format!("builtin:{b}")),
            );
        }
        if let Some(toml::Value::String(v)) = doc.get_mut("version")
            && !v.contains('-')
        {
            v.push_str("-tuned");
        }
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let chosen: Vec<String> = tuned
            .chosen
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}.")))
            .map(|(k, v)| format!("# {k} = {v}"))
            .collect();
        std::fs::write(
            dir.join("plugin.toml"),
            format!(
                "# Written by `escalator tune` ({:?} on the earlier history):\n{}\n{}",
                tuned.objective,
                chosen.join("\n"),
                toml::to_string(&doc)?
            ),
        )?;
        written.push(dir);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knob_names_a_plugin_a_config_path_and_numbers() {
        let k = Knob::parse("sla.targets.high.resolution=960, 1440,2880").unwrap();
        assert_eq!(k.plugin, "sla");
        assert_eq!(k.path, ["targets", "high", "resolution"]);
        assert_eq!(k.values, [960.0, 1440.0, 2880.0]);
        assert_eq!(k.name(), "sla.targets.high.resolution");
        for bad in [
            "sla=1",
            "sla.targets.high=x",
            "sla..x=1",
            "nothing",
            "sla.x=",
            "sla.x=inf",
        ] {
            assert!(Knob::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_is_set_creating_its_tables_and_read_back() {
        let mut c =
            serde_json::json!({"targets": {"high": {"resolution": 2880}}, "warn-at": [0.5]});
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(get_path(&c, &path("targets.high.resolution")), Some(2880.0));
        set_path(&mut c, &path("targets.high.resolution"), 960.0).unwrap();
        set_path(&mut c, &path("targets.low.resolution"), 0.5).unwrap();
        assert_eq!(
            c["targets"]["high"]["resolution"], 960,
            "a whole number stays an integer"
        );
        assert_eq!(c["targets"]["low"]["resolution"], 0.5);
        assert!(
            set_path(&mut c, &path("warn-at.x"), 1.0).is_err(),
            "not a table"
        );
    }
}
