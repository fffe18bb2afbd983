//! `escalator learn`: a model fitted on labelled history, the same bytes
//! every time, reported on the later tickets only, and a plugin directory
//! that passes `plugin test`, uploads, and decides over HTTP.

use crate::lifecycle::upload_body;
use crate::serve::Escalator;
use crate::support::{cli as escalator, text};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// 240 labelled tickets, an hour apart: what each class says, among words
/// every class uses.
fn history(path: &Path) {
    let filler = [
        "the job",
        "our cluster",
        "after the upgrade",
        "in production",
        "on every node",
        "since yesterday",
        "the client",
        "with the new release",
    ];
    let mut lines = String::new();
    for i in 0..240 {
        let (body, expected) = match i % 8 {
            0 => ("we see data corruption and lost blocks", json!("critical")),
            1 => ("the namenode hangs and requests time out", json!("high")),
            2..=5 => (
                "a test fails now and then, the build is flaky",
                json!("medium"),
            ),
            _ => ("a typo in the javadoc of the config page", Value::Null),
        };
        let at = chrono::DateTime::from_timestamp(1_735_689_600 + i * 3600, 0).unwrap();
        let ticket = json!({
            "id": format!("H-{i:03}"), "subject": format!("Report {i}"), "category": "bug",
            "created_at": at,
            "messages": [{"author": "customer", "sent_at": at,
                "body": format!("{} {body} {}", filler[i as usize % 8], filler[(i as usize / 8) % 8])}],
        });
        lines.push_str(&json!({"ticket": ticket, "expected": expected}).to_string());
        lines.push('\n');
    }
    std::fs::write(path, lines).unwrap();
}

#[test]
fn a_learned_model_is_the_same_every_time_reported_on_later_tickets_and_serves_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = dir.path().join("history.jsonl");
    history(&tickets);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let run = escalator(&[
            "learn",
            "--tickets",
            tickets.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--holdout",
            "0.25",
            "--c",
            "1",
        ]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    }
    let wasm = std::fs::read(a.join("learned.wasm")).unwrap();
    assert!(
        wasm == std::fs::read(b.join("learned.wasm")).unwrap(),
        "the same data give the same model, byte for byte"
    );

    // Fitted on the first 180 by time, reported on the last 60 only.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["fitted_on"], 180, "{report}");
    assert_eq!(report["held_out"]["tickets"], 60);
    assert_eq!(
        report["reported_from"], "2025-01-08T12:00:00Z",
        "ticket 180's time"
    );
    assert_eq!(report["held_out"]["agreement"], 1.0, "{report}");
    assert_eq!(report["held_out"]["urgent_recall"], 1.0);

    // Over what learn wrote before, never over anything else.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep").unwrap();
    let refused = escalator(&[
        "learn",
        "--tickets",
        tickets.to_str().unwrap(),
        "--out",
        mine.to_str().unwrap(),
        "--c",
        "1",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("not written by escalator learn"),
        "{}",
        text(&refused)
    );

    // The component decides as the model did natively on its fixtures.
    let test = escalator(&["plugin", "test", a.to_str().unwrap()]);
    let t = text(&test);
    assert_eq!(test.status.code(), Some(0), "{t}");
    assert!(
        t.contains("4 passed, 0 failed"),
        "one held-out ticket per class: {t}"
    );

    // Uploaded to a tenant, it decides over HTTP with its evidence.
    let data = tempfile::tempdir().unwrap();
    let server = Escalator::start(data.path(), "2026-12-03T09:00:00Z", None);
    let acme = server.tenant("acme");
    let fixtures: Vec<Value> = std::fs::read_dir(a.join("fixtures"))
        .unwrap()
        .map(|e| {
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    let manifest = std::fs::read_to_string(a.join("plugin.toml")).unwrap();
    let up = acme.ok(
        "POST",
        "/v1/plugins",
        Some(upload_body(&manifest, &wasm, json!(fixtures))),
    );
    assert_eq!(up["active"], true, "{up}");
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({
            "id": "N-1", "subject": "Blocks", "category": "bug", "created_at": "2026-12-03T09:00:00Z",
            "messages": [{"author": "customer", "sent_at": "2026-12-03T09:00:00Z",
                "body": "In production we see data corruption and lost blocks"}],
        })),
    );
    assert_eq!(out["tier"], "critical", "{out}");
    let signal = out["new_signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "learned:critical")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        signal["reason"]
            .as_str()
            .unwrap()
            .contains("learned from 180 past tickets"),
        "{signal}"
    );
    let evidence: Vec<&str> = signal["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(evidence.contains(&"\"corruption\""), "{evidence:?}");
    assert!(
        !evidence.contains(&"\"in\""),
        "words every class uses are not evidence: {evidence:?}"
    );
}

/// scikit-learn in a virtualenv of its own, if pip can install it here.
fn sklearn_python() -> Option<std::path::PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sklearn-venv");
    let done = venv.join(".escalator-installed");
    if !done.exists() {
        let ok = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
        if !ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            || !ok(Command::new(venv.join("bin/pip")).args([
                "install",
                "-q",
                "scikit-learn==1.9.1",
            ]))
        {
            return None;
        }
        std::fs::write(&done, b"").unwrap();
    }
    Some(venv.join("bin/python"))
}

/// The comparison the issue asks for, on real data split by time: fitted
/// on the Hadoop reports of 2020-21, reported on 2022's. At 80 % urgent
/// recall the learned trigger is more precise than either TF-IDF reference,
/// and its likeliest class agrees with the label at least as often.
#[test]
fn on_hadoop_2022_the_learned_trigger_ranks_urgent_reports_better_than_tfidf_and_agrees_as_often() {
    let csv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hadoop_bugs_2020_2022.csv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("learned");
    let run = escalator(&[
        "learn",
        "--tickets",
        csv.to_str().unwrap(),
        "--split",
        "2022-01-01",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let held = &report["held_out"];
    assert_eq!(
        (report["fitted_on"].as_u64(), held["tickets"].as_u64()),
        (Some(1221), Some(512))
    );
    let recall = held["urgent_recall"].as_f64().unwrap();
    assert!(recall >= 0.8, "the trigger's own threshold: {held}");
    let mine = held["urgent_precision_at_80_recall"].as_f64().unwrap();
    let agreement = held["argmax_agreement"].as_f64().unwrap();

    let Some(python) = sklearn_python() else {
        eprintln!("skipped the TF-IDF reference: scikit-learn cannot be installed here");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/tfidf_reference.py");
    let reference = Command::new(python)
        .arg(&script)
        .args(["--csv", csv.to_str().unwrap(), "--split", "2022-01-01"])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", text(&reference));
    for line in String::from_utf8_lossy(&reference.stdout).lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["tickets"], 512, "the same later tickets: {r}");
        let theirs = r["urgent_precision_at_80_recall"].as_f64().unwrap();
        let their_agreement = r["argmax_agreement"].as_f64().unwrap();
        eprintln!(
            "{}: precision at 80 % urgent recall {theirs:.3}, agreement {their_agreement:.3}; learned {mine:.3}, {agreement:.3}",
            r["variant"]
        );
        assert!(mine > theirs, "learned {mine} against TF-IDF {r}");
        assert!(
            agreement >= their_agreement,
            "the likeliest class: learned {agreement} against TF-IDF {r}"
        );
    }
}
