//! The escalation matrix: scenario (category) → tier → response target →
//! team. Operator data in one file (`plugins/matrix.toml` is the default);
//! the pipeline takes its response targets from it, and plugins whose
//! manifest says `uses = ["matrix"]` get it in their configuration.

use crate::model::Tier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The default matrix, built in.
pub const DEFAULT: &str = include_str!("../../plugins/matrix.toml");

/// Response targets per tier, in ms, as the pipeline uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseTargets {
    /// Critical.
    pub critical: Option<u64>,
    /// High.
    pub high: Option<u64>,
    /// Medium.
    pub medium: Option<u64>,
    /// Low.
    pub low: Option<u64>,
}

impl Default for ResponseTargets {
    /// The built-in matrix's targets.
    fn default() -> Self {
        Matrix::default_matrix().response_targets()
    }
}

impl ResponseTargets {
    /// The target for `tier`.
    pub fn get(&self, tier: Tier) -> Option<u64> {
        match tier {
            Tier::Critical => self.critical,
            Tier::High => self.high,
            Tier::Medium => self.medium,
            Tier::Low => self.low,
        }
    }
}

/// One tier's targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierTargets {
    /// A human must respond within this many minutes.
    pub response_minutes: Option<u64>,
    /// Alert this many minutes after the escalation, before the target.
    pub alert_minutes: Option<u64>,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// What it is, for people.
    pub name: String,
    /// Ticket categories that belong to it (case-insensitive).
    pub categories: Vec<String>,
    /// Its tier.
    pub tier: Tier,
    /// The team that owns it.
    pub team: String,
}

/// The whole matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Matrix {
    /// Targets per tier (`critical`, `high`, `medium`, `low`).
    #[serde(default)]
    pub tiers: BTreeMap<Tier, TierTargets>,
    /// The scenarios.
    #[serde(default)]
    pub scenarios: Vec<Scenario>,
}

/// A matrix that cannot be used; the message names the file and what is
/// wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct MatrixError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl Matrix {
    /// Parse and check matrix text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Matrix, MatrixError> {
        let err = |message: String| MatrixError {
            path: path.to_path_buf(),
            message,
        };
        let m: Matrix =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        for (tier, t) in &m.tiers {
            if let (Some(alert), Some(response)) = (t.alert_minutes, t.response_minutes)
                && alert >= response
            {
                return Err(err(format!(
                    "tiers.{}: alert-minutes = {alert} must come before response-minutes = {response}",
                    tier_name(*tier)
                )));
            }
            if t.response_minutes == Some(0) {
                return Err(err(format!(
                    "tiers.{}: response-minutes must be above 0",
                    tier_name(*tier)
                )));
            }
        }
        let mut owner: BTreeMap<String, &str> = BTreeMap::new();
        for s in &m.scenarios {
            if s.name.trim().is_empty() || s.team.trim().is_empty() {
                return Err(err("every scenario needs a name and a team".into()));
            }
            if s.categories.is_empty() {
                return Err(err(format!("scenario {:?} has no categories", s.name)));
            }
            for c in &s.categories {
                if let Some(other) = owner.insert(c.to_lowercase(), &s.name) {
                    return Err(err(format!(
                        "category {c:?} is in two scenarios: {other:?} and {:?}",
                        s.name
                    )));
                }
            }
        }
        Ok(m)
    }

    /// Read and check a matrix file.
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|e| MatrixError {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Matrix::parse(&text, path)
    }

    /// The built-in default matrix.
    pub fn default_matrix() -> Matrix {
        Matrix::parse(DEFAULT, Path::new("plugins/matrix.toml"))
            .expect("the built-in matrix is valid (tested)")
    }

    /// Response targets per tier, for the pipeline.
    pub fn response_targets(&self) -> ResponseTargets {
        let get = |t| {
            self.tiers
                .get(&t)
                .and_then(|x| x.response_minutes)
                .map(|m| m * 60_000)
        };
        ResponseTargets {
            critical: get(Tier::Critical),
            high: get(Tier::High),
            medium: get(Tier::Medium),
            low: get(Tier::Low),
        }
    }

    /// The scenario a category belongs to.
    pub fn scenario(&self, category: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| {
            s.categories
                .iter()
                .any(|c| c.eq_ignore_ascii_case(category))
        })
    }

    /// The matrix as JSON, as plugins get it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The matrix as a table anyone can read.
    pub fn table(&self) -> String {
        let minutes = |m: Option<u64>| m.map_or_else(|| "—".to_string(), human_minutes);
        let mut out = String::new();
        let rows: Vec<[String; 5]> = self
            .scenarios
            .iter()
            .map(|s| {
                let target = self.tiers.get(&s.tier).and_then(|t| t.response_minutes);
                let target = if target.is_none() && s.tier == Tier::Low {
                    "stays with AI".into()
                } else {
                    minutes(target)
                };
                [
                    s.name.clone(),
                    s.categories.join(", "),
                    tier_name(s.tier).into(),
                    target,
                    s.team.clone(),
                ]
            })
            .collect();
        let header = ["SCENARIO", "CATEGORIES", "TIER", "RESPOND WITHIN", "TEAM"].map(String::from);
        let widths: Vec<usize> = (0..5)
            .map(|i| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in [&header].into_iter().chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "TIER      RESPOND WITHIN  ALERT AFTER");
        for tier in [Tier::Critical, Tier::High, Tier::Medium, Tier::Low] {
            let t = self.tiers.get(&tier).cloned().unwrap_or_default();
            let respond = if t.response_minutes.is_none() {
                "stays with AI".to_string()
            } else {
                minutes(t.response_minutes)
            };
            let _ = writeln!(
                out,
                "{:<9} {:<15} {}",
                tier_name(tier),
                respond,
                minutes(t.alert_minutes)
            );
        }
        out
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Low => "low",
        Tier::Medium => "medium",
        Tier::High => "high",
        Tier::Critical => "critical",
    }
}

