//! A plugin's configuration parsed once per version, into the memory image
//! its instances start from (`runtime::preinit`): every decision is the
//! one made parsing it per call, on real tickets; it costs less fuel; a
//! configuration other than the one kept (another matrix) is parsed as
//! before; a restart finds the pre-initialised code in the artifact
//! cache; and a hostile `configure` (a loop, a memory bomb, a panic) is
//! held to the plugin's limits at load and leaves the plugin as it was.

use crate::support::*;
use escalator::matrix::Matrix;
use escalator::pipeline::contract;
use escalator::registry::{self, LoadedPlugin};
use escalator::replay::Format;
use escalator::runtime::{Runtime, RuntimeConfig, cache::Origin};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn runtime_with(configure_ahead: bool, cache: Option<&Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        configure_ahead,
        cache_dir: cache.map(Path::to_path_buf),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// The shipped matrix with the billing scenario critical: text other
/// than the one kept ahead.
fn other_matrix() -> Matrix {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/matrix.toml"),
    )
    .unwrap()
    .replace(
        "categories = [\"billing\", \"refund\"]\ntier = \"high\"",
        "categories = [\"billing\", \"refund\"]\ntier = \"critical\"",
    );
    let m = Matrix::parse(&text, Path::new("other.toml")).unwrap();
    assert_ne!(m.to_json(), Matrix::default_matrix().to_json());
    m
}

#[test]
fn configurations_parsed_ahead_decide_as_parsed_per_call_on_real_tickets() {
    let (ahead, per_call) = (runtime_with(true, None), runtime_with(false, None));
    // Every default plugin, and the trigger set, is pre-initialised.
    for p in registry::load_builtin(&ahead).unwrap() {
        assert!(p.plugin.configured_ahead(), "{}", p.plugin.id());
    }
    for p in registry::load_builtin(&per_call).unwrap() {
        assert!(!p.plugin.configured_ahead(), "{}", p.plugin.id());
    }
    let set = ahead.trigger_set(registry::trigger_set).unwrap();
    assert!(set.plugin().configured_ahead());
    for matrix in [Matrix::default_matrix(), other_matrix()] {
        for (name, format, n) in [
            ("twitter_care_dev.jsonl", Format::Twitter, 120),
            ("hadoop_bugs_2020_2022.csv", Format::Hadoop, 60),
        ] {
            let a = replayed(&ahead, &matrix, name, format, n);
            let b = replayed(&per_call, &matrix, name, format, n);
            assert_eq!(a.len(), n);
            assert!(
                a.iter().any(|r| !r["tier"].is_null()),
                "{name}: nothing escalated"
            );
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{name}");
            }
        }
    }
    assert_eq!(set.stats().failed, 0);
}

#[test]
fn a_call_with_the_kept_configuration_burns_less_fuel_and_other_text_parses_its_own() {
    let (ahead, per_call) = (runtime_with(true, None), runtime_with(false, None));
    let ticket = Arc::new(contract::ticket(&ticket(
        "Charged twice",
        &["This is the third time. If this is not fixed today I will cancel my account."],
    )));
    let call = |rt: &Runtime, p: &LoadedPlugin| {
        let out = rt.evaluate(&p.plugin, &ticket, &ctx(&p.config_json));
        (out.result.unwrap(), out.report.fuel_used)
    };
    for name in ["ai-confidence", "sla", "scenario", "phrases"] {
        let (a, b) = (builtin_on(&ahead, name), builtin_on(&per_call, name));
        let (ea, fa) = call(&ahead, &a);
        let (eb, fb) = call(&per_call, &b);
        assert_eq!(ea, eb, "{name}");
        // Fuel counts instructions: the parse is gone from the call.
        assert!(fa < fb, "{name}: {fa} fuel ahead, {fb} per call");
        // Another matrix (sla and scenario take it in their
        // configuration): parsed in the call, as without the image.
        let (a2, b2) = (
            a.clone().with_matrix(&other_matrix()),
            b.with_matrix(&other_matrix()),
        );
        let (ea2, fa2) = call(&ahead, &a2);
        let (eb2, fb2) = call(&per_call, &b2);
        assert_eq!(ea2, eb2, "{name}");
        if a2.config_json != a.config_json {
            assert!(
                fa2 > fa,
                "{name}: {fa2} with other text, {fa} with the kept"
            );
            // Parsing in the call costs what it did, give or take the
            // comparison with the kept text.
            assert!(fa2.abs_diff(fb2) * 100 < fb2, "{name}: {fa2} against {fb2}");
            // Loaded for that matrix (as a server with its own matrix
            // loads its plugins), that text is the one kept.
            let b = registry::builtin(name).unwrap();
            let a3 = registry::load_parts_with(
                &ahead,
                b.manifest,
                Path::new("p"),
                b.wasm,
                name.into(),
                &other_matrix(),
            )
            .unwrap();
            assert_eq!(a3.config_json, a2.config_json);
            let (ea3, fa3) = call(&ahead, &a3);
            assert_eq!(ea3, ea2, "{name}");
            assert!(fa3 < fb2, "{name}: {fa3} kept for the matrix, {fb2} parsed");
        }
    }
}

