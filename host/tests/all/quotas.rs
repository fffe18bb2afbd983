//! Per-tenant quotas and credentials, against a live server: each quota's
//! 4xx (429 with `Retry-After` for rates) while another tenant is served,
//! version pruning, pages, and tokens that rotate and revoke at once.

use crate::serve::{Api, Escalator};
use crate::support::guest_wasm;
use base64::Engine as _;
use serde_json::{Value, json};

const T0: &str = "2026-11-27T12:00:00Z";

fn ticket(id: &str) -> Value {
    json!({"id": id, "created_at": T0,
        "messages": [{"author": "customer", "body": "How do I export a CSV?", "sent_at": T0}]})
}

/// POST with the raw response, for its headers.
fn post_raw(base: &str, token: &str, path: &str, body: &Value) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .unwrap()
}

fn upload(api: &Api, name: &str, version: &str) -> (u16, Value) {
    upload_guest(api, name, version, "refund")
}

fn upload_guest(api: &Api, name: &str, version: &str, guest: &str) -> (u16, Value) {
    let manifest = format!("name = \"{name}\"\nkind = \"trigger\"\nversion = \"{version}\"\n");
    upload_manifest(api, &manifest, guest)
}

/// Upload `guest`'s component under `manifest`.
fn upload_manifest(api: &Api, manifest: &str, guest: &str) -> (u16, Value) {
    api.call(
        "POST",
        "/v1/plugins",
        Some(json!({
            "manifest": manifest,
            "component_base64": base64::engine::general_purpose::STANDARD
                .encode(guest_wasm(guest)),
        })),
    )
}

#[test]
fn a_tenant_over_its_event_rate_gets_429_with_retry_after_and_the_other_tenant_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nevents-per-second = 2\nevent-burst = 5\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    let mut limited = Vec::new();
    for i in 0..20 {
        let r = post_raw(
            &server.base,
            &attacker.token(),
            "/v1/tickets",
            &ticket(&format!("A-{i}")),
        );
        if r.status().as_u16() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            limited.push(format!("A-{i}"));
        } else {
            assert_eq!(r.status().as_u16(), 201);
        }
    }
    assert!(limited.len() >= 10, "{} of 20 refused", limited.len());
    // A refused event is not stored.
    let (status, _) = attacker.call("GET", &format!("/v1/tickets/{}", limited[0]), None);
    assert_eq!(status, 404);
    // The victim's own bucket is full.
    for i in 0..5 {
        victim.ok("POST", "/v1/tickets", Some(ticket(&format!("V-{i}"))));
    }
}

/// A ticket whose body is about `bytes` long.
fn ticket_of(id: &str, bytes: usize) -> Value {
    json!({"id": id, "created_at": T0,
        "messages": [{"author": "customer", "body": "a".repeat(bytes), "sent_at": T0}]})
}

#[test]
fn a_tenant_over_its_volume_of_event_bodies_gets_429_before_its_body_is_read_and_the_other_tenant_is_served()
 {
    let dir = tempfile::tempdir().unwrap();
    // 300,000 bytes at once, refilled at 1,000 a second.
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nbody-bytes-per-second = 1000\nbody-burst-bytes = 300000\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    // Three bodies of ~90 KB fit; the fourth does not.
    for i in 0..3 {
        let r = post_raw(
            &server.base,
            &attacker.token(),
            "/v1/tickets",
            &ticket_of(&format!("A-{i}"), 90_000),
        );
        assert_eq!(r.status().as_u16(), 201, "A-{i}");
    }
    let r = post_raw(
        &server.base,
        &attacker.token(),
        "/v1/tickets",
        &ticket_of("A-3", 90_000),
    );
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // ~60 KB short at 1,000 bytes a second.
    assert!((50..=70).contains(&retry), "{retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "rate.limited", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("bytes of event bodies"),
        "{body}"
    );
    let (status, _) = attacker.call("GET", "/v1/tickets/A-3", None);
    assert_eq!(status, 404, "a refused event is not stored");
    // Refused on its declared length: the answer comes though not a byte of
    // the body was sent.
    {
        use std::io::{Read, Write};
        let addr = server.base.trim_start_matches("http://");
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            c,
            "POST /v1/tickets HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: 90000\r\n\r\n",
            attacker.token()
        )
        .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 429", "{}", String::from_utf8_lossy(&head));
    }
    // It is a volume, not a ban: a small ticket fits in what is left.
    attacker.ok("POST", "/v1/tickets", Some(ticket("A-small")));
    // The victim's volume is its own.
    for i in 0..3 {
        victim.ok(
            "POST",
            "/v1/tickets",
            Some(ticket_of(&format!("V-{i}"), 90_000)),
        );
    }
    // A body without Content-Length (chunked) cannot be taken before it is
    // read: it is admitted while anything is left, charged once read, and
    // the debt refuses what follows.
    let chunked = serde_json::to_vec(&ticket_of("V-chunked", 90_000)).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/tickets", server.base))
        .bearer_auth(victim.token())
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(chunked)))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (status, body) = victim.call("POST", "/v1/tickets", Some(ticket("V-after")));
    assert_eq!(status, 429, "{body}");
    let (status, _) = victim.call("GET", "/v1/tickets/V-chunked", None);
    assert_eq!(status, 200, "the admitted chunked body was stored");
}

