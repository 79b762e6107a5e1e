//! Rewrite forward: a lagging group does not keep old chunks alive past the threshold.

use bytes::Bytes;
use chunkwal::{GroupId, LogId, VerifyOnOpen, Wal, WriteBatch};

use crate::common::*;

const LAGGING: GroupId = GroupId(1);

fn gp(g: u64, i: u64, len: usize) -> Bytes {
    payload(i ^ (g << 40), len)
}

/// Rounds of batches over groups 2..=5 that purge behind themselves, while group 1 holds
/// its first few entries and never purges.
fn churn(wal: &Wal, rounds: std::ops::Range<u64>, check_disk: Option<u64>) -> u64 {
    let mut peak = 0;
    for r in rounds {
        let mut b = WriteBatch::new();
        for g in 2..=5u64 {
            let from = r * 8 + 1;
            let es = (from..from + 8).map(|i| (LogId::new(1, i), gp(g, i, 500)));
            b.append(GroupId(g), es);
            if r > 0 {
                b.purge(GroupId(g), LogId::new(1, from - 1));
            }
        }
        wal.write(&b).unwrap();
        wal.flush_blocking().unwrap();
        let bytes = wal.stat().chunks.len() as u64 * SMALL_CHUNK;
        peak = peak.max(bytes);
        if let Some(limit) = check_disk {
            assert!(bytes <= limit, "round {r}: {bytes} bytes on disk");
        }
    }
    peak
}

fn lagging_entries(wal: &Wal) -> Vec<(LogId, Bytes)> {
    wal.group(LAGGING).read(1..=4).unwrap()
}

fn expected() -> Vec<(LogId, Bytes)> {
    (1..=4).map(|i| (LogId::new(3, i), gp(1, i, 300))).collect()
}

#[test]
fn disk_stays_bounded_while_a_group_lags() {
    let d = tempfile::tempdir().unwrap();
    let threshold = 4 * SMALL_CHUNK;
    let config = || cfg(d.path()).rewrite_threshold(Some(threshold));
    {
        let wal = Wal::open(config()).unwrap();
        wal.group(LAGGING).append(expected()).unwrap();
        wal.group(LAGGING)
            .save_vote(Bytes::from_static(b"lag"))
            .unwrap();
        // The bound: the threshold, plus the chunk being filled and the one a rotation
        // adds before the next call rewrites.
        let peak = churn(&wal, 0..300, Some(threshold + 2 * SMALL_CHUNK));
        assert!(peak > 2 * SMALL_CHUNK, "{peak}");
        assert_eq!(lagging_entries(&wal), expected());
        assert!(wal
            .pinning_groups(4)
            .iter()
            .all(|p| p.pinned_bytes <= threshold));
    }
    for verify in [VerifyOnOpen::Full, VerifyOnOpen::Lazy] {
        let wal = Wal::open(config().verify_on_open(verify)).unwrap();
        assert_eq!(lagging_entries(&wal), expected());
        let s = wal.group(LAGGING).log_state();
        assert_eq!(s.vote.as_deref(), Some(&b"lag"[..]));
        assert_eq!(s.last, Some(LogId::new(3, 4)));
        assert_eq!(wal.group(GroupId(3)).last_index(), Some(300 * 8));
    }
    // Without a threshold the same workload keeps every chunk since the lagging entries.
    let d2 = tempfile::tempdir().unwrap();
    let wal = open(d2.path());
    wal.group(LAGGING).append(expected()).unwrap();
    let peak = churn(&wal, 0..300, None);
    assert!(peak > 3 * threshold, "{peak}");
    let pins = wal.pinning_groups(1);
    assert_eq!(pins[0].group, LAGGING);
}

/// A rewrite cut off by a crash before any sync covered it leaves the entries at their old
/// places; one that was synced moved them. Either way the group is whole.
#[test]
fn a_crash_around_a_rewrite_keeps_the_group_whole() {
    for sync_after in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let config = || cfg(d.path()).rewrite_threshold(Some(4 * SMALL_CHUNK));
        let wal = Wal::open(config()).unwrap();
        wal.group(LAGGING).append(expected()).unwrap();
        churn(&wal, 0..60, None);
        let mut b = WriteBatch::new();
        b.append(GroupId(2), [(LogId::new(1, 60 * 8 + 1), gp(2, 0, 40_000))]);
        wal.write(&b).unwrap();
        if sync_after {
            wal.flush_blocking().unwrap();
        }
        wal.simulate_crash();
        let wal = Wal::open(config()).unwrap();
        assert_eq!(lagging_entries(&wal), expected(), "sync_after {sync_after}");
    }
}
