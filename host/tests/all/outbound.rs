//! A tenant's outbound calls: they go only where the operator allows,
//! never follow a redirect, tell the tenant nothing a port scanner could
//! use, and a tenant's dead endpoints delay nobody else.

use crate::peers::{BlackHole, Recorder, eventually};
use crate::serve::{Api, Escalator, LOOPBACK_RECEIVERS};
use serde_json::{Value, json};

const T0: &str = "2026-11-27T12:00:00Z";

fn escalate(api: &Api, id: &str) {
    api.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": id, "created_at": T0, "category": "billing",
            "messages": [{"author": "customer",
                "body": "I will talk to my lawyer about this charge.", "sent_at": T0}]})),
    );
}

fn deliveries(api: &Api) -> Vec<Value> {
    api.ok("GET", "/v1/deliveries?limit=1000", None)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn hook(url: &str) -> Value {
    json!({"url": url, "secret": "k", "events": ["escalated"]})
}

#[test]
fn private_loopback_and_reserved_destinations_are_refused_unless_the_operator_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(&dir.path().join("data"), T0, None);
    let acme = server.tenant("acme");
    let receiver = Recorder::start();
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    let own = server.base.clone();
    let cases = [
        json!({"webhooks": {"a": hook(&format!("{}/hook", receiver.url))}}),
        // A name that resolves to loopback (from the hosts file).
        json!({"webhooks": {"a": hook(&format!("http://localhost:{port}/hook"))}}),
        json!({"webhooks": {"a": hook(&format!("http://[::1]:{port}/hook"))}}),
        json!({"webhooks": {"a": hook(&format!("http://[::ffff:127.0.0.1]:{port}/"))}}),
        // 127.0.0.1 written in hex.
        json!({"webhooks": {"a": hook(&format!("http://0x7f.0.0.1:{port}/"))}}),
        json!({"webhooks": {"a": hook("http://10.1.2.3/internal/admin?op=1")}}),
        json!({"webhooks": {"a": hook("http://169.254.169.254/latest/meta-data/")}}),
        json!({"webhooks": {"a": hook("http://[fd00:ec2::254]/")}}),
        json!({"webhooks": {"a": hook(&format!("{own}/v1/tenants"))}}),
        json!({"slack_webhook_url": "http://192.168.1.1/services/T/B/x"}),
        json!({"smtp": {"host": "127.0.0.1", "port": 25, "tls": "none",
            "from": "e@example.com"}}),
        json!({"smtp": {"host": "localhost", "port": 25, "tls": "none",
            "from": "e@example.com"}}),
    ];
    for case in cases {
        let (status, body) = acme.call("PUT", "/v1/settings", Some(case.clone()));
        assert_eq!(status, 422, "{case}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("refused by policy")),
            "{case}: {body}"
        );
    }
    assert_eq!(
        acme.ok("GET", "/v1/settings", None),
        json!({"slack_webhook_url": null, "smtp": null, "webhooks": {}}),
        "nothing refused was stored"
    );
    assert!(receiver.requests().is_empty());
}

