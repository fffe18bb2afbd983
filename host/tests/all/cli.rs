//! The real `escalator` binary: `plugin run`, `plugin inspect`, `demo`.

use crate::support::{cli as escalator, guest_dir, text};
use std::path::{Path, PathBuf};
use std::process::Output;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A plugin directory holding the hostile guest with `manifest_extra`.
fn hostile_dir(manifest_extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        guest_dir().join("hostile/hostile.wasm"),
        dir.path().join("hostile.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        format!("name = \"hostile\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n{manifest_extra}"),
    )
    .unwrap();
    dir
}

#[test]
fn plugin_run_prints_output_fuel_memory_and_time() {
    let ticket = examples().join("tickets/enterprise-billing-dispute.json");
    let out = escalator(&[
        "plugin",
        "run",
        "--plugin",
        "builtin:phrases",
        "--ticket",
        ticket.to_str().unwrap(),
        "--now",
        "2026-11-27T09:15:00Z",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["plugin"], "phrases@0.1.0");
    assert_eq!(v["output"]["signals"][0]["tier"], "critical");
    assert!(v["fuel_used"].as_u64().unwrap() > 0);
    assert!(v["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert!(v["duration_us"].is_u64());
    assert_eq!(v["error"], serde_json::Value::Null);
}

#[test]
fn plugin_run_exits_non_zero_with_the_typed_error() {
    let dir = hostile_dir("[limits]\nfuel = 5_000_000\n");
    let ticket = dir.path().join("ticket.json");
    std::fs::write(
        &ticket,
        r#"{"id":"T-1","subject":"loop","created_at":"2026-11-27T09:00:00Z"}"#,
    )
    .unwrap();
    let out = escalator(&[
        "plugin",
        "run",
        "--plugin",
        dir.path().to_str().unwrap(),
        "--ticket",
        ticket.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "out-of-fuel");
    assert!(v["fuel_used"].as_u64().unwrap() >= 5_000_000);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hostile@1.0.0 ran out of fuel"),
        "{}",
        text(&out)
    );
}

#[test]
fn plugin_run_routes_with_a_roster() {
    let ticket = examples().join("tickets/enterprise-billing-dispute.json");
    let roster = examples().join("roster.json");
    let out = escalator(&[
        "plugin",
        "run",
        "--plugin",
        "builtin:skills",
        "--ticket",
        ticket.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--now",
        "2026-11-27T09:15:00Z",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v = stdout_json(&out);
    assert_eq!(v["output"]["target"]["agent"], "bo");
    assert_eq!(v["output"]["fallback"][0]["target"]["agent"], "ana");
}

#[test]
fn plugin_run_explains_a_bad_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let ticket = dir.path().join("ticket.json");
    std::fs::write(&ticket, r#"{"id":"T-1","created_at":"yesterday"}"#).unwrap();
    let out = escalator(&[
        "plugin",
        "run",
        "--plugin",
        "builtin:phrases",
        "--ticket",
        ticket.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains(
            "ticket.json is not a valid ticket: created_at: input contains invalid characters"
        ),
        "{t}"
    );
}

#[test]
fn plugin_inspect_names_the_world_and_the_imports() {
    let wasm = guest_dir().join("wasi-probe/wasi-probe.wasm");
    let out = escalator(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("world:    trigger (exports `evaluate`)"), "{t}");
    assert!(
        t.contains("ok      escalator:plugin/types@0.1.0")
            && t.contains("ok      wasi:clocks/wall-clock"),
        "{t}"
    );

    // A component that wants outgoing HTTP: refused.
    let dir = tempfile::tempdir().unwrap();
    let refused = dir.path().join("http.wasm");
    std::fs::write(
        &refused,
        crate::support::component_importing(Some("wasi:http/outgoing-handler@0.2.0")),
    )
    .unwrap();
    let out = escalator(&["plugin", "inspect", refused.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("REFUSED wasi:http/outgoing-handler"), "{t}");
}

#[test]
fn the_demo_escalates_the_legal_threat_and_leaves_the_how_to_with_the_ai() {
    let out = escalator(&["demo"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("T-1001") && t.contains("tier: critical"), "{t}");
    assert!(
        t.contains("T-1002") && t.contains("stays with the AI agent"),
        "{t}"
    );
    assert!(
        t.contains("Critical escalation: Enterprise customer (Acme Corp, $50K MRR)"),
        "{t}"
    );
}

#[test]
fn the_matrix_prints_as_a_table_and_a_broken_one_is_explained() {
    let out = escalator(&["matrix"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("SCENARIO") && t.contains("Billing dispute or refund"),
        "{t}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("matrix.toml");
    std::fs::write(
        &bad,
        "[tiers.critical]\nresponse-minutes = 30\nalert-minutes = 30\n",
    )
    .unwrap();
    let out = escalator(&["--matrix", bad.to_str().unwrap(), "matrix"]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("matrix.toml: tiers.critical: alert-minutes = 30 must come before"),
        "{t}"
    );
}

#[test]
fn plugin_test_prints_a_table_of_fixture_cases_and_fails_on_a_failing_case() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("fixtures")).unwrap();
    std::fs::write(
        p.join("plugin.toml"),
        "name = \"legal\"\nkind = \"trigger\"\nversion = \"1.0.0\"\ncomponent = \"builtin:phrases\"\n\
         [config]\ncritical = [\"lawyer\"]\n",
    )
    .unwrap();
    let case = |name: &str, body: &str, tier: &str| {
        format!(
            r#"{{"name": "{name}", "ticket": {{"id": "F", "created_at": "2026-11-27T09:00:00Z",
                "messages": [{{"author": "customer", "body": "{body}", "sent_at": "2026-11-27T09:00:00Z"}}]}},
                "expect": {{"signals": [{{"tier": "{tier}"}}]}}}}"#
        )
    };
    std::fs::write(
        p.join("fixtures/a.json"),
        case("lawyer is critical", "my lawyer", "critical"),
    )
    .unwrap();
    let dir_arg = p.to_str().unwrap();
    let out = escalator(&["plugin", "test", dir_arg]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("legal@1.0.0 (trigger") && t.contains("lawyer is critical  pass"),
        "{t}"
    );
    assert!(t.contains("1 passed, 0 failed"), "{t}");
    std::fs::write(
        p.join("fixtures/b.json"),
        case("lawyer is high", "my lawyer", "high"),
    )
    .unwrap();
    let out = escalator(&["plugin", "test", dir_arg]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("lawyer is high      FAIL") && t.contains("expected \"high\", got \"critical\""),
        "{t}"
    );
}

#[test]
fn replay_against_another_plugin_set_lists_the_tickets_that_change_tier() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay-small.jsonl");
    let candidate = tempfile::tempdir().unwrap();
    let phrases = candidate.path().join("phrases");
    std::fs::create_dir_all(&phrases).unwrap();
    // The candidate no longer treats "lawyer" as critical.
    std::fs::write(
        phrases.join("plugin.toml"),
        "name = \"phrases\"\nkind = \"trigger\"\nversion = \"2.0.0\"\ncomponent = \"builtin:phrases\"\n\
         [config]\ncritical = [\"lawsuit\"]\n",
    )
    .unwrap();
    let json = candidate.path().join("report.json");
    let out = escalator(&[
        "replay",
        "--tickets",
        data.to_str().unwrap(),
        "--plugins",
        candidate.path().to_str().unwrap(),
        "--against",
        "builtin",
        "--json",
        json.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("6 tickets from") && t.contains("agreement 33.3 %"),
        "{t}"
    );
    assert!(t.contains("1 ticket(s) change tier"), "{t}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let change = &report["against"]["changes"][0];
    assert_eq!(change["ticket"], "R-1");
    assert_eq!(
        (change["tier"].clone(), change["against"].clone()),
        (serde_json::Value::Null, "critical".into())
    );
    assert_eq!(
        change["reasons_only_against"],
        serde_json::json!(["phrases:critical"])
    );
    assert_eq!(report["against"]["report"]["agreement"], 0.5);
}

#[test]
fn plugin_test_passes_every_default_plugins_own_fixtures_on_its_source_directory() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&plugins)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 9, "{dirs:?}");
    for dir in dirs {
        // No component sits beside the manifest: the built-in one runs.
        let out = escalator(&["plugin", "test", dir.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {t}", dir.display());
        let passed: usize = t
            .lines()
            .find_map(|l| l.strip_suffix(" passed, 0 failed"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: {t}", dir.display()));
        assert!(passed >= 2, "{}: only {passed} fixture(s)", dir.display());
    }
}

#[test]
fn bench_memory_registers_tenants_plugins_and_says_what_each_costs() {
    for distinct in [false, true] {
        let mut args = vec!["bench-memory", "--tenants", "3", "--plugins", "2"];
        if distinct {
            args.push("--distinct");
        }
        let out = escalator(&args);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("6 plugins registered"), "{t}");
        assert!(t.contains("KiB per plugin"), "{t}");
        assert!(t.contains("2 plugins evaluated once each"), "{t}");
    }
    let out = escalator(&[
        "bench-memory",
        "--tenants",
        "3",
        "--plugins",
        "2",
        "--distinct",
        "--resident-mib",
        "1",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("resident code:"), "{t}");
    let out = escalator(&["bench-memory", "--plugins", "9"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--plugins: 1 to 5"), "{}", text(&out));
}

#[test]
fn bench_serve_reports_throughput_latency_and_cpu_per_event() {
    let out = escalator(&["bench-serve", "--events", "40", "--concurrency", "2"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("40 ok, 0 failed"), "{t}");
    assert!(t.contains("events/s; latency p50"), "{t}");
    assert!(t.contains("µs per event"), "{t}");
}
