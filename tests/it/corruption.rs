//! Corruption matrix: flip bytes in sealed chunks, the tail chunk, headers and state records.
//! Open and read must name the damage (`Error::Corruption` with chunk and offset) or, in the
//! tail under the tolerant mode, recover a prefix. Never wrong data, never a panic.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use chunkwal::inspect::{chunk_file_name, inspect_dir, OwnedRecord};
use chunkwal::{Config, Error, LogId, RecoveryMode, VerifyOnOpen, Wal};

use crate::common::SMALL_CHUNK;
use crate::crash_util::*;

const LAST: u64 = 150;

/// 150 entries over several chunks, with vote, commit and user data records in between.
fn base_log(crash: bool) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).unwrap();
    for b in 0..15 {
        wal.append(derived_entries(b * 10 + 1, b * 10 + 11, 1 + b / 5))
            .unwrap();
        if b % 4 == 1 {
            wal.save_vote(Bytes::from(format!("vote-{b}"))).unwrap();
            wal.commit(LogId::new(1 + b / 5, b * 10 + 5)).unwrap();
            wal.save_user_data(Some(Bytes::from_static(b"ud"))).unwrap();
        }
        wal.flush_blocking().unwrap();
    }
    if crash {
        wal.simulate_crash();
    } else {
        wal.close().unwrap();
    }
    d
}

/// What a byte flip hits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub chunk: u64,
    pub offset: u64,
    pub what: &'static str,
}

pub(crate) fn targets(dir: &Path, rng: &mut Rng) -> (Vec<Target>, u64) {
    let mut recs = Vec::new();
    let reports = inspect_dir(dir, &mut |r| recs.push(r.clone()), &mut |_| {}).unwrap();
    let last_chunk = reports.last().unwrap().seq;
    let mut out = Vec::new();
    for rep in &reports {
        for off in [0, 7, 8, 12, 16, 24, 31, 32, 40, 48, 56, 63] {
            out.push(Target {
                chunk: rep.seq,
                offset: off,
                what: "header",
            });
        }
        // The trailer of a sealed chunk (format v2): magic, tag, offsets, counts, CRC.
        if rep.seq != last_chunk {
            for off in [0, 7, 8, 12, 13, 16, 20, 24, 28, 31] {
                out.push(Target {
                    chunk: rep.seq,
                    offset: SMALL_CHUNK - 32 + off,
                    what: "trailer",
                });
            }
        }
        // Just past the last record: zero bytes that no record covers.
        let end = recs
            .iter()
            .filter(|r| r.chunk == rep.seq)
            .map(|r| r.offset + r.encoded_len)
            .max()
            .unwrap();
        for k in [0, 1, 9, 100] {
            out.push(Target {
                chunk: rep.seq,
                offset: end + k,
                what: "after-end",
            });
        }
    }
    for r in &recs {
        let what = match r.record {
            OwnedRecord::State(_) => "state",
            OwnedRecord::Entry { .. } => "entry",
            OwnedRecord::Seal => "seal",
            OwnedRecord::Index { .. } => "index",
            _ => "meta",
        };
        // Every record header field, a body byte and the last byte, for every state and seal
        // record, the tail chunk's records and a sample of the others.
        if what == "entry" && r.chunk != last_chunk && !rng.chance(25) {
            continue;
        }
        let body_end = r.offset + r.encoded_len - 1;
        let mut offs = vec![0, 3, 4, 7, 8, 9, 12, 16, 20, 24, 28];
        offs.push(24 + rng.below((r.encoded_len - 24).max(1)));
        for o in offs {
            out.push(Target {
                chunk: r.chunk,
                offset: (r.offset + o).min(body_end),
                what,
            });
        }
        out.push(Target {
            chunk: r.chunk,
            offset: body_end,
            what,
        });
    }
    (out, last_chunk)
}

pub(crate) fn flip(path: &Path, offset: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, offset).unwrap();
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    by_target: std::collections::BTreeMap<&'static str, u64>,
    named: u64,
    full: u64,
    prefix: u64,
    /// Lazy opens that did not read the damaged record, whose read then named it.
    named_on_read: u64,
}

