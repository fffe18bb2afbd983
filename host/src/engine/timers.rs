//! Firing due timers: tickets side by side, each ticket's timers in order.
//!
//! Due timers are grouped by ticket; up to [`TIMER_CONCURRENCY`] tickets
//! fire at once, at most [`TIMER_CONCURRENCY_PER_TENANT`] of one tenant,
//! and a ticket whose timers are still firing (or a tenant at its share) is
//! left out of the next look-up, so one slow or failing ticket, or one
//! tenant's many, delays no other tenant's timers. A timer that fails (an error or a panic, in the engine
//! or in what a plugin planned) backs off (1 s, 2 s, 4 s, ...) and is
//! dead-lettered after [`TIMER_MAX_ATTEMPTS`] attempts: it never spins,
//! and it never stops other timers or a restart.

use super::*;
use crate::runtime::panic_message;
use crate::store::{TIMER_MAX_ATTEMPTS, Timer};
use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

/// Tickets whose timers fire at once.
pub const TIMER_CONCURRENCY: usize = 8;
/// Of those, at most this many of one tenant: the others always find a
/// free slot, however many slow tickets one tenant has.
pub const TIMER_CONCURRENCY_PER_TENANT: usize = 2;
/// Due timers read per look-up.
const BATCH: u32 = 500;
/// The first retry of a failed timer; doubles per attempt.
const RETRY_BASE_MS: i64 = 1_000;

type Key = (String, String);

impl Engine {
    /// Fire every timer due now (each once), oldest first per ticket;
    /// returns how many fired (or failed). Timers fire at their own due
    /// time: a trigger woken by one sees `now` = its due time.
    pub fn run_due_timers(&self) -> Result<usize> {
        let _only_one = lock(&self.timers_running);
        let mut fired = 0;
        std::thread::scope(|scope| -> Result<()> {
            let (done_tx, done_rx) = mpsc::channel::<(Key, usize)>();
            let mut running: HashSet<Key> = HashSet::new();
            loop {
                let busy: Vec<Key> = running.iter().cloned().collect();
                let per_tenant = |tenant: &str, running: &HashSet<Key>| {
                    running.iter().filter(|(t, _)| t == tenant).count()
                };
                let mut full: Vec<String> = busy
                    .iter()
                    .map(|(t, _)| t.clone())
                    .filter(|t| per_tenant(t, &running) >= TIMER_CONCURRENCY_PER_TENANT)
                    .collect();
                full.dedup();
                let due = if running.len() < TIMER_CONCURRENCY {
                    self.store.due_timers_except(
                        self.clock.now().timestamp_millis(),
                        BATCH,
                        &busy,
                        &full,
                    )?
                } else {
                    Vec::new()
                };
                let mut groups: Vec<(Key, Vec<Timer>)> = Vec::new();
                for t in due {
                    let key = (t.tenant.clone(), t.ticket.clone());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, g)) => g.push(t),
                        None => groups.push((key, vec![t])),
                    }
                }
                for (key, group) in groups {
                    if running.len() >= TIMER_CONCURRENCY {
                        break;
                    }
                    if per_tenant(&key.0, &running) >= TIMER_CONCURRENCY_PER_TENANT {
                        continue;
                    }
                    running.insert(key.clone());
                    let done = done_tx.clone();
                    scope.spawn(move || {
                        let n = group.len();
                        for t in &group {
                            self.fire_guarded(t);
                        }
                        let _ = done.send((key, n));
                    });
                }
                if running.is_empty() {
                    return Ok(());
                }
                // Wait for a ticket to finish; look again now and then
                // for timers that became due meanwhile.
                match done_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok((key, n)) => {
                        running.remove(&key);
                        fired += n;
                        while let Ok((key, n)) = done_rx.try_recv() {
                            running.remove(&key);
                            fired += n;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                }
            }
        })?;
        Ok(fired)
    }

    /// Fire one timer; a failure or panic backs it off or dead-letters it.
    fn fire_guarded(&self, t: &Timer) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.fire(t)));
        let error = match run {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(panic) => format!("panicked: {}", panic_message(&*panic)),
        };
        let attempt = t.attempts.clamp(0, 20);
        let retry_in = RETRY_BASE_MS.saturating_mul(1 << attempt);
        match self
            .store
            .timer_failed(t.id, self.clock.now(), retry_in, &error)
        {
            Ok(true) => tracing::error!(
                timer = t.id, tenant = %t.tenant, ticket = %t.ticket, kind = %t.kind,
                attempts = TIMER_MAX_ATTEMPTS, %error, "timer dead-lettered"
            ),
            Ok(false) => tracing::warn!(
                timer = t.id, tenant = %t.tenant, kind = %t.kind, retry_in_ms = retry_in,
                %error, "timer failed; will retry"
            ),
            Err(e) => {
                tracing::error!(timer = t.id, error = %e, "could not record a timer's failure")
            }
        }
    }
}