fn human_minutes(m: u64) -> String {
    match (m / 60, m % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, String> {
        Matrix::parse(text, Path::new("matrix.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_matrix_is_valid_and_gives_the_playbook_targets() {
        let m = Matrix::default_matrix();
        let t = m.response_targets();
        assert_eq!(
            (t.critical, t.high, t.medium, t.low),
            (Some(1_800_000), Some(14_400_000), Some(43_200_000), None)
        );
        assert_eq!(
            m.scenario("Billing").map(|s| s.team.as_str()),
            Some("billing")
        );
        assert!(m.scenario("unknown").is_none());
    }

    #[test]
    fn the_table_reads_like_the_file() {
        let table = Matrix::default_matrix().table();
        assert!(table.contains("Billing dispute or refund"), "{table}");
        let billing = table
            .lines()
            .find(|l| l.starts_with("Billing dispute"))
            .unwrap();
        assert!(
            billing.contains("high") && billing.contains("4h") && billing.ends_with("billing"),
            "{billing}"
        );
        assert!(table.contains("critical  30m             15m"), "{table}");
        assert!(table.contains("low       stays with AI"), "{table}");
    }

    #[test]
    fn a_category_in_two_scenarios_is_refused_naming_both() {
        let e = parse(
            r#"
            [[scenarios]]
            name = "A"
            categories = ["billing"]
            tier = "high"
            team = "x"
            [[scenarios]]
            name = "B"
            categories = ["Billing"]
            tier = "low"
            team = "y"
            "#,
        )
        .unwrap_err();
        assert!(
            e.contains("\"Billing\" is in two scenarios: \"A\" and \"B\""),
            "{e}"
        );
    }

    #[test]
    fn an_alert_after_the_target_is_refused() {
        let e = parse("[tiers.critical]\nresponse-minutes = 30\nalert-minutes = 45\n").unwrap_err();
        assert!(
            e.starts_with("matrix.toml: tiers.critical: alert-minutes = 45"),
            "{e}"
        );
    }

    #[test]
    fn typos_and_unknown_tiers_name_the_key() {
        assert!(
            parse("[tiers.urgent]\nresponse-minutes = 5\n")
                .unwrap_err()
                .contains("urgent")
        );
        assert!(
            parse("[tiers.high]\nrespond-minutes = 5\n")
                .unwrap_err()
                .contains("respond-minutes")
        );
    }
}
