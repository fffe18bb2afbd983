//! The escalation matrix as plugins receive it: scenario (category) → tier
//! → response target → team. A plugin whose manifest says
//! `uses = ["matrix"]` finds it under `matrix` in its configuration; put a
//! `matrix: Matrix` field in the config struct to read it.

use crate::{Ticket, Tier};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Deserialize;

/// One tier's targets, in minutes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierTargets {
    /// A human must respond within this many minutes.
    pub response_minutes: Option<u64>,
    /// Alert this many minutes after the escalation, before the target.
    pub alert_minutes: Option<u64>,
}

/// One scenario of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// What it is, for people.
    pub name: String,
    /// The ticket categories that belong to it (case-insensitive).
    pub categories: Vec<String>,
    /// Its tier.
    pub tier: Tier,
    /// The team that owns it.
    pub team: String,
}

/// The whole matrix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Matrix {
    /// Targets per tier name (`critical`, `high`, `medium`, `low`).
    pub tiers: BTreeMap<String, TierTargets>,
    /// The scenarios.
    pub scenarios: Vec<Scenario>,
}

impl Matrix {
    /// The scenario of `category`, if one lists it.
    pub fn scenario(&self, category: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| {
            s.categories
                .iter()
                .any(|c| c.eq_ignore_ascii_case(category))
        })
    }

    /// The ticket's scenario, by its category or else the AI's.
    pub fn scenario_of(&self, ticket: &Ticket) -> Option<&Scenario> {
        self.scenario(category_of(ticket)?)
    }

    /// The targets of `tier` (empty when the matrix has none).
    pub fn targets(&self, tier: Tier) -> TierTargets {
        self.tiers.get(tier.as_str()).cloned().unwrap_or_default()
    }
}

/// The ticket's category, or the AI's when the help desk sent none.
pub fn category_of(ticket: &Ticket) -> Option<&str> {
    ticket.category.as_deref().or(ticket
        .ai_analysis
        .as_ref()
        .and_then(|a| a.category.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn scenarios_match_the_category_or_the_ais_case_insensitively() {
        let m: Matrix = crate::parse_config(
            r#"{"tiers": {"high": {"response-minutes": 240}},
                "scenarios": [{"name": "Billing", "categories": ["billing"], "tier": "high", "team": "money"}]}"#,
        )
        .unwrap();
        let mut t = Ticket {
            category: Some("BILLING".into()),
            ..testing::ticket()
        };
        assert_eq!(m.scenario_of(&t).map(|s| s.team.as_str()), Some("money"));
        t.category = None;
        assert_eq!(m.scenario_of(&t), None);
        assert_eq!(m.targets(Tier::High).response_minutes, Some(240));
        assert_eq!(m.targets(Tier::Low), TierTargets::default());
    }
}
