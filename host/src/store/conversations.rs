//! Big conversations kept parsed in memory between reads.
//!
//! Every event on a ticket reads the ticket back, conversation included.
//! For a ticket of a few messages that is nothing; for one of thousands (a
//! megabyte of JSON) it is milliseconds of parsing per event, on the
//! thread that answers the event, whoever's turn it is. A conversation
//! only ever grows, and its batches are stored by the index of their
//! first message, so what was read once stays true: the next read takes
//! the cached messages and parses only the batches added since.
//!
//! The cache is checked against the database on every read (the ticket's
//! stored message count, and batches that follow on exactly from what is
//! cached), so another instance's writes to the same database are always
//! seen; anything that does not fit (a conversation written again whole)
//! is read whole again. Only conversations of at least
//! [`CACHED_FROM_BYTES`] are kept, the least recently read going first
//! once the cache holds [`BUDGET_BYTES`].

use super::Result;
use crate::model::Message;
use std::collections::HashMap;
use std::sync::Mutex;

/// Conversations smaller than this are read from the database each time
/// (parsing them costs less than keeping them).
pub const CACHED_FROM_BYTES: usize = 64 * 1024;

/// The most memory the cached conversations take, by
/// [`ConversationCache::size_of`].
pub const BUDGET_BYTES: usize = 64 << 20;

/// A stored batch: the index of its first message, and its messages' JSON.
pub type Batch = (usize, String);

struct Entry {
    messages: Vec<Message>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    bytes: usize,
    clock: u64,
}

/// The cache; one per store.
pub struct ConversationCache {
    inner: Mutex<Inner>,
    budget: usize,
}

impl Default for ConversationCache {
    fn default() -> Self {
        ConversationCache::with_budget(BUDGET_BYTES)
    }
}

impl std::fmt::Debug for ConversationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.held();
        f.debug_struct("ConversationCache")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

