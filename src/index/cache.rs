//! Bounded payload cache. Holds whole append batches (one `SkipMap` node per batch), evicts
//! oldest first, and only batches that are entirely durable.
//!
//! Lookups are lock-free. Changes (the writer's inserts, truncates, purges and evictions,
//! and a reader's insert of a decompressed Batch record's members) take one mutex, so the
//! counters stay exact and cached batches never overlap.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

use crate::observe::Metrics;

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

/// Consecutive entries written together. Each remembers the write position it caches, so a
/// reader racing a truncate never pairs an id with another entry's payload.
#[derive(Debug)]
struct Batch {
    first: u64,
    pos: Box<[u64]>,
    payloads: Box<[Bytes]>,
    bytes: usize,
}

impl Batch {
    fn new(first: u64, pos: Box<[u64]>, payloads: Box<[Bytes]>) -> Batch {
        let bytes = payloads.iter().map(Bytes::len).sum();
        Batch {
            first,
            pos,
            payloads,
            bytes,
        }
    }

    /// Index of the last entry (batches are never empty; may be u64::MAX).
    fn last(&self) -> u64 {
        self.first + (self.pos.len() as u64).saturating_sub(1)
    }

    fn slice(&self, from: usize, to: usize) -> Batch {
        Batch::new(
            self.first + from as u64,
            self.pos[from..to].into(),
            self.payloads[from..to].into(),
        )
    }
}

/// Where the last cache lookup landed; see [`PayloadCache::get_near`].
#[derive(Debug, Default)]
pub struct CacheCursor(Option<Arc<Batch>>);

