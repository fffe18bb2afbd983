//! Work spread over all cores, with results in input order (so a
//! deterministic `f` gives the same output however the threads interleave).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of each item, on up to as many threads as the machine has cores;
/// results in the items' order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len());
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    let r = f(item);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = super::map(&items, |i| {
            // Uneven work, so threads finish out of order.
            (0..(i % 7) * 1000).fold(*i, |a, b| a.wrapping_add(b % 3))
                - (0..(i % 7) * 1000).map(|b| b % 3).sum::<u64>()
        });
        assert_eq!(out, items);
        assert!(super::map(&[] as &[u8], |_| 1).is_empty());
    }
}
