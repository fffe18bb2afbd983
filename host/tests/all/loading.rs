//! Loading components: every kind runs; wrong, malformed and over-reaching
//! components are refused at load with a clear message; the artifact cache.

use crate::support::*;
use escalator::model;
use escalator::pipeline::PluginSet;
use escalator::pipeline::contract;
use escalator::registry::{self, RegistryError};
use escalator::runtime::cache::Origin;
use escalator::runtime::wit;
use escalator::runtime::{LoadError, Runtime, RuntimeConfig};

fn load_error(r: Result<registry::LoadedPlugin, RegistryError>) -> (LoadError, String) {
    match r {
        Err(RegistryError::Load(e)) => {
            let msg = e.to_string();
            (e, msg)
        }
        Err(other) => panic!("expected a load error, got {other}"),
        Ok(p) => panic!("expected a load error, but {} loaded", p.plugin.id()),
    }
}

#[test]
fn a_trigger_returns_typed_signals() {
    let p = builtin("phrases");
    let t = ticket("Refund", &["I will talk to my lawyer about this"]);
    let out = runtime().evaluate(
        &p.plugin,
        &std::sync::Arc::new(contract::ticket(&t)),
        &ctx(&p.config_json),
    );
    let eval = out.result.expect("phrases succeeds");
    assert_eq!(eval.signals.len(), 1);
    let s = &eval.signals[0];
    assert_eq!(
        (s.tier, s.action, s.key.as_str()),
        (
            wit::Tier::Critical,
            wit::SignalAction::Escalate,
            "phrases:critical"
        )
    );
    assert!(s.evidence[0].contains("lawyer"), "{:?}", s.evidence);
    assert!(out.report.fuel_used > 0 && out.report.peak_memory_bytes > 0);
}

#[test]
fn a_router_returns_a_typed_routing_with_fallbacks() {
    let p = builtin("skills");
    let roster: Vec<model::Agent> = serde_json::from_str(
        r#"[{"id":"ana","team":"billing","skills":["billing"]},
            {"id":"bo","team":"billing","skills":["billing"],"status":"away"},
            {"id":"lee","team":"billing","role":"lead"}]"#,
    )
    .unwrap();
    let roster: Vec<_> = roster
        .iter()
        .map(|a| contract::agent(a, noon()).unwrap())
        .collect();
    let esc = wit::Escalation {
        tier: wit::Tier::Critical,
        signals: vec![],
        response_target: Some(1_800_000),
    };
    let t = std::sync::Arc::new(contract::ticket(&ticket("Charged twice", &["help"])));
    let routing = runtime()
        .route(
            &p.plugin,
            &t,
            esc.clone(),
            &std::sync::Arc::new(roster),
            ctx(&p.config_json),
        )
        .result
        .expect("skills succeeds");
    assert_eq!(routing.target, wit::Target::Agent("ana".into()));
    let path: Vec<_> = routing
        .fallback
        .iter()
        .map(|f| (f.after, f.target.clone()))
        .collect();
    assert_eq!(
        path,
        vec![
            (900_000, wit::Target::Agent("lee".into())),
            (1_800_000, wit::Target::Queue("support".into()))
        ]
    );
}

#[test]
fn a_notifier_returns_a_typed_plan() {
    let p = builtin("tiered");
    let esc = wit::Escalation {
        tier: wit::Tier::High,
        signals: vec![],
        response_target: Some(4 * 3_600_000),
    };
    let routing = wit::Routing {
        target: wit::Target::Agent("ana".into()),
        reason: "specialist".into(),
        fallback: vec![],
    };
    let t = std::sync::Arc::new(contract::ticket(&ticket("Charged twice", &["help"])));
    let plan = runtime()
        .plan(
            &p.plugin,
            &t,
            esc,
            routing,
            &std::sync::Arc::new(vec![]),
            ctx(&p.config_json),
        )
        .result
        .expect("tiered succeeds");
    let first: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.delay == 0)
        .map(|s| s.channel)
        .collect();
    assert_eq!(first, vec![wit::Channel::Slack, wit::Channel::InApp]);
    assert!(
        plan.steps[0].title.starts_with("High escalation"),
        "{}",
        plan.steps[0].title
    );
}