/// The payload cache.
#[derive(Debug)]
pub struct PayloadCache {
    map: SkipMap<u64, Arc<Batch>>,
    items: AtomicUsize,
    bytes: AtomicUsize,
    max_items: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    metrics: Arc<Metrics>,
    /// Held by every change of `map` (lookups take none).
    change: Mutex<()>,
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
            metrics: Arc::default(),
            change: Mutex::new(()),
        }
    }

    /// The same cache, reporting hits and misses to the log's `metrics` too.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Cache payloads of consecutive entries from `first`, written at positions `pos`.
    /// Then evict what is over the bounds and durable (last index <= `evictable`).
    /// Only the writer calls this.
    pub fn insert(&self, first: u64, pos: Vec<u64>, payloads: Vec<Bytes>, evictable: Option<u64>) {
        if pos.is_empty() || pos.len() != payloads.len() {
            return;
        }
        let _change = self.change.lock();
        self.insert_locked(Batch::new(first, pos.into(), payloads.into()), evictable);
    }

    fn insert_locked(&self, b: Batch, evictable: Option<u64>) {
        if b.pos.len() > self.max_items || b.bytes > self.max_bytes {
            return;
        }
        self.account(b.pos.len(), b.bytes, true);
        self.map.insert(b.first, Arc::new(b));
        self.evict_locked(evictable, false);
    }

    /// Cache what a reader decompressed: the members `first..` of one Batch record at write
    /// position `pos`. Any thread may call it. Only members that `held` (the entry index, read
    /// under the cache's lock) still places at `pos` are cached, and only where no cached
    /// batch holds them already: the writer changes the index before the cache, so a member
    /// a racing truncate or purge removed is either skipped here or removed by that change
    /// after this insert.
    #[cfg(any(test, feature = "compression"))]
    pub fn insert_read(
        &self,
        first: u64,
        pos: u64,
        payloads: &[Bytes],
        held: impl Fn(u64) -> bool,
        evictable: Option<u64>,
    ) {
        let Some(n) = (payloads.len() as u64).checked_sub(1) else {
            return;
        };
        if first.checked_add(n).is_none() {
            return;
        }
        let _change = self.change.lock();
        // Truncates and purges remove a suffix or a prefix: the members still held are one
        // run, found from both ends.
        let (mut lo, mut hi) = (0, n);
        while lo <= hi && !held(first + lo) {
            lo += 1;
        }
        if lo > hi {
            return;
        }
        while !held(first + hi) {
            hi -= 1;
        }
        let (mut a, mut b) = (first + lo, first + hi);
        if let Some(prev) = self.map.upper_bound(Bound::Included(&a)) {
            if prev.value().last() >= a {
                match prev.value().last().checked_add(1) {
                    Some(next) => a = next,
                    None => return,
                }
            }
        }
        if let Some(next) = self.map.lower_bound(Bound::Included(&a)) {
            b = b.min(next.key().saturating_sub(1));
        }
        if a > b {
            return;
        }
        let (from, to) = ((a - first) as usize, (b - first) as usize + 1);
        let slots = vec![pos; to - from].into_boxed_slice();
        let batch = Batch::new(a, slots, payloads[from..to].into());
        self.insert_locked(batch, evictable);
    }

    fn account(&self, items: usize, bytes: usize, add: bool) {
        if add {
            self.items.fetch_add(items, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.items.fetch_sub(items, Ordering::Relaxed);
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// The payload for `index` if cached for write position `pos`.
    #[cfg(test)]
    pub fn get(&self, index: u64, pos: u64) -> Option<Bytes> {
        self.get_near(index, pos, &mut CacheCursor::default())
    }

    /// Like [`PayloadCache::get`], but remembers the batch it found in `cur`, so that a scan
    /// over consecutive indexes searches the map once per batch instead of once per entry.
    pub fn get_near(&self, index: u64, pos: u64, cur: &mut CacheCursor) -> Option<Bytes> {
        let in_cur = cur
            .0
            .as_ref()
            .is_some_and(|b| b.first <= index && index <= b.last());
        if !in_cur {
            cur.0 = self
                .map
                .upper_bound(Bound::Included(&index))
                .map(|e| Arc::clone(e.value()));
        }
        let hit = cur.0.as_ref().and_then(|b| {
            let slot = index.checked_sub(b.first)? as usize;
            (b.pos.get(slot) == Some(&pos)).then(|| b.payloads[slot].clone())
        });
        let c = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.metrics.cache_lookup(hit.is_some());
        hit
    }

    fn over(&self) -> bool {
        self.items.load(Ordering::Relaxed) > self.max_items
            || self.bytes.load(Ordering::Relaxed) > self.max_bytes
    }

    /// Evict oldest-first while over bounds (or everything, with `all`), only batches whose
    /// last index is <= `evictable`.
    pub fn evict(&self, evictable: Option<u64>, all: bool) {
        let _change = self.change.lock();
        self.evict_locked(evictable, all);
    }

    fn evict_locked(&self, evictable: Option<u64>, all: bool) {
        let Some(limit) = evictable else { return };
        while all || self.over() {
            let Some(e) = self.map.front() else { break };
            let b = e.value();
            if b.last() > limit {
                break;
            }
            if e.remove() {
                self.account(b.pos.len(), b.bytes, false);
                self.evictions
                    .fetch_add(b.pos.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Drop entries with index >= `since` (truncate).
    pub fn remove_from(&self, since: u64) {
        let _change = self.change.lock();
        while let Some(e) = self.map.back() {
            let b = e.value();
            if b.last() < since {
                break;
            }
            if b.first < since {
                let keep = b.slice(0, (since - b.first) as usize);
                self.account(b.pos.len() - keep.pos.len(), b.bytes - keep.bytes, false);
                self.map.insert(b.first, Arc::new(keep));
                break;
            }
            if e.remove() {
                self.account(b.pos.len(), b.bytes, false);
            }
        }
    }

    /// Drop entries with index <= `upto` (purge).
    pub fn remove_upto(&self, upto: u64) {
        let _change = self.change.lock();
        while let Some(e) = self.map.front() {
            let b = e.value();
            if b.first > upto {
                break;
            }
            if b.last() > upto {
                let rest = b.slice((upto + 1 - b.first) as usize, b.pos.len());
                self.account(rest.pos.len(), rest.bytes, true);
                self.map.insert(rest.first, Arc::new(rest));
            }
            if e.remove() {
                self.account(b.pos.len(), b.bytes, false);
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

    fn ins(c: &PayloadCache, first: u64, n: u64, evictable: Option<u64>) {
        let pos = (first..first + n).collect();
        let p = (first..first + n)
            .map(|i| Bytes::from(vec![i as u8; 4]))
            .collect();
        c.insert(first, pos, p, evictable);
    }

    #[test]
    fn evicts_oldest_but_never_past_the_durable_boundary() {
        let c = PayloadCache::new(4, 1 << 20);
        ins(&c, 0, 3, None);
        ins(&c, 3, 3, None);
        assert_eq!(c.stat().items, 6, "nothing durable, nothing evicted");
        c.evict(Some(1), false);
        assert_eq!(c.stat().items, 6, "batch 0..3 is not wholly durable");
        c.evict(Some(2), false);
        assert_eq!(c.stat().items, 3);
        assert!(c.get(0, 0).is_none());
        assert_eq!(c.get(4, 4).as_deref(), Some(&[4u8; 4][..]));
        c.evict(Some(10), true);
        assert_eq!(
            (c.stat().items, c.stat().bytes, c.stat().evictions),
            (0, 0, 6)
        );
    }

    #[test]
    fn truncate_and_purge_trim_batches_and_positions_are_checked() {
        let c = PayloadCache::new(100, 1 << 20);
        ins(&c, 10, 10, None);
        c.remove_from(15);
        assert_eq!(c.stat().items, 5);
        assert!(c.get(15, 15).is_none());
        assert!(c.get(14, 999).is_none(), "stale position must miss");
        assert!(c.get(14, 14).is_some());
        c.remove_upto(11);
        assert_eq!((c.stat().items, c.stat().bytes), (3, 12));
        assert!(c.get(11, 11).is_none());
        assert!(c.get(12, 12).is_some());
        let s = c.stat();
        assert_eq!((s.hits, s.misses), (2, 3));
    }

    #[test]
    fn reader_inserts_skip_removed_and_cached_members() {
        let c = PayloadCache::new(100, 1 << 20);
        ins(&c, 12, 2, None);
        let p: Vec<Bytes> = (10..20).map(|i| Bytes::from(vec![i as u8; 2])).collect();
        // 10..20 decompressed at position 7; 19 was truncated meanwhile; 12..=13 cached.
        c.insert_read(10, 7, &p, |i| i < 19, None);
        assert_eq!(c.stat().items, 4, "10, 11 added; 12, 13 kept");
        assert_eq!(c.get(10, 7).as_deref(), Some(&[10u8; 2][..]));
        assert_eq!(c.get(12, 12).as_deref(), Some(&[12u8; 4][..]));
        assert!(c.get(12, 7).is_none() && c.get(14, 7).is_none());
        c.insert_read(10, 7, &p, |i| i < 19, None);
        assert_eq!(c.stat().items, 4, "nothing twice");
        c.insert_read(14, 7, &p[4..], |i| i < 19, None);
        assert_eq!(c.stat().items, 9, "14..=18");
        assert!(c.get(19, 7).is_none());
        c.insert_read(30, 9, &p, |_| false, None);
        assert_eq!(c.stat().items, 9, "nothing held");
        c.remove_from(0);
        assert_eq!((c.stat().items, c.stat().bytes), (0, 0));
    }

    #[test]
    fn byte_bound() {
        let c = PayloadCache::new(100, 10);
        ins(&c, 1, 2, Some(10));
        ins(&c, 3, 2, Some(10));
        assert_eq!((c.stat().items, c.stat().bytes), (2, 8));
    }
}
