//! Hot swap and the plugin lifecycle: swaps under a steady stream of
//! events, refused uploads, the directory watcher, shadow reports, the
//! crash-loop guard, and restarts.

use crate::serve::{Api, Escalator};
use base64::Engine as _;
use escalator::engine::{Engine, Upload};
use escalator::registry::{self, fixtures::Fixture};
use escalator::runtime::{Runtime, RuntimeConfig};
use escalator::store::{Durability, SqliteStore, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const T0: &str = "2026-11-27T12:00:00Z";

/// A `phrases` manifest at `version` where "lawyer" is a phrase of `tier`.
pub(crate) fn phrases_manifest(version: &str, tier: &str) -> String {
    let mut config = String::new();
    for t in ["critical", "high", "medium"] {
        let phrases = if t == tier { "[\"lawyer\"]" } else { "[]" };
        config.push_str(&format!("{t} = {phrases}\n"));
    }
    format!(
        "name = \"phrases\"\nkind = \"trigger\"\nversion = \"{version}\"\n\
         [on-error]\naction = \"ignore\"\n[config]\n{config}"
    )
}

pub(crate) fn builtin_wasm(name: &str) -> Vec<u8> {
    registry::builtin(name).unwrap().wasm.to_vec()
}

pub(crate) fn lawyer_fixture(tier: &str) -> Fixture {
    serde_json::from_value(json!({
        "name": format!("lawyer is {tier}"),
        "ticket": {"id": "F-1", "created_at": T0,
                   "messages": [{"author": "customer", "body": "I will call my lawyer", "sent_at": T0}]},
        "expect": {"signals": [{"tier": tier, "key": format!("phrases:{tier}")}]}
    }))
    .unwrap()
}

fn upload(version: &str, tier: &str) -> Upload {
    Upload {
        manifest: phrases_manifest(version, tier),
        wasm: builtin_wasm("phrases"),
        fixtures: vec![lawyer_fixture(tier)],
        source: "test".into(),
        quota: None,
    }
}

#[test]
fn swapping_a_trigger_back_and_forth_under_a_stream_of_events_never_splits_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("cache")),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let store: Arc<Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), Durability::Process).unwrap());
    let engine = Arc::new(crate::support::builtin_engine(store.clone(), &runtime, T0));
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "x", T0.parse().unwrap()))
        .unwrap();
    engine
        .upload("acme", upload("1.0.0", "critical"), "test", true)
        .unwrap();
    engine
        .upload("acme", upload("2.0.0", "high"), "test", false)
        .unwrap();

    // The phases are counted, not timed (a loaded machine only makes the
    // test slower): 100 evaluations with no swap, then at least 100 swaps
    // (every fifth a rollback) and 300 evaluations that began after the
    // first swap.
    let stop = Arc::new(AtomicBool::new(false));
    let swapping = Arc::new(AtomicBool::new(false));
    let (alone, during_swaps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut streams = Vec::new();
    for c in 0..3 {
        let (engine, stop, swapping) = (engine.clone(), stop.clone(), swapping.clone());
        let (alone, during_swaps) = (alone.clone(), during_swaps.clone());
        streams.push(std::thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let ticket: escalator::model::Ticket = serde_json::from_value(json!({
                    "id": format!("S-{c}-{i}"), "created_at": T0, "category": "account",
                    "messages": [{"author": "customer", "body": "I will call my lawyer", "sent_at": T0}]
                }))
                .unwrap();
                let swapped = swapping.load(Ordering::SeqCst);
                let t = Instant::now();
                engine
                    .create_ticket("acme", ticket, None)
                    .expect("no evaluation fails during swaps");
                latencies.push((swapped, t.elapsed()));
                if swapped { &during_swaps } else { &alone }.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            latencies
        }));
    }
    while alone.load(Ordering::SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    swapping.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut swaps = 0;
    while swaps < 100 || during_swaps.load(Ordering::SeqCst) < 300 {
        let v = if swaps % 2 == 0 { "2.0.0" } else { "1.0.0" };
        if swaps % 5 == 4 {
            engine.rollback("acme", "phrases", "test").unwrap();
        } else {
            engine.activate("acme", "phrases", v, "test").unwrap();
        }
        swaps += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    let swap_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let all: Vec<(bool, Duration)> = streams
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let n = all.len();
    let summary = |mut l: Vec<Duration>| {
        l.sort();
        let k = l.len();
        format!(
            "{k} evaluations, p50 {:?} p99 {:?} max {:?}",
            l[k / 2],
            l[k * 99 / 100],
            l[k - 1]
        )
    };
    let phase = |swapped: bool| -> Vec<Duration> {
        all.iter()
            .filter(|(s, _)| *s == swapped)
            .map(|x| x.1)
            .collect()
    };
    eprintln!("hot swap: without swaps: {}", summary(phase(false)));
    eprintln!(
        "hot swap: during {swaps} swaps in {swap_time:?}: {}",
        summary(phase(true))
    );

    // Every decision ran one phrases version, and its tier is that version's.
    let mut by_version = std::collections::BTreeMap::<String, usize>::new();
    for c in 0..3 {
        for i in 0.. {
            let id = format!("S-{c}-{i}");
            let decisions = store.decisions("acme", &id).unwrap();
            let Some(d) = decisions.first() else { break };
            // (An escalation asks the triggers twice, once more for the
            // new tier: both calls are of the same set.)
            let versions: Vec<&str> = d
                .audit
                .iter()
                .filter_map(|a| a["plugin"].as_str())
                .filter(|p| p.starts_with("phrases@"))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(versions.len(), 1, "{id}: {versions:?}");
            let keys: Vec<&str> = d.data["signals"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["key"].as_str())
                .filter(|k| k.starts_with("phrases:"))
                .collect();
            let expected = match versions[0] {
                "phrases@1.0.0" => "phrases:critical",
                "phrases@2.0.0" => "phrases:high",
                other => panic!("{id}: unexpected {other}"),
            };
            assert_eq!(keys, [expected], "{id} decided by {}", versions[0]);
            assert!(d.data["plugin_set"].as_u64().unwrap() > 0);
            *by_version.entry(versions[0].to_string()).or_default() += 1;
        }
    }
    assert_eq!(by_version.values().sum::<usize>(), n);
    assert!(
        by_version.len() == 2,
        "both versions served: {by_version:?}"
    );
}

pub(crate) fn upload_body(manifest: &str, wasm: &[u8], fixtures: Value) -> Value {
    json!({
        "manifest": manifest,
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "fixtures": fixtures,
    })
}

pub(crate) fn active_version(api: &Api, name: &str) -> Option<(String, String)> {
    let list = api.ok("GET", "/v1/plugins", None);
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| {
            (
                p["version"].as_str().unwrap().to_string(),
                p["mode"].as_str().unwrap().to_string(),
            )
        })
}