#[test]
fn a_component_of_the_wrong_world_is_refused_at_load() {
    let wasm = registry::builtin("phrases").unwrap().wasm;
    let (err, msg) = load_error(load("mislabelled", "router", "", wasm));
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    assert!(
        msg.contains("manifest says kind = \"router\"")
            && msg.contains("implements the trigger world"),
        "{msg}"
    );
}

#[test]
fn a_component_implementing_no_plugin_world_is_refused() {
    let wasm = crate::support::component_importing(None);
    let (err, msg) = load_error(load("empty", "trigger", "", &wasm));
    assert!(
        matches!(err, LoadError::WrongWorld { found: None, .. }),
        "{err:?}"
    );
    assert!(msg.contains("exports none of"), "{msg}");
}

#[test]
fn malformed_files_are_refused_with_what_is_wrong() {
    let (_, msg) = load_error(load("junk", "trigger", "", b"definitely not wasm"));
    assert!(msg.contains("not a WebAssembly file"), "{msg}");

    let core = crate::support::core_module_exporting("evaluate");
    let (_, msg) = load_error(load("core", "trigger", "", &core));
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );

    let phrases = registry::builtin("phrases").unwrap().wasm;
    let (err, msg) = load_error(load(
        "truncated",
        "trigger",
        "",
        &phrases[..phrases.len() / 2],
    ));
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
    assert!(
        msg.starts_with("truncated@1.0.0: component does not compile"),
        "{msg}"
    );
}

#[test]
fn a_component_importing_sockets_loads_but_cannot_connect() {
    // Sockets are linked (runtimes such as Python's import them) and every
    // call is denied.
    let p = load("phone-home", "trigger", "", &guest_wasm("sockets")).expect("it loads");
    assert!(
        p.plugin
            .inspection()
            .imports
            .iter()
            .any(|i| i.name.starts_with("wasi:sockets/tcp"))
    );
    let out = evaluate(&p, "call home");
    let err = out.result.expect_err("no connection succeeds");
    let msg = err.to_string();
    assert!(msg.contains("could not connect"), "{msg}");
    assert!(
        msg.to_lowercase().contains("denied") || msg.to_lowercase().contains("not permitted"),
        "{msg}"
    );
}

#[test]
fn default_plugins_import_nothing_but_the_contract() {
    for b in registry::DEFAULT_PLUGINS {
        let p = registry::load_parts(
            runtime(),
            b.manifest,
            std::path::Path::new(b.dir),
            b.wasm,
            b.dir.into(),
        )
        .unwrap();
        let i = p.plugin.inspection();
        assert!(!i.uses_wasi, "{} imports WASI: {:?}", b.dir, i.imports);
        assert_eq!(i.contract.as_deref(), Some("0.1.0"));
    }
}

