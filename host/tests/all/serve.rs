//! End-to-end: the real `escalator serve` binary over HTTP, on a real
//! SQLite file, with real Slack/webhook (HTTP) and SMTP peers on loopback,
//! on a manual clock that the tests move instead of sleeping.

use crate::peers::{Recorder, Smtp, eventually};
use crate::support::Db;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

on_both_backends!(
    a_critical_escalation_reaches_its_assignee_at_once_then_reminds_falls_back_and_stops_when_claimed,
    a_lead_is_not_sent_a_routine_escalation_claimed_in_time,
    each_person_is_told_what_they_asked_for_and_a_critical_escalation_still_reaches_someone,
    a_resolved_escalation_tells_subscribed_endpoints_what_the_human_did,
    the_handoff_packet_carries_everything_the_ai_collected,
    tenant_b_sees_nothing_of_tenant_a,
    bad_requests_get_clear_errors_and_change_nothing,
    a_webhook_that_fails_for_a_while_gets_everything_once_it_recovers,
    an_agent_going_away_hands_their_unclaimed_escalations_to_someone_else,
    notifications_for_one_person_within_the_digest_window_go_out_as_one_digest,
    kill_9_during_a_burst_loses_no_acknowledged_event_and_due_timers_fire_once,
    metrics_dashboard_and_feedback_report_what_happened,
);

pub const ADMIN: &str = "test-admin-token-0123456789abcdef";
const T0: &str = "2026-11-27T12:00:00Z";

/// The outbound policy refuses loopback: tests whose receivers listen on
/// 127.0.0.1 allow it, as an operator would allow an internal host.
pub const LOOPBACK_RECEIVERS: &str = "[outbound]\nallow = [\"127.0.0.1\"]\n";

/// A running `escalator serve`.
pub struct Escalator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Escalator {
    /// Start the binary on `data` with a manual clock at `clock`.
    pub fn start(data: &Path, clock: &str, config: Option<&str>) -> Escalator {
        Escalator::start_with(data, clock, config, &[])
    }

    /// Start with extra flags.
    pub fn start_with(data: &Path, clock: &str, config: Option<&str>, extra: &[&str]) -> Escalator {
        Escalator::start_under(data, clock, config, extra, &[])
    }

    /// Start under a wrapper command (e.g. `prlimit --nofile=128 --`).
    pub fn start_under(
        data: &Path,
        clock: &str,
        config: Option<&str>,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Escalator {
        std::fs::create_dir_all(data).unwrap();
        if let Some(c) = config {
            std::fs::write(data.join("escalator.toml"), c).unwrap();
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_escalator");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        // A data directory of `Db::data_dir` on PostgreSQL names its
        // database.
        let database: Vec<String> = match std::fs::read_to_string(data.join(".database")) {
            Ok(url) => vec!["--database".into(), url.trim().into()],
            Err(_) => Vec::new(),
        };
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--manual-clock", clock])
            .arg("--data-dir")
            .arg(data)
            .args(&database)
            .args(extra)
            .env("ESCALATOR_ADMIN_TOKEN", ADMIN)
            .env("ESCALATOR_LOG", "info")
            // Compiled plugins are cached where every test's servers find
            // them, as a deployment's survive restarts: the default set
            // compiles once per run, not once per server (`--cache-dir`
            // in `extra` beats this).
            .env(
                "ESCALATOR_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-cache"),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the escalator binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (said_db, heard_db) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("escalator listening on ") {
                    let _ = tx.send(url.to_string());
                }
                if let Some(db) = line.strip_prefix("database: ") {
                    let _ = said_db.send(db.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not start; its log:\n{}",
                    std::fs::read_to_string(data.join("server.log")).unwrap_or_default()
                )
            });
        // The server runs on the database it was given, not a SQLite file
        // beside it.
        let db = heard_db
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        assert_eq!(
            db.starts_with("postgres://"),
            !database.is_empty(),
            "the server says it runs on {db:?}"
        );
        Escalator { child, base }
    }

    /// SIGTERM, and wait for the process to end.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The server's threads: (name, nice value), from `/proc`.
    pub fn threads(&self) -> Vec<(String, i64)> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                let (open, close) = (stat.find('(')?, stat.rfind(')')?);
                // After the name: state is field 3, nice field 19.
                let nice = stat[close + 2..].split(' ').nth(16)?.parse().ok()?;
                Some((stat[open + 1..close].to_string(), nice))
            })
            .collect()
    }

    /// The server's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client with the admin token.
    pub fn admin(&self) -> Api {
        Api {
            base: self.base.clone(),
            token: ADMIN.into(),
            http: http(),
        }
    }

    /// Create tenant `id`; a client with its token.
    pub fn tenant(&self, id: &str) -> Api {
        let (status, v) = self
            .admin()
            .call("POST", "/v1/tenants", Some(json!({"id": id})));
        assert_eq!(status, 201, "{v}");
        Api {
            base: self.base.clone(),
            token: v["token"].as_str().unwrap().into(),
            http: http(),
        }
    }

    /// Move the manual clock forward; timers due on the way fire first.
    pub fn advance(&self, minutes: i64) {
        let (status, v) = self.admin().call(
            "POST",
            "/v1/clock",
            Some(json!({"advance_ms": minutes * 60_000})),
        );
        assert_eq!(status, 200, "{v}");
    }
}

impl Drop for Escalator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server closes a keep-alive connection idle for its header timeout
/// (10 s). A client that sends on such a connection at that moment gets
/// no answer: the connection is closed under the request. As any
/// well-behaved HTTP client, the tests' drop an idle connection first.
const CLIENT_IDLE: Duration = Duration::from_secs(5);

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(CLIENT_IDLE)
        .build()
        .unwrap()
}

