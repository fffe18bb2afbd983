//! The polyglot trigger, in Rust: escalate to high when an enterprise
//! customer mentions a refund in a negative message (upstream sentiment at
//! or below −0.3, or a negative word). The same logic is written in Python
//! and JavaScript under `tests/polyglot/`, and all pass the same fixtures.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// Words that make a message negative.
pub const NEGATIVE: &[&str] = &[
    "unacceptable",
    "terrible",
    "worst",
    "angry",
    "ridiculous",
    "furious",
    "disappointed",
];

/// The plugin.
pub struct Refund;

impl Trigger for Refund {
    type Config = ();

    fn evaluate(ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        let Some(c) = &ticket.customer else {
            return Ok(Evaluation::none());
        };
        if !c.plan.eq_ignore_ascii_case("enterprise") {
            return Ok(Evaluation::none());
        }
        for m in ticket
            .messages
            .iter()
            .filter(|m| m.author == AuthorKind::Customer)
        {
            let text = m.body.to_lowercase();
            if !text.contains("refund") {
                continue;
            }
            let negative =
                m.sentiment.is_some_and(|s| s <= -0.3) || NEGATIVE.iter().any(|w| text.contains(w));
            if negative {
                let evidence: String = m.body.chars().take(200).collect();
                return Ok(Evaluation {
                    signals: vec![
                        Signal::escalate(
                            Tier::High,
                            "refund:enterprise-negative",
                            format!(
                                "{}, an enterprise customer, is upset about a refund",
                                c.name
                            ),
                        )
                        .with_evidence(evidence)
                        .with_skill("billing"),
                    ],
                    wake_at: None,
                });
            }
        }
        Ok(Evaluation::none())
    }
}

escalator_guest::export_trigger!(Refund);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    #[test]
    fn an_upset_enterprise_refund_is_high_and_a_calm_one_is_not() {
        let mut t = Ticket {
            customer: Some(Customer {
                plan: "Enterprise".into(),
                name: "Acme".into(),
                ..testing::customer()
            }),
            messages: vec![testing::message(
                AuthorKind::Customer,
                "This refund delay is unacceptable",
                0,
            )],
            ..testing::ticket()
        };
        let ctx = Ctx::new(0, EventKind::MessageAdded, ());
        let e = Refund::evaluate(&t, &ctx).unwrap();
        assert_eq!(e.signals[0].tier, Tier::High);
        t.messages[0].body = "Could I get a refund, please?".into();
        assert!(Refund::evaluate(&t, &ctx).unwrap().signals.is_empty());
    }
}
