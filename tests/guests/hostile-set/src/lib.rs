//! A trigger set (`world trigger-set`) whose triggers misbehave, each in
//! its own way, so tests can check that each is held to its own limits
//! inside the set's one instance, as it would be alone:
//!
//! - `loud` answers with 100 KB of evidence (over a small output cap);
//! - `chatty` writes 64 log lines of 1,000 bytes (over a small log cap);
//! - `fine` writes one log line and answers one signal.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// Bytes of evidence `loud` answers with.
pub const LOUD_BYTES: usize = 100_000;
/// Lines `chatty` logs, and the bytes of each.
pub const CHATTY_LINES: usize = 64;
/// The bytes of each of `chatty`'s lines.
pub const CHATTY_LINE_BYTES: usize = 1_000;

/// Answers with more evidence than its output cap allows.
pub struct Loud;
/// Logs more than its log cap allows.
pub struct Chatty;
/// Behaves.
pub struct Fine;

impl Trigger for Loud {
    type Config = ();
    fn evaluate(_ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        Ok(Evaluation {
            signals: vec![
                Signal::escalate(Tier::Low, "loud", "too much to say")
                    .with_evidence("x".repeat(LOUD_BYTES)),
            ],
            wake_at: None,
        })
    }
}

impl Trigger for Chatty {
    type Config = ();
    fn evaluate(_ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        let line = "y".repeat(CHATTY_LINE_BYTES);
        for _ in 0..CHATTY_LINES {
            log(LogLevel::Info, &line);
        }
        Ok(Evaluation {
            signals: vec![Signal::warn(Tier::Low, "chatty", "talked a lot")],
            wake_at: None,
        })
    }
}

impl Trigger for Fine {
    type Config = ();
    fn evaluate(_ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        log(LogLevel::Info, "fine here");
        Ok(Evaluation {
            signals: vec![Signal::escalate(Tier::Low, "fine", "behaved")],
            wake_at: None,
        })
    }
}

escalator_guest::export_trigger_set! {
    "loud" => Loud,
    "chatty" => Chatty,
    "fine" => Fine,
}

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::{Context, testing};

    fn each(names: &[&str]) -> Vec<Result<Evaluation, String>> {
        let ticket = testing::customer_ticket(&["hello"]);
        let ctx = Context {
            now: 0,
            event: EventKind::TicketCreated,
            config: "{}".to_string(),
        };
        evaluate_each(
            &ticket,
            names.iter().map(|n| (n.to_string(), ctx.clone())).collect(),
        )
    }

    #[test]
    fn each_trigger_misbehaves_as_named_and_fine_behaves() {
        let [loud, chatty, fine] = &each(&["loud", "chatty", "fine"])[..] else {
            panic!("three answers")
        };
        let loud = loud.as_ref().unwrap();
        assert_eq!(loud.signals[0].evidence[0].len(), LOUD_BYTES);
        assert_eq!(chatty.as_ref().unwrap().signals[0].key, "chatty");
        assert_eq!(fine.as_ref().unwrap().signals[0].key, "fine");
        assert_eq!(TRIGGERS, ["loud", "chatty", "fine"]);
    }

    #[test]
    fn a_name_it_does_not_run_is_an_error() {
        assert!(each(&["nobody"])[0].is_err());
    }
}
