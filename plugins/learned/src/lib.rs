//! Trigger: a text classifier fitted on the operator's own labelled history.
//!
//! `escalator learn` fits a linear model (hashed words, word pairs and
//! fields; see [`escalator_guest::classify`]) and writes its weights into
//! [`IMAGE`] in a copy of this component, so the weights are part of the
//! component's data: a fresh instance maps them copy-on-write and reads
//! them where they lie, with nothing to parse per call. The tier it
//! decides becomes a signal whose reason gives its urgency against the
//! threshold and the class head's probabilities, and whose evidence is the
//! words that weighed most in the head that decided; a ticket it puts in `none`
//! gets no signal. This crate has no `plugin.toml`: it is not a default
//! plugin, only the component `escalator learn` starts from.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::classify::{self, LABELS, Model, Which};
use escalator_guest::prelude::*;

/// The model image `escalator learn` fills in; blank in the built
/// component (which then refuses to evaluate).
pub static IMAGE: [u8; classify::MODEL_CAPACITY] = classify::blank();

/// The plugin's configuration (`[config]` in `plugin.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Decide critical or high when the urgency head's probabilities of
    /// the two together reach this; absent: the threshold `escalator
    /// learn` chose.
    pub urgent_threshold: Option<f32>,
    /// At most this many words as evidence.
    pub max_evidence: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urgent_threshold: None,
            max_evidence: 5,
        }
    }
}

/// The plugin.
pub struct Learned;

fn tier_of(class: usize) -> Option<Tier> {
    match class {
        0 => Some(Tier::Critical),
        1 => Some(Tier::High),
        2 => Some(Tier::Medium),
        _ => None,
    }
}

/// The model's decision on a ticket.
pub fn evaluate_with(model: &Model<'_>, ticket: &Ticket, config: &Config) -> Evaluation {
    let inputs = classify::inputs(
        &ticket.subject,
        ticket.category.as_deref(),
        ticket.customer.as_ref().map(|c| c.plan.as_str()),
        ticket
            .messages
            .iter()
            .filter(|m| m.author == AuthorKind::Customer)
            .map(|m| m.body.as_str()),
    );
    let features = classify::features(&inputs, true);
    let scores = model.scores(&features);
    let threshold = config.urgent_threshold.unwrap_or(model.urgent_threshold);
    let class = model.decide(&scores, threshold);
    let Some(tier) = tier_of(class) else {
        return Evaluation {
            signals: Vec::new(),
            wake_at: None,
        };
    };
    let p = &scores.class;
    let urgency = scores.urgent();
    let (why, head) = if class <= 1 {
        (
            format!(
                "its urgency {urgency:.2} reaches the threshold {threshold:.2}; critical {:.2}, high {:.2}",
                p[0], p[1]
            ),
            Which::Urgency,
        )
    } else {
        (
            format!(
                "its urgency {urgency:.2} is below the threshold {threshold:.2}; medium {:.2}, none {:.2}",
                p[2], p[3]
            ),
            Which::Class,
        )
    };
    let mut signal = Signal::escalate(
        tier,
        format!("learned:{}", LABELS[class]),
        format!(
            "the model learned from {} past tickets puts it at {}: {why}",
            model.fitted_on, LABELS[class]
        ),
    );
    signal.evidence = model
        .evidence(&features, head, class, config.max_evidence)
        .into_iter()
        .map(|w| format!("\"{w}\""))
        .collect();
    Evaluation {
        signals: vec![signal],
        wake_at: None,
    }
}

impl Trigger for Learned {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        // Through black_box: the compiler must not fold reads of the blank
        // image it was built with; `escalator learn` changes these bytes.
        let image: &[u8] = core::hint::black_box(&IMAGE);
        match Model::read(image) {
            Ok(Some(model)) => Ok(evaluate_with(&model, ticket, &ctx.config)),
            Ok(None) => Err(
                "this component holds no model: `escalator learn` writes one into a copy of it"
                    .into(),
            ),
            Err(e) => Err(e.into()),
        }
    }
}

escalator_guest::export_trigger!(Learned);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    /// A model that calls "data loss" critical and "typo" none (and knows no
    /// other word).
    fn image() -> Vec<u8> {
        classify::hand_made(
            &[("data loss", 0, 3.0), ("typo", 3, 3.0)],
            [0.0, 0.0, 1.0, 0.5],
            12,
        )
    }

    fn ticket(body: &str) -> Ticket {
        Ticket {
            subject: "Bug".into(),
            ..testing::customer_ticket(&[body])
        }
    }

    #[test]
    fn the_built_component_holds_no_model_and_says_so() {
        let ctx = Ctx::new(0, EventKind::TicketCreated, Config::default());
        let e = Learned::evaluate(&ticket("data loss"), &ctx).unwrap_err();
        assert!(e.contains("escalator learn"), "{e}");
    }

    #[test]
    fn the_decided_tier_is_a_signal_with_the_heaviest_words_as_evidence() {
        let image = image();
        let model = Model::read(&image).unwrap().unwrap();
        let out = evaluate_with(
            &model,
            &ticket("After the upgrade we see data loss on two nodes"),
            &Config::default(),
        );
        assert_eq!(out.signals.len(), 1);
        let s = &out.signals[0];
        assert_eq!(
            (s.tier, s.key.as_str()),
            (Tier::Critical, "learned:critical")
        );
        assert!(s.reason.contains("12 past tickets"), "{}", s.reason);
        assert_eq!(s.evidence, ["\"data\"", "\"loss\""]);
        let typo = evaluate_with(&model, &ticket("a typo in the docs"), &Config::default());
        assert!(typo.signals.is_empty(), "none: stays with the AI");
        let plain = evaluate_with(&model, &ticket("the build is slow"), &Config::default());
        assert_eq!(plain.signals[0].tier, Tier::Medium);
    }

    #[test]
    fn the_threshold_in_the_config_overrides_the_models() {
        let image = image();
        let model = Model::read(&image).unwrap().unwrap();
        let strict = Config {
            urgent_threshold: Some(0.999),
            ..Config::default()
        };
        let out = evaluate_with(&model, &ticket("data loss on two nodes"), &strict);
        let usual = evaluate_with(
            &model,
            &ticket("data loss on two nodes"),
            &Config::default(),
        );
        assert_eq!(usual.signals[0].tier, Tier::Critical);
        assert_eq!(out.signals[0].tier, Tier::Medium);
    }
}