/// A client with one bearer token.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    /// A client for `base` with `token`.
    pub fn with_token(base: &str, token: &str) -> Api {
        Api {
            base: base.into(),
            token: token.into(),
            http: http(),
        }
    }

    /// The token.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Call and return (status, JSON body).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, &[])
    }

    /// Call with extra headers.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        self.send(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: the server did not answer: {e:?}"))
    }

    /// Call; `None` if the server did not answer (it died).
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Option<(u16, Value)> {
        self.send(method, path, body, headers).ok()
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Call and insist on 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// The example roster, with e-mail addresses and Slack ids.
    pub fn roster(&self) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/roster.json");
        let agents: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for mut a in agents {
            let id = a["id"].as_str().unwrap().to_string();
            a["email"] = json!(format!("{id}@example.com"));
            a["slack_id"] = json!(format!("U-{}", id.to_uppercase()));
            self.ok("PUT", &format!("/v1/agents/{id}"), Some(a));
        }
    }

    /// The in-app feed of `agent` as SSE lines, read on a thread.
    pub fn sse(&self, agent: &str) -> mpsc::Receiver<String> {
        let resp = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .get(format!("{}/v1/agents/{agent}/feed", self.base))
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(resp).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

pub(crate) fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/tickets")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn channels(slack: &Recorder, smtp: &Smtp) -> Value {
    json!({
        "slack_webhook_url": format!("{}/slack", slack.url),
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none",
                 "from": "Escalator <escalator@example.com>"},
        "webhooks": {"ops": {"url": format!("{}/hook", slack.url), "secret": "s3cret",
                             "events": ["escalated"]}}
    })
}

/// A server on `db` at `T0` whose tenant `acme` has the example roster
/// and Slack, e-mail and an escalation webhook on loopback receivers.
fn staffed(db: &Db) -> (tempfile::TempDir, Recorder, Smtp, Escalator, Api) {
    let (dir, data) = db.data_dir();
    let (slack, smtp) = (Recorder::start(), Smtp::start());
    let server = Escalator::start(&data, T0, Some(LOOPBACK_RECEIVERS));
    let acme = server.tenant("acme");
    acme.roster();
    acme.ok("PUT", "/v1/settings", Some(channels(&slack, &smtp)));
    (dir, slack, smtp, server, acme)
}

fn slack_texts(r: &Recorder) -> Vec<String> {
    r.delivered("/slack")
        .iter()
        .map(|x| x.json()["text"].as_str().unwrap_or("").to_string())
        .collect()
}

fn feed_titles(api: &Api, agent: &str) -> Vec<String> {
    api.ok("GET", &format!("/v1/agents/{agent}/feed"), None)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

fn a_critical_escalation_reaches_its_assignee_at_once_then_reminds_falls_back_and_stops_when_claimed(
    db: &Db,
) {
    let (_dir, slack, smtp, server, acme) = staffed(db);
    // Secrets are write-only: the read hides the Slack URL, and writing the
    // read back keeps the real one (the deliveries below still arrive).
    let read = acme.ok("GET", "/v1/settings", None);
    assert!(
        read["slack_webhook_url"]
            .as_str()
            .unwrap()
            .ends_with("/***"),
        "{read}"
    );
    acme.ok("PUT", "/v1/settings", Some(read));
    let bo_feed = acme.sse("bo");

    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    assert_eq!(out["tier"], "critical", "{out}");
    assert_eq!(
        out["assignee"], "bo",
        "the least recently assigned billing specialist"
    );
    assert!(
        out["customer_message"]
            .as_str()
            .unwrap()
            .contains("billing specialist"),
        "{out}"
    );

    // At once: in-app (streamed), Slack and e-mail to bo.
    let line = eventually(10, "bo's in-app alert over SSE", || {
        bo_feed
            .recv_timeout(Duration::from_millis(200))
            .ok()
            .filter(|l| l.starts_with("data:") && l.contains("Critical escalation"))
    });
    assert!(line.contains("Acme Corp, $50K MRR"), "{line}");
    let first = eventually(10, "the Slack alert", || {
        slack.delivered("/slack").into_iter().find(|r| {
            r.json()["text"]
                .as_str()
                .unwrap()
                .starts_with("Critical escalation: Enterprise customer (Acme Corp, $50K MRR) reports billing issue — SLA: 30m")
        })
    });
    let blocks = first.json()["blocks"].clone();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("<@U-BO>"),
        "{blocks}"
    );
    assert!(first.headers.contains_key("idempotency-key"));
    let mail = eventually(10, "the e-mail to bo", || {
        smtp.mails()
            .into_iter()
            .find(|m| m.to == ["bo@example.com"])
    });
    assert_eq!(mail.from, "escalator@example.com");
    assert!(
        mail.data.contains("Subject: Critical escalation"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Message-ID: <"), "{}", mail.data);
    // The ops webhook got the handoff packet, signed.
    let hook = eventually(10, "the escalation webhook", || {
        slack.delivered("/hook").into_iter().next()
    });
    let (ts, sig) = (
        hook.headers["x-escalator-timestamp"]
            .parse::<i64>()
            .unwrap(),
        hook.headers["x-escalator-signature"].clone(),
    );
    assert_eq!(
        sig,
        escalator::delivery::signature("s3cret", ts, hook.body.as_bytes())
    );
    assert_eq!(hook.json()["handoff"]["customer"]["name"], "Acme Corp");
    // The lead hears of it in-app (every critical), nothing louder yet.
    assert!(
        feed_titles(&acme, "lee")
            .iter()
            .all(|t| t.starts_with("FYI:"))
    );
    assert!(!slack_texts(&slack).iter().any(|t| t.contains("Unclaimed")));

    // 10 minutes: one reminder to bo.
    server.advance(10);
    let reminders = eventually(10, "the reminder", || {
        let r: Vec<_> = slack_texts(&slack)
            .into_iter()
            .filter(|t| t.starts_with("Reminder:"))
            .collect();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reminders.len(), 1);
    assert!(!slack_texts(&slack).iter().any(|t| t.contains("Unclaimed")));

    // 15 minutes: the backup specialist gets it; the team lead is told.
    server.advance(5);
    let ticket = acme.ok("GET", "/v1/tickets/T-1001", None);
    assert_eq!(ticket["assignee"], "ana", "{}", ticket["history"]);
    eventually(10, "ana's alert and the lead's escalation", || {
        let texts = slack_texts(&slack);
        (texts.iter().any(|t| t.starts_with("Reassigned to you"))
            && texts.iter().any(|t| t.starts_with("Unclaimed after 15m")))
        .then_some(())
    });
    eventually(10, "the e-mails to ana and lee", || {
        let to: Vec<_> = smtp.mails().into_iter().flat_map(|m| m.to).collect();
        (to.contains(&"ana@example.com".to_string()) && to.contains(&"lee@example.com".to_string()))
            .then_some(())
    });
    assert!(feed_titles(&acme, "ana")[0].starts_with("Reassigned to you"));

    // Ana claims and answers: the chain stops.
    acme.ok(
        "POST",
        "/v1/tickets/T-1001/events",
        Some(json!({"type": "claim", "agent": "ana"})),
    );
    acme.ok(
        "POST",
        "/v1/tickets/T-1001/events",
        Some(json!({"type": "reply", "agent": "ana", "body": "Refund approved, you will see it in 2 days."})),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (slack_before, mail_before) = (slack.delivered("/slack").len(), smtp.mails().len());
    server.advance(180);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        slack.delivered("/slack").len(),
        slack_before,
        "{:?}",
        slack_texts(&slack)
    );
    assert_eq!(smtp.mails().len(), mail_before);
    let timers = acme.ok("GET", "/v1/tickets/T-1001/timers", None);
    let outcomes: Vec<(&str, &str)> = timers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t["state"].as_str()?, t["outcome"].as_str()?)))
        .collect();
    // The claim cancelled the rest of the chain at once; the claim's own
    // reminders were skipped because ana answered.
    assert!(outcomes.contains(&("cancelled", "claimed")), "{outcomes:?}");
    assert!(
        outcomes.contains(&("done", "skipped: answered")),
        "{outcomes:?}"
    );
    assert!(
        !timers
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["state"] == "pending" && t["kind"] == "step")
    );
    // Every delivery went out once: no failures, no duplicates.
    let log = acme.ok("GET", "/v1/deliveries?ticket=T-1001", None);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "sent"),
        "{log}"
    );
}

