//! The store's suite, run on both backends: an embedded SQLite file and a
//! real PostgreSQL server this test process starts on loopback
//! ([`crate::support::Postgres`]). Each test is written once, against the
//! store's traits; `on_both_backends!` runs it on each.

use crate::support::Db;
use chrono::{DateTime, Utc};
use escalator::model::{self, Agent, TicketState};
use escalator::store::*;
use std::collections::HashSet;
use std::sync::Arc;

on_both_backends!(
    due_timers_leave_out_busy_tickets_and_full_tenants_and_failures_back_off,
    a_timer_fires_once_and_cancelled_timers_never,
    a_failed_transaction_leaves_nothing_behind,
    deliveries_are_queued_once_per_idempotency_key,
    each_tenant_queue_is_read_on_its_own_most_urgent_first,
    settings_carry_a_revision_that_moves_when_they_change,
    a_transaction_hands_back_the_callers_own_error_and_keeps_nothing_of_it,
    two_stores_on_one_database_claim_each_delivery_once_and_take_over_a_lapsed_claim,
    a_conversation_is_read_back_whole_and_a_stale_write_is_not_doubled,
    a_big_conversation_kept_in_memory_sees_what_another_instance_added,
    tickets_events_decisions_and_plugins_read_back_as_written,
);

/// A pending webhook delivery of ticket T-1 with this idempotency key.
fn webhook(key: String) -> NewDelivery {
    NewDelivery {
        ticket: "T-1".into(),
        idempotency_key: key,
        channel: model::Channel::Webhook,
        recipient: "ops".into(),
        address: "http://127.0.0.1:1/hook".into(),
        title: "t".into(),
        body: "b".into(),
        status: DeliveryStatus::Pending,
        note: None,
        priority: 2,
    }
}

fn noon() -> DateTime<Utc> {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

fn message(i: usize) -> model::Message {
    model::Message {
        id: format!("m{i}"),
        author: model::AuthorKind::Customer,
        author_id: None,
        body: format!("message {i}"),
        sent_at: noon(),
        sentiment: None,
    }
}

fn conversation_of(store: &Store, id: &str) -> Vec<String> {
    let state = store.ticket("acme", id).unwrap().unwrap();
    state.ticket.messages.iter().map(|m| m.id.clone()).collect()
}

fn a_conversation_is_read_back_whole_and_a_stale_write_is_not_doubled(db: &Db) {
    let store = db.open();
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "h", noon()))
        .unwrap();
    let mut state = TicketState::new(model::Ticket {
        messages: (1..=3).map(message).collect(),
        ..model::Ticket::new("T1", noon())
    });
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    // Two more writes: one adds two messages, one changes only the head.
    state.ticket.messages.extend([message(4), message(5)]);
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    state.ticket.subject = "changed".into();
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    let ids: Vec<String> = (1..=5).map(|i| format!("m{i}")).collect();
    assert_eq!(conversation_of(&*store, "T1"), ids);
    assert_eq!(store.ticket("acme", "T1").unwrap().unwrap(), state);
    // Serialized against a stale length: written again whole, not doubled.
    state.ticket.messages.push(message(6));
    let stale = TicketJson::new(&mut state, 2).unwrap();
    store
        .write(|tx| tx.put_ticket_json("acme", &state, &stale))
        .unwrap();
    let ids: Vec<String> = (1..=6).map(|i| format!("m{i}")).collect();
    assert_eq!(conversation_of(&*store, "T1"), ids);
    assert_eq!(
        store.write(|tx| tx.stored_messages("acme", "T1")).unwrap(),
        6
    );
    assert_eq!(
        store
            .write(|tx| tx.stored_messages("acme", "none"))
            .unwrap(),
        0
    );
}

