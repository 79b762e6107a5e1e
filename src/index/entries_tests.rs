//! Tests of the entry index: behaviour against a model, bulk loads, concurrent readers,
//! and the memory bounds the module docs state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

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

/// The estimate recomputed from the runs in the map (what `bytes` must track).
fn walked_bytes(ix: &EntryIndex) -> usize {
    ix.runs.iter().map(|e| run_bytes(e.value())).sum()
}

/// Every observable of `ix` equals the model's.
fn check(ix: &EntryIndex, model: &BTreeMap<u64, Loc>) {
    assert_eq!(ix.len(), model.len());
    assert_eq!(ix.first(), model.keys().next().copied());
    assert_eq!(ix.last_index(), model.keys().next_back().copied());
    let got = all(ix, 0, u64::MAX);
    let want: Vec<_> = model.iter().map(|(i, l)| (*i, *l)).collect();
    assert_eq!(got, want);
    if let (Some(&lo), Some(&hi)) = (model.keys().next(), model.keys().next_back()) {
        for i in lo.saturating_sub(2)..=hi + 2 {
            assert_eq!(ix.get(i), model.get(&i).copied(), "get({i})");
        }
    }
    assert_eq!(ix.heap_bytes(), walked_bytes(ix));
    // Only the tail may carry spare room.
    let back = ix.runs.back().map(|e| *e.key());
    for e in ix.runs.iter() {
        if Some(*e.key()) != back {
            assert_eq!(e.value().len(), e.value().cap(), "closed run {:?}", e.key());
        }
    }
}

/// xorshift64*
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
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
    // 1024 + 1024 + 452 in chunk 0, then 500 in chunk 1.
    let lens: Vec<_> = ix.runs.iter().map(|e| e.value().len()).collect();
    assert_eq!(lens, vec![1024, 1024, 452, 500]);
    // A gap starts a run too.
    ix.push(5000, loc(1, 1, 0));
    assert_eq!(ix.runs.len(), 5);
    assert_eq!(ix.get(4000), None);
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
    assert_eq!(ix.heap_bytes(), 0);
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
    assert_eq!(ix.heap_bytes(), 0);
    ix.push(7, loc(3, 1, 0));
    assert_eq!(all(&ix, 0, 10), vec![(7, loc(3, 1, 0))]);
}

#[test]
fn one_term_per_run_until_a_second_and_splits_after_split_min() {
    let ix = EntryIndex::default();
    // A second term after 5 entries: the run gets per-slot terms and stays one run.
    for i in 0..10u64 {
        ix.push(i, loc(1 + (i >= 5) as u64, 0, i as u32 * 8));
    }
    assert_eq!(ix.runs.len(), 1);
    assert!(ix.runs.back().unwrap().value().per_slot());
    // A run of one term that reached SPLIT_MIN entries splits on the next term instead.
    for i in 10..(10 + SPLIT_MIN as u64 + 10) {
        ix.push(
            i,
            loc(2 + (i >= 10 + SPLIT_MIN as u64) as u64, 1, i as u32 * 8),
        );
    }
    let shapes: Vec<_> = ix
        .runs
        .iter()
        .map(|e| (e.value().first, e.value().len(), e.value().per_slot()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            (0, 10, true),
            (10, SPLIT_MIN, false),
            (10 + SPLIT_MIN as u64, 10, false)
        ]
    );
    for i in 0..(10 + SPLIT_MIN as u64 + 10) {
        let want = if i < 5 {
            1
        } else if i < 10 + SPLIT_MIN as u64 {
            2
        } else {
            3
        };
        assert_eq!(ix.get(i).unwrap().term, want, "term of {i}");
    }
}

