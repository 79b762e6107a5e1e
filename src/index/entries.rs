//! The entry index: a `SkipMap` of runs of consecutive entries, about 4 bytes per entry
//! when a run's entries share one term.
//!
//! # Shape
//! A run ([`Run`], `run.rs`) covers up to 1,024 consecutive indexes in one chunk: the
//! chunk and a term once, then a `u32` record offset per entry. A run whose entries have
//! more than one term also keeps a `u64` term per slot. A new run starts on a chunk change,
//! a gap in indexes, a full run, or a term change in a run of one term that already holds
//! [`SPLIT_MIN`] (32) entries; a shorter run that meets a second term is copied with
//! per-slot terms instead. Runs start small (16 slots, or exactly what a bulk
//! [`EntryIndex::push_run`] needs) and grow by copy (x4) up to 1,024; a run that stops
//! being the tail is shrunk to fit.
//!
//! # Cost (estimated with [`EntryIndex::heap_bytes`], glibc-shaped allocations)
//! - Runs of one term: 4 bytes per entry plus [`RUN_FIXED_BYTES`] (176) per run of up to
//!   1,024 entries: ≈ 4.2 bytes per entry (was ≈ 12.2 with preallocated 12-byte slots).
//! - A term change every k ≥ 32 entries: ≈ 4 + 176 / k bytes per entry (≤ 9.5).
//! - Worst case, terms changing every entry: 12 bytes per entry plus 176 per run of 1,024,
//!   ≈ 12.2 bytes per entry. Truncations do not add to it: the trimmed tail keeps taking
//!   appends.
//! - Beyond the per-entry figure, a run may be short only where a chunk ends, at a gap, at
//!   the front (after a purge) or at the tail, so add at most 176 bytes plus 12 per entry
//!   short of 32 for each of those, and the tail's spare room (at most 3/4 of its capacity,
//!   below 12 KiB). The `entries_tests` module asserts these bounds at 1M and 10M entries.
//!
//! # Publishing (one writer, lock-free readers)
//! - **Slots.** The writer fills slots past `len`, then publishes them with one Release
//!   store of `len` (`Run::extend`). A reader Acquire-loads `len` and reads only slots
//!   below it, so it sees exactly the values stored before that store. A published slot is
//!   never written again, and neither is any slot of a run after it was replaced.
//! - **Terms.** A run's shape, including its single `term` and whether it has per-slot
//!   terms, is fixed when it is built. A run without per-slot terms only ever takes entries
//!   of its `term` (`Run::takes`), so every slot a reader can see has that term. A run with
//!   per-slot terms stores each slot's term before the same Release that publishes its
//!   offset. When a second term appears, the writer builds a copy with per-slot terms
//!   (filled for the old slots, and holding the new entry) and swaps it in. No run ever
//!   gains per-slot terms in place, so no reader can pair a slot with a term that was not
//!   stored for it, and `AtomicU64` loads cannot tear.
//! - **Swaps.** A run is replaced (grown, given per-slot terms, trimmed by a truncation or
//!   purge, shrunk to fit) by a copy that is built whole, and so complete, before it is
//!   inserted into the `SkipMap` (whose links are CAS-published and Acquire-loaded, so a
//!   reader that reaches the node sees the finished run). Keys are `(first, generation)`:
//!   the copy gets a newer generation than the run it replaces and is inserted **before**
//!   that run is removed, so a lookup, which takes the greatest key at or below
//!   `(index, u64::MAX)`, always finds a run holding the index. (Replacing the value under
//!   the same key would not do: `SkipMap::insert` unlinks the old node before it links the
//!   new one, and a lookup in between would miss every entry of the run.) A reader that
//!   still holds the old run sees its published slots unchanged.
//! - The run appends go to (`tail`) sits behind a mutex that only the writer takes.

use std::ops::Bound;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;
use parking_lot::Mutex;

#[cfg(doc)]
use super::run::RUN_FIXED_BYTES;
use super::run::{grown_cap, new_cap, Run, MAX_CAP, SPLIT_MIN};

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