fn a_lead_is_not_sent_a_routine_escalation_claimed_in_time(db: &Db) {
    let (_dir, _slack, smtp, server, acme) = staffed(db);
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "T-7", "subject": "Invoice address", "category": "billing",
                    "created_at": T0,
                    "messages": [{"author": "customer", "body": "Please change the address on my invoice.", "sent_at": T0}]})),
    );
    assert_eq!(out["tier"], "high", "{out}");
    server.advance(5);
    acme.ok(
        "POST",
        "/v1/tickets/T-7/events",
        Some(json!({"type": "claim", "agent": "bo"})),
    );
    acme.ok(
        "POST",
        "/v1/tickets/T-7/events",
        Some(json!({"type": "reply", "agent": "bo", "body": "Done."})),
    );
    server.advance(24 * 60);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        feed_titles(&acme, "lee").is_empty(),
        "{:?}",
        feed_titles(&acme, "lee")
    );
    assert!(feed_titles(&acme, "max").is_empty());
    assert!(
        !smtp
            .mails()
            .iter()
            .any(|m| m.to.contains(&"lee@example.com".to_string())),
        "the lead got mail"
    );
}

fn each_person_is_told_what_they_asked_for_and_a_critical_escalation_still_reaches_someone(
    db: &Db,
) {
    let (_dir, slack, smtp, server, acme) = staffed(db);
    let prefs =
        |who: &str, p: Value| acme.ok("PUT", &format!("/v1/agents/{who}/notifications"), Some(p));
    // The manager wants every critical escalation, by e-mail; the
    // technical lead only tickets of their own; ana only her own, and
    // quiet from 12:30 to 13:40 in Madrid (11:30 to 12:40 UTC).
    prefs(
        "max",
        json!({"tiers": ["critical"], "tickets": "all", "channels": ["email"]}),
    );
    prefs("tam", json!({"tickets": "mine"}));
    let set = prefs(
        "ana",
        json!({"tickets": "mine", "quiet_hours": {"start": "12:30", "end": "13:40"}}),
    );
    assert_eq!(set["tickets"], "mine", "{set}");
    // A roster sync that says nothing of preferences keeps them; bad ones
    // are refused with the field named.
    let mut ana = acme.ok("GET", "/v1/agents/ana", None);
    ana.as_object_mut().unwrap().remove("notifications");
    acme.ok("PUT", "/v1/agents/ana", Some(ana));
    assert_eq!(
        acme.ok("GET", "/v1/agents/ana/notifications", None)["quiet_hours"]["end"],
        "13:40"
    );
    let (status, err) = acme.call(
        "PUT",
        "/v1/agents/ana/notifications",
        Some(json!({"quiet_hours": {"start": "25:00", "end": "07:00"}})),
    );
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("quiet_hours.start"),
        "{err}"
    );
    let (status, _) = acme.call("PUT", "/v1/agents/nobody/notifications", Some(json!({})));
    assert_eq!(status, 404);
    let mails_to = |who: &str| {
        smtp.mails()
            .into_iter()
            .filter(|m| m.to == [format!("{who}@example.com")])
            .collect::<Vec<_>>()
    };

    // A critical escalation: bo has it; the manager is mailed; the lead
    // of billing hears of it as the plan says; the technical lead, who
    // asked for only their own, hears nothing.
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    assert_eq!(
        (out["tier"].as_str(), out["assignee"].as_str()),
        (Some("critical"), Some("bo"))
    );
    let to_max = eventually(10, "the manager's e-mail", || {
        let m = mails_to("max");
        (!m.is_empty()).then_some(m)
    });
    assert!(
        to_max[0].data.contains("Subject: Critical escalation"),
        "{}",
        to_max[0].data
    );
    eventually(10, "bo's e-mail", || {
        (!mails_to("bo").is_empty()).then_some(())
    });
    assert!(
        feed_titles(&acme, "lee")
            .iter()
            .any(|t| t.starts_with("FYI:"))
    );

    // A high one: ana's, in her quiet hours: in-app at once (the plan's
    // in-app step), Slack held until 12:40 UTC; the manager (critical
    // only) is not told.
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "T-7", "subject": "Invoice address", "category": "billing",
                    "created_at": T0,
                    "messages": [{"author": "customer", "body": "Please change the address on my invoice.", "sent_at": T0}]})),
    );
    assert_eq!(
        (out["tier"].as_str(), out["assignee"].as_str()),
        (Some("high"), Some("ana")),
        "{out}"
    );
    assert!(
        feed_titles(&acme, "ana")
            .iter()
            .any(|t| t.starts_with("High escalation")),
        "{:?}",
        feed_titles(&acme, "ana")
    );
    let to_ana_on_slack = || {
        slack
            .delivered("/slack")
            .into_iter()
            .filter(|r| r.body.contains("<@U-ANA>") && r.body.contains("High escalation"))
            .count()
    };
    let held: Vec<Value> = acme
        .ok("GET", "/v1/tickets/T-7/timers", None)
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "pending" && t["payload"]["held_for"] == "ana")
        .cloned()
        .collect();
    assert!(
        // 2026-11-27T12:40:00Z
        held.iter().any(|t| t["due_at"] == 1_795_783_200_000_i64),
        "{held:?}"
    );

    // A second critical escalation: the manager gets each one.
    let mut again = example("enterprise-billing-dispute.json");
    again["id"] = json!("T-1004");
    let out = acme.ok("POST", "/v1/tickets", Some(again));
    assert_eq!(out["tier"], "critical");
    eventually(10, "the manager's second e-mail", || {
        (mails_to("max").len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        to_ana_on_slack(),
        0,
        "ana's Slack message came in her quiet hours"
    );
    assert_eq!(
        mails_to("max").len(),
        2,
        "the manager was told of the high one"
    );

    // 12:40 UTC: ana's quiet hours are over and her Slack message comes
    // (before the ticket's first fallback, at 13:00, would move it).
    server.advance(40);
    eventually(10, "ana's Slack message after her quiet hours", || {
        (to_ana_on_slack() > 0).then_some(())
    });
    assert!(
        feed_titles(&acme, "tam").is_empty(),
        "{:?}",
        feed_titles(&acme, "tam")
    );

    // Everyone opts out of critical escalations: the next one still
    // reaches someone on duty (its assignee), on the plan's channels.
    for who in ["ana", "bo"] {
        prefs(who, json!({"tiers": ["low"]}));
    }
    prefs("lee", json!({"tickets": "mine"}));
    acme.ok("DELETE", "/v1/agents/max/notifications", None);
    let mut third = example("enterprise-billing-dispute.json");
    third["id"] = json!("T-1005");
    let out = acme.ok("POST", "/v1/tickets", Some(third));
    let who = out["assignee"].as_str().unwrap().to_string();
    assert_eq!(out["tier"], "critical");
    let log = acme.ok("GET", "/v1/deliveries?ticket=T-1005", None);
    let to_assignee: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["recipient"] == who.as_str())
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    for ch in ["slack", "email", "in-app"] {
        assert!(to_assignee.contains(&ch), "{who} not told on {ch}: {log}");
    }
}

