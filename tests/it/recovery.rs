//! Torn tails, corruption, odd files: open either recovers exactly or names the damage.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chunkwal::inspect::{chunk_file_name, inspect_dir, OwnedRecord};
use chunkwal::{CorruptionKind, Error, LogId, RecoveryMode, Wal};

use crate::common::*;

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// (chunk, offset, len) of every entry record, in order.
fn entry_records(dir: &Path) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    inspect_dir(
        dir,
        &mut |r| {
            if let OwnedRecord::Entry { id, .. } = &r.record {
                out.push((id.index, r.chunk, r.offset, r.encoded_len));
            }
        },
        &mut |_| {},
    )
    .unwrap();
    out
}

fn patch(path: &Path, off: u64, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes[off as usize..]);
    std::fs::write(path, bytes).unwrap();
}

/// A log whose last records are 10 single-entry groups, left as a killed process leaves it.
fn crashed_log() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    for i in 1..=10 {
        wal.append(entries(i, i + 1, 1, 50)).unwrap();
    }
    wal.flush_blocking().unwrap();
    wal.simulate_crash();
    d
}

#[test]
fn torn_tail_at_every_byte_offset_of_the_last_record() {
    let base = crashed_log();
    let recs = entry_records(base.path());
    let &(idx, chunk, off, len) = recs.last().unwrap();
    assert_eq!(idx, 10);
    let file = chunk_file_name(chunk);
    let body_end = off + 24 + 16 + 50; // header, log id, payload; then padding
    for cut in off..off + len {
        for zero_fill in [false, true] {
            let d = copy_dir(base.path());
            let p = d.path().join(&file);
            if zero_fill {
                patch(&p, cut, |b| b[..(off + len - cut) as usize].fill(0));
            } else {
                OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
            }
            let wal = open(d.path());
            // Cutting only padding leaves the record whole.
            let expect_last = if cut >= body_end { 10 } else { 9 };
            assert_eq!(
                wal.log_state().last.map(|l| l.index),
                Some(expect_last),
                "cut at {cut} (zero_fill {zero_fill})"
            );
            assert_holds(&wal, 1, expect_last + 1, 1, 50);
            // The log takes new appends and keeps them over a reopen.
            wal.append(entries(expect_last + 1, 13, 2, 50)).unwrap();
            drop(wal);
            let wal = open(d.path());
            assert_holds(&wal, expect_last + 1, 13, 2, 50);
        }
    }
}

#[test]
fn strict_mode_refuses_a_torn_tail() {
    let base = crashed_log();
    let &(_, chunk, off, _) = entry_records(base.path()).last().unwrap();
    let p = base.path().join(chunk_file_name(chunk));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(off + 20)
        .unwrap();
    let err = Wal::open(cfg(base.path()).recovery_mode(RecoveryMode::Strict)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                reason: CorruptionKind::TornTail,
                ..
            }
        ),
        "{err}"
    );
    // Strict changed nothing; the tolerant mode then repairs.
    let wal = open(base.path());
    assert_eq!(wal.log_state().last.map(|l| l.index), Some(9));
}

/// Write 200 entries in flushed batches, close cleanly, then damage entry `victim`.
fn damaged(victim: u64, damage: impl FnOnce(&mut [u8])) -> Result<Wal, Error> {
    let d = tempfile::tempdir().unwrap().keep();
    {
        let wal = open(&d);
        for b in 0..20 {
            wal.append(entries(b * 10 + 1, b * 10 + 11, 1, 100))
                .unwrap();
            wal.flush_blocking().unwrap();
        }
    }
    let (_, chunk, off, _) = *entry_records(&d).iter().find(|r| r.0 == victim).unwrap();
    patch(&d.join(chunk_file_name(chunk)), off, damage);
    Wal::open(cfg(&d))
}

#[test]
fn corrupted_length_byte_mid_log_is_an_error_not_a_shorter_log() {
    for victim in [1, 37, 100, 150, 199, 200] {
        let r = damaged(victim, |b| b[4] ^= 0x40);
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "victim {victim}: {:?}",
            r.map(|w| w.log_state())
        );
    }
}

#[test]
fn bit_flip_anywhere_in_a_record_is_an_error() {
    for (victim, byte) in [(3, 0), (50, 13), (120, 30), (160, 60), (200, 100)] {
        let r = damaged(victim, |b| b[byte] ^= 0x01);
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "victim {victim} byte {byte}"
        );
    }
}

#[test]
fn zeroed_record_mid_log_is_an_error() {
    let r = damaged(77, |b| b[..24].fill(0));
    assert!(matches!(r, Err(Error::Corruption { .. })));
}

