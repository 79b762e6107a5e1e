//! Batch compression (feature `compression`, record kind 10): compressible runs are stored as
//! Batch records and read back equal, through truncation and purge inside a batch, reopen,
//! and damage (a CRC mismatch, or valid-CRC bytes that do not decompress, or a hostile raw
//! length: a structured `Corruption`, never a panic). A build without the feature opens a
//! compressed log (the committed fixture `tests/fixtures/compressed-v2/`) and reading a
//! member is `Error::CompressionUnsupported`.

#[cfg(feature = "compression")]
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
#[cfg(feature = "compression")]
use chunkwal::inspect::chunk_file_name;
use chunkwal::inspect::{inspect_dir, DumpRecord, OwnedRecord};
#[cfg(feature = "compression")]
use chunkwal::{Compression, CorruptionKind, Error, Wal};
use chunkwal::{Config, LogId};

use crate::common::{payload, SMALL_CHUNK};

/// A JSON-like payload of about `len` bytes: compresses well, and differs per index.
pub fn json_payload(index: u64, len: usize) -> Bytes {
    let mut s = format!(
        "{{\"id\":{index},\"op\":\"put\",\"key\":\"user/{:08}\",\"value\":\"",
        index % 977
    );
    let words = ["lorem ", "ipsum ", "dolor ", "sit ", "amet "];
    let mut k = index as usize;
    while s.len() + 2 < len {
        s.push_str(words[k % words.len()]);
        k += 1;
    }
    s.truncate(len.saturating_sub(2).max(s.len().min(60)));
    s.push_str("\"}");
    Bytes::from(s)
}

fn json_entries(from: u64, to: u64, term: u64, len: usize) -> Vec<(LogId, Bytes)> {
    (from..to)
        .map(|i| (LogId::new(term, i), json_payload(i, len)))
        .collect()
}

fn records(dir: &Path) -> Vec<DumpRecord> {
    let mut out = Vec::new();
    inspect_dir(dir, &mut |r| out.push(r.clone()), &mut |_| {}).unwrap();
    out
}

fn batches(dir: &Path) -> Vec<DumpRecord> {
    records(dir)
        .into_iter()
        .filter(|r| matches!(r.record, OwnedRecord::Batch { .. }))
        .collect()
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compressed-v2")
}

/// What the compressed fixture holds: entries 1..=60 of term 1 (JSON-like, 300 bytes), then
/// 61..=70 of term 2 (incompressible, plain entry records), all in one chunk.
fn fixture_expected() -> Vec<(LogId, Bytes)> {
    let mut v = json_entries(1, 61, 1, 300);
    v.extend((61..=70).map(|i| (LogId::new(2, i), payload(i, 300))));
    v
}

