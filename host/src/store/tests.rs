//! The store's own tests: migrations, timers, deliveries, settings.

use super::*;

fn open() -> (Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("escalator.db"), Durability::Process).unwrap();
    (Arc::new(store), dir)
}

/// A pending webhook delivery of ticket T-1 with this idempotency key.
fn webhook(key: String) -> NewDelivery {
    NewDelivery {
        ticket: "T-1".into(),
        idempotency_key: key,
        channel: crate::model::Channel::Webhook,
        recipient: "ops".into(),
        address: "http://127.0.0.1:1/hook".into(),
        title: "t".into(),
        body: "b".into(),
        status: crate::store::DeliveryStatus::Pending,
        note: None,
        priority: 2,
    }
}

fn noon() -> DateTime<Utc> {
    "2026-11-27T12:00:00Z".parse().unwrap()
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    drop(store);
    // Reopening does not migrate again.
    let store = SqliteStore::open(&path, Durability::Power).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    store
        .lock()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    drop(store);
    let err = SqliteStore::open(&path, Durability::Process).unwrap_err();
    assert!(
        format!("{err:#}").contains("newer than this escalator"),
        "{err:#}"
    );
    drop(dir);
}

#[test]
fn due_timers_leave_out_busy_tickets_and_full_tenants_and_failures_back_off() {
    let (store, _dir) = open();
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

#[test]
fn a_timer_fires_once_and_cancelled_timers_never() {
    let (store, _dir) = open();
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

#[test]
fn a_failed_transaction_leaves_nothing_behind() {
    let (store, _dir) = open();
    let err: anyhow::Result<()> = store.write(|tx| {
        tx.create_tenant("acme", "Acme", "h", noon())?;
        anyhow::bail!("boom")
    });
    assert!(err.is_err());
    assert!(store.tenants().unwrap().is_empty());
}

#[test]
fn deliveries_are_queued_once_per_idempotency_key() {
    let (store, _dir) = open();
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

#[test]
fn each_tenant_queue_is_read_on_its_own_most_urgent_first() {
    let (store, _dir) = open();
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

#[test]
fn settings_carry_a_revision_that_moves_when_they_change() {
    let (store, _dir) = open();
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

#[test]
fn a_transaction_hands_back_the_callers_own_error_and_keeps_nothing_of_it() {
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
    let (store, _dir) = open();
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
    assert!(
        matches!(failed, Err(Caller::Store(StoreError::Db(_)))),
        "{failed:?}"
    );
    assert!(store.tenants().unwrap().is_empty());
    let committed = store
        .write(|tx| -> Result<bool, Caller> { Ok(tx.create_tenant("beta", "Beta", "h", noon())?) });
    assert!(matches!(committed, Ok(true)), "{committed:?}");
    let ids: Vec<String> = store.tenants().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["beta"]);
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

#[test]
fn a_conversation_is_stored_apart_in_the_batches_that_added_it_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("escalator.db"), Durability::Process).unwrap();
    let store: &Store = &sqlite;
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
    assert_eq!(conversation_of(store, "T1"), ids);
    assert_eq!(store.ticket("acme", "T1").unwrap().unwrap(), state);
    let conn = sqlite.lock();
    let batches: Vec<(i64, usize)> = conn
        .prepare("SELECT first, json_array_length(messages) FROM conversation ORDER BY first")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        batches,
        [(0, 3), (3, 2)],
        "each write stored only what it added"
    );
    let head: String = conn
        .query_row("SELECT data FROM tickets WHERE id = 'T1'", [], |r| r.get(0))
        .unwrap();
    assert!(
        !head.contains("message 1"),
        "the head holds no message: {head}"
    );
    drop(conn);

    // Serialized against a stale length: written again whole, not doubled.
    state.ticket.messages.push(message(6));
    let stale = TicketJson::new(&mut state, 2).unwrap();
    store
        .write(|tx| tx.put_ticket_json("acme", &state, &stale))
        .unwrap();
    let ids: Vec<String> = (1..=6).map(|i| format!("m{i}")).collect();
    assert_eq!(conversation_of(store, "T1"), ids);
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

#[test]
fn migrating_moves_each_stored_conversation_out_of_its_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    // A database as the build before the conversation moved left it.
    let before = MIGRATIONS.len() - 1;
    {
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for (i, sql) in MIGRATIONS[..before].iter().enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .unwrap();
            tx.commit().unwrap();
        }
        for (id, n) in [("T1", 3), ("T2", 0)] {
            let state = TicketState::new(model::Ticket {
                messages: (1..=n).map(message).collect(),
                ..model::Ticket::new(id, noon())
            });
            conn.execute(
                "INSERT INTO tickets (tenant, id, data, status, updated_at) \
                 VALUES ('acme', ?1, ?2, 'open', '')",
                params![id, serde_json::to_string(&state).unwrap()],
            )
            .unwrap();
        }
    }
    let sqlite = SqliteStore::open(&path, Durability::Process).unwrap();
    let store: &Store = &sqlite;
    assert_eq!(conversation_of(store, "T1"), ["m1", "m2", "m3"]);
    assert!(conversation_of(store, "T2").is_empty());
    assert_eq!(
        store.write(|tx| tx.stored_messages("acme", "T1")).unwrap(),
        3
    );
    // A message added after the migration lands after the moved ones.
    let mut state = store.ticket("acme", "T1").unwrap().unwrap();
    state.ticket.messages.push(message(4));
    store.write(|tx| tx.put_ticket("acme", &mut state)).unwrap();
    assert_eq!(conversation_of(store, "T1"), ["m1", "m2", "m3", "m4"]);
}

#[test]
fn two_stores_on_one_database_claim_each_delivery_once_and_take_over_a_lapsed_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalator.db");
    let a: Arc<Store> = Arc::new(SqliteStore::open(&path, Durability::Process).unwrap());
    let b: Arc<Store> = Arc::new(SqliteStore::open(&path, Durability::Process).unwrap());
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