fn a_resolved_escalation_tells_subscribed_endpoints_what_the_human_did(db: &Db) {
    let (_dir, slack, _smtp, _server, acme) = staffed(db);
    // A knowledge-base endpoint subscribed to resolutions.
    let mut settings = acme.ok("GET", "/v1/settings", None);
    settings["webhooks"]["kb"] =
        json!({"url": format!("{}/kb", slack.url), "secret": "kb-secret", "events": ["resolved"]});
    acme.ok("PUT", "/v1/settings", Some(settings));
    let (status, err) = acme.call(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {"x": {"url": format!("{}/x", slack.url), "secret": "s", "events": ["closed"]}}})),
    );
    assert!(status == 400 || status == 422, "{status} {err}");

    acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    // A ticket that never escalated, solved: nothing for the endpoint.
    acme.ok("POST", "/v1/tickets", Some(example("password-reset.json")));
    acme.ok(
        "POST",
        "/v1/tickets/T-1002/events",
        Some(json!({"type": "resolve"})),
    );
    for event in [
        json!({"type": "claim", "agent": "bo"}),
        json!({"type": "reply", "agent": "bo", "body": "I reversed the duplicate November charge; the refund shows in 2 days."}),
        json!({"type": "status", "status": "solved"}),
    ] {
        acme.ok("POST", "/v1/tickets/T-1001/events", Some(event));
    }
    let hook = eventually(10, "the resolution at the kb endpoint", || {
        slack.delivered("/kb").into_iter().next()
    });
    let ts = hook.headers["x-escalator-timestamp"]
        .parse::<i64>()
        .unwrap();
    assert_eq!(
        hook.headers["x-escalator-signature"],
        escalator::delivery::signature("kb-secret", ts, hook.body.as_bytes())
    );
    let v = hook.json();
    assert_eq!(v["event"], "resolved", "{v}");
    let r = &v["resolution"];
    assert_eq!(r["ticket"], "T-1001");
    assert_eq!(r["tier"], "critical");
    assert_eq!(r["resolved_by"], "bo");
    assert_eq!(r["status"], "solved");
    assert_eq!(
        r["human_replies"][0]["body"],
        "I reversed the duplicate November charge; the refund shows in 2 days."
    );
    assert!(
        r["customer_asked"][0]
            .as_str()
            .unwrap()
            .contains("charged twice"),
        "{r}"
    );
    assert!(!r["why"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["ai"]["intent"], "refund-request", "{r}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        slack.delivered("/kb").len(),
        1,
        "one resolution, none for T-1002"
    );
    // The escalation endpoint heard of the escalation only.
    assert!(
        slack
            .delivered("/hook")
            .iter()
            .all(|h| h.json()["event"] == "escalated")
    );
}