/// Random pushes (term changes, chunk changes, gaps), bulk runs, truncations and purges,
/// against a `BTreeMap`.
#[test]
fn matches_a_model_across_terms_chunks_truncates_and_purges() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let ix = EntryIndex::default();
        let mut model = BTreeMap::new();
        let (mut next, mut term, mut chunk, mut off) = (1u64, 1u64, 0u64, 0u32);
        for step in 0..3000 {
            match rng.below(100) {
                0..=59 => {
                    if rng.below(20) == 0 {
                        term += 1;
                    }
                    if rng.below(200) == 0 {
                        chunk += 1;
                    }
                    off += 8;
                    ix.push(next, loc(term, chunk, off));
                    model.insert(next, loc(term, chunk, off));
                    next += 1;
                }
                60..=79 => {
                    term += rng.below(2);
                    let most = if rng.below(4) == 0 { 3000 } else { 40 };
                    let n = rng.below(most) as usize;
                    let offs: Vec<u32> = (0..n as u32).map(|k| off + 8 * (k + 1)).collect();
                    ix.push_run(next, term, chunk, &offs);
                    for (k, &o) in offs.iter().enumerate() {
                        model.insert(next + k as u64, loc(term, chunk, o));
                    }
                    next += n as u64;
                    off += 8 * n as u32;
                }
                80..=89 => {
                    let lo = model.keys().next().copied().unwrap_or(next);
                    let since = lo + rng.below(next - lo + 1);
                    ix.remove_from(since);
                    model.retain(|i, _| *i < since);
                    next = since;
                    term += 1;
                }
                90..=95 => {
                    let lo = model.keys().next().copied().unwrap_or(next);
                    let upto = lo + rng.below((next - lo) / 2 + 1);
                    ix.remove_upto(upto);
                    model.retain(|i, _| *i > upto);
                    next = next.max(upto + 1);
                }
                _ => {
                    // A gap (as after a purge past the end) or a new chunk.
                    next += rng.below(3);
                    chunk += 1;
                }
            }
            if step % 97 == 0 {
                check(&ix, &model);
            }
        }
        check(&ix, &model);
    }
}

/// `push_run` leaves the index exactly as repeated `push` does.
#[test]
fn push_run_equals_repeated_push() {
    let mut rng = Rng(77);
    let bulk = EntryIndex::default();
    let single = EntryIndex::default();
    let mut model = BTreeMap::new();
    let (mut next, mut term, mut chunk, mut off) = (1u64, 1u64, 0u64, 0u32);
    for _ in 0..400 {
        let n = match rng.below(4) {
            0 => rng.below(3),
            1 => rng.below(100),
            2 => rng.below(1500),
            _ => rng.below(5000),
        } as usize;
        if rng.below(3) == 0 {
            term += 1;
        }
        if rng.below(5) == 0 {
            chunk += 1;
        }
        if rng.below(20) == 0 {
            let since = next.saturating_sub(rng.below(3000)).max(1);
            bulk.remove_from(since);
            single.remove_from(since);
            model.retain(|i, _| *i < since);
            next = since;
        }
        let offs: Vec<u32> = (0..n as u32).map(|k| off + 16 * (k + 1)).collect();
        bulk.push_run(next, term, chunk, &offs);
        for (k, &o) in offs.iter().enumerate() {
            single.push(next + k as u64, loc(term, chunk, o));
            model.insert(next + k as u64, loc(term, chunk, o));
        }
        next += n as u64;
        off += 16 * n as u32;
    }
    check(&bulk, &model);
    check(&single, &model);
    assert_eq!(all(&bulk, 0, u64::MAX), all(&single, 0, u64::MAX));
    assert_eq!(bulk.removals(), single.removals());
}

