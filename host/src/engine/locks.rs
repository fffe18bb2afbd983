//! One lock per ticket: events and timers of a ticket are decided one at a
//! time, and nothing else waits for them. There are no shared shards, so a
//! ticket whose plugins are slow holds up only itself, never a ticket of
//! another tenant that happens to hash to the same place.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The set of tickets being decided now.
#[derive(Default)]
pub struct TicketLocks {
    held: Mutex<HashSet<(String, String)>>,
    released: Condvar,
}

/// A held ticket lock; released on drop.
pub struct TicketGuard<'a> {
    locks: &'a TicketLocks,
    key: (String, String),
}

impl TicketLocks {
    fn held(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until no one else holds `(tenant, ticket)`, then hold it.
    pub fn lock(&self, tenant: &str, ticket: &str) -> TicketGuard<'_> {
        let key = (tenant.to_string(), ticket.to_string());
        let mut held = self.held();
        while held.contains(&key) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
        }
        held.insert(key.clone());
        TicketGuard { locks: self, key }
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.locks.held().remove(&self.key);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_held_ticket_blocks_only_itself() {
        let locks = Arc::new(TicketLocks::default());
        let held = locks.lock("attacker", "T-1");
        // Another tenant's ticket, and another ticket of the same tenant,
        // lock at once.
        drop(locks.lock("victim", "T-1"));
        drop(locks.lock("attacker", "T-2"));
        let l2 = locks.clone();
        let waiter = std::thread::spawn(move || {
            let _g = l2.lock("attacker", "T-1");
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "the same ticket waits");
        drop(held);
        waiter.join().unwrap();
        assert!(locks.held().is_empty(), "every guard released its ticket");
    }
}