#[test]
fn a_restart_finds_the_pre_initialised_code_in_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime_with(true, Some(dir.path()));
    let p = builtin_on(&first, "sla");
    assert!(p.plugin.configured_ahead());
    assert_eq!(p.plugin.origin(), Origin::Compiled);
    drop(first);
    let again = runtime_with(true, Some(dir.path()));
    let q = builtin_on(&again, "sla");
    assert!(q.plugin.configured_ahead());
    assert_eq!(q.plugin.code_digest(), p.plugin.code_digest());
    assert_eq!(q.plugin.origin(), Origin::Cached);
    // With a code budget, a restart registers it without loading, and its
    // first call loads the pre-initialised code from the disk (its bytes
    // kept beside it, checked against their own digest).
    let budget = || {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            resident_code_bytes: 64 << 20,
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let t = Arc::new(contract::ticket(&ticket("x", &["hello"])));
    let first = budget();
    let loaded = builtin_on(&first, "sla");
    let want = first.evaluate(&loaded.plugin, &t, &ctx(&loaded.config_json));
    let (digest, code_digest) = (
        loaded.plugin.digest().to_string(),
        loaded.plugin.code_digest().to_string(),
    );
    drop((loaded, first));
    let restarted = budget();
    let b = registry::builtin("sla").unwrap();
    let registered = registry::register_parts(
        &restarted,
        b.manifest,
        Path::new("builtin:sla/plugin.toml"),
        &digest,
        b.wasm.len(),
        "sla".into(),
    )
    .unwrap()
    .expect("registered without loading");
    assert_eq!(registered.plugin.origin(), Origin::Deferred);
    assert_eq!(registered.plugin.code_digest(), code_digest);
    assert_eq!(restarted.resident_code().components, 0);
    let out = restarted.evaluate(&registered.plugin, &t, &ctx(&registered.config_json));
    assert_eq!(out.result.unwrap(), want.result.unwrap());
    // The configured code ran (the original would burn more fuel), and it
    // alone was loaded.
    assert_eq!(out.report.fuel_used, want.report.fuel_used);
    assert_eq!(restarted.resident_code().components, 1);
}

fn builtin_on(rt: &Runtime, name: &str) -> LoadedPlugin {
    let b = registry::builtin(name).unwrap();
    registry::load_parts(
        rt,
        b.manifest,
        &PathBuf::from(format!("builtin:{name}/plugin.toml")),
        b.wasm,
        name.into(),
    )
    .unwrap()
}