#[test]
fn bad_manifests_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"x\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n[limits]\nfuel = 0\n",
    )
    .unwrap();
    let err = registry::load_path(runtime(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plugin.toml") && err.contains("limits.fuel = 0"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"x\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    let err = registry::load_path(runtime(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no .wasm component"), "{err}");
}

#[test]
fn a_plugin_directory_loads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hostile.wasm"), guest_wasm("hostile")).unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"hostile\"\nkind = \"trigger\"\nversion = \"0.0.1\"\n",
    )
    .unwrap();
    let p = registry::load_path(runtime(), dir.path()).unwrap();
    assert_eq!(p.plugin.id().to_string(), "hostile@0.0.1");
    assert!(evaluate(&p, "fine").result.is_ok());
}

#[test]
fn the_same_ticket_at_the_same_time_gives_the_same_output_and_fuel() {
    for p in [
        builtin("phrases"),
        // Roomy time: its many WASI calls run the host's unoptimised test
        // build, and what is compared is the output, not the speed.
        load(
            "probe",
            "trigger",
            "[limits]\nfuel = 10_000_000_000\ntimeout-ms = 10_000\n",
            &guest_wasm("wasi-probe"),
        )
        .unwrap(),
    ] {
        let t = std::sync::Arc::new(contract::ticket(&ticket(
            "This is unacceptable",
            &["cancel my account", "GDPR request now"],
        )));
        let a = runtime().evaluate(&p.plugin, &t, &ctx(&p.config_json));
        let b = runtime().evaluate(&p.plugin, &t, &ctx(&p.config_json));
        assert_eq!(
            a.result.as_ref().unwrap(),
            b.result.as_ref().unwrap(),
            "{}",
            p.plugin.id()
        );
        assert_eq!(a.report.fuel_used, b.report.fuel_used, "{}", p.plugin.id());
        assert_eq!(a.report.log, b.report.log);
    }
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn compiled_components_are_cached_on_disk_and_survive_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let wasm = registry::builtin("phrases").unwrap().wasm;
    let manifest = registry::builtin("phrases").unwrap().manifest;
    let path = std::path::Path::new("phrases/plugin.toml");

    let first = Runtime::new(config()).unwrap();
    let p1 = registry::load_parts(&first, manifest, path, wasm, "a".into()).unwrap();
    assert_eq!(p1.plugin.origin(), Origin::Compiled);
    drop(first);

    let second = Runtime::new(config()).unwrap();
    let p2 = registry::load_parts(&second, manifest, path, wasm, "b".into()).unwrap();
    assert_eq!(p2.plugin.origin(), Origin::Cached);
    let t = std::sync::Arc::new(contract::ticket(&ticket("x", &["my lawyer"])));
    let out = second
        .evaluate(&p2.plugin, &t, &ctx(&p2.config_json))
        .result
        .unwrap();
    assert_eq!(out.signals[0].key, "phrases:critical");

    // Compiled functions are kept too (the function cache).
    let functions = files_under(&dir.path().join("functions"));
    assert!(
        functions.len() > 100,
        "{} compiled functions kept",
        functions.len()
    );

    // Damaged artifacts and functions are discarded and compiled again,
    // not trusted.
    for f in files_under(dir.path()) {
        std::fs::write(f, b"garbage").unwrap();
    }
    let third = Runtime::new(config()).unwrap();
    let p3 = registry::load_parts(&third, manifest, path, wasm, "c".into()).unwrap();
    assert_eq!(p3.plugin.origin(), Origin::Compiled);
    assert!(
        third
            .evaluate(&p3.plugin, &t, &ctx(&p3.config_json))
            .result
            .is_ok()
    );
}

#[test]
fn many_threads_share_one_plugin_without_interference() {
    let p = builtin("phrases");
    std::thread::scope(|s| {
        for i in 0..8 {
            let p = &p;
            s.spawn(move || {
                for j in 0..50 {
                    let body = if (i + j) % 2 == 0 {
                        "speak to your manager"
                    } else {
                        "thanks"
                    };
                    let t = std::sync::Arc::new(contract::ticket(&ticket("q", &[body])));
                    let out = runtime()
                        .evaluate(&p.plugin, &t, &ctx(&p.config_json))
                        .result
                        .unwrap();
                    assert_eq!(out.signals.len(), usize::from((i + j) % 2 == 0));
                }
            });
        }
    });
}

#[test]
fn composition_keeps_every_reason_takes_the_highest_tier_and_applies_error_policies() {
    let hostile = guest_wasm("hostile");
    let plugins = vec![
        builtin("phrases"),
        // Fails on this ticket (its subject is "panic"): escalates by policy.
        load(
            "strict",
            "trigger",
            "[on-error]\naction = \"escalate\"\ntier = \"high\"\n",
            &hostile,
        )
        .unwrap(),
        // Fails too, but its policy is to ignore.
        load("lenient", "trigger", "", &hostile).unwrap(),
        // Shadow: recorded, not acted on.
        load(
            "shadowed",
            "trigger",
            "mode = \"shadow\"\n",
            registry::builtin("phrases").unwrap().wasm,
        )
        .unwrap(),
        builtin("skills"),
        builtin("tiered"),
    ];
    let set = PluginSet::new(plugins).unwrap();
    let t = ticket("panic", &["speak to your manager", "or a real person"]);
    let d = crate::support::decide(&set, &t, &[], noon(), model::EventKind::MessageAdded);
    assert_eq!(d.tier, Some(model::Tier::High));
    let keys: Vec<&str> = d.signals.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "phrases:high",
            "phrases:human-request",
            "plugin-error:strict:trap"
        ]
    );
    assert_eq!(d.shadow_signals.len(), 2);
    // The active and the shadow trap each fail once per trigger pass: the
    // ticket escalates, so the triggers are asked again for the new tier
    // (as the server always did; the decider is now the same everywhere).
    assert_eq!(
        d.runs
            .iter()
            .filter(|r| r.error_kind.is_some_and(|k| k == "trap"))
            .count(),
        4
    );
    assert_eq!(
        d.routing().unwrap().target,
        model::Target::Queue("support".into())
    );
    assert!(
        d.plan()
            .unwrap()
            .steps
            .iter()
            .any(|s| s.channel == model::Channel::Slack)
    );
}

