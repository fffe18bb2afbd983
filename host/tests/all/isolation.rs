//! A hostile plugin harms nobody: each attack runs against a live
//! `escalator serve` with a victim tenant beside the attacker, and asserts
//! what must hold: the attacker's call ends by its deadline, the victim's
//! requests complete while the attack is in flight, the server restarts
//! cleanly afterwards, and no built-in plugin is disabled. How much the
//! victim slows down is measured by `escalator bench-isolation`, not here.

use crate::serve::{Api, Escalator};
use crate::support::guest_wasm;
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const T0: &str = "2026-11-27T12:00:00Z";

/// Upload test guest `guest` as plugin `name` of `kind` with `limits`.
fn upload(api: &Api, name: &str, kind: &str, guest: &str, extra: &str) {
    let manifest = format!("name = \"{name}\"\nkind = \"{kind}\"\nversion = \"1.0.0\"\n{extra}");
    api.ok(
        "POST",
        "/v1/plugins",
        Some(json!({
            "manifest": manifest,
            "component_base64": base64::engine::general_purpose::STANDARD.encode(guest_wasm(guest)),
        })),
    );
}

/// A ticket that the built-in phrases trigger escalates (so the router and
/// notifier run), with `subject` for the hostile guests to act on.
fn ticket(id: &str, subject: &str) -> Value {
    json!({
        "id": id, "subject": subject, "category": "billing", "created_at": T0,
        "messages": [{"author": "customer", "body": "This is unacceptable, I want a refund", "sent_at": T0}],
    })
}

