//! The durable scheduler: fires each timer when it is due, to the
//! millisecond, rather than on a polling sweep. Timers live in the store,
//! so they survive restarts: whatever fell due while the server was down
//! fires at start. With a manual clock the scheduler waits to be told the
//! clock moved.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// Run forever: fire what is due, then sleep until the next timer or until
/// a new one is scheduled. Told of a new timer, it first looks when the
/// next one is due (one indexed read) and fires only if that is now: most
/// decisions schedule a wake-up hours ahead.
pub async fn run(engine: Arc<Engine>) {
    let mut fire = true;
    loop {
        if fire {
            let e = engine.clone();
            match tokio::task::spawn_blocking(move || e.run_due_timers()).await {
                Ok(Ok(n)) if n > 0 => tracing::debug!(fired = n, "timers fired"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "firing timers failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => tracing::error!(error = %e, "the timer task panicked"),
            }
        }
        let wait = if engine.clock.is_manual() {
            Duration::from_secs(3600)
        } else {
            match engine.store.next_timer_at() {
                Ok(Some(at)) => {
                    let ms = at - engine.clock.now().timestamp_millis();
                    Duration::from_millis(ms.clamp(0, 3_600_000) as u64)
                }
                Ok(None) => Duration::from_secs(3600),
                // Look again (and fire) in a second.
                Err(e) => {
                    tracing::warn!(error = %e, "reading when the next timer is due failed");
                    Duration::from_secs(1)
                }
            }
        };
        if wait.is_zero() {
            fire = true;
            continue;
        }
        fire = tokio::select! {
            // A manual clock's move is told the same way: fire then.
            _ = engine.timer_wake.notified() => engine.clock.is_manual(),
            _ = tokio::time::sleep(wait) => true,
        };
    }
}
