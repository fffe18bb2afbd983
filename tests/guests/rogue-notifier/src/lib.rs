//! A notifier whose plan is out of range on demand: the ticket's subject
//! `far-delay` asks for a step at `delay = u64::MAX`, `delay-2^63` at
//! `2^63`, `far-digest` for a digest window of `u64::MAX`; anything else
//! plans one in-app step to the assignee's team at once.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// The plugin.
pub struct RogueNotifier;

impl Notifier for RogueNotifier {
    type Config = ();

    fn plan(
        ticket: &Ticket,
        _escalation: &Escalation,
        _routing: &Routing,
        _roster: &[Agent],
        _ctx: &Ctx<()>,
    ) -> Result<NotificationPlan, String> {
        let (delay, digest_window) = match ticket.subject.as_str() {
            "far-delay" => (u64::MAX, 0),
            "delay-2^63" => (1 << 63, 0),
            "far-digest" => (0, u64::MAX),
            _ => (0, 0),
        };
        Ok(NotificationPlan {
            steps: vec![NotificationStep {
                delay,
                recipient: Recipient::Team("support".into()),
                channel: Channel::InApp,
                title: format!("rogue plan for {}", ticket.id),
                body: "body".into(),
                stop_when_claimed: true,
                stop_when_answered: false,
                digest_window,
            }],
            customer_message: None,
        })
    }
}

escalator_guest::export_notifier!(RogueNotifier);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    #[test]
    fn the_plan_is_out_of_range_only_on_demand() {
        let plan = |subject: &str| {
            let t = Ticket {
                subject: subject.into(),
                ..testing::ticket()
            };
            let e = Escalation {
                tier: Tier::High,
                signals: vec![],
                response_target: None,
            };
            let r = Routing {
                target: Target::Queue("general".into()),
                reason: "r".into(),
                fallback: vec![],
            };
            RogueNotifier::plan(&t, &e, &r, &[], &Ctx::new(0, EventKind::Tick, ())).unwrap()
        };
        assert_eq!(plan("x").steps[0].delay, 0);
        assert_eq!(plan("far-delay").steps[0].delay, u64::MAX);
        assert_eq!(plan("far-digest").steps[0].digest_window, u64::MAX);
    }
}
