//! One run of the entry index: consecutive entries of one chunk, with their record offsets
//! in atomic slots and their term stored once (or per slot once a second term appears).
//!
//! A run's shape (`first`, `chunk`, `term`, capacity, whether it has per-slot terms) never
//! changes after it is built; only `len` and the slots at and past `len` do, and only the
//! writer writes them. Growing a run, giving it per-slot terms, trimming it or shrinking it
//! to fit all build a new run ([`Run::copy`]) that the index swaps in; see `entries.rs`
//! for how the swap is published.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::entries::Loc;

/// Capacity of a run started by a single push; it grows (by copy) up to [`MAX_CAP`].
pub(super) const FIRST_CAP: usize = 16;
/// Most entries a run holds. Also bounds the copy a truncation or purge makes.
pub(super) const MAX_CAP: usize = 1024;
/// A run of one term that gets an entry of another term is closed (and a new run starts)
/// if it already holds at least this many entries; a shorter one is copied with per-slot
/// terms instead. Splitting a run costs one run's fixed overhead ([`RUN_FIXED_BYTES`]),
/// per-slot terms cost 8 bytes per entry, so at 32 a split run costs at most
/// 4 + 176 / 32 ≈ 9.5 bytes per entry, less than per-slot terms (≈ 12.2).
pub(super) const SPLIT_MIN: usize = 32;

/// Growth: at least 4x, at least room for `want` more, at most [`MAX_CAP`].
pub(super) fn grown_cap(n: usize, want: usize) -> usize {
    n.saturating_add(want)
        .max(n.saturating_mul(4))
        .clamp(FIRST_CAP, MAX_CAP)
}

/// Capacity of a new run about to take `want` entries.
pub(super) fn new_cap(want: usize) -> usize {
    want.clamp(FIRST_CAP, MAX_CAP)
}

#[derive(Debug)]
pub(super) struct Run {
    /// Index of slot 0.
    pub(super) first: u64,
    /// Chunk sequence number of every entry.
    pub(super) chunk: u64,
    /// The term of every slot when `terms` is `None`.
    term: u64,
    /// Published slots. The writer stores it with Release after filling the slots below
    /// it; readers load it with Acquire and read only slots below it.
    len: AtomicUsize,
    /// Record offset per slot; the slice's length is the capacity.
    offsets: Box<[AtomicU32]>,
    /// Term per slot (same length as `offsets`), only in a run that holds (or is about to
    /// hold) more than one term.
    terms: Option<Box<[AtomicU64]>>,
}

/// `cap` slots holding `vals` first, then zeros.
fn slots<T: Default, A: From<T>>(vals: impl Iterator<Item = T>, cap: usize) -> Box<[A]> {
    let mut v = Vec::with_capacity(cap);
    v.extend(vals.map(A::from));
    debug_assert!(v.len() <= cap);
    v.resize_with(cap, || A::from(T::default()));
    v.into_boxed_slice()
}

impl Run {
    /// A run at `first` holding `offsets`, all of `term`, with room for `cap` entries.
    /// Not yet shared, so there is nothing to publish: the index's `SkipMap` insert
    /// publishes it whole.
    pub(super) fn new(first: u64, chunk: u64, term: u64, offsets: &[u32], cap: usize) -> Run {
        Run {
            first,
            chunk,
            term,
            len: AtomicUsize::new(offsets.len()),
            offsets: slots(offsets.iter().copied(), cap.max(offsets.len())),
            terms: None,
        }
    }