pub(crate) fn phrase_tier(api: &Api, id: &str) -> Option<String> {
    let out = api.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": id, "created_at": T0, "category": "account",
            "messages": [{"author": "customer", "body": "I will call my lawyer", "sent_at": T0}]})),
    );
    out["new_signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"].as_str().unwrap().starts_with("phrases:"))
        .map(|s| s["tier"].as_str().unwrap().to_string())
}

#[test]
fn refused_uploads_never_serve_and_versions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Escalator::start(&data, T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    let v1 = upload_body(
        &phrases_manifest("1.0.0", "high"),
        &builtin_wasm("phrases"),
        json!([serde_json::to_value(lawyer_fixture("high")).unwrap()]),
    );
    let out = acme.ok("POST", "/v1/plugins", Some(v1));
    assert_eq!(out["fixtures"][0]["passed"], true, "{out}");
    assert_eq!(
        active_version(&acme, "phrases"),
        Some(("1.0.0".into(), "active".into()))
    );
    assert_eq!(phrase_tier(&acme, "A-1").as_deref(), Some("high"));

    // Wrong world: a router's component under a trigger manifest.
    let (s, v) = acme.call(
        "POST",
        "/v1/plugins",
        Some(upload_body(
            &phrases_manifest("2.0.0", "critical"),
            &builtin_wasm("skills"),
            json!([]),
        )),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "plugin.refused", "{v}");
    assert!(v["error"].as_str().unwrap().contains("router"), "{v}");
    // A fixture the version does not pass.
    let (s, v) = acme.call(
        "POST",
        "/v1/plugins",
        Some(upload_body(
            &phrases_manifest("2.0.1", "critical"),
            &builtin_wasm("phrases"),
            json!([serde_json::to_value(lawyer_fixture("high")).unwrap()]),
        )),
    );
    assert_eq!(s, 422, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("failed 1 of 1 fixture") && e.contains("lawyer is high"),
        "{e}"
    );
    // Limits over the maximum.
    let over = format!(
        "{}[limits]\nfuel = 999_999_999_999_999\n",
        phrases_manifest("2.0.2", "critical")
    );
    let (s, v) = acme.call(
        "POST",
        "/v1/plugins",
        Some(upload_body(&over, &builtin_wasm("phrases"), json!([]))),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "plugin.refused", "{v}");
    assert!(v["error"].as_str().unwrap().contains("fuel"), "{v}");
    // Not a component at all.
    let (s, _) = acme.call(
        "POST",
        "/v1/plugins",
        Some(upload_body(
            &phrases_manifest("2.0.3", "critical"),
            b"\0asm junk",
            json!([]),
        )),
    );
    assert_eq!(s, 422);
    // Through all that, 1.0.0 kept serving.
    assert_eq!(
        active_version(&acme, "phrases"),
        Some(("1.0.0".into(), "active".into()))
    );
    assert_eq!(phrase_tier(&acme, "A-2").as_deref(), Some("high"));
    let changes = acme.ok("GET", "/v1/plugin-changes", None);
    let rejected = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "rejected")
        .count();
    assert_eq!(rejected, 4, "{changes}");

    // A good 2.0.0, then roll back to 1.0.0, then forward again.
    let v2 = upload_body(
        &phrases_manifest("2.0.0", "critical"),
        &builtin_wasm("phrases"),
        json!([serde_json::to_value(lawyer_fixture("critical")).unwrap()]),
    );
    acme.ok("POST", "/v1/plugins", Some(v2));
    assert_eq!(phrase_tier(&acme, "A-3").as_deref(), Some("critical"));
    acme.ok("POST", "/v1/plugins/phrases/rollback", None);
    assert_eq!(phrase_tier(&acme, "A-4").as_deref(), Some("high"));
    acme.ok(
        "POST",
        "/v1/plugins/phrases/activate",
        Some(json!({"version": "2.0.0"})),
    );
    let (s, _) = acme.call("DELETE", "/v1/plugins/phrases/versions/2.0.0", None);
    assert_eq!(s, 409, "the serving version cannot be deleted");
    let versions = acme.ok("GET", "/v1/plugins/phrases/versions", None);
    assert_eq!(versions.as_array().unwrap().len(), 2);

    // A restart comes back with the same active set.
    drop(server);
    let server = Escalator::start(&data, T0, None);
    let acme = Api::with_token(&server.base, &acme.token());
    assert_eq!(
        active_version(&acme, "phrases"),
        Some(("2.0.0".into(), "active".into()))
    );
    assert_eq!(phrase_tier(&acme, "A-5").as_deref(), Some("critical"));
    // Removing the override brings the built-in phrases back.
    acme.ok("DELETE", "/v1/plugins/phrases", None);
    assert_eq!(active_version(&acme, "phrases").unwrap().0, "0.1.0");
}

