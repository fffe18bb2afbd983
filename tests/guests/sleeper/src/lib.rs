//! A std trigger that tries to hold its call in host calls, the way a real
//! plugin in any language could: the ticket's subject picks how.
//!
//! - `sleep`: `std::thread::sleep(30 s)` (WASI monotonic-clock subscribe +
//!   poll).
//! - `nap`: a thousand 10 ms sleeps, then reports the clock.
//! - `spin-clock`: reads the monotonic clock until 10 s have passed.
//! - `chatty`: writes 10,000 lines to stdout, then answers.
//! - `hoard:N`: allocates and touches N MiB, then answers.
//!
//! Anything else gets one well-formed signal.

use escalator_guest::prelude::*;
use std::time::{Duration, Instant};

/// The plugin.
pub struct Sleeper;

fn ok(key: &str, evidence: String) -> Result<Evaluation, String> {
    Ok(Evaluation {
        signals: vec![
            Signal::escalate(Tier::Low, key, "sleeper answered").with_evidence(&evidence),
        ],
        wake_at: None,
    })
}

impl Trigger for Sleeper {
    type Config = ();

    fn evaluate(ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        let subject = ticket.subject.as_str();
        match subject {
            "sleep" => {
                let start = Instant::now();
                std::thread::sleep(Duration::from_secs(30));
                ok(
                    "sleeper:slept",
                    format!("slept-ms={}", start.elapsed().as_millis()),
                )
            }
            "nap" => {
                let start = Instant::now();
                for _ in 0..1_000 {
                    std::thread::sleep(Duration::from_millis(10));
                }
                ok(
                    "sleeper:napped",
                    format!("napped-ms={}", start.elapsed().as_millis()),
                )
            }
            "spin-clock" => {
                let start = Instant::now();
                let mut reads: u64 = 0;
                while start.elapsed() < Duration::from_secs(10) {
                    reads += 1;
                }
                ok("sleeper:spun", format!("reads={reads}"))
            }
            "chatty" => {
                for i in 0..10_000 {
                    println!("chatty line {i} of ticket {}", ticket.id);
                }
                ok("sleeper:chatted", "10000 lines".into())
            }
            _ => {
                if let Some(n) = subject.strip_prefix("hoard:") {
                    let mib: usize = n.parse().map_err(|_| format!("hoard:{n}: not a number"))?;
                    let mut hoard = vec![0u8; mib << 20];
                    for page in hoard.chunks_mut(4096) {
                        page[0] = 1;
                    }
                    let touched: usize = hoard.iter().step_by(4096).map(|b| usize::from(*b)).sum();
                    return ok("sleeper:hoarded", format!("pages={touched}"));
                }
                ok("sleeper:ok", subject.to_string())
            }
        }
    }
}

escalator_guest::export_trigger!(Sleeper);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn run(subject: &str) -> Evaluation {
        Sleeper::evaluate(
            &Ticket {
                subject: subject.into(),
                ..testing::ticket()
            },
            &Ctx::new(0, EventKind::Tick, ()),
        )
        .unwrap()
    }

    #[test]
    fn behaves_for_ordinary_subjects_and_hoards_on_demand() {
        assert_eq!(run("hello").signals[0].key, "sleeper:ok");
        assert_eq!(
            run("hoard:1").signals[0].evidence,
            vec!["pages=256".to_string()]
        );
    }
}