fn the_handoff_packet_carries_everything_the_ai_collected(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "H-1", "subject": "Export keeps failing", "category": "technical",
            "created_at": T0, "channel": "chat",
            "customer": {"id": "C-9", "name": "Initech", "plan": "pro", "mrr_cents": 120000,
                         "contacts_this_week": 2, "attributes": {"region": "eu"}},
            "messages": [
                {"author": "customer", "body": "The CSV export fails with error E42 on projects over 10k rows.", "sent_at": T0},
                {"author": "ai-agent", "body": "Please try exporting in smaller batches.", "sent_at": T0}]})),
    );
    acme.ok(
        "POST",
        "/v1/tickets/H-1/events",
        Some(json!({"type": "message", "author": "customer",
        "body": "Batches fail too. Can I talk to a real person?"})),
    );
    acme.ok(
        "POST",
        "/v1/tickets/H-1/events",
        Some(json!({"type": "ai-analysis", "confidence": 0.31,
        "intent": "export-failure", "category": "technical",
        "reasoning": "E42 is a server-side timeout; nothing the customer can change.",
        "solutions_tried": ["smaller batches", "different browser"]})),
    );
    let h = acme.ok("GET", "/v1/tickets/H-1/handoff", None);
    let bodies: Vec<&str> = h["conversation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    for said in [
        "The CSV export fails with error E42 on projects over 10k rows.",
        "Please try exporting in smaller batches.",
        "Batches fail too. Can I talk to a real person?",
    ] {
        assert!(bodies.contains(&said), "{said} missing from {bodies:?}");
    }
    assert_eq!(h["ai"]["confidence"], 0.31);
    assert_eq!(h["ai"]["intent"], "export-failure");
    assert_eq!(
        h["ai"]["solutions_tried"],
        json!(["smaller batches", "different browser"])
    );
    assert!(
        h["ai"]["reasoning"]
            .as_str()
            .unwrap()
            .contains("server-side timeout")
    );
    assert_eq!(h["customer"]["name"], "Initech");
    assert_eq!(h["customer"]["mrr_cents"], 120000);
    assert_eq!(h["customer"]["attributes"]["region"], "eu");
    let why: Vec<&str> = h["escalation"]["why"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["key"].as_str().unwrap())
        .collect();
    assert!(why.contains(&"phrases:human-request"), "{why:?}");
    assert!(why.contains(&"ai-confidence:technical"), "{why:?}");
    assert!(h["escalation"]["respond_by"].is_string(), "{h}");
    assert!(h["assignee"].is_string(), "{h}");
    assert!(
        h["summary"]
            .as_str()
            .unwrap()
            .contains("Already tried: smaller batches"),
        "{h}"
    );
    // The customer was told a human is coming, in the conversation too.
    assert!(
        bodies
            .iter()
            .any(|b| b.starts_with("I'm connecting you with")),
        "{bodies:?}"
    );
    // The full ticket view carries the audit trail of every plugin call.
    let t = acme.ok("GET", "/v1/tickets/H-1", None);
    let audit = &t["decisions"][0]["audit"];
    assert!(audit.as_array().unwrap().len() >= 7, "{audit}");
    assert!(audit[0]["fuel_used"].as_u64().unwrap() > 0, "{}", audit[0]);
    assert!(audit[0]["plugin"].as_str().unwrap().contains('@'));
    assert_eq!(audit[0]["input_event"]["kind"], "ticket-created");
    // The escalation's plan and routing are stored once, in its
    // decision; the notifier's and router's entries read back with them
    // as their outputs.
    let decisions = t["decisions"].as_array().unwrap();
    let escalation = decisions
        .iter()
        .find(|d| d["data"]["plan"].is_object())
        .expect("a decision with a plan");
    for (plugin, field) in [("tiered@", "plan"), ("skills@", "routing")] {
        let entry = escalation["audit"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["plugin"].as_str().unwrap().starts_with(plugin))
            .expect("the plugin's entry");
        assert_eq!(entry["output"], escalation["data"][field], "{entry}");
        assert!(entry.get("output_in_decision").is_none(), "{entry}");
    }
}

