//! The entry index: a `SkipMap` of runs of consecutive entries, ~12 bytes per entry.
//!
//! Each run covers consecutive indexes in one chunk and holds their record offsets and
//! terms in preallocated atomic slots. The writer fills a slot, then publishes it by bumping
//! the run's length (release); readers load the length (acquire) and only read slots below
//! it. Truncation and purge never rewrite a published slot: they swap in a trimmed copy of
//! the affected run, so a reader holding the old run still sees consistent data.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

/// Entries per run.
const RUN_CAP: usize = 1024;

/// Where an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The entry's term.
    pub term: u64,
    /// Chunk sequence number.
    pub chunk: u64,
    /// Offset of the record in the chunk.
    pub offset: u32,
}

impl Loc {
    /// A total order over write positions; later writes compare greater.
    pub fn pos(&self) -> u64 {
        crate::types::position(self.chunk, self.offset as usize)
    }
}

#[derive(Debug)]
struct Run {
    first: u64,
    chunk: u64,
    len: AtomicUsize,
    offsets: Box<[AtomicU32]>,
    terms: Box<[AtomicU64]>,
}

impl Run {
    fn new(first: u64, chunk: u64) -> Run {
        Run {
            first,
            chunk,
            len: AtomicUsize::new(0),
            offsets: (0..RUN_CAP).map(|_| AtomicU32::new(0)).collect(),
            terms: (0..RUN_CAP).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Index of the last published entry.
    fn last(&self) -> Option<u64> {
        (self.len() as u64).checked_sub(1).map(|n| self.first + n)
    }

    fn loc(&self, slot: usize) -> Loc {
        Loc {
            term: self.terms[slot].load(Ordering::Relaxed),
            chunk: self.chunk,
            offset: self.offsets[slot].load(Ordering::Relaxed),
        }
    }

    /// Fill the next slot and publish it. Only the writer calls this.
    fn push(&self, loc: Loc) {
        let n = self.len.load(Ordering::Relaxed);
        self.offsets[n].store(loc.offset, Ordering::Relaxed);
        self.terms[n].store(loc.term, Ordering::Relaxed);
        self.len.store(n + 1, Ordering::Release);
    }

    /// A copy holding slots `[from, to)`, with fresh capacity after them.
    fn slice(&self, from: usize, to: usize) -> Run {
        let r = Run::new(self.first + from as u64, self.chunk);
        for s in from..to {
            r.push(self.loc(s));
        }
        r
    }
}

/// Index over live entries. Readers on any thread; one writer.
#[derive(Debug, Default)]
pub struct EntryIndex {
    runs: SkipMap<u64, Arc<Run>>,
    count: AtomicUsize,
    /// Bumped after every removal (truncate, purge, reset), so a reader that buffered
    /// locations can tell whether they may be stale; see [`EntryIndex::removals`].
    removals: AtomicU64,
    /// The run appends go to; only the writer touches it.
    tail: Mutex<Option<Arc<Run>>>,
}

impl EntryIndex {
    /// Add the entry after the last one (or start a new run after a gap or chunk change).
    pub fn push(&self, index: u64, loc: Loc) {
        let mut tail = self.tail.lock();
        if let Some(r) = tail.as_ref() {
            let n = r.len.load(Ordering::Relaxed);
            if r.chunk == loc.chunk && index.checked_sub(r.first) == Some(n as u64) && n < RUN_CAP {
                r.push(loc);
                self.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let r = Arc::new(Run::new(index, loc.chunk));
        r.push(loc);
        self.runs.insert(index, Arc::clone(&r));
        self.count.fetch_add(1, Ordering::Relaxed);
        *tail = Some(r);
    }

    /// Look one up.
    pub fn get(&self, index: u64) -> Option<Loc> {
        let e = self.runs.upper_bound(std::ops::Bound::Included(&index))?;
        let r = e.value();
        let slot = (index - r.first) as usize;
        (slot < r.len()).then(|| r.loc(slot))
    }

    /// Visit entries in `[from, through]` (both inclusive, so a range may end at
    /// `u64::MAX`), in order, stopping at the first error.
    pub fn visit<E>(
        &self,
        from: u64,
        through: u64,
        mut f: impl FnMut(u64, Loc) -> Result<(), E>,
    ) -> Result<(), E> {
        if from > through {
            return Ok(());
        }
        let start = self
            .runs
            .upper_bound(std::ops::Bound::Included(&from))
            .map_or(from, |e| *e.key());
        // Walk entry by entry instead of with `SkipMap::range`: crossbeam-skiplist 0.1.3's
        // range iterator keeps one reference on every node it steps past and never drops it,
        // so each run a read visited was never freed once truncate or purge removed it
        // (found by LeakSanitizer in the ops_model fuzz target; see README.md, fuzzing).
        // `Entry::next` takes its own reference and the dropped `Entry` releases it.
        let mut cur = self.runs.lower_bound(std::ops::Bound::Included(&start));
        while let Some(e) = cur {
            if *e.key() > through {
                break;
            }
            let r = e.value();
            // Inclusive bounds: a run may end at u64::MAX.
            if let Some(last) = r.last() {
                let lo = from.max(r.first);
                let hi = through.min(last);
                for i in lo..=hi {
                    f(i, r.loc((i - r.first) as usize))?;
                }
            }
            cur = e.next();
        }
        Ok(())
    }

    /// Remove every entry with index >= `since`.
    pub fn remove_from(&self, since: u64) {
        let mut tail = self.tail.lock();
        while let Some(e) = self.runs.back() {
            if *e.key() < since {
                break;
            }
            self.count.fetch_sub(e.value().len(), Ordering::Relaxed);
            e.remove();
        }
        if let Some(e) = self.runs.back() {
            let r = e.value();
            let n = r.len();
            if r.first + (n as u64).saturating_sub(1) >= since {
                let keep = (since - r.first) as usize;
                self.runs.insert(r.first, Arc::new(r.slice(0, keep)));
                self.count.fetch_sub(n - keep, Ordering::Relaxed);
            }
        }
        *tail = self.runs.back().map(|e| Arc::clone(e.value()));
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// Remove every entry with index <= `upto`.
    pub fn remove_upto(&self, upto: u64) {
        let mut tail = self.tail.lock();
        while let Some(e) = self.runs.front() {
            let r = e.value();
            let n = r.len();
            if r.first + (n as u64).saturating_sub(1) <= upto {
                self.count.fetch_sub(n, Ordering::Relaxed);
                e.remove();
                continue;
            }
            if r.first <= upto {
                let drop = (upto + 1 - r.first) as usize;
                let trimmed = Arc::new(r.slice(drop, n));
                self.runs.insert(upto + 1, trimmed);
                e.remove();
                self.count.fetch_sub(drop, Ordering::Relaxed);
            }
            break;
        }
        *tail = self.runs.back().map(|e| Arc::clone(e.value()));
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// How many removals (`remove_from`, `remove_upto`) have completed. A reader that loads
    /// this before looking locations up and finds it unchanged later knows that no removal
    /// completed in between (appends never change a location that was published).
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Largest index held.
    pub fn last_index(&self) -> Option<u64> {
        let e = self.runs.back()?;
        let r = e.value();
        r.last()
    }

    /// Smallest index held.
    pub fn first(&self) -> Option<u64> {
        self.runs
            .iter()
            .find(|e| e.value().len() > 0)
            .map(|e| e.value().first)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl EntryIndex {
    /// Append `offsets.len()` entries `first..` of term `term` in chunk `chunk`, as if
    /// pushed one by one (footer replay).
    // minimal; the index branch replaces it
    pub fn push_run(&self, first: u64, term: u64, chunk: u64, offsets: &[u32]) {
        for (i, &offset) in offsets.iter().enumerate() {
            let loc = Loc {
                term,
                chunk,
                offset,
            };
            self.push(first + i as u64, loc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64, chunk: u64, offset: u32) -> Loc {
        Loc {
            term,
            chunk,
            offset,
        }
    }

    fn all(ix: &EntryIndex, from: u64, to: u64) -> Vec<(u64, Loc)> {
        let mut v = Vec::new();
        let Some(through) = to.checked_sub(1) else {
            return v;
        };
        ix.visit::<()>(from, through, |i, l| {
            v.push((i, l));
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn runs_split_on_chunk_change_gap_and_capacity() {
        let ix = EntryIndex::default();
        for i in 0..3000u64 {
            ix.push(i, loc(1, i / 2500, i as u32 * 8));
        }
        assert_eq!(ix.len(), 3000);
        assert_eq!(ix.get(2600), Some(loc(1, 1, 2600 * 8)));
        assert_eq!(ix.get(3000), None);
        let v = all(&ix, 1000, 2600);
        assert_eq!(v.len(), 1600);
        assert!(v
            .iter()
            .enumerate()
            .all(|(k, (i, _))| *i == 1000 + k as u64));
    }

    /// A run that `visit` walked past must be freed once it is removed (crossbeam-skiplist
    /// 0.1.3's `SkipMap::range` kept a reference on every node it stepped past).
    #[test]
    fn visited_runs_are_freed_after_removal() {
        let ix = EntryIndex::default();
        for i in 0..4u64 {
            ix.push(i, loc(1, i, 0)); // a new chunk each time: four runs
        }
        let runs: Vec<_> = ix.runs.iter().map(|e| Arc::downgrade(e.value())).collect();
        assert_eq!(runs.len(), 4);
        assert_eq!(all(&ix, 0, 4).len(), 4);
        ix.remove_upto(3);
        // Removed nodes are freed by the epoch collector, which other test threads may hold
        // back for a moment; a leaked reference never frees.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while runs.iter().any(|w| w.strong_count() > 0) {
            assert!(
                std::time::Instant::now() < deadline,
                "visited runs were never freed"
            );
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
    }

    #[test]
    fn removals_count_truncates_and_purges_not_appends() {
        let ix = EntryIndex::default();
        for i in 1..100u64 {
            ix.push(i, loc(1, 0, i as u32));
        }
        assert_eq!(ix.removals(), 0);
        ix.remove_from(50);
        ix.push(50, loc(2, 0, 500));
        assert_eq!(ix.removals(), 1);
        ix.remove_upto(10);
        assert_eq!(ix.removals(), 2);
        assert_eq!(all(&ix, 0, u64::MAX).len(), 40);
    }

    #[test]
    fn truncate_and_purge_trim_runs() {
        let ix = EntryIndex::default();
        for i in 10..2010u64 {
            ix.push(i, loc(1, 0, i as u32));
        }
        ix.remove_from(1500);
        assert_eq!(ix.len(), 1490);
        assert_eq!(ix.get(1500), None);
        ix.push(1500, loc(2, 0, 99_999));
        assert_eq!(ix.get(1500), Some(loc(2, 0, 99_999)));
        ix.remove_upto(1100);
        assert_eq!(ix.len(), 400);
        assert_eq!(ix.get(1100), None);
        assert_eq!(ix.get(1101), Some(loc(1, 0, 1101)));
        assert_eq!(all(&ix, 0, 5000).len(), 400);
        ix.remove_upto(5000);
        assert_eq!(ix.len(), 0);
        ix.push(7, loc(3, 1, 0));
        assert_eq!(all(&ix, 0, 10), vec![(7, loc(3, 1, 0))]);
    }
}