#[test]
fn a_plugin_dropped_into_the_watched_directory_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let server = Escalator::start_with(
        &data,
        T0,
        None,
        &["--plugins-dir", plugins.to_str().unwrap()],
    );
    let acme = server.tenant("acme");
    // Write the plugin beside, then rename it into place in one step.
    let staging = dir.path().join("staging");
    write_plugin_dir(
        &staging,
        &phrases_manifest("3.0.0", "medium"),
        &builtin_wasm("phrases"),
        Some(lawyer_fixture("medium")),
    );
    std::fs::create_dir_all(plugins.join("acme")).unwrap();
    let landed = Instant::now();
    std::fs::rename(&staging, plugins.join("acme/my-phrases")).unwrap();
    let live = crate::peers::eventually(10, "the watched plugin to go live", || {
        (active_version(&acme, "phrases").map(|v| v.0).as_deref() == Some("3.0.0"))
            .then(|| landed.elapsed())
    });
    // (How fast is for the benchmark; the test waits up to 10 s.)
    eprintln!("watcher: file landed → live in {live:?}");
    assert_eq!(phrase_tier(&acme, "W-1").as_deref(), Some("medium"));
    // A broken version dropped in is refused; 3.0.0 keeps serving.
    let staging = dir.path().join("staging2");
    write_plugin_dir(
        &staging,
        &phrases_manifest("3.1.0", "medium"),
        &builtin_wasm("phrases"),
        Some(lawyer_fixture("critical")),
    );
    std::fs::remove_dir_all(plugins.join("acme/my-phrases")).unwrap();
    std::fs::rename(&staging, plugins.join("acme/my-phrases")).unwrap();
    crate::peers::eventually(10, "the refusal in the change log", || {
        acme.ok("GET", "/v1/plugin-changes", None)
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == "rejected" && c["version"] == "3.1.0")
            .cloned()
    });
    assert_eq!(active_version(&acme, "phrases").unwrap().0, "3.0.0");
    // Deleting the directory removes the plugin: the built-in serves again.
    std::fs::remove_dir_all(plugins.join("acme/my-phrases")).unwrap();
    crate::peers::eventually(10, "the plugin removed", || {
        (active_version(&acme, "phrases").unwrap().0 == "0.1.0").then_some(())
    });
}

