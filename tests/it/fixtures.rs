//! Format fixtures: the rule is that **every on-disk format version keeps a fixture written
//! by the code of that version**, committed under `tests/fixtures/` and never rewritten, and
//! a test that opens it with the current code, checks the state and every entry, and writes
//! on top of it (its chunks stay in their version; new chunks are written in the current
//! one). `docs/format.md` ("Fixtures") lists them.
//!
//! This module holds what every version's fixture shares: the *standard content*
//! ([`write_standard_log`], checked by [`check_format_fixture`]) and the generator
//! [`write_format_fixture`]. The v1 fixtures' tests are in `fixtures_v1.rs`. The code that
//! first writes a new format version N adds, in a `fixtures_vN.rs`:
//!
//! ```text
//! #[test]
//! #[ignore = "writes the format vN fixture; run once, by the code that first writes vN"]
//! fn write_format_vN_fixture() {
//!     write_format_fixture(N, "format-vN-<commit>");
//! }
//!
//! #[test]
//! fn format_vN_fixture_opens_reads_and_takes_writes() {
//!     check_format_fixture("format-vN-<commit>", N);
//! }
//! ```
//!
//! runs `cargo test --release --test it write_format_vN_fixture -- --ignored` once, and
//! commits the directory with a README.md naming the commit whose code wrote it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkwal::format::FORMAT_VERSION;
use chunkwal::inspect::{inspect_dir, OwnedRecord};
use chunkwal::{Config, Error, LogId, LogState, RecoveryMode, VerifyOnOpen, Wal};

use crate::common::{payload, SMALL_CHUNK};

/// The directory of fixture `name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copy a fixture's chunk files to a scratch directory (opening may write: a checkpoint, a
/// new chunk). Its README.md stays behind.
pub fn copy(src: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "chunk") {
            std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    d
}

/// `(seq, format version)` of every chunk file of `dir`, oldest first; each must scan clean.
pub fn chunk_versions(dir: &Path) -> Vec<(u64, u32)> {
    let reports = inspect_dir(dir, &mut |_| {}, &mut |_| {}).unwrap();
    reports
        .iter()
        .map(|c| {
            assert!(c.error.is_none(), "chunk {}: {:?}", c.seq, c.error);
            (c.seq, c.header.as_ref().expect("header").version)
        })
        .collect()
}

/// The first entry record of every chunk of `dir` but the oldest: reads that straddle
/// these indexes cross a chunk boundary.
pub fn chunk_boundaries(dir: &Path) -> Vec<u64> {
    let mut firsts: Vec<(u64, u64)> = Vec::new();
    inspect_dir(
        dir,
        &mut |r| {
            if let (OwnedRecord::Entry { id, .. }, 0) = (&r.record, r.group) {
                if firsts.last().is_none_or(|&(c, _)| c != r.chunk) {
                    firsts.push((r.chunk, id.index));
                }
            }
        },
        &mut |_| {},
    )
    .unwrap();
    firsts.iter().skip(1).map(|&(_, i)| i).collect()
}

/// Payload of entry `id` in the standard content and in what tests append on top of it: a
/// rewritten entry (same index, new term) differs from the one it replaced, lengths vary
/// from 100 to 1199 bytes, and every 97th index is empty.
pub fn standard_payload(id: LogId) -> Bytes {
    let len = if id.index % 97 == 0 {
        0
    } else {
        100 + ((id.index * 131 + id.term * 17) % 1100) as usize
    };
    payload(id.index * 8 + id.term, len)
}

/// Append `from..=to` in `term` with [`standard_payload`]s, `batch` entries per call.
pub fn append_standard(wal: &Wal, term: u64, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i <= to {
        let end = (i + batch - 1).min(to);
        let ids = (i..=end).map(|j| LogId::new(term, j));
        wal.append(ids.map(|id| (id, standard_payload(id))))
            .unwrap();
        i = end + 1;
    }
}

/// First and last index the standard content holds.
pub const STANDARD_FIRST: u64 = 111;
/// See [`STANDARD_FIRST`].
pub const STANDARD_LAST: u64 = 470;

/// Term of live entry `index` of the standard content.
pub fn standard_term(index: u64) -> u64 {
    match index {
        ..=120 => 1,
        121..=250 => 2,
        251..=380 => 3,
        _ => 4,
    }
}