#[test]
fn a_tenant_over_its_budget_of_server_time_gets_429_and_the_other_tenant_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nwork-ms-per-second = 5\nwork-burst-ms = 5\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    // A big ticket (2,000 messages) takes far more than 5 ms to decide.
    let big = |id: &str| {
        let messages: Vec<Value> = (0..2000)
            .map(|i| json!({"author": "customer", "body": format!("message {i}: where is my refund?"), "sent_at": T0}))
            .collect();
        json!({"id": id, "created_at": T0, "messages": messages})
    };
    let first = post_raw(&server.base, &attacker.token(), "/v1/tickets", &big("A-0"));
    assert_eq!(first.status().as_u16(), 201);
    // Its cost was charged after the answer: the tenant is in debt.
    let r = post_raw(&server.base, &attacker.token(), "/v1/tickets", &big("A-1"));
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["code"], "rate.limited", "{body}");
    let (status, _) = attacker.call("GET", "/v1/tickets/A-1", None);
    assert_eq!(status, 404, "a refused event is not stored");
    let (status, body) = attacker.call(
        "POST",
        "/v1/tickets/A-0/events",
        Some(json!({"type": "message", "message": {"author": "customer", "body": "?", "sent_at": T0}})),
    );
    assert_eq!(status, 429, "events on a ticket share the budget: {body}");
    // The victim's budget is its own.
    victim.ok("POST", "/v1/tickets", Some(ticket("V-0")));
}

/// The server's low-lane threads, with their nice values.
#[cfg(target_os = "linux")]
fn low_lane_threads(s: &Escalator) -> Vec<(String, i64)> {
    s.threads()
        .into_iter()
        .filter(|(name, _)| name == "escalator-low")
        .collect()
}

/// Plugin calls ran on low-lane threads, all at nice 19.
#[cfg(target_os = "linux")]
fn assert_low_lane_threads_ran(s: &Escalator) {
    let threads = low_lane_threads(s);
    assert!(!threads.is_empty(), "{:?}", s.threads());
    assert!(threads.iter().all(|(_, nice)| *nice == 19), "{threads:?}");
}