/// Every audit entry of a ticket's decisions for plugin `name`.
fn runs_of(api: &Api, ticket: &str, name: &str) -> Vec<Value> {
    let t = api.ok("GET", &format!("/v1/tickets/{ticket}"), None);
    t["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["audit"].as_array().cloned().unwrap_or_default())
        .filter(|r| {
            r["plugin"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{name}@")))
        })
        .collect()
}

/// `n` attacker clients at once, each creating ticket `A-i` with
/// `subject`; join them for their (status, body).
fn attack(
    server: &Escalator,
    attacker: &Api,
    n: usize,
    subject: &'static str,
) -> Vec<std::thread::JoinHandle<(u16, Value)>> {
    (0..n)
        .map(|i| {
            let (base, token) = (server.base.clone(), attacker.token());
            std::thread::spawn(move || {
                Api::with_token(&base, &token).call(
                    "POST",
                    "/v1/tickets",
                    Some(ticket(&format!("A-{i}"), subject)),
                )
            })
        })
        .collect()
}

/// The victim creates `n` tickets; each must be answered 201.
fn victim_works(victim: &Api, prefix: &str, n: usize) {
    for i in 0..n {
        let (status, v) = victim.call(
            "POST",
            "/v1/tickets",
            Some(ticket(&format!("{prefix}-{i}"), "ordinary")),
        );
        assert_eq!(status, 201, "victim ticket {prefix}-{i}: {v}");
    }
}

/// No built-in plugin of `api`'s tenant is disabled.
fn builtins_active(api: &Api) {
    let plugins = api.ok("GET", "/v1/plugins", None);
    for p in plugins["plugins"].as_array().unwrap() {
        if p["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("builtin:"))
        {
            assert_ne!(p["mode"], "disabled", "built-in disabled: {p}");
        }
    }
}

fn restart(server: &mut Escalator, data: &Path) -> Escalator {
    server.kill();
    Escalator::start(data, T0, None)
}

/// After an attack: kill -9, start again on the same data, and the victim
/// is served with every built-in in place.
fn restarts_cleanly(server: &mut Escalator, data: &Path, victim: &Api) {
    let server = restart(server, data);
    let victim = Api::with_token(&server.base, &victim.token());
    victim_works(&victim, "after-restart", 2);
    builtins_active(&victim);
}

#[test]
fn a_sleeping_plugin_sleeps_in_virtual_time_and_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    upload(
        &attacker,
        "sleeper",
        "trigger",
        "sleeper",
        "[limits]\ntimeout-ms = 100\n",
    );
    let start = Instant::now();
    attacker.ok("POST", "/v1/tickets", Some(ticket("A-sleep", "sleep")));
    attacker.ok("POST", "/v1/tickets", Some(ticket("A-nap", "nap")));
    // Before: 30 s and 10 s of real time. Now the guest's clock moves
    // instead, and the calls cost what their work costs.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let slept = &runs_of(&attacker, "A-sleep", "sleeper")[0];
    assert_eq!(slept["error"], Value::Null, "{slept}");
    assert!(
        slept.to_string().contains("slept-ms=30000"),
        "the guest saw 30 s pass: {slept}"
    );
    let napped = &runs_of(&attacker, "A-nap", "sleeper")[0];
    assert!(napped.to_string().contains("napped-ms=10000"), "{napped}");
    assert!(slept["duration_us"].as_u64().unwrap() < 100_000, "{slept}");
    restarts_cleanly(&mut server, dir.path(), &victim);
}

#[test]
fn a_plugin_spinning_on_the_clock_ends_by_its_deadline_while_the_victim_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    // Fuel to spare: only the deadline stops it.
    upload(
        &attacker,
        "sleeper",
        "trigger",
        "sleeper",
        "[limits]\ntimeout-ms = 1500\nfuel = 100_000_000_000\n",
    );
    let attack = attack(&server, &attacker, 6, "spin-clock");
    std::thread::sleep(Duration::from_millis(200));
    victim_works(&victim, "V", 5);
    assert!(
        attack.iter().any(|t| !t.is_finished()),
        "the attack is still in flight while the victim was served"
    );
    for t in attack {
        let (status, v) = t.join().unwrap();
        assert_eq!(status, 201, "{v}");
    }
    // The attacker's calls wait behind each other (its share on 2 cores
    // is one call at a time), each up to its 1.5 s plus at most 1 s paused
    // for other tenants' work: the last ones may wait past the 10 s queue
    // timeout and fail as overloaded without running (a CI run saw one),
    // which holds the attacker back too. Every call that ran was ended by
    // its deadline.
    let mut ended = 0;
    for i in 0..6 {
        let run = &runs_of(&attacker, &format!("A-{i}"), "sleeper")[0];
        match run["error_kind"].as_str() {
            Some("deadline") => ended += 1,
            Some("overloaded") => {
                assert_eq!(run["fuel_used"], 0, "it never ran: {run}");
                continue;
            }
            _ => panic!("ended by its deadline or never run: {run}"),
        }
        // Its deadline plus the epoch's lag, with room for a loaded machine.
        assert!(
            run["duration_us"].as_u64().unwrap() < 1_500_000 + 500_000,
            "{run}"
        );
    }
    assert!(ended >= 4, "{ended} of 6 ran");
    builtins_active(&attacker);
    builtins_active(&victim);
    restarts_cleanly(&mut server, dir.path(), &victim);
}

#[test]
fn out_of_range_durations_from_every_world_are_invalid_output_and_the_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    attacker.roster();
    victim.roster();
    // The attacker's router and notifier replace the built-in ones.
    upload(&attacker, "skills", "router", "rogue-router", "");
    upload(&attacker, "tiered", "notifier", "rogue-notifier", "");
    upload(&attacker, "hostile", "trigger", "hostile", "");
    for (id, subject, plugin) in [
        ("A-delay", "far-delay", "tiered"),
        ("A-delay63", "delay-2^63", "tiered"),
        ("A-digest", "far-digest", "tiered"),
        ("A-fallback", "far-fallback", "skills"),
        ("A-fallback63", "fallback-2^63", "skills"),
        ("A-wake", "wake-far", "hostile"),
    ] {
        let (status, v) = attacker.call("POST", "/v1/tickets", Some(ticket(id, subject)));
        assert_eq!(status, 201, "{id}: {v}");
        let runs = runs_of(&attacker, id, plugin);
        assert!(
            runs.iter().any(|r| r["error_kind"] == "invalid-output"),
            "{id}: {runs:?}"
        );
    }
    // The manual clock, moved a year on, fires everything due; nothing
    // overflowed into a timer.
    server.advance(366 * 24 * 60);
    victim_works(&victim, "V1", 2);
    let mut server = restart(&mut server, dir.path());
    let victim = Api::with_token(&server.base, &victim.token());
    victim_works(&victim, "V2", 2);
    builtins_active(&victim);
    server.kill();
}

