//! Trigger: customer sentiment.
//!
//! Scores each customer message with VADER (compound, -1..1; the SDK's port
//! agrees with the reference implementation) and escalates when a message
//! is at or below the threshold, or when the conversation shifts from
//! neutral to negative.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;
use escalator_guest::text::excerpt;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// A message at or below this escalates.
    pub threshold: f64,
    /// The tier it escalates to.
    pub tier: Tier,
    /// A message above this counts as neutral or better.
    pub neutral_above: f64,
    /// A later message at or below this, after a neutral one, is a shift.
    pub shift_to: f64,
    /// The tier a shift escalates to.
    pub shift_tier: Tier,
    /// Trust a message's upstream `sentiment` when present.
    pub use_upstream: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: -0.6,
            tier: Tier::High,
            neutral_above: -0.05,
            shift_to: -0.3,
            shift_tier: Tier::Medium,
            use_upstream: false,
        }
    }
}

/// The plugin.
pub struct Sentiment;

impl Trigger for Sentiment {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let c = &ctx.config;
        if !(-1.0..=1.0).contains(&c.threshold) || !(-1.0..=1.0).contains(&c.shift_to) {
            return Err(format!(
                "threshold {} and shift-to {} must be within -1..1",
                c.threshold, c.shift_to
            ));
        }
        let scored: Vec<(&Message, f64)> = ticket
            .messages
            .iter()
            .filter(|m| m.author == AuthorKind::Customer)
            .map(|m| {
                let score = match (c.use_upstream, m.sentiment) {
                    (true, Some(s)) => f64::from(s),
                    _ => sentiment::compound(&m.body),
                };
                (m, score)
            })
            .collect();
        let quote = |m: &Message, score: f64| format!("{score:+.2}: \"{}\"", excerpt(&m.body, 160));
        let mut signals = Vec::new();

        if let Some(&(m, score)) = scored
            .iter()
            .filter(|(_, s)| *s <= c.threshold)
            .min_by(|a, b| a.1.total_cmp(&b.1))
        {
            signals.push(
                Signal::escalate(
                    c.tier,
                    "sentiment:negative",
                    format!(
                        "customer sentiment {score:+.2} is at or below {:+.2}",
                        c.threshold
                    ),
                )
                .with_evidence(quote(m, score)),
            );
        }
        // The first neutral message followed later by a negative one.
        let first_neutral = scored.iter().position(|(_, s)| *s > c.neutral_above);
        if let Some(i) = first_neutral
            && let Some(&(m, score)) = scored[i + 1..].iter().find(|(_, s)| *s <= c.shift_to)
        {
            let (before, before_score) = scored[i];
            signals.push(
                Signal::escalate(
                    c.shift_tier,
                    "sentiment:shift",
                    format!("customer turned negative: {before_score:+.2} then {score:+.2}"),
                )
                .with_evidence(quote(before, before_score))
                .with_evidence(quote(m, score)),
            );
        }
        Ok(Evaluation {
            signals,
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(Sentiment);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn ticket(bodies: &[&str]) -> Ticket {
        testing::customer_ticket(bodies)
    }

    fn run(t: &Ticket, config: Config) -> Vec<(String, Tier)> {
        Sentiment::evaluate(t, &Ctx::new(0, EventKind::MessageAdded, config))
            .unwrap()
            .signals
            .into_iter()
            .map(|s| (s.key, s.tier))
            .collect()
    }

    #[test]
    fn a_furious_message_escalates_with_its_score_as_evidence() {
        let t = ticket(&["This is the worst service ever, I am furious and disgusted!!"]);
        let out = Sentiment::evaluate(&t, &Ctx::new(0, EventKind::MessageAdded, Config::default()))
            .unwrap();
        assert_eq!(out.signals.len(), 1);
        assert_eq!(
            (out.signals[0].key.as_str(), out.signals[0].tier),
            ("sentiment:negative", Tier::High)
        );
        assert!(
            out.signals[0].evidence[0].starts_with("-0."),
            "{:?}",
            out.signals[0].evidence
        );
    }

    #[test]
    fn a_calm_conversation_stays_quiet() {
        assert!(
            run(
                &ticket(&["Hi, how do I export my data?", "Thanks, that worked!"]),
                Config::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn sentiment_shifting_mid_conversation_is_caught() {
        let t = ticket(&[
            "Hi, I have a question about my invoice.",
            "Still waiting. This is annoying.",
        ]);
        assert_eq!(
            run(&t, Config::default()),
            vec![("sentiment:shift".into(), Tier::Medium)]
        );
    }

    #[test]
    fn an_angry_start_is_not_a_shift() {
        let t = ticket(&["This is terrible and I hate it", "still terrible"]);
        let keys: Vec<_> = run(&t, Config::default())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["sentiment:negative".to_string()]);
    }

    #[test]
    fn agent_and_ai_messages_are_ignored() {
        let mut t = ticket(&["hello"]);
        t.messages.push(testing::message(
            AuthorKind::AiAgent,
            "I hate this terrible awful horrible bug",
            5,
        ));
        assert!(run(&t, Config::default()).is_empty());
    }

    #[test]
    fn upstream_scores_are_used_when_configured() {
        let mut t = ticket(&["ok"]);
        t.messages[0].sentiment = Some(-0.9);
        assert!(run(&t, Config::default()).is_empty());
        let signals = run(
            &t,
            Config {
                use_upstream: true,
                ..Config::default()
            },
        );
        assert_eq!(signals, vec![("sentiment:negative".into(), Tier::High)]);
    }

    #[test]
    fn a_threshold_outside_the_scale_is_refused() {
        let err = Sentiment::evaluate(
            &ticket(&["x"]),
            &Ctx::new(
                0,
                EventKind::Tick,
                Config {
                    threshold: -3.0,
                    ..Config::default()
                },
            ),
        );
        assert!(err.unwrap_err().contains("within -1..1"));
    }
}
