//! Several `escalator serve` instances on one PostgreSQL database (the
//! test process's own server, [`crate::support::Postgres`]), as behind a
//! load balancer: each request may land on any instance.

use crate::lifecycle::{
    active_version, builtin_wasm, lawyer_fixture, phrase_tier, phrases_manifest, upload_body,
};
use crate::peers::eventually;
use crate::serve::{Api, Escalator};
use crate::support::Db;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T0: &str = "2026-11-27T12:00:00Z";

/// Bursts from several clients: more than the default budget of server
/// time per tenant, which would answer 429.
const BURST: &str = "[limits]\nwork-ms-per-second = 1000000\nwork-burst-ms = 1000000\n";

/// `n` instances on `db`, each with a data directory of its own.
struct Cluster {
    dirs: Vec<(tempfile::TempDir, PathBuf)>,
    nodes: Vec<Escalator>,
}

impl Cluster {
    /// Instance `k` is named `node-k` in its metrics.
    fn start(db: &Db, n: usize, config: Option<&str>) -> Cluster {
        let dirs: Vec<_> = (0..n).map(|_| db.data_dir()).collect();
        let nodes = dirs
            .iter()
            .enumerate()
            .map(|(k, (_, data))| Cluster::node(data, k, config))
            .collect();
        Cluster { dirs, nodes }
    }

    fn node(data: &std::path::Path, k: usize, config: Option<&str>) -> Escalator {
        Escalator::start_with(data, T0, config, &["--instance", &format!("node-{k}")])
    }

    fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }
}

/// The tickets of the decision workload: what each customer writes first,
/// then twice more.
const TEXTS: [(&str, &str, &str, &str); 6] = [
    (
        "billing",
        "I was charged twice for my enterprise plan.",
        "This is the third time I ask.",
        "My lawyer will hear about this.",
    ),
    (
        "account",
        "How do I reset my password?",
        "Found it, thanks.",
        "All good now.",
    ),
    (
        "technical",
        "The API returns 500 on every call since this morning.",
        "Production is down for all our users!",
        "Still down. This is unacceptable.",
    ),
    (
        "billing",
        "Can I get an invoice copy?",
        "I want to talk to a human please.",
        "Hello?",
    ),
    (
        "general",
        "Just a question about your roadmap.",
        "Thanks for the answer.",
        "Have a nice day.",
    ),
    (
        "technical",
        "Data loss after the upgrade, we lost customer records.",
        "We are considering cancelling our contract.",
        "Please escalate this now.",
    ),
];