/// A run's key: its first index, then a generation that a copy replacing it exceeds.
type Key = (u64, u64);

/// Estimated heap bytes of one `SkipMap` node: the value, the key, the reference count,
/// and a tower of two pointers (the mean height of crossbeam-skiplist's towers).
pub(super) fn node_bytes() -> usize {
    let ptr = std::mem::size_of::<usize>();
    super::run::alloc_size(
        std::mem::size_of::<Arc<Run>>() + std::mem::size_of::<Key>() + ptr + 2 * ptr,
    )
}

/// A run's estimate with its node.
fn run_bytes(r: &Run) -> usize {
    r.heap_bytes() + node_bytes()
}

/// The writer's side: the run appends go to, and the next generation.
#[derive(Debug, Default)]
struct Tail {
    run: Option<(Key, Arc<Run>)>,
    gen: u64,
}

/// Index over live entries. Readers on any thread; one writer.
#[derive(Debug, Default)]
pub struct EntryIndex {
    runs: SkipMap<Key, Arc<Run>>,
    count: AtomicUsize,
    /// Estimated heap bytes of the runs in `runs` (changed only under `tail`).
    bytes: AtomicUsize,
    /// Bumped after every removal (truncate, purge, reset), so a reader that buffered
    /// locations can tell whether they may be stale; see [`EntryIndex::removals`].
    removals: AtomicU64,
    /// The run appends go to; only the writer touches it.
    tail: Mutex<Tail>,
}

impl EntryIndex {
    /// Add the entry after the last one (or start a new run after a gap or chunk change).
    pub fn push(&self, index: u64, loc: Loc) {
        let mut t = self.tail.lock();
        self.append(&mut t, index, loc.term, loc.chunk, &[loc.offset]);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Add `offsets.len()` entries `first, first + 1, ...` of `term` in `chunk`, exactly as
    /// that many [`push`](EntryIndex::push)es would, but with one lock and one allocation
    /// per run of up to 1,024 entries. Entries whose index would pass `u64::MAX` are
    /// dropped (the caller checks a run against the log before pushing it).
    // Footer replay at open calls it (format v2); until then only the tests do.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn push_run(&self, first: u64, term: u64, chunk: u64, offsets: &[u32]) {
        let room = usize::try_from(u64::MAX - first).map_or(usize::MAX, |r| r.saturating_add(1));
        let offsets = &offsets[..offsets.len().min(room)];
        if offsets.is_empty() {
            return;
        }
        let mut t = self.tail.lock();
        let mut done = 0;
        while done < offsets.len() {
            done += self.append(&mut t, first + done as u64, term, chunk, &offsets[done..]);
        }
        self.count.fetch_add(offsets.len(), Ordering::Relaxed);
    }

    /// Append a prefix of `offsets` (entries `index..` of `term` in `chunk`) and return
    /// how many it took (at least one): into the tail's free slots, into a grown copy of
    /// the tail, or into a new run.
    fn append(&self, t: &mut Tail, index: u64, term: u64, chunk: u64, offsets: &[u32]) -> usize {
        if let Some((_, r)) = &t.run {
            let n = r.len();
            let follows = r.chunk == chunk && index.checked_sub(r.first) == Some(n as u64);
            if follows && n < MAX_CAP {
                let same = r.takes(term);
                if same && n < r.cap() {
                    let k = offsets.len().min(r.cap() - n);
                    r.extend(term, &offsets[..k]);
                    return k;
                }
                if same || n < SPLIT_MIN {
                    // Grow, or give the run per-slot terms: a copy holding the new entries
                    // too, published whole by the swap.
                    let cap = if n < r.cap() {
                        r.cap()
                    } else {
                        grown_cap(n, offsets.len())
                    };
                    let copy = r.copy(0, n, cap, Some(term));
                    let k = offsets.len().min(copy.cap() - n);
                    copy.extend(term, &offsets[..k]);
                    self.swap_tail(t, copy);
                    return k;
                }
            }
            self.close_tail(t);
        }
        let cap = new_cap(offsets.len());
        let k = offsets.len().min(cap);
        let key = self.insert(t, Run::new(index, chunk, term, &offsets[..k], cap));
        t.run = Some(key);
        k
    }