/// A big conversation is kept parsed between reads
/// ([`escalator::store::conversations`]); what another instance on the
/// same database adds, or writes again whole, is read all the same.
fn a_big_conversation_kept_in_memory_sees_what_another_instance_added(db: &Db) {
    let (a, b) = (db.open(), db.open());
    a.write(|tx| tx.create_tenant("acme", "Acme", "h", noon()))
        .unwrap();
    let long = |i: usize| model::Message {
        body: format!("{i} {}", "I am still waiting for my refund. ".repeat(30)),
        ..message(i)
    };
    let mut state = TicketState::new(model::Ticket {
        messages: (0..100).map(long).collect(),
        ..model::Ticket::new("T1", noon())
    });
    assert!(
        conversations::ConversationCache::size_of(&state.ticket.messages)
            >= conversations::CACHED_FROM_BYTES
    );
    b.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    assert_eq!(a.ticket("acme", "T1").unwrap().unwrap(), state);
    assert_eq!(
        a.ticket("acme", "T1").unwrap().unwrap(),
        state,
        "again, kept"
    );
    // The other instance adds a message, then writes it again whole.
    state.ticket.messages.push(long(100));
    b.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    assert_eq!(a.ticket("acme", "T1").unwrap().unwrap(), state);
    state.ticket.messages.push(long(101));
    let stale = TicketJson::new(&mut state, 7).unwrap();
    b.write(|tx| tx.put_ticket_json("acme", &state, &stale))
        .unwrap();
    assert_eq!(a.ticket("acme", "T1").unwrap().unwrap(), state);
    assert_eq!(b.ticket("acme", "T1").unwrap().unwrap(), state);
}

fn due_timers_leave_out_busy_tickets_and_full_tenants_and_failures_back_off(db: &Db) {
    let store = db.open();
    let ids = store
        .write(|tx| -> Result<_> {
            let mut ids = Vec::new();
            for (tenant, ticket) in [("a", "T-1"), ("a", "T-2"), ("b", "T-1"), ("c", "T-9")] {
                ids.push(tx.insert_timer(
                    tenant,
                    ticket,
                    TimerKind::Step,
                    noon(),
                    &serde_json::json!({}),
                )?);
            }
            Ok(ids)
        })
        .unwrap();
    let at = noon().timestamp_millis();
    let keys = |busy: &[(String, String)], full: &[String]| -> Vec<(String, String)> {
        store
            .due_timers_except(at, 10, busy, full)
            .unwrap()
            .into_iter()
            .map(|t| (t.tenant, t.ticket))
            .collect()
    };
    assert_eq!(keys(&[], &[]).len(), 4);
    let busy = [("a".to_string(), "T-1".to_string())];
    let left = keys(&busy, &[]);
    assert_eq!(left.len(), 3);
    assert!(!left.contains(&busy[0]));
    assert!(
        left.contains(&("b".into(), "T-1".into())),
        "same ticket id, another tenant"
    );
    assert_eq!(
        keys(&busy, &["a".into(), "c".into()]),
        [("b".to_string(), "T-1".to_string())]
    );

    // Back-off, then the dead letter.
    for attempt in 1..TIMER_MAX_ATTEMPTS {
        assert!(
            !store.timer_failed(ids[3], noon(), 1_000, "boom").unwrap(),
            "{attempt}"
        );
    }
    assert!(
        keys(&[], &[]).iter().all(|k| k.0 != "c"),
        "backed off: not due now"
    );
    assert!(store.timer_failed(ids[3], noon(), 1_000, "boom").unwrap());
    let later = store
        .due_timers_except(at + 3_600_000, 10, &[], &[])
        .unwrap();
    assert!(
        later.iter().all(|t| t.id != ids[3]),
        "dead letters never fire"
    );
    let dead = store.timers("c", "T-9").unwrap();
    assert_eq!(dead[0].state, "dead");
    assert_eq!(dead[0].attempts, TIMER_MAX_ATTEMPTS);
}

fn a_timer_fires_once_and_cancelled_timers_never(db: &Db) {
    let store = db.open();
    let (a, b) = store
        .write(|tx| -> Result<_> {
            tx.create_tenant("acme", "Acme", "h", noon())?;
            let a = tx.insert_timer(
                "acme",
                "T-1",
                TimerKind::Step,
                noon(),
                &serde_json::json!({}),
            )?;
            let b = tx.insert_timer(
                "acme",
                "T-1",
                TimerKind::Fallback,
                noon(),
                &serde_json::json!({}),
            )?;
            Ok((a, b))
        })
        .unwrap();
    store
        .write(|tx| -> Result<_> {
            assert_eq!(
                tx.cancel_timers("acme", "T-1", &[TimerKind::Fallback], "claimed")?,
                1
            );
            Ok(())
        })
        .unwrap();
    let due = store.due_timers(noon().timestamp_millis(), 10).unwrap();
    assert_eq!(due.iter().map(|t| t.id).collect::<Vec<_>>(), [a]);
    assert!(store.write(|tx| tx.take_timer(a, noon())).unwrap());
    assert!(!store.write(|tx| tx.take_timer(a, noon())).unwrap(), "once");
    assert!(!store.write(|tx| tx.take_timer(b, noon())).unwrap());
    assert_eq!(store.next_timer_at().unwrap(), None);
}