#[test]
fn two_active_routers_are_a_configuration_error() {
    let err = PluginSet::new(vec![builtin("skills"), {
        let b = registry::builtin("skills").unwrap();
        registry::load_parts(
            runtime(),
            &b.manifest.replace("0.1.0", "0.2.0"),
            std::path::Path::new("x"),
            b.wasm,
            "x".into(),
        )
        .unwrap()
    }])
    .unwrap_err();
    assert!(
        err.contains("two active routers")
            && err.contains("skills@0.1.0")
            && err.contains("skills@0.2.0"),
        "{err}"
    );
}

#[test]
fn a_component_sharing_code_with_one_compiled_before_reuses_its_compiled_functions() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let load = |runtime: &Runtime, name: &str| {
        let b = registry::builtin(name).unwrap();
        registry::load_parts(
            runtime,
            b.manifest,
            std::path::Path::new(name),
            b.wasm,
            name.into(),
        )
        .unwrap()
    };
    let runtime = Runtime::new(config()).unwrap();
    load(&runtime, "phrases");
    let first = runtime.function_cache().unwrap();
    assert!(first.misses > 100, "{first:?}");
    // Another plugin built with the same SDK and std: a part of it is
    // found compiled.
    load(&runtime, "sentiment");
    let second = runtime.function_cache().unwrap();
    assert!(second.hits > first.hits + 100, "{first:?} then {second:?}");
    // Another process (a fresh runtime on the same directory) finds them on
    // disk: the same component, its artifact removed, compiles from them.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    let again = Runtime::new(config()).unwrap();
    let p = load(&again, "sentiment");
    assert_eq!(p.plugin.origin(), Origin::Compiled);
    // (Most: the compiler does not give every function the same key in
    // every compile; about a tenth differ from one run to the next.)
    let stats = again.function_cache().unwrap();
    assert!(
        stats.hits >= 4 * stats.misses,
        "most functions found compiled: {stats:?}"
    );
    let t = std::sync::Arc::new(contract::ticket(&ticket(
        "x",
        &["this is terrible, I am furious"],
    )));
    assert!(
        again
            .evaluate(&p.plugin, &t, &ctx(&p.config_json))
            .result
            .is_ok()
    );
}