#[test]
fn a_restart_decides_events_left_in_flight_for_plugins_that_log_sleep_and_spin() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    upload(
        &attacker,
        "sleeper",
        "trigger",
        "sleeper",
        "[limits]\ntimeout-ms = 300\nfuel = 100_000_000_000\n",
    );
    upload(&attacker, "tiered", "notifier", "rogue-notifier", "");
    for subject in ["chatty", "sleep", "spin-clock", "nap", "far-delay"] {
        attacker.ok(
            "POST",
            "/v1/tickets",
            Some(ticket(&format!("A-{subject}"), subject)),
        );
    }
    victim.ok("POST", "/v1/tickets", Some(ticket("V-0", "ordinary")));
    server.kill();
    // As a kill -9 between storing the events and storing their decisions
    // leaves them: undecided. Every start decides them again.
    let db = rusqlite::Connection::open(dir.path().join("escalator.db")).unwrap();
    let undecided = db
        .execute("UPDATE events SET processed = 0, response = NULL", [])
        .unwrap();
    assert!(undecided >= 6, "{undecided}");
    drop(db);
    let mut server = Escalator::start(dir.path(), T0, None);
    let attacker = Api::with_token(&server.base, &attacker.token());
    let victim = Api::with_token(&server.base, &victim.token());
    victim_works(&victim, "V1", 2);
    for subject in ["chatty", "sleep", "spin-clock", "nap", "far-delay"] {
        let t = attacker.ok("GET", &format!("/v1/tickets/A-{subject}"), None);
        assert!(
            t["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["processed"] == true),
            "{subject}: {}",
            t["events"]
        );
    }
    // SIGTERM with an attack in flight, then start again.
    let base = server.base.clone();
    let token = attacker.token();
    let inflight = std::thread::spawn(move || {
        Api::with_token(&base, &token).try_call(
            "POST",
            "/v1/tickets",
            Some(ticket("A-term", "spin-clock")),
            &[],
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    server.terminate();
    let _ = inflight.join();
    let server = Escalator::start(dir.path(), T0, None);
    let victim = Api::with_token(&server.base, &victim.token());
    victim_works(&victim, "V2", 2);
    builtins_active(&victim);
}

#[test]
fn a_failing_timer_backs_off_and_is_dead_lettered_while_other_timers_fire() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let victim = server.tenant("victim");
    let attacker = server.tenant("attacker");
    victim.roster();
    victim.ok("POST", "/v1/tickets", Some(ticket("V-0", "ordinary")));
    attacker.ok("POST", "/v1/tickets", Some(ticket("A-0", "ordinary")));
    let pending_before = victim.ok("GET", "/v1/tickets/V-0", None)["timers"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["state"] == "pending").count());
    assert!(pending_before > 0, "the victim's escalation planned timers");
    server.kill();
    // A poisoned timer, due first, whose payload cannot be read.
    let store: Box<escalator::store::Store> = Box::new(
        escalator::store::SqliteStore::open(
            &dir.path().join("escalator.db"),
            escalator::store::Durability::Process,
        )
        .unwrap(),
    );
    let poisoned = store
        .write(|tx| {
            tx.insert_timer(
                "attacker",
                "A-0",
                escalator::store::TimerKind::Step,
                T0.parse().unwrap(),
                &json!({"step": "not a step"}),
            )
        })
        .unwrap();
    drop(store);
    let server = Escalator::start(dir.path(), T0, None);
    let victim = Api::with_token(&server.base, &victim.token());
    // An hour on: the victim's reminders fire; the poisoned timer is
    // retried with back-off and dead-lettered after 5 attempts.
    server.advance(60);
    let timers = victim.ok("GET", "/v1/tickets/V-0", None)["timers"].clone();
    let fired = timers
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "done")
        .count();
    assert!(fired > 0, "the victim's timers fired: {timers}");
    let db = rusqlite::Connection::open(dir.path().join("escalator.db")).unwrap();
    let (state, attempts, outcome): (String, i64, String) = db
        .query_row(
            "SELECT state, attempts, outcome FROM timers WHERE id = ?1",
            [poisoned],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(state, "dead", "{outcome}");
    assert_eq!(attempts, escalator::store::TIMER_MAX_ATTEMPTS);
    assert!(outcome.contains("dead-lettered"), "{outcome}");
}

#[test]
fn memory_hoarded_by_many_calls_at_once_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(
        dir.path(),
        T0,
        Some("[plugins]\ntenant-concurrency = 1\nmemory-budget-mib = 512\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    upload(
        &attacker,
        "sleeper",
        "trigger",
        "sleeper",
        "[limits]\nmemory-mib = 256\ntimeout-ms = 2000\n",
    );
    let attack = attack(&server, &attacker, 8, "hoard:200");
    victim_works(&victim, "V", 5);
    for t in attack {
        assert_eq!(t.join().unwrap().0, 201);
    }
    let rss_kib = server.rss_kib();
    // 8 × 200 MiB would be 1.6 GiB; one at a time it is one hoard.
    assert!(rss_kib < 1_200 * 1024, "server RSS {rss_kib} KiB");
    builtins_active(&victim);
    restarts_cleanly(&mut server, dir.path(), &victim);
}

#[test]
fn ten_thousand_signal_keys_are_refused_and_metrics_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // About the keys and the metrics, not the budget of server time (61
    // tickets in a row exceed it on a loaded machine; quotas.rs tests it).
    let mut server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nwork-ms-per-second = 1000000\nwork-burst-ms = 1000000\n"),
    );
    let attacker = server.tenant("attacker");
    let victim = server.tenant("victim");
    upload(&attacker, "hostile", "trigger", "hostile", "");
    attacker.ok("POST", "/v1/tickets", Some(ticket("A-keys", "keys")));
    let run = &runs_of(&attacker, "A-keys", "hostile")[0];
    assert_eq!(run["error_kind"], "invalid-output", "{run}");
    for i in 0..60 {
        attacker.ok(
            "POST",
            "/v1/tickets",
            Some(ticket(&format!("A-{i}"), "distinct-key")),
        );
    }
    let metrics = reqwest::blocking::Client::new()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(server.admin().token())
        .send()
        .unwrap()
        .text()
        .unwrap();
    let causes = metrics
        .lines()
        .filter(|l| l.starts_with("escalator_escalations_total{") && l.contains("attacker"))
        .count();
    assert!(
        causes <= escalator::metrics::MAX_LABEL_VALUES + 1,
        "{causes} label sets"
    );
    restarts_cleanly(&mut server, dir.path(), &victim);
}

