//! A std trigger that reports what the sandbox lets it see: the wall and
//! monotonic clocks (read twice), random bytes (twice), environment
//! variables, arguments and the root directory. It also writes to stdout
//! and stderr; subject `spam` writes 100,000 lines.

use escalator_guest::prelude::*;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The plugin.
pub struct Probe;

fn wall_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn random() -> String {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => format!("{bytes:02x?}"),
        Err(e) => format!("error: {e}"),
    }
}

impl Trigger for Probe {
    type Config = ();

    fn evaluate(ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        println!("probe: evaluating {}", ticket.id);
        eprintln!("probe: this goes to stderr");
        if ticket.subject == "spam" {
            for i in 0..100_000 {
                println!("spam line {i}");
            }
        }
        let start = Instant::now();
        let evidence = vec![
            format!("wall1={}", wall_ms()),
            format!("wall2={}", wall_ms()),
            format!("monotonic-elapsed-ns={}", start.elapsed().as_nanos()),
            format!("random1={}", random()),
            format!("random2={}", random()),
            format!("env-vars={}", std::env::vars().count()),
            format!("args={}", std::env::args().count()),
            format!(
                "read-root={}",
                std::fs::read_dir("/")
                    .map(|_| "allowed")
                    .unwrap_or("denied")
            ),
        ];
        let mut signal = Signal::warn(Tier::Low, "probe", "sandbox report");
        signal.evidence = evidence;
        Ok(Evaluation {
            signals: vec![signal],
            wake_at: None,
        })
    }
}

escalator_guest::export_trigger!(Probe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_natively_too() {
        let out = Probe::evaluate(
            &escalator_guest::testing::ticket(),
            &Ctx::new(0, EventKind::Tick, ()),
        )
        .unwrap();
        assert_eq!(out.signals[0].evidence.len(), 8);
        assert!(out.signals[0].evidence[0].starts_with("wall1="));
    }
}