fn check_case(
    base: &Path,
    t: Target,
    last_chunk: u64,
    (mode, verify): (RecoveryMode, VerifyOnOpen),
    rng: &mut Rng,
    n: &mut Tally,
) {
    let d = copy_dir(base);
    let mask = 1 + rng.below(255) as u8;
    flip(&d.path().join(chunk_file_name(t.chunk)), t.offset, mask);
    n.cases += 1;
    *n.by_target.entry(t.what).or_default() += 1;
    let cfg = Config::new(d.path())
        .chunk_size(SMALL_CHUNK)
        .recovery_mode(mode)
        .verify_on_open(verify);
    match Wal::open(cfg) {
        Err(Error::Corruption { chunk, offset, .. }) => {
            assert_eq!(chunk, t.chunk, "{t:?} mask {mask:#x}: wrong chunk named");
            assert!(
                offset <= t.offset,
                "{t:?}: damage reported at {offset}, after the flip"
            );
            n.named += 1;
        }
        Err(e) => panic!("{t:?} {mode:?}: unstructured error {e:?}"),
        Ok(wal) => {
            let s = wal.log_state();
            let last = s.last.map_or(0, |l| l.index);
            assert!(last <= LAST, "{t:?}: entries appeared");
            if last < LAST {
                assert!(
                    mode == RecoveryMode::TolerateTornTail && t.chunk == last_chunk,
                    "{t:?} {mode:?}: log silently cut to {last}"
                );
                n.prefix += 1;
            } else {
                n.full += 1;
            }
            // Whatever is there is exactly what was written. A lazy open replays sealed
            // chunks from their footers without reading their entries: a damaged one is
            // named when it is read.
            if verify == VerifyOnOpen::Lazy && t.chunk != last_chunk {
                n.named_on_read += verify_by_entry(&wal, t);
            } else {
                verify_log(&wal, None);
            }
            if let Some(v) = &s.vote {
                assert!(v.starts_with(b"vote-"), "{t:?}: vote altered");
            }
            if let Some(u) = &s.user_data {
                assert_eq!(&u[..], b"ud", "{t:?}: user data altered");
            }
            // A repaired log takes new writes.
            let next = last + 1;
            let term = s.last.map_or(1, |l| l.term);
            wal.append(derived_entries(next, next + 1, term)).unwrap();
            wal.flush_blocking().unwrap();
        }
    }
}

/// Read every entry of `wal` one at a time: each is what was written, or a `Corruption`
/// naming the damaged chunk `t`. Returns 1 if one was named.
fn verify_by_entry(wal: &Wal, t: Target) -> u64 {
    let s = wal.log_state();
    let Some(last) = s.last else { return 0 };
    let first = s.purged.map_or(1, |p| p.index + 1);
    let mut named = 0;
    for i in first..=last.index {
        match wal.entry(i) {
            Ok(Some((id, p))) => {
                assert_eq!(id.index, i, "{t:?}: wrong entry");
                assert_eq!(
                    p,
                    derived(id.index, id.term),
                    "{t:?}: payload of {id} altered"
                );
            }
            Err(Error::Corruption { chunk, .. }) => {
                assert_eq!(chunk, t.chunk, "{t:?}: read named the wrong chunk");
                named = 1;
            }
            other => panic!("{t:?}: entry {i}: {other:?}"),
        }
    }
    named
}

#[test]
fn byte_flips_are_named_or_cut_from_the_tail_never_misread() {
    let mut rng = Rng::from_env("corruption matrix");
    let mut n = Tally::default();
    for crash in [false, true] {
        let base = base_log(crash);
        let (ts, last_chunk) = targets(base.path(), &mut rng);
        assert!(last_chunk >= 2, "the log should span several chunks");
        for t in ts {
            for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict] {
                for verify in [VerifyOnOpen::Full, VerifyOnOpen::Lazy] {
                    let how = (mode, verify);
                    check_case(base.path(), t, last_chunk, how, &mut rng, &mut n);
                }
            }
        }
    }
    println!("corruption matrix: {n:?}");
    assert!(n.named > 0 && n.full > 0 && n.named_on_read > 0);
    assert!(n.by_target["trailer"] > 0 && n.by_target["index"] > 0);
}

/// Damage that happens while the log is open (bit rot under a live map) is caught by the
/// CRC check of the read path.
#[test]
fn damage_under_an_open_log_is_caught_by_reads() {
    let base = base_log(false);
    let mut recs = Vec::new();
    inspect_dir(base.path(), &mut |r| recs.push(r.clone()), &mut |_| {}).unwrap();
    let mut rng = Rng::from_env("read-path corruption");
    let mut caught = 0;
    for r in recs
        .iter()
        .filter(|r| matches!(r.record, OwnedRecord::Entry { .. }))
    {
        let OwnedRecord::Entry { id, .. } = r.record else {
            unreachable!()
        };
        if !rng.chance(20) {
            continue;
        }
        let d = copy_dir(base.path());
        let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK).cache(1, 1)).unwrap();
        wal.evict_durable_from_cache();
        // Payload bytes start after the 24-byte header and the 16-byte id.
        let len = r.encoded_len - 24;
        let at = r.offset + 24 + rng.below(len.max(1));
        flip(&d.path().join(chunk_file_name(r.chunk)), at, 0x20);
        match wal.read(id.index..=id.index) {
            Err(Error::Corruption { chunk, offset, .. }) => {
                assert_eq!((chunk, offset), (r.chunk, r.offset));
                caught += 1;
            }
            // Padding is outside the checksum and outside the payload.
            Ok(v) => assert_eq!(v[0].1, derived(id.index, id.term), "misread {id}"),
            Err(e) => panic!("unexpected {e}"),
        }
        match wal.entry(id.index) {
            Err(Error::Corruption { .. }) => {}
            Ok(Some((_, p))) => assert_eq!(p, derived(id.index, id.term)),
            other => panic!("entry {id}: {other:?}"),
        }
    }
    println!("read-path corruption: {caught} flips caught");
    assert!(caught > 0);
}