    /// Published slots (Acquire: the slots below it are filled).
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Slots the run can hold.
    pub(super) fn cap(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the run stores a term per slot.
    #[cfg(test)]
    pub(super) fn per_slot(&self) -> bool {
        self.terms.is_some()
    }

    /// Index of the last published entry.
    pub(super) fn last(&self) -> Option<u64> {
        (self.len() as u64).checked_sub(1).map(|n| self.first + n)
    }

    /// Whether an entry of `term` may go into this run's free slots.
    pub(super) fn takes(&self, term: u64) -> bool {
        self.terms.is_some() || term == self.term
    }

    fn term_at(&self, slot: usize) -> u64 {
        match &self.terms {
            Some(t) => t[slot].load(Ordering::Relaxed),
            None => self.term,
        }
    }

    /// The location in `slot`, which must be below a `len()` the caller loaded. Relaxed
    /// loads suffice: that Acquire load synchronized with the Release store that published
    /// the slot, after which the slot is never written again.
    pub(super) fn loc(&self, slot: usize) -> Loc {
        Loc {
            term: self.term_at(slot),
            chunk: self.chunk,
            offset: self.offsets[slot].load(Ordering::Relaxed),
        }
    }

    /// Fill the next `offsets.len()` slots with entries of `term` and publish them with
    /// one Release store of `len`. Only the writer calls this, and only with a term the
    /// run [`takes`](Run::takes) and with room for every offset.
    pub(super) fn extend(&self, term: u64, offsets: &[u32]) {
        debug_assert!(self.takes(term));
        // Only the writer stores `len`, so it reads its own last store.
        let n = self.len.load(Ordering::Relaxed);
        let end = n + offsets.len();
        debug_assert!(end <= self.cap());
        for (slot, &o) in self.offsets[n..end].iter().zip(offsets) {
            slot.store(o, Ordering::Relaxed);
        }
        if let Some(t) = &self.terms {
            for slot in &t[n..end] {
                slot.store(term, Ordering::Relaxed);
            }
        }
        // Publishes the slots stored above: a reader whose Acquire load of `len` returns
        // `end` (or more) sees them.
        self.len.store(end, Ordering::Release);
    }

    /// A new run holding slots `[from, to)` of this one, with room for `cap` entries.
    /// `next`: the term of the entry the writer is about to add to the copy, if any. The
    /// copy stores one term if every slot it holds (and `next`) has the same term, and a
    /// term per slot otherwise. The caller must have loaded `len >= to` (the writer always
    /// has).
    pub(super) fn copy(&self, from: usize, to: usize, cap: usize, next: Option<u64>) -> Run {
        let base = if from < to {
            self.term_at(from)
        } else {
            next.unwrap_or(self.term)
        };
        let mixed = next.is_some_and(|t| t != base)
            || (self.terms.is_some() && (from..to).any(|s| self.term_at(s) != base));
        let cap = cap.max(to - from);
        Run {
            first: self.first + from as u64,
            chunk: self.chunk,
            term: base,
            len: AtomicUsize::new(to - from),
            offsets: slots(
                (from..to).map(|s| self.offsets[s].load(Ordering::Relaxed)),
                cap,
            ),
            terms: mixed.then(|| slots((from..to).map(|s| self.term_at(s)), cap)),
        }
    }

    /// Estimated heap bytes of this run: its `Arc` allocation and its slot arrays (the
    /// index adds its `SkipMap` node).
    pub(super) fn heap_bytes(&self) -> usize {
        // `Arc<Run>`'s allocation: two counters and the run.
        let mut b = alloc_size(2 * std::mem::size_of::<usize>() + std::mem::size_of::<Run>());
        b += alloc_size(self.cap() * std::mem::size_of::<AtomicU32>());
        if self.terms.is_some() {
            b += alloc_size(self.cap() * std::mem::size_of::<AtomicU64>());
        }
        b
    }
}

/// What a heap allocation of `n` bytes costs with a malloc of glibc's shape (an 8-byte
/// header, 16-byte granules, at least 32 bytes). Other allocators differ by a few bytes
/// per allocation, and a run makes three at most.
pub(super) fn alloc_size(n: usize) -> usize {
    (n + 8).div_ceil(16).max(2) * 16
}

/// A run's fixed heap cost apart from its slots (its `Arc` allocation, the slot array's
/// rounding and its `SkipMap` node), as the module docs quote it.
#[cfg(any(test, doc))]
pub(super) const RUN_FIXED_BYTES: usize = 176;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_one_term_until_a_second_appears() {
        let r = Run::new(10, 3, 7, &[64, 128, 192], 4);
        assert_eq!((r.len(), r.cap(), r.per_slot()), (3, 4, false));
        r.extend(7, &[256]);
        assert_eq!(r.last(), Some(13));
        assert!(!r.takes(8));
        // Same term next: still one term; another term next: per slot.
        let same = r.copy(0, 4, 8, Some(7));
        assert!(!same.per_slot());
        let mixed = r.copy(1, 4, 8, Some(8));
        assert!(mixed.per_slot());
        assert_eq!(mixed.first, 11);
        mixed.extend(8, &[320]);
        assert_eq!(mixed.loc(0).offset, 128);
        assert_eq!(mixed.loc(2).term, 7);
        assert_eq!(mixed.loc(3).term, 8);
        // A trim that keeps only one term drops the per-slot terms.
        let tail = mixed.copy(3, 4, 4, None);
        assert!(!tail.per_slot());
        assert_eq!(
            (tail.first, tail.loc(0).term, tail.loc(0).offset),
            (14, 8, 320)
        );
        let head = mixed.copy(0, 2, 2, None);
        assert!(!head.per_slot());
        assert_eq!(head.loc(1).term, 7);
    }

    #[test]
    fn capacities_grow_and_stay_bounded() {
        assert_eq!(new_cap(1), FIRST_CAP);
        assert_eq!(new_cap(1 << 20), MAX_CAP);
        assert_eq!(grown_cap(16, 1), 64);
        assert_eq!(grown_cap(16, 500), 516);
        assert_eq!(grown_cap(1000, 1), MAX_CAP);
        assert_eq!(alloc_size(0), 32);
        assert_eq!(alloc_size(4096), 4112);
    }

    /// The fixed cost the docs quote matches the estimate's parts.
    #[test]
    fn fixed_cost_matches_the_estimate() {
        let r = Run::new(0, 0, 1, &[0; 1024], 1024);
        let slots = 1024 * 4;
        let node = super::super::entries::node_bytes();
        assert_eq!(r.heap_bytes() + node - slots, RUN_FIXED_BYTES);
    }
}
