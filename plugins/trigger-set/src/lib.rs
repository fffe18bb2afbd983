//! The vendor's default triggers as one component (`world trigger-set`).
//!
//! The host calls every default trigger a tenant uses, unchanged, in one
//! instance per event through `evaluate-each`: one instance made and torn
//! down and one copy of the ticket instead of seven. Each trigger is the
//! same code as its own component (the crates below, without their own
//! exports), so the answers are the same; the host counts each trigger's
//! fuel, time and log apart and holds each to its own limits.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

escalator_guest::export_trigger_set! {
    "ai-confidence" => ai_confidence::AiConfidence,
    "churn-risk" => churn_risk::ChurnRisk,
    "customer-value" => customer_value::CustomerValue,
    "phrases" => phrases::Phrases,
    "scenario" => scenario::ScenarioTrigger,
    "sentiment" => sentiment::Sentiment,
    "sla" => sla::Sla,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use escalator_guest::testing;
    use escalator_guest::{
        AiAnalysis, Context, Customer, Evaluation, EventKind, Ticket, Trigger, evaluate_with,
    };

    fn ctx(config: &str) -> Context {
        Context {
            now: 3_600_000,
            event: EventKind::MessageAdded,
            config: config.to_string(),
        }
    }

    /// Each trigger on its own, as its own component runs it.
    fn alone(name: &str, t: &Ticket, c: Context) -> Result<Evaluation, String> {
        fn run<T: Trigger>(t: &Ticket, c: Context) -> Result<Evaluation, String>
        where
            T::Config: 'static,
        {
            evaluate_with::<T>(t, c)
        }
        match name {
            "ai-confidence" => run::<ai_confidence::AiConfidence>(t, c),
            "churn-risk" => run::<churn_risk::ChurnRisk>(t, c),
            "customer-value" => run::<customer_value::CustomerValue>(t, c),
            "phrases" => run::<phrases::Phrases>(t, c),
            "scenario" => run::<scenario::ScenarioTrigger>(t, c),
            "sentiment" => run::<sentiment::Sentiment>(t, c),
            "sla" => run::<sla::Sla>(t, c),
            other => panic!("no trigger {other}"),
        }
    }

    fn tickets() -> Vec<Ticket> {
        let angry = testing::customer_ticket(&[
            "Hello, my invoice is wrong.",
            "This is the worst service ever. I want to speak to your manager, \
             or my lawyer will.",
        ]);
        let valuable = Ticket {
            category: Some("billing".into()),
            customer: Some(Customer {
                plan: "enterprise".into(),
                mrr_cents: 5_000_000,
                contacts_this_week: 3,
                ..testing::customer()
            }),
            ai_analysis: Some(AiAnalysis {
                confidence: 0.4,
                intent: None,
                category: Some("billing".into()),
                reasoning: String::new(),
                solutions_tried: Vec::new(),
                analyzed_at: 0,
            }),
            ..angry.clone()
        };
        Vec::from([
            testing::ticket(),
            testing::customer_ticket(&["How do I export a CSV?"]),
            angry,
            valuable,
        ])
    }

    #[test]
    fn the_set_answers_as_each_trigger_does_alone() {
        let mut signals = 0;
        for t in tickets() {
            let each = evaluate_each(
                &t,
                TRIGGERS
                    .iter()
                    .map(|n| (n.to_string(), ctx("{}")))
                    .collect(),
            );
            assert_eq!(each.len(), TRIGGERS.len());
            for (name, got) in TRIGGERS.iter().zip(each) {
                let want = alone(name, &t, ctx("{}"));
                assert_eq!(got, want, "{name} on {:?}", t.messages);
                signals += got.map_or(0, |e| e.signals.len());
            }
        }
        // The tickets set triggers off: the comparison is not of empties.
        assert!(signals >= 4, "{signals} signals");
    }

    #[test]
    fn configurations_kept_ahead_decide_as_parsed_ones_and_other_text_is_parsed() {
        // Each trigger's shipped configuration, as the host would keep it.
        let configs: Vec<(String, String)> = [
            ("ai-confidence", r#"{"default-threshold": 0.5}"#),
            ("phrases", r#"{"critical": ["cancel my account"]}"#),
            ("sentiment", r#"{"threshold": -0.2}"#),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
        let mut asked = configs.clone();
        asked.push(("no-such".into(), "{}".into()));
        let kept = configure_each(asked);
        assert_eq!(kept[..3], [Ok(()), Ok(()), Ok(())]);
        assert!(kept[3].as_ref().is_err_and(|e| e.contains("no-such")));
        assert!(configure_each(Vec::from([("sentiment".into(), "{\"x\": 1}".into())]))[0].is_err());
        for t in tickets() {
            for (name, text) in &configs {
                configure_each(Vec::from([(name.clone(), text.clone())]));
            }
            // Kept text for two, other text for one: all as parsed alone.
            let calls = Vec::from([
                (configs[0].0.clone(), ctx(&configs[0].1)),
                (configs[1].0.clone(), ctx(&configs[1].1)),
                (configs[2].0.clone(), ctx(r#"{"threshold": -0.9}"#)),
            ]);
            let each = evaluate_each(&t, calls.clone());
            for ((name, c), got) in calls.into_iter().zip(each) {
                assert_eq!(got, alone(&name, &t, c), "{name}");
            }
        }
        // The two asked with their kept text took it; sentiment, asked
        // with other text, left its own kept.
        escalator_guest::kept::with(|k| {
            let (a, p, s) = (&configs[0], &configs[1], &configs[2]);
            assert!(k.take::<ai_confidence::Config>(&a.0, &a.1).is_none());
            assert!(k.take::<phrases::Config>(&p.0, &p.1).is_none());
            assert!(k.take::<sentiment::Config>(&s.0, &s.1).is_some());
        });
    }

    #[test]
    fn a_bad_configuration_or_an_unknown_name_fails_that_trigger_only() {
        let t = testing::customer_ticket(&["I hate this, it is the worst."]);
        let each = evaluate_each(
            &t,
            Vec::from([
                ("sentiment".to_string(), ctx("{\"threshold\": 7}")),
                ("no-such".to_string(), ctx("{}")),
                ("sentiment".to_string(), ctx("{}")),
            ]),
        );
        assert!(
            each[0].as_ref().is_err_and(|e| e.contains("threshold")),
            "{each:?}"
        );
        assert!(
            each[1].as_ref().is_err_and(|e| e.contains("no-such")),
            "{each:?}"
        );
        assert_eq!(each[2], alone("sentiment", &t, ctx("{}")));
    }
}