fn copy_dir(src: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

/// A build without the feature opens the compressed fixture and replays it (state, terms,
/// plain entries), but reading a member is the structured `CompressionUnsupported` error;
/// with the feature every entry reads back equal.
#[test]
fn compressed_fixture_opens_in_every_build() {
    let d = copy_dir(&fixture_dir());
    let wal = chunkwal::Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).unwrap();
    let want = fixture_expected();
    assert_eq!(wal.log_state().last, Some(LogId::new(2, 70)));
    assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(70)));
    assert_eq!(wal.term(30), Some(1));
    assert_eq!(wal.read(61..=70).unwrap(), want[60..].to_vec());
    #[cfg(feature = "compression")]
    assert_eq!(wal.read(..).unwrap(), want);
    #[cfg(not(feature = "compression"))]
    {
        let e = wal.read(1..=3).unwrap_err();
        assert!(
            matches!(
                e,
                chunkwal::Error::CompressionUnsupported {
                    index: 1,
                    chunk: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(matches!(
            wal.entry(40),
            Err(chunkwal::Error::CompressionUnsupported { index: 40, .. })
        ));
    }
    drop(wal);
    assert!(
        !batches(d.path()).is_empty(),
        "the fixture holds batch records"
    );
}

/// Writes `tests/fixtures/compressed-v2/` (run by hand; needs feature `compression`).
#[cfg(feature = "compression")]
#[test]
#[ignore = "writes the compressed fixture; run by hand only to regenerate it"]
fn write_compressed_fixture() {
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let wal = Wal::open(lz4(&dir, 256)).unwrap();
    let want = fixture_expected();
    wal.append(want[..30].to_vec()).unwrap();
    wal.append(want[30..60].to_vec()).unwrap();
    wal.append(want[60..].to_vec()).unwrap();
    wal.close().unwrap();
    let _ = std::fs::remove_file(dir.join(chunkwal::inspect::LOCK_FILE));
}

#[cfg(feature = "compression")]
fn lz4(dir: &Path, min: usize) -> Config {
    Config::new(dir)
        .chunk_size(SMALL_CHUNK)
        .compression(Compression::lz4(min))
}

#[cfg(feature = "compression")]
fn open_lz4(dir: &Path) -> Wal {
    Wal::open(lz4(dir, 256)).unwrap()
}

/// Reads after the cache let go of the appended payloads: they come from the Batch records.
#[cfg(feature = "compression")]
fn uncached(wal: &Wal) {
    wal.flush_blocking().unwrap();
    wal.evict_durable_from_cache();
}

#[cfg(feature = "compression")]
#[test]
fn compressible_entries_round_trip_smaller_through_reopen() {
    let d = tempfile::tempdir().unwrap();
    let plain = tempfile::tempdir().unwrap();
    let want = json_entries(1, 1201, 1, 200);
    {
        let wal = open_lz4(d.path());
        let p = Wal::open(Config::new(plain.path()).chunk_size(SMALL_CHUNK)).unwrap();
        for c in want.chunks(100) {
            wal.append(c.to_vec()).unwrap();
            p.append(c.to_vec()).unwrap();
        }
        assert_eq!(wal.read(..).unwrap(), want, "from the cache");
        uncached(&wal);
        assert_eq!(wal.stat().cache.items, 0);
        assert_eq!(wal.read(..).unwrap(), want, "decompressed");
        assert!(wal.stat().cache.items > 0, "members went to the cache");
        for i in [1, 2, 599, 1200] {
            assert_eq!(wal.entry(i).unwrap().unwrap(), want[i as usize - 1]);
        }
        let (z, n) = (wal.on_disk_size(), p.on_disk_size());
        assert!(z * 2 < n, "compressed {z} bytes vs plain {n}");
        assert!(wal.stat().chunks.len() < p.stat().chunks.len());
    }
    let b = batches(d.path());
    assert!(b.len() >= 12, "{} batches", b.len());
    let members: u64 = b
        .iter()
        .map(|r| match r.record {
            OwnedRecord::Batch { count, .. } => u64::from(count),
            _ => 0,
        })
        .sum();
    assert_eq!(
        members, 1200,
        "every entry is a member (nothing stored twice)"
    );
    let wal = open_lz4(d.path());
    assert_eq!(wal.read(..).unwrap(), want, "after reopen");
    assert_eq!(wal.read_bounded(5.., 1000).unwrap(), want[4..9].to_vec());
    let it: Vec<_> = wal.iter(300..=700).unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(it, want[299..700].to_vec());
}

#[cfg(feature = "compression")]
#[test]
fn mixed_compressible_incompressible_and_terms() {
    let d = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    {
        let wal = open_lz4(d.path());
        for round in 0..12u64 {
            let from = round * 20 + 1;
            let es: Vec<_> = (from..from + 20)
                .map(|i| {
                    // Term changes inside a call; every third call is random bytes; one is
                    // below the threshold.
                    let term = 1 + i / 50;
                    let p = match round % 3 {
                        0 => payload(i, 300),
                        1 => json_payload(i, 400),
                        _ if round == 5 => Bytes::from(format!("{i}")),
                        _ => json_payload(i, 3000),
                    };
                    (LogId::new(term, i), p)
                })
                .collect();
            wal.append(es.clone()).unwrap();
            want.extend(es);
        }
        uncached(&wal);
        assert_eq!(wal.read(..).unwrap(), want);
    }
    let recs = records(d.path());
    let mut kinds = (0, 0);
    for r in &recs {
        match &r.record {
            OwnedRecord::Entry { id, payload } => {
                kinds.0 += 1;
                assert_eq!(*payload, want[id.index as usize - 1].1, "plain entry {id}");
            }
            OwnedRecord::Batch { first, count, .. } => {
                kinds.1 += 1;
                let last = first.index + u64::from(*count) - 1;
                assert!(
                    (first.index..=last).all(|i| want[i as usize - 1].0.term == first.term),
                    "a batch has one term"
                );
            }
            _ => {}
        }
    }
    assert!(
        kinds.0 >= 80 && kinds.1 >= 4,
        "entries and batches: {kinds:?}"
    );
    let wal = open_lz4(d.path());
    assert_eq!(wal.read(..).unwrap(), want);
}

#[cfg(feature = "compression")]
#[test]
fn truncate_and_purge_inside_a_batch() {
    let d = tempfile::tempdir().unwrap();
    let mut want = json_entries(1, 101, 1, 300);
    {
        let wal = open_lz4(d.path());
        wal.append(want.clone()).unwrap();
        let b = batches(d.path());
        let OwnedRecord::Batch { first, count, .. } = b[0].record else {
            unreachable!()
        };
        assert_eq!(first.index, 1);
        assert!(count > 60, "one batch holds entries 1..={count}");
        wal.truncate(51).unwrap();
        want.truncate(50);
        uncached(&wal);
        assert_eq!(wal.read(..).unwrap(), want);
        assert!(matches!(wal.read(50..=51), Err(Error::OutOfRange { .. })));
        assert_eq!(wal.entry(51).unwrap(), None);
        wal.purge(LogId::new(1, 20)).unwrap();
        want.drain(..20);
        uncached(&wal);
        assert_eq!(wal.read(..).unwrap(), want);
        assert_eq!(wal.first_index(), Some(21));
        // The truncated tail is rewritten in term 2 after the batch.
        let more = json_entries(51, 81, 2, 300);
        wal.append(more.clone()).unwrap();
        want.extend(more);
        uncached(&wal);
        assert_eq!(wal.read(..).unwrap(), want);
    }
    // The first batch is still on disk whole; the index kept only its live members.
    let b = batches(d.path());
    assert!(matches!(b[0].record, OwnedRecord::Batch { first, .. } if first.index == 1));
    let wal = open_lz4(d.path());
    assert_eq!(wal.read(..).unwrap(), want, "after reopen");
    assert_eq!((wal.first_index(), wal.last_index()), (Some(21), Some(80)));
    assert_eq!(wal.term(50), Some(1));
    assert_eq!(wal.term(51), Some(2));
}

/// The first Batch record's place: (chunk file, record offset, encoded length).
#[cfg(feature = "compression")]
fn first_batch(dir: &Path) -> (PathBuf, u64, u64) {
    let b = &batches(dir)[0];
    (dir.join(chunk_file_name(b.chunk)), b.offset, b.encoded_len)
}

/// Rewrite bytes of a record and (optionally) its CRC, as a writer with a bug would.
#[cfg(feature = "compression")]
fn patch(path: &Path, rec: u64, len: u64, at: u64, bytes: &[u8], fix_crc: bool) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.write_all_at(bytes, rec + at).unwrap();
    if fix_crc {
        let mut head = [0u8; 24];
        f.read_exact_at(&mut head, rec).unwrap();
        let body = u32::from_le_bytes(head[4..8].try_into().unwrap()) as u64;
        assert!(24 + body <= len);
        let mut all = vec![0u8; (24 + body) as usize];
        f.read_exact_at(&mut all, rec).unwrap();
        let crc = crc32c(&all[4..]);
        f.write_all_at(&crc.to_le_bytes(), rec).unwrap();
    }
}

/// CRC-32C (Castagnoli), bitwise: the tests' own, independent of the library's.
#[cfg(feature = "compression")]
fn crc32c(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A log whose first batch is in a sealed chunk (more chunks follow).
#[cfg(feature = "compression")]
fn sealed_batch_log() -> (tempfile::TempDir, Vec<(LogId, Bytes)>) {
    let d = tempfile::tempdir().unwrap();
    // Batches first, then random bytes (plain entries) to fill chunks.
    let mut want = json_entries(1, 201, 1, 300);
    want.extend((201..601).map(|i| (LogId::new(1, i), payload(i, 300))));
    let wal = open_lz4(d.path());
    for c in want.chunks(100) {
        wal.append(c.to_vec()).unwrap();
    }
    wal.close().unwrap();
    assert!(records(d.path()).iter().any(|r| r.chunk > 0), "rotated");
    (d, want)
}

#[cfg(feature = "compression")]
fn is_corruption(e: &Error, what: Option<&str>) -> bool {
    match e {
        Error::Corruption { reason, .. } => match what {
            None => true,
            Some(w) => {
                matches!(reason, CorruptionKind::BadBody { kind: "batch", what } if *what == w)
            }
        },
        _ => false,
    }
}

#[cfg(feature = "compression")]
#[test]
fn damaged_compressed_bytes_are_corruption_on_read_and_at_full_open() {
    // A flipped byte (CRC mismatch): reads of the member fail, a full open fails.
    let (d, want) = sealed_batch_log();
    let (path, rec, len) = first_batch(d.path());
    {
        let wal = open_lz4(d.path());
        assert_eq!(wal.read(1..=3).unwrap(), want[..3].to_vec());
        patch(&path, rec, len, 32 + 40, &[0xEE, 0x11], false);
        // The members cached by the read above are still served; evict them.
        wal.evict_durable_from_cache();
        let e = wal.read(1..=3).unwrap_err();
        assert!(
            matches!(e, Error::Corruption { chunk: 0, offset, .. } if offset == rec),
            "{e:?}"
        );
    }
    let full = lz4(d.path(), 256).verify_on_open(chunkwal::VerifyOnOpen::Full);
    let e = Wal::open(full).unwrap_err();
    assert!(is_corruption(&e, None), "{e:?}");

    // Compressed bytes that do not decode, with a valid CRC (written that way): open
    // replays the head alone and succeeds; a read of a member is a structured Corruption.
    // (The first LZ4 sequence copies from before the start of the output.)
    let (d, want) = sealed_batch_log();
    let (path, rec, len) = first_batch(d.path());
    patch(&path, rec, len, 24 + 32, &[0x0F, 0x01, 0x00], true);
    let full = lz4(d.path(), 256).verify_on_open(chunkwal::VerifyOnOpen::Full);
    let wal = Wal::open(full).unwrap();
    let e = wal.read(1..=3).unwrap_err();
    assert!(
        is_corruption(&e, Some("compressed bytes do not decode")),
        "{e:?}"
    );
    assert_eq!(
        wal.read(500..).unwrap(),
        want[499..].to_vec(),
        "other records read"
    );
}

#[cfg(feature = "compression")]
#[test]
fn hostile_raw_length_is_a_structured_error() {
    // raw_len is at body offset 24 (record offset 24 + 24).
    let (d, _) = sealed_batch_log();
    let (path, rec, len) = first_batch(d.path());
    // Larger than a chunk but possible for the compressed length: refused before
    // allocating, on read.
    patch(
        &path,
        rec,
        len,
        48,
        &(SMALL_CHUNK as u32 + 1).to_le_bytes(),
        true,
    );
    let wal = open_lz4(d.path());
    let e = wal.read(1..=2).unwrap_err();
    assert!(
        is_corruption(&e, Some("raw length larger than a chunk")),
        "{e:?}"
    );
    // One byte off: the block does not decompress to it.
    drop(wal);
    let (d, _) = sealed_batch_log();
    let (path, rec, len) = first_batch(d.path());
    let mut raw = [0u8; 4];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut raw, rec + 48)
        .unwrap();
    let off_by_one = u32::from_le_bytes(raw) - 1;
    patch(&path, rec, len, 48, &off_by_one.to_le_bytes(), true);
    let wal = open_lz4(d.path());
    assert!(is_corruption(&wal.read(1..=2).unwrap_err(), None));
    // Impossible for its compressed length (u32::MAX): the record does not decode at all, so
    // open (which reads every head) refuses it.
    drop(wal);
    let (d, _) = sealed_batch_log();
    let (path, rec, len) = first_batch(d.path());
    patch(&path, rec, len, 48, &u32::MAX.to_le_bytes(), true);
    let full = lz4(d.path(), 256).verify_on_open(chunkwal::VerifyOnOpen::Full);
    let e = Wal::open(full).unwrap_err();
    assert!(
        is_corruption(&e, Some("raw length impossible for the compressed length")),
        "{e:?}"
    );
}

#[cfg(not(feature = "compression"))]
#[test]
fn asking_for_lz4_without_the_feature_is_a_config_error() {
    let d = tempfile::tempdir().unwrap();
    let c = Config::new(d.path()).compression(chunkwal::Compression::lz4(1024));
    assert!(matches!(
        chunkwal::Wal::open(c),
        Err(chunkwal::Error::InvalidConfig(
            chunkwal::ConfigError::CompressionUnavailable {
                codec: "lz4",
                feature: "compression"
            }
        ))
    ));
}