fn tenant_b_sees_nothing_of_tenant_a(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, Some(LOOPBACK_RECEIVERS));
    let a = server.tenant("alpha");
    let b = server.tenant("beta");
    a.roster();
    a.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    a.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"slack_webhook_url": "http://127.0.0.1:9/alpha-secret"})),
    );
    for path in [
        "/v1/tickets/T-1001",
        "/v1/tickets/T-1001/handoff",
        "/v1/agents/bo",
        "/v1/agents/bo/feed",
    ] {
        let (status, v) = b.call("GET", path, None);
        assert_eq!(status, 404, "{path}: {v}");
    }
    for path in [
        "/v1/escalations",
        "/v1/agents",
        "/v1/deliveries",
        "/v1/tickets/T-1001/timers",
    ] {
        assert_eq!(b.ok("GET", path, None), json!([]), "{path}");
    }
    assert_eq!(
        b.ok("GET", "/v1/settings", None)["slack_webhook_url"],
        Value::Null
    );
    let (status, _) = b.call(
        "POST",
        "/v1/tickets/T-1001/events",
        Some(json!({"type": "claim", "agent": "bo"})),
    );
    assert_eq!(status, 404);
    // B may create its own T-1001: ids are per tenant.
    let own = b.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "T-1001", "created_at": T0})),
    );
    assert_eq!(own["ticket"], "T-1001");
    assert_eq!(
        a.ok("GET", "/v1/tickets/T-1001", None)["ticket"]["subject"],
        "Charged twice for November — this is unacceptable"
    );
    // Plugins: A's upload is A's alone.
    use base64::Engine as _;
    let wasm = escalator::registry::builtin("phrases").unwrap().wasm;
    a.ok(
        "POST",
        "/v1/plugins",
        Some(json!({
            "manifest": "name = \"alpha-rule\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n",
            "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        })),
    );
    let names = |api: &Api| -> Vec<String> {
        api.ok("GET", "/v1/plugins", None)["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names(&a).contains(&"alpha-rule".to_string()));
    assert!(
        !names(&b).contains(&"alpha-rule".to_string()),
        "{:?}",
        names(&b)
    );
    assert!(names(&b).contains(&"phrases".to_string()));
    assert_eq!(b.ok("GET", "/v1/plugin-changes", None), json!([]));
    assert_eq!(
        b.ok("GET", "/v1/plugins/alpha-rule/versions", None),
        json!([])
    );
    let (status, _) = b.call(
        "POST",
        "/v1/plugins/alpha-rule/activate",
        Some(json!({"version": "1.0.0"})),
    );
    assert_eq!(status, 404);
    // Tokens: unknown, missing, and the admin token on tenant routes.
    let anon = Api {
        base: server.base.clone(),
        token: "esc_nope".into(),
        http: http(),
    };
    assert_eq!(anon.call("GET", "/v1/escalations", None).0, 401);
    assert_eq!(server.admin().call("GET", "/v1/escalations", None).0, 401);
    assert_eq!(
        a.call("GET", "/v1/tenants", None).0,
        401,
        "a tenant is not an admin"
    );
    let raw = http()
        .get(format!("{}/v1/escalations", server.base))
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 401);
}

fn bad_requests_get_clear_errors_and_change_nothing(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, Some("max-body-bytes = 4096\n"));
    let acme = server.tenant("acme");
    let raw = |body: &str, ct: &str| {
        let resp = http()
            .post(format!("{}/v1/tickets", server.base))
            .bearer_auth(&acme.token)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().unwrap())
    };
    let (s, v) = raw("{\"id\": \"X\", ", "application/json");
    assert_eq!(s, 400);
    assert_eq!(v["code"], "body.invalid_json", "{v}");
    let (s, v) = raw(
        &format!("{{\"id\": \"X\", \"subject\": \"{}\"}}", "a".repeat(10_000)),
        "application/json",
    );
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "body.too_large", "{v}");
    let (s, _) = raw("id=X", "application/x-www-form-urlencoded");
    assert_eq!(s, 415);
    let (s, v) = raw(
        r#"{"id": "X", "created_at": "2026-11-27T12:00:00Z", "messages": [{"author": "robot", "body": "x", "sent_at": "2026-11-27T12:00:00Z"}]}"#,
        "application/json",
    );
    assert_eq!(s, 400);
    assert_eq!(v["code"], "body.invalid_json", "{v}");
    // The message says where and what, for the person reading it.
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("messages[0].author") && e.contains("robot"),
        "{e}"
    );
    let (s, v) = acme.call(
        "POST",
        "/v1/tickets/nope/events",
        Some(json!({"type": "explode"})),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["code"], "body.invalid_json", "{v}");
    let (s, v) = acme.call(
        "POST",
        "/v1/tickets/nope/events",
        Some(json!({"type": "resolve"})),
    );
    assert_eq!(s, 404);
    assert_eq!(v["code"], "ticket.not_found", "{v}");
    let (s, v) = acme.call("GET", "/v1/nothing", None);
    assert_eq!(s, 404);
    assert_eq!(v["code"], "not_found", "{v}");
    // Nothing was stored by any of that.
    assert_eq!(acme.ok("GET", "/v1/escalations", None), json!([]));
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "X", "created_at": T0})),
    );
    let (s, v) = acme.call(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "X", "created_at": T0})),
    );
    assert_eq!(s, 409, "{v}");
    let (s, v) = acme.call(
        "POST",
        "/v1/tickets/X/events",
        Some(json!({"type": "ai-analysis", "confidence": 7.0})),
    );
    assert_eq!(s, 422, "{v}");
    let (s, v) = acme.call(
        "POST",
        "/v1/tickets/X/events",
        Some(json!({"type": "claim", "agent": "ghost"})),
    );
    assert_eq!(s, 404, "{v}");
    // The service endpoints.
    let h = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .unwrap();
    assert_eq!(h.status().as_u16(), 200);
    let doc: Value = http()
        .get(format!("{}/openapi.json", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

fn a_webhook_that_fails_for_a_while_gets_everything_once_it_recovers(db: &Db) {
    let (_dir, data) = db.data_dir();
    let hook = Recorder::start();
    let server = Escalator::start(
        &data,
        T0,
        Some(&format!(
            "{LOOPBACK_RECEIVERS}[delivery]\nretry-base-ms = 100\nretry-max-delay-ms = 400\n"
        )),
    );
    let acme = server.tenant("acme");
    acme.roster();
    acme.ok(
        "PUT",
        "/v1/settings",
        Some(json!({"webhooks": {"ops": {
        "url": format!("{}/hook", hook.url), "secret": "k", "events": ["escalated"]}}})),
    );
    hook.fail_next(4);
    let mut tickets = Vec::new();
    for i in 0..3 {
        let id = format!("W-{i}");
        acme.ok("POST", "/v1/tickets", Some(json!({"id": id, "created_at": T0, "category": "billing",
            "messages": [{"author": "customer", "body": "I will talk to my lawyer about this charge.", "sent_at": T0}]})));
        tickets.push(id);
    }
    // Every escalation arrives, after the failures, each once by key.
    let got = eventually(30, "all three webhooks delivered", || {
        let ok = hook.delivered("/hook");
        (ok.len() >= 3).then_some(ok)
    });
    let all = hook.requests();
    assert!(
        all.iter().filter(|r| r.status == 503).count() == 4,
        "{}",
        all.len()
    );
    let mut delivered_tickets: Vec<String> = got
        .iter()
        .map(|r| r.json()["ticket"].as_str().unwrap().to_string())
        .collect();
    delivered_tickets.sort();
    delivered_tickets.dedup();
    assert_eq!(delivered_tickets, tickets);
    // Retries repeat the same idempotency key; distinct notifications never share one.
    let mut keys_by_ticket =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for r in &all {
        keys_by_ticket
            .entry(r.json()["ticket"].as_str().unwrap().to_string())
            .or_default()
            .insert(r.headers["idempotency-key"].clone());
    }
    assert!(
        keys_by_ticket.values().all(|k| k.len() == 1),
        "{keys_by_ticket:?}"
    );
    // The receiver records a request before it answers, and the server
    // marks a delivery sent once the answer is in: wait for the marks.
    let hooks: Vec<Value> = eventually(30, "all three webhooks marked sent", || {
        let log = acme.ok("GET", "/v1/deliveries", None);
        let hooks: Vec<Value> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["channel"] == "webhook")
            .cloned()
            .collect();
        (hooks.len() == 3 && hooks.iter().all(|d| d["status"] == "sent")).then_some(hooks)
    });
    assert_eq!(
        hooks
            .iter()
            .map(|d| d["attempts"].as_i64().unwrap())
            .sum::<i64>(),
        3 + 4,
        "{hooks:?}"
    );
}

fn an_agent_going_away_hands_their_unclaimed_escalations_to_someone_else(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    let out = acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    assert_eq!(out["assignee"], "bo");
    let moved = acme.ok(
        "POST",
        "/v1/agents/bo/status",
        Some(json!({"status": "out-of-office"})),
    );
    assert_eq!(moved["rerouted"], json!(["T-1001"]));
    let t = acme.ok("GET", "/v1/tickets/T-1001", None);
    assert_eq!(t["assignee"], "ana", "{}", t["history"]);
    assert!(feed_titles(&acme, "ana")[0].contains("bo is no longer available"));
    // Steps meant for the first assignee now reach ana.
    server.advance(10);
    let log = acme.ok("GET", "/v1/deliveries?ticket=T-1001", None);
    let reminded: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["title"].as_str().unwrap().starts_with("Reminder:"))
        .collect();
    assert_eq!(reminded.len(), 1, "{log}");
    assert_eq!(reminded[0]["recipient"], "ana");
}