fn write_plugin_dir(dir: &Path, manifest: &str, wasm: &[u8], fixture: Option<Fixture>) {
    std::fs::create_dir_all(dir.join("fixtures")).unwrap();
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    std::fs::write(dir.join("plugin.wasm"), wasm).unwrap();
    if let Some(f) = fixture {
        std::fs::write(
            dir.join("fixtures/case.json"),
            serde_json::to_string(&f).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn a_shadow_plugin_is_recorded_beside_the_active_set_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    // A stricter phrases rule, in shadow under another name: "refund" is critical.
    let manifest = "name = \"strict-phrases\"\nkind = \"trigger\"\nversion = \"1.0.0\"\nmode = \"shadow\"\n\
                    [config]\ncritical = [\"refund\"]\n";
    acme.ok(
        "POST",
        "/v1/plugins",
        Some(upload_body(manifest, &builtin_wasm("phrases"), json!([]))),
    );
    let bodies = [
        "Please refund me",           // the shadow rule alone
        "I will call my lawyer",      // the active set alone
        "How do I change my avatar",  // neither
        "Please refund, lawyer next", // both
    ];
    for (i, b) in bodies.iter().enumerate() {
        let out = acme.ok("POST", "/v1/tickets", Some(json!({"id": format!("SH-{i}"), "created_at": T0,
            "category": "account", "messages": [{"author": "customer", "body": b, "sent_at": T0}]})));
        // Shadow signals are never acted on.
        assert!(
            !out["new_signals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["key"] == "phrases:critical" && *b == "Please refund me"),
            "{out}"
        );
    }
    let r = acme.ok("GET", "/v1/plugins/strict-phrases/shadow-report", None);
    assert_eq!(r["shadow_runs"], 4, "{r}");
    // Its critical list is only "refund": the lawyer ticket escalated for
    // the active set alone.
    assert_eq!(r["both"], 1, "{r}");
    assert_eq!(r["shadow_only"], 1, "{r}");
    assert_eq!(r["active_only"], 1, "{r}");
    assert_eq!(r["neither"], 1, "{r}");
    assert_eq!(r["agreement"], 0.5, "{r}");
    // The ticket the shadow rule alone would have escalated stayed with the AI.
    let t = acme.ok("GET", "/v1/tickets/SH-0", None);
    assert_eq!(t["tier"], Value::Null, "{}", t["decisions"][0]["data"]);
    assert!(
        !t["decisions"][0]["data"]["shadow_signals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Promote it: set its mode to active.
    acme.ok(
        "POST",
        "/v1/plugins/strict-phrases/mode",
        Some(json!({"mode": "active"})),
    );
    let out = acme.ok("POST", "/v1/tickets", Some(json!({"id": "SH-9", "created_at": T0,
        "category": "account", "messages": [{"author": "customer", "body": "Please refund me", "sent_at": T0}]})));
    assert_eq!(out["tier"], "critical", "{out}");
}

#[test]
fn a_plugin_failing_most_calls_is_rolled_back_then_disabled_and_the_leads_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    let manifest = |v: &str| {
        format!(
            "name = \"hostile\"\nkind = \"trigger\"\nversion = \"{v}\"\n[on-error]\naction = \"ignore\"\n"
        )
    };
    let wasm = crate::support::guest_wasm("hostile");
    for v in ["1.0.0", "2.0.0"] {
        acme.ok(
            "POST",
            "/v1/plugins",
            Some(upload_body(&manifest(v), &wasm, json!([]))),
        );
    }
    let panics = |from: usize| {
        for i in from..from + escalator::engine::GUARD_WINDOW {
            acme.ok(
                "POST",
                "/v1/tickets",
                Some(json!({"id": format!("P-{i}"), "created_at": T0, "subject": "panic"})),
            );
        }
    };
    // 2.0.0 fails most calls: rolled back to 1.0.0.
    panics(0);
    assert_eq!(
        active_version(&acme, "hostile"),
        Some(("1.0.0".into(), "active".into()))
    );
    // 1.0.0 fails too, and there is nothing safe to go back to: disabled.
    panics(100);
    assert_eq!(active_version(&acme, "hostile").unwrap().1, "disabled");
    let changes = acme.ok("GET", "/v1/plugin-changes", None);
    let find = |action: &str| {
        changes
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} in {changes}"))
    };
    let back = find("auto-rolled-back");
    assert_eq!(back["version"], "1.0.0");
    let off = find("auto-disabled");
    assert_eq!(off["actor"], "crash-loop-guard");
    assert!(
        off["detail"]["last_error"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "{off}"
    );
    let titles: Vec<String> = acme
        .ok("GET", "/v1/agents/lee/feed", None)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("Plugin hostile@2.0.0 rolled back"))
            && titles
                .iter()
                .any(|t| t.starts_with("Plugin hostile@1.0.0 disabled")),
        "{titles:?}"
    );
    // Disabled, it no longer runs.
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "P-after", "created_at": T0, "subject": "panic"})),
    );
    let d = acme.ok("GET", "/v1/tickets/P-after", None);
    assert!(
        !d["decisions"][0]["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["plugin"].as_str().unwrap().starts_with("hostile@")),
        "{}",
        d["decisions"][0]["audit"]
    );
    // ... and the decision says it was skipped.
    assert_eq!(
        d["decisions"][0]["data"]["skipped_plugins"],
        json!(["hostile@1.0.0"]),
        "{}",
        d["decisions"][0]["data"]
    );
}