/// Plugin calls ran on threads of the process's own priority: every
/// thread but the low lane's is at it. (A normal-lane call of a plugin that
/// cannot block runs on its request's own thread, one that can on an
/// `escalator-plugin` thread; a low-lane thread takes only low-lane calls.)
#[cfg(target_os = "linux")]
fn assert_normal_lane_threads_ran(s: &Escalator) {
    let threads = s.threads();
    let main = threads
        .iter()
        .find(|(name, _)| name == "escalator")
        .unwrap()
        .1;
    assert!(
        threads
            .iter()
            .filter(|(name, _)| name != "escalator-low")
            .all(|(_, nice)| *nice == main),
        "{threads:?}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_tenant_over_half_its_budget_runs_in_the_low_lane_and_the_other_tenant_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // A refill of 20 ms a second: a big ticket leaves the tenant in debt
    // for seconds, and it comes back with little of its 100 ms burst.
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nwork-ms-per-second = 20\nwork-burst-ms = 100\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    for i in 0..3 {
        victim.ok("POST", "/v1/tickets", Some(ticket(&format!("V-{i}"))));
    }
    assert!(
        low_lane_threads(&server).is_empty(),
        "a tenant within its share uses no low-lane thread"
    );
    // Big enough that deciding it takes well over half the 100 ms burst
    // on any machine (a quick one once decided 3,000 in under 50 ms and
    // came back in the normal lane).
    let messages: Vec<Value> = (0..10_000)
        .map(|i| json!({"author": "customer", "body": format!("message {i}: where is my refund?"), "sent_at": T0}))
        .collect();
    let r = post_raw(
        &server.base,
        &attacker.token(),
        "/v1/tickets",
        &json!({"id": "A-0", "created_at": T0, "messages": messages}),
    );
    assert_eq!(r.status().as_u16(), 201);
    // Back from its debt with less than half its burst: its next event is
    // decided, and its plugin calls run on the low lane's threads.
    let mut decided = false;
    for i in 0..1200 {
        let r = post_raw(
            &server.base,
            &attacker.token(),
            "/v1/tickets",
            &ticket(&format!("A-{}", i + 1)),
        );
        if r.status().as_u16() == 201 {
            decided = true;
            break;
        }
        assert_eq!(r.status().as_u16(), 429);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(decided, "the attacker was served again once out of debt");
    assert_low_lane_threads_ran(&server);
    // The victim is still served, by threads of the ordinary priority.
    victim.ok("POST", "/v1/tickets", Some(ticket("V-9")));
    assert_normal_lane_threads_ran(&server);
}

/// A tenant sending faster than its event rate (more than half its burst
/// of events spent) has its accepted events decided in the low lane; a
/// tenant within its rate stays in the normal lane.
#[cfg(target_os = "linux")]
#[test]
fn a_tenant_sending_faster_than_its_event_rate_runs_in_the_low_lane() {
    let dir = tempfile::tempdir().unwrap();
    // A burst of 4 events, refilled at one every 100 s: the third event in
    // a row leaves less than half of it.
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nevents-per-second = 0.01\nevent-burst = 4\n"),
    );
    let flooder = server.tenant("flooder");
    let victim = server.tenant("victim");
    victim.ok("POST", "/v1/tickets", Some(ticket("V-0")));
    flooder.ok("POST", "/v1/tickets", Some(ticket("F-0")));
    flooder.ok("POST", "/v1/tickets", Some(ticket("F-1")));
    assert!(
        low_lane_threads(&server).is_empty(),
        "within half its burst: no low-lane thread, {:?}",
        server.threads()
    );
    flooder.ok("POST", "/v1/tickets", Some(ticket("F-2")));
    assert_low_lane_threads_ran(&server);
    // Past its burst it is refused; the victim is served, in the normal
    // lane, the whole time.
    flooder.ok("POST", "/v1/tickets", Some(ticket("F-3")));
    let (status, _) = flooder.call("POST", "/v1/tickets", Some(ticket("F-4")));
    assert_eq!(status, 429);
    victim.ok("POST", "/v1/tickets", Some(ticket("V-1")));
    assert_normal_lane_threads_ran(&server);
}

/// A tenant's requests at once beyond its share of the normal lane yield:
/// one waits while another tenant's request is in progress, the tenant's
/// other runs at once; within its budgets none runs at low priority.
#[cfg(target_os = "linux")]
/// A server where only the normal lane's sharing decides (budgets far
/// beyond what a test spends), with two tenants, `busy` and `other`, whose
/// trigger loops until its deadline on "loop": 400 ms for `busy`, 1,500
/// ms for `other`.
fn two_looping_tenants(dir: &std::path::Path, limits: &str) -> (Escalator, Api, Api) {
    let server = Escalator::start(
        dir,
        T0,
        Some(&format!(
            "[limits]\nwork-ms-per-second = 100000\nwork-burst-ms = 100000\n{limits}"
        )),
    );
    let busy = server.tenant("busy");
    let other = server.tenant("other");
    for (api, ms) in [(&busy, 400), (&other, 1500)] {
        let manifest = format!(
            "name = \"hostile\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n\
             [limits]\ntimeout-ms = {ms}\nfuel = 100_000_000_000\n"
        );
        let (status, body) = upload_manifest(api, &manifest, "hostile");
        assert_eq!(status, 201, "{body}");
    }
    (server, busy, other)
}

/// A ticket that sets the looping trigger off, its message `bytes` long.
fn looping(id: &str, bytes: usize) -> Value {
    json!({"id": id, "subject": "loop", "created_at": T0,
        "messages": [{"author": "customer", "body": "hello ".repeat(bytes / 6), "sent_at": T0}]})
}

/// POST a ticket from a thread of its own: its status, how long it took
/// and when it finished.
fn post_in_thread(
    server: &Escalator,
    token: String,
    body: Value,
) -> std::thread::JoinHandle<(u16, std::time::Duration, std::time::Instant)> {
    let base = server.base.clone();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let status = post_raw(&base, &token, "/v1/tickets", &body).status();
        (
            status.as_u16(),
            started.elapsed(),
            std::time::Instant::now(),
        )
    })
}

