//! Many groups in one log: handles, batches, reopen, purge and chunk retirement, removal.

use bytes::Bytes;
use chunkwal::{Config, Error, GroupId, LogId, VerifyOnOpen, Wal, WriteBatch};

use crate::common::*;

/// Group `g`'s payload for entry `i` (distinct per group).
fn gp(g: u64, i: u64, len: usize) -> Bytes {
    payload(i ^ (g << 40), len)
}

fn gentries(g: u64, from: u64, to: u64, term: u64, len: usize) -> Vec<(LogId, Bytes)> {
    (from..to)
        .map(|i| (LogId::new(term, i), gp(g, i, len)))
        .collect()
}

fn assert_group(wal: &Wal, g: u64, from: u64, to: u64, len: usize) {
    let h = wal.group(GroupId(g));
    let got = h.read(from..to).expect("read");
    assert_eq!(got.len() as u64, to - from, "group {g}");
    for (id, p) in got {
        assert_eq!(p, gp(g, id.index, len), "group {g} entry {}", id.index);
    }
    assert_eq!(h.first_index(), Some(from), "group {g}");
    assert_eq!(h.last_index(), Some(to - 1), "group {g}");
}

#[test]
fn groups_are_separate_and_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    for verify in [VerifyOnOpen::Full, VerifyOnOpen::Lazy] {
        let _ = std::fs::remove_dir_all(d.path());
        {
            let wal = open(d.path());
            wal.append(entries(1, 11, 1, 50)).unwrap();
            for round in 0..40u64 {
                let mut b = WriteBatch::new();
                for g in 1..=8u64 {
                    let from = round * 4 + 1;
                    b.append(GroupId(g), gentries(g, from, from + 4, 2, 200));
                }
                wal.write(&b).unwrap();
            }
            wal.group(GroupId(3))
                .save_vote(Bytes::from_static(b"v3"))
                .unwrap();
            wal.group(GroupId(4)).commit(LogId::new(2, 100)).unwrap();
            wal.flush_blocking().unwrap();
            assert!(wal.stat().chunks.len() > 3);
        }
        let wal = Wal::open(cfg(d.path()).verify_on_open(verify)).unwrap();
        assert_holds(&wal, 1, 11, 1, 50);
        for g in 1..=8u64 {
            assert_group(&wal, g, 1, 161, 200);
        }
        let ids: Vec<u64> = wal.groups().iter().map(|g| g.0).collect();
        assert_eq!(ids, (0..=8).collect::<Vec<_>>());
        assert_eq!(
            wal.group(GroupId(3)).log_state().vote.as_deref(),
            Some(&b"v3"[..])
        );
        assert_eq!(
            wal.group(GroupId(4)).log_state().committed,
            Some(LogId::new(2, 100))
        );
        assert_eq!(wal.group(GroupId(9)).log_state(), Default::default());
        assert_eq!(wal.group(GroupId(9)).entry(1).unwrap(), None);
        // The default group's handle is the log itself.
        assert_eq!(wal.group(GroupId::DEFAULT).last_index(), Some(10));
    }
}

#[test]
fn batch_errors_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    let g = wal.group(GroupId(1));
    g.append(gentries(1, 5, 10, 1, 10)).unwrap();
    let mut b = WriteBatch::new();
    b.append(GroupId(2), gentries(2, 1, 3, 1, 10));
    b.append(GroupId(1), gentries(1, 11, 12, 1, 10)); // a gap: refused
    match wal.write(&b) {
        Err(Error::NonContiguous {
            expected: 10,
            got: 11,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(wal.group(GroupId(2)).last_index(), None);
    assert_eq!(g.last_index(), Some(9));
    let mut b = WriteBatch::new();
    b.remove_group(GroupId::DEFAULT);
    assert!(matches!(wal.write(&b), Err(Error::DefaultGroup { .. })));
}

#[test]
fn replace_truncate_purge_and_remove() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        let g = wal.group(GroupId(7));
        g.append(gentries(7, 1, 21, 1, 30)).unwrap();
        g.replace_range(15, gentries(7, 15, 18, 2, 30)).unwrap();
        assert_eq!(g.last_index(), Some(17));
        assert_eq!(g.term(16), Some(2));
        g.truncate(17).unwrap();
        g.purge(LogId::new(1, 4)).unwrap();
        assert_eq!(g.first_index(), Some(5));
        wal.group(GroupId(8))
            .append(gentries(8, 1, 3, 1, 30))
            .unwrap();
        wal.remove_group(GroupId(8)).unwrap();
        assert_eq!(wal.group(GroupId(8)).last_index(), None);
        wal.flush_blocking().unwrap();
    }
    let wal = open(d.path());
    let g = wal.group(GroupId(7));
    assert_eq!(g.first_index(), Some(5));
    assert_eq!(g.last_index(), Some(16));
    assert_eq!(g.term(16), Some(2));
    assert_eq!(g.log_state().purged, Some(LogId::new(1, 4)));
    assert_eq!(wal.group(GroupId(8)).log_state(), Default::default());
    assert_eq!(wal.groups(), vec![GroupId(7)]);
}

/// Chunks go only once no group holds a live entry in them; the groups that pin them are
/// reported, most bytes first.
#[test]
fn a_lagging_group_pins_chunks_until_it_purges() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.group(GroupId(1))
        .append(gentries(1, 1, 3, 1, 100))
        .unwrap();
    for round in 0..60u64 {
        let from = round * 10 + 1;
        let h = wal.group(GroupId(2));
        h.append(gentries(2, from, from + 10, 1, 400)).unwrap();
        h.purge(LogId::new(1, from + 9)).unwrap();
        wal.flush_blocking().unwrap();
    }
    let pinned = wal.stat().chunks.len();
    assert!(pinned > 3, "{pinned}");
    let pins = wal.pinning_groups(10);
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0].group, GroupId(1));
    assert_eq!(pins[0].first_index, Some(1));
    wal.group(GroupId(1)).purge(LogId::new(1, 2)).unwrap();
    wal.flush_blocking().unwrap();
    wal.wait_worker_idle();
    assert!(wal.stat().chunks.len() <= 2, "{}", wal.stat().chunks.len());
    assert!(wal.pinning_groups(10).is_empty());
    drop(wal);
    let wal = open(d.path());
    assert_eq!(wal.group(GroupId(2)).last_index(), None);
    assert_eq!(
        wal.group(GroupId(2)).log_state().purged,
        Some(LogId::new(1, 600))
    );
    assert_eq!(
        wal.group(GroupId(1)).log_state().purged,
        Some(LogId::new(1, 2))
    );
}

#[test]
fn a_batch_larger_than_a_chunk_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).unwrap();
    let mut b = WriteBatch::new();
    for g in 1..=40u64 {
        b.append(GroupId(g), gentries(g, 1, 3, 1, 1000));
    }
    assert!(matches!(wal.write(&b), Err(Error::EntryTooLarge { .. })));
    assert!(wal.groups().is_empty());
}
