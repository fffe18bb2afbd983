//! Trigger: customer value.
//!
//! The enterprise plan, MRR at or above a threshold, a trial account and
//! repeat contacts each make a rule that either escalates the ticket or
//! raises an escalation that something else started (see
//! `SignalAction::Raise`), as configured.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Escalate to the rule's tier.
    Escalate,
    /// Raise an escalating ticket one step, to the rule's tier at most.
    Raise,
    /// Do nothing.
    Off,
}

/// One rule.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What it does.
    pub action: Action,
    /// Its tier.
    pub tier: Tier,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Plans that count as enterprise (case-insensitive).
    pub enterprise_plans: Vec<String>,
    /// MRR at or above this, in cents, is high value.
    pub mrr_threshold_cents: u64,
    /// This many contacts in seven days or more is a repeat contact.
    pub repeat_contacts: u32,
    /// The enterprise rule.
    pub enterprise: Rule,
    /// The high-MRR rule.
    pub high_mrr: Rule,
    /// The trial rule.
    pub trial: Rule,
    /// The repeat-contacts rule.
    pub repeat: Rule,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enterprise_plans: vec!["enterprise".into()],
            mrr_threshold_cents: 500_000,
            repeat_contacts: 3,
            enterprise: Rule {
                action: Action::Raise,
                tier: Tier::Critical,
            },
            high_mrr: Rule {
                action: Action::Raise,
                tier: Tier::Critical,
            },
            trial: Rule {
                action: Action::Raise,
                tier: Tier::High,
            },
            repeat: Rule {
                action: Action::Escalate,
                tier: Tier::Medium,
            },
        }
    }
}

/// `$5,000` style money.
fn dollars(cents: u64) -> String {
    let d = cents / 100;
    let mut digits = d.to_string();
    let mut out = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        out = format!(",{tail}{out}");
    }
    format!("${digits}{out}")
}

/// The plugin.
pub struct CustomerValue;

impl Trigger for CustomerValue {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let c = &ctx.config;
        let Some(customer) = &ticket.customer else {
            return Ok(Evaluation::none());
        };
        let mut signals = Vec::new();
        let mut fire = |rule: Rule, key: &str, reason: String| {
            let signal = match rule.action {
                Action::Off => return,
                Action::Escalate => Signal::escalate(rule.tier, key, reason),
                Action::Raise => Signal::raise(rule.tier, key, reason),
            };
            signals.push(
                signal.with_evidence(format!("customer {} ({})", customer.name, customer.id)),
            );
        };
        if c.enterprise_plans
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&customer.plan))
        {
            fire(
                c.enterprise,
                "customer:enterprise",
                format!("{} is on the {} plan", customer.name, customer.plan),
            );
        }
        if customer.mrr_cents >= c.mrr_threshold_cents && c.mrr_threshold_cents > 0 {
            fire(
                c.high_mrr,
                "customer:high-mrr",
                format!(
                    "MRR {} is at or above {}",
                    dollars(customer.mrr_cents),
                    dollars(c.mrr_threshold_cents)
                ),
            );
        }
        if customer.trial {
            fire(
                c.trial,
                "customer:trial",
                format!("{} is on a trial", customer.name),
            );
        }
        if customer.contacts_this_week >= c.repeat_contacts && c.repeat_contacts > 0 {
            fire(
                c.repeat,
                "customer:repeat-contacts",
                format!(
                    "{} contacts in the last 7 days (threshold {})",
                    customer.contacts_this_week, c.repeat_contacts
                ),
            );
        }
        Ok(Evaluation {
            signals,
            wake_at: None,
        })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(CustomerValue);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn run(customer: Customer, config: Config) -> Vec<(String, SignalAction, Tier)> {
        let t = Ticket {
            customer: Some(customer),
            ..testing::ticket()
        };
        CustomerValue::evaluate(&t, &Ctx::new(0, EventKind::TicketCreated, config))
            .unwrap()
            .signals
            .into_iter()
            .map(|s| (s.key, s.action, s.tier))
            .collect()
    }

    #[test]
    fn an_enterprise_customer_with_high_mrr_raises_to_critical() {
        let c = Customer {
            plan: "Enterprise".into(),
            mrr_cents: 5_000_000,
            ..testing::customer()
        };
        assert_eq!(
            run(c, Config::default()),
            vec![
                (
                    "customer:enterprise".into(),
                    SignalAction::Raise,
                    Tier::Critical
                ),
                (
                    "customer:high-mrr".into(),
                    SignalAction::Raise,
                    Tier::Critical
                ),
            ]
        );
    }

    #[test]
    fn mrr_exactly_at_the_threshold_counts() {
        let c = Customer {
            mrr_cents: 500_000,
            ..testing::customer()
        };
        assert_eq!(run(c, Config::default()).len(), 1);
        let c = Customer {
            mrr_cents: 499_999,
            ..testing::customer()
        };
        assert!(run(c, Config::default()).is_empty());
    }

    #[test]
    fn trials_raise_and_repeat_contacts_escalate() {
        let c = Customer {
            trial: true,
            contacts_this_week: 3,
            ..testing::customer()
        };
        assert_eq!(
            run(c, Config::default()),
            vec![
                ("customer:trial".into(), SignalAction::Raise, Tier::High),
                (
                    "customer:repeat-contacts".into(),
                    SignalAction::Escalate,
                    Tier::Medium
                ),
            ]
        );
    }

    #[test]
    fn rules_can_be_switched_off_or_turned_into_escalations() {
        let c = Customer {
            plan: "enterprise".into(),
            trial: true,
            ..testing::customer()
        };
        let config = Config {
            enterprise: Rule {
                action: Action::Escalate,
                tier: Tier::High,
            },
            trial: Rule {
                action: Action::Off,
                tier: Tier::Low,
            },
            ..Config::default()
        };
        assert_eq!(
            run(c, config),
            vec![(
                "customer:enterprise".into(),
                SignalAction::Escalate,
                Tier::High
            )]
        );
    }

    #[test]
    fn no_customer_no_signals() {
        let out = CustomerValue::evaluate(
            &testing::ticket(),
            &Ctx::new(0, EventKind::Tick, Config::default()),
        )
        .unwrap();
        assert!(out.signals.is_empty());
    }

    #[test]
    fn money_has_thousands_separators() {
        assert_eq!(dollars(500_000), "$5,000");
        assert_eq!(dollars(123_456_789), "$1,234,567");
        assert_eq!(dollars(99), "$0");
    }
}
