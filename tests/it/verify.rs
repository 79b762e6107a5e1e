//! Verification of sealed chunks: `Config::verify_on_open`, `Wal::verify` (foreground, with
//! progress) and the background verifier (`Wal::verification`). Corruption of a sealed
//! record is a structured `Error::Corruption` with its chunk and offset wherever it shows:
//! at a full open, in `Wal::verify`, on read, and in the background status.

use std::os::unix::fs::FileExt;
use std::path::Path;

use chunkwal::inspect::chunk_file_name;
use chunkwal::{Config, Error, LogId, Reader, VerifyOnOpen, VerifyProgress, Wal};

use crate::common::*;

/// Entries 1..=`last`, 200-byte payloads: about 280 per 64 KiB chunk.
const LEN: usize = 200;

fn write_log(dir: &Path, last: u64) {
    let wal = open(dir);
    for i in (1..=last).step_by(100) {
        wal.append(entries(i, (i + 100).min(last + 1), 1, LEN))
            .unwrap();
    }
    wal.close().unwrap();
}

fn full(dir: &Path) -> Config {
    cfg(dir).verify_on_open(VerifyOnOpen::Full)
}

fn lazy(dir: &Path) -> Config {
    cfg(dir).verify_on_open(VerifyOnOpen::Lazy)
}

/// The chunk and record offset of entry `index`, and a byte inside its payload.
fn place(wal: &Wal, index: u64) -> (u64, u64, u64) {
    let (path, start, _) = wal.locate(index).expect("held");
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let chunk = (0..1000)
        .find(|&s| chunk_file_name(s) == name)
        .expect("a chunk file");
    // Record header (24 bytes), id (16), then the payload.
    (chunk, start, start + 24 + 16 + 20)
}

/// Flip one bit of the byte at `at` of chunk `chunk`'s file, through the file. A live log
/// maps its chunks shared, so it sees the change: the same as a disk that damaged the
/// bytes after open checked them.
fn flip(dir: &Path, chunk: u64, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(chunk_file_name(chunk)))
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, at).unwrap();
}

fn assert_corruption_at(e: &Error, chunk: u64, offset: u64) {
    match e {
        Error::Corruption {
            chunk: c,
            offset: o,
            ..
        } => assert_eq!((*c, *o), (chunk, offset), "{e}"),
        other => panic!("expected corruption in chunk {chunk} at {offset}, got {other}"),
    }
}

/// Wait (bounded) until the background verifier is done.
fn wait_done(wal: &Wal) -> chunkwal::VerifyStatus {
    for _ in 0..6000 {
        let s = wal.verification();
        if s.done {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("background verification not done: {:?}", wal.verification());
}

/// A log of `last` entries whose entry 50 (in sealed chunk 0) has a damaged payload byte:
/// (dir, chunk, record offset).
fn damaged_log(last: u64) -> (tempfile::TempDir, u64, u64) {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), last);
    let (chunk, off, at) = {
        let wal = open(d.path());
        let p = place(&wal, 50);
        wal.close().unwrap();
        p
    };
    assert_eq!(chunk, 0);
    flip(d.path(), chunk, at);
    (d, chunk, off)
}

#[test]
fn full_open_refuses_a_damaged_sealed_record() {
    let (d, chunk, off) = damaged_log(2000);
    let e = Wal::open(full(d.path())).unwrap_err();
    assert_corruption_at(&e, chunk, off);
}

/// What holds whether or not a lazy open checks sealed records: the damage is found with
/// its place, by open, or else by `verify`, by a read and by the background verifier.
#[test]
fn lazy_open_finds_a_damaged_sealed_record_somewhere() {
    let (d, chunk, off) = damaged_log(2000);
    let wal = match Wal::open(lazy(d.path())) {
        Err(e) => return assert_corruption_at(&e, chunk, off),
        Ok(w) => w,
    };
    let e = wal.verify(|_| {}).unwrap_err();
    assert_corruption_at(&e, chunk, off);
    assert_corruption_at(&wal.entry(50).unwrap_err(), chunk, off);
    assert_corruption_at(&wal.read(40..60).unwrap_err(), chunk, off);
    // The rest of the log reads around it.
    assert_holds(&wal, 51, 2001, 1, LEN);
    // Open did not check chunk 0, so the background verifier did.
    let s = wait_done(&wal);
    assert_corruption_at(s.corruption.as_ref().expect("found"), chunk, off);
    assert!(s.chunks_corrupt >= 1, "{s:?}");
    // Not poisoned.
    wal.append(entries(2001, 2002, 1, LEN)).unwrap();
    wal.flush_blocking().unwrap();
    wal.close().unwrap();
}