/// The standard content: with 64 KiB chunks, entries 1..=470 over chunks 0..=5 (terms 1 to
/// 4); a vote saved three times; a commit, then a later one; a plain truncation at 251 and
/// term-3 entries from there; user data saved twice; a `replace_range` at 381 with term-4
/// entries; a purge through 1-110 (past all of chunk 0, whose file goes). The code at
/// 2a80528 made the same calls (the program in `tests/fixtures/format-v1-2a80528/README.md`).
pub fn write_standard_log(wal: &Wal) {
    append_standard(wal, 1, 1, 120, 8);
    wal.save_vote(Bytes::from_static(b"term=1,voted_for=1"))
        .unwrap();
    append_standard(wal, 2, 121, 260, 10);
    wal.commit(LogId::new(2, 230)).unwrap();
    wal.truncate(251).unwrap();
    append_standard(wal, 3, 251, 270, 20);
    wal.save_vote(Bytes::from_static(b"term=3,voted_for=2"))
        .unwrap();
    append_standard(wal, 3, 271, 400, 13);
    wal.save_user_data(Some(Bytes::from_static(b"app-state-1")))
        .unwrap();
    wal.save_vote(Bytes::from_static(b"term=4,voted_for=1"))
        .unwrap();
    let ids = (381..=420).map(|i| LogId::new(4, i));
    wal.replace_range(381, ids.map(|id| (id, standard_payload(id))))
        .unwrap();
    wal.purge(LogId::new(1, 110)).unwrap();
    wal.commit(LogId::new(4, 410)).unwrap();
    append_standard(wal, 4, 421, 470, 50);
    wal.save_user_data(Some(Bytes::from_static(b"app-state-2")))
        .unwrap();
}

/// The state the standard content leaves.
pub fn standard_state() -> LogState {
    LogState {
        vote: Some(Bytes::from_static(b"term=4,voted_for=1")),
        last: Some(LogId::new(4, STANDARD_LAST)),
        committed: Some(LogId::new(4, 410)),
        purged: Some(LogId::new(1, 110)),
        user_data: Some(Bytes::from_static(b"app-state-2")),
    }
}

/// Write the standard content into `dir` with the current code and close it; the LOCK file
/// goes, so that the directory is only chunk files.
pub fn write_standard_dir(dir: &Path) {
    let wal = Wal::open(Config::new(dir).chunk_size(SMALL_CHUNK)).unwrap();
    write_standard_log(&wal);
    wal.close().unwrap();
    std::fs::remove_file(dir.join(chunkwal::inspect::LOCK_FILE)).unwrap();
}

/// Write fixture `name` with the standard content and the current code, which must write
/// format `version`. Refuses to overwrite: a committed fixture is never rewritten.
pub fn write_format_fixture(version: u32, name: &str) {
    assert_eq!(
        FORMAT_VERSION, version,
        "this code writes format v{FORMAT_VERSION}"
    );
    let dir = fixture(name);
    assert!(
        !dir.exists(),
        "{} exists: fixtures are never rewritten",
        dir.display()
    );
    std::fs::create_dir_all(&dir).unwrap();
    write_standard_dir(&dir);
}

/// Check that `wal` holds exactly `first..=last`, the entry at `i` being `id(i)` with its
/// [`standard_payload`]: one whole read, reads of 37 entries at every 29th index, and one
/// read across each chunk boundary in `bounds` (see [`chunk_boundaries`]).
pub fn check_entries(wal: &Wal, first: u64, last: u64, id: &dyn Fn(u64) -> LogId, bounds: &[u64]) {
    let check = |got: Vec<(LogId, Bytes)>, from: u64, to: u64| {
        assert_eq!(got.len() as u64, to - from + 1, "entries {from}..={to}");
        for ((got_id, p), i) in got.into_iter().zip(from..) {
            assert_eq!(got_id, id(i), "id of {i}");
            let want = standard_payload(got_id);
            assert!(
                p == want,
                "payload of {i}: {} bytes, want {}",
                p.len(),
                want.len()
            );
        }
    };
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Some(first), Some(last))
    );
    check(wal.read(..).unwrap(), first, last);
    for from in (first..=last).step_by(29) {
        let to = (from + 36).min(last);
        check(wal.read(from..=to).unwrap(), from, to);
    }
    for &b in bounds.iter().filter(|&&b| b > first && b <= last) {
        let (from, to) = (b.saturating_sub(3).max(first), (b + 3).min(last));
        check(wal.read(from..=to).unwrap(), from, to);
    }
    assert_eq!(wal.entry(first - 1).unwrap(), None);
    assert_eq!(wal.entry(last + 1).unwrap(), None);
    assert!(matches!(
        wal.read(first - 1..=first),
        Err(Error::OutOfRange { .. })
    ));
}

/// The ids of the standard content with [`write_on_top`]'s entries on top.
fn id_after_writes(index: u64) -> LogId {
    match index {
        ..=STANDARD_LAST => LogId::new(standard_term(index), index),
        471..=600 => LogId::new(5, index),
        _ => LogId::new(6, index),
    }
}

