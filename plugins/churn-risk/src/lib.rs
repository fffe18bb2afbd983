//! Trigger: churn risk, as configurable combinations.
//!
//! Each rule names conditions on the customer, the conversation and the AI
//! analysis; a rule fires when every condition it names holds. Conditions:
//! `trial`, `plans`, `min-mrr-cents`, `min-contacts`, `sentiment-at-most`
//! (the latest customer message, VADER compound), `phrases` (any, in the
//! subject or the customer's messages), `categories`, `ai-confidence-below`.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;
use escalator_guest::text::PhraseSet;

/// One combination rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rule {
    /// A short name; the signal's key is `churn:NAME`.
    pub name: String,
    /// What it means, for people.
    #[serde(default)]
    pub description: String,
    /// The tier it escalates to.
    pub tier: Tier,
    /// The customer is (or is not) on a trial.
    #[serde(default)]
    pub trial: Option<bool>,
    /// The customer is on one of these plans.
    #[serde(default)]
    pub plans: Vec<String>,
    /// MRR at or above, in cents.
    #[serde(default)]
    pub min_mrr_cents: Option<u64>,
    /// Contacts in the last seven days, at least.
    #[serde(default)]
    pub min_contacts: Option<u32>,
    /// The latest customer message scores at or below this.
    #[serde(default)]
    pub sentiment_at_most: Option<f64>,
    /// The customer wrote one of these phrases.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// The ticket is in one of these categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The AI's confidence is below this.
    #[serde(default)]
    pub ai_confidence_below: Option<f32>,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The rules, checked in order; each that holds fires.
    pub rules: Vec<Rule>,
}

/// Whether `rule` holds for `ticket`; if so, the evidence, one line per
/// condition.
pub fn check(rule: &Rule, ticket: &Ticket) -> Option<Vec<String>> {
    let mut evidence = Vec::new();
    let customer = ticket.customer.as_ref();
    let needs_customer = rule.trial.is_some()
        || !rule.plans.is_empty()
        || rule.min_mrr_cents.is_some()
        || rule.min_contacts.is_some();
    if needs_customer && customer.is_none() {
        return None;
    }
    if let (Some(want), Some(c)) = (rule.trial, customer) {
        if c.trial != want {
            return None;
        }
        evidence.push(format!("trial: {}", c.trial));
    }
    if let Some(c) = customer.filter(|_| !rule.plans.is_empty()) {
        if !rule.plans.iter().any(|p| p.eq_ignore_ascii_case(&c.plan)) {
            return None;
        }
        evidence.push(format!("plan: {}", c.plan));
    }
    if let (Some(min), Some(c)) = (rule.min_mrr_cents, customer) {
        if c.mrr_cents < min {
            return None;
        }
        evidence.push(format!("MRR: ${}", c.mrr_cents / 100));
    }
    if let (Some(min), Some(c)) = (rule.min_contacts, customer) {
        if c.contacts_this_week < min {
            return None;
        }
        evidence.push(format!("contacts this week: {}", c.contacts_this_week));
    }
    if !rule.categories.is_empty() {
        let category = ticket.category.as_deref().or(ticket
            .ai_analysis
            .as_ref()
            .and_then(|a| a.category.as_deref()))?;
        if !rule
            .categories
            .iter()
            .any(|c| c.eq_ignore_ascii_case(category))
        {
            return None;
        }
        evidence.push(format!("category: {category}"));
    }
    if let Some(below) = rule.ai_confidence_below {
        let ai = ticket.ai_analysis.as_ref()?;
        if ai.confidence >= below {
            return None;
        }
        evidence.push(format!("AI confidence: {:.2}", ai.confidence));
    }
    let customer_texts = || {
        core::iter::once(ticket.subject.as_str()).chain(
            ticket
                .messages
                .iter()
                .filter(|m| m.author == AuthorKind::Customer)
                .map(|m| m.body.as_str()),
        )
    };
    if let Some(at_most) = rule.sentiment_at_most {
        let latest = ticket
            .messages
            .iter()
            .rev()
            .find(|m| m.author == AuthorKind::Customer)?;
        let score = sentiment::compound(&latest.body);
        if score > at_most {
            return None;
        }
        evidence.push(format!("latest customer sentiment: {score:+.2}"));
    }
    if !rule.phrases.is_empty() {
        let set = PhraseSet::new(&rule.phrases);
        let found = customer_texts().find_map(|t| set.first_match(t))?;
        evidence.push(format!("wrote: \"{}\"", rule.phrases[found.phrase]));
    }
    Some(evidence)
}

