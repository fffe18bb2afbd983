//! Help-desk connectors, inbound, against a live server: each desk's
//! documented payloads (`tests/fixtures/connectors/`), signed by the desk's
//! own scheme, mapped and decided end to end over HTTP; bad and stale
//! signatures refused; retried deliveries change nothing.

use crate::serve::Escalator;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const T0: &str = "2026-11-27T12:00:00Z";
/// T0 in Unix seconds: what the desks' signed timestamps say.
const T0_UNIX: i64 = 1_795_780_800;
const SECRET: &str = "desk-signing-secret";

fn fixtures(desk: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/connectors")
        .join(desk);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect()
}

/// The headers a desk sends with `body`, signed with `secret` at `ts`.
fn signed(desk: &str, file: &str, body: &[u8], secret: &str, ts: i64) -> Vec<(String, String)> {
    let sha256 = |parts: &[&[u8]]| {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    };
    let sha1 = || {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(body);
        format!("sha1={}", hex::encode(m.finalize().into_bytes()))
    };
    let ts = ts.to_string();
    let meta = |name: &str| -> Value {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/connectors")
            .join(desk);
        let all: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        all[file].clone()
    };
    match desk {
        "zendesk" => vec![
            (
                "X-Zendesk-Webhook-Signature".into(),
                base64::engine::general_purpose::STANDARD.encode(sha256(&[ts.as_bytes(), body])),
            ),
            ("X-Zendesk-Webhook-Signature-Timestamp".into(), ts),
        ],
        "intercom" => vec![("X-Hub-Signature".into(), sha1())],
        "chatwoot" => vec![
            (
                "X-Chatwoot-Signature".into(),
                format!(
                    "sha256={}",
                    hex::encode(sha256(&[ts.as_bytes(), b".", body]))
                ),
            ),
            ("X-Chatwoot-Timestamp".into(), ts),
            (
                "X-Chatwoot-Delivery".into(),
                meta("deliveries.json").as_str().unwrap().into(),
            ),
        ],
        "zammad" => {
            let m = meta("deliveries.json");
            vec![
                ("X-Hub-Signature".into(), sha1()),
                (
                    "X-Zammad-Delivery".into(),
                    m["delivery"].as_str().unwrap().into(),
                ),
                (
                    "X-Zammad-Trigger".into(),
                    m["trigger"].as_str().unwrap().into(),
                ),
            ]
        }
        _ => unreachable!(),
    }
}

fn post(base: &str, path: &str, body: &[u8], headers: &[(String, String)]) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(k.as_str(), v.as_str());
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// What each desk's delivery sequence must leave: the ticket's id, its
/// messages' authors in order, its status, its claimer.
struct Expect {
    desk: &'static str,
    ticket: &'static str,
    authors: &'static [&'static str],
    status: &'static str,
    claimed_by: &'static str,
    ignored: &'static [&'static str],
}

const EXPECT: &[Expect] = &[
    Expect {
        desk: "zendesk",
        ticket: "zendesk-5158",
        authors: &["customer", "customer", "human-agent"],
        status: "solved",
        claimed_by: "ana",
        ignored: &["5-internal-note.json"],
    },
    Expect {
        desk: "intercom",
        ticket: "intercom-147",
        // The rating's remark joins the conversation as the customer's.
        authors: &["customer", "human-agent", "customer", "customer"],
        status: "solved",
        claimed_by: "ana",
        ignored: &[],
    },
    Expect {
        desk: "chatwoot",
        ticket: "chatwoot-1-12",
        authors: &["customer", "human-agent", "customer"],
        status: "solved",
        claimed_by: "ana",
        ignored: &["4-message-created-private.json"],
    },
    Expect {
        desk: "zammad",
        ticket: "zammad-31",
        authors: &["customer", "human-agent"],
        status: "solved",
        claimed_by: "ana",
        ignored: &[],
    },
];

