//! The read API: one range convention, bounded reads, the lazy iterator and `term`.

use std::ops::{Bound, RangeInclusive};

use bytes::Bytes;
use chunkwal::{Config, Error, LogId, Wal};

use crate::common::*;

/// A log holding 6..=20 (term 1, 100-byte payloads) after a purge up to 5.
fn held_6_to_20(dir: &std::path::Path) -> Wal {
    let wal = open(dir);
    wal.append(entries(1, 21, 1, 100)).unwrap();
    wal.purge(LogId::new(1, 5)).unwrap();
    wal
}

type Read = Vec<(LogId, Bytes)>;

fn indexes(v: &[(LogId, Bytes)]) -> Vec<u64> {
    v.iter().map(|(id, _)| id.index).collect()
}

/// `OutOfRange`'s fields, or a panic naming what came instead.
fn span<T: std::fmt::Debug>(r: chunkwal::Result<T>) -> (u64, u64, Option<u64>, Option<u64>) {
    match r {
        Err(Error::OutOfRange {
            from,
            through,
            first,
            last,
        }) => (from, through, first, last),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
}

#[test]
fn every_bound_kind_reads_the_same_entries() {
    let d = tempfile::tempdir().unwrap();
    let wal = held_6_to_20(d.path());
    let ex = |s, e| (Bound::Excluded(s), Bound::Excluded(e));
    let cases: Vec<(Read, Vec<u64>)> = vec![
        (wal.read(8..11).unwrap(), (8..11).collect()),
        (wal.read(8..=11).unwrap(), (8..=11).collect()),
        (wal.read(18..).unwrap(), (18..=20).collect()),
        (wal.read(..9).unwrap(), (6..9).collect()),
        (wal.read(..=9).unwrap(), (6..=9).collect()),
        (wal.read(..).unwrap(), (6..=20).collect()),
        (wal.read(ex(7, 10)).unwrap(), (8..10).collect()),
        (wal.read(6..=20).unwrap(), (6..=20).collect()),
    ];
    for (got, want) in cases {
        assert_eq!(indexes(&got), want);
        for (id, p) in &got {
            assert_eq!((id.term, p), (1, &payload(id.index, 100)));
        }
    }
    // The reader handle follows the same rules.
    assert_eq!(indexes(&wal.reader().read(19..).unwrap()), vec![19, 20]);
}

#[test]
fn empty_ranges_read_nothing_wherever_they_lie() {
    let d = tempfile::tempdir().unwrap();
    let wal = held_6_to_20(d.path());
    for r in [(10, 10), (1, 1), (100, 100), (12, 3)] {
        assert!(wal.read(r.0..r.1).unwrap().is_empty(), "{r:?}");
    }
    assert!(wal.read(..0).unwrap().is_empty());
    assert!(wal.read(RangeInclusive::new(12, 11)).unwrap().is_empty());
    // An unbounded end past the last entry: caught up, nothing yet (not an error).
    assert!(wal.read(21..).unwrap().is_empty());
    assert!(wal.read(500..).unwrap().is_empty());
    // An unbounded start before the first entry, ending before it too.
    assert!(wal.read(..=5).unwrap().is_empty());
    assert!(wal
        .read((Bound::Excluded(u64::MAX), Bound::Unbounded))
        .unwrap()
        .is_empty());
    // The same for the other reads.
    assert!(wal.read_bounded(21.., 0).unwrap().is_empty());
    assert_eq!(wal.iter(10..10).unwrap().count(), 0);
    assert_eq!(wal.iter(21..).unwrap().count(), 0);
}

#[test]
fn bounds_outside_the_log_fail_with_both_spans() {
    let d = tempfile::tempdir().unwrap();
    let wal = held_6_to_20(d.path());
    let held = (Some(6), Some(20));
    // Starting before the first index: purged.
    assert_eq!(span(wal.read(5..8)), (5, 7, held.0, held.1));
    assert_eq!(span(wal.read(0..)), (0, 20, held.0, held.1));
    assert_eq!(span(wal.read(1..=1)), (1, 1, held.0, held.1));
    // Ending past the last index.
    assert_eq!(span(wal.read(15..=21)), (15, 21, held.0, held.1));
    assert_eq!(span(wal.read(..22)), (6, 21, held.0, held.1));
    assert_eq!(span(wal.read(21..=21)), (21, 21, held.0, held.1));
    // Every read reports the same, up front.
    assert_eq!(span(wal.read_bounded(5..8, 1000)), (5, 7, held.0, held.1));
    assert_eq!(span(wal.iter(15..=21)), (15, 21, held.0, held.1));
    // An empty log holds nothing.
    wal.reset().unwrap();
    assert_eq!(span(wal.read(1..3)), (1, 2, None, None));
    assert!(wal.read(..).unwrap().is_empty());
    let msg = Error::OutOfRange {
        from: 5,
        through: 7,
        first: Some(6),
        last: Some(20),
    }
    .to_string();
    assert!(msg.contains("5..=7") && msg.contains("6..=20"), "{msg}");
}

/// Entries 1..=6 with payloads of 10, 20, 30, 40, 50 and 500 bytes.
fn sized(dir: &std::path::Path) -> Wal {
    let wal = open(dir);
    let lens = [10, 20, 30, 40, 50, 500];
    wal.append(
        lens.iter()
            .zip(1..)
            .map(|(len, i)| (LogId::new(1, i), payload(i, *len))),
    )
    .unwrap();
    wal
}

#[test]
fn bounded_read_cuts_exactly_at_the_budget() {
    let d = tempfile::tempdir().unwrap();
    let wal = sized(d.path());
    // 10 + 20 + 30 = 60: exactly the budget is in, one byte less leaves the third out.
    assert_eq!(
        indexes(&wal.read_bounded(1..=6, 60).unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(indexes(&wal.read_bounded(1..=6, 59).unwrap()), vec![1, 2]);
    assert_eq!(indexes(&wal.read_bounded(2.., 90).unwrap()), vec![2, 3, 4]);
    // A budget larger than the range reads the whole range, no more.
    assert_eq!(
        indexes(&wal.read_bounded(1..=3, 1 << 30).unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        wal.read_bounded(.., u64::MAX).unwrap(),
        wal.read(..).unwrap()
    );
    // The payloads are the real ones.
    let got = wal.read_bounded(3..5, 100).unwrap();
    assert_eq!(got, wal.read(3..5).unwrap());
}

#[test]
fn bounded_read_returns_one_entry_even_past_the_budget() {
    let d = tempfile::tempdir().unwrap();
    let wal = sized(d.path());
    // Entry 6 alone is 500 bytes: still returned, alone.
    assert_eq!(indexes(&wal.read_bounded(6..=6, 100).unwrap()), vec![6]);
    assert_eq!(indexes(&wal.read_bounded(6.., 0).unwrap()), vec![6]);
    // A zero budget reads exactly one entry of any non-empty range.
    assert_eq!(indexes(&wal.read_bounded(.., 0).unwrap()), vec![1]);
    // The first entry fits, the big one does not follow it.
    assert_eq!(indexes(&wal.read_bounded(5..=6, 100).unwrap()), vec![5]);
    // Looping on the bounded read makes progress and covers the range.
    let mut next = 1;
    let mut calls = 0;
    while let Some(last) = wal.read_bounded(next.., 45).unwrap().last() {
        next = last.0.index + 1;
        calls += 1;
    }
    assert_eq!((next, calls), (7, 5)); // [1, 2], [3], [4], [5], [6]
}

#[test]
fn iterator_reads_lazily_and_sees_the_log_as_it_is_now() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 601, 1, 50)).unwrap();
    let mut it = wal.iter(1..=600).unwrap();
    let first: Vec<_> = it.by_ref().take(3).map(Result::unwrap).collect();
    assert_eq!(indexes(&first), vec![1, 2, 3]);
    // The writer is not blocked by a live iterator: truncate and rewrite under it.
    wal.truncate(300).unwrap();
    wal.append(entries(300, 601, 2, 50)).unwrap();
    wal.append(entries(601, 700, 2, 50)).unwrap();
    let rest: Vec<_> = it.map(Result::unwrap).collect();
    assert_eq!(
        rest.len(),
        597,
        "the range was fixed when the iterator was made"
    );
    for (id, p) in &rest {
        let term = if id.index < 300 { 1 } else { 2 };
        assert_eq!((id.term, p), (term, &payload(id.index, 50)), "{id}");
    }
    assert_eq!(indexes(&rest), (4..=600).collect::<Vec<_>>());
    // An unbounded end is the last entry when the iterator is made.
    let mut it = wal.iter(695..).unwrap();
    wal.append(entries(700, 710, 2, 50)).unwrap();
    assert_eq!(it.remaining(), Some((695, 699)));
    assert_eq!(it.by_ref().count(), 5);
    assert_eq!(it.next().map(|r| r.is_ok()), None, "fused");
}

#[test]
fn iterator_ends_with_one_error_once_its_next_entry_is_purged() {
    let d = tempfile::tempdir().unwrap();
    // A one-entry cache: payloads come from the maps.
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK).cache(1, 1)).unwrap();
    wal.append(entries(1, 2001, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    wal.evict_durable_from_cache();
    let mut it = wal.iter(..).unwrap();
    assert_eq!(it.by_ref().take(10).filter(Result::is_ok).count(), 10);
    wal.purge(LogId::new(1, 1500)).unwrap();
    wal.flush_blocking().unwrap();
    wal.wait_worker_idle();
    assert_eq!(span(it.next().unwrap()), (11, 2000, Some(1501), Some(2000)));
    assert!(it.next().is_none());
    assert_eq!(it.remaining(), None);
    // Truncated away (and not rewritten): the entries before the cut, then one error.
    let mut it = wal.iter(1600..=1700).unwrap();
    assert_eq!(it.next().unwrap().unwrap().0, LogId::new(1, 1600));
    wal.truncate(1650).unwrap();
    let got: Vec<_> = it.collect();
    assert_eq!(got.len(), 50);
    assert!(got[..49].iter().all(Result::is_ok));
    let last = got.into_iter().last().unwrap();
    assert_eq!(span(last), (1650, 1700, Some(1501), Some(1649)));
}

/// Appends, truncates and purges on another thread while iterators run: every item is the
/// entry the writer put at that index (payload derived from term and index), items are
/// consecutive, and an error only ever comes last.
#[test]
fn iterators_stay_consistent_under_concurrent_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let wal = Arc::new(open(d.path()));
    let tagged = |term: u64, i: u64| payload(i ^ (term << 40), 64);
    wal.append((1..=200).map(|i| (LogId::new(1, i), tagged(1, i))))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (wal, stop) = (Arc::clone(&wal), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut next, mut term) = (201u64, 1u64);
            for round in 0..2000u64 {
                wal.append((next..next + 10).map(|i| (LogId::new(term, i), tagged(term, i))))
                    .unwrap();
                next += 10;
                if round % 7 == 3 {
                    term += 1;
                    let since = next - 15;
                    let es = (since..since + 5).map(|i| (LogId::new(term, i), tagged(term, i)));
                    wal.replace_range(since, es).unwrap();
                    next = since + 5;
                }
                if round % 11 == 5 {
                    wal.purge(LogId::new(1, next - 150)).unwrap();
                }
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let reader = wal.reader();
    let (mut items, mut errors) = (0u64, 0u64);
    loop {
        // At least one whole iteration, the last one after the writer is done.
        let done = stop.load(Ordering::SeqCst);
        let Ok(it) = reader.iter(..) else { continue };
        let mut expect = None;
        let mut ended = false;
        for item in it {
            assert!(!ended, "an item after the error");
            match item {
                Ok((id, p)) => {
                    assert!(expect.is_none_or(|e| e == id.index), "gap before {id}");
                    assert_eq!(p, tagged(id.term, id.index), "{id}");
                    expect = Some(id.index + 1);
                    items += 1;
                }
                Err(Error::OutOfRange { .. }) => {
                    ended = true;
                    errors += 1;
                }
                Err(e) => panic!("iterator: {e}"),
            }
        }
        if done {
            break;
        }
    }
    writer.join().unwrap();
    assert!(items > 0);
    println!("iterated {items} entries, {errors} iterations ended by a removal");
}

#[test]
fn term_comes_from_the_index_and_survives_truncate_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 11, 1, 100)).unwrap();
        wal.replace_range(6, entries(6, 13, 2, 100)).unwrap();
        assert_eq!(wal.term(5), Some(1));
        assert_eq!(wal.term(6), Some(2));
        assert_eq!(wal.term(12), Some(2));
        assert_eq!(wal.term(13), None);
        wal.truncate(9).unwrap();
        assert_eq!((wal.term(8), wal.term(9)), (Some(2), None));
        wal.purge(LogId::new(1, 3)).unwrap();
        // The purge point itself is not held: its term is in the log state.
        assert_eq!((wal.term(3), wal.term(4)), (None, Some(1)));
        assert_eq!(wal.log_state().purged, Some(LogId::new(1, 3)));
        // Served from the index: no cache lookup, hit or miss.
        let before = wal.reader().access_stat().cache;
        for i in 0..20 {
            let _ = wal.term(i);
        }
        let after = wal.reader().access_stat().cache;
        assert_eq!((after.hits, after.misses), (before.hits, before.misses));
        wal.close().unwrap();
    }
    let wal = open(d.path());
    let terms: Vec<_> = (3..=9).map(|i| wal.term(i)).collect();
    let want = [None, Some(1), Some(1), Some(2), Some(2), Some(2), None];
    assert_eq!(terms, want);
    assert_eq!(wal.reader().term(7), Some(2));
    assert_eq!((wal.first_index(), wal.last_index()), (Some(4), Some(8)));
}

