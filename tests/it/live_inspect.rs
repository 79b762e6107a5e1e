//! Inspection of a live log: another process appends and flushes continuously while this one
//! runs `inspect_dir` over and over (the `chunkwal stat` side is in `cli/tests/it/live.rs`). Inspection takes no lock, so it must
//! not map the files (bytes changing under a `&[u8]` are undefined behaviour): every call
//! succeeds or reports a clean structured error, no chunk file is ever mapped here, and the
//! last index seen never goes backwards.

use std::path::Path;
use std::time::{Duration, Instant};

use chunkwal::inspect::{inspect_dir, OwnedRecord};
use chunkwal::{Error, Wal};

use crate::common::{cfg, entries};
use crate::crash_util::spawn_self;

const DIR_ENV: &str = "CHUNKWAL_LIVE_INSPECT_DIR";
/// How long the parent inspects the live log.
const INSPECT_FOR: Duration = Duration::from_secs(4);
/// A child that is never killed stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The writer. Does nothing unless started by [`inspection_of_a_live_log_never_maps_it`].
#[test]
#[ignore = "child process of inspection_of_a_live_log_never_maps_it"]
fn live_writer_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let wal = Wal::open(cfg(Path::new(&dir))).expect("child open");
    let start = Instant::now();
    let mut next = 1;
    while start.elapsed() < CHILD_LIFETIME {
        wal.append(entries(next, next + 8, 1, 200)).unwrap();
        next += 8;
        wal.flush_blocking().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lines of this process's memory map that name a file under `dir`.
fn mapped_under(dir: &str) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|l| l.contains(dir))
        .map(str::to_owned)
        .collect()
}

/// One `inspect_dir` of the live log: its last entry index (0 before the first), after
/// checking that no chunk is mapped while its records are visited and that any problem is
/// a structured corruption in the newest chunk (a write caught half done).
fn inspect_last(dir: &Path, races: &mut u64) -> u64 {
    let d = dir.to_str().unwrap().to_owned();
    let mut last = 0;
    let mut seen_chunk = None;
    let reports = inspect_dir(
        dir,
        &mut |r| {
            if seen_chunk != Some(r.chunk) {
                seen_chunk = Some(r.chunk);
                let m = mapped_under(&d);
                assert!(m.is_empty(), "chunk {} is mapped: {m:?}", r.chunk);
            }
            if let OwnedRecord::Entry { id, .. } = &r.record {
                last = last.max(id.index);
            }
        },
        &mut |_| {},
    )
    .expect("inspect_dir of a live log");
    let newest = reports.last().map(|r| r.seq);
    for r in &reports {
        match &r.error {
            None => {}
            Some(Error::Corruption { chunk, .. }) if Some(*chunk) == newest => *races += 1,
            Some(e) => panic!("chunk {}: {e:?}", r.seq),
        }
    }
    last
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "reads the memory map from /proc/self/maps"
)]
fn inspection_of_a_live_log_never_maps_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("log");
    let log = d.path().join("child.log");
    let envs = [(DIR_ENV, dir.to_string_lossy().into_owned())];
    let mut child = spawn_self("live_inspect::live_writer_child", &envs, &log);
    let child_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let start = Instant::now();
    while !dir.join(chunkwal::inspect::chunk_file_name(0)).exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "child died: {}",
            child_log()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "child never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut prev, mut calls, mut races) = (0, 0, 0);
    let start = Instant::now();
    while start.elapsed() < INSPECT_FOR {
        let last = inspect_last(&dir, &mut races);
        assert!(
            last >= prev,
            "inspect_dir: last index went from {prev} back to {last}"
        );
        prev = last;
        calls += 1;
        // Leave the (shared, small) machine to the other tests now and then.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "child died: {}",
        child_log()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut after = 0;
    let last = inspect_last(&dir, &mut after);
    assert_eq!(after, 0, "the stopped log has problems");
    assert!(last >= prev && last > 0, "last {last}, seen {prev}");
    println!("{calls} rounds, last index {last}, {races} half-written tails");
    assert!(calls >= 3, "only {calls} rounds");
}
