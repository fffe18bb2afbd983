//! Plugin fixtures: cases shipped with a plugin (`fixtures/*.json`) that a
//! version must pass before it serves, and that `escalator plugin test`
//! runs offline.
//!
//! A fixture is a ticket, the context, and what the output must contain:
//!
//! ```json
//! {"name": "lawyer is critical",
//!  "ticket": {"id": "F-1", "created_at": "2026-11-27T09:00:00Z",
//!             "messages": [{"author": "customer", "body": "I will call my lawyer",
//!                           "sent_at": "2026-11-27T09:00:00Z"}]},
//!  "now": "2026-11-27T09:05:00Z",
//!  "expect": {"signals": [{"tier": "critical"}]}}
//! ```
//!
//! `expect` is matched as a subset of the output in its JSON form: every
//! key given must be there with an equal value (objects recursively,
//! arrays element by element and of the same length). `expect_error`
//! instead names the error kind the call must fail with (e.g. `refused`).
//! Routers and notifiers may give `roster`, `escalation` and `routing`.

use crate::model;
use crate::pipeline::{self, Call, Deadlines, Input};
use crate::registry::LoadedPlugin;
use crate::runtime::Runtime;
use crate::runtime::inspect::Kind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// What it checks (default: the file name).
    #[serde(default)]
    pub name: String,
    /// The ticket.
    pub ticket: model::Ticket,
    /// The evaluation time (default: the ticket's last message or creation).
    #[serde(default)]
    pub now: Option<DateTime<Utc>>,
    /// The event (default `message-added`).
    #[serde(default)]
    pub event: model::EventKind,
    /// The roster (routers, notifiers).
    #[serde(default)]
    pub roster: Vec<model::Agent>,
    /// The escalation (routers, notifiers; default: high, no signals).
    #[serde(default)]
    pub escalation: Option<model::Escalation>,
    /// The routing (notifiers; default: the general queue).
    #[serde(default)]
    pub routing: Option<model::Routing>,
    /// What the output must contain.
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
    /// The error kind the call must fail with instead.
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// How one case went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why not (or what it returned).
    pub detail: String,
    /// Fuel burnt.
    pub fuel: u64,
    /// Wall time, µs.
    pub micros: u64,
}

/// Read `dir/fixtures/*.json` (sorted by file name); none is fine.
pub fn read(dir: &Path) -> Result<Vec<Fixture>, String> {
    let fdir = dir.join("fixtures");
    if !fdir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<_> = std::fs::read_dir(&fdir)
        .map_err(|e| format!("{}: {e}", fdir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let de = &mut serde_json::Deserializer::from_str(&text);
            let mut f: Fixture = serde_path_to_error::deserialize(de)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if f.name.is_empty() {
                f.name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            Ok(f)
        })
        .collect()
}

/// Whether `expected` is contained in `actual`; the error names the path
/// where they differ.
pub fn contains(expected: &serde_json::Value, actual: &serde_json::Value) -> Result<(), String> {
    fn walk(e: &serde_json::Value, a: &serde_json::Value, path: &str) -> Result<(), String> {
        use serde_json::Value::*;
        match (e, a) {
            (Object(e), Object(a)) => {
                for (k, ev) in e {
                    let av = a.get(k).unwrap_or(&Null);
                    walk(ev, av, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            (Array(e), Array(a)) => {
                if e.len() != a.len() {
                    return Err(format!(
                        "{path}: expected {} item(s), got {}: {}",
                        e.len(),
                        a.len(),
                        serde_json::Value::Array(a.clone())
                    ));
                }
                for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                    walk(ev, av, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Number(x), Number(y)) if x.as_f64() == y.as_f64() => Ok(()),
            _ if e == a => Ok(()),
            _ => Err(format!("{path}: expected {e}, got {a}")),
        }
    }
    walk(expected, actual, "output")
}

/// Run every case on `plugin`.
pub fn run(runtime: &Runtime, plugin: &LoadedPlugin, fixtures: &[Fixture]) -> Vec<CaseResult> {
    fixtures
        .iter()
        .map(|f| run_one(runtime, plugin, f))
        .collect()
}

fn run_one(runtime: &Runtime, p: &LoadedPlugin, f: &Fixture) -> CaseResult {
    let now = f.now.unwrap_or_else(|| {
        f.ticket
            .messages
            .iter()
            .map(|m| m.sent_at)
            .max()
            .unwrap_or(f.ticket.created_at)
    });
    let escalation = f.escalation.clone().unwrap_or(model::Escalation {
        tier: model::Tier::High,
        signals: Vec::new(),
        response_target_ms: None,
    });
    let routing = f.routing.clone().unwrap_or(model::Routing {
        target: model::Target::Queue("general".into()),
        reason: "fixture".into(),
        fallback: Vec::new(),
    });
    let what = match p.manifest.kind {
        Kind::Trigger => Call::Trigger,
        Kind::Router => Call::Router(&escalation),
        Kind::Notifier => Call::Notifier(&escalation, &routing),
    };
    let input = Input::new(&f.ticket, &f.roster, now, f.event);
    let called = pipeline::call(
        runtime,
        &p.plugin,
        &p.config_json,
        what,
        &input,
        Deadlines::Retried,
    );
    let report = called.report;
    let result = called
        .result
        .map(|v| serde_json::to_value(v).unwrap_or_default());
    let (passed, detail) = match (&result, &f.expect, &f.expect_error) {
        (Ok(out), Some(expect), None) => match contains(expect, out) {
            Ok(()) => (true, "ok".to_string()),
            Err(why) => (false, why),
        },
        (Ok(out), None, None) => (true, format!("ok (no expectation): {out}")),
        (Ok(out), _, Some(kind)) => (false, format!("expected error {kind}, got {out}")),
        (Err(e), _, Some(want)) if e.kind().as_str() == want => {
            (true, format!("failed as expected: {e}"))
        }
        (Err(e), _, _) => (false, format!("{}: {e}", e.kind())),
    };
    CaseResult {
        name: f.name.clone(),
        passed,
        detail,
        fuel: report.fuel_used,
        micros: report.duration.as_micros() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_are_subsets_and_differences_are_named() {
        let actual = json!({"signals": [{"tier": "critical", "key": "k", "evidence": ["a"]}], "wake_at": null});
        assert!(contains(&json!({"signals": [{"tier": "critical"}]}), &actual).is_ok());
        assert!(contains(&json!({"wake_at": null}), &actual).is_ok());
        let err = contains(&json!({"signals": [{"tier": "high"}]}), &actual).unwrap_err();
        assert_eq!(
            err,
            "output.signals[0].tier: expected \"high\", got \"critical\""
        );
        let err = contains(&json!({"signals": []}), &actual).unwrap_err();
        assert!(
            err.starts_with("output.signals: expected 0 item(s), got 1"),
            "{err}"
        );
        assert!(contains(&json!({"x": 1.0}), &json!({"x": 1})).is_ok());
    }
}