#[test]
fn a_tenants_requests_beyond_its_share_of_the_normal_lane_yield_to_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (server, busy, other) = two_looping_tenants(dir.path(), "normal-requests-per-tenant = 1\n");
    // The other tenant's request holds the normal lane for 1.5 s.
    let long = post_in_thread(&server, other.token(), looping("O-0", 6));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The busy tenant's two at once: one in the normal lane (its 400 ms),
    // the other yielding until the other tenant is done (or its pause cap,
    // a second).
    let two: Vec<_> = (1..=2)
        .map(|i| post_in_thread(&server, busy.token(), looping(&format!("B-{i}"), 6)))
        .collect();
    let mut took: Vec<_> = two
        .into_iter()
        .map(|t| {
            let (status, took, _) = t.join().unwrap();
            assert_eq!(status, 201);
            took
        })
        .collect();
    took.sort();
    assert!(
        took[1] >= std::time::Duration::from_millis(1200),
        "the second request did not wait for the other tenant: {took:?}"
    );
    assert_eq!(long.join().unwrap().0, 201);
    // Within its budgets, at normal priority: no low-lane thread.
    assert!(
        low_lane_threads(&server).is_empty(),
        "{:?}",
        server.threads()
    );
    assert_normal_lane_threads_ran(&server);
}

#[test]
fn a_decision_over_a_big_conversation_yields_to_another_tenant_and_an_ordinary_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (server, busy, other) = two_looping_tenants(dir.path(), "");
    // One request of the busy tenant at a time, within its share of the
    // normal lane: only the conversation's size decides. 60 KB is under
    // the 64 KiB line, 70 KB over it.
    for (n, bytes, yields) in [(1, 60_000, false), (2, 70_000, true)] {
        // The other tenant's request holds the normal lane for 1.5 s.
        let long = post_in_thread(&server, other.token(), looping(&format!("O-{n}"), 6));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mine = post_in_thread(&server, busy.token(), looping(&format!("B-{n}"), bytes));
        let (status, took, mine_done) = mine.join().unwrap();
        assert_eq!(status, 201);
        let (status, _, long_done) = long.join().unwrap();
        assert_eq!(status, 201);
        assert_eq!(
            mine_done > long_done,
            yields,
            "{bytes} bytes of conversation took {took:?}: it should {}wait for the other tenant",
            if yields { "" } else { "not " }
        );
    }
    assert!(
        low_lane_threads(&server).is_empty(),
        "{:?}",
        server.threads()
    );
}