    /// Insert `run` under a new generation; publishes it whole.
    fn insert(&self, t: &mut Tail, run: Run) -> (Key, Arc<Run>) {
        t.gen += 1;
        let key = (run.first, t.gen);
        self.bytes.fetch_add(run_bytes(&run), Ordering::Relaxed);
        let run = Arc::new(run);
        self.runs.insert(key, Arc::clone(&run));
        (key, run)
    }

    /// Remove the run under `key` (after its replacement, if any, was inserted).
    fn remove(&self, key: &Key) {
        if let Some(e) = self.runs.remove(key) {
            self.bytes
                .fetch_sub(run_bytes(e.value()), Ordering::Relaxed);
        }
    }

    /// Replace the tail by `copy` (insert first, then remove: see the module docs).
    fn swap_tail(&self, t: &mut Tail, copy: Run) {
        let old = t.run.take().map(|(k, _)| k);
        let new = self.insert(t, copy);
        if let Some(k) = old {
            self.remove(&k);
        }
        t.run = Some(new);
    }

    /// The tail stops taking appends: shrink it to fit, so closed runs carry no spare room.
    fn close_tail(&self, t: &mut Tail) {
        let Some((key, r)) = t.run.take() else {
            return;
        };
        let n = r.len();
        if n > 0 && n < r.cap() {
            self.insert(t, r.copy(0, n, n, None));
            self.remove(&key);
        }
    }

    /// Look one up.
    pub fn get(&self, index: u64) -> Option<Loc> {
        let e = self.runs.upper_bound(Bound::Included(&(index, u64::MAX)))?;
        let r = e.value();
        let slot = (index - r.first) as usize;
        (slot < r.len()).then(|| r.loc(slot))
    }