#[test]
fn damage_in_a_sealed_chunk_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 2001, 1, 100)).unwrap();
    }
    let files = chunk_files(d.path());
    assert!(files.len() > 2);
    patch(&files[0], 2000, |b| b[0] ^= 0xff);
    let full = cfg(d.path()).verify_on_open(chunkwal::VerifyOnOpen::Full);
    let err = Wal::open(full).unwrap_err();
    assert!(matches!(err, Error::Corruption { chunk: 0, .. }), "{err}");
    // Lazy: chunk 0 is replayed from its footer, so open does not read the damaged entry;
    // reading it names the damage.
    let wal = Wal::open(cfg(d.path())).unwrap();
    let damaged = (1..=2000).find_map(|i| match wal.entry(i) {
        Err(Error::Corruption { chunk, .. }) => Some(chunk),
        Ok(Some(_)) => None,
        other => panic!("entry {i}: {other:?}"),
    });
    assert_eq!(damaged, Some(0));
}

#[test]
fn empty_newest_chunk_file_is_recovered_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 11, 1, 10)).unwrap();
    }
    let n = chunk_files(d.path()).len() as u64;
    std::fs::write(d.path().join(chunk_file_name(n)), b"").unwrap();
    let err = Wal::open(cfg(d.path()).recovery_mode(RecoveryMode::Strict)).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    let wal = open(d.path());
    assert_holds(&wal, 1, 11, 1, 10);
    wal.append(entries(11, 12, 1, 10)).unwrap();
}

#[test]
fn lone_empty_chunk_file_opens_as_an_empty_log() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(chunk_file_name(0)), b"").unwrap();
    let wal = open(d.path());
    assert_eq!(wal.log_state().last, None);
    wal.append(entries(1, 3, 1, 10)).unwrap();
}

#[test]
fn wrong_magic_is_reported() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(chunk_file_name(0)), vec![7u8; 4096]).unwrap();
    let err = Wal::open(cfg(d.path())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                reason: CorruptionKind::BadMagic,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn newer_format_version_is_reported() {
    let d = tempfile::tempdir().unwrap();
    write_newer_version_chunk(d.path());
    let err = Wal::open(cfg(d.path())).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found, .. } if found == chunkwal::format::FORMAT_VERSION + 1),
        "{err}"
    );
}

#[test]
fn missing_middle_chunk_is_reported() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 3001, 1, 100)).unwrap();
    }
    let files = chunk_files(d.path());
    std::fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(cfg(d.path())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corruption {
                reason: CorruptionKind::MissingChunk { missing: 1 },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn path_that_is_a_file_or_missing() {
    let f = tempfile::NamedTempFile::new().unwrap();
    assert!(matches!(
        Wal::open(cfg(f.path())),
        Err(Error::NotADirectory { .. })
    ));
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(&d.path().join("nope"));
    c.create_if_missing = false;
    assert!(matches!(Wal::open(c), Err(Error::NoSuchDirectory { .. })));
}

#[test]
fn purge_deletes_chunk_files_after_the_record_is_durable() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 3001, 1, 100)).unwrap();
    // Rotations install their chunk with the next job the worker gets: flush to see them.
    wal.flush_blocking().unwrap();
    let before = chunk_files(d.path()).len();
    wal.purge(LogId::new(1, 2900)).unwrap();
    wal.wait_worker_idle();
    let after = chunk_files(d.path()).len();
    assert!(after < before && after <= 2, "{before} -> {after}");
    assert_holds(&wal, 2901, 3001, 1, 100);
    drop(wal);
    let wal = open(d.path());
    assert_eq!(wal.log_state().purged, Some(LogId::new(1, 2900)));
    assert_holds(&wal, 2901, 3001, 1, 100);
}

#[test]
fn purge_past_the_end_then_continue() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 11, 1, 10)).unwrap();
        wal.purge(LogId::new(4, 50)).unwrap();
        assert_eq!(wal.log_state().last, Some(LogId::new(4, 50)));
        assert!(matches!(
            wal.append(entries(52, 53, 4, 10)),
            Err(Error::NonContiguous {
                expected: 51,
                got: 52
            })
        ));
        wal.append(entries(51, 61, 5, 10)).unwrap();
    }
    let wal = open(d.path());
    assert_eq!(wal.log_state().purged, Some(LogId::new(4, 50)));
    assert_holds(&wal, 51, 61, 5, 10);
}

#[test]
fn oversize_entries_are_rejected_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    let max = wal.max_payload() as usize;
    wal.append(entries(1, 2, 1, max)).unwrap();
    let err = wal.append(entries(2, 3, 1, max + 1)).unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { .. }), "{err}");
    wal.append(entries(2, 3, 1, 10)).unwrap();
    drop(wal);
    let wal = open(d.path());
    assert_holds(&wal, 1, 2, 1, max);
}

