//! Trigger: the AI agent's confidence.
//!
//! When the AI's confidence in its own answer is below the threshold of the
//! ticket's category, the ticket goes to a human with the AI's reasoning and
//! the solutions it already tried as evidence, so nobody asks the customer
//! to repeat them.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Threshold for categories not in `thresholds`.
    pub default_threshold: f32,
    /// Tier for categories not in `tiers`.
    pub default_tier: Tier,
    /// Thresholds per category (lowercase).
    pub thresholds: BTreeMap<String, f32>,
    /// Tiers per category (lowercase).
    pub tiers: BTreeMap<String, Tier>,
}

impl Default for Config {
    fn default() -> Self {
        let thresholds = [
            ("billing", 0.70),
            ("legal", 0.90),
            ("compliance", 0.90),
            ("technical", 0.50),
        ];
        Config {
            default_threshold: 0.60,
            default_tier: Tier::Medium,
            thresholds: thresholds
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            tiers: [("legal", Tier::High), ("compliance", Tier::High)]
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
        }
    }
}

/// The plugin.
pub struct AiConfidence;

impl Trigger for AiConfidence {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let c = &ctx.config;
        let Some(ai) = &ticket.ai_analysis else {
            return Ok(Evaluation::none());
        };
        let category = ai
            .category
            .as_ref()
            .or(ticket.category.as_ref())
            .map(|s| s.to_lowercase());
        let key = category.as_deref().unwrap_or("uncategorised");
        let threshold = category
            .as_ref()
            .and_then(|k| c.thresholds.get(k))
            .copied()
            .unwrap_or(c.default_threshold);
        if !(0.0..=1.0).contains(&ai.confidence) {
            return Err(format!("AI confidence {} is outside 0..1", ai.confidence));
        }
        if ai.confidence >= threshold {
            return Ok(Evaluation::none());
        }
        let tier = category
            .as_ref()
            .and_then(|k| c.tiers.get(k))
            .copied()
            .unwrap_or(c.default_tier);
        let pct = |x: f32| (x * 100.0 + 0.5) as u32;
        let mut signal = Signal::escalate(
            tier,
            format!("ai-confidence:{key}"),
            format!(
                "AI confidence {}% is below the {}% required for {key}",
                pct(ai.confidence),
                pct(threshold)
            ),
        );
        if !ai.reasoning.is_empty() {
            signal = signal.with_evidence(format!("AI reasoning: {}", ai.reasoning));
        }
        if !ai.solutions_tried.is_empty() {
            signal =
                signal.with_evidence(format!("already tried: {}", ai.solutions_tried.join("; ")));
        }
        if let Some(intent) = &ai.intent {
            signal = signal.with_evidence(format!("intent: {intent}"));
        }
        if let Some(category) = category {
            signal = signal.with_skill(category);
        }
        Ok(Evaluation {
            signals: vec![signal],
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(AiConfidence);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::AiAnalysis;
    use escalator_guest::testing;

    fn ticket(category: &str, confidence: f32) -> Ticket {
        Ticket {
            ai_analysis: Some(AiAnalysis {
                confidence,
                intent: Some("refund-request".into()),
                category: Some(category.into()),
                reasoning: "refunds over $10K need approval".into(),
                solutions_tried: vec!["explained timeline".into(), "asked for invoice".into()],
                analyzed_at: 0,
            }),
            ..testing::ticket()
        }
    }

    fn run(t: &Ticket) -> Vec<Signal> {
        AiConfidence::evaluate(t, &Ctx::new(0, EventKind::AiAnalysis, Config::default()))
            .unwrap()
            .signals
    }

    #[test]
    fn low_confidence_on_billing_hands_over_with_the_ais_reasoning() {
        let s = run(&ticket("Billing", 0.42));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].tier, s[0].key.as_str()),
            (Tier::Medium, "ai-confidence:billing")
        );
        assert_eq!(
            s[0].reason,
            "AI confidence 42% is below the 70% required for billing"
        );
        assert_eq!(
            s[0].evidence[0],
            "AI reasoning: refunds over $10K need approval"
        );
        assert_eq!(
            s[0].evidence[1],
            "already tried: explained timeline; asked for invoice"
        );
        assert_eq!(s[0].target_skill.as_deref(), Some("billing"));
    }

    #[test]
    fn each_category_has_its_own_threshold_and_tier() {
        assert!(run(&ticket("billing", 0.75)).is_empty());
        let legal = run(&ticket("legal", 0.85));
        assert_eq!(legal[0].tier, Tier::High);
        assert!(run(&ticket("technical", 0.55)).is_empty());
        // Unknown categories use the default threshold.
        assert_eq!(run(&ticket("shipping", 0.59)).len(), 1);
        assert!(run(&ticket("shipping", 0.60)).is_empty());
    }

    #[test]
    fn no_analysis_no_signal_and_nonsense_is_refused() {
        assert!(run(&testing::ticket()).is_empty());
        let err = AiConfidence::evaluate(
            &ticket("billing", 1.5),
            &Ctx::new(0, EventKind::AiAnalysis, Config::default()),
        );
        assert!(err.unwrap_err().contains("outside 0..1"));
    }
}