#[test]
fn push_run_stops_at_u64_max() {
    let ix = EntryIndex::default();
    ix.push_run(u64::MAX - 2, 1, 0, &[8, 16, 24, 32, 40]);
    assert_eq!(ix.len(), 3);
    assert_eq!(ix.last_index(), Some(u64::MAX));
    assert_eq!(ix.get(u64::MAX), Some(loc(1, 0, 24)));
    assert_eq!(all(&ix, u64::MAX - 5, u64::MAX).len(), 2);
    let mut v = Vec::new();
    ix.visit::<()>(0, u64::MAX, |i, _| {
        v.push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(v, vec![u64::MAX - 2, u64::MAX - 1, u64::MAX]);
    ix.push_run(5, 1, 0, &[]);
    assert_eq!(ix.len(), 3);
}

/// What the writer below stores for entry `i` in generation `g` (a generation starts at
/// each truncation): terms change at irregular points, so runs both split and get
/// per-slot terms, and runs grow, shrink and are trimmed while readers look.
fn term_of(i: u64, g: u64) -> u64 {
    let t = if (i / 10_000) % 2 == 0 {
        i / 7 + u64::from((i * 2_654_435_761) % 11 == 0)
    } else {
        i / 200
    };
    g * 1_000_000 + t
}

fn offset_of(i: u64, g: u64) -> u32 {
    (i as u32).wrapping_mul(8) ^ (g as u32) << 24
}

/// Readers on other threads see only (index, term, offset) triples the writer published,
/// never miss an entry that no truncation can remove, and a range walk is always a
/// snapshot of one generation's log (never entries from before a truncation followed by
/// entries appended after it).
#[test]
fn concurrent_readers_see_only_published_entries() {
    const N: u64 = 1_500_000;
    const GENS: u64 = 2048;
    let ix = Arc::new(EntryIndex::default());
    // since[g]: where generation g's truncation cut (generation 0 starts at 0).
    let since: Arc<Vec<AtomicU64>> = Arc::new((0..GENS).map(|_| AtomicU64::new(0)).collect());
    let go = Arc::new(std::sync::Barrier::new(3));
    // Entries <= stable are never truncated again.
    let stable = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (ix, since, stable, done) =
                (ix.clone(), since.clone(), stable.clone(), done.clone());
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let mut rng = Rng(r + 5);
                let mut walks = 0u64;
                let check = |i: u64, l: Loc| {
                    let g = l.term / 1_000_000;
                    assert_eq!(l.term, term_of(i, g), "term of {i}");
                    assert_eq!(l.offset, offset_of(i, g), "offset of {i}");
                    assert_eq!(l.chunk, i / 5000, "chunk of {i}");
                };
                while !done.load(Ordering::Acquire) {
                    let s = stable.load(Ordering::Acquire);
                    // Anything at or below `stable` must be found, whatever runs are
                    // being swapped.
                    for _ in 0..64 {
                        let i = if rng.below(2) == 0 {
                            s.saturating_sub(rng.below(64)).max(1)
                        } else {
                            1 + rng.below(s.max(1))
                        };
                        if i <= s {
                            check(i, ix.get(i).expect("a stable entry went missing"));
                        }
                        let j = i + rng.below(3000);
                        if let Some(l) = ix.get(j) {
                            check(j, l);
                        }
                    }
                    // Half the walks near the tail, where runs are swapped.
                    let from = if rng.below(2) == 0 {
                        s.saturating_sub(rng.below(3000)).max(1)
                    } else {
                        1 + rng.below(s.max(1))
                    };
                    let through = from + rng.below(4000);
                    let mut got: Vec<(u64, u64)> = Vec::new();
                    ix.visit::<()>(from, through, |i, l| {
                        let g = l.term / 1_000_000;
                        assert_eq!(l.term, term_of(i, g));
                        assert_eq!(l.offset, offset_of(i, g));
                        got.push((i, g));
                        Ok(())
                    })
                    .unwrap();
                    // Consecutive from `from`, and complete through `stable`.
                    for (k, (i, _)) in got.iter().enumerate() {
                        assert_eq!(*i, from + k as u64, "walk from {from} skipped an entry");
                    }
                    if through <= s {
                        assert_eq!(got.len() as u64, through - from + 1, "walk cut short");
                    }
                    // One generation's log: the newest generation seen, gmax, decides every
                    // entry: the latest generation g <= gmax whose cut is at or below it.
                    if let Some(gmax) = got.iter().map(|x| x.1).max() {
                        for &(i, g) in &got {
                            let want = (0..=gmax)
                                .rev()
                                .find(|&h| since[h as usize].load(Ordering::Acquire) <= i)
                                .unwrap();
                            assert_eq!(
                                g, want,
                                "entry {i} from generation {g} in a walk of {gmax}"
                            );
                        }
                    }
                    walks += 1;
                }
                walks
            })
        })
        .collect();
    // The writer: appends one by one and in bulk, truncates now and then above `stable`.
    let mut rng = Rng(99);
    let (mut next, mut g) = (1u64, 0u64);
    go.wait();
    while next <= N {
        if g + 1 < GENS && next > 2000 && rng.below(400) == 0 {
            let cut = next - 1 - rng.below(1500);
            let cut = cut.max(stable.load(Ordering::Relaxed) + 1);
            g += 1;
            since[g as usize].store(cut, Ordering::Release);
            ix.remove_from(cut);
            next = cut;
        }
        let n = if rng.below(10) == 0 {
            1 + rng.below(300)
        } else {
            1
        };
        // Split at chunk boundaries and term changes, as footer runs are.
        let mut k = 0;
        while k < n {
            let i = next + k;
            let mut end = i + 1;
            while end < next + n && end / 5000 == i / 5000 && term_of(end, g) == term_of(i, g) {
                end += 1;
            }
            let offs: Vec<u32> = (i..end).map(|j| offset_of(j, g)).collect();
            if offs.len() == 1 {
                ix.push(i, loc(term_of(i, g), i / 5000, offs[0]));
            } else {
                ix.push_run(i, term_of(i, g), i / 5000, &offs);
            }
            k = end - next;
        }
        next += n;
        // Now and then everything so far becomes stable (as a commit would make it), so
        // that readers also look up entries of the run being grown.
        let lag = if rng.below(8) == 0 { 1 } else { 1600 };
        let s = next.saturating_sub(lag).max(stable.load(Ordering::Relaxed));
        stable.store(s, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let walks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(walks > 0);
    assert!(g > 0, "the writer never truncated");
}

/// Fill `n` entries one by one from index 1 with a term change every `every` entries and
/// a chunk change every 200,000 (about a 64 MiB chunk of 256-byte entries).
fn fill(ix: &EntryIndex, n: u64, every: u64) {
    for i in 1..=n {
        ix.push(
            i,
            loc(1 + i / every, i / 200_000, (i % 200_000) as u32 * 320),
        );
    }
}

fn per_entry(ix: &EntryIndex) -> f64 {
    ix.heap_bytes() as f64 / ix.len() as f64
}

/// Memory at scale: runs of one term cost ≤ 5 bytes per entry, also with a term change
/// every 1,000 entries, whether pushed one by one or in bulk.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "10M entries: about a second in a release build (the 1M variant always runs)"
)]
fn memory_per_entry_10m() {
    memory_per_entry(10_000_000);
}

