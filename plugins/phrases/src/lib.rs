//! Trigger: escalation phrases.
//!
//! Scans the subject and every customer message for the phrases configured
//! per tier and returns one signal per tier that matched, quoting the
//! messages as evidence. A request for a human ("speak to a human") moves a
//! ticket that would otherwise stay with the AI agent to a person.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;
use escalator_guest::text::{PhraseSet, excerpt};

/// The plugin's configuration (`[config]` in `plugin.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Phrases that make a ticket critical.
    pub critical: Vec<String>,
    /// Phrases that make a ticket high.
    pub high: Vec<String>,
    /// Phrases that make a ticket medium.
    pub medium: Vec<String>,
    /// Phrases that make a ticket low (still a human's, not the AI's).
    pub low: Vec<String>,
    /// Phrases in which the customer asks for a human.
    pub human_request: Vec<String>,
    /// The tier a request for a human escalates to.
    pub human_request_tier: Tier,
    /// At most this many quotes of evidence per signal.
    pub max_evidence: usize,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            critical: strings(&[
                "lawyer",
                "lawsuit",
                "legal action",
                "sue you",
                "gdpr request",
            ]),
            high: strings(&[
                "cancel my account",
                "speak to your manager",
                "this is unacceptable",
                "take my business elsewhere",
            ]),
            medium: Vec::new(),
            low: Vec::new(),
            human_request: strings(&[
                "speak to a human",
                "talk to a human",
                "real person",
                "human agent",
            ]),
            human_request_tier: Tier::Low,
            max_evidence: 3,
        }
    }
}

/// The plugin.
pub struct Phrases;

impl Trigger for Phrases {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let c = &ctx.config;
        let rules: [(&[String], Tier, &str, &str); 5] = [
            (
                &c.critical,
                Tier::Critical,
                "phrases:critical",
                "critical phrase",
            ),
            (&c.high, Tier::High, "phrases:high", "escalation phrase"),
            (
                &c.medium,
                Tier::Medium,
                "phrases:medium",
                "frustration phrase",
            ),
            (&c.low, Tier::Low, "phrases:low", "phrase"),
            (
                &c.human_request,
                c.human_request_tier,
                "phrases:human-request",
                "request for a human",
            ),
        ];
        // What the customer wrote: the subject, then their messages.
        let texts: Vec<&str> = core::iter::once(ticket.subject.as_str())
            .chain(
                ticket
                    .messages
                    .iter()
                    .filter(|m| m.author == AuthorKind::Customer)
                    .map(|m| m.body.as_str()),
            )
            .collect();
        // One set of all phrases, so each text is normalised and scanned once.
        let mut all: Vec<&str> = Vec::new();
        let mut rule_of: Vec<usize> = Vec::new();
        for (r, (phrases, ..)) in rules.iter().enumerate() {
            for p in phrases.iter() {
                all.push(p);
                rule_of.push(r);
            }
        }
        let set = PhraseSet::new(&all);
        let mut found: Vec<Vec<&str>> = vec![Vec::new(); rules.len()];
        let mut evidence: Vec<Vec<String>> = vec![Vec::new(); rules.len()];
        for text in &texts {
            let mut quoted = [false; 5];
            for m in set.find_all(text) {
                let r = rule_of[m.phrase];
                if !found[r].contains(&all[m.phrase]) {
                    found[r].push(all[m.phrase]);
                }
                if !quoted[r] && evidence[r].len() < c.max_evidence {
                    evidence[r].push(format!("\"{}\"", excerpt(text, 160)));
                    quoted[r] = true;
                }
            }
        }
        let mut signals = Vec::new();
        for (r, (_, tier, key, what)) in rules.iter().enumerate() {
            if found[r].is_empty() {
                continue;
            }
            let quoted: Vec<String> = found[r].iter().map(|p| format!("\"{p}\"")).collect();
            let mut signal = Signal::escalate(
                *tier,
                *key,
                format!("customer wrote {what} {}", quoted.join(", ")),
            );
            signal.evidence = core::mem::take(&mut evidence[r]);
            signals.push(signal);
        }
        Ok(Evaluation {
            signals,
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(Phrases);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn ticket_saying(bodies: &[&str]) -> Ticket {
        Ticket {
            subject: "Help".into(),
            ..testing::customer_ticket(bodies)
        }
    }

    fn run(ticket: &Ticket) -> Evaluation {
        Phrases::evaluate(
            ticket,
            &Ctx::new(0, EventKind::MessageAdded, Config::default()),
        )
        .unwrap()
    }

    #[test]
    fn legal_threat_is_critical_with_the_quote_as_evidence() {
        let out = run(&ticket_saying(&["fine", "My LAWYER will hear about this!"]));
        assert_eq!(out.signals.len(), 1);
        let s = &out.signals[0];
        assert_eq!(
            (s.tier, s.key.as_str()),
            (Tier::Critical, "phrases:critical")
        );
        assert!(s.reason.contains("\"lawyer\""), "{}", s.reason);
        assert_eq!(
            s.evidence,
            vec!["\"My LAWYER will hear about this!\"".to_string()]
        );
    }

    #[test]
    fn several_tiers_each_get_a_signal() {
        let out = run(&ticket_saying(&[
            "This is unacceptable.",
            "I will sue you",
            "let me talk to a human",
        ]));
        let tiers: Vec<_> = out.signals.iter().map(|s| s.tier).collect();
        assert_eq!(tiers, vec![Tier::Critical, Tier::High, Tier::Low]);
    }

    #[test]
    fn ai_and_agent_messages_are_not_scanned() {
        let mut t = ticket_saying(&[]);
        t.messages.push(testing::message(
            AuthorKind::AiAgent,
            "Do you want to cancel my account?",
            1,
        ));
        assert!(run(&t).signals.is_empty());
    }

    #[test]
    fn words_inside_other_words_do_not_match() {
        assert!(
            run(&ticket_saying(&["I love the lawyerly tone"]))
                .signals
                .is_empty()
        );
    }

    #[test]
    fn config_replaces_the_phrase_lists() {
        let config: Config =
            escalator_guest::parse_config(r#"{"critical": ["refund now"]}"#).unwrap();
        let ctx = Ctx::new(0, EventKind::MessageAdded, config);
        let out = Phrases::evaluate(&ticket_saying(&["REFUND. NOW."]), &ctx).unwrap();
        assert_eq!(out.signals[0].tier, Tier::Critical);
        assert!(
            Phrases::evaluate(&ticket_saying(&["my lawyer"]), &ctx)
                .unwrap()
                .signals
                .is_empty()
        );
    }

    #[test]
    fn a_typo_in_the_config_is_an_error_naming_the_key() {
        let err = escalator_guest::parse_config::<Config>(r#"{"hihg": []}"#).unwrap_err();
        assert!(err.contains("hihg"), "{err}");
    }
}
