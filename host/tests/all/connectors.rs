//! Help-desk connectors, inbound, against a live server: each desk's
//! documented payloads (`tests/fixtures/connectors/`), signed by the desk's
//! own scheme, mapped and decided end to end over HTTP; bad and stale
//! signatures refused; retried deliveries change nothing.

use crate::peers::{Recorded, Recorder};
use crate::serve::{Escalator, LOOPBACK_RECEIVERS};
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
        // The last: the words of the customer's CSAT answer.
        authors: &["customer", "human-agent", "customer", "customer"],
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
    // Intercom's and Chatwoot's ratings are CSAT events on the ticket,
    // stored as values.
    for (ticket, score) in [("intercom-147", None), ("chatwoot-1-12", Some(2))] {
        let (_, t) = acme.call("GET", &format!("/v1/tickets/{ticket}"), None);
        assert!(
            t["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "csat" || e["type"] == "csat"),
            "{t}"
        );
        if let Some(score) = score {
            assert_eq!(t["csat"]["score"], score, "{t}");
            assert!(
                t["ticket"]["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("csat:{score}"))),
                "{t}"
            );
        }
    }
}

#[test]
fn connector_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nevents-per-second = 1\nevent-burst = 3\n"),
    );
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
    // Forged deliveries naming the tenant do not spend its event rate.
    let forged = signed("zendesk", &name, &body, "not-the-secret", T0_UNIX);
    for _ in 0..10 {
        let (status, v) = post(
            &server.base,
            "/v1/connectors/zendesk/events?tenant=acme",
            &body,
            &forged,
        );
        assert_eq!(status, 401, "{v}");
    }
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