#[test]
fn adapter_get_entries_clamps_and_persist_matches_by_term() {
    use chunkwal::adapter::{AdapterOptions, FlushPolicy, LogStore, PersistenceStrategy};
    let d = tempfile::tempdir().unwrap();
    let opts = AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate);
    let s = LogStore::open(cfg(d.path()), opts).unwrap();
    futures::executor::block_on(s.persist_entries(entries(1, 11, 1, 10))).unwrap();
    futures::executor::block_on(s.purge(LogId::new(1, 2))).unwrap();
    assert_eq!(
        indexes(&s.get_entries(0..=100).unwrap()),
        (3..=10).collect::<Vec<_>>()
    );
    assert!(s.get_entries(11..=100).unwrap().is_empty());
    assert!(s.get_entries(RangeInclusive::new(7, 3)).unwrap().is_empty());
    assert_eq!(s.term(4), Some(1));
    // Same terms are skipped (the payloads differ, and are not read); a new term replaces.
    let mut again = entries(4, 7, 1, 10);
    again[0].1 = Bytes::from_static(b"different");
    again.push((LogId::new(2, 7), Bytes::from_static(b"new")));
    futures::executor::block_on(s.persist_entries(again)).unwrap();
    let held = futures::executor::block_on(s.entry(4)).unwrap().unwrap();
    assert_eq!(held, (LogId::new(1, 4), payload(4, 10)));
    assert_eq!(s.term(7), Some(2));
    assert_eq!(s.term(8), None);
}