#[test]
fn memory_per_entry_1m() {
    memory_per_entry(1_000_000);
}

fn memory_per_entry(n: u64) {
    for every in [u64::MAX, 1000] {
        let ix = EntryIndex::default();
        fill(&ix, n, every);
        assert_eq!(ix.len() as u64, n);
        let b = per_entry(&ix);
        assert!(b <= 5.0, "{b} bytes per entry (term change every {every})");
        assert_eq!(ix.heap_bytes(), walked_bytes(&ix));
    }
    // Bulk, as footer replay loads it: runs of up to 1M entries per chunk.
    let ix = EntryIndex::default();
    let offs: Vec<u32> = (0..200_000u32).map(|k| 64 + 320 * k).collect();
    let mut i = 1;
    while i <= n {
        let k = (n + 1 - i).min(200_000) as usize;
        ix.push_run(i, 1, i / 200_000, &offs[..k]);
        i += k as u64;
    }
    assert_eq!(ix.len() as u64, n);
    let b = per_entry(&ix);
    assert!(b <= 5.0, "{b} bytes per entry (push_run)");
}

/// The documented worst case: terms changing at every entry cost at most 12.5 bytes per
/// entry (12 for the offset and the term, 176 per run of 1,024), also with a truncation
/// after every few entries; truncations alone (one term) stay under 5.
#[test]
fn memory_pathological_bounded() {
    const N: u64 = 300_000;
    // A new term at every entry.
    let ix = EntryIndex::default();
    for i in 1..=N {
        ix.push(i, loc(i, 0, i as u32 * 8));
    }
    let b = per_entry(&ix);
    assert!(b <= 12.5, "{b} bytes per entry, a term per entry");
    // A term per entry, and every 5 appends truncate the last 2 (next term after each).
    for every_term in [true, false] {
        let ix = EntryIndex::default();
        let (mut next, mut term) = (1u64, 1u64);
        while ix.len() < N as usize {
            for _ in 0..5 {
                if every_term {
                    term += 1;
                }
                ix.push(next, loc(term, next / 200_000, next as u32 * 8));
                next += 1;
            }
            next -= 2;
            ix.remove_from(next);
            if every_term {
                term += 1;
            }
        }
        let b = per_entry(&ix);
        let bound = if every_term { 12.5 } else { 5.0 };
        assert!(
            b <= bound,
            "{b} bytes per entry with truncations (term per entry: {every_term})"
        );
        assert_eq!(ix.heap_bytes(), walked_bytes(&ix));
    }
    // The old layout's worst case, a 1-entry run after every truncation into another
    // chunk, costs one run each: bounded by the fixed cost, not by KiB.
    let ix = EntryIndex::default();
    for i in 1..=10_000u64 {
        ix.push(i, loc(1, i, 64));
    }
    let b = per_entry(&ix);
    let bound = (super::super::run::RUN_FIXED_BYTES + 24) as f64;
    assert!(b <= bound, "{b} bytes per 1-entry run");
}

#[test]
#[ignore = "measurement: prints bytes per entry and push_run time at 10M"]
fn measure_10m() {
    let offs: Vec<u32> = (0..1_000_000u32).map(|k| 64 + 64 * k).collect();
    let ix = EntryIndex::default();
    let t = std::time::Instant::now();
    for c in 0..10u64 {
        ix.push_run(1 + c * 1_000_000, 1, c, &offs);
    }
    let el = t.elapsed();
    eprintln!(
        "MEASURE push_run 10M: {el:?}, {:.3} B/entry",
        per_entry(&ix)
    );
    let ix = EntryIndex::default();
    fill(&ix, 10_000_000, u64::MAX);
    eprintln!("MEASURE push 10M one term: {:.3} B/entry", per_entry(&ix));
}
