//! Unit tests for chunk scanning on synthetic bytes.

use super::{scan_chunk, Tail};
use crate::error::{CorruptionKind, Error};
use crate::format::{
    encoded_len, write_frame, ChunkHeader, Record, FLAG_CONTINUES, FORMAT_VERSION, HEADER_LEN,
};
use crate::types::LogId;

const TAG: u32 = 0xabcd_0001;

/// A chunk image: header, then `recs` as (record, flags, hint), then zeroes up to `len`.
fn image(recs: &[(Record<'_>, u8, u32)], len: usize) -> (Vec<u8>, Vec<usize>) {
    image_tagged(recs, len, TAG)
}

/// [`image`] of a chunk whose epoch tag is `tag`.
fn image_tagged(recs: &[(Record<'_>, u8, u32)], len: usize, tag: u32) -> (Vec<u8>, Vec<usize>) {
    let h = ChunkHeader {
        version: FORMAT_VERSION,
        chunk_seq: 3,
        epoch: u64::from(tag),
        chunk_size: len as u64,
        created_ms: 0,
    };
    let mut buf = vec![0u8; len];
    buf[..HEADER_LEN].copy_from_slice(&h.encode());
    let mut off = HEADER_LEN;
    let mut offs = Vec::new();
    for (r, flags, hint) in recs {
        let n = encoded_len(r.body_len());
        write_frame(
            &mut buf[off..off + n],
            r.kind(),
            *flags,
            tag,
            *hint,
            r.body_len(),
            |b| r.write_body(b),
        );
        offs.push(off);
        off += n;
    }
    (buf, offs)
}

fn entry(i: u64) -> Record<'static> {
    Record::Entry {
        id: LogId::new(1, i),
        payload: b"payload",
    }
}

fn count(buf: &[u8], is_last: bool) -> (Result<Tail, Error>, usize) {
    let mut n = 0;
    let r = scan_chunk(buf, 3, TAG, FORMAT_VERSION, is_last, &mut |_| {
        n += 1;
        Ok(())
    });
    (r, n)
}

#[test]
fn clean_sealed_and_torn_endings() {
    let (buf, offs) = image(&[(entry(1), 0, 0), (entry(2), 0, 0)], 4096);
    let (r, n) = count(&buf, true);
    let end = offs[1] + encoded_len(entry(2).body_len());
    assert_eq!((r.unwrap(), n), (Tail::Clean { end }, 2));
    let (r, _) = count(&buf, false);
    assert!(matches!(
        r,
        Err(Error::Corruption {
            reason: CorruptionKind::ZeroHeader,
            ..
        })
    ));

    let (buf, _) = image(&[(entry(1), 0, 0), (Record::Seal, 0, 0)], 4096);
    assert!(matches!(count(&buf, false).0, Ok(Tail::Sealed { .. })));

    let (mut buf, offs) = image(&[(entry(1), 0, 0), (entry(2), 0, 0)], 4096);
    buf[offs[1] + 30] ^= 1;
    let (r, n) = count(&buf, true);
    assert_eq!(n, 1);
    assert!(matches!(r, Ok(Tail::Torn { end, .. }) if end == offs[1]));
}

#[test]
fn incomplete_group_is_torn_and_dropped_whole() {
    let (buf, offs) = image(
        &[(entry(1), 0, 0), (entry(2), 1, 0), (entry(3), 1, 0)],
        4096,
    );
    let (r, n) = count(&buf, true);
    assert_eq!(n, 1, "the unterminated group 2..3 is not applied");
    assert!(matches!(r, Ok(Tail::Torn { end, .. }) if end == offs[1]));
}

#[test]
fn a_later_record_proving_durability_turns_damage_into_corruption() {
    let (mut buf, offs) = image(
        &[(entry(1), 0, 0), (entry(2), 0, 0), (entry(3), 0, 500)],
        4096,
    );
    buf[offs[1] + 4] ^= 0x10; // the length byte
    let (r, _) = count(&buf, true);
    assert!(matches!(
        r,
        Err(Error::Corruption {
            reason: CorruptionKind::DamagedDurableRecord { .. },
            ..
        })
    ));
}

#[test]
fn a_valid_checksum_with_a_bad_body_is_corruption_not_a_tear() {
    let (mut buf, offs) = image(
        &[(
            Record::Truncate {
                since: 1,
                last: None,
            },
            0,
            0,
        )],
        4096,
    );
    // Make the presence byte invalid and fix the checksum so only the body is wrong.
    let off = offs[0];
    buf[off + 24 + 8] = 7;
    let len = 24 + 9;
    let crc = crc32c::crc32c(&buf[off + 4..off + len]);
    buf[off..off + 4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        count(&buf, true).0,
        Err(Error::Corruption {
            reason: CorruptionKind::BadBody { .. },
            ..
        })
    ));
}

#[test]
fn kinds_new_in_v2_are_unknown_in_a_v1_chunk_only() {
    let body = [0u8; 8];
    let idx = Record::Index { body: &body };
    let (buf, offs) = image(
        &[
            (entry(1), 0, 0),
            (idx, FLAG_CONTINUES, 0),
            (Record::Seal, 0, 0),
        ],
        4096,
    );
    for version in [1, 2] {
        let mut kinds = Vec::new();
        let r = scan_chunk(&buf, 3, TAG, version, false, &mut |s| {
            kinds.push(s.record.kind());
            Ok(())
        });
        if version == 1 {
            match r {
                Err(Error::Corruption { offset, reason, .. }) => {
                    assert_eq!(offset, offs[1] as u64);
                    assert_eq!(reason, CorruptionKind::UnknownKind { kind: 9 });
                }
                other => panic!("v1 chunk with an Index record: {other:?}"),
            }
        } else {
            assert!(matches!(r, Ok(Tail::Sealed { .. })), "{r:?}");
            assert_eq!(kinds, [1, 9, 8]);
        }
    }
    // Kind 10 (the Batch record) is gated the same way.
    assert_eq!(
        Record::decode_in(1, 10, &[]),
        Err(CorruptionKind::UnknownKind { kind: 10 })
    );
}

#[test]
fn last_nonzero_finds_the_last_set_byte_anywhere() {
    for len in [0usize, 1, 63, 64, 65, 200, 4096] {
        let mut v = vec![0u8; len];
        assert_eq!(super::scan::last_nonzero(&v), None);
        for at in [0, len / 3, len.saturating_sub(1)] {
            if at < len {
                v.iter_mut().for_each(|b| *b = 0);
                v[at] = 9;
                assert_eq!(super::scan::last_nonzero(&v), Some(at), "len {len} at {at}");
            }
        }
    }
}

/// A read-write file of `len` bytes in a new temporary directory (kept alive by the first
/// value).
pub(super) fn scratch_file(len: u64) -> (tempfile::TempDir, std::path::PathBuf, std::fs::File) {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("c");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.set_len(len).unwrap();
    (d, path, f)
}

/// A spare whose mapping is still alive is not handed out; once it is gone it is.
#[test]
fn a_spare_with_a_live_mapping_is_not_taken() {
    let pool = super::recycle::Pool::new(2, &[]);
    let (_d, path, f) = scratch_file(65536);
    let w = super::Region::map_writable(&f, 65536, &path).unwrap();
    pool.push(7, std::sync::Arc::downgrade(w.region()));
    assert_eq!(pool.count(), 1);
    assert_eq!(pool.take(), None, "mapped: not reusable");
    drop(w);
    assert_eq!(pool.take(), Some(7));
    assert_eq!(pool.count(), 0);
}

/// Appends go through `pwrite`: readable through the (read-only) map once published, in the
/// file at once, and never past the chunk's end.
#[test]
fn writes_land_in_the_file_and_show_through_the_map_once_published() {
    let (_d, path, f) = scratch_file(1 << 16);
    let mut w = super::Region::map_writable(&f, 1 << 16, &path).unwrap();
    w.seek(64);
    w.publish();
    w.write(b"hello").unwrap();
    assert_eq!(w.region().published(), 64, "not readable before publish");
    assert_eq!(&std::fs::read(&path).unwrap()[64..69], b"hello");
    w.publish();
    assert_eq!(w.region().slice(64, 5), Some(&b"hello"[..]));
    w.write_zeros(3).unwrap();
    assert_eq!(w.cursor(), 72);
    assert!(w.write(&vec![1u8; (1 << 16) - 71]).is_err());
    assert_eq!(w.cursor(), 72, "a refused write moves nothing");
    w.region().sync_range(0, 1 << 16).unwrap();
    // A map of the file opened read-only cannot be synced: refused, not a silent no-op.
    let ro = std::fs::File::open(&path).unwrap();
    let r = super::Region::map_read_only(&ro, 1 << 16, &path).unwrap();
    assert!(r.sync_range(0, 4096).is_err());
}

/// A recycled chunk: the records of its earlier life (another tag) follow the new ones.
fn recycled(new_recs: usize, old_recs: usize) -> (Vec<u8>, Vec<usize>) {
    let old: Vec<_> = (0..old_recs as u64)
        .map(|i| (entry(100 + i), 0, 0))
        .collect();
    let (mut buf, _) = image_tagged(&old, 4096, TAG ^ 0x5555);
    let new: Vec<_> = (0..new_recs as u64).map(|i| (entry(i + 1), 0, 0)).collect();
    let (fresh, offs) = image(&new, 4096);
    let end = offs
        .last()
        .map_or(HEADER_LEN, |o| o + encoded_len(entry(0).body_len()));
    buf[..end].copy_from_slice(&fresh[..end]);
    (buf, offs)
}

#[test]
fn records_of_a_recycled_chunks_earlier_life_end_it_cleanly() {
    let (buf, offs) = recycled(2, 20);
    let end = offs[1] + encoded_len(entry(2).body_len());
    assert!(buf[end..].iter().any(|&b| b != 0), "stale bytes follow");
    let (r, n) = count(&buf, true);
    assert_eq!((r.unwrap(), n), (Tail::Clean { end }, 2));
}

#[test]
fn a_header_with_the_chunks_tag_past_the_end_is_garbage_to_cut() {
    let (mut buf, offs) = recycled(2, 20);
    let end = offs[1] + encoded_len(entry(2).body_len());
    // A torn record of this chunk's own, far past the end, among stale records.
    let at = end + 40 * 8;
    let r = entry(9);
    let n = encoded_len(r.body_len());
    write_frame(
        &mut buf[at..at + n],
        r.kind(),
        0,
        TAG,
        0,
        r.body_len(),
        |b| r.write_body(b),
    );
    buf[at + 30] ^= 1;
    match count(&buf, true).0 {
        Ok(Tail::Torn {
            end: e,
            garbage_end,
            ..
        }) => {
            assert_eq!(e, end);
            assert_eq!(
                garbage_end,
                at + 24,
                "everything up to the tagged header is cut"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// The straightforward form of `last_tagged`: every aligned position, backwards.
fn last_tagged_reference(bytes: &[u8], from: usize, limit: usize, tag: u32) -> Option<usize> {
    let last = limit.checked_sub(1)?.min(bytes.len().checked_sub(16)?);
    let mut p = last & !7;
    while p >= from {
        let head = &bytes[p..(p + 24).min(bytes.len())];
        if bytes.get(p + 12..p + 16) == Some(&tag.to_le_bytes()[..]) && head.iter().any(|&b| b != 0)
        {
            return Some(p + head.len());
        }
        p = p.checked_sub(8)?;
    }
    None
}

#[test]
fn last_tagged_matches_the_reference_on_random_bytes() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2000 {
        let len = (next() % 300) as usize;
        let tag: u32 = if round % 3 == 0 { 0 } else { 0xA1B2_C3D4 };
        let mut v: Vec<u8> = (0..len).map(|_| (next() % 4) as u8).collect();
        // Plant some tags, some of them in all-zero headers.
        for _ in 0..(next() % 4) {
            let p = (next() as usize % (len.max(1))) & !7;
            if p + 16 <= len {
                v[p + 12..p + 16].copy_from_slice(&tag.to_le_bytes());
                if next() % 2 == 0 {
                    let end = (p + 24).min(len);
                    v[p..end].fill(0);
                    v[p + 12..p + 16].copy_from_slice(&tag.to_le_bytes());
                }
            }
        }
        let from = (next() % (len as u64 + 9)) as usize;
        let limit = (next() % (len as u64 + 9)) as usize;
        assert_eq!(
            super::scan::last_tagged(&v, from, limit, tag),
            last_tagged_reference(&v, from, limit, tag),
            "len {len} from {from} limit {limit} tag {tag:x}"
        );
    }
}