/// Send the workload from 4 clients; event `j` of ticket `i` goes to
/// `bases[(i + j) % len]`, so a ticket's events cross instances.
fn send_workload(bases: &[String], token: &str, tickets: usize) {
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (bases, token) = (bases.to_vec(), token.to_string());
            std::thread::spawn(move || {
                for i in (c..tickets).step_by(4) {
                    let (category, first, second, third) = TEXTS[i % TEXTS.len()];
                    let id = format!("S-{i}");
                    let at = |j: usize| Api::with_token(&bases[(i + j) % bases.len()], &token);
                    at(0).ok("POST", "/v1/tickets", Some(json!({
                        "id": id, "created_at": T0, "category": category,
                        "customer": {"id": format!("c{i}"), "plan": if i % 3 == 0 { "enterprise" } else { "free" }},
                        "messages": [{"author": "customer", "body": first, "sent_at": T0}]})));
                    for (j, body) in [second, third].into_iter().enumerate() {
                        at(j + 1).ok(
                            "POST",
                            &format!("/v1/tickets/{id}/events"),
                            Some(json!({"type": "message", "author": "customer", "body": body})),
                        );
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

/// Each ticket's decisions: tier, whether it escalated, and the signals
/// (key and tier) that made it.
fn decisions_of(api: &Api, tickets: usize) -> BTreeMap<String, Vec<Value>> {
    (0..tickets)
        .map(|i| {
            let id = format!("S-{i}");
            let t = api.ok("GET", &format!("/v1/tickets/{id}"), None);
            let decisions = t["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let signals: BTreeSet<(String, String)> = d["data"]["signals"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| (s["key"].to_string(), s["tier"].to_string()))
                        .collect();
                    json!({"tier": d["data"]["tier"], "escalated": d["escalated"],
                           "signals": signals.into_iter().collect::<Vec<_>>()})
                })
                .collect();
            (id, decisions)
        })
        .collect()
}

#[test]
fn events_spread_over_three_instances_are_decided_as_one_instance_decides_them() {
    let tickets = 24;
    // One instance on SQLite: the reference.
    let one = Cluster::start(&Db::sqlite(), 1, Some(BURST));
    let acme = one.nodes[0].tenant("acme");
    acme.roster();
    send_workload(&one.bases(), &acme.token(), tickets);
    let expected = decisions_of(&acme, tickets);
    assert!(
        expected
            .values()
            .any(|d| d.iter().any(|d| d["escalated"] == true)),
        "the workload escalates something: {expected:?}"
    );

    // Three on PostgreSQL, every ticket's events spread over them.
    let three = Cluster::start(&Db::postgres(), 3, Some(BURST));
    let acme = three.nodes[0].tenant("acme");
    acme.roster();
    send_workload(&three.bases(), &acme.token(), tickets);
    for base in three.bases() {
        let seen = decisions_of(&Api::with_token(&base, &acme.token()), tickets);
        assert_eq!(seen, expected, "read on {base}");
    }
}

/// What was acknowledged: (ticket, the message added, if not its creation).
type Acked = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// The four clients of the kill test: each request goes to the next
/// instance in turn (a load balancer); a request that fails is not
/// acknowledged and the client goes on with the next.
fn burst(
    bases: Arc<Mutex<Vec<String>>>,
    token: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    c: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut turn = c;
        let mut next = || {
            let list = bases.lock().unwrap();
            turn += 1;
            Api::with_token(&list[turn % list.len()], &token)
        };
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let id = format!("K-{c}-{i}");
            let create = next().try_call(
                "POST",
                "/v1/tickets",
                Some(json!({"id": id, "created_at": T0, "category": "billing",
                    "messages": [{"author": "customer", "body": "My lawyer will hear about this.", "sent_at": T0}]})),
                &[("idempotency-key", &format!("create-{id}"))],
            );
            if !matches!(create, Some((201, _))) {
                continue;
            }
            acked.lock().unwrap().push((id.clone(), None));
            let body = format!("follow-up {c}-{i}");
            let add = next().try_call(
                "POST",
                &format!("/v1/tickets/{id}/events"),
                Some(json!({"type": "message", "author": "customer", "body": body})),
                &[],
            );
            if matches!(add, Some((200, _))) {
                acked.lock().unwrap().push((id, Some(body)));
            }
        }
    })
}

#[test]
fn kill_9_of_one_instance_of_three_five_times_loses_nothing_and_fires_each_timer_once() {
    let db = Db::postgres();
    let mut cluster = Cluster::start(&db, 3, Some(BURST));
    let acme = cluster.nodes[0].tenant("acme");
    acme.roster();
    let token = acme.token();
    let bases = Arc::new(Mutex::new(cluster.bases()));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| burst(bases.clone(), token.clone(), acked.clone(), stop.clone(), c))
        .collect();
    for round in 0..5 {
        let before = acked.lock().unwrap().len();
        eventually(60, "acknowledged events before the kill", || {
            (acked.lock().unwrap().len() >= before + 20).then_some(())
        });
        // kill -9 one instance in the middle of the burst, and bring it
        // back on its data directory (the load balancer's health check
        // keeps sending to the other two meanwhile).
        let victim = round % 3;
        cluster.nodes[victim].kill();
        std::thread::sleep(Duration::from_millis(200));
        let data = cluster.dirs[victim].1.clone();
        cluster.nodes[victim] = Cluster::node(&data, victim, Some(BURST));
        bases.lock().unwrap()[victim] = cluster.nodes[victim].base.clone();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let tickets: BTreeSet<&str> = acked.iter().map(|(t, _)| t.as_str()).collect();

    // Every acknowledged event is there, read on any instance.
    let apis: Vec<Api> = cluster
        .bases()
        .iter()
        .map(|b| Api::with_token(b, &token))
        .collect();
    for (n, (id, body)) in acked.iter().enumerate() {
        let t = apis[n % 3].ok("GET", &format!("/v1/tickets/{id}"), None);
        assert_eq!(t["tier"], "critical", "{id}");
        if let Some(body) = body {
            assert!(
                t["ticket"]["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["body"] == *body.as_str()),
                "acknowledged message {body} of {id} lost"
            );
        }
    }

    // 20 minutes on, on every instance's clock: each reminder (10 min)
    // and fallback (15 min) falls due on all three at once.
    for node in &cluster.nodes {
        node.advance(20);
    }
    let due = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:20:00Z")
        .unwrap()
        .timestamp_millis();
    let mut timers_due = 0;
    eventually(90, "every due timer fired", || {
        timers_due = 0;
        tickets
            .iter()
            .all(|id| {
                let timers = apis[0].ok("GET", &format!("/v1/tickets/{id}/timers"), None);
                timers.as_array().unwrap().iter().all(|t| {
                    let is_due = t["due_at"].as_i64().unwrap() <= due;
                    timers_due += usize::from(is_due);
                    !is_due || t["state"] != "pending"
                })
            })
            .then_some(())
    });
    // Each fallback fired exactly once: one reassignment per ticket.
    let mut fired = 0;
    for id in &tickets {
        let t = apis[1].ok("GET", &format!("/v1/tickets/{id}"), None);
        let moves = t["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["what"] == "reassigned")
            .count();
        assert_eq!(moves, 1, "{id}: {}", t["history"]);
        fired += moves;
    }
    // No notification went out twice: each (ticket, channel, address,
    // title, body) once, whichever instance queued or sent it.
    let mut seen = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = apis[2].ok(
            "GET",
            &format!("/v1/deliveries?after={after}&limit=1000"),
            None,
        );
        let list = page.as_array().unwrap().clone();
        if list.is_empty() {
            break;
        }
        for d in &list {
            after = after.max(d["id"].as_i64().unwrap());
            let key = format!(
                "{} {} {} {} {}",
                d["ticket"], d["channel"], d["address"], d["title"], d["body"]
            );
            seen.entry(key)
                .or_insert_with(Vec::new)
                .push(d["idempotency_key"].clone());
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, keys)| keys.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "sent twice under different keys: {twice:?}"
    );
    eprintln!(
        "kill -9 x5 of one of three instances: {} events acknowledged ({} tickets), all found; \
         {timers_due} timers due, all fired; {fired} fallbacks fired (one per ticket); \
         {} notifications, none twice",
        acked.len(),
        tickets.len(),
        seen.len()
    );
}

#[test]
fn an_upload_on_one_instance_serves_on_the_other_two_within_a_second() {
    let cluster = Cluster::start(&Db::postgres(), 3, None);
    let acme = cluster.nodes[0].tenant("acme");
    acme.roster();
    let others: Vec<Api> = cluster.bases()[1..]
        .iter()
        .map(|b| Api::with_token(b, &acme.token()))
        .collect();
    for (k, api) in others.iter().enumerate() {
        assert_ne!(
            phrase_tier(api, &format!("I{k}-0")).as_deref(),
            Some("high")
        );
    }
    let v1 = upload_body(
        &phrases_manifest("1.0.0", "high"),
        &builtin_wasm("phrases"),
        json!([serde_json::to_value(lawyer_fixture("high")).unwrap()]),
    );
    acme.ok("POST", "/v1/plugins", Some(v1));
    let uploaded = Instant::now();
    let mut served = Vec::new();
    for (k, api) in others.iter().enumerate() {
        let mut n = 0;
        served.push(loop {
            n += 1;
            if phrase_tier(api, &format!("I{k}-{n}")).as_deref() == Some("high") {
                break uploaded.elapsed();
            }
            // The bound is loose for a loaded machine; the note gives the
            // times measured.
            assert!(
                uploaded.elapsed() < Duration::from_secs(5),
                "instance {k} never served it"
            );
            std::thread::sleep(Duration::from_millis(50));
        });
        assert_eq!(
            active_version(api, "phrases"),
            Some(("1.0.0".into(), "active".into()))
        );
    }
    eprintln!(
        "an upload on A served on B after {:?} and on C after {:?}",
        served[0], served[1]
    );
}

#[test]
fn messages_added_to_one_ticket_through_three_instances_at_once_are_all_kept() {
    let cluster = Cluster::start(&Db::postgres(), 3, Some(BURST));
    let acme = cluster.nodes[0].tenant("acme");
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "T-1", "created_at": T0, "category": "billing",
            "messages": [{"author": "customer", "body": "first", "sent_at": T0}]})),
    );
    // One client per instance, all on the same ticket at the same time.
    let start = Arc::new(std::sync::Barrier::new(3));
    let clients: Vec<_> = cluster
        .bases()
        .into_iter()
        .enumerate()
        .map(|(k, base)| {
            let (token, start) = (acme.token(), start.clone());
            std::thread::spawn(move || {
                let api = Api::with_token(&base, &token);
                start.wait();
                (0..20)
                    .map(|i| {
                        let body = format!("from {k}: {i}");
                        api.ok(
                            "POST",
                            "/v1/tickets/T-1/events",
                            Some(json!({"type": "message", "author": "customer", "body": body})),
                        );
                        body
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let sent: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let t = acme.ok("GET", "/v1/tickets/T-1", None);
    let customer: Vec<&str> = t["ticket"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["author"] == "customer")
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    let kept: BTreeSet<&str> = customer.iter().copied().collect();
    let lost: Vec<&String> = sent.iter().filter(|b| !kept.contains(b.as_str())).collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {lost:?}",
        lost.len(),
        sent.len()
    );
    assert_eq!(customer.len(), 61, "each once: {customer:?}");
}

/// Tenant `acme` with the roster, through instance A, and agent bo's feed
/// on instance B, connected.
fn bo_on_b(cluster: &Cluster) -> (Api, std::sync::mpsc::Receiver<String>) {
    let on_a = cluster.nodes[0].tenant("acme");
    on_a.roster();
    let on_b = Api::with_token(&cluster.nodes[1].base, &on_a.token());
    let bo_feed = on_b.sse("bo");
    eventually(10, "the stream connected", || {
        bo_feed
            .recv_timeout(Duration::from_millis(200))
            .ok()
            .filter(|l| l.starts_with(": connected"))
    });
    (on_a, bo_feed)
}

#[test]
fn a_feed_item_whose_notice_was_missed_still_reaches_the_stream() {
    let db = Db::postgres();
    let cluster = Cluster::start(&db, 2, None);
    let (_on_a, bo_feed) = bo_on_b(&cluster);
    // An item committed with no notice: what a listener reconnecting
    // at that moment misses.
    let crate::support::Db::Postgres(url) = &db else {
        unreachable!()
    };
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.execute(
        "INSERT INTO feed (tenant, agent, ticket, title, body, at) \
         VALUES ('acme', 'bo', 'T-9', 'Missed notice', 'found by the look', now())",
        &[],
    )
    .unwrap();
    let line = eventually(10, "the item over SSE on B", || {
        bo_feed
            .recv_timeout(Duration::from_millis(200))
            .ok()
            .filter(|l| l.starts_with("data:") && l.contains("Missed notice"))
    });
    assert!(line.contains("found by the look"), "{line}");
    // Sent once, though every look reads it again.
    std::thread::sleep(Duration::from_secs(4));
    let again = bo_feed
        .try_iter()
        .filter(|l| l.contains("Missed notice"))
        .count();
    assert_eq!(again, 0, "sent twice");
}

#[test]
fn an_agents_feed_on_one_instance_streams_what_another_instance_escalated() {
    let cluster = Cluster::start(&Db::postgres(), 2, None);
    // bo's browser is connected to B; the escalation is decided on A.
    let (on_a, bo_feed) = bo_on_b(&cluster);
    let escalated = Instant::now();
    let out = on_a.ok(
        "POST",
        "/v1/tickets",
        Some(crate::serve::example("enterprise-billing-dispute.json")),
    );
    assert_eq!(out["assignee"], "bo", "{out}");
    let line = eventually(10, "bo's in-app alert over SSE on B", || {
        bo_feed
            .recv_timeout(Duration::from_millis(200))
            .ok()
            .filter(|l| l.starts_with("data:") && l.contains("Critical escalation"))
    });
    eprintln!(
        "an escalation on A streamed to bo on B after {:?}",
        escalated.elapsed()
    );
    assert!(line.contains("Acme Corp, $50K MRR"), "{line}");
    // Once: A wrote it, and the database told both instances.
    std::thread::sleep(Duration::from_millis(500));
    let again: Vec<String> = bo_feed
        .try_iter()
        .filter(|l| l.starts_with("data:") && l.contains("Critical escalation"))
        .collect();
    assert!(again.is_empty(), "sent twice: {again:?}");
}

#[test]
fn the_crash_loop_guard_counts_every_instances_calls_and_its_rollback_is_everyones() {
    let cluster = Cluster::start(&Db::postgres(), 2, None);
    let on_a = cluster.nodes[0].tenant("acme");
    on_a.roster();
    let on_b = Api::with_token(&cluster.nodes[1].base, &on_a.token());
    let wasm = crate::support::guest_wasm("hostile");
    for v in ["1.0.0", "2.0.0"] {
        let manifest = format!(
            "name = \"hostile\"\nkind = \"trigger\"\nversion = \"{v}\"\n[on-error]\naction = \"ignore\"\n"
        );
        on_a.ok(
            "POST",
            "/v1/plugins",
            Some(upload_body(&manifest, &wasm, json!([]))),
        );
    }
    // B runs 2.0.0 (its slot may say so before B has compiled it and
    // serves it: a calm ticket's audit says what ran).
    let mut calm = 0;
    eventually(60, "B runs 2.0.0", || {
        calm += 1;
        let id = format!("C-{calm}");
        on_b.ok(
            "POST",
            "/v1/tickets",
            Some(json!({"id": id, "created_at": T0, "subject": "calm"})),
        );
        let t = on_b.ok("GET", &format!("/v1/tickets/{id}"), None);
        t["decisions"]
            .to_string()
            .contains("hostile@2.0.0")
            .then_some(())
    });
    // One window's worth of failing calls, half on each instance: neither
    // alone saw most of the window fail.
    for i in 0..escalator::engine::GUARD_WINDOW {
        let api = if i % 2 == 0 { &on_a } else { &on_b };
        api.ok(
            "POST",
            "/v1/tickets",
            Some(json!({"id": format!("P-{i}"), "created_at": T0, "subject": "panic"})),
        );
    }
    for api in [&on_a, &on_b] {
        eventually(10, "rolled back on both", || {
            (active_version(api, "hostile") == Some(("1.0.0".into(), "active".into())))
                .then_some(())
        });
    }
    let changes = on_b.ok("GET", "/v1/plugin-changes", None);
    let rollbacks = changes
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "auto-rolled-back")
        .count();
    assert_eq!(
        rollbacks, 1,
        "one rollback, not one per instance: {changes}"
    );
}

#[test]
fn an_event_an_instance_stored_and_never_decided_is_decided_by_another() {
    let db = Db::postgres();
    let cluster = Cluster::start(&db, 2, None);
    let acme = cluster.nodes[0].tenant("acme");
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "T-1", "created_at": T0, "category": "billing",
            "messages": [{"author": "customer", "body": "first", "sent_at": T0}]})),
    );
    // What an instance killed between storing an event and deciding it
    // leaves: the event, undecided (its client got no answer). Both
    // instances stay up, so no start-up recovery decides it.
    let crate::support::Db::Postgres(url) = &db else {
        unreachable!()
    };
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let seq: i64 = c
        .query_one(
            "INSERT INTO events (tenant, ticket, kind, payload, received_at) \
             VALUES ('acme', 'T-1', 'message', \
             '{\"type\": \"message\", \"author\": \"customer\", \"body\": \"orphan\"}', now()) \
             RETURNING seq",
            &[],
        )
        .unwrap()
        .get(0);
    let decided = eventually(20, "the orphan decided by a live instance", || {
        let t = acme.ok("GET", "/v1/tickets/T-1", None);
        let done = t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["seq"] == seq && e["processed"] == true);
        done.then_some(t)
    });
    let causes: Vec<&str> = decided["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cause"].as_str().unwrap())
        .collect();
    let cause = format!("event:{seq}");
    assert_eq!(
        causes.iter().filter(|c| **c == cause).count(),
        1,
        "decided once: {causes:?}"
    );
}
