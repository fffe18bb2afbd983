//! Cranelift's incremental compilation cache: compiled machine code kept per
//! *function*, keyed by a hash of the function's IR, the target and the
//! compiler's version and settings. Two components that share code (every
//! Python plugin carries the same CPython, every JavaScript plugin the same
//! SpiderMonkey, Rust plugins the same `std` and SDK) then compile only
//! what differs: a second Python plugin compiles in a fraction of the time
//! of the first.
//!
//! Entries are kept in memory up to a budget and, when the runtime has a
//! cache directory, on disk under `functions/` (so the separate processes
//! of `plugin test` and `replay` share them). Both are trusted the way the
//! artifact cache is: only this service writes the directory. An entry
//! that cannot be read is a miss, never an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The incremental cache of compiled functions.
#[derive(Debug)]
pub struct FunctionCache {
    memory: Mutex<Memory>,
    budget: usize,
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the function cache did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Functions found compiled (in memory or on disk).
    pub hits: u64,
    /// Functions compiled and kept.
    pub misses: u64,
    /// Entries held in memory.
    pub entries: usize,
    /// Their bytes.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl FunctionCache {
    /// A cache holding at most `budget` bytes in memory, and also kept in
    /// `dir` when given.
    pub fn new(budget: usize, dir: Option<PathBuf>) -> FunctionCache {
        FunctionCache {
            memory: Mutex::new(Memory::default()),
            budget,
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> Stats {
        let m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        Stats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: m.entries.len(),
            bytes: m.bytes,
        }
    }

    #[cfg(test)]
    fn in_memory(&self) -> (usize, usize) {
        let s = self.stats();
        (s.entries, s.bytes)
    }

    fn path_for(dir: &Path, key: &[u8]) -> PathBuf {
        let name = super::cache::hex(key);
        let (shard, rest) = name.split_at(name.len().min(2));
        dir.join(shard).join(rest)
    }

    /// Keep `value` in memory if the budget allows. When it does not, the
    /// memory is emptied first: a full cache starts a new generation rather
    /// than refusing everything new.
    fn remember(&self, key: &[u8], value: &[u8]) {
        let size = key.len() + value.len();
        if size > self.budget {
            return;
        }
        let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if m.bytes + size > self.budget {
            m.entries.clear();
            m.bytes = 0;
        }
        if m.entries.insert(key.to_vec(), value.to_vec()).is_none() {
            m.bytes += size;
        }
    }

    fn write(dir: &Path, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let path = Self::path_for(dir, key);
        if path.is_file() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Atomic: a reader never sees half an entry.
        let tmp = path.with_extension(format!(
            "tmp{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, value)?;
        std::fs::rename(&tmp, &path)
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        {
            let m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = m.entries.get(key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Cow::Owned(v.clone()));
            }
        }
        let dir = self.dir.as_ref()?;
        let value = std::fs::read(Self::path_for(dir, key)).ok()?;
        self.remember(key, &value);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.remember(key, &value);
        if let Some(dir) = &self.dir
            && let Err(e) = Self::write(dir, key, &value)
        {
            tracing::debug!(dir = %dir.display(), error = %e, "could not keep a compiled function on disk");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore as _;

    #[test]
    fn entries_are_kept_in_memory_within_the_budget_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(64, Some(dir.path().join("functions")));
        assert!(cache.get(b"k1").is_none());
        assert!(cache.insert(b"k1", vec![1; 30]));
        assert_eq!(cache.get(b"k1").as_deref(), Some(&[1u8; 30][..]));
        assert_eq!(cache.in_memory(), (1, 32));
        // Over the budget: memory starts again, the disk still has both.
        assert!(cache.insert(b"k2", vec![2; 40]));
        assert_eq!(cache.in_memory(), (1, 42));
        assert_eq!(cache.get(b"k1").as_deref(), Some(&[1u8; 30][..]));
        // A second cache on the same directory (another process) finds them.
        let other = FunctionCache::new(1 << 20, Some(dir.path().join("functions")));
        assert_eq!(other.get(b"k2").as_deref(), Some(&[2u8; 40][..]));
        // An entry larger than the whole budget is only on disk.
        let small = FunctionCache::new(8, None);
        assert!(small.insert(b"big", vec![0; 100]));
        assert!(small.get(b"big").is_none());
    }
}
