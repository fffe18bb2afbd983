//! A trigger that misbehaves on demand: the ticket's subject picks how.
//! Any other subject gets one well-formed signal, so tests can check that
//! the plugin works again right after it failed.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use core::hint::black_box;
use escalator_guest::prelude::*;

/// The plugin.
pub struct Hostile;

/// Count for ever.
fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Take a megabyte more for ever, keeping it all.
fn hoard() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![7u8; 1 << 20]);
        black_box(&hoard);
    }
}

/// Recurse `n` levels deep, keeping every frame alive.
fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        black_box(recurse(black_box(n - 1))) + 1
    }
}

/// The configuration: `configure = "loop" | "membomb" | "panic"`
/// misbehaves while the configuration is parsed (ahead of the calls, at
/// load, if the host pre-initialises, and in every call otherwise).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    configure: Misbehave,
}

/// Misbehaves as it is parsed.
#[derive(Default)]
struct Misbehave;

impl<'de> Deserialize<'de> for Misbehave {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Misbehave, D::Error> {
        let how = String::deserialize(d)?;
        match how.as_str() {
            "loop" => spin(),
            "membomb" => hoard(),
            "panic" => panic!("boom while configured"),
            _ => Ok(Misbehave),
        }
    }
}

impl Trigger for Hostile {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let _ = &ctx.config.configure;
        match ticket.subject.as_str() {
            "loop" => spin(),
            "membomb" => hoard(),
            "recursion" => {
                let depth = recurse(black_box(u64::MAX));
                Err(format!("recursed {depth} levels and came back"))
            }
            "big-output" => {
                let chunk = "x".repeat(1 << 20);
                let evidence = (0..50).map(|_| chunk.clone()).collect();
                Ok(Evaluation {
                    signals: vec![Signal {
                        evidence,
                        ..Signal::escalate(Tier::Low, "hostile:big", "50 MB of evidence")
                    }],
                    wake_at: None,
                })
            }
            "panic" => panic!("boom on ticket {}", ticket.id),
            "unreachable" => unreachable_trap(),
            "garbage" => Ok(Evaluation {
                signals: vec![Signal::escalate(Tier::High, "", "no key")],
                wake_at: None,
            }),
            "refuse" => Err(String::from("refusing this ticket on purpose")),
            "wake-far" => Ok(Evaluation {
                signals: vec![],
                wake_at: Some(i64::MAX),
            }),
            "keys" => Ok(Evaluation {
                signals: (0..10_000)
                    .map(|i| Signal::warn(Tier::Low, format!("k{i}"), "one of many"))
                    .collect(),
                wake_at: None,
            }),
            // A distinct key per ticket: across many tickets, as many
            // distinct keys as tickets.
            "distinct-key" => Ok(Evaluation {
                signals: vec![Signal::escalate(
                    Tier::Low,
                    format!("distinct-{}", ticket.id),
                    "a key of its own",
                )],
                wake_at: None,
            }),
            other => Ok(Evaluation {
                signals: vec![
                    Signal::escalate(Tier::Low, "hostile:ok", "behaved").with_evidence(other),
                ],
                wake_at: None,
            }),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn unreachable_trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_trap() -> ! {
    panic!("unreachable")
}

escalator_guest::export_trigger!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing;

    fn run(subject: &str) -> Result<Evaluation, String> {
        Hostile::evaluate(
            &Ticket {
                subject: subject.into(),
                ..testing::ticket()
            },
            &Ctx::new(0, EventKind::Tick, Config::default()),
        )
    }

    #[test]
    fn behaves_for_ordinary_subjects() {
        let out = run("hello").unwrap();
        assert_eq!(out.signals[0].key, "hostile:ok");
        assert_eq!(out.signals[0].evidence, vec!["hello".to_string()]);
    }

    #[test]
    fn refuses_and_returns_garbage_on_demand() {
        assert_eq!(
            run("refuse").unwrap_err(),
            "refusing this ticket on purpose"
        );
        assert_eq!(run("garbage").unwrap().signals[0].key, "");
        assert_eq!(run("wake-far").unwrap().wake_at, Some(i64::MAX));
        assert_eq!(run("keys").unwrap().signals.len(), 10_000);
    }
}