/// Write on top of the standard content with the current code: a purge through
/// `2-purge` (the oldest chunk file goes; with recycling it becomes a spare, which the
/// rotations that follow may try to reuse), term-5 entries 471..=620 (at least two
/// rotations), a `replace_range` at 601 with term-6 entries through 640, a commit, a vote.
fn write_on_top(wal: &Wal, purge: u64) {
    wal.purge(LogId::new(2, purge)).unwrap();
    wal.flush_blocking().unwrap();
    append_standard(wal, 5, STANDARD_LAST + 1, 620, 25);
    let ids = (601..=640).map(|i| LogId::new(6, i));
    wal.replace_range(601, ids.map(|id| (id, standard_payload(id))))
        .unwrap();
    wal.commit(LogId::new(6, 630)).unwrap();
    wal.save_vote(Bytes::from_static(b"term=6,voted_for=3"))
        .unwrap();
    wal.flush_blocking().unwrap();
}

/// Open a copy of fixture `name` (standard content, chunks in format `version`) and check it
/// with [`check_standard_dir`].
pub fn check_format_fixture(name: &str, version: u32) {
    let d = copy(&fixture(name));
    check_standard_dir(d.path(), version);
}

/// Open `dir` (standard content, chunks in format `version`) by default and in every
/// `RecoveryMode` × `VerifyOnOpen`, check it all (`Wal::verify` included), write on top,
/// and check again after a reopen: the old chunks keep their version and the new ones have
/// the current one.
pub fn check_standard_dir(dir: &Path, version: u32) {
    let name = dir.display();
    // The default, then each recovery mode with each verification mode.
    let modes = || {
        let c = || Config::new(dir).chunk_size(SMALL_CHUNK);
        let mut v = vec![c()];
        for r in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict] {
            for f in [VerifyOnOpen::Full, VerifyOnOpen::Lazy] {
                v.push(c().recovery_mode(r).verify_on_open(f));
            }
        }
        v
    };
    let old = chunk_versions(dir);
    assert!(old.len() >= 4, "{name}: {old:?}");
    assert!(old.iter().all(|&(_, v)| v == version), "{name}: {old:?}");
    let bounds = chunk_boundaries(dir);
    assert!(bounds.len() >= 3, "{bounds:?}");
    let id = |i| LogId::new(standard_term(i), i);
    for mode in modes() {
        let wal = Wal::open(mode.clone()).unwrap_or_else(|e| panic!("open {name} ({mode:?}): {e}"));
        assert_eq!(wal.log_state(), standard_state(), "{mode:?}");
        check_entries(&wal, STANDARD_FIRST, STANDARD_LAST, &id, &bounds);
        let report = wal.verify(|_| {}).expect("verify");
        assert_eq!(report.chunks, old.len(), "{mode:?}");
        wal.close().unwrap();
    }

    // Through the first entry of the second chunk: the oldest chunk file goes.
    let purge = bounds[0];
    assert!((121..250).contains(&purge), "{bounds:?}");
    let wal = Wal::open(Config::new(dir).chunk_size(SMALL_CHUNK)).unwrap();
    write_on_top(&wal, purge);
    wal.close().unwrap();
    let after = LogState {
        vote: Some(Bytes::from_static(b"term=6,voted_for=3")),
        last: Some(LogId::new(6, 640)),
        committed: Some(LogId::new(6, 630)),
        purged: Some(LogId::new(2, purge)),
        user_data: standard_state().user_data,
    };
    check_versions_after_writes(&old, &chunk_versions(dir));
    let bounds = chunk_boundaries(dir);
    for mode in modes() {
        let wal =
            Wal::open(mode.clone()).unwrap_or_else(|e| panic!("reopen {name} ({mode:?}): {e}"));
        assert_eq!(wal.log_state(), after, "{mode:?}");
        check_entries(&wal, purge + 1, 640, &id_after_writes, &bounds);
        wal.verify(|_| {}).expect("verify after writes");
        wal.close().unwrap();
    }
}

/// `old` chunks (`(seq, version)`) that are still there kept their version; the oldest went
/// (purged); at least two new ones came, in the current version.
fn check_versions_after_writes(old: &[(u64, u32)], now: &[(u64, u32)]) {
    let newest_old = old.last().unwrap().0;
    for &(seq, v) in now {
        if seq <= newest_old {
            assert!(old.contains(&(seq, v)), "chunk {seq}: {old:?} -> {now:?}");
        } else {
            assert_eq!(v, FORMAT_VERSION, "new chunk {seq}");
        }
    }
    let new = now.iter().filter(|c| c.0 > newest_old).count();
    assert!(new >= 2, "{old:?} -> {now:?}");
    assert!(
        now.iter().all(|c| c.0 != old[0].0),
        "purged chunk stays: {now:?}"
    );
}

#[test]
fn standard_content_written_now_passes_the_fixture_check() {
    let d = tempfile::tempdir().unwrap();
    write_standard_dir(d.path());
    check_standard_dir(d.path(), FORMAT_VERSION);
}