fn notifications_for_one_person_within_the_digest_window_go_out_as_one_digest(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, None);
    let acme = server.tenant("acme");
    // One billing specialist: every billing escalation is hers.
    acme.ok(
        "PUT",
        "/v1/agents/ana",
        Some(json!({"id": "ana", "team": "billing", "skills": ["billing"]})),
    );
    for i in 0..3 {
        acme.ok("POST", "/v1/tickets", Some(json!({"id": format!("D-{i}"), "created_at": T0,
            "category": "billing", "subject": format!("Invoice question {i}"),
            "messages": [{"author": "customer", "body": "Please fix my invoice.", "sent_at": T0}]})));
        server.advance(1);
    }
    // High tier: the first alert goes now, the next two wait for a digest
    // at the end of the 5-minute window.
    let titles = feed_titles(&acme, "ana");
    assert_eq!(titles.len(), 1, "{titles:?}");
    server.advance(5);
    let titles = feed_titles(&acme, "ana");
    assert_eq!(titles.len(), 2, "{titles:?}");
    assert_eq!(titles[1], "Digest: 2 escalation notice(s)");
    let feed = acme.ok("GET", "/v1/agents/ana/feed", None);
    let body = feed[1]["body"].as_str().unwrap();
    assert!(body.contains("[D-1]") && body.contains("[D-2]"), "{body}");
}