/// Each desk's API, as a loopback server that records what it is sent.
struct DeskApi {
    desk: &'static str,
    server: Recorder,
    writeback: Value,
    auth: Vec<(&'static str, String)>,
    ticket: &'static str,
}

/// The internal note (the handoff summary and why), checked, then
/// replaced by `NOTE` wherever it is in a request body.
fn stand_in_for_the_note(v: &mut Value) {
    let mut notes = Vec::new();
    stand_in_for(v, "Critical escalation", &mut notes);
    for n in notes {
        assert!(
            n.contains("Why it escalated") && n.contains("chargeback"),
            "{n}"
        );
    }
}

/// Replace each string starting with `prefix` by `NOTE`, keeping them.
fn stand_in_for(v: &mut Value, prefix: &str, found: &mut Vec<String>) {
    match v {
        Value::String(n) if n.starts_with(prefix) => {
            found.push(std::mem::replace(n, "NOTE".into()));
        }
        Value::Object(m) => m.values_mut().for_each(|v| stand_in_for(v, prefix, found)),
        Value::Array(a) => a.iter_mut().for_each(|v| stand_in_for(v, prefix, found)),
        _ => {}
    }
}

fn auth_of(r: &Recorded, auth: &[(&'static str, String)]) -> bool {
    auth.iter().all(|(k, v)| r.headers.get(*k) == Some(v))
}

#[test]
fn decisions_are_written_back_to_each_desk_as_its_documented_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        dir.path(),
        T0,
        Some(&format!(
            "{LOOPBACK_RECEIVERS}[delivery]\nretry-base-ms = 100\nretry-max-delay-ms = 400\n"
        )),
    );
    let acme = server.tenant("acme");
    acme.roster();
    // The desks' agent ids of our roster.
    let roster = ["ana", "bo", "cy", "dee", "lee", "tam", "max"];
    let mut agents: serde_json::Map<String, Value> = roster
        .iter()
        .enumerate()
        .map(|(i, a)| ((101 + i).to_string(), json!(a)))
        .collect();
    agents.insert("8447388090495".into(), json!("ana"));
    let desk_id = |agent: &str| 101 + roster.iter().position(|a| *a == agent).unwrap() as u64;
    use base64::Engine as _;
    let desks = [
        DeskApi {
            desk: "zendesk",
            server: Recorder::start(),
            writeback: json!({"token": "zd-token", "email": "bot@acme.example"}),
            auth: vec![(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode("bot@acme.example/token:zd-token")
                ),
            )],
            ticket: "zendesk-5158",
        },
        DeskApi {
            desk: "intercom",
            server: Recorder::start(),
            writeback: json!({"token": "ic-token", "admin_id": "9001"}),
            auth: vec![
                ("authorization", "Bearer ic-token".into()),
                ("intercom-version", "2.11".into()),
            ],
            ticket: "intercom-147",
        },
        DeskApi {
            desk: "chatwoot",
            server: Recorder::start(),
            writeback: json!({"token": "cw-token"}),
            auth: vec![("api_access_token", "cw-token".into())],
            ticket: "chatwoot-1-12",
        },
        DeskApi {
            desk: "zammad",
            server: Recorder::start(),
            writeback: json!({"token": "zm-token"}),
            auth: vec![("authorization", "Token token=zm-token".into())],
            ticket: "zammad-31",
        },
    ];
    let connectors: serde_json::Map<String, Value> = desks
        .iter()
        .map(|d| {
            let mut wb = d.writeback.clone();
            wb["base_url"] = json!(d.server.url);
            (
                d.desk.to_string(),
                json!({"secret": SECRET, "agents": agents, "writeback": wb}),
            )
        })
        .collect();
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"connectors": connectors})),
    );
    let (_, read) = acme.call("GET", "/v1/settings", None);
    assert_eq!(
        read["connectors"]["zendesk"]["writeback"]["token"], "***",
        "{read}"
    );
    let wait_for = |d: &DeskApi, n: usize| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ok: Vec<Recorded> = d
                .server
                .requests()
                .into_iter()
                .filter(|r| r.status == 200)
                .collect();
            if ok.len() >= n || std::time::Instant::now() > until {
                return ok;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let as_set = |rs: &[Recorded]| {
        let mut v: Vec<(String, String, Value)> = rs
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.json()))
            .collect();
        v.sort_by_key(|(m, p, b)| format!("{m} {p} {b}"));
        v
    };
    for d in &desks {
        // The desk answers the first request with 429 and Retry-After.
        d.server.rate_limit_next(1);
        let (name, body) = fixtures(d.desk).remove(0);
        let path = format!("/v1/connectors/{}/events?tenant=acme", d.desk);
        let (status, v) = post(
            &server.base,
            &path,
            &body,
            &signed(d.desk, &name, &body, SECRET, T0_UNIX),
        );
        assert_eq!(status, 200, "{v}");
        let out = &v["outcome"];
        assert_eq!(out["tier"], "critical", "{} {out}", d.desk);
        let reply = out["customer_message"]
            .as_str()
            .expect("a line for the customer")
            .to_string();
        let to = desk_id(out["assignee"].as_str().expect("routed to an agent"));
        let expected: Vec<(&str, String, Value)> = match d.desk {
            "zendesk" => vec![
                (
                    "PUT",
                    "/api/v2/tickets/5158.json".into(),
                    json!({"ticket": {"priority": "urgent", "assignee_id": to, "comment": {"body": "NOTE", "public": false}}}),
                ),
                (
                    "PUT",
                    "/api/v2/tickets/5158.json".into(),
                    json!({"ticket": {"comment": {"body": reply, "public": true}}}),
                ),
            ],
            "intercom" => vec![
                (
                    "POST",
                    "/conversations/147/reply".into(),
                    json!({"message_type": "note", "type": "admin", "admin_id": "9001", "body": "NOTE"}),
                ),
                (
                    "POST",
                    "/conversations/147/parts".into(),
                    json!({"message_type": "assignment", "type": "admin", "admin_id": "9001", "assignee_id": to.to_string()}),
                ),
                (
                    "POST",
                    "/conversations/147/reply".into(),
                    json!({"message_type": "comment", "type": "admin", "admin_id": "9001", "body": reply}),
                ),
            ],
            "chatwoot" => vec![
                (
                    "POST",
                    "/api/v1/accounts/1/conversations/12/messages".into(),
                    json!({"content": "NOTE", "message_type": "outgoing", "private": true}),
                ),
                (
                    "POST",
                    "/api/v1/accounts/1/conversations/12/toggle_priority".into(),
                    json!({"priority": "urgent"}),
                ),
                (
                    "POST",
                    "/api/v1/accounts/1/conversations/12/assignments".into(),
                    json!({"assignee_id": to}),
                ),
                (
                    "POST",
                    "/api/v1/accounts/1/conversations/12/messages".into(),
                    json!({"content": reply, "message_type": "outgoing", "private": false}),
                ),
            ],
            _ => vec![
                (
                    "PUT",
                    "/api/v1/tickets/31".into(),
                    json!({"priority": "3 high", "owner_id": to, "article": {"body": "NOTE", "type": "note", "internal": true, "content_type": "text/plain"}}),
                ),
                (
                    "POST",
                    "/api/v1/ticket_articles".into(),
                    json!({"ticket_id": 31, "body": reply, "type": "note", "internal": false, "content_type": "text/plain"}),
                ),
            ],
        };
        let got = wait_for(d, expected.len());
        assert_eq!(
            got.len(),
            expected.len(),
            "{}: {:?}",
            d.desk,
            d.server.requests()
        );
        // The internal note: the handoff summary and why; checked apart,
        // then stood in for by NOTE.
        let mut got = as_set(&got);
        for (_, _, body) in &mut got {
            stand_in_for_the_note(body);
        }
        got.sort_by_key(|(m, p, b)| format!("{m} {p} {b}"));
        let want: Vec<(String, String, Value)> = {
            let mut w: Vec<(String, String, Value)> = expected
                .into_iter()
                .map(|(m, p, b)| (m.to_string(), p, b))
                .collect();
            w.sort_by_key(|(m, p, b)| format!("{m} {p} {b}"));
            w
        };
        assert_eq!(got, want, "{}", d.desk);
        let all = d.server.requests();
        assert!(
            all.iter().all(|r| auth_of(r, &d.auth)),
            "{}: {all:?}",
            d.desk
        );
        assert_eq!(
            all.iter().filter(|r| r.status == 429).count(),
            1,
            "{}: the 429 was retried",
            d.desk
        );
        // A claim made in Escalator: the desk's assignee becomes the agent.
        let before = wait_for(d, 0).len();
        acme.ok(
            "POST",
            &format!("/v1/tickets/{}/events", d.ticket),
            Some(json!({"type": "claim", "agent": "bo"})),
        );
        let got = wait_for(d, before + 1);
        let last = got.last().unwrap();
        let claim = (last.method.as_str(), last.path.as_str(), last.json());
        let bo = desk_id("bo");
        let want = match d.desk {
            "zendesk" => (
                "PUT",
                "/api/v2/tickets/5158.json",
                json!({"ticket": {"assignee_id": bo, "status": "open"}}),
            ),
            "intercom" => (
                "POST",
                "/conversations/147/parts",
                json!({"message_type": "assignment", "type": "admin", "admin_id": "9001", "assignee_id": bo.to_string()}),
            ),
            "chatwoot" => (
                "POST",
                "/api/v1/accounts/1/conversations/12/assignments",
                json!({"assignee_id": bo}),
            ),
            _ => ("PUT", "/api/v1/tickets/31", json!({"owner_id": bo})),
        };
        assert_eq!(claim, want, "{}", d.desk);
        // Solved after bo's answer: the desk gets an internal note of what
        // the human did, for its AI and its people.
        let before = wait_for(d, 0).len();
        for event in [
            json!({"type": "reply", "agent": "bo", "body": "Refund issued; the duplicate charge is reversed."}),
            json!({"type": "resolve"}),
        ] {
            acme.ok(
                "POST",
                &format!("/v1/tickets/{}/events", d.ticket),
                Some(event),
            );
        }
        let got = wait_for(d, before + 1);
        assert_eq!(
            got.len(),
            before + 1,
            "{}: {:?}",
            d.desk,
            d.server.requests()
        );
        let last = got.last().unwrap();
        let mut body = last.json();
        let mut notes = Vec::new();
        stand_in_for(&mut body, "Resolved by", &mut notes);
        assert_eq!(notes.len(), 1, "{}: {body}", d.desk);
        assert!(
            notes[0].starts_with("Resolved by bo")
                && notes[0].contains(
                    "What the human did:\n- Refund issued; the duplicate charge is reversed."
                )
                && notes[0].contains("Why it escalated:"),
            "{}",
            notes[0]
        );
        let want = match d.desk {
            "zendesk" => (
                "PUT",
                "/api/v2/tickets/5158.json",
                json!({"ticket": {"comment": {"body": "NOTE", "public": false}}}),
            ),
            "intercom" => (
                "POST",
                "/conversations/147/reply",
                json!({"message_type": "note", "type": "admin", "admin_id": "9001", "body": "NOTE"}),
            ),
            "chatwoot" => (
                "POST",
                "/api/v1/accounts/1/conversations/12/messages",
                json!({"content": "NOTE", "message_type": "outgoing", "private": true}),
            ),
            _ => (
                "POST",
                "/api/v1/ticket_articles",
                json!({"ticket_id": 31, "body": "NOTE", "type": "note", "internal": true, "content_type": "text/plain"}),
            ),
        };
        assert_eq!(
            (last.method.as_str(), last.path.as_str(), body),
            want,
            "{}",
            d.desk
        );
    }
    // A claim the desk itself sent is not echoed back to it.
    let zd = &desks[0];
    let before = zd.server.requests().len();
    let (name, body) = fixtures("zendesk")
        .into_iter()
        .find(|(n, _)| n == "3-assigned.json")
        .unwrap();
    let (status, v) = post(
        &server.base,
        "/v1/connectors/zendesk/events?tenant=acme",
        &body,
        &signed("zendesk", &name, &body, SECRET, T0_UNIX),
    );
    assert_eq!(status, 200, "{v}");
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        zd.server.requests().len(),
        before,
        "{:?}",
        zd.server.requests()
    );
}
