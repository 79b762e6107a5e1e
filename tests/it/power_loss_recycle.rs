//! Power loss while purged chunks are recycled (issue #12).
//!
//! 64 KiB chunks; a writer appending batches of distinct random payloads, purging behind
//! itself so that chunks are retired (`{seq}.chunk -> {seq}.free`) and reused as new chunks
//! (`.free -> .chunk.tmp`, header rewritten and synced, installed), truncating now and then;
//! threads flushing (`flush_blocking`, `flush(cb)`). A `crash_record::Recorder` captures the
//! directory at random points and at every event while a recycling window is open, and
//! `crash_image` builds power-loss images from the captures (see there for the model). Each
//! image is checked against the test's history (see `history.rs`): it opens, it is the log
//! after some record at or past the acknowledged ones, every entry is one the test wrote at
//! that index and term with that payload, and after more appends and a close it reopens
//! under `RecoveryMode::Strict` with all of it.
//!
//! Images per run: `CHUNKWAL_RECYCLE_IMAGES` (default 300; the main test also runs longer
//! with it). Seed: `CHUNKWAL_SEED` (thread timing still varies between runs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{CorruptionKind, Error, LogId, RecoveryMode, Wal};

use crate::crash_image::{Built, Mode, Window};
use crate::crash_util::seed_from_env;
use crate::history::{cfg, check_image, held, images_from_env, matches_history, Mark, Run, CHUNK};

/// Power loss at random points of a long run with purges, recycling and truncations, and
/// at every event of each recycling window.
#[test]
fn power_loss_while_recycling_keeps_every_acknowledged_entry() {
    let seed = seed_from_env("power_loss_recycle");
    let mut r = Run::new(seed);
    r.open();
    r.start_flushers();
    // Captures kept per recycling window (and at random points), more for longer runs.
    let cap = 10 * images_from_env(300).div_ceil(300) as usize;
    r.rec.phase("recycling", cap, 40, Mode::Recycle);
    let installs = 40 + images_from_env(300) / 10;
    while r.rec.counts().installs < installs {
        r.step();
    }
    let recycled = r.wal().access_stat().chunks_recycled;
    r.rec.phase("close", 4, 1, Mode::EveryEvent);
    r.close();
    r.finish();
    let caps = r.rec.take_captures();
    assert!(recycled > 0, "no chunk was recycled");
    for w in [
        Window::Renamed,
        Window::HeaderWritten,
        Window::HeaderSynced,
        Window::Installed,
    ] {
        let n = caps.iter().filter(|c| c.windows.contains(&w)).count();
        println!("power_loss_recycle run: {n} captures in window {w:?}");
        assert!(n > 0, "no capture in recycling window {w:?}");
    }
    let newest_recycled = caps
        .iter()
        .filter(|c| {
            let newest = c.durable.iter().rev().find(|(n, _)| n.ends_with(".chunk"));
            newest.is_some_and(|(_, ino)| c.recycled.contains(ino))
        })
        .count();
    assert!(
        newest_recycled > 0,
        "no capture with a recycled newest chunk"
    );
    r.check("run", seed, &caps, images_from_env(300));
}