#[test]
fn a_ticket_at_the_body_limit_with_thousands_of_messages_disables_no_builtin() {
    let dir = tempfile::tempdir().unwrap();
    // This is about the plugins, not the budget of server time that holds
    // a tenant sending such tickets fast (quotas.rs).
    let mut server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nwork-ms-per-second = 1000000\nwork-burst-ms = 1000000\n"),
    );
    let victim = server.tenant("victim");
    // Just under the 1 MiB body limit: thousands of messages.
    let body = "I have been waiting for days and nobody answers my billing question, ".repeat(3);
    let mut t = ticket("V-big", "big");
    let message = json!({"author": "customer", "body": body, "sent_at": T0});
    // Each message adds its JSON and a comma.
    let room = 1_040_000 - t.to_string().len();
    let count = room / (message.to_string().len() + 1) - 1;
    t["messages"] = json!(vec![message; count]);
    assert!(t.to_string().len() < 1_040_000);
    assert!(count > 3_000, "{count} messages");
    victim.ok("POST", "/v1/tickets", Some(t));
    // Enough calls to fill the crash-loop guard's window (20).
    for i in 0..21 {
        victim.ok(
            "POST",
            "/v1/tickets/V-big/events",
            Some(json!({"type": "message", "author": "customer", "body": format!("still waiting {i}")})),
        );
    }
    let t = victim.ok("GET", "/v1/tickets/V-big", None);
    let failures: Vec<&Value> = t["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["audit"].as_array().unwrap())
        .filter(|r| !r["error"].is_null())
        .collect();
    assert!(failures.is_empty(), "built-ins failed: {failures:?}");
    builtins_active(&victim);
    victim_works(&victim, "V", 2);
    restarts_cleanly(&mut server, dir.path(), &victim);
}

