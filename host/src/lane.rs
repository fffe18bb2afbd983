//! Lanes: how a tenant using more than its share of server time is kept
//! from slowing the others down.
//!
//! A tenant is in the low lane while it has spent more than half its burst
//! of server time (the API decides, from its work budget). Its work then
//! yields to everyone else's in the two places a tenant's work meets the
//! others':
//!
//! - **CPU**: its plugin calls, and the parsing of its big request bodies,
//!   run on threads of the lowest priority (nice 19), which get only the
//!   CPU the normal lane leaves and still run at full speed on an idle
//!   machine. Nothing run there holds a lock another tenant waits for, so
//!   a starved low thread never holds up a normal one.
//! - **The SQLite writer**: its write transactions run on ordinary threads
//!   (a transaction holds the one writer, and must not be starved while it
//!   does), but wait until no normal-lane transaction is waiting, so a
//!   victim's write queues behind at most the one transaction running,
//!   never behind a convoy of an attacker's megabyte writes.

use std::cell::Cell;

/// Which lane work runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    /// Everyone within their share.
    #[default]
    Normal,
    /// A tenant over its share: what the others leave.
    Low,
}

thread_local! {
    static CURRENT: Cell<Lane> = const { Cell::new(Lane::Normal) };
}

/// The lane of the work this thread is doing.
pub fn current() -> Lane {
    CURRENT.with(Cell::get)
}

/// Run `f` as work of `lane` on this thread.
pub fn within<T>(lane: Lane, f: impl FnOnce() -> T) -> T {
    struct Restore(Lane);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(lane)));
    f()
}

/// Give the calling thread the lowest CPU priority (nice 19). Raising a
/// thread's nice value needs no privilege; lowering it again would, which is
/// why the low lane has threads of its own.
#[cfg_attr(
    target_os = "linux",
    expect(unsafe_code, reason = "setpriority has no safe wrapper in std")
)]
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments; on Linux
    // PRIO_PROCESS with a thread id sets that one thread's nice value.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::warn!(
                "could not lower a low-lane thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The SQLite writer's turn-taking: one transaction at a time, and a
/// low-lane transaction only when no normal one is waiting (or after
/// [`LOW_WAITS_AT_MOST`], so an over-share tenant is slowed, never
/// stopped).
#[derive(Debug, Default)]
pub struct WriterTurns {
    state: std::sync::Mutex<Turns>,
    freed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Turns {
    held: bool,
    normal_waiting: usize,
}

/// The longest a low-lane transaction lets normal ones go first.
pub const LOW_WAITS_AT_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// A turn at the writer; the next waiter goes when it is dropped.
#[derive(Debug)]
pub struct Turn<'a>(&'a WriterTurns);

impl WriterTurns {
    /// Wait for this thread's turn, by its [`current`] lane.
    pub fn take(&self) -> Turn<'_> {
        let lane = current();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match lane {
            Lane::Normal => {
                s.normal_waiting += 1;
                while s.held {
                    s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                s.normal_waiting -= 1;
            }
            Lane::Low => {
                let until = std::time::Instant::now() + LOW_WAITS_AT_MOST;
                loop {
                    let now = std::time::Instant::now();
                    if !s.held && (s.normal_waiting == 0 || now >= until) {
                        break;
                    }
                    let wait = until
                        .saturating_duration_since(now)
                        .max(std::time::Duration::from_millis(1));
                    s = self
                        .freed
                        .wait_timeout(s, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        s.held = true;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.held = false;
        drop(s);
        self.0.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn within_sets_the_lane_and_restores_it() {
        assert_eq!(current(), Lane::Normal);
        within(Lane::Low, || {
            assert_eq!(current(), Lane::Low);
            within(Lane::Normal, || assert_eq!(current(), Lane::Normal));
            assert_eq!(current(), Lane::Low);
        });
        assert_eq!(current(), Lane::Normal);
    }

    #[test]
    fn a_waiting_normal_transaction_goes_before_waiting_low_ones() {
        let turns = Arc::new(WriterTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = turns.take();
        let mut threads = Vec::new();
        // Three low-lane writers queue first, then one normal writer.
        for i in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                within(Lane::Low, || {
                    let _t = turns.take();
                    order.lock().unwrap().push(format!("low{i}"));
                    std::thread::sleep(Duration::from_millis(5));
                })
            }));
        }
        std::thread::sleep(Duration::from_millis(50));
        let (t2, o2) = (turns.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let _t = t2.take();
            o2.lock().unwrap().push("normal".to_string());
        }));
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 4);
        assert_eq!(order[0], "normal", "{order:?}");
    }

    #[test]
    fn a_low_transaction_is_slowed_not_stopped() {
        let turns = Arc::new(WriterTurns::default());
        // A normal writer "waiting" forever: the low one still goes after
        // its longest wait.
        turns.state.lock().unwrap().normal_waiting = 1;
        let started = std::time::Instant::now();
        within(Lane::Low, || drop(turns.take()));
        assert!(started.elapsed() >= LOW_WAITS_AT_MOST);
    }
}