/// Purge, then rotate right away: the spare the purge made is the next chunk. It must not
/// be reused before its rename to `.free` is durable: if it were, an image losing both
/// renames holds the old chunk's name with the new chunk's header (or records), and open
/// refuses the log.
#[test]
fn a_spare_is_reused_only_once_its_retirement_is_durable() {
    let seed = seed_from_env("power_loss_recycle reuse after purge");
    let mut r = Run::new(seed);
    // One spare at most: the chunk a purge retires is the next one.
    r.spares = 1;
    r.open();
    r.rec.phase("purge then rotate", 12, 60, Mode::Recycle);
    for _ in 0..24 * images_from_env(300).div_ceil(300) {
        // Fill the active chunk almost to its end.
        while r.wal().reader().tail_position().unwrap().1 < CHUNK - 2500 {
            r.append(1);
        }
        r.flush_here();
        // A retirement renames the chunk to a spare, or removes it when the pool is full.
        let retired = |r: &Run| r.rec.counts().retires + r.rec.counts().unlinks;
        let retires = retired(&r);
        let chunks = r
            .rec
            .current_names()
            .iter()
            .filter(|n| n.ends_with(".chunk"))
            .count();
        r.purge_behind(2);
        // The purged chunk's mapping goes once the epoch collector frees the removed
        // skiplist node that held it (any thread's pins do that in a busy process).
        let t = Instant::now();
        while chunks > 1 && retired(&r) == retires && t.elapsed() < Duration::from_secs(2) {
            crossbeam_epoch::pin().flush();
        }
        // A moment for the retirement to go on (its directory fsync), then the rotation.
        let pause = Duration::from_micros(r.rng.below(4) * r.rng.below(30));
        let t = Instant::now();
        while t.elapsed() < pause {
            crossbeam_epoch::pin().flush();
        }
        r.append(8);
        r.flush_here();
    }
    let recycled = r.wal().access_stat().chunks_recycled;
    r.close();
    r.finish();
    assert!(recycled > 0, "no chunk was recycled");
    let caps = r.rec.take_captures();
    r.check("reuse after purge", seed, &caps, images_from_env(300) / 2);
    let early = r.rec.counts().early_reuses;
    assert_eq!(early, 0, "spares reused before their rename was durable");
}

/// The previous process retired chunk 0 (renamed it to `.free`) and died before the
/// directory fsync. An open that finds the spare must not reuse it before that rename is
/// durable.
#[test]
fn a_spare_found_at_open_is_reused_only_once_its_name_is_durable() {
    let seed = seed_from_env("power_loss_recycle spare at open");
    let mut r = Run::new(seed);
    r.open();
    r.append(4);
    while r.wal().locate(1).unwrap().0 == r.wal().reader().tail_position().unwrap().0 {
        r.append(4);
    }
    for _ in 0..40 {
        r.append(4);
    }
    // Purge exactly the entries of chunk 0.
    let mut last0 = 1;
    while r.wal().locate(last0 + 1).unwrap().0 == r.wal().locate(1).unwrap().0 {
        last0 += 1;
    }
    let last = r.hist.lock().now().0.unwrap().index;
    r.purge_behind(last - last0);
    r.flush_here();
    r.wal().wait_worker_idle();
    r.close();
    let (chunk0, free0) = (
        chunkwal::inspect::chunk_file_name(0),
        "00000000000000000000.free",
    );
    assert!(
        r.dir.path().join(free0).exists(),
        "chunk 0 was not kept as a spare"
    );
    r.rec.assume_pending_rename(&chunk0, free0);
    r.rec.phase("reopen and reuse", 16, 10, Mode::Recycle);
    r.open();
    while r.rec.counts().recycles == 0 {
        r.append(4);
    }
    r.append(4);
    r.flush_here();
    r.close();
    r.finish();
    let caps = r.rec.take_captures();
    r.check("spare at open", seed, &caps, images_from_env(300) / 3);
    assert_eq!(
        r.rec.counts().early_reuses,
        0,
        "spare reused before its name was durable"
    );
}