fn a_failed_transaction_leaves_nothing_behind(db: &Db) {
    let store = db.open();
    let err: anyhow::Result<()> = store.write(|tx| {
        tx.create_tenant("acme", "Acme", "h", noon())?;
        anyhow::bail!("boom")
    });
    assert!(err.is_err());
    assert!(store.tenants().unwrap().is_empty());
}

fn deliveries_are_queued_once_per_idempotency_key(db: &Db) {
    let store = db.open();
    let d = webhook("k1".into());
    store
        .write(|tx| -> Result<_> {
            tx.create_tenant("acme", "Acme", "h", noon())?;
            assert!(tx.insert_delivery("acme", &d, noon())?);
            assert!(!tx.insert_delivery("acme", &d, noon())?);
            Ok(())
        })
        .unwrap();
    let due = store.due_deliveries(1, 10).unwrap();
    assert_eq!(due.len(), 1);
    store
        .delivery_attempted(due[0].id, noon(), Err(("503".into(), Some(5_000))))
        .unwrap();
    assert!(store.due_deliveries(4_999, 10).unwrap().is_empty());
    assert_eq!(store.next_delivery_at().unwrap(), Some(5_000));
    store.delivery_attempted(due[0].id, noon(), Ok(())).unwrap();
    let all = store.deliveries("acme", Some("T-1"), 0, 100).unwrap();
    assert_eq!((all[0].status.as_str(), all[0].attempts), ("sent", 2));
    assert!(store.deliveries("other", None, 0, 100).unwrap().is_empty());
}

fn each_tenant_queue_is_read_on_its_own_most_urgent_first(db: &Db) {
    let store = db.open();
    let d = |key: String, address: &str, priority: i64| NewDelivery {
        address: address.into(),
        body: "b".repeat(4096),
        priority,
        ..webhook(key)
    };
    store
        .write(|tx| -> Result<_> {
            for t in ["attacker", "victim"] {
                tx.create_tenant(t, t, t, noon())?;
            }
            // The attacker's backlog was queued first, at the same
            // urgency; the victim's one low delivery comes last.
            for i in 0..500 {
                tx.insert_delivery(
                    "attacker",
                    &d(format!("a{i}"), &format!("http://dead/{}", i % 50), 0),
                    noon(),
                )?;
            }
            tx.insert_delivery("victim", &d("v-low".into(), "http://v/", 3), noon())?;
            tx.insert_delivery("victim", &d("v-crit".into(), "http://v/", 0), noon())?;
            Ok(())
        })
        .unwrap();
    let pick =
        |free: &dyn Fn(&str) -> usize, busy: &HashSet<i64>, full: &HashSet<(String, String)>| {
            store
                .due_deliveries_except(1, 16, busy, free, full)
                .unwrap()
                .into_iter()
                .map(|d| (d.tenant, d.idempotency_key))
                .collect::<Vec<_>>()
        };
    let none = HashSet::new();
    // A tenant with no free share is not read at all.
    let victim_only = |t: &str| usize::from(t == "victim") * 8;
    assert_eq!(
        pick(&victim_only, &none, &HashSet::new()),
        [
            ("victim".into(), "v-crit".into()),
            ("victim".into(), "v-low".into())
        ]
    );
    // Shares are per tenant; the picks are merged most urgent first.
    let two_each = |_: &str| 2;
    let got = pick(&two_each, &none, &HashSet::new());
    let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["a0", "a1", "v-crit", "v-low"]);
    // Deliveries in flight and full endpoints are passed over.
    let first = store.due_deliveries(1, 1).unwrap()[0].id;
    let full = HashSet::from([("attacker".to_string(), "http://dead/1".to_string())]);
    let got = pick(&two_each, &HashSet::from([first]), &full);
    let keys: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["a2", "a3", "v-crit", "v-low"]);
}

