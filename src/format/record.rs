//! The record frame: a 24-byte header with length and CRC32C, then the body, padded to 8 bytes.

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::body::Record;
use super::header::GROUPS_VERSION;
use crate::error::CorruptionKind;

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 24;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// Flag: this record is part of an atomic group that continues with the next record.
pub const FLAG_CONTINUES: u8 = 1;
/// Flag (format v2): the record belongs to a non-default group, whose id (u64 LE, never 0)
/// starts the body, before the kind's own body.
pub const FLAG_GROUP: u8 = 2;
/// Bytes of the group id that starts the body of a record with [`FLAG_GROUP`].
pub const GROUP_PREFIX_LEN: usize = 8;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRecordHeader {
    crc: U32,
    len: U32,
    kind: u8,
    flags: u8,
    reserved: [u8; 2],
    epoch: U32,
    hint: U32,
    reserved2: [u8; 4],
}

const _: () = assert!(std::mem::size_of::<RawRecordHeader>() == RECORD_HEADER_LEN);

/// Total encoded size of a record with a body of `body_len` bytes, padding included.
pub const fn encoded_len(body_len: usize) -> usize {
    (RECORD_HEADER_LEN + body_len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// A validated record frame borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Record kind byte.
    pub kind: u8,
    /// Flag bits.
    pub flags: u8,
    /// Durable hint: chunk bytes below this offset were synced when the record was written.
    pub hint: u32,
    /// The group the record belongs to: 0 (the default group) without [`FLAG_GROUP`].
    pub group: u64,
    /// The record body (the kind's body: without the group prefix).
    pub body: &'a [u8],
    /// Bytes the record occupies, padding included.
    pub encoded_len: usize,
}

impl<'a> Frame<'a> {
    /// Decode the record this frame holds, in a chunk of format `version`: the kind's body
    /// ([`Record::decode_in`]), and the group prefix checked against the kind. A group
    /// prefix is format v3 only, and only on records a group owns (entries and state, not a
    /// Seal, Index or Batch record); a RemoveGroup record always has one.
    pub fn record(&self, version: u32) -> Result<Record<'a>, CorruptionKind> {
        let bad = CorruptionKind::BadGroup {
            group: Some(self.group),
        };
        if self.group != 0 && version < GROUPS_VERSION {
            return Err(bad);
        }
        let rec = Record::decode_in(version, self.kind, self.body)?;
        let grouped = self.group != 0;
        let ok = match rec {
            Record::RemoveGroup => grouped,
            Record::Seal | Record::Index { .. } | Record::Batch { .. } => !grouped,
            _ => true,
        };
        if ok {
            Ok(rec)
        } else {
            Err(bad)
        }
    }
}

/// Why no frame could be decoded at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than a header's worth of bytes remain.
    Truncated,
    /// The bytes are damaged, stale or not a record.
    Corrupt(CorruptionKind),
}

/// Decode the frame at the start of `buf`. Total: never panics, whatever the bytes.
pub fn decode_frame(buf: &[u8], epoch_tag: u32) -> Result<Frame<'_>, FrameError> {
    decode_frame_checked(buf, epoch_tag, true)
}

/// [`decode_frame`], optionally without the CRC check: for replaying bytes whose checksums
/// another thread verifies at the same time. Still total: the length is bounds-checked.
pub fn decode_frame_checked(
    buf: &[u8],
    epoch_tag: u32,
    verify_crc: bool,
) -> Result<Frame<'_>, FrameError> {
    let Some(head) = buf.get(..RECORD_HEADER_LEN) else {
        return Err(FrameError::Truncated);
    };
    let Ok(raw) = RawRecordHeader::ref_from_bytes(head) else {
        return Err(FrameError::Truncated);
    };
    if head.iter().all(|&b| b == 0) {
        return Err(FrameError::Corrupt(CorruptionKind::ZeroHeader));
    }
    let found = raw.epoch.get();
    if found != epoch_tag {
        return Err(FrameError::Corrupt(CorruptionKind::EpochMismatch {
            expected: epoch_tag,
            found,
        }));
    }
    if raw.reserved != [0; 2]
        || raw.reserved2 != [0; 4]
        || raw.flags & !(FLAG_CONTINUES | FLAG_GROUP) != 0
    {
        return Err(FrameError::Corrupt(CorruptionKind::ReservedBits));
    }
    let len = raw.len.get();
    let end = RECORD_HEADER_LEN as u64 + u64::from(len);
    if end > buf.len() as u64 {
        return Err(FrameError::Corrupt(CorruptionKind::BadLength { len }));
    }
    let end = end as usize;
    let covered = buf.get(4..end).unwrap_or_default();
    let computed = if verify_crc {
        crc32c::crc32c(covered)
    } else {
        raw.crc.get()
    };
    if computed != raw.crc.get() {
        return Err(FrameError::Corrupt(CorruptionKind::RecordChecksum {
            stored: raw.crc.get(),
            computed,
        }));
    }
    let mut body = buf.get(RECORD_HEADER_LEN..end).unwrap_or_default();
    let mut group = 0;
    if raw.flags & FLAG_GROUP != 0 {
        let Some((id, rest)) = body.split_first_chunk::<GROUP_PREFIX_LEN>() else {
            return Err(FrameError::Corrupt(CorruptionKind::BadGroup {
                group: None,
            }));
        };
        group = u64::from_le_bytes(*id);
        if group == 0 {
            return Err(FrameError::Corrupt(CorruptionKind::BadGroup {
                group: Some(0),
            }));
        }
        body = rest;
    }
    Ok(Frame {
        kind: raw.kind,
        flags: raw.flags,
        hint: raw.hint.get(),
        group,
        body,
        encoded_len: encoded_len(len as usize),
    })
}

/// Write a complete record into `dst`, which must be exactly `encoded_len(body_len)` long.
/// `fill` writes the body into the slice it is given. Returns the CRC written.
pub fn write_frame(
    dst: &mut [u8],
    kind: u8,
    flags: u8,
    epoch_tag: u32,
    hint: u32,
    body_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> u32 {
    debug_assert_eq!(dst.len(), encoded_len(body_len));
    let (head, rest) = dst.split_at_mut(RECORD_HEADER_LEN);
    let (body, pad) = rest.split_at_mut(body_len);
    fill(body);
    pad.fill(0);
    let raw = RawRecordHeader {
        crc: U32::new(0),
        len: U32::new(body_len as u32),
        kind,
        flags,
        reserved: [0; 2],
        epoch: U32::new(epoch_tag),
        hint: U32::new(hint),
        reserved2: [0; 4],
    };
    head.copy_from_slice(raw.as_bytes());
    // Header and body are contiguous: one CRC pass over both.
    let end = RECORD_HEADER_LEN + body_len;
    let crc = crc32c::crc32c(&dst[4..end]);
    dst[..4].copy_from_slice(&crc.to_le_bytes());
    crc
}