#[test]
fn allowed_receivers_get_deliveries_but_redirects_the_servers_own_port_and_errors_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        &dir.path().join("data"),
        T0,
        Some(&format!(
            "{LOOPBACK_RECEIVERS}[delivery]\nretry-base-ms = 100\nretry-max-delay-ms = 200\n\
             max-attempts = 2\n"
        )),
    );
    let acme = server.tenant("acme");
    acme.roster();
    let receiver = Recorder::start();
    // The server itself, even on an allowed address.
    let (status, body) = acme.call(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {"own": hook(&format!("{}/v1/tenants", server.base))}})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("this server itself")
    );
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/x", closed.local_addr().unwrap());
    drop(closed);
    let r = &receiver.url;
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {
            "ok": hook(&format!("{r}/hook")),
            "redir": hook(&format!("{r}/redirect")),
            "leak": hook(&format!("{r}/leak")),
            "closed": hook(&closed_url),
        }})),
    );
    escalate(&acme, "R-1");
    let log = eventually(30, "every webhook attempted and settled", || {
        let log = deliveries(&acme);
        let settled = log
            .iter()
            .filter(|d| d["channel"] == "webhook")
            .all(|d| d["status"] == "sent" || d["status"] == "failed");
        (settled && log.iter().filter(|d| d["channel"] == "webhook").count() == 4).then_some(log)
    });
    let by = |name: &str| {
        log.iter()
            .find(|d| d["recipient"] == name)
            .unwrap_or_else(|| panic!("no delivery for {name}: {log:?}"))
            .clone()
    };
    assert_eq!(by("ok")["status"], "sent");
    let redir = by("redir");
    assert_eq!(redir["status"], "failed", "{redir}");
    assert_eq!(
        redir["last_error"], "HTTP 307 (redirects are not followed)",
        "{redir}"
    );
    assert_eq!(by("leak")["last_error"], "HTTP 500");
    assert_eq!(
        by("closed")["last_error"],
        "no response from the endpoint",
        "a refused connection reads like any other silence"
    );
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/internal")),
        "the redirect was not followed: {:?}",
        receiver.requests()
    );
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("refused (os error"));
}

#[test]
fn a_destination_allowed_when_configured_is_refused_on_connection_once_the_policy_closes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Recorder::start();
    let mut server = Escalator::start(&data, T0, Some(LOOPBACK_RECEIVERS));
    let acme = server.tenant("acme");
    acme.roster();
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {"ops": hook(&format!("{}/hook", receiver.url))}})),
    );
    let token = acme.token();
    server.terminate();
    // The same stored URL, under a policy that no longer allows loopback:
    // what is checked is where each connection goes, not what was once
    // accepted (so a name that later resolves elsewhere gains nothing).
    let server = Escalator::start(&data, T0, Some(""));
    let acme = Api::with_token(&server.base, &token);
    escalate(&acme, "C-1");
    let hook = eventually(30, "the webhook attempt is recorded", || {
        deliveries(&acme)
            .into_iter()
            .find(|d| d["channel"] == "webhook" && d["status"] == "failed")
    });
    assert!(
        hook["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("refused by policy")),
        "{hook}"
    );
    assert!(receiver.requests().is_empty());
}

#[test]
fn a_tenants_dead_endpoints_do_not_hold_up_another_tenants_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        &dir.path().join("data"),
        T0,
        Some(&format!(
            "{LOOPBACK_RECEIVERS}[limits]\nwebhooks-per-tenant = 64\n"
        )),
    );
    let dead = BlackHole::start();
    let attacker = server.tenant("attacker");
    attacker.roster();
    let hooks: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("d{i}"), hook(&format!("{}/dead/{i}", dead.url))))
        .collect();
    attacker.ok("PUT", "/v1/settings", Some(json!({"webhooks": hooks})));
    let victim = server.tenant("victim");
    victim.roster();
    let receiver = Recorder::start();
    victim.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {"ops": hook(&format!("{}/hook", receiver.url))}})),
    );
    for i in 0..3 {
        escalate(&attacker, &format!("A-{i}"));
    }
    eventually(30, "the attacker's endpoints are being tried", || {
        (dead.accepted() > 0).then_some(())
    });
    escalate(&victim, "V-1");
    eventually(30, "the victim's webhook arrives", || {
        (!receiver.delivered("/hook").is_empty()).then_some(())
    });
    // It arrived while the attacker's first attempts were still hanging
    // (each waits out its 10-second timeout): nothing of the victim's
    // waited for them.
    let attacker_log = deliveries(&attacker);
    let hooks: Vec<&Value> = attacker_log
        .iter()
        .filter(|d| d["channel"] == "webhook")
        .collect();
    assert_eq!(hooks.len(), 3 * 64);
    assert!(
        hooks.iter().all(|d| d["attempts"] == 0),
        "no attacker attempt had finished yet: {:?}",
        hooks.iter().map(|d| &d["attempts"]).collect::<Vec<_>>()
    );
}
