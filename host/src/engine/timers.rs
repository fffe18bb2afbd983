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

use super::{Engine, lock};
use crate::runtime::panic_message;
use crate::store::{TIMER_MAX_ATTEMPTS, Timer};
use anyhow::Result;
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