#[test]
fn each_desks_payloads_are_verified_mapped_and_decided_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(dir.path(), T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    // Each desk's agent is our `ana`.
    let agents = json!({"8447388090495": "ana", "814860": "ana", "7": "ana", "3": "ana"});
    let connectors: serde_json::Map<String, Value> = EXPECT
        .iter()
        .map(|e| {
            (
                e.desk.to_string(),
                json!({"secret": SECRET, "agents": agents}),
            )
        })
        .collect();
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"connectors": connectors})),
    );
    // The secrets are write-only.
    let (_, read) = acme.call("GET", "/v1/settings", None);
    assert_eq!(read["connectors"]["zendesk"]["secret"], "***", "{read}");
    for e in EXPECT {
        let files = fixtures(e.desk);
        assert!(files.len() >= 5, "{}: {} payloads", e.desk, files.len());
        let path = format!("/v1/connectors/{}/events?tenant=acme", e.desk);
        let mut kinds = Vec::new();
        for (name, body) in &files {
            let headers = signed(e.desk, name, body, SECRET, T0_UNIX);
            // A forged delivery first: refused, nothing stored.
            let forged = signed(e.desk, name, body, "not-the-secret", T0_UNIX);
            let (status, v) = post(&server.base, &path, body, &forged);
            assert_eq!(status, 401, "{} {name}: {v}", e.desk);
            let (status, v) = post(&server.base, &path, body, &headers);
            if e.ignored.contains(&name.as_str()) {
                assert_eq!(status, 202, "{} {name}: {v}", e.desk);
                assert!(v["ignored"].as_str().is_some(), "{v}");
                continue;
            }
            assert_eq!(status, 200, "{} {name}: {v}", e.desk);
            assert_eq!(v["ticket"], e.ticket, "{v}");
            kinds.push(v["kind"].as_str().unwrap().to_string());
            // The desk retries: the same delivery again changes nothing.
            let (status, again) = post(&server.base, &path, body, &headers);
            assert_eq!(status, 200, "{} {name} again: {again}", e.desk);
            assert!(
                again["outcome"].is_null()
                    || again["outcome"]["event"] == v["outcome"]["event"]
                    || again["outcome"]["duplicate"].is_string(),
                "{} {name}: first {v}, again {again}",
                e.desk
            );
        }
        let mut distinct = kinds.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() >= 4, "{}: event kinds {kinds:?}", e.desk);
        let (status, t) = acme.call("GET", &format!("/v1/tickets/{}", e.ticket), None);
        assert_eq!(status, 200, "{t}");
        let messages = t["ticket"]["messages"].as_array().unwrap();
        // The desk's messages, in order; Escalator's own handoff line to
        // the customer (a `system` message) sits among them.
        let authors: Vec<&str> = messages
            .iter()
            .map(|m| m["author"].as_str().unwrap())
            .filter(|a| *a != "system")
            .collect();
        assert_eq!(authors, e.authors, "{}: {messages:?}", e.desk);
        assert!(
            messages.iter().any(|m| m["author"] == "system"),
            "{}: the handoff message: {messages:?}",
            e.desk
        );
        assert_eq!(t["ticket"]["status"], e.status, "{}", e.desk);
        assert_eq!(t["ticket"]["assignee"], e.claimed_by, "{}", e.desk);
        // Decided: the angry billing message escalated the ticket.
        assert!(t["tier"].is_string(), "{}: tier {}", e.desk, t["tier"]);
        assert!(
            t["decisions"].as_array().is_some_and(|d| !d.is_empty()),
            "{}: no decision",
            e.desk
        );
    }
    // Intercom's rating is a CSAT event on the ticket.
    let (_, t) = acme.call("GET", "/v1/tickets/intercom-147", None);
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "csat" || e["type"] == "csat"),
        "{t}"
    );
}

#[test]
fn connector_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(dir.path(), T0, None);
    let acme = server.tenant("acme");
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"connectors": {"zendesk": {"secret": SECRET}}})),
    );
    let (name, body) = fixtures("zendesk").remove(0);
    let ok = signed("zendesk", &name, &body, SECRET, T0_UNIX);
    // An unknown desk, no tenant, a tenant without that connector.
    let (status, v) = post(
        &server.base,
        "/v1/connectors/freshdesk/events?tenant=acme",
        &body,
        &ok,
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = post(&server.base, "/v1/connectors/zendesk/events", &body, &ok);
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("?tenant="), "{v}");
    let (status, v) = post(
        &server.base,
        "/v1/connectors/intercom/events?tenant=acme",
        &body,
        &ok,
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events?tenant=nobody",
        &body,
        &ok,
    );
    assert_eq!(status, 404, "{v}");
    // A signature from ten minutes ago: a replay, refused.
    let stale = signed("zendesk", &name, &body, SECRET, T0_UNIX - 600);
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events?tenant=acme",
        &body,
        &stale,
    );
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("clock"), "{v}");
    // No signature at all.
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events?tenant=acme",
        &body,
        &[],
    );
    assert_eq!(status, 401, "{v}");
    // Signed but not a Zendesk payload.
    let junk = br#"{"hello": "world"}"#;
    let h = signed("zendesk", &name, junk, SECRET, T0_UNIX);
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events?tenant=acme",
        junk,
        &h,
    );
    assert_eq!(status, 400, "{v}");
    // Nothing of the refused deliveries was stored.
    let (status, _) = acme.call("GET", "/v1/tickets/zendesk-5158", None);
    assert_eq!(status, 404);
    // A bearer token names the tenant too (Zendesk can send one).
    let mut with_bearer = ok.clone();
    with_bearer.push(("Authorization".into(), format!("Bearer {}", acme.token())));
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events",
        &body,
        &with_bearer,
    );
    assert_eq!(status, 200, "{v}");
    // A secret is required.
    let (status, v) = acme.call(
        "PUT",
        "/v1/settings",
        Some(json!({"connectors": {"zammad": {"secret": ""}}})),
    );
    assert_eq!(status, 422, "{v}");
}
