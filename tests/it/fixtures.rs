//! Every on-disk format version keeps a small fixture in `tests/fixtures/`, written by the
//! code of that version, and this test opens and reads it. Regenerate a fixture only for a
//! new version: `cargo test --release --test it write_format_v1_fixture -- --ignored`
//! writes `tests/fixtures/format-v1/` with the current code (format version 1).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};

use crate::common::{payload, SMALL_CHUNK};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copy a fixture to a scratch directory (opening may write: a checkpoint, a new chunk).
fn copy(src: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

/// What the v1 fixture holds: entries 1..=150 of terms 1 and 2 (across rotations), purged
/// through 20, truncated at 141 and 141..=150 rewritten in term 3, a vote, a commit and user
/// data.
fn write_v1(dir: &Path) {
    let wal = Wal::open(Config::new(dir).chunk_size(SMALL_CHUNK)).unwrap();
    let term = |i: u64| if i <= 80 { 1 } else { 2 };
    for from in (1..=150u64).step_by(10) {
        wal.append((from..from + 10).map(|i| (LogId::new(term(i), i), payload(i, 700))))
            .unwrap();
    }
    wal.save_vote(Bytes::from_static(b"term=3,voted_for=2"))
        .unwrap();
    wal.purge(LogId::new(1, 20)).unwrap();
    wal.replace_range(
        141,
        (141..=150).map(|i| (LogId::new(3, i), payload(i ^ 3, 700))),
    )
    .unwrap();
    wal.commit(LogId::new(3, 145)).unwrap();
    wal.save_user_data(Some(Bytes::from_static(b"app-state")))
        .unwrap();
    wal.close().unwrap();
}

#[test]
#[ignore = "writes the format v1 fixture; run by hand only for a new format version"]
fn write_format_v1_fixture() {
    let dir = fixture("format-v1");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_v1(&dir);
    let _ = std::fs::remove_file(dir.join(chunkwal::inspect::LOCK_FILE));
}

#[test]
fn format_v1_fixture_opens_and_reads() {
    let d = copy(&fixture("format-v1"));
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).expect("open v1");
    let s = wal.log_state();
    assert_eq!(s.last, Some(LogId::new(3, 150)));
    assert_eq!(s.purged, Some(LogId::new(1, 20)));
    assert_eq!(s.committed, Some(LogId::new(3, 145)));
    assert_eq!(s.vote.as_deref(), Some(&b"term=3,voted_for=2"[..]));
    assert_eq!(s.user_data.as_deref(), Some(&b"app-state"[..]));
    let got = wal.read(21..151).expect("read v1");
    assert_eq!(got.len(), 130);
    for (id, p) in got {
        let (term, want) = match id.index {
            i if i <= 80 => (1, payload(i, 700)),
            i if i <= 140 => (2, payload(i, 700)),
            i => (3, payload(i ^ 3, 700)),
        };
        assert_eq!(id.term, term, "term of {}", id.index);
        assert_eq!(p, want, "payload of {}", id.index);
    }
    // The fixture also takes new writes.
    wal.append([(LogId::new(3, 151), payload(151, 10))])
        .unwrap();
    wal.flush_blocking().unwrap();
}