#[test]
fn the_guard_never_disables_a_vendor_plugin_however_often_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, None);
    let acme = server.tenant("acme");
    // ai-confidence refuses a confidence outside 0..1: make it fail every
    // call, twice the guard's window.
    for i in 0..2 * escalator::engine::GUARD_WINDOW {
        acme.ok(
            "POST",
            "/v1/tickets",
            Some(json!({"id": format!("AI-{i}"), "created_at": T0, "category": "billing",
                "ai_analysis": {"confidence": 7.5, "intent": "refund", "reasoning": "?", "solutions_tried": []}})),
        );
    }
    let t = acme.ok("GET", "/v1/tickets/AI-0", None);
    let run = t["decisions"][0]["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["plugin"].as_str().unwrap().starts_with("ai-confidence@"))
        .cloned()
        .unwrap();
    assert!(!run["error"].is_null(), "the built-in failed: {run}");
    let plugins = acme.ok("GET", "/v1/plugins", None);
    let ai = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ai-confidence")
        .cloned()
        .unwrap();
    assert_eq!(ai["mode"], "active", "{ai}");
    assert_eq!(acme.ok("GET", "/v1/plugin-changes", None), json!([]));
}

#[test]
fn a_plugin_change_on_one_instance_serves_on_another_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = Escalator::start(&data, T0, None);
    let acme = a.tenant("acme");
    acme.roster();
    let b = Escalator::start(&data, T0, None);
    let acme_b = Api::with_token(&b.base, &acme.token());
    // The built-in phrases trigger: a lawyer is not "high" there.
    let before = phrase_tier(&acme_b, "B-0");
    assert_ne!(before.as_deref(), Some("high"));

    let v1 = upload_body(
        &phrases_manifest("1.0.0", "high"),
        &builtin_wasm("phrases"),
        json!([serde_json::to_value(lawyer_fixture("high")).unwrap()]),
    );
    acme.ok("POST", "/v1/plugins", Some(v1));
    let uploaded = Instant::now();
    // B serves the version A took (it looks every 250 ms); one event
    // every 100 ms stays within the tenant's event quota.
    let mut n = 0;
    let served = loop {
        n += 1;
        if phrase_tier(&acme_b, &format!("B-{n}")).as_deref() == Some("high") {
            break uploaded.elapsed();
        }
        assert!(
            uploaded.elapsed() < Duration::from_secs(15),
            "B never served the upload"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("an upload on A served on B after {served:?}");
    assert_eq!(
        active_version(&acme_b, "phrases"),
        Some(("1.0.0".into(), "active".into()))
    );

    // A mode change on B is A's too: A stops running the trigger.
    acme_b.ok(
        "POST",
        "/v1/plugins/phrases/mode",
        Some(json!({"mode": "disabled"})),
    );
    let changed = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        if phrase_tier(&acme, &format!("A-{n}")).is_none() {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(15),
            "A never took B's change"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "a mode change on B taken by A after {:?}",
        changed.elapsed()
    );
}

/// With a budget for compiled code, a restart registers each stored
/// version from what its first load kept (its bytes and what it imports,
/// in the artifact cache) instead of reading and loading every component;
/// each one's code is loaded at its first call, and decides as before. A
/// version whose imports were not kept is loaded at start, as without a
/// budget.
#[test]
fn with_a_code_budget_a_restart_registers_stored_versions_and_loads_each_at_its_first_call() {
    use escalator::runtime::cache::Origin;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(dir.path().join("cache")),
                resident_code_bytes: 64 << 20,
                ..RuntimeConfig::default()
            })
            .unwrap(),
        );
        let store: Arc<Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db"), Durability::Process).unwrap());
        let engine = crate::support::builtin_engine(store.clone(), &runtime, T0);
        engine.load_tenant_plugins().unwrap();
        (engine, runtime, store)
    };
    let phrases = |engine: &Engine, tenant: &str| {
        let set = engine.plugins(tenant);
        let p = set
            .triggers
            .iter()
            .find(|p| p.manifest.name == "phrases")
            .unwrap();
        (p.plugin.origin(), p.plugin.digest().to_string())
    };
    let lawyer = |engine: &Engine, tenant: &str, id: &str| {
        let ticket: escalator::model::Ticket = serde_json::from_value(json!({
            "id": id, "created_at": T0, "category": "account",
            "messages": [{"author": "customer", "body": "I will call my lawyer", "sent_at": T0}]
        }))
        .unwrap();
        let out = engine.create_ticket(tenant, ticket, None).unwrap();
        out.new_signals
            .iter()
            .find(|s| s.key.starts_with("phrases:"))
            .map(|s| s.tier.name().to_string())
    };

    let (engine, _, store) = start();
    for (tenant, tier, tag) in [("a", "high", "a"), ("b", "critical", "b")] {
        store
            .write(|tx| tx.create_tenant(tenant, tenant, tenant, T0.parse().unwrap()))
            .unwrap();
        // Bytes of its own (a distinct uploaded version).
        let mut u = upload("1.0.0", tier);
        u.wasm = escalator::bench::with_custom_section(&u.wasm, "test-id", tag.as_bytes());
        engine.upload(tenant, u, "test", true).unwrap();
    }
    assert_eq!(lawyer(&engine, "a", "A-1").as_deref(), Some("high"));
    drop((engine, store));

    // Restarted: registered, not loaded; each loads when first called.
    let (engine, runtime, _store) = start();
    let (origin_a, digest_a) = phrases(&engine, "a");
    let (origin_b, digest_b) = phrases(&engine, "b");
    // The digest its code is kept under: its configuration parsed ahead.
    let configured_b = engine
        .plugins("b")
        .triggers
        .iter()
        .find(|p| p.manifest.name == "phrases")
        .map(|p| p.plugin.code_digest().to_string())
        .unwrap();
    assert_ne!(configured_b, digest_b);
    assert_eq!((origin_a, origin_b), (Origin::Deferred, Origin::Deferred));
    let resident = runtime.resident_code().components;
    assert_eq!(lawyer(&engine, "a", "A-2").as_deref(), Some("high"));
    assert_eq!(runtime.resident_code().components, resident + 1);
    assert_eq!(lawyer(&engine, "b", "B-1").as_deref(), Some("critical"));
    assert_eq!(runtime.resident_code().components, resident + 2);
    drop(engine);

    // What b's component (with its configuration parsed ahead) imports no
    // longer kept: it is loaded at start (from its compiled artifact), a's
    // is still only registered. (Its own component was never loaded: it
    // was configured first, so nothing of it was kept but its bytes.)
    let kept = |d: &str| {
        dir.path()
            .join("cache")
            .join(format!("{d}.inspection.json"))
    };
    std::fs::remove_file(kept(&configured_b)).expect("what b imports was kept");
    assert!(!kept(&digest_b).exists());
    let (engine, _, _) = start();
    assert_eq!(phrases(&engine, "a"), (Origin::Deferred, digest_a));
    assert_eq!(phrases(&engine, "b"), (Origin::Cached, digest_b));
    assert_eq!(lawyer(&engine, "b", "B-2").as_deref(), Some("critical"));
}
