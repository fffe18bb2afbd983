//! Trigger: the escalation matrix.
//!
//! The ticket's category (or the AI's, when the help desk sent none) picks
//! its scenario; the ticket escalates to the scenario's tier, to the
//! scenario's team, with the tier's response target in the reason. Low-tier
//! scenarios stay with the AI agent: no signal.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::matrix::{Matrix, category_of};
use escalator_guest::prelude::*;

/// The plugin's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The escalation matrix (the manifest says `uses = ["matrix"]`).
    pub matrix: Matrix,
}

/// The plugin.
pub struct ScenarioTrigger;

impl Trigger for ScenarioTrigger {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let m = &ctx.config.matrix;
        let Some(category) = category_of(ticket) else {
            return Ok(Evaluation::none());
        };
        let Some(s) = m.scenario(category) else {
            return Ok(Evaluation::none());
        };
        if s.tier == Tier::Low {
            return Ok(Evaluation::none());
        }
        let target = m.targets(s.tier).response_minutes;
        let within = target
            .map(|min| {
                format!(
                    ", respond within {}",
                    time::human_duration(min as i64 * 60_000)
                )
            })
            .unwrap_or_default();
        let signal = Signal::escalate(
            s.tier,
            format!("scenario:{}", category.to_lowercase()),
            format!(
                "{}: {} tier, team {}{within}",
                s.name,
                s.tier.as_str(),
                s.team
            ),
        )
        .with_evidence(format!("category: {category}"))
        .with_skill(category.to_lowercase())
        .with_queue(&s.team);
        Ok(Evaluation {
            signals: vec![signal],
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(ScenarioTrigger);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn config() -> Config {
        escalator_guest::parse_config(
            r#"{"matrix": {
                "tiers": {"high": {"response-minutes": 240}, "low": {}},
                "scenarios": [
                    {"name": "Billing dispute", "categories": ["billing", "refund"], "tier": "high", "team": "billing"},
                    {"name": "How-to", "categories": ["account"], "tier": "low", "team": "support"}
                ]}}"#,
        )
        .unwrap()
    }

    fn run(t: &Ticket) -> Vec<Signal> {
        ScenarioTrigger::evaluate(t, &Ctx::new(0, EventKind::TicketCreated, config()))
            .unwrap()
            .signals
    }

    #[test]
    fn a_billing_ticket_gets_the_billing_scenarios_tier_team_and_target() {
        let s = run(&Ticket {
            category: Some("Refund".into()),
            ..testing::ticket()
        });
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].tier, s[0].key.as_str()),
            (Tier::High, "scenario:refund")
        );
        assert_eq!(
            s[0].reason,
            "Billing dispute: high tier, team billing, respond within 4h"
        );
        assert_eq!(s[0].target_queue.as_deref(), Some("billing"));
    }

    #[test]
    fn the_ais_category_is_used_when_the_help_desk_sent_none() {
        let ai = escalator_guest::AiAnalysis {
            confidence: 0.9,
            intent: None,
            category: Some("billing".into()),
            reasoning: String::new(),
            solutions_tried: vec![],
            analyzed_at: 0,
        };
        assert_eq!(
            run(&Ticket {
                ai_analysis: Some(ai),
                ..testing::ticket()
            })
            .len(),
            1
        );
    }

    #[test]
    fn low_tier_and_unknown_scenarios_stay_with_the_ai() {
        assert!(
            run(&Ticket {
                category: Some("account".into()),
                ..testing::ticket()
            })
            .is_empty()
        );
        assert!(
            run(&Ticket {
                category: Some("shipping".into()),
                ..testing::ticket()
            })
            .is_empty()
        );
        assert!(run(&testing::ticket()).is_empty());
    }
}