fn settings_carry_a_revision_that_moves_when_they_change(db: &Db) {
    let store = db.open();
    store
        .write(|tx| tx.create_tenant("acme", "Acme", "h", noon()))
        .unwrap();
    let (rev, first) = store.settings_if_changed("acme", None).unwrap().unwrap();
    assert_eq!(first, Some(serde_json::json!({})));
    assert_eq!(
        store.settings_if_changed("acme", Some(rev)).unwrap(),
        Some((rev, None))
    );
    let s = serde_json::json!({"slack_webhook_url": "https://hooks.slack.com/x"});
    store.write(|tx| tx.set_settings("acme", &s)).unwrap();
    let (next, now) = store
        .settings_if_changed("acme", Some(rev))
        .unwrap()
        .unwrap();
    assert!(next > rev);
    assert_eq!(now, Some(s));
    assert_eq!(store.settings_if_changed("nobody", None).unwrap(), None);
}

fn a_transaction_hands_back_the_callers_own_error_and_keeps_nothing_of_it(db: &Db) {
    #[derive(Debug)]
    enum Caller {
        Refused(&'static str),
        Store(StoreError),
    }
    impl From<StoreError> for Caller {
        fn from(e: StoreError) -> Caller {
            Caller::Store(e)
        }
    }
    let store = db.open();
    let refused = store.write(|tx| {
        tx.create_tenant("acme", "Acme", "h", noon())?;
        Err::<(), _>(Caller::Refused("no"))
    });
    assert!(matches!(refused, Err(Caller::Refused("no"))), "{refused:?}");
    assert!(store.tenants().unwrap().is_empty());
    // A store error inside (an agent of a tenant that does not exist: a
    // foreign key) converts into the caller's type and rolls back what
    // came before it.
    let agent: Agent = serde_json::from_value(serde_json::json!({"id": "bo"})).unwrap();
    let failed = store.write(|tx| -> Result<(), Caller> {
        tx.create_tenant("acme", "Acme", "h", noon())?;
        tx.put_agent("no-such-tenant", &agent)?;
        Ok(())
    });
    match &failed {
        Err(Caller::Store(e)) => {
            assert!(e.to_string().to_lowercase().contains("foreign key"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(store.tenants().unwrap().is_empty());
    let committed = store
        .write(|tx| -> Result<bool, Caller> { Ok(tx.create_tenant("beta", "Beta", "h", noon())?) });
    assert!(matches!(committed, Ok(true)), "{committed:?}");
    let ids: Vec<String> = store.tenants().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["beta"]);
}

fn two_stores_on_one_database_claim_each_delivery_once_and_take_over_a_lapsed_claim(db: &Db) {
    // Two stores on one database: two instances.
    let a = db.open();
    let b = db.again();
    let n = 200;
    a.write(|tx| -> Result<_> {
        tx.create_tenant("acme", "Acme", "h", noon())?;
        for i in 0..n {
            tx.insert_delivery("acme", &webhook(format!("k{i}")), noon())?;
        }
        Ok(())
    })
    .unwrap();
    let ids: Vec<i64> = a
        .due_deliveries(1, 1_000)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), n);
    // Both read every delivery as due, and race to claim each.
    let now = 1_000;
    let lease = 60_000;
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let claims: Vec<Vec<i64>> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            let (ids, barrier) = (ids.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ids.into_iter()
                    .filter(|id| store.claim_delivery(*id, now, lease).unwrap())
                    .collect::<Vec<i64>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let mut all: Vec<i64> = claims.concat();
    all.sort();
    assert_eq!(
        all,
        ids,
        "each claimed exactly once: {} and {}",
        claims[0].len(),
        claims[1].len()
    );
    // Claimed: due to no one until the lease runs out.
    assert!(a.due_deliveries(now + lease - 1, 1_000).unwrap().is_empty());
    assert!(!b.claim_delivery(ids[0], now + lease - 1, lease).unwrap());
    // An attempt recorded ends the claim; one never recorded (its sender
    // died) is taken over once the lease has run out.
    a.delivery_attempted(ids[0], noon(), Ok(())).unwrap();
    assert!(!b.claim_delivery(ids[0], now + lease, lease).unwrap());
    assert!(b.claim_delivery(ids[1], now + lease, lease).unwrap());
    assert!(!a.claim_delivery(ids[1], now + lease, lease).unwrap());
}

/// An escalated ticket, assigned to `assignee` or waiting in a queue.
fn escalated(id: &str, at: DateTime<Utc>, assignee: Option<&str>) -> TicketState {
    let mut s = TicketState::new(model::Ticket {
        tier: Some(model::Tier::High),
        assignee: assignee.map(str::to_string),
        ..model::Ticket::new(id, at)
    });
    s.queue = assignee.is_none().then(|| "billing".to_string());
    s.escalation = Some(model::EscalationState {
        tier: model::Tier::High,
        escalated_at: at,
        reasons: Vec::new(),
        response_target_ms: Some(60_000),
        routing: model::Routing {
            target: match assignee {
                Some(a) => model::Target::Agent(a.into()),
                None => model::Target::Queue("billing".into()),
            },
            reason: "test".into(),
            fallback: Vec::new(),
        },
        plan_decision: 0,
        alert_channels: Vec::new(),
        customer_message: None,
    });
    s
}

/// Every other operation, written through a transaction and read back:
/// the same answers on each backend.
fn tickets_events_decisions_and_plugins_read_back_as_written(db: &Db) {
    let store = db.open();
    assert!(store.schema_version().unwrap() >= 1);
    let hour = chrono::Duration::hours(1);
    let agent: Agent =
        serde_json::from_value(serde_json::json!({"id": "bo", "name": "Bo"})).unwrap();
    let (seq, decision) = store
        .write(|tx| -> Result<_> {
            tx.set_meta("k", "v1")?;
            tx.set_meta("k", "v2")?;
            assert!(tx.create_tenant("acme", "Acme", "hash-a", noon())?);
            assert!(
                !tx.create_tenant("acme", "Again", "hash-b", noon())?,
                "id taken"
            );
            tx.create_tenant("beta", "Beta", "hash-c", noon())?;
            tx.put_agent("acme", &agent)?;
            tx.put_agent(
                "acme",
                &Agent {
                    name: "Bo B".into(),
                    ..agent.clone()
                },
            )?;
            assert_eq!(tx.agents("acme")?.len(), 1);
            assert_eq!(tx.agent("acme", "bo")?.unwrap().name, "Bo B");
            for (id, at, who) in [
                ("T-1", noon(), Some("bo")),
                ("T-2", noon() + hour, None),
                ("T-3", noon() + hour * 25, Some("bo")),
            ] {
                tx.put_ticket("acme", &mut escalated(id, at, who))?;
            }
            tx.put_ticket(
                "acme",
                &mut TicketState::new(model::Ticket::new("T-4", noon())),
            )?;
            let event = |ticket, payload, key| NewEvent {
                ticket,
                kind: "message",
                payload,
                received_at: noon(),
                idempotency_key: key,
                decided_here: false,
            };
            let seq = tx.insert_event(
                "acme",
                &event("T-1", r#"{"a":1}"#, Some(("key-1", "hash-1"))),
            )?;
            tx.insert_event("acme", &event("T-2", "{}", None))?;
            let decision = tx.insert_decision(
                "acme",
                &NewDecision {
                    ticket: "T-1",
                    at: noon(),
                    cause: &format!("event:{seq}"),
                    escalated: true,
                    data: r#"{"tier":"high","routing":{"target":{"agent":"ana"}}}"#,
                    // The router's output is kept in the decision's data
                    // (as the engine stores it): reads put it back.
                    audit: &[
                        ("phrases", r#"{"plugin":"phrases","fuel":1}"#),
                        ("phrases@0.2.0", r#"{"plugin":"phrases@0.2.0","fuel":2}"#),
                        (
                            "router",
                            r#"{"plugin":"router","fuel":3,"output_in_decision":"routing"}"#,
                        ),
                    ]
                    .map(|(plugin, data)| AuditEntry {
                        plugin: plugin.into(),
                        data: data.into(),
                    }),
                },
            )?;
            assert!(tx.fire("acme", "T-1", "sla", decision)?);
            assert!(!tx.fire("acme", "T-1", "sla", decision)?, "once");
            tx.event_processed(seq, r#"{"ok":true}"#)?;
            Ok((seq, decision))
        })
        .unwrap();
    assert_eq!(store.meta("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(store.meta("none").unwrap(), None);

    // Tenants and agents.
    let acme = store.tenant_by_token("hash-a").unwrap().unwrap();
    assert_eq!((acme.id.as_str(), acme.name.as_str()), ("acme", "Acme"));
    assert_eq!(acme.created_at, "2026-11-27T12:00:00.000Z");
    let ids: Vec<String> = store.tenants().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["acme", "beta"]);
    store
        .write(|tx| tx.set_tenant_token("acme", "hash-new", Some(noon())))
        .unwrap();
    assert!(store.tenant_by_token("hash-a").unwrap().is_none());
    assert!(
        store.tenant_by_token("hash-new").unwrap().is_none(),
        "revoked"
    );
    assert!(
        !store
            .write(|tx| tx.set_tenant_token("nobody", "x", None))
            .unwrap()
    );
    assert_eq!(store.settings("acme").unwrap(), serde_json::json!({}));
    assert_eq!(store.agent("acme", "bo").unwrap().unwrap().name, "Bo B");
    assert_eq!(store.agents("beta").unwrap().len(), 0);
    assert_eq!(store.all_agents().unwrap()[0].0, "acme");

    // Tickets.
    let ids = |v: Vec<TicketState>| v.into_iter().map(|s| s.ticket.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.escalated("acme", 10).unwrap()),
        ["T-3", "T-2", "T-1"]
    );
    assert_eq!(ids(store.escalated("acme", 1).unwrap()), ["T-3"]);
    assert_eq!(ids(store.queued("acme", 10).unwrap()), ["T-2"]);
    assert_eq!(
        ids(store.unclaimed_of("acme", "bo").unwrap()),
        ["T-1", "T-3"]
    );
    assert_eq!(
        store.tickets_per_day("acme").unwrap(),
        [("2026-11-27".to_string(), 3), ("2026-11-28".to_string(), 1)]
    );
    assert!(store.ticket("beta", "T-1").unwrap().is_none(), "per tenant");

    // Events.
    let events = store.events("acme", "T-1").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].seq, events[0].kind.as_str(), events[0].processed),
        (seq, "message", true)
    );
    assert_eq!(events[0].payload, serde_json::json!({"a": 1}));
    assert_eq!(events[0].received_at, "2026-11-27T12:00:00.000Z");
    let keyed = store.event_by_key("acme", "key-1").unwrap().unwrap();
    assert_eq!(
        (
            keyed.seq,
            keyed.processed,
            keyed.response.as_deref(),
            keyed.request_hash.as_deref()
        ),
        (seq, 1, Some(r#"{"ok":true}"#), Some("hash-1"))
    );
    assert!(store.event_by_key("beta", "key-1").unwrap().is_none());
    let pending = store.unprocessed_events().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].0.as_str(), pending[0].1.ticket.as_str()),
        ("acme", "T-2")
    );
    store.event_failed(pending[0].1.seq, "boom").unwrap();
    assert!(store.unprocessed_events().unwrap().is_empty());
    let (failed, total) = store.failed_events("acme", 10).unwrap();
    assert_eq!((failed[0].failed.as_deref(), total), (Some("boom"), 1));

    // Decisions and their audit trails.
    let d = store.decisions("acme", "T-1").unwrap();
    assert_eq!(
        (d[0].id, d[0].escalated, d[0].audit.len()),
        (decision, true, 3)
    );
    assert_eq!(d[0].audit[2]["plugin"], "router");
    assert_eq!(
        d[0].audit[2],
        serde_json::json!({"plugin": "router", "fuel": 3,
            "output": {"target": {"agent": "ana"}}}),
        "the router's output read back from its decision"
    );
    assert_eq!(d[0].at, "2026-11-27T12:00:00.000Z");
    assert_eq!(
        store
            .fired("acme", "T-1")
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["sla"]
    );
    let runs = store
        .decisions_with_plugin(
            "acme",
            "phrases",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z",
        )
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0.as_deref(), Some("high"));
    let fuel: Vec<i64> = runs[0]
        .1
        .iter()
        .map(|a| a["fuel"].as_i64().unwrap())
        .collect();
    assert_eq!(
        fuel,
        [1, 2],
        "the plugin's runs under either name, no other plugin's"
    );
    let routed = store
        .decisions_with_plugin(
            "acme",
            "router",
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z",
        )
        .unwrap();
    assert_eq!(
        routed[0].1[0]["output"],
        serde_json::json!({"target": {"agent": "ana"}}),
        "{routed:?}"
    );
    assert!(
        store
            .decisions_with_plugin(
                "acme",
                "phrases",
                "2026-11-28T00:00:00Z",
                "2026-11-29T00:00:00Z"
            )
            .unwrap()
            .is_empty()
    );

    // Timers: plan steps that stop when claimed, outcomes.
    let (step, other) = store
        .write(|tx| -> Result<_> {
            let step = tx.insert_timer(
                "acme",
                "T-1",
                TimerKind::Step,
                noon(),
                &serde_json::json!({"step": {"stop_when_claimed": true}}),
            )?;
            let other = tx.insert_timer(
                "acme",
                "T-1",
                TimerKind::Step,
                noon(),
                &serde_json::json!({"step": {"stop_when_claimed": false}}),
            )?;
            Ok((step, other))
        })
        .unwrap();
    store
        .write(|tx| -> Result<_> {
            assert_eq!(tx.pending_timers("acme", "T-1", TimerKind::Step)?.len(), 2);
            assert_eq!(tx.cancel_steps_on_claim("acme", "T-1")?, 1);
            assert!(tx.take_timer(other, noon())?);
            tx.timer_outcome(other, "sent")
        })
        .unwrap();
    let timers = store.timers("acme", "T-1").unwrap();
    let states: Vec<(i64, &str, Option<&str>)> = timers
        .iter()
        .map(|t| (t.id, t.state.as_str(), t.outcome.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            (step, "cancelled", Some("claimed")),
            (other, "done", Some("sent"))
        ]
    );

    // Deliveries held for a digest, feeds, counts.
    let held = |key: &str| NewDelivery {
        status: DeliveryStatus::Held,
        channel: model::Channel::Email,
        address: "bo@example.com".into(),
        ..webhook(key.into())
    };
    store
        .write(|tx| -> Result<_> {
            let sent = NewDelivery {
                status: DeliveryStatus::Sent,
                ..held("s")
            };
            tx.insert_delivery("acme", &sent, noon())?;
            tx.insert_delivery("acme", &held("h1"), noon() + hour)?;
            tx.insert_delivery("acme", &held("h2"), noon() + hour)?;
            let last = tx.last_delivery_to(
                "acme",
                model::Channel::Email,
                "bo@example.com",
                noon() - hour,
            )?;
            assert_eq!(last, Some(noon()), "held ones do not count");
            assert_eq!(
                tx.last_delivery_to(
                    "acme",
                    model::Channel::Email,
                    "bo@example.com",
                    noon() + hour
                )?,
                None
            );
            let taken = tx.take_held("acme", model::Channel::Email, "bo@example.com")?;
            let keys: Vec<&str> = taken.iter().map(|d| d.idempotency_key.as_str()).collect();
            assert_eq!(keys, ["h1", "h2"]);
            assert!(
                tx.take_held("acme", model::Channel::Email, "bo@example.com")?
                    .is_empty()
            );
            let item = tx.insert_feed("acme", "bo", "T-1", "title", "body", noon())?;
            assert_eq!(item.at, "2026-11-27T12:00:00.000Z");
            Ok(())
        })
        .unwrap();
    let all = store.deliveries("acme", None, 0, 10).unwrap();
    let sent = all.iter().find(|d| d.idempotency_key == "s").unwrap();
    assert_eq!(sent.sent_at.as_deref(), Some("2026-11-27T12:00:00.000Z"));
    let mut counts = store.delivery_counts().unwrap();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("acme".into(), "email".into(), "digested".into(), 2),
            ("acme".into(), "email".into(), "sent".into(), 1)
        ]
    );
    let feed = store.feed("acme", "bo", 0).unwrap();
    assert_eq!((feed.len(), feed[0].title.as_str()), (1, "title"));
    assert!(store.feed("acme", "bo", feed[0].id).unwrap().is_empty());

    // Plugin versions, slots and their change log.
    let version = |v: &str, at: &str| PluginVersion {
        name: "phrases".into(),
        version: v.into(),
        kind: "trigger".into(),
        manifest: "name = \"phrases\"".into(),
        wasm: vec![0, 97, 115, 109, 255],
        size: 5,
        digest: format!("sha-{v}"),
        validation: serde_json::json!({"ok": true}),
        source: "api".into(),
        uploaded_at: at.into(),
        uploaded_by: "admin".into(),
    };
    assert!(store.plugin_changes_after(0).unwrap().is_empty());
    store
        .write(|tx| -> Result<_> {
            let fixtures = serde_json::json!([]);
            assert!(tx.insert_plugin_version(
                "acme",
                &version("1.0.0", "2026-11-27T12:00:00.000Z"),
                &fixtures
            )?);
            assert!(tx.insert_plugin_version(
                "acme",
                &version("1.1.0", "2026-11-27T13:00:00.000Z"),
                &fixtures
            )?);
            assert!(!tx.insert_plugin_version(
                "acme",
                &version("1.0.0", "2026-11-27T14:00:00.000Z"),
                &fixtures
            )?);
            assert_eq!(
                tx.version_digest("acme", "phrases", "1.1.0")?.as_deref(),
                Some("sha-1.1.0")
            );
            assert!(tx.digest_in_use("sha-1.0.0")?);
            assert!(!tx.digest_in_use("sha-none")?);
            let slot = PluginSlot {
                name: "phrases".into(),
                version: Some("1.1.0".into()),
                mode: Some(escalator::manifest::Mode::Shadow),
                previous: Some("1.0.0".into()),
            };
            tx.set_plugin_slots("acme", std::slice::from_ref(&slot))?;
            tx.set_plugin_slots("acme", &[slot])?;
            assert_eq!(tx.plugin_slots("acme")?.len(), 1);
            tx.plugin_change(
                "acme",
                noon(),
                &ChangeLog {
                    actor: "admin",
                    action: "activated",
                    name: "phrases",
                    version: Some("1.1.0"),
                    detail: &serde_json::json!({"why": "test"}),
                },
            )
        })
        .unwrap();
    let v = store
        .plugin_version("acme", "phrases", "1.0.0")
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.wasm, v.size, v.uploaded_at.as_str()),
        (vec![0, 97, 115, 109, 255], 5, "2026-11-27T12:00:00.000Z")
    );
    let versions = store.plugin_versions("acme", "phrases").unwrap();
    let listed: Vec<(&str, usize, bool)> = versions
        .iter()
        .map(|v| (v.version.as_str(), v.size, v.wasm.is_empty()))
        .collect();
    assert_eq!(
        listed,
        [("1.0.0", 5, true), ("1.1.0", 5, true)],
        "sizes, not bytes"
    );
    assert_eq!(store.uploaded_plugin_names("acme").unwrap(), ["phrases"]);
    assert_eq!(store.tenants_with_plugins().unwrap(), ["acme"]);
    let slots = store.plugin_slots("acme").unwrap();
    assert_eq!(slots[0].mode, Some(escalator::manifest::Mode::Shadow));
    let changes = store.plugin_changes("acme", 10).unwrap();
    assert_eq!(
        (
            changes[0].action.as_str(),
            changes[0].detail["why"].as_str()
        ),
        ("activated", Some("test"))
    );
    let newest = changes[0].id;
    assert_eq!(
        store.plugin_changes_after(0).unwrap(),
        [(newest, "acme".to_string())]
    );
    assert!(store.plugin_changes_after(newest).unwrap().is_empty());
    // The crash-loop guard's window: empty at first, kept as written,
    // and forgotten for every version of a plugin at once.
    store
        .write(|tx| -> Result<_> {
            assert_eq!(
                tx.plugin_health("acme", "phrases@1.1.0")?,
                Default::default()
            );
            tx.set_plugin_health("acme", "phrases@1.1.0", "0101", "boom")?;
            tx.set_plugin_health("acme", "phrasesx@1.0.0", "1", "other")?;
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> Result<_> {
            assert_eq!(
                tx.plugin_health("acme", "phrases@1.1.0")?,
                ("0101".to_string(), "boom".to_string())
            );
            tx.clear_plugin_health("acme", "phrases")?;
            assert_eq!(tx.plugin_health("acme", "phrases@1.1.0")?.0, "");
            assert_eq!(
                tx.plugin_health("acme", "phrasesx@1.0.0")?.0,
                "1",
                "another plugin's"
            );
            Ok(())
        })
        .unwrap();
    assert!(
        store
            .write(|tx| tx.delete_plugin_version("acme", "phrases", "1.0.0"))
            .unwrap()
    );
    assert!(
        store
            .plugin_version("acme", "phrases", "1.0.0")
            .unwrap()
            .is_none()
    );
}