    /// Visit entries in `[from, through]` (both inclusive, so a range may end at
    /// `u64::MAX`), in order, each index once, stopping at the first error. A truncation
    /// that removes entries this walk already visited ends the walk early (the caller sees
    /// a gap), so one walk never mixes entries from before and after a truncation.
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
            .upper_bound(Bound::Included(&(from, u64::MAX)))
            .map_or((from, 0), |e| *e.key());
        // Walk entry by entry instead of with `SkipMap::range`: crossbeam-skiplist 0.1.3's
        // range iterator keeps one reference on every node it steps past and never drops it,
        // so each run a read visited was never freed once truncate or purge removed it
        // (found by LeakSanitizer in the ops_model fuzz target; see README.md, fuzzing).
        // `Entry::next` takes its own reference and the dropped `Entry` releases it.
        let mut cur = self.runs.lower_bound(Bound::Included(&start));
        // The next index to visit, and the last entry visited.
        let mut next = from;
        let mut seen: Option<(u64, Loc)> = None;
        while let Some(e) = cur {
            let r = e.value();
            if r.first > through {
                break;
            }
            // Acquire-load `len` first, then check that the last entry visited is still
            // held where it was. A truncation that removed any visited entry removed that
            // one too (truncations remove a suffix). If this run holds entries appended
            // after such a truncation, the truncation completed before those appends were
            // published, so before the `len` we loaded; the lookup then sees its removal
            // and finds nothing, or a re-appended entry at a later position (records are
            // never rewritten). Within one run there is nothing to check: a truncation
            // never lets a run it cut take appends (it swaps in a trimmed copy).
            let last = r.last();
            if let Some((j, loc)) = seen {
                if self.get(j) != Some(loc) {
                    break;
                }
            }
            if span(r, last, through, &mut next, &mut seen, &mut f)? {
                return Ok(());
            }
            // Step on, then look at this run again: appends to it that came before the
            // next run was inserted (a run stops taking appends before the next one is
            // inserted) are visible once the fence orders this reload after the load that
            // found the next run, so the walk never skips them.
            let after = e.next();
            fence(Ordering::Acquire);
            if span(r, r.last(), through, &mut next, &mut seen, &mut f)? {
                return Ok(());
            }
            cur = after;
        }
        Ok(())
    }

    /// Remove every entry with index >= `since`.
    pub fn remove_from(&self, since: u64) {
        let mut t = self.tail.lock();
        t.run = None;
        while let Some(e) = self.runs.back() {
            if e.key().0 < since {
                break;
            }
            self.count.fetch_sub(e.value().len(), Ordering::Relaxed);
            self.remove(e.key());
        }
        if let Some(e) = self.runs.back() {
            let r = Arc::clone(e.value());
            let n = r.len();
            if r.last().is_some_and(|l| l >= since) {
                // The trimmed copy keeps the capacity: it becomes the tail.
                let keep = (since - r.first) as usize;
                self.insert(&mut t, r.copy(0, keep, r.cap(), None));
                self.remove(e.key());
                self.count.fetch_sub(n - keep, Ordering::Relaxed);
            }
        }
        t.run = self.back();
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// Remove every entry with index <= `upto`.
    pub fn remove_upto(&self, upto: u64) {
        let mut t = self.tail.lock();
        while let Some(e) = self.runs.front() {
            let r = Arc::clone(e.value());
            let n = r.len();
            if r.last().is_some_and(|l| l <= upto) || n == 0 {
                self.count.fetch_sub(n, Ordering::Relaxed);
                self.remove(e.key());
                continue;
            }
            if r.first <= upto {
                // The trimmed copy fits exactly, unless it is the tail (then it keeps its
                // spare room).
                let drop = (upto + 1 - r.first) as usize;
                let is_tail = t.run.as_ref().is_some_and(|(k, _)| k == e.key());
                let cap = if is_tail { r.cap() - drop } else { n - drop };
                self.insert(&mut t, r.copy(drop, n, cap, None));
                self.remove(e.key());
                self.count.fetch_sub(drop, Ordering::Relaxed);
            }
            break;
        }
        t.run = self.back();
        self.removals.fetch_add(1, Ordering::Release);
    }

    /// The last run and its key.
    fn back(&self) -> Option<(Key, Arc<Run>)> {
        self.runs.back().map(|e| (*e.key(), Arc::clone(e.value())))
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
        // Entry by entry, for the reason `visit` gives. Runs are never empty, so this
        // stops at the front one.
        let mut cur = self.runs.front();
        while let Some(e) = cur {
            if e.value().len() > 0 {
                return Some(e.value().first);
            }
            cur = e.next();
        }
        None
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Estimated heap bytes of the index: every run in the map with its slot arrays and
    /// its `SkipMap` node, allocations rounded as glibc's malloc rounds them. Runs that were
    /// removed but that a reader (or the epoch collector) still holds are not counted,
    /// nor is the fixed part of the `EntryIndex` itself.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Visit `r`'s entries in `[next, min(through, last)]` (none if `r` ends before `next`: a
/// copy that replaced a run already visited overlaps it), then move `next` past them.
/// `Ok(true)` once `through` was visited.
fn span<E>(
    r: &Run,
    last: Option<u64>,
    through: u64,
    next: &mut u64,
    seen: &mut Option<(u64, Loc)>,
    f: &mut impl FnMut(u64, Loc) -> Result<(), E>,
) -> Result<bool, E> {
    let Some(last) = last else {
        return Ok(false);
    };
    let (lo, hi) = ((*next).max(r.first), through.min(last));
    if lo > hi {
        return Ok(false);
    }
    for i in lo..=hi {
        f(i, r.loc((i - r.first) as usize))?;
    }
    *seen = Some((hi, r.loc((hi - r.first) as usize)));
    if hi == through {
        return Ok(true);
    }
    *next = hi + 1;
    Ok(false)
}

#[cfg(test)]
#[path = "entries_tests.rs"]
mod tests;
