//! Bounded payload cache. Evicts oldest first, and only entries already durable.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;

/// Cache counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStat {
    /// Entries held.
    pub items: usize,
    /// Payload bytes held.
    pub bytes: usize,
    /// Lookups served.
    pub hits: u64,
    /// Lookups that went to the map.
    pub misses: u64,
    /// Entries evicted.
    pub evictions: u64,
}

/// Payload cache keyed by log index; each value remembers the write position it caches so a
/// reader racing a truncate never pairs an id with another entry's payload.
#[derive(Debug)]
pub struct PayloadCache {
    map: SkipMap<u64, (u64, Bytes)>,
    items: AtomicUsize,
    bytes: AtomicUsize,
    max_items: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl PayloadCache {
    /// A cache bounded by `max_items` entries and `max_bytes` payload bytes.
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        PayloadCache {
            map: SkipMap::new(),
            items: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_items,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Cache a payload written at `pos`. Then evict what is over the bounds and durable
    /// (index <= `evictable`). Only the writer calls this.
    pub fn insert(&self, index: u64, pos: u64, payload: Bytes, evictable: Option<u64>) {
        if self.max_items == 0 || payload.len() > self.max_bytes {
            return;
        }
        let n = payload.len();
        self.map.insert(index, (pos, payload));
        self.items.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.evict(evictable, false);
    }

    /// The payload for `index` if cached for write position `pos`.
    pub fn get(&self, index: u64, pos: u64) -> Option<Bytes> {
        match self.map.get(&index) {
            Some(e) if e.value().0 == pos => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.value().1.clone())
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn over(&self) -> bool {
        self.items.load(Ordering::Relaxed) > self.max_items
            || self.bytes.load(Ordering::Relaxed) > self.max_bytes
    }

    /// Evict oldest-first while over bounds (or everything, with `all`), never past
    /// `evictable`.
    pub fn evict(&self, evictable: Option<u64>, all: bool) {
        let Some(limit) = evictable else { return };
        while all || self.over() {
            let Some(e) = self.map.front() else { break };
            if *e.key() > limit {
                break;
            }
            if e.remove() {
                self.forget(e.value().1.len());
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn forget(&self, n: usize) {
        self.items.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }

    /// Drop entries with index >= `since` (truncate).
    pub fn remove_from(&self, since: u64) {
        while let Some(e) = self.map.back() {
            if *e.key() < since {
                break;
            }
            if e.remove() {
                self.forget(e.value().1.len());
            }
        }
    }

    /// Drop entries with index <= `upto` (purge).
    pub fn remove_upto(&self, upto: u64) {
        while let Some(e) = self.map.front() {
            if *e.key() > upto {
                break;
            }
            if e.remove() {
                self.forget(e.value().1.len());
            }
        }
    }

    /// Counters.
    pub fn stat(&self) -> CacheStat {
        CacheStat {
            items: self.items.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_but_never_past_the_durable_boundary() {
        let c = PayloadCache::new(2, 1 << 20);
        for i in 0..5 {
            c.insert(i, i, Bytes::from(vec![i as u8; 4]), None);
        }
        assert_eq!(c.stat().items, 5, "nothing durable, nothing evicted");
        c.evict(Some(1), false);
        assert_eq!(c.stat().items, 3);
        assert!(c.get(0, 0).is_none());
        assert!(c.get(2, 2).is_some());
        c.evict(Some(10), true);
        assert_eq!(c.stat().items, 0);
        assert_eq!(c.stat().bytes, 0);
        assert_eq!(c.stat().evictions, 5);
    }

    #[test]
    fn byte_bound_and_position_check() {
        let c = PayloadCache::new(100, 10);
        c.insert(1, 100, Bytes::from_static(b"abcdef"), Some(10));
        c.insert(2, 200, Bytes::from_static(b"ghijkl"), Some(10));
        let s = c.stat();
        assert_eq!((s.items, s.bytes), (1, 6));
        assert!(c.get(2, 999).is_none(), "stale position must miss");
        assert_eq!(c.get(2, 200).as_deref(), Some(&b"ghijkl"[..]));
        let s = c.stat();
        assert_eq!((s.hits, s.misses), (1, 1));
        c.remove_from(2);
        assert_eq!(c.stat().items, 0);
    }
}
