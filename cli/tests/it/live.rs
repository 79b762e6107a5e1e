//! `chunkwal stat` on a live log: a thread of this process appends and flushes while the
//! tool (another process, taking no lock) summarises the directory again and again. Every
//! run exits 0, or 3 when it caught a write half done, never crashes, and the last index it
//! reports never goes backwards.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::*;

/// Runs of `chunkwal stat` against the live log.
const ROUNDS: usize = 8;

/// One `chunkwal stat --json`: the last entry index it saw (0 if none), and whether it
/// reported a half-written tail.
fn stat_last(dir: &Path) -> (u64, bool) {
    let o = run(&["stat", "--json", dir.to_str().unwrap()]);
    let err = stderr(&o);
    let race = match o.status.code() {
        Some(0) => false,
        Some(3) => true,
        c => panic!("chunkwal stat exited {c:?}: {err}"),
    };
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    let v = json_line(&o);
    (v["last"]["index"].as_u64().unwrap_or(0), race)
}

#[test]
fn stat_of_a_live_log_never_goes_backwards() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 9, 1, 200)).unwrap();
    wal.flush_blocking().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut next = 9;
            while !stop.load(Ordering::Relaxed) {
                wal.append(entries(next, next + 8, 1, 200)).unwrap();
                next += 8;
                wal.flush_blocking().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            wal.close().unwrap();
            next - 1
        })
    };
    let (mut prev, mut races) = (0, 0);
    for _ in 0..ROUNDS {
        let (last, race) = stat_last(d.path());
        races += race as u32;
        assert!(last >= prev, "last index went from {prev} back to {last}");
        assert!(last >= 8, "stat missed the durable entries: last {last}");
        prev = last;
    }
    stop.store(true, Ordering::Relaxed);
    let final_last = writer.join().unwrap();
    let (last, race) = stat_last(d.path());
    assert!(!race, "the closed log has problems");
    assert_eq!(last, final_last);
    assert!(last >= prev);
    println!("{ROUNDS} rounds, last index {last}, {races} half-written tails");
}