impl Engine {
    pub(super) fn fire(&self, t: &Timer) -> Result<()> {
        let at = DateTime::from_timestamp_millis(t.due_at).unwrap_or_else(|| self.clock.now());
        if t.kind == TimerKind::Digest {
            return self.fire_digest(t, at);
        }
        let _g = self.ticket_lock(&t.tenant, &t.ticket)?;
        if t.kind == TimerKind::Wake {
            // The decision's transaction takes the timer: a process killed
            // while deciding leaves it due, and the next start decides it.
            match self.store.ticket(&t.tenant, &t.ticket)? {
                Some(state) => {
                    self.evaluate(&t.tenant, state, at, EventKind::Tick, Cause::Timer(t.id))?;
                }
                None => self.store.write(|tx| -> Result<_> {
                    if tx.take_timer(t.id, at)? {
                        tx.timer_outcome(t.id, "skipped: no such ticket")?;
                    }
                    Ok(())
                })?,
            }
            return Ok(());
        }
        let settings = self.settings(&t.tenant);
        let roster = self.store.agents(&t.tenant)?;
        let mut feed = Vec::new();
        // Read before the writer is taken (the ticket's lock keeps it as it
        // is): a ticket may be a megabyte to parse.
        let ticket = self.store.ticket(&t.tenant, &t.ticket)?;
        self.store.write(|tx| -> Result<_> {
            if !tx.take_timer(t.id, at)? {
                return Ok(());
            }
            let Some(mut state) = ticket else {
                tx.timer_outcome(t.id, "skipped: no such ticket")?;
                return Ok(());
            };
            let act = Act {
                tx,
                tenant: &t.tenant,
                settings: &settings,
                roster: &roster,
                now: at,
            };
            let outcome = match &t.kind {
                TimerKind::Step => self.fire_step(&act, t, &state, &mut feed)?,
                TimerKind::Fallback => self.fire_fallback(&act, t, &mut state, &mut feed)?,
                TimerKind::Fanout => {
                    let hooks: WebhookFanout = serde_json::from_value(t.payload.clone())?;
                    let n = self.fan_out(&act, &t.ticket, &hooks)?;
                    format!("queued {n} more webhook deliveries")
                }
                other => format!("skipped: unknown timer kind {other}"),
            };
            tx.timer_outcome(t.id, &outcome)?;
            Ok(())
        })?;
        self.publish(&t.tenant, feed);
        if t.kind == TimerKind::Fanout {
            // Its continuation is due at once, on a manual clock too.
            self.timer_wake.notify_one();
        }
        Ok(())
    }

    /// A plan step: a chain's next step (the rest of the chain is then
    /// scheduled, whatever this step did), or a step carried whole (held
    /// for quiet hours, or scheduled before chains).
    pub(super) fn fire_step(
        &self,
        act: &Act<'_, '_>,
        t: &Timer,
        state: &TicketState,
        feed: &mut Vec<FeedItem>,
    ) -> Result<String> {
        if let Some(chain) = Chain::of(&t.payload) {
            let outcome = match chain.next_step(act.tx, act.tenant)? {
                Some(step) => self.send_step(act, t, state, &step, chain.plan_at(), feed)?,
                None => "skipped: its plan is gone".to_string(),
            };
            chain.rest().schedule(act.tx, act.tenant, &t.ticket)?;
            return Ok(outcome);
        }
        let step: model::NotificationStep = serde_json::from_value(t.payload["step"].clone())?;
        let plan_at: DateTime<Utc> = serde_json::from_value(t.payload["plan_at"].clone())?;
        self.send_step(act, t, state, &step, plan_at, feed)
    }

