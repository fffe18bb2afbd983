//! The vendor's default triggers called together in one instance of the
//! trigger set decide exactly as they do each in an instance of its own:
//! on real tickets replayed both ways, when the set fails as a whole (its
//! triggers are then called one by one), and when one trigger goes over
//! its own fuel inside the set.

use crate::support::replayed;
use escalator::matrix::Matrix;
use escalator::model;
use escalator::pipeline::{self, Ask, Deadlines, PluginSet};
use escalator::registry::{self, LoadedPlugin};
use escalator::replay::{self, Format};
use escalator::runtime::{Runtime, RuntimeConfig, SetMember, TriggerSet, cache::wasm_digest};
use std::path::Path;

fn runtime(trigger_set: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        trigger_set,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[test]
fn the_default_triggers_in_one_instance_decide_as_each_in_its_own_on_real_tickets() {
    let (together, apart) = (runtime(true), runtime(false));
    for (name, format, n) in [
        ("twitter_care_dev.jsonl", Format::Twitter, 120),
        ("hadoop_bugs_2020_2022.csv", Format::Hadoop, 60),
    ] {
        let a = replayed(&together, &Matrix::default_matrix(), name, format, n);
        let b = replayed(&apart, &Matrix::default_matrix(), name, format, n);
        let escalated = a.iter().filter(|r| !r["tier"].is_null()).count();
        assert!(escalated > 0, "{name}: nothing escalated");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{name}");
        }
    }
    let set = together
        .trigger_set(registry::trigger_set)
        .expect("the trigger set was built");
    let stats = set.stats();
    assert!(stats.answered > 100, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(apart.trigger_set(registry::trigger_set).is_none());
}

/// A decision on a billing dispute of an unhappy enterprise customer, with
/// `plugins` on `runtime`: its runs (plugin, output or error kind, and
/// whether fuel was counted) and its tier.
fn decide(runtime: &Runtime, plugins: Vec<LoadedPlugin>) -> (Vec<(String, String)>, String) {
    let set = PluginSet::new(plugins).unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
    let ticket: model::Ticket = serde_json::from_value(serde_json::json!({
        "id": "T-1", "subject": "Charged twice", "category": "billing",
        "created_at": now - chrono::Duration::hours(30),
        "customer": {"id": "c1", "plan": "enterprise", "mrr_cents": 900000, "contacts_this_week": 4},
        "ai_analysis": {"confidence": 0.4, "category": "billing", "reasoning": "refund"},
        "messages": [{"author": "customer", "sent_at": now,
            "body": "This is the worst. You charged me twice and nobody answers. I want a manager or I call my lawyer."}]
    }))
    .unwrap();
    let state = pipeline::apply::created(ticket, "acme", now);
    let matrix = Matrix::default_matrix();
    let targets = matrix.response_targets();
    let ask = Ask {
        runtime,
        set: &set,
        roster: &[],
        targets: &targets,
        now,
        event: model::EventKind::MessageAdded,
        deadlines: Deadlines::Live,
    };
    let d = pipeline::decide(&ask, &state, &Default::default());
    let runs = d
        .runs
        .iter()
        .map(|r| {
            assert!(r.report.fuel_used > 0, "{r:?}");
            let said = match (&r.output, &r.error_kind) {
                (Some(o), _) => serde_json::to_string(o).unwrap(),
                (None, Some(k)) => format!("error {k}"),
                (None, None) => "nothing".into(),
            };
            (r.plugin.clone(), said)
        })
        .collect();
    (runs, format!("{:?}", d.tier))
}

fn defaults(runtime: &Runtime) -> Vec<LoadedPlugin> {
    replay::plugins(runtime, &Matrix::default_matrix(), None).unwrap()
}

/// A trigger set made from the built component with the given limits for
/// the set and for its `sentiment`.
fn set_with(runtime: &Runtime, set_fuel: u64, sentiment: Option<escalator::runtime::Limits>) {
    let (_, wasm) = registry::COMPONENTS
        .iter()
        .find(|(d, _)| *d == "trigger-set")
        .unwrap();
    let members: Vec<SetMember> = defaults(runtime)
        .iter()
        .filter_map(|p| {
            let name = registry::TRIGGER_SET
                .iter()
                .find(|n| **n == p.manifest.name)?;
            Some(SetMember {
                name,
                digest: wasm_digest(registry::builtin(name)?.wasm),
                limits: match (*name, sentiment) {
                    ("sentiment", Some(l)) => l,
                    _ => p.plugin.limits(),
                },
            })
        })
        .collect();
    assert_eq!(members.len(), 7);
    let mut limits = TriggerSet::limits_for(&members.iter().map(|m| m.limits).collect::<Vec<_>>());
    limits.fuel = set_fuel;
    let id = escalator::runtime::PluginId {
        name: "trigger-set".into(),
        version: "test".into(),
    };
    let plugin = runtime
        .load(id, escalator::runtime::inspect::Kind::Trigger, limits, wasm)
        .unwrap();
    let set = TriggerSet::new(plugin, members).unwrap();
    assert!(runtime.trigger_set(|_| Some(set)).is_some());
}

#[test]
fn a_set_that_fails_as_a_whole_leaves_its_triggers_to_be_called_one_by_one() {
    let apart = runtime(false);
    let want = decide(&apart, defaults(&apart));
    // A set with too little fuel for its triggers together.
    let together = runtime(true);
    set_with(&together, 50_000, None);
    let got = decide(&together, defaults(&together));
    assert_eq!(got, want);
    let stats = together.trigger_set(|_| None).unwrap().stats();
    assert!(stats.failed >= 1 && stats.answered == 0, "{stats:?}");
}

#[test]
fn a_trigger_over_its_own_fuel_inside_the_set_fails_as_it_would_alone() {
    // sentiment with 20,000 fuel: enough to start, not to score the text.
    let manifest = registry::builtin("sentiment")
        .unwrap()
        .manifest
        .replace("fuel = 500_000_000", "fuel = 20_000");
    assert!(manifest.contains("fuel = 20_000"), "{manifest}");
    let with_small_sentiment = |runtime: &Runtime| {
        let mut plugins = defaults(runtime);
        let i = plugins
            .iter()
            .position(|p| p.manifest.name == "sentiment")
            .unwrap();
        plugins[i] = registry::load_parts(
            runtime,
            &manifest,
            Path::new("builtin:sentiment/plugin.toml"),
            registry::builtin("sentiment").unwrap().wasm,
            "builtin:sentiment".into(),
        )
        .unwrap()
        .with_matrix(&Matrix::default_matrix());
        plugins
    };
    let apart = runtime(false);
    let want = decide(&apart, with_small_sentiment(&apart));
    assert!(
        want.0
            .iter()
            .any(|(p, said)| p.starts_with("sentiment@") && said == "error out-of-fuel"),
        "{want:?}"
    );
    let together = runtime(true);
    let small = with_small_sentiment(&together)
        .iter()
        .find(|p| p.manifest.name == "sentiment")
        .unwrap()
        .plugin
        .limits();
    set_with(&together, 50_000_000_000, Some(small));
    let got = decide(&together, with_small_sentiment(&together));
    assert_eq!(got, want);
    let stats = together.trigger_set(|_| None).unwrap().stats();
    assert!(stats.answered >= 1 && stats.failed == 0, "{stats:?}");
}

#[test]
fn only_a_default_trigger_with_its_own_manifests_limits_joins_the_set() {
    let runtime = runtime(true);
    let set = runtime
        .trigger_set(registry::trigger_set)
        .expect("the trigger set was built");
    let defaults = defaults(&runtime);
    let default_of = |name: &str| {
        &defaults
            .iter()
            .find(|p| p.manifest.name == name)
            .unwrap()
            .plugin
    };
    for name in registry::TRIGGER_SET {
        assert_eq!(set.member(default_of(name)), Some(*name));
    }
    // Not the router or the notifier.
    assert_eq!(set.member(default_of("skills")), None);
    assert_eq!(set.member(default_of("tiered")), None);
    // The built-in component under other limits.
    let manifest = registry::builtin("sentiment")
        .unwrap()
        .manifest
        .replace("fuel = 500_000_000", "fuel = 20_000");
    let other_limits = registry::load_parts(
        &runtime,
        &manifest,
        Path::new("builtin:sentiment/plugin.toml"),
        registry::builtin("sentiment").unwrap().wasm,
        "builtin:sentiment".into(),
    )
    .unwrap();
    assert_eq!(set.member(&other_limits.plugin), None);
    // A customer's trigger, even one named like a default.
    let customer = registry::load_parts(
        &runtime,
        "name = \"sentiment\"\nkind = \"trigger\"\nversion = \"9.9.9\"\n",
        Path::new("upload/plugin.toml"),
        &crate::support::guest_wasm("refund"),
        "upload".into(),
    )
    .unwrap();
    assert_eq!(set.member(&customer.plugin), None);
}

/// Each trigger inside a set is held to its own output and log caps, as it
/// would be alone, and one trigger's excess costs the others nothing: a
/// hostile set (`tests/guests/hostile-set`) whose `loud` answers 100 KB
/// against a 4 KiB cap and whose `chatty` logs 64 KB against a 4 KiB cap,
/// beside `fine`, which logs one line after them.
#[test]
fn a_triggers_own_output_and_log_caps_hold_inside_the_set() {
    use escalator::runtime::{Limits, PluginError, PluginId, inspect::Kind};
    use std::sync::Arc;
    let runtime = runtime(true);
    let wasm = crate::support::guest_wasm("hostile-set");
    // Each trigger's own plugin: its limits are what it is held to (its
    // code is the set's).
    let own = |name: &str, output_bytes: usize, log_bytes: usize| {
        let limits = Limits {
            output_bytes,
            log_bytes,
            ..Limits::default()
        };
        let id = PluginId {
            name: name.into(),
            version: "1.0.0".into(),
        };
        Arc::new(runtime.load(id, Kind::Trigger, limits, &wasm).unwrap())
    };
    let (loud, chatty, fine) = (
        own("loud", 4096, 16 << 10),
        own("chatty", 1 << 20, 4096),
        own("fine", 1 << 20, 16 << 10),
    );
    let named = [("loud", &loud), ("chatty", &chatty), ("fine", &fine)];
    let members: Vec<SetMember> = named
        .iter()
        .map(|(name, p)| SetMember {
            name,
            digest: p.digest().to_string(),
            limits: p.limits(),
        })
        .collect();
    let limits = TriggerSet::limits_for(&members.iter().map(|m| m.limits).collect::<Vec<_>>());
    let id = PluginId {
        name: "hostile-set".into(),
        version: "1.0.0".into(),
    };
    let set = TriggerSet::new(
        runtime.load(id, Kind::Trigger, limits, &wasm).unwrap(),
        members,
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-12-04T12:00:00Z".parse().unwrap();
    let ticket = model::Ticket {
        subject: "anything".into(),
        ..model::Ticket::new("T-1", now)
    };
    let ticket = Arc::new(pipeline::contract::ticket(&ticket));
    let ctx = pipeline::contract::context(now, model::EventKind::TicketCreated, "{}".into());
    let calls: Vec<escalator::runtime::Member<'_>> = named
        .iter()
        .map(|(name, p)| (*p, *name, ctx.clone()))
        .collect();
    let (outcomes, _) = runtime.evaluate_triggers(Some((&set, &calls)), &[], &ticket);
    let outcomes = outcomes.expect("the set's answer splits into its triggers'");
    assert_eq!(set.stats().answered, 1);
    let [loud, chatty, fine] = &outcomes[..] else {
        panic!("{} outcomes", outcomes.len())
    };
    // loud: over its own output cap, as alone.
    assert!(
        matches!(
            loud.result,
            Err(PluginError::OutputTooLarge { limit: 4096, size, .. }) if size >= 100_000
        ),
        "{:?}",
        loud.result
    );
    // fine: its line kept, nothing of chatty's counted against it.
    assert!(fine.result.is_ok(), "{:?}", fine.result);
    let lines: Vec<&str> = fine.report.log.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(lines, ["fine here"]);
    assert_eq!(fine.report.log_dropped_bytes, 0);
    // chatty: answered; its log cut at its own cap, the rest counted as
    // its own dropped bytes.
    assert!(chatty.result.is_ok(), "{:?}", chatty.result);
    let kept: usize = chatty.report.log.iter().map(|l| l.message.len()).sum();
    assert_eq!(kept, 4096, "{kept}");
    assert_eq!(chatty.report.log_dropped_bytes, 64 * 1000 - 4096);
}