#[test]
fn a_hostile_configure_is_held_to_the_plugins_limits_at_load_and_changes_nothing() {
    for (how, limits, fails_with) in [
        (
            "loop",
            "fuel = 5_000_000\ntimeout-ms = 2_000",
            "ran out of fuel",
        ),
        ("membomb", "memory-mib = 16", "memory"),
        ("panic", "", "boom while configured"),
    ] {
        let manifest = format!("[limits]\n{limits}\n[config]\nconfigure = \"{how}\"\n");
        let p = load("hostile", "trigger", &manifest, &guest_wasm("hostile"))
            .unwrap_or_else(|e| panic!("{how}: the plugin loads: {e}"));
        // Its configuration could not be kept: the plugin is as it was,
        // and each call fails as it would have, then the host goes on.
        assert!(!p.plugin.configured_ahead(), "{how}");
        let err = evaluate(&p, "behave").result.unwrap_err().to_string();
        assert!(err.contains(fails_with), "{how}: {err}");
    }
    // A well-behaved configuration of the same component is kept.
    let fine = load(
        "hostile",
        "trigger",
        "[config]\nconfigure = \"nothing\"\n",
        &guest_wasm("hostile"),
    )
    .unwrap();
    assert!(fine.plugin.configured_ahead());
    assert_eq!(
        evaluate(&fine, "behave").result.unwrap().signals[0].key,
        "hostile:ok"
    );
}

#[test]
fn configurations_beyond_the_most_kept_per_component_share_the_components_own_code() {
    let runtime = Runtime::new(RuntimeConfig {
        configured_variants: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let b = registry::builtin("phrases").unwrap();
    let load = |critical: &str| {
        let manifest = format!(
            "name = \"p-{}\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n\
             [config]\ncritical = [\"{critical}\"]\n",
            critical.len()
        );
        registry::load_parts(&runtime, &manifest, Path::new("p"), b.wasm, "p".into()).unwrap()
    };
    let (one, two) = (load("refund now"), load("lawyer"));
    // The same configuration again: the variant made for it.
    let one_again = load("refund now");
    let three = load("cancel");
    assert!(one.plugin.configured_ahead() && two.plugin.configured_ahead());
    assert_eq!(one_again.plugin.code_digest(), one.plugin.code_digest());
    assert_eq!(one_again.plugin.origin(), Origin::Shared);
    // A third way: the component's own code, shared, parsed per call.
    assert!(!three.plugin.configured_ahead());
    let t = Arc::new(contract::ticket(&ticket(
        "x",
        &["I will cancel, my lawyer says"],
    )));
    for (p, want) in [
        (&one, None),
        (&two, Some("lawyer")),
        (&three, Some("cancel")),
    ] {
        let e = runtime
            .evaluate(&p.plugin, &t, &ctx(&p.config_json))
            .result
            .unwrap();
        let got = e.signals.first().map(|s| s.reason.clone());
        match want {
            None => assert!(got.is_none(), "{got:?}"),
            Some(w) => assert!(got.as_deref().is_some_and(|r| r.contains(w)), "{got:?}"),
        }
    }
}

#[test]
fn only_components_exporting_configure_and_importing_no_wasi_are_tried() {
    use escalator::runtime::preinit::worth_trying;
    let phrases = registry::builtin("phrases").unwrap().wasm;
    assert!(worth_trying(phrases, "configure"));
    assert!(!worth_trying(phrases, "configure-each"));
    let (_, set) = registry::COMPONENTS
        .iter()
        .find(|(d, _)| *d == "trigger-set")
        .unwrap();
    assert!(worth_trying(set, "configure-each"));
    // An SDK plugin built with std imports WASI: its `configure` is not
    // run at load (the call's WASI context is built per call).
    assert!(!worth_trying(&guest_wasm("wasi-probe"), "configure"));
    // A core module exporting `configure` inside a component, a core
    // module alone, and bytes that are not wasm: not a component's export.
    assert!(!worth_trying(
        &component_importing(Some("x:y/z")),
        "evaluate"
    ));
    assert!(!worth_trying(
        &core_module_exporting("configure"),
        "configure"
    ));
    assert!(!worth_trying(b"not wasm at all", "configure"));
}
