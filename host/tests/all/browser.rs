//! The dashboard in a real browser: headless Chromium (Debian's `chromium`
//! package) driven by Playwright's `playwright-core`, against the real
//! server with data in it. The test installs what it needs: the package
//! with apt-get when it is missing (as root, or with passwordless sudo),
//! and `playwright-core` with npm into `target/browser-tools`.

use crate::serve::Escalator;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    let path =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !path.exists() {
        crate::support::apt_install(&["chromium"]);
        assert!(
            path.exists(),
            "no Chromium at {} after installing it (set CHROMIUM)",
            path.display()
        );
    }
    path
}

fn playwright() -> PathBuf {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-tools");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    std::fs::create_dir_all(&tools).unwrap();
    for f in ["package.json", "dashboard.mjs"] {
        std::fs::copy(src.join(f), tools.join(f)).unwrap();
    }
    if !tools.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&tools)
            .status()
            .expect("npm runs (the dashboard test needs Node.js)");
        assert!(status.success(), "npm install playwright-core failed");
    }
    tools
}

#[test]
fn the_dashboard_renders_the_charts_and_queue_and_opens_a_handoff_in_chromium() {
    let chromium = chromium();
    let tools = playwright();
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), "2026-11-27T12:00:00Z", None);
    let acme = server.tenant("acme");
    acme.roster();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/tickets/enterprise-billing-dispute.json"),
    )
    .unwrap();
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(serde_json::from_str(&example).unwrap()),
    );
    for i in 0..3 {
        acme.ok(
            "POST",
            "/v1/tickets",
            Some(json!({"id": format!("B-{i}"), "created_at": "2026-11-27T12:00:00Z", "category": "billing",
                "subject": format!("Refund {i}"),
                "messages": [{"author": "customer", "body": "Please refund my last invoice.", "sent_at": "2026-11-27T12:00:00Z"}]})),
        );
    }
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "Q-1", "created_at": "2026-11-27T12:00:00Z", "category": "account",
            "messages": [{"author": "customer", "body": "How do I add a user?", "sent_at": "2026-11-27T12:00:00Z"}]})),
    );
    // Half an hour on, B-0 is answered by a human and solved, B-1 solved
    // with no human reply (over-escalated); B-0 is rated 4, the question
    // that never escalated 1 (under-escalated).
    server.advance(30);
    for (ticket, event) in [
        (
            "B-0",
            json!({"type": "reply", "agent": "bo", "body": "Refunded."}),
        ),
        ("B-0", json!({"type": "resolve"})),
        ("B-0", json!({"type": "csat", "score": 4})),
        ("B-1", json!({"type": "resolve"})),
        ("Q-1", json!({"type": "csat", "score": 1})),
    ] {
        acme.ok("POST", &format!("/v1/tickets/{ticket}/events"), Some(event));
    }
    let quality = acme.ok("GET", "/v1/dashboard", None)["quality"].clone();
    assert_eq!(quality["over_escalated"]["tickets"], 1, "{quality}");
    assert_eq!(
        quality["under_escalated"]["by_reason"]["low-csat"], 1,
        "{quality}"
    );
    assert_eq!(
        quality["resolution_after_escalation_minutes"]["high"]["average"], 30.0,
        "{quality}"
    );
    let expected = json!({
        "tickets": 5, "escalated": 4, "open": 2, "agents": 7,
        "by_tier": {"critical": 1, "high": 3},
        "first_ticket": "T-1001", "summary_contains": "Acme Corp",
        "csat_escalated": "4.0 (1 ratings)", "csat_rest": "1.0 (1 ratings)",
        "over": "1 of 2 resolved escalations (50%)",
        "under": "1 never escalated although 1 was rated 1-2",
        "resolution": [30], "trend": "last 7 days: 80%",
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(tools.join("dashboard.mjs"))
        .args([&server.base, &acme.token()])
        .arg(&shot)
        .arg(&expected_path)
        .env("CHROMIUM", &chromium)
        .current_dir(&tools)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(report.contains("ok: 2 queue rows"), "{report}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