#[test]
fn webhooks_plugins_and_feeds_have_quotas_and_old_versions_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    // A cache of its own, to see the pruned artifact leave it.
    let cache = dir.path().join("cache");
    let server = Escalator::start_with(
        dir.path(),
        T0,
        Some(
            "[limits]\nwebhooks-per-tenant = 2\nplugins-per-tenant = 1\nversions-per-plugin = 3\n\
             sse-per-tenant = 2\nsse-total = 3\n",
        ),
        &["--cache-dir", cache.to_str().unwrap()],
    );
    let acme = server.tenant("acme");
    acme.roster();
    let hooks: serde_json::Map<String, Value> = (0..3)
        .map(|i| {
            (
                format!("h{i}"),
                json!({"url": format!("https://hooks{i}.example.com/"), "secret": "k"}),
            )
        })
        .collect();
    let (status, body) = acme.call("PUT", "/v1/settings", Some(json!({"webhooks": hooks})));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "quota.exceeded", "{body}");

    // Versions beyond three go: not the one in force, not the one a
    // rollback returns to; their compiled artifacts go too.
    // The first version is another component: once pruned, no version
    // uses its compiled artifact.
    let (status, body) = upload_guest(&acme, "refund", "1.0.0", "sleeper");
    assert_eq!(status, 201, "{body}");
    let first = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(guest_wasm("sleeper")))
    };
    let cached = |digest: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(digest))
    };
    assert!(cached(&first));
    for minor in 1..6 {
        let (status, body) = upload(&acme, "refund", &format!("1.{minor}.0"));
        assert_eq!(status, 201, "{body}");
    }
    assert!(
        !cached(&first),
        "the pruned version's artifact left the cache"
    );
    let versions: Vec<String> = acme
        .ok("GET", "/v1/plugins/refund/versions", None)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1.3.0", "1.4.0", "1.5.0"]);
    acme.ok("POST", "/v1/plugins/refund/rollback", None);
    let (status, body) = upload(&acme, "another", "1.0.0");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "quota.exceeded", "{body}");

    // Two live feeds, then 429 until one closes.
    let agent = acme.ok("GET", "/v1/agents?limit=1", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let feed_of = |token: &str| {
        reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .get(format!("{}/v1/agents/{agent}/feed", server.base))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .unwrap()
    };
    let feed = || feed_of(&acme.token());
    let first = feed();
    let second = feed();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = feed();
    assert_eq!(third.status().as_u16(), 429);
    assert!(third.headers().contains_key("retry-after"));
    // Another tenant's feeds are not counted against this one.
    let other = server.tenant("other");
    other.roster();
    let _theirs = other.sse(&agent);
    // Three feeds are the server's total: the next is 503, whoever asks.
    let over = feed_of(&other.token());
    assert_eq!(over.status().as_u16(), 503);
    assert!(over.headers().contains_key("retry-after"));
    drop(first);
    crate::peers::eventually(30, "a closed feed frees its slot", || {
        let r = feed();
        (r.status().as_u16() == 200).then_some(r)
    });
}

#[test]
fn lists_come_in_pages_linked_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start(dir.path(), T0, Some("[limits]\nmax-page = 50\n"));
    let acme = server.tenant("acme");
    acme.roster();
    let all: Vec<String> = acme
        .ok("GET", "/v1/agents", None)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert!(all.len() > 2);
    let mut seen = Vec::new();
    let mut next = Some("/v1/agents?limit=2".to_string());
    while let Some(path) = next.take() {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}{path}", server.base))
            .bearer_auth(acme.token())
            .send()
            .unwrap();
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
        });
        let page: Vec<Value> = r.json().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|a| a["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen, all, "every agent once, in order");
    let (status, body) = acme.call("GET", "/v1/deliveries?limit=51", None);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_rotated_or_revoked_token_stops_working_at_once_and_metrics_have_their_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start_with(
        dir.path(),
        T0,
        None,
        &["--metrics-token", "metrics-scrape-token-0123456789"],
    );
    let admin = server.admin();
    let acme = server.tenant("acme");
    // Used once, so it sits in the token cache.
    acme.ok("GET", "/v1/agents", None);
    let rotated = admin.ok("POST", "/v1/tenants/acme/token", None);
    let new = Api::with_token(&server.base, rotated["token"].as_str().unwrap());
    assert_eq!(acme.call("GET", "/v1/agents", None).0, 401, "the old token");
    new.ok("GET", "/v1/agents", None);
    admin.ok("DELETE", "/v1/tenants/acme/token", None);
    assert_eq!(new.call("GET", "/v1/agents", None).0, 401, "revoked");
    assert_eq!(admin.call("POST", "/v1/tenants/nobody/token", None).0, 404);
    // Issuing a new token after a revocation lets the tenant back in.
    let again = admin.ok("POST", "/v1/tenants/acme/token", None);
    Api::with_token(&server.base, again["token"].as_str().unwrap()).ok("GET", "/v1/agents", None);

    let scraper = Api::with_token(&server.base, "metrics-scrape-token-0123456789");
    let (status, _) = scraper.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(
        scraper.call("GET", "/v1/tenants", None).0,
        401,
        "it reads metrics only"
    );
    let tenant = Api::with_token(&server.base, again["token"].as_str().unwrap());
    assert_eq!(tenant.call("GET", "/metrics", None).0, 401);
}