fn kill_9_during_a_burst_loses_no_acknowledged_event_and_due_timers_fire_once(db: &Db) {
    let (_dir, data) = db.data_dir();
    // A burst from four clients at once: more than the default budget of
    // server time per tenant, which would answer 429 and end the burst.
    let burst = "[limits]\nwork-ms-per-second = 1000000\nwork-burst-ms = 1000000\n";
    let mut server = Escalator::start(&data, T0, Some(burst));
    let acme = server.tenant("acme");
    acme.roster();
    let token = acme.token.clone();
    let base = server.base.clone();
    // Four clients create critical tickets and add messages, keeping what
    // was acknowledged, until the server dies under them.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Option<String>)>::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (base, token, acked) = (base.clone(), token.clone(), acked.clone());
        clients.push(std::thread::spawn(move || {
            let api = Api { base, token, http: http() };
            for i in 0.. {
                let id = format!("K-{c}-{i}");
                let create = api.try_call("POST", "/v1/tickets", Some(json!({"id": id, "created_at": T0,
                        "category": "billing",
                        "messages": [{"author": "customer", "body": "My lawyer will hear about this.", "sent_at": T0}]})),
                        &[("idempotency-key", &format!("create-{id}"))]);
                match create {
                    Some((201, _)) => acked.lock().unwrap().push((id.clone(), None)),
                    _ => return,
                }
                let body = format!("follow-up {c}-{i}");
                let add = api.try_call("POST", &format!("/v1/tickets/{id}/events"),
                        Some(json!({"type": "message", "author": "customer", "body": body})), &[]);
                match add {
                    Some((200, _)) => acked.lock().unwrap().push((id.clone(), Some(body))),
                    _ => return,
                }
            }
        }));
    }
    eventually(60, "a burst of acknowledged events", || {
        (acked.lock().unwrap().len() >= 60).then_some(())
    });
    server.kill();
    for c in clients {
        let _ = c.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60);

    // Restart 20 minutes later: reminders (10 min) and fallbacks (15 min)
    // fell due while the server was down.
    let server = Escalator::start(&data, "2026-11-27T12:20:00Z", None);
    let acme = Api {
        base: server.base.clone(),
        token,
        http: http(),
    };
    let tickets: std::collections::BTreeSet<&str> = acked.iter().map(|(t, _)| t.as_str()).collect();
    for (id, body) in &acked {
        let t = acme.ok("GET", &format!("/v1/tickets/{id}"), None);
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
        assert_eq!(t["tier"], "critical", "{id}");
    }
    let due = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:20:00Z")
        .unwrap()
        .timestamp_millis();
    eventually(60, "every due timer fired", || {
        tickets
            .iter()
            .all(|id| {
                acme.ok("GET", &format!("/v1/tickets/{id}/timers"), None)
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|t| t["due_at"].as_i64().unwrap() > due || t["state"] != "pending")
            })
            .then_some(())
    });
    // None failed: a failed timer is retried a second later, a time the
    // manual clock never reaches (two fallbacks moving load between the
    // same two agents in opposite directions once deadlocked on
    // PostgreSQL).
    for id in &tickets {
        let timers = acme.ok("GET", &format!("/v1/tickets/{id}/timers"), None);
        assert!(
            timers
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["attempts"] == 0),
            "{id}: {timers}"
        );
    }
    // Each due fallback fired exactly once: one reassignment per ticket
    // (the 15-minute step; the next is due at 30).
    for id in &tickets {
        let t = acme.ok("GET", &format!("/v1/tickets/{id}"), None);
        let moves = t["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["what"] == "reassigned")
            .count();
        if moves != 1 {
            let timers = acme.ok("GET", &format!("/v1/tickets/{id}/timers"), None);
            panic!(
                "{id}: {moves} reassignments\nhistory: {}\ntimers: {timers}\nacknowledged: {acked:?}",
                t["history"]
            );
        }
    }
    // A retried create (the same request, the same idempotency key) returns
    // the first answer; the same key with another request is refused.
    let (id, _) = &acked[0];
    let first = json!({"id": id, "created_at": T0, "category": "billing",
        "messages": [{"author": "customer", "body": "My lawyer will hear about this.", "sent_at": T0}]});
    let key = format!("create-{id}");
    let (s, v) = acme.call_with(
        "POST",
        "/v1/tickets",
        Some(first),
        &[("idempotency-key", &key)],
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ticket"], *id);
    let (s, v) = acme.call_with(
        "POST",
        "/v1/tickets",
        Some(json!({"id": id, "created_at": T0})),
        &[("idempotency-key", &key)],
    );
    assert_eq!(s, 422, "{v}");
}

fn metrics_dashboard_and_feedback_report_what_happened(db: &Db) {
    let (_dir, data) = db.data_dir();
    let server = Escalator::start(&data, T0, None);
    let acme = server.tenant("acme");
    acme.roster();
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(example("enterprise-billing-dispute.json")),
    );
    for i in 0..2 {
        acme.ok(
            "POST",
            "/v1/tickets",
            Some(json!({"id": format!("B-{i}"), "created_at": T0, "category": "billing", "subject": "Refund",
                "messages": [{"author": "customer", "body": "Please refund my last invoice.", "sent_at": T0}]})),
        );
    }
    acme.ok(
        "POST",
        "/v1/tickets",
        Some(json!({"id": "Q-1", "created_at": T0, "category": "account",
            "messages": [{"author": "customer", "body": "How do I add a user?", "sent_at": T0}]})),
    );
    server.advance(10);
    acme.ok(
        "POST",
        "/v1/tickets/B-0/events",
        Some(json!({"type": "claim", "agent": "ana"})),
    );

    // The dashboard's data.
    let d = acme.ok("GET", "/v1/dashboard", None);
    assert_eq!(d["totals"]["tickets"], 4, "{d}");
    assert_eq!(d["totals"]["escalated"], 3);
    assert_eq!(d["totals"]["open_escalations"], 3);
    let day = &d["days"][0];
    assert_eq!(
        (
            day["critical"].as_u64(),
            day["high"].as_u64(),
            day["created"].as_u64()
        ),
        (Some(1), Some(2), Some(4)),
        "{day}"
    );
    assert_eq!(d["queue"][0]["tier"], "critical", "most urgent first");
    assert_eq!(d["sla"]["high"]["claimed"], 1);
    assert_eq!(
        d["sla"]["high"]["within_target"], 1,
        "claimed 10 minutes into a 4 h target"
    );
    // Five events, and for the trigger that depends on the escalation one
    // evaluation more right after each of the three escalations (for the
    // new tier's clocks); the others' first answers stand.
    let calls = |name: &str| {
        d["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["plugin"] == name)
            .and_then(|p| p["calls"].as_f64())
    };
    assert_eq!(
        (calls("sla@0.1.0"), calls("phrases@0.1.0")),
        (Some(8.0), Some(5.0)),
        "{}",
        d["plugins"]
    );
    assert_eq!(d["agents"].as_array().unwrap().len(), 7);
    // The page itself: self-contained, no external resources.
    let page = http().get(format!("{}/", server.base)).send().unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().unwrap();
    assert!(html.contains("<title>Escalator</title>") && html.contains("/v1/dashboard"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<link"),
        "the page loads nothing from the internet"
    );

    // Outcomes: B-0 answered by ana and solved, rated 5; B-1 solved with
    // no human reply (over-escalated); Q-1, never escalated, rated 2
    // (under-escalated).
    server.advance(20);
    for (ticket, event) in [
        (
            "B-0",
            json!({"type": "reply", "agent": "ana", "body": "Refunded."}),
        ),
        ("B-0", json!({"type": "resolve"})),
        ("B-0", json!({"type": "csat", "score": 5})),
        ("B-1", json!({"type": "resolve"})),
        (
            "Q-1",
            json!({"type": "csat", "score": 2, "comment": "Took too long."}),
        ),
    ] {
        acme.ok("POST", &format!("/v1/tickets/{ticket}/events"), Some(event));
    }
    let q = acme.ok("GET", "/v1/dashboard", None)["quality"].clone();
    assert_eq!(
        q["csat"]["escalated"],
        json!({"ratings": 1, "average": 5.0}),
        "{q}"
    );
    assert_eq!(
        q["csat"]["not_escalated"],
        json!({"ratings": 1, "average": 2.0}),
        "{q}"
    );
    assert_eq!(
        q["resolution_after_escalation_minutes"]["high"],
        json!({"resolved": 2, "average": 30.0, "median": 30.0}),
        "{q}"
    );
    assert_eq!(q["over_escalated"]["tickets"], 1, "{q}");
    assert_eq!(q["over_escalated"]["examples"], json!(["B-1"]), "{q}");
    assert_eq!(
        q["under_escalated"]["by_reason"],
        json!({"low-csat": 1}),
        "{q}"
    );
    assert_eq!(q["under_escalated"]["examples"], json!(["Q-1"]), "{q}");
    let ticket = acme.ok("GET", "/v1/tickets/Q-1", None);
    assert!(
        ticket["ticket"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("csat:2"))
    );

    // Prometheus metrics, for the admin token only.
    let (s, _) = acme.call("GET", "/metrics", None);
    assert_eq!(s, 401);
    let text = http()
        .get(format!("{}/metrics", server.base))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "escalator_escalations_total{tenant=\"acme\",tier=\"critical\",cause=\"phrases\"} 1",
        "escalator_time_to_claim_seconds_count{tenant=\"acme\",tier=\"high\"} 1",
        "escalator_claims_total{tenant=\"acme\",tier=\"high\",within_target=\"true\"} 1",
        "escalator_plugin_calls_total{tenant=\"acme\",plugin=\"phrases@0.1.0\"}",
        "escalator_agent_open_tickets{tenant=\"acme\",agent=\"ana\"}",
        "escalator_notifications{tenant=\"acme\",channel=\"in-app\",status=\"sent\"}",
        "escalator_csat_ratings_total{tenant=\"acme\",escalated=\"true\"} 1",
        "escalator_csat_score_total{tenant=\"acme\",escalated=\"false\"} 2",
        "escalator_resolution_after_escalation_seconds_count{tenant=\"acme\",tier=\"high\"} 2",
        "escalator_resolution_after_escalation_seconds_sum{tenant=\"acme\",tier=\"high\"} 3600",
        "escalator_over_escalations_total{tenant=\"acme\",tier=\"high\"} 1",
        "escalator_under_escalations_total{tenant=\"acme\",why=\"low-csat\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("escalator_escalations_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>(),
        3.0
    );

    // The feedback report: billing refunds keep escalating.
    let f = acme.ok("GET", "/v1/reports/feedback", None);
    let gap = f["recurring"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["category"] == "billing" && g["cause"] == "scenario:billing")
        .cloned();
    let gap = gap.unwrap_or_else(|| panic!("{f}"));
    assert_eq!(gap["tickets"], 3, "{gap}");
    assert_eq!(
        (&gap["last_7_days"], &gap["previous_7_days"], &gap["trend"]),
        (&json!(3), &json!(0), &json!("rising")),
        "{gap}"
    );
    // How a human resolved one of them: B-0, answered by ana.
    assert_eq!(
        gap["resolutions"],
        json!([{"ticket": "B-0", "agent": "ana", "reply": "Refunded."}]),
        "{gap}"
    );
}