/// A zero-copy `Bytes` of a purged chunk must never change while the writer goes on: the
/// chunk's file is not reused while its mapping lives, and is once it is dropped.
#[test]
fn bytes_held_from_a_purged_chunk_never_change() {
    let seed = seed_from_env("power_loss_recycle held bytes");
    let mut r = Run::new(seed);
    let mut c = cfg(r.dir.path()).cache(0, 0);
    c.fs_observer = Some(r.rec.observer());
    r.wal = Some(Arc::new(Wal::open(c).unwrap()));
    while r.rec.counts().installs < 3 {
        r.append(4);
        r.flush_here();
    }
    r.flush_here();
    // Early entries of chunk 0, read from the map (no cache), and a copy of them.
    let held: Vec<(LogId, Bytes)> = r.wal().read(1..30).unwrap();
    let copy: Vec<Vec<u8>> = held.iter().map(|(_, b)| b.to_vec()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (held, copy, stop) = (held.clone(), copy.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for ((id, b), c) in held.iter().zip(&copy) {
                    assert_eq!(&b[..], &c[..], "bytes of {id} changed under a reader");
                }
                rounds += 1;
                std::thread::yield_now();
            }
            rounds
        })
    };
    let free0 = r.dir.path().join("00000000000000000000.free");
    let mut seen_spare = false;
    let i0 = r.rec.counts().installs;
    while r.rec.counts().installs < i0 + 12 {
        r.append(4);
        r.purge_behind(60);
        if r.rng.chance(30) {
            r.flush_here();
        }
        seen_spare |= free0.exists();
        assert!(
            !seen_spare || free0.exists(),
            "chunk 0's file was reused while a reader held its bytes"
        );
    }
    r.flush_here();
    r.wal().wait_worker_idle();
    assert!(
        free0.exists(),
        "chunk 0 was not kept as a spare (or was reused)"
    );
    let s = r.wal().access_stat();
    assert!(
        s.chunks_recycled > 0,
        "no other chunk was recycled meanwhile"
    );
    stop.store(true, Ordering::SeqCst);
    let rounds = checker.join().expect("held bytes changed");
    assert!(rounds > 0);
    for ((id, b), c) in held.iter().zip(&copy) {
        assert_eq!(&b[..], &c[..], "bytes of {id} changed");
    }
    drop(held);
    // Once the mapping is gone the spare may be reused: it is the oldest, so next.
    let i1 = r.rec.counts().installs;
    while free0.exists() && r.rec.counts().installs < i1 + 8 {
        r.append(4);
        r.purge_behind(60);
        r.flush_here();
    }
    assert!(
        !free0.exists(),
        "chunk 0's spare was never reused after the bytes were dropped"
    );
    r.close();
}

/// A recycled newest chunk whose earlier life held more records than the new one: the
/// stale records past the tail are left alone by a clean reopen (strict too) and by opens
/// after power loss, and new appends over them read back right.
#[test]
fn stale_records_past_a_recycled_tail_stay_inert() {
    let seed = seed_from_env("power_loss_recycle stale tail");
    let mut r = Run::new(seed);
    r.open();
    r.start_flushers();
    // Run until a rotation lands in a recycled chunk, then write a little into it.
    let mut rotations = 0;
    while rotations < 3 {
        let rec0 = r.rec.counts().recycles;
        let i0 = r.rec.counts().installs;
        while r.rec.counts().installs == i0 {
            r.step();
        }
        rotations += u64::from(r.rec.counts().recycles > rec0);
    }
    r.rec.phase("recycled tail", 16, 3, Mode::Random);
    for _ in 0..3 {
        r.append(2);
        r.flush_here();
        r.append(1);
        r.rec.capture_now();
    }
    let (tail, end) = r.wal().reader().tail_position().unwrap();
    r.close();
    let bytes = std::fs::read(&tail).unwrap();
    assert!(
        bytes[end as usize + 512..].iter().any(|&b| b != 0),
        "the newest chunk holds nothing past its tail: not a recycled one"
    );
    let caps = r.rec.take_captures();
    let hist = r.hist.lock();
    let all = Mark {
        registered: hist.records(),
        acked: hist.records(),
    };
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        let wal = Wal::open(cfg(r.dir.path()).recovery_mode(mode)).expect("clean reopen");
        matches_history(&hist, &held(&wal).unwrap(), all).unwrap();
        wal.close().unwrap();
    }
    // Append over the stale records, reopen strictly (check_image does that), twice.
    for _ in 0..2 {
        let img = Built {
            dir: crate::crash_util::copy_dir(r.dir.path()),
            names: BTreeMap::new(),
            dropped: 0,
            kept: 0,
        };
        check_image(&img, all, &hist, &mut r.rng).unwrap();
    }
    drop(hist);
    r.check("stale tail", seed, &caps, images_from_env(300) / 3);
}

