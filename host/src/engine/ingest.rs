//! Events in: a new ticket or an event is applied to the ticket
//! ([`crate::pipeline::apply`]) and decided on, then stored durably with its
//! idempotency key and its decision in one transaction, before its sender
//! hears back. An event that moves an agent's load (a claim, a
//! resolution) is stored first and then decided, since routing reads the
//! load; such events stored before a crash are decided at the next start.
//! If deciding fails, the event is stored alone, marked failed.

use super::*;
use anyhow::Context as _;

impl Engine {
    /// Create a ticket and evaluate it. `key` makes a retried request
    /// return the first answer instead of creating anything twice.
    pub fn create_ticket(
        &self,
        tenant: &str,
        ticket: Ticket,
        key: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        if ticket.id.trim().is_empty() {
            return Err(EngineError::Invalid(
                codes::TICKET_INVALID,
                "ticket id must not be empty".into(),
            ));
        }
        let key = key.map(|k| IdempotencyKey::new("create", &ticket.id, k, &ticket));
        let _g = self.ticket_lock(tenant, &ticket.id)?;
        if let Some(done) = self.replayed(tenant, key.as_ref())? {
            return Ok(done);
        }
        let exists = |id: &str| {
            EngineError::Conflict(
                codes::TICKET_EXISTS,
                format!("ticket {id} exists; add events to it instead"),
            )
        };
        // Before the plugins run on it (checked again when it is stored).
        if self.store.has_ticket(tenant, &ticket.id)? {
            return Err(exists(&ticket.id));
        }
        let now = self.clock.now();
        let mut state = apply::created(ticket, tenant, now);
        // Serialized before the writer is taken: a ticket may be a
        // megabyte, and every tenant's commits wait for the writer. The
        // conversation is stored once, with the ticket; the event records
        // the rest of the ticket as it came.
        let json = TicketJson::new(&mut state, 0)?;
        let payload = state.apart_from_messages(|s| serde_json::to_string(&s.ticket))?;
        let id = state.ticket.id.clone();
        let write =
            |tx: &Tx<'_>, state: &mut TicketState, decided_here| -> Result<_, EngineError> {
                if tx.ticket_exists(tenant, &state.ticket.id)? {
                    return Ok(None);
                }
                tx.put_ticket_json(tenant, state, &json)?;
                let event = NewEvent {
                    ticket: &state.ticket.id,
                    kind: "ticket-created",
                    payload: &payload,
                    received_at: now,
                    idempotency_key: key.as_ref().map(IdempotencyKey::columns),
                    decided_here,
                };
                Ok(Some(tx.insert_event(tenant, &event)?))
            };
        // Should the decision fail, the ticket as created is read back from
        // its serialized form (no copy made on every creation).
        let again = || Ok(json.whole()?.context("a new ticket is serialized whole")?);
        let created =
            self.decide_new(tenant, state, now, EventKind::TicketCreated, &write, again)?;
        created.ok_or_else(|| exists(&id))
    }

    /// A help desk's delivery: its ticket is created if Escalator has not
    /// seen it (with the delivery's message, if it brings one), and its
    /// event added. The desk's delivery id is the idempotency key, so a
    /// retried delivery changes nothing. `None`: nothing to do (a ticket
    /// seen before, and no event).
    pub fn desk_delivery(
        &self,
        tenant: &str,
        desk: crate::connectors::Desk,
        inbound: &crate::connectors::Inbound,
    ) -> Result<Option<Outcome>, EngineError> {
        crate::connectors::arriving(desk, || self.take_desk_delivery(tenant, desk, inbound))
    }

    fn take_desk_delivery(
        &self,
        tenant: &str,
        desk: crate::connectors::Desk,
        inbound: &crate::connectors::Inbound,
    ) -> Result<Option<Outcome>, EngineError> {
        let key = format!("{}:{}", desk.name(), inbound.delivery);
        let id = &inbound.ticket.id;
        // An event for a ticket Escalator has: added (the common case, one
        // read of the ticket).
        if let Some(e) = &inbound.event {
            match self.add_event(tenant, id, e.clone(), Some(&key)) {
                Err(EngineError::NotFound(code, _)) if code == codes::TICKET_NOT_FOUND => {}
                other => return other.map(Some),
            }
        }
        // A ticket Escalator has not seen: created from the delivery, with
        // its message if it brings one, then its other event added.
        let (ticket, rest) = inbound.for_creation();
        let rest = match self.create_ticket(tenant, ticket, Some(&key)) {
            Ok(out) => match rest {
                None => return Ok(Some(out)),
                Some(e) => e,
            },
            // Created meanwhile by another delivery, or seen before.
            Err(EngineError::Conflict(code, _)) if code == codes::TICKET_EXISTS => {
                match &inbound.event {
                    Some(e) => e.clone(),
                    None => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        };
        self.add_event(tenant, id, rest, Some(&key)).map(Some)
    }

    /// Add an event to a ticket and evaluate it.
    pub fn add_event(
        &self,
        tenant: &str,
        ticket_id: &str,
        event: Event,
        key: Option<&str>,
    ) -> Result<Outcome, EngineError> {
        let key = key.map(|k| IdempotencyKey::new("event", ticket_id, k, &event));
        let _g = self.ticket_lock(tenant, ticket_id)?;
        if let Some(done) = self.replayed(tenant, key.as_ref())? {
            return Ok(done);
        }
        let now = self.clock.now();
        let payload = serde_json::to_string(&event)?;
        // Read before the writer is taken (the ticket's lock keeps it as
        // it is): a ticket may be a megabyte to parse.
        let read = || -> Result<TicketState, EngineError> {
            self.store.ticket(tenant, ticket_id)?.ok_or_else(|| {
                EngineError::NotFound(codes::TICKET_NOT_FOUND, format!("no ticket {ticket_id}"))
            })
        };
        let applied = |state: &mut TicketState| {
            apply::event(state, &event, now)
                .map_err(|e| EngineError::Invalid(codes::EVENT_INVALID, e))
        };
        let mut state = read()?;
        let was_unresolved = state.ticket.unresolved();
        if let Some(why) = apply::already_applied(&state, &event) {
            // A desk's retry or a double click: nothing stored, nothing
            // decided, the ticket as it stands.
            tracing::debug!(tenant, ticket = ticket_id, why, "duplicate event ignored");
            return Ok(Outcome {
                ticket: state.ticket.id.clone(),
                event: 0,
                decision: 0,
                tier: state.escalation.as_ref().map(|e| e.tier),
                escalated: false,
                new_signals: Vec::new(),
                assignee: state.ticket.assignee.clone(),
                queue: state.queue.clone(),
                customer_message: None,
                notified: 0,
                duplicate: Some(why),
            });
        }
        let fx = applied(&mut state)?;
        let counts = Self::quality(tenant, &event, was_unresolved, &state, now);
        // Stores the event and the ticket as the event left it, and does
        // what the event does besides (`fx`); an error rolls the
        // transaction back: nothing of the event stays.
        let write =
            |tx: &Tx<'_>, state: &mut TicketState, decided_here| -> Result<_, EngineError> {
                if let Event::Claim { agent } = &event
                    && tx.agent(tenant, agent)?.is_none()
                {
                    return Err(EngineError::NotFound(
                        codes::AGENT_NOT_FOUND,
                        format!("no agent {agent}"),
                    ));
                }
                self.carry_out(tx, tenant, ticket_id, &fx, now)?;
                tx.put_ticket(tenant, state)?;
                let stored = NewEvent {
                    ticket: ticket_id,
                    kind: event.name(),
                    payload: &payload,
                    received_at: now,
                    idempotency_key: key.as_ref().map(IdempotencyKey::columns),
                    decided_here,
                };
                let seq = tx.insert_event(tenant, &stored)?;
                if was_unresolved && !state.ticket.unresolved() {
                    self.resolved(tx, tenant, state, seq, now)?;
                }
                Ok(Some(seq))
            };
        let decided = if fx.load.is_some() {
            // The event moves an agent's load, which routing reads: stored
            // first, then decided on.
            let seq = self.store.write(|tx| write(tx, &mut state, false))?;
            let seq = seq.context("an event is always stored")?;
            self.count(counts);
            self.decide_event(tenant, state, now, event.kind(), seq)?
        } else {
            // Decided on the ticket as the event leaves it, then stored
            // with its decision in one transaction.
            let again = || {
                let mut state = read()?;
                applied(&mut state)?;
                Ok(state)
            };
            let decided = self.decide_new(tenant, state, now, event.kind(), &write, again);
            if let Ok(Some(_)) | Err(EngineError::Failed { .. }) = &decided {
                self.count(counts);
            }
            decided?.context("an event is always stored")?
        };
        if let Event::Claim { .. } = event {
            self.plan_after_claim(tenant, ticket_id, now)?;
        }
        drop(_g);
        Ok(decided)
    }

    /// What an applied event says about how escalation went, to be
    /// counted once the event is stored ([`Engine::count`]): a rating (of
    /// an escalated ticket or not), an escalated ticket resolved (how long
    /// after escalating; without a human reply it was over-escalated), a
    /// low rating of one that never escalated.
    fn quality(
        tenant: &str,
        event: &Event,
        was_unresolved: bool,
        s: &TicketState,
        now: DateTime<Utc>,
    ) -> Vec<Count> {
        let mut counts = Vec::new();
        if let (Event::Claim { .. }, Some(esc)) = (event, &s.escalation) {
            let waited = (now - esc.escalated_at).num_milliseconds().max(0) as f64 / 1000.0;
            let within = esc
                .response_target_ms
                .is_none_or(|t| waited * 1000.0 <= t as f64);
            let tier = name(&esc.tier);
            counts.push(Count::Observe(
                "escalator_time_to_claim_seconds",
                vec![("tenant", tenant.into()), ("tier", tier.clone())],
                waited,
            ));
            counts.push(Count::Add(
                "escalator_claims_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", tier),
                    ("within_target", within.to_string()),
                ],
                1.0,
            ));
        }
        let first = s.first_escalated();
        if let Event::Csat { score, .. } = event {
            let l = || {
                vec![
                    ("tenant", tenant.to_string()),
                    ("escalated", first.is_some().to_string()),
                ]
            };
            counts.push(Count::Add("escalator_csat_ratings_total", l(), 1.0));
            counts.push(Count::Add(
                "escalator_csat_score_total",
                l(),
                f64::from(*score),
            ));
        }
        if let Some(why) = s.under_escalated()
            && matches!(event, Event::Csat { .. })
            && why == "low-csat"
        {
            counts.push(Count::Add(
                "escalator_under_escalations_total",
                vec![("tenant", tenant.into()), ("why", why.into())],
                1.0,
            ));
        }
        if let (true, Some(first), Some(done), Some(e)) =
            (was_unresolved, first, s.resolved_at(), &s.escalation)
        {
            let l = || vec![("tenant", tenant.to_string()), ("tier", name(&e.tier))];
            counts.push(Count::Observe(
                "escalator_resolution_after_escalation_seconds",
                l(),
                (done - first).num_milliseconds().max(0) as f64 / 1000.0,
            ));
            if s.over_escalated() {
                counts.push(Count::Add("escalator_over_escalations_total", l(), 1.0));
            }
        }
        counts
    }

    /// Count what [`Engine::quality`] found.
    fn count(&self, counts: Vec<Count>) {
        for c in counts {
            match c {
                Count::Add(name, labels, v) => self.metrics.add(name, labels, v),
                Count::Observe(name, labels, v) => {
                    self.metrics
                        .observe(name, crate::metrics::TIME_BUCKETS, labels, v)
                }
            }
        }
    }

    /// Decide on a stored event, whatever happens: if deciding fails (an
    /// error, or a panic anywhere in it), the event is marked failed with
    /// the reason, so it is never decided again (not at the next start
    /// either), and the caller hears why.
    pub(super) fn decide_event(
        &self,
        tenant: &str,
        state: TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
        seq: i64,
    ) -> Result<Outcome, EngineError> {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate(tenant, state, now, kind, Cause::Event(seq))
        }));
        let reason = match run {
            Ok(Ok(Some(outcome))) => return Ok(outcome),
            // Only a timer's decision can find its cause already taken.
            Ok(Ok(None)) => "not decided: its cause was taken already".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!("panicked: {}", crate::runtime::panic_message(&*panic)),
        };
        Err(self.event_failed(tenant, seq, reason))
    }

    /// Decide on a new event and store the event with its decision in one
    /// transaction: `write` stores the event (and the ticket as the event
    /// left it; as decided when its third argument says the decision
    /// follows in the same transaction) and returns its sequence number,
    /// or `None` when there is nothing to store (a ticket that exists
    /// already); the decision is stored after it in the same transaction.
    /// Nothing is written while the plugins run, and the sender hears back
    /// only once both are durable.
    ///
    /// If deciding or storing the decision fails (an error, or a panic
    /// anywhere in it), nothing of it stays: the event is stored alone, on
    /// the ticket as `again` gives it, marked failed with the reason, as
    /// [`Engine::decide_event`] does.
    fn decide_new<W>(
        &self,
        tenant: &str,
        mut state: TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
        write: &W,
        again: impl FnOnce() -> Result<TicketState, EngineError>,
    ) -> Result<Option<Outcome>, EngineError>
    where
        W: Fn(&Tx<'_>, &mut TicketState, bool) -> Result<Option<i64>, EngineError>,
    {
        let mut feed = Vec::new();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let c = self.consider(tenant, &state, now, kind)?;
            let stored = self.store.write(|tx| {
                let Some(seq) = write(tx, &mut state, true)? else {
                    return Ok(None);
                };
                let cause = Cause::Event(seq);
                self.store_decision(tx, tenant, &mut state, &c, &cause, now, &mut feed)
            })?;
            Ok::<_, EngineError>(stored.map(|o| (o, c)))
        }));
        let reason = match run {
            Ok(Ok(Some((outcome, c)))) => {
                self.decided(tenant, &c, &outcome, feed);
                return Ok(Some(outcome));
            }
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!("panicked: {}", crate::runtime::panic_message(&*panic)),
        };
        let mut state = again()?;
        let Some(seq) = self.store.write(|tx| write(tx, &mut state, false))? else {
            return Ok(None);
        };
        Err(self.event_failed(tenant, seq, reason))
    }

    /// Mark a stored event failed (deciding on it failed for `reason`):
    /// logged, counted, and the error its sender gets.
    fn event_failed(&self, tenant: &str, seq: i64, reason: String) -> EngineError {
        tracing::error!(tenant, seq, %reason, "deciding on an event failed; marked failed");
        if let Err(e) = self.store.event_failed(seq, &reason) {
            tracing::error!(seq, error = %e, "could not mark an event failed");
        }
        self.metrics.add(
            "escalator_events_failed_total",
            vec![("tenant", tenant.into())],
            1.0,
        );
        EngineError::Failed { event: seq, reason }
    }

    /// The first answer to a request with this idempotency key, if there
    /// was one. Called under the ticket's lock, so a concurrent duplicate
    /// waits for the first and gets its answer.
    pub(super) fn replayed(
        &self,
        tenant: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Outcome>, EngineError> {
        let Some(key) = key else { return Ok(None) };
        let Some(first) = self.store.event_by_key(tenant, &key.scoped)? else {
            return Ok(None);
        };
        if first.request_hash.as_deref() != Some(key.request_hash.as_str()) {
            return Err(EngineError::Invalid(
                codes::IDEMPOTENCY_KEY_REUSED,
                format!(
                    "idempotency key {:?} was already used for a different request on this ticket; use a new key for a new request",
                    key.key
                ),
            ));
        }
        match (first.processed, first.response) {
            (1, Some(response)) => Ok(Some(serde_json::from_str(&response)?)),
            (2, _) => Err(EngineError::Failed {
                event: first.seq,
                reason: first.error.unwrap_or_default(),
            }),
            _ => Err(EngineError::Conflict(
                codes::IDEMPOTENCY_IN_PROGRESS,
                format!(
                    "the event with idempotency key {:?} is being decided; retry shortly",
                    key.key
                ),
            )),
        }
    }

    /// Carry out what an event or a decision means beyond the ticket: the
    /// agents' load, the timers it ends.
    pub(super) fn carry_out(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        ticket: &str,
        fx: &apply::Effects,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Some((from, to)) = &fx.load {
            self.move_load(tx, tenant, from.as_deref(), to.as_deref(), now)?;
        }
        for (cancel, reason) in &fx.cancel {
            match cancel {
                apply::Cancel::Fallbacks => {
                    tx.cancel_timers(tenant, ticket, &[TimerKind::Fallback], reason)?;
                }
                apply::Cancel::StepsStoppedByClaim => {
                    stop_steps_on_claim(tx, tenant, ticket)?;
                }
                apply::Cancel::Plan => {
                    tx.cancel_timers(
                        tenant,
                        ticket,
                        &[TimerKind::Step, TimerKind::Fallback],
                        reason,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Move one open ticket of load from `from` to `to` (either may be
    /// absent); `to` also gets `last_assigned_at` ([`apply::move_load`]).
    /// The two agents are held until the commit, always in the order of
    /// their ids: two tickets moving between the same two agents in
    /// opposite directions at once (two fallbacks firing side by side)
    /// neither lose each other's count nor deadlock (PostgreSQL detected
    /// one and failed a fallback, retried a second later).
    pub(super) fn move_load(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut ids: Vec<&str> = [from, to].into_iter().flatten().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut agents: Vec<model::Agent> = Vec::new();
        for id in ids {
            if let Some(a) = tx.agent_for_update(tenant, id)? {
                agents.push(a);
            }
        }
        let load = (from.map(String::from), to.map(String::from));
        apply::move_load(&mut agents, &load, now);
        for a in &agents {
            tx.put_agent(tenant, a)?;
        }
        Ok(())
    }

    /// Decide on events stored before a crash but not decided on.
    pub fn recover(&self) -> Result<usize> {
        let pending = self.store.unprocessed_events()?;
        let n = pending.len();
        for (tenant, ev) in pending {
            let _g = self.ticket_lock(&tenant, &ev.ticket)?;
            // Another instance on the database may have decided it while
            // this one waited for the ticket.
            let events = self.store.events(&tenant, &ev.ticket)?;
            if events.iter().any(|e| e.seq == ev.seq && e.processed) {
                continue;
            }
            let state = match self.store.ticket(&tenant, &ev.ticket) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    let _ = self.store.event_failed(ev.seq, "its ticket is gone");
                    continue;
                }
                Err(e) => {
                    let _ = self
                        .store
                        .event_failed(ev.seq, &format!("reading its ticket: {e:#}"));
                    continue;
                }
            };
            let kind = match serde_json::from_value::<Event>(ev.payload.clone()) {
                Ok(e) => e.kind(),
                Err(_) => EventKind::TicketCreated,
            };
            let at = ev.received_at.parse().unwrap_or_else(|_| self.clock.now());
            // Exactly as live: plugins run on their call threads; a failure
            // marks the event failed and start-up goes on.
            if let Err(e) = self.decide_event(&tenant, state, at, kind, ev.seq) {
                tracing::error!(seq = ev.seq, error = %e, "recovering an event failed");
            }
        }
        Ok(n)
    }
}

/// Who is told when a ticket goes to `target`: the agent, or the queue's team.
/// A client's idempotency key, scoped to the endpoint and the ticket, with
/// the hash of the request it came with.
pub(super) struct IdempotencyKey {
    key: String,
    scoped: String,
    request_hash: String,
}

impl IdempotencyKey {
    fn new(endpoint: &str, ticket: &str, key: &str, request: &impl Serialize) -> IdempotencyKey {
        use sha2::Digest as _;
        let body = serde_json::to_vec(request).unwrap_or_default();
        IdempotencyKey {
            key: key.to_string(),
            scoped: format!("{endpoint}\n{ticket}\n{key}"),
            request_hash: hex::encode(sha2::Sha256::digest(&body)),
        }
    }

    fn columns(&self) -> (&str, &str) {
        (&self.scoped, &self.request_hash)
    }
}

/// A metric an event adds ([`Engine::quality`]).
enum Count {
    Add(&'static str, crate::metrics::Labels, f64),
    /// Seconds, into a histogram of [`crate::metrics::TIME_BUCKETS`].
    Observe(&'static str, crate::metrics::Labels, f64),
}