/// The plugin.
pub struct ChurnRisk;

impl Trigger for ChurnRisk {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let mut signals = Vec::new();
        for rule in &ctx.config.rules {
            let conditions = usize::from(rule.trial.is_some())
                + usize::from(!rule.plans.is_empty())
                + usize::from(rule.min_mrr_cents.is_some())
                + usize::from(rule.min_contacts.is_some())
                + usize::from(rule.sentiment_at_most.is_some())
                + usize::from(!rule.phrases.is_empty())
                + usize::from(!rule.categories.is_empty())
                + usize::from(rule.ai_confidence_below.is_some());
            if conditions == 0 {
                return Err(format!(
                    "rule {:?} has no conditions: it would escalate every ticket",
                    rule.name
                ));
            }
            if let Some(evidence) = check(rule, ticket) {
                let what = if rule.description.is_empty() {
                    &rule.name
                } else {
                    &rule.description
                };
                let mut signal = Signal::escalate(
                    rule.tier,
                    format!("churn:{}", rule.name),
                    format!("churn risk: {what}"),
                );
                signal.evidence = evidence;
                signals.push(signal);
            }
        }
        Ok(Evaluation {
            signals,
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(ChurnRisk);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    /// The playbook's two rules (as in plugin.toml, whose compiled form the
    /// host's integration tests run).
    fn shipped() -> Config {
        escalator_guest::parse_config(
            r#"{"rules": [
                {"name": "trial-turning-negative", "description": "trial user with 3+ contacts this week who turns negative",
                 "tier": "critical", "trial": true, "min-contacts": 3, "sentiment-at-most": -0.3},
                {"name": "valuable-customer-leaving", "description": "high-value customer talking about leaving",
                 "tier": "critical", "min-mrr-cents": 500000, "phrases": ["cancel my account", "take my business elsewhere"]}
            ]}"#,
        )
        .unwrap()
    }

    fn ticket(customer: Customer, bodies: &[&str]) -> Ticket {
        Ticket {
            customer: Some(customer),
            ..testing::customer_ticket(bodies)
        }
    }

    fn keys(t: &Ticket) -> Vec<String> {
        ChurnRisk::evaluate(t, &Ctx::new(0, EventKind::MessageAdded, shipped()))
            .unwrap()
            .signals
            .into_iter()
            .map(|s| s.key)
            .collect()
    }

    #[test]
    fn a_trial_user_with_three_contacts_who_turns_negative_is_critical_at_once() {
        let trial = Customer {
            trial: true,
            contacts_this_week: 3,
            ..testing::customer()
        };
        let t = ticket(
            trial.clone(),
            &["Hi, export fails", "This is useless and I'm fed up"],
        );
        let out =
            ChurnRisk::evaluate(&t, &Ctx::new(0, EventKind::MessageAdded, shipped())).unwrap();
        assert_eq!(out.signals.len(), 1);
        assert_eq!(
            (out.signals[0].key.as_str(), out.signals[0].tier),
            ("churn:trial-turning-negative", Tier::Critical)
        );
        assert_eq!(
            out.signals[0].evidence[..2],
            [
                "trial: true".to_string(),
                "contacts this week: 3".to_string()
            ]
        );
        // Two contacts, or still positive, or not a trial: nothing.
        assert!(
            keys(&ticket(
                Customer {
                    contacts_this_week: 2,
                    ..trial.clone()
                },
                &["This is useless and I'm fed up"]
            ))
            .is_empty()
        );
        assert!(keys(&ticket(trial.clone(), &["Thanks, great help!"])).is_empty());
        assert!(
            keys(&ticket(
                Customer {
                    trial: false,
                    ..trial
                },
                &["This is useless and I'm fed up"]
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_valuable_customer_talking_about_leaving_is_critical() {
        let rich = Customer {
            mrr_cents: 900_000,
            ..testing::customer()
        };
        assert_eq!(
            keys(&ticket(
                rich.clone(),
                &["Fix it or I'll take my business elsewhere."]
            )),
            vec!["churn:valuable-customer-leaving".to_string()]
        );
        assert!(keys(&ticket(rich, &["How do I add a user?"])).is_empty());
    }

    #[test]
    fn a_rule_without_conditions_is_refused() {
        let bare: Config =
            escalator_guest::parse_config(r#"{"rules": [{"name": "all", "tier": "high"}]}"#)
                .unwrap();
        let err = ChurnRisk::evaluate(&testing::ticket(), &Ctx::new(0, EventKind::Tick, bare))
            .unwrap_err();
        assert!(err.contains("has no conditions"), "{err}");
    }
}
