//! The durable scheduler: fires each timer when it is due, to the
//! millisecond, rather than on a polling sweep. Timers live in the store,
//! so they survive restarts: whatever fell due while the server was down
//! fires at start. With a manual clock the scheduler waits to be told the
//! clock moved.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// Run forever: fire what is due, then sleep until the next timer or until
/// a new one is scheduled.
///
/// When the next timer is due is read from the store after each firing.
/// Told of new timers in between (after most decisions), the scheduler
/// takes the earliest due time this process inserted since it last looked
/// ([`crate::store::Timers::take_inserted`]) and wakes earlier only if that
/// is earlier: no read of the store per decision (most schedule a wake-up
/// hours ahead). Timers other instances insert are found at the next read:
/// after this instance's next firing, or within the hour at most.
pub async fn run(engine: Arc<Engine>) {
    let mut fire = true;
    // When the next timer is due, ms (`Some(None)`: none), or `None`: read
    // it from the store.
    let mut next: Option<Option<i64>> = None;
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
            next = None;
        }
        let wait = if engine.clock.is_manual() {
            Duration::from_secs(3600)
        } else {
            if next.is_none() {
                // What was inserted before this read is in it.
                engine.store.take_inserted();
                let e = engine.clone();
                match tokio::task::spawn_blocking(move || e.store.next_timer_at()).await {
                    Ok(Ok(at)) => next = Some(at),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "reading when the next timer is due failed")
                    }
                    Err(e) => tracing::error!(error = %e, "the timer read panicked"),
                }
            }
            match next {
                Some(Some(at)) => {
                    let ms = at - engine.clock.now().timestamp_millis();
                    Duration::from_millis(ms.clamp(0, 3_600_000) as u64)
                }
                Some(None) => Duration::from_secs(3600),
                // Look again (and fire) in a second.
                None => Duration::from_secs(1),
            }
        };
        if wait.is_zero() {
            fire = true;
            continue;
        }
        fire = tokio::select! {
            // A manual clock's move is told the same way: fire then.
            _ = engine.timer_wake.notified() => {
                if !engine.clock.is_manual()
                    && let (Some(known), Some(new)) = (next, engine.store.take_inserted())
                {
                    next = Some(Some(known.map_or(new, |k| k.min(new))));
                }
                engine.clock.is_manual()
            }
            _ = tokio::time::sleep(wait) => true,
        };
    }
}