#[test]
fn concurrent_duplicates_get_the_first_answer_and_a_key_is_scoped_to_its_ticket_and_request() {
    let dir = tempfile::tempdir().unwrap();
    // The budget of server time bills each request's wall time, so a
    // hundred at once on a loaded machine can put the tenant in debt: this
    // test is about idempotency, not that budget (quotas.rs).
    let server = Escalator::start(
        dir.path(),
        T0,
        Some("[limits]\nwork-ms-per-second = 1000000\nwork-burst-ms = 1000000\n"),
    );
    let acme = server.tenant("acme");
    acme.ok("POST", "/v1/tickets", Some(ticket("T-1", "ordinary")));
    acme.ok("POST", "/v1/tickets", Some(ticket("T-2", "ordinary")));
    let event = json!({"type": "message", "author": "customer", "body": "any news?"});
    // 100 trials of the same event with the same key, sent at once.
    let (base, token) = (server.base.clone(), acme.token());
    let answers: Vec<(u16, Value)> = (0..100)
        .map(|_| {
            let (base, token, event) = (base.clone(), token.clone(), event.clone());
            std::thread::spawn(move || {
                Api::with_token(&base, &token).call_with(
                    "POST",
                    "/v1/tickets/T-1/events",
                    Some(event),
                    &[("idempotency-key", "retry-1")],
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 200),
        "{answers:?}"
    );
    let firsts: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(_, v)| v["event"].to_string())
        .collect();
    assert_eq!(
        firsts.len(),
        1,
        "every duplicate got the first answer: {firsts:?}"
    );
    let stored = |id: &str| {
        acme.ok("GET", &format!("/v1/tickets/{id}"), None)["events"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(stored("T-1"), 2, "one event stored (after the creation)");
    // The same key on another ticket is another request.
    let (status, other) = acme.call_with(
        "POST",
        "/v1/tickets/T-2/events",
        Some(event.clone()),
        &[("idempotency-key", "retry-1")],
    );
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["ticket"], "T-2");
    assert_eq!(stored("T-2"), 2);
    // The same key with another body is refused, and says why.
    let (status, v) = acme.call_with(
        "POST",
        "/v1/tickets/T-1/events",
        Some(json!({"type": "message", "author": "customer", "body": "something else"})),
        &[("idempotency-key", "retry-1")],
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "idempotency.key_reused", "{v}");
    assert_eq!(stored("T-1"), 2);
}

#[test]
fn a_legitimate_request_is_served_while_more_slow_clients_are_held_than_the_server_has_files() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Escalator::start_under(
        dir.path(),
        T0,
        Some("header-timeout-ms = 2000\n"),
        &[],
        &["prlimit", "--nofile=128:128", "--"],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    // 200 slow-loris clients: each sends half a request line and stops.
    let held: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).ok()?;
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n");
            Some(c)
        })
        .collect();
    assert!(held.len() > 128, "only {} connections held", held.len());
    let started = Instant::now();
    let (status, v) = server
        .admin()
        .try_call("GET", "/healthz", None, &[])
        .expect("a legitimate request is answered while the slow clients hang on");
    assert_eq!(status, 200, "{v}");
    // Served once the header timeout freed slots: seconds, not never.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let warnings = log.matches("accept failed").count();
    assert!(
        warnings < 50,
        "{warnings} accept warnings: the accept loop backs off"
    );
}

/// A wake-up being decided when the process is killed is decided at the
/// next start: the timer is taken in the same transaction that stores its
/// decision, so a kill -9 in between leaves it due, not done and undecided.
#[test]
fn a_wake_up_cut_off_by_a_kill_is_decided_after_the_restart_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Escalator::start(dir.path(), T0, None);
    let api = server.tenant("acme");
    // Each evaluation of a "spin-clock" ticket takes its whole 3 s
    // deadline: the wake-up's decision is still being made when the kill
    // comes.
    upload(
        &api,
        "sleeper",
        "trigger",
        "sleeper",
        "[limits]\ntimeout-ms = 3000\nfuel = 100_000_000_000\n",
    );
    api.ok("POST", "/v1/tickets", Some(ticket("T-1", "spin-clock")));
    let timers = api.ok("GET", "/v1/tickets/T-1/timers", None);
    let wake = timers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "wake" && t["state"] == "pending")
        .unwrap_or_else(|| panic!("no pending wake-up: {timers}"))
        .clone();
    let (id, due) = (
        wake["id"].as_i64().unwrap(),
        wake["due_at"].as_i64().unwrap(),
    );
    let t0 = chrono::DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .timestamp_millis();
    let minutes = (due - t0) / 60_000 + 1;
    let clock = server.admin();
    let advancing = std::thread::spawn(move || {
        clock.try_call(
            "POST",
            "/v1/clock",
            Some(json!({"advance_ms": minutes * 60_000})),
            &[],
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    let _ = advancing.join();
    let db = rusqlite::Connection::open(dir.path().join("escalator.db")).unwrap();
    let (state, decided): (String, i64) = db
        .query_row(
            "SELECT state, (SELECT count(*) FROM decisions WHERE cause = 'timer:' || ?1) \
             FROM timers WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), decided),
        ("pending", 0),
        "killed while deciding, the wake-up is still due"
    );
    drop(db);
    let server = Escalator::start(dir.path(), T0, None);
    server.advance(minutes);
    let api = Api::with_token(&server.base, &api.token());
    let t = api.ok("GET", "/v1/tickets/T-1", None);
    let fired: Vec<&Value> = t["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["cause"] == format!("timer:{id}"))
        .collect();
    assert_eq!(fired.len(), 1, "decided once: {}", t["decisions"]);
    let timer = t["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap();
    assert_eq!(timer["state"], "done", "{timer}");
}
