//! Targeted directory-operation cases of `power_loss_dirops`.

use std::sync::Arc;

use chunkwal::{FsEvent, Wal};
use parking_lot::Mutex;

use super::{cfg, check_image, report_failure, Cap, Driver};
use crate::common::SMALL_CHUNK;
use crate::crash_image::{build, Choice, DirOp, Loss, Mode};
use crate::crash_util::{derived_entries, Rng};

/// A purge that retires several chunks unlinks them (or renames them to spares) oldest
/// first. If the directory were fsynced only once, after the last, each could reach the
/// disk or not,
/// independently: an image keeping chunk 0 (its unlink lost) while the unlinks of chunks 1..
/// reached the disk holds chunks {0, N} with a hole, and open refuses it with
/// `MissingChunk { missing: 1 }` although nothing needed is missing (found by this test on
/// the first sync-owner version). The directory is now fsynced after every retirement: no
/// capture ever has two pending at once, and every image opens.
#[test]
fn out_of_order_purge_unlinks_leave_an_openable_log() {
    let mut d = Driver::new(7);
    d.open();
    while d.installs() < 4 {
        d.append(false);
        d.flush_here();
    }
    for _ in 0..3 {
        d.append(false);
    }
    d.flush_here();
    let last = d.wal().log_state().last.unwrap();
    let upto = d.wal().entry(last.index - 1).unwrap().unwrap().0;
    let chunks = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "chunk")
            })
            .count()
    };
    let before = chunks(d.dir.path());
    d.rec.phase("purge", 64, 1, Mode::EveryEvent);
    d.wal().purge(upto).unwrap();
    d.acks.done.lock().purged = upto.index;
    d.flush_here();
    d.wal().wait_worker_idle();
    let caps = d.rec.take_captures();
    assert!(
        before >= chunks(d.dir.path()) + 2,
        "the purge retired fewer than two chunks"
    );
    // Retired chunks are removed or renamed to spares: either way one at a time.
    let retires = |c: &Cap| {
        c.pending
            .iter()
            .filter(|op| match op {
                DirOp::Unlink { .. } => true,
                DirOp::Rename { to, .. } => to.ends_with(".free"),
                DirOp::Create { .. } => false,
            })
            .count()
    };
    let most = caps.iter().map(retires).max().unwrap_or(0);
    assert!(
        most <= 1,
        "{most} chunk retirements pending before one directory fsync"
    );
    for (n, cap) in caps.iter().enumerate() {
        for applied in [true, false] {
            let ch = Choice {
                applied: vec![applied; cap.pending.len()],
                loss: Loss::NoneLost,
            };
            let Some(img) = build(cap, &ch, &mut Rng::new(n as u64)) else {
                continue;
            };
            if let Err(why) = check_image(&img, cap, true) {
                report_failure("purge unlinks", 7, cap, &ch, &img, &why);
                panic!("{why}");
            }
        }
    }
    d.close();
}

/// The observer is documented to hear of every unlink in the log directory, leftover
/// removal at open included; open removes leftover `.chunk.tmp` files (and a blank newest
/// chunk) with `chunk::remove_leftovers`, which calls `std::fs::remove_file` and
/// `sync_dir` directly instead of going through `Files`, so neither the unlink nor its
/// directory fsync is reported. (The test above works around it: it takes a name that
/// vanished during an open as removed durably.)
#[test]
fn leftover_removal_at_open_is_reported_to_the_observer() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    wal.append(derived_entries(1, 4, 1)).unwrap();
    wal.close().unwrap();
    let leftover = d.path().join("00000000000000000001.chunk.tmp");
    std::fs::write(&leftover, vec![0u8; SMALL_CHUNK as usize]).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let mut c = cfg(d.path());
    c.fs_observer = Some(Arc::new(move |ev: &FsEvent<'_>| {
        s2.lock().push(format!("{ev:?}"));
    }));
    let wal = Wal::open(c).unwrap();
    assert!(!leftover.exists(), "open kept the leftover");
    drop(wal);
    let seen = seen.lock();
    assert!(
        seen.iter()
            .any(|e| e.starts_with("Unlink") && e.contains("00000000000000000001.chunk.tmp")),
        "the observer heard of no unlink of the leftover: {seen:?}"
    );
}