#[test]
fn plugins_loaded_from_the_same_bytes_share_their_code_while_one_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        // Configured ahead, each configuration is a component of its own
        // (`configured::…_share_the_components_own_code`).
        configure_ahead: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let b = registry::builtin("phrases").unwrap();
    let path = std::path::Path::new("phrases/plugin.toml");
    let load = |manifest: &str, source: &str| {
        registry::load_parts(&runtime, manifest, path, b.wasm, source.into())
    };
    // Two tenants' plugins from the same component, configured apart.
    let a = load(b.manifest, "a").unwrap();
    let other = "name = \"my-phrases\"\nkind = \"trigger\"\nversion = \"2.0.0\"\n\
                 [config]\ncritical = [\"refund now\"]\n";
    let c = load(other, "c").unwrap();
    assert_eq!(a.plugin.origin(), Origin::Compiled);
    assert_eq!(c.plugin.origin(), Origin::Shared);
    assert_eq!(c.plugin.id().name, "my-phrases");
    // Each still runs with its own configuration.
    let t = std::sync::Arc::new(contract::ticket(&ticket("x", &["please refund now"])));
    let out_a = runtime
        .evaluate(&a.plugin, &t, &ctx(&a.config_json))
        .result
        .unwrap();
    let out_c = runtime
        .evaluate(&c.plugin, &t, &ctx(&c.config_json))
        .result
        .unwrap();
    assert!(out_a.signals.is_empty(), "{out_a:?}");
    assert_eq!(out_c.signals[0].key, "phrases:critical");
    // The same bytes as another kind are still refused.
    let router = "name = \"r\"\nkind = \"router\"\nversion = \"1.0.0\"\n";
    assert!(matches!(
        load(router, "r"),
        Err(registry::RegistryError::Load(
            escalator::runtime::LoadError::WrongWorld { .. }
        ))
    ));
    // Once no plugin uses the code, it is gone from memory: the next load
    // comes from the artifact cache.
    drop((a, c));
    assert_eq!(
        load(b.manifest, "d").unwrap().plugin.origin(),
        Origin::Cached
    );
}

#[test]
fn code_beyond_the_resident_budget_is_dropped_and_loaded_again_when_called() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        // Smaller than any component: only the code used last stays.
        resident_code_bytes: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let load = |name: &str| {
        let b = registry::builtin(name).unwrap();
        registry::load_parts(
            &runtime,
            b.manifest,
            std::path::Path::new(name),
            b.wasm,
            name.into(),
        )
        .unwrap()
    };
    let phrases = load("phrases");
    let sentiment = load("sentiment");
    let r = runtime.resident_code();
    assert_eq!((r.components, r.budget), (1, 1), "{r:?}");
    let t = std::sync::Arc::new(contract::ticket(&ticket("x", &["my lawyer will call"])));
    let call = |p: &escalator::registry::LoadedPlugin| {
        runtime.evaluate(&p.plugin, &t, &ctx(&p.config_json)).result
    };
    // Each call finds its code (loaded again when it was dropped).
    for _ in 0..3 {
        assert_eq!(call(&phrases).unwrap().signals[0].key, "phrases:critical");
        assert!(call(&sentiment).is_ok());
    }
    assert_eq!(runtime.resident_code().components, 1);
    // The artifact gone (a cleaned cache): compiled again from the bytes
    // kept beside it. (Its code is the component with its configuration
    // parsed ahead, kept under a digest of its own.)
    assert!(phrases.plugin.configured_ahead());
    let digest = phrases.plugin.code_digest().to_string();
    for f in files_under(dir.path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(&digest) && name.ends_with(".cwasm") {
            std::fs::remove_file(f).unwrap();
        }
    }
    assert_eq!(call(&phrases).unwrap().signals[0].key, "phrases:critical");
    // Bytes and artifact both gone: the call fails with an error that says
    // so; the other plugin is not affected.
    assert!(call(&sentiment).is_ok());
    for f in files_under(dir.path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(&digest) {
            std::fs::remove_file(f).unwrap();
        }
    }
    // The original component's code, which parses its configuration per
    // call, takes over.
    assert_eq!(call(&phrases).unwrap().signals[0].key, "phrases:critical");
    // Its bytes and artifact gone too (and its code dropped from memory
    // for the other plugin's): the call fails with an error that says so.
    assert!(call(&sentiment).is_ok());
    let original = phrases.plugin.digest().to_string();
    for f in files_under(dir.path()) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with(&original) {
            std::fs::remove_file(f).unwrap();
        }
    }
    let err = call(&phrases).unwrap_err().to_string();
    assert!(err.contains("no longer kept"), "{err}");
    assert!(call(&sentiment).is_ok());
    // Without a budget every plugin keeps its code.
    let keep = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().join("other")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let b = registry::builtin("phrases").unwrap();
    registry::load_parts(
        &keep,
        b.manifest,
        std::path::Path::new("p"),
        b.wasm,
        "p".into(),
    )
    .unwrap();
    assert_eq!(keep.resident_code().budget, 0);
}