impl ConversationCache {
    /// A cache that holds at most `budget` bytes.
    pub fn with_budget(budget: usize) -> ConversationCache {
        ConversationCache {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The conversations held and the bytes they take.
    pub fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }

    /// What a conversation takes in memory: its messages and their text.
    pub fn size_of(messages: &[Message]) -> usize {
        messages.iter().fold(0, |n, m| {
            n + std::mem::size_of::<Message>()
                + m.id.len()
                + m.body.len()
                + m.author_id.as_ref().map_or(0, String::len)
        })
    }

    /// The conversation of ticket `id`, which the store says has `count`
    /// messages. `batches(from)` reads the stored batches whose first
    /// message is at index `from` or later, in order.
    pub fn read(
        &self,
        tenant: &str,
        id: &str,
        count: usize,
        mut batches: impl FnMut(usize) -> Result<Vec<Batch>>,
    ) -> Result<Vec<Message>> {
        let key = (tenant.to_string(), id.to_string());
        let cached = {
            let mut inner = self.lock();
            let e = inner.entries.remove(&key);
            if let Some(e) = &e {
                inner.bytes -= e.bytes;
            }
            e
        };
        if let Some(Entry {
            mut messages,
            mut bytes,
            ..
        }) = cached
            && messages.len() <= count
        {
            let from = messages.len();
            let added = if from == count {
                Some(Vec::new())
            } else {
                follows_on(from, count, batches(from)?)?
            };
            if let Some(added) = added {
                bytes += Self::size_of(&added);
                messages.extend(added);
                let out = messages.clone();
                self.keep(key, messages, bytes);
                return Ok(out);
            }
        }
        let messages = whole(batches(0)?)?;
        let bytes = Self::size_of(&messages);
        if bytes >= CACHED_FROM_BYTES {
            self.keep(key, messages.clone(), bytes);
        }
        Ok(messages)
    }

    /// Keep `messages` (taking `bytes`, by [`Self::size_of`]) as the
    /// conversation of `key`, evicting the least recently read while over
    /// the budget.
    fn keep(&self, key: (String, String), messages: Vec<Message>, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner.entries.insert(
            key,
            Entry {
                messages,
                bytes,
                used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
    }
}

/// The messages of a conversation's batches, all of them.
pub fn whole(rows: Vec<Batch>) -> Result<Vec<Message>> {
    let mut messages = Vec::new();
    for (_, json) in rows {
        messages.extend(serde_json::from_str::<Vec<Message>>(&json)?);
    }
    Ok(messages)
}

/// The messages of `rows` if they are exactly the batches from index
/// `from` up to `count`; `None` if not (the conversation was written
/// again whole, or the count read is not the batches'), so it is read
/// whole.
fn follows_on(from: usize, count: usize, rows: Vec<Batch>) -> Result<Option<Vec<Message>>> {
    let mut added = Vec::new();
    let mut next = from;
    for (first, json) in rows {
        if first != next {
            return Ok(None);
        }
        let batch: Vec<Message> = serde_json::from_str(&json)?;
        next += batch.len();
        added.extend(batch);
    }
    Ok((next == count).then_some(added))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuthorKind;
    use std::cell::RefCell;

    fn message(i: usize, body: &str) -> Message {
        Message {
            id: format!("m{i}"),
            author: AuthorKind::Customer,
            author_id: None,
            body: body.to_string(),
            sent_at: "2026-12-04T12:00:00Z".parse().unwrap(),
            sentiment: None,
        }
    }

    /// A stored conversation: its batches, and the `from` of each read.
    struct Stored {
        batches: Vec<Batch>,
        reads: RefCell<Vec<usize>>,
    }

    impl Stored {
        fn new() -> Stored {
            Stored {
                batches: Vec::new(),
                reads: RefCell::new(Vec::new()),
            }
        }
        fn count(&self) -> usize {
            self.batches
                .iter()
                .map(|(_, j)| serde_json::from_str::<Vec<Message>>(j).unwrap().len())
                .sum()
        }
        fn add(&mut self, messages: &[Message]) {
            let first = self.count();
            self.batches
                .push((first, serde_json::to_string(messages).unwrap()));
        }
        fn rewrite(&mut self, all: &[Message]) {
            self.batches = vec![(0, serde_json::to_string(all).unwrap())];
        }
        fn read(&self, cache: &ConversationCache, id: &str) -> Vec<Message> {
            cache
                .read("acme", id, self.count(), |from| {
                    self.reads.borrow_mut().push(from);
                    Ok(self
                        .batches
                        .iter()
                        .filter(|(f, _)| *f >= from)
                        .cloned()
                        .collect())
                })
                .unwrap()
        }
        fn reads(&self) -> Vec<usize> {
            std::mem::take(&mut *self.reads.borrow_mut())
        }
    }

    fn big(n: std::ops::Range<usize>) -> Vec<Message> {
        n.map(|i| message(i, &"x".repeat(1000))).collect()
    }

    #[test]
    fn a_big_conversation_is_parsed_once_and_then_only_what_was_added() {
        let cache = ConversationCache::default();
        let mut stored = Stored::new();
        let first = big(0..100);
        stored.add(&first);
        assert_eq!(stored.read(&cache, "T1"), first);
        assert_eq!(stored.reads(), [0], "the first read is whole");
        assert_eq!(stored.read(&cache, "T1"), first);
        assert!(stored.reads().is_empty(), "nothing added: nothing read");
        let more = big(100..102);
        stored.add(&more);
        let all: Vec<Message> = first.iter().chain(&more).cloned().collect();
        assert_eq!(stored.read(&cache, "T1"), all);
        assert_eq!(stored.reads(), [100], "only the batch added since");
        assert_eq!(cache.held().0, 1);
    }

    #[test]
    fn a_conversation_written_again_whole_or_out_of_step_is_read_whole() {
        let cache = ConversationCache::default();
        let mut stored = Stored::new();
        stored.add(&big(0..100));
        stored.read(&cache, "T1");
        stored.reads();
        // Another instance wrote it again whole, with one message more.
        let all = big(0..101);
        stored.rewrite(&all);
        assert_eq!(stored.read(&cache, "T1"), all);
        assert_eq!(stored.reads(), [100, 0], "looked for the batch, then whole");
        // A count behind what is cached (read before another's commit).
        let short: Vec<Message> = cache
            .read("acme", "T1", 50, |_| {
                Ok(vec![(0, serde_json::to_string(&all[..50]).unwrap())])
            })
            .unwrap();
        assert_eq!(short, all[..50]);
    }

    #[test]
    fn small_conversations_are_not_kept_and_the_budget_evicts_the_least_recent() {
        let mut small = Stored::new();
        small.add(&[message(0, "hello")]);
        let one = ConversationCache::size_of(&big(0..100));
        let cache = ConversationCache::with_budget(3 * one);
        small.read(&cache, "small");
        assert_eq!(cache.held().0, 0, "a small conversation is read each time");
        let mut stored = Stored::new();
        stored.add(&big(0..100));
        for id in ["T1", "T2", "T3"] {
            stored.read(&cache, id);
        }
        assert_eq!(cache.held().0, 3);
        stored.read(&cache, "T1");
        stored.read(&cache, "T4");
        let (entries, bytes) = cache.held();
        assert_eq!(entries, 3);
        assert_eq!(bytes, 3 * one);
        stored.reads();
        // T2 was the least recently read: gone; T1 stayed.
        stored.read(&cache, "T1");
        assert!(stored.reads().is_empty(), "T1 is still cached");
        stored.read(&cache, "T2");
        assert_eq!(stored.reads(), [0], "T2 was evicted");
    }
}