#[test]
fn verify_passes_a_good_log_and_reports_each_chunk() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 2000);
    let wal = open(d.path());
    // The newest chunk is checked up to what is written, so appends may be in flight.
    wal.append(entries(2001, 2051, 1, LEN)).unwrap();
    let chunks = wal.stat().chunks.len();
    assert!(chunks >= 5, "{chunks}");
    let mut seen: Vec<VerifyProgress> = Vec::new();
    let r = wal.verify(|p| seen.push(p)).unwrap();
    assert_eq!(r.chunks, chunks);
    assert_eq!(r.skipped, 0);
    assert_eq!(seen.len(), chunks);
    for (k, p) in seen.iter().enumerate() {
        assert_eq!(p.chunks_done, k + 1);
        assert_eq!(p.chunks_total, chunks);
        assert!(k == 0 || p.chunk > seen[k - 1].chunk, "{seen:?}");
        assert!(k == 0 || p.bytes > seen[k - 1].bytes, "{seen:?}");
    }
    // At least one record per entry (plus state records and seals).
    assert!(r.records > 2050, "{r:?}");
    assert_eq!(
        (r.records, r.bytes),
        (seen[chunks - 1].records, seen[chunks - 1].bytes)
    );
    // A read handle checks the same.
    let r2 = wal.reader().verify(|_| {}).unwrap();
    assert_eq!(
        (r2.chunks, r2.records, r2.bytes),
        (r.chunks, r.records, r.bytes)
    );
    wal.close().unwrap();
}

/// `verify` takes no lock: the progress callback appends (rotating into new chunks) and
/// purges chunks the check has not reached yet, on the verifying thread itself (a writer
/// lock held by `verify` would deadlock here). Purged
/// chunks are skipped; chunks created meanwhile are not checked.
#[test]
fn verify_lets_writes_and_purges_go_on() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 2000);
    let wal = open(d.path());
    let before = wal.stat().chunks.len();
    // Entry 1100 lies past the first chunks: purging up to it retires them.
    let upto = 1100;
    let mut next = 2001;
    let r = wal
        .verify(|p| {
            wal.append(entries(next, next + 300, 1, LEN)).unwrap();
            next += 300;
            if p.chunks_done == 1 {
                wal.purge(LogId::new(1, upto)).unwrap();
            }
        })
        .unwrap();
    assert!(r.skipped >= 1, "{r:?}");
    assert_eq!(r.chunks + r.skipped, before, "{r:?}");
    assert!(
        wal.stat().chunks.len() > before - r.skipped,
        "the appends rotated"
    );
    assert_holds(&wal, upto + 1, next, 1, LEN);
    wal.close().unwrap();
}

