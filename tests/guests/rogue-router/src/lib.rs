//! A router whose fallback durations are out of range on demand: the
//! ticket's subject `far-fallback` asks for `after = u64::MAX`,
//! `fallback-2^63` for `after = 2^63`; anything else routes to the
//! `general` queue with a fallback to `leads` after a minute.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// The plugin.
pub struct RogueRouter;

impl Router for RogueRouter {
    type Config = ();

    fn route(
        ticket: &Ticket,
        _escalation: &Escalation,
        _roster: &[Agent],
        _ctx: &Ctx<()>,
    ) -> Result<Routing, String> {
        let after = match ticket.subject.as_str() {
            "far-fallback" => u64::MAX,
            "fallback-2^63" => 1 << 63,
            _ => 60_000,
        };
        Ok(Routing {
            target: Target::Queue("general".into()),
            reason: "rogue router".into(),
            fallback: vec![FallbackStep {
                after,
                target: Target::Queue("leads".into()),
                reason: "unclaimed".into(),
            }],
        })
    }
}

escalator_guest::export_router!(RogueRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    #[test]
    fn the_fallback_is_out_of_range_only_on_demand() {
        let route = |subject: &str| {
            let t = Ticket {
                subject: subject.into(),
                ..testing::ticket()
            };
            let e = Escalation {
                tier: Tier::High,
                signals: vec![],
                response_target: None,
            };
            RogueRouter::route(&t, &e, &[], &Ctx::new(0, EventKind::Tick, ())).unwrap()
        };
        assert_eq!(route("x").fallback[0].after, 60_000);
        assert_eq!(route("far-fallback").fallback[0].after, u64::MAX);
    }
}