#[test]
fn replace_range_is_one_write() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 101, 1, 40)).unwrap();
        wal.replace_range(50, entries(50, 60, 2, 40)).unwrap();
        assert_eq!(wal.log_state().last, Some(LogId::new(2, 59)));
        wal.flush_blocking().unwrap();
        wal.simulate_crash();
    }
    // The truncate and its entries share one atomic group.
    let recs = entry_records(d.path());
    let wal = open(d.path());
    assert_holds(&wal, 50, 60, 2, 40);
    assert_holds(&wal, 1, 50, 1, 40);
    drop(wal);
    // Cut inside the replacing group: the old suffix must come back whole.
    let &(_, chunk, off, _) = recs.iter().rev().find(|r| r.0 == 55).unwrap();
    let d2 = copy_dir(d.path());
    OpenOptions::new()
        .write(true)
        .open(d2.path().join(chunk_file_name(chunk)))
        .unwrap()
        .set_len(off + 3)
        .unwrap();
    let wal = open(d2.path());
    assert_eq!(wal.log_state().last, Some(LogId::new(1, 100)));
    assert_holds(&wal, 1, 101, 1, 40);
}

/// Rotations hand their install to the worker with the next flush; after a process crash
/// before that flush, the next chunk is still a temporary file. Open adopts it (the entries
/// sat in the page cache, as every buffered append after a process crash does).
#[test]
fn process_crash_before_a_rotation_is_installed_keeps_the_new_chunk() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 3001, 1, 100)).unwrap();
    let chunks = wal.stat().chunks.len();
    assert!(chunks > 2, "no rotation");
    let tmps = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".chunk.tmp")
            })
            .count()
    };
    assert!(
        tmps(d.path()) > 0,
        "rotations were installed without a flush"
    );
    wal.simulate_crash();
    let newest_installed = chunk_files(d.path()).last().unwrap().clone();
    let synced = Arc::new(Mutex::new(Vec::new()));
    let mut c = cfg(d.path());
    let s2 = Arc::clone(&synced);
    c.sync_recorder = Some(Arc::new(move |p: &Path, from, to| {
        s2.lock().unwrap().push((p.to_path_buf(), from, to));
    }));
    let wal = Wal::open(c).unwrap();
    // Its successors were written after it was sealed, maybe only to the page cache: open
    // syncs it whole before installing them, as the rotation's install would have.
    assert!(
        synced
            .lock()
            .unwrap()
            .iter()
            .any(|(p, from, to)| *p == newest_installed && *from == 0 && *to == SMALL_CHUNK),
        "{} was not synced before its successor was adopted: {:?}",
        newest_installed.display(),
        synced.lock().unwrap()
    );
    assert_holds(&wal, 1, 3001, 1, 100);
    assert_eq!(wal.stat().chunks.len(), chunks);
    assert_eq!(tmps(d.path()), 0, "adopted chunks were not installed");
    assert_eq!(chunk_files(d.path()).len(), chunks);
    // And the log goes on from there, across another reopen.
    wal.append(entries(3001, 3101, 1, 100)).unwrap();
    drop(wal);
    assert_holds(&open(d.path()), 1, 3101, 1, 100);
}

/// The same, but the installed chunk before the temporary one lost its seal (as after a
/// power loss before the rotation's sync): the temporary chunk is not adopted, and the log
/// ends where the installed chunk's records end.
#[test]
fn a_prepared_chunk_after_an_unsealed_chunk_is_not_adopted() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 3001, 1, 100)).unwrap();
    wal.simulate_crash();
    let last = chunk_files(d.path()).last().unwrap().clone();
    let mut seal = None;
    inspect_dir(
        d.path(),
        &mut |r| {
            if matches!(r.record, OwnedRecord::Seal) {
                seal = Some((r.chunk, r.offset, r.encoded_len));
            }
        },
        &mut |_| {},
    )
    .unwrap();
    let (chunk, offset, len) = seal.expect("a sealed chunk");
    assert_eq!(d.path().join(chunk_file_name(chunk)), last);
    let f = OpenOptions::new().write(true).open(&last).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&vec![0u8; len as usize], offset).unwrap();
    drop(f);
    let in_last = entry_records(d.path())
        .iter()
        .filter(|r| r.1 == chunk)
        .map(|r| r.0)
        .max()
        .unwrap();
    let wal = open(d.path());
    assert_eq!(wal.log_state().last.map(|l| l.index), Some(in_last));
    assert_holds(&wal, 1, in_last + 1, 1, 100);
    assert!(
        std::fs::read_dir(d.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "the prepared chunk was kept"
    );
}
