//! What a plugin can see through WASI: clocks frozen at the evaluation's
//! `now`, seeded randomness, no environment, no files, captured stdio.

use crate::support::*;
use escalator::pipeline::contract;
use escalator::runtime::sandbox::LogSource;
use std::collections::HashMap;

/// Run the probe on a ticket with `subject` and id `id`; its report as a map.
fn probe(subject: &str, id: &str) -> (HashMap<String, String>, escalator::runtime::CallReport) {
    // Roomy limits: the flood writes 100,000 lines, one host call each.
    let limits = "[limits]\nlog-bytes = 4096\nfuel = 10_000_000_000\ntimeout-ms = 10_000\n";
    let p = load("probe", "trigger", limits, &guest_wasm("wasi-probe")).unwrap();
    let mut t = ticket(subject, &["hi"]);
    t.id = id.into();
    let out = runtime().evaluate(
        &p.plugin,
        &std::sync::Arc::new(contract::ticket(&t)),
        &ctx("{}"),
    );
    let eval = out
        .result
        .unwrap_or_else(|e| panic!("the probe failed: {e}"));
    let facts = eval.signals[0]
        .evidence
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (facts, out.report)
}

#[test]
fn the_wall_clock_reads_the_evaluations_now_every_time() {
    let (facts, _) = probe("hi", "T-1");
    let now = noon().timestamp_millis().to_string();
    assert_eq!(facts["wall1"], now);
    assert_eq!(facts["wall2"], now);
    assert_eq!(facts["monotonic-elapsed-ns"], "0");
}

#[test]
fn randomness_is_seeded_per_evaluation() {
    let (a, _) = probe("hi", "T-1");
    let (b, _) = probe("hi", "T-1");
    let (c, _) = probe("hi", "T-2");
    assert!(!a["random1"].starts_with("error"), "{}", a["random1"]);
    assert_ne!(a["random1"], a["random2"], "two reads in one call differ");
    assert_eq!(
        (&a["random1"], &a["random2"]),
        (&b["random1"], &b["random2"]),
        "same ticket and time, same bytes"
    );
    assert_ne!(a["random1"], c["random1"], "another ticket, other bytes");
}

#[test]
fn no_environment_arguments_or_files_are_visible() {
    let (facts, _) = probe("hi", "T-1");
    assert_eq!(facts["env-vars"], "0");
    assert_eq!(facts["args"], "0");
    assert_eq!(facts["read-root"], "denied");
}

#[test]
fn stdout_and_stderr_are_captured_into_the_plugin_log() {
    let (_, report) = probe("hi", "T-7");
    let lines: Vec<(LogSource, &str, &str)> = report
        .log
        .iter()
        .map(|l| (l.source, l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (LogSource::Stdout, "info", "probe: evaluating T-7"),
            (LogSource::Stderr, "warn", "probe: this goes to stderr"),
        ]
    );
    assert_eq!(report.log_dropped_bytes, 0);
}

#[test]
fn a_flood_of_output_is_capped_and_the_call_still_succeeds() {
    let (facts, report) = probe("spam", "T-1");
    assert_eq!(facts["wall1"], noon().timestamp_millis().to_string());
    let kept: usize = report.log.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 4096, "{kept}");
    assert!(
        report.log_dropped_bytes > 1_000_000,
        "{}",
        report.log_dropped_bytes
    );
}