    /// Send a plan's step (of the plan made at `plan_at`) unless the
    /// ticket was resolved, or claimed or answered as the step says.
    fn send_step(
        &self,
        act: &Act<'_, '_>,
        t: &Timer,
        state: &TicketState,
        step: &model::NotificationStep,
        plan_at: DateTime<Utc>,
        feed: &mut Vec<FeedItem>,
    ) -> Result<String> {
        let at = act.now;
        let ticket = &state.ticket;
        if !ticket.unresolved() {
            return Ok("skipped: resolved".into());
        }
        if step.stop_when_claimed && ticket.claimed_at.is_some_and(|c| c <= at) {
            return Ok("skipped: claimed".into());
        }
        if step.stop_when_answered && answered_since(ticket, plan_at) {
            return Ok("skipped: answered".into());
        }
        // Steps for the first assignee follow the ticket when a fallback or
        // a re-route moved it.
        let mut recipient = step.recipient.clone();
        if let Some(esc) = &state.escalation {
            let first = apply::recipient_of(&esc.routing.target);
            if recipient == first {
                recipient = match (&ticket.assignee, &state.queue) {
                    (Some(a), _) => Recipient::Agent(a.clone()),
                    (None, Some(q)) => Recipient::Team(q.clone()),
                    (None, None) => recipient,
                };
            }
        }
        let n = self
            .notify(
                act,
                &t.ticket,
                &Notice {
                    recipient: &recipient,
                    channel: step.channel,
                    title: &step.title,
                    body: &step.body,
                    digest_window_ms: step.digest_window_ms,
                    key: &format!("t{}", t.id),
                    tier: state.escalation.as_ref().map(|e| e.tier),
                    assignee: ticket.assignee.as_deref(),
                    overrule: false,
                },
                feed,
            )?
            .made;
        Ok(format!("sent: {n} notification(s)"))
    }

    pub(super) fn fire_fallback(
        &self,
        act: &Act<'_, '_>,
        t: &Timer,
        state: &mut TicketState,
        feed: &mut Vec<FeedItem>,
    ) -> Result<String> {
        let step: model::FallbackStep = serde_json::from_value(t.payload["step"].clone())?;
        let outcome = match apply::fallback_skipped(&state.ticket) {
            Some(skipped) => skipped.to_string(),
            None => {
                let why = apply::fallback_reason(&step);
                let key = format!("t{}", t.id);
                let sent = self.reassign(act, state, &step.target, &why, &key, feed)?;
                act.tx.put_ticket(act.tenant, state)?;
                format!(
                    "reassigned to {}; {sent} notification(s)",
                    apply::target_name(&step.target)
                )
            }
        };
        // The rest of its path (a timer scheduled before paths were
        // chained has none: each of its steps has a timer of its own).
        if let (Some(from), Some(rest)) = (t.payload.get("from"), t.payload.get("rest")) {
            let from: DateTime<Utc> = serde_json::from_value(from.clone())?;
            let rest: Vec<model::FallbackStep> = serde_json::from_value(rest.clone())?;
            let decision = t.payload["decision"].as_i64().unwrap_or_default();
            fallback_path(act.tx, act.tenant, &t.ticket, decision, from, &rest)?;
        }
        Ok(outcome)
    }

    pub(super) fn fire_digest(&self, t: &Timer, at: DateTime<Utc>) -> Result<()> {
        let mut feed = Vec::new();
        self.store.write(|tx| -> Result<_> {
            if !tx.take_timer(t.id, at)? {
                return Ok(());
            }
            let Some(channel) = t.payload["channel"].as_str().and_then(Channel::parse) else {
                tx.timer_outcome(t.id, "skipped: no known channel")?;
                return Ok(());
            };
            let address = t.payload["address"].as_str().unwrap_or_default();
            let recipient = t.payload["recipient"].as_str().unwrap_or_default();
            let held = tx.take_held(&t.tenant, channel, address)?;
            if held.is_empty() {
                tx.timer_outcome(t.id, "nothing held")?;
                return Ok(());
            }
            let title = format!("Digest: {} escalation notice(s)", held.len());
            let body = held
                .iter()
                .map(|d| format!("• [{}] {}", d.ticket, d.title))
                .collect::<Vec<_>>()
                .join("\n");
            let d = NewDelivery {
                ticket: "*".into(),
                idempotency_key: hex_key(&format!("{}:digest:{}", t.tenant, t.id)),
                channel,
                recipient: recipient.into(),
                address: address.into(),
                title: title.clone(),
                body: body.clone(),
                status: if channel == Channel::InApp {
                    DeliveryStatus::Sent
                } else {
                    DeliveryStatus::Pending
                },
                note: None,
                // As urgent as the most urgent notice it gathers.
                priority: held.iter().map(|d| d.priority).min().unwrap_or(2),
            };
            tx.insert_delivery(&t.tenant, &d, at)?;
            if channel == Channel::InApp {
                feed.push(tx.insert_feed(&t.tenant, address, "*", &title, &body, at)?);
            }
            tx.timer_outcome(t.id, &format!("digest of {}", held.len()))?;
            Ok(())
        })?;
        self.publish(&t.tenant, feed);
        Ok(())
    }
}

/// Whether a human answered (or the ticket left new/open) since `since`.
pub(super) fn answered_since(t: &Ticket, since: DateTime<Utc>) -> bool {
    t.messages
        .iter()
        .any(|m| m.author == AuthorKind::HumanAgent && m.sent_at >= since)
        || !matches!(t.status, TicketStatus::New | TicketStatus::Open)
}
