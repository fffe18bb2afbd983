//! The engine's clock: the system clock in production, a manual one that
//! tests (and demos) move by hand, so timers fire without anyone sleeping.

use chrono::{DateTime, Utc};
use std::sync::Mutex;

/// Where the engine reads the time.
#[derive(Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that only moves when told to.
    Manual(Mutex<DateTime<Utc>>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Mutex::new(start))
    }

    /// The current time, to the millisecond (what the store keeps).
    pub fn now(&self) -> DateTime<Utc> {
        let t = match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        };
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Move a manual clock to `to` (never backwards); `None` for the system
    /// clock. Returns the new time.
    pub fn set(&self, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Clock::System => None,
            Clock::Manual(t) => {
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                *t = (*t).max(to);
                Some(*t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let start: DateTime<Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
        let c = Clock::manual(start);
        assert_eq!(c.now(), start);
        let later = start + chrono::Duration::minutes(10);
        assert_eq!(c.set(later), Some(later));
        assert_eq!(c.set(start), Some(later), "never backwards");
        assert!(Clock::System.set(later).is_none());
    }
}