/// A recycled chunk whose new header did not reach the disk still carries its earlier
/// life's header (and complete records of that life): open must never take it for the
/// new chunk. Prepared, it is not adopted; installed (which the engine never does before
/// the header is synced), it is refused.
#[test]
fn a_recycled_chunk_with_its_old_header_is_not_taken_for_the_new_one() {
    let seed = seed_from_env("power_loss_recycle old header");
    let mut r = Run::new(seed);
    r.open();
    while r.rec.counts().retires < 2 {
        r.step();
    }
    r.flush_here();
    r.wal().wait_worker_idle();
    // Old headers of the spares, then a crash right after a rotation into one of them.
    let spares: Vec<(String, Vec<u8>)> = r
        .rec
        .current_names()
        .into_iter()
        .filter(|n| n.ends_with(".free"))
        .map(|n| {
            let b = std::fs::read(r.dir.path().join(&n)).unwrap();
            (n, b[..chunkwal::format::HEADER_LEN].to_vec())
        })
        .collect();
    let rec0 = r.rec.counts().recycles;
    while r.rec.counts().recycles == rec0 {
        r.append(3);
    }
    r.append(3);
    let registered = r.hist.lock().records();
    r.take_wal().simulate_crash();
    let names = r.rec.current_names();
    let tmp = names.iter().find(|n| n.ends_with(".chunk.tmp")).unwrap();
    let (_, old_header) = spares
        .iter()
        .find(|(n, _)| !names.contains(n))
        .expect("the spare that was reused");
    let hist = r.hist.lock();
    let m = Mark {
        registered,
        acked: 0,
    };
    // Prepared under its temporary name with the old header: a leftover, not adopted.
    let img = crate::crash_util::copy_dir(r.dir.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path().join(tmp))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, old_header, 0).unwrap();
    let wal = Wal::open(cfg(img.path())).expect("open with an unadoptable prepared chunk");
    let h = held(&wal).unwrap();
    matches_history(&hist, &h, m).unwrap();
    drop(wal);
    // The same log without the prepared chunk at all.
    let without = crate::crash_util::copy_dir(r.dir.path());
    std::fs::remove_file(without.path().join(tmp)).unwrap();
    let wal = Wal::open(cfg(without.path())).unwrap();
    let h0 = held(&wal).unwrap();
    drop(wal);
    assert_eq!(h, h0, "the prepared chunk with its old header was adopted");
    // With its own header it is adopted (so the case above was a real choice).
    let img = crate::crash_util::copy_dir(r.dir.path());
    let wal = Wal::open(cfg(img.path())).unwrap();
    let adopted = held(&wal).unwrap();
    matches_history(&hist, &adopted, m).unwrap();
    assert!(
        adopted.entries.len() > h0.entries.len(),
        "the prepared chunk was not adopted with its own header"
    );
    drop(wal);
    // Installed with the old header: refused, never read as the new chunk.
    let img = crate::crash_util::copy_dir(r.dir.path());
    let chunk = tmp.strip_suffix(".tmp").unwrap();
    std::fs::rename(img.path().join(tmp), img.path().join(chunk)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path().join(chunk))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, old_header, 0).unwrap();
    match Wal::open(cfg(img.path())) {
        Err(Error::Corruption {
            reason: CorruptionKind::SeqMismatch { .. },
            ..
        }) => {}
        Err(e) => panic!("open failed, but not for the header's sequence number: {e}"),
        Ok(wal) => panic!(
            "an installed chunk with another chunk's header was opened: {:?}",
            held(&wal).unwrap().state
        ),
    }
}