/// Damage a sealed record after open checked it: `verify`, the read and the background
/// verifier report it with its place, and the log is not poisoned.
#[test]
fn damage_after_open_is_found_by_verify_read_and_background() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 2000);
    let wal = open(d.path());
    // An entry in a sealed chunk in the middle of the log.
    let (chunk, off, at) = place(&wal, 900);
    let newest = wal.stat().chunks.last().unwrap().seq;
    assert!(chunk > 0 && chunk < newest, "{chunk} of {newest}");
    flip(d.path(), chunk, at);

    let mut reached = Vec::new();
    let e = wal.verify(|p| reached.push(p.chunk)).unwrap_err();
    assert_corruption_at(&e, chunk, off);
    // Progress was reported for every chunk before the damaged one, and no later one.
    assert_eq!(reached, (0..chunk).collect::<Vec<_>>());
    assert_corruption_at(&wal.entry(900).unwrap_err(), chunk, off);
    assert_corruption_at(&wal.read(..).unwrap_err(), chunk, off);
    assert_holds(&wal, 901, 2001, 1, LEN);

    wal.verify_in_background();
    let s = wait_done(&wal);
    assert_eq!(s.chunks_total, newest as usize, "every sealed chunk");
    assert_eq!(s.chunks_checked, s.chunks_total);
    assert_eq!(s.chunks_corrupt, 1);
    assert!(s.bytes_checked > 0);
    assert_corruption_at(s.corruption.as_ref().expect("found"), chunk, off);

    // Not poisoned: writes and flushes go on; the damage stays where it is.
    wal.append(entries(2001, 2101, 1, LEN)).unwrap();
    wal.flush_blocking().unwrap();
    assert_holds(&wal, 901, 2101, 1, LEN);
    wal.close().unwrap();
    let e = Wal::open(full(d.path())).unwrap_err();
    assert_corruption_at(&e, chunk, off);
}

#[test]
fn background_verifier_checks_every_sealed_chunk_of_a_good_log() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 3000);
    let wal = open(d.path());
    // Nothing handed over by an open that checked everything: done at once.
    let s0 = wal.verification();
    if s0.chunks_total == 0 {
        assert!(s0.done && s0.corruption.is_none(), "{s0:?}");
    }
    wal.verify_in_background();
    let s = wait_done(&wal);
    let sealed = wal.stat().chunks.len() - 1;
    assert_eq!(s.chunks_total, sealed);
    assert_eq!(s.chunks_checked + s.chunks_skipped, sealed);
    assert_eq!(s.chunks_skipped, 0);
    assert_eq!(s.chunks_corrupt, 0);
    assert!(s.corruption.is_none(), "{s:?}");
    // About chunk_size per sealed chunk, and never more.
    assert!(s.bytes_checked <= sealed as u64 * SMALL_CHUNK, "{s:?}");
    assert!(s.bytes_checked > sealed as u64 * SMALL_CHUNK / 2, "{s:?}");
    wal.close().unwrap();
}

/// Close and drop stop a running background verification and wait for it, without
/// waiting for it to finish: many chunks, closed right after the verification started.
#[test]
fn close_and_drop_do_not_wait_for_a_background_verification() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 40_000);
    for round in 0..4 {
        let wal = Wal::open(lazy(d.path())).unwrap();
        assert!(wal.stat().chunks.len() > 100);
        // Round 0: only what the lazy open handed over (nothing while open checks every
        // chunk itself).
        if round > 0 {
            wal.verify_in_background();
        }
        match round {
            0 | 1 => wal.close().unwrap(),
            2 => drop(wal),
            // A read handle that outlives the log keeps its chunks, not the verifier.
            _ => {
                let reader: Reader = wal.reader();
                wal.close().unwrap();
                assert_eq!(reader.entry(7).unwrap().unwrap().1, payload(7, LEN));
            }
        }
    }
    let wal = Wal::open(lazy(d.path())).unwrap();
    assert_holds(&wal, 1, 40_001, 1, LEN);
    wal.close().unwrap();
}

/// A purge while the background verifier runs: the chunks it removed are skipped or were
/// checked before, never reported as damage, and the purge recycles them as usual.
#[test]
fn background_verifier_skips_chunks_purged_meanwhile() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 3000);
    let wal = open(d.path());
    let sealed = wal.stat().chunks.len() - 1;
    wal.verify_in_background();
    wal.purge(LogId::new(1, 2000)).unwrap();
    wal.flush_blocking().unwrap();
    // New chunks may reuse the purged files.
    wal.append(entries(3001, 4001, 1, LEN)).unwrap();
    let s = wait_done(&wal);
    assert_eq!(s.chunks_total, sealed);
    assert_eq!(s.chunks_checked + s.chunks_skipped, sealed, "{s:?}");
    assert!(s.corruption.is_none(), "{s:?}");
    assert_holds(&wal, 2001, 4001, 1, LEN);
    wal.verify(|_| {}).unwrap();
    wal.close().unwrap();
}
