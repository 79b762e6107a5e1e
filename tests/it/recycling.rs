//! Chunk recycling and backpressure, as a user sees them: purged chunks become spares on
//! disk, new chunks reuse them, the pool stays bounded, and a reopened log keeps going.

use chunkwal::{Config, LogId, Wal};

use crate::common::{assert_holds, entries};

fn spares(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".free"))
        .collect();
    v.sort();
    v
}

fn small(dir: &std::path::Path, keep: usize) -> Config {
    Config::new(dir).chunk_size(64 << 10).recycle_chunks(keep)
}

/// Write `rounds` x 100 entries of 1 KiB, purging all but the last 100 after each round.
fn churn(wal: &Wal, first: u64, rounds: u64) -> u64 {
    let mut next = first;
    for _ in 0..rounds {
        wal.append(entries(next, next + 100, 1, 1000)).unwrap();
        next += 100;
        wal.flush_blocking().unwrap();
        wal.purge(LogId::new(1, next - 101)).unwrap();
        wal.flush_blocking().unwrap();
        // The retirement runs on the flush thread; let it finish (the spare joins the pool
        // only after its directory fsync) so the next round's rotations can reuse it.
        wal.wait_worker_idle();
    }
    next
}

#[test]
fn purged_chunks_are_recycled_and_the_pool_stays_bounded() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(d.path(), 2)).unwrap();
    let next = churn(&wal, 1, 40);
    let st = wal.access_stat();
    // Most chunks come from the pool (a new one only when every spare is still in use).
    assert!(st.chunks_recycled > 2 * st.chunks_created, "{st:?}");
    assert!(spares(d.path()).len() <= 2, "{:?}", spares(d.path()));
    assert_holds(&wal, next - 100, next, 1, 1000);
    drop(wal);
    // Reopened: the spares on disk are found and used again.
    let wal = Wal::open(small(d.path(), 2)).unwrap();
    assert_holds(&wal, next - 100, next, 1, 1000);
    let next = churn(&wal, next, 20);
    let st = wal.access_stat();
    assert!(st.chunks_recycled > 2 * st.chunks_created, "{st:?}");
    assert_holds(&wal, next - 100, next, 1, 1000);
}

#[test]
fn without_recycling_purged_chunks_are_removed() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(d.path(), 0)).unwrap();
    churn(&wal, 1, 20);
    assert_eq!(wal.access_stat().chunks_recycled, 0);
    assert!(spares(d.path()).is_empty());
    drop(wal);
    // A reopen with a smaller pool removes the spares it does not keep.
    let wal = Wal::open(small(d.path(), 3)).unwrap();
    let next = churn(&wal, 2001, 20);
    drop(wal);
    assert!(spares(d.path()).len() <= 3);
    let wal = Wal::open(small(d.path(), 1)).unwrap();
    assert!(spares(d.path()).len() <= 1, "{:?}", spares(d.path()));
    assert_holds(&wal, next - 100, next, 1, 1000);
}

#[test]
fn a_recycled_newest_chunk_reopens_strict_and_clean() {
    let d = tempfile::tempdir().unwrap();
    let next = {
        let wal = Wal::open(small(d.path(), 4)).unwrap();
        // Long lives first, so that recycled files hold more old records than new ones.
        let next = churn(&wal, 1, 30);
        wal.append(entries(next, next + 3, 1, 1000)).unwrap();
        assert!(wal.access_stat().chunks_recycled > 0);
        next + 3
    };
    for _ in 0..3 {
        let wal = Wal::open(small(d.path(), 4).recovery_mode(chunkwal::RecoveryMode::Strict))
            .expect("stale records of a recycled chunk are not damage");
        assert_eq!(wal.log_state().last.map(|l| l.index), Some(next - 1));
        assert_holds(&wal, next - 103, next, 1, 1000);
    }
}

#[test]
fn backpressure_bounds_what_is_written_but_not_durable() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d.path()).max_unsynced_bytes(Some(32 << 10))).unwrap();
    let mut next = 1;
    for _ in 0..200 {
        wal.append(entries(next, next + 4, 1, 1000)).unwrap();
        next += 4;
        // At most 32 KiB (about 31 records of 1 KiB) plus the batch just written lag.
        let durable = wal.durable_index().unwrap_or(0);
        assert!(
            next - 1 - durable <= 31 + 4,
            "last {} durable {durable}",
            next - 1
        );
    }
    assert!(wal.access_stat().syncs >= 20);
    // Without it, appends never wait.
    let d2 = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d2.path())).unwrap();
    wal.append(entries(1, 200, 1, 1000)).unwrap();
    assert!(wal.durable_index().is_none_or(|i| i < 199));
}
