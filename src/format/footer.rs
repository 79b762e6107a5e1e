//! The seal-time footer of a v2 chunk: the Index record's body (runs of entries, pointers to
//! the other records) and the 32-byte trailer at the end of the file. Pure, no I/O.
//!
//! A sealed v2 chunk ends its data with an Index record (kind 9, `FLAG_CONTINUES`) and the
//! Seal record, one atomic group, and carries a [`Trailer`] in the last [`TRAILER_LEN`]
//! bytes of the file that says where both are. Open reads a sealed chunk's records from the
//! footer instead of scanning them ([`read_footer`] validates everything it returns;
//! anything it refuses is scanned as before). The layout is in `docs/format.md`. The
//! writer's side, [`super::FooterBuilder`], is in `footer_builder.rs`.

use super::footer_error::FooterError;
use super::header::HEADER_LEN;
use super::record::{decode_frame, FrameError, FLAG_CONTINUES, RECORD_ALIGN};
use crate::error::CorruptionKind;

/// Size of the trailer at the end of a v2 chunk file.
pub const TRAILER_LEN: usize = 32;
/// Magic bytes that start the trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"CWFOOTR1";
/// The first chunk format version that has footers (and record kinds 9 and up).
pub const FOOTER_VERSION: u32 = 2;
/// The Index body's own header: `n_items: u32`, `reserved: u32`.
pub const BODY_HEAD_LEN: usize = 8;

/// Head of a `TAG_RUN` item: tag, 3 reserved, count u32, first u64, term u64.
pub(super) const RUN_HEAD_LEN: usize = 24;
/// Head of a `TAG_GROUP_RUN` item: a run head, then the group u64.
pub(super) const GROUP_RUN_HEAD_LEN: usize = 32;
const RECORD_ITEM_LEN: usize = 8;
const ITEM_MIN_LEN: usize = 8;
/// A run of default-group entries.
pub(super) const TAG_RUN: u8 = 1;
/// Any other record.
pub(super) const TAG_RECORD: u8 = 2;
/// A run of entries of a non-default group (format v2, multi-group logs only).
pub(super) const TAG_GROUP_RUN: u8 = 3;
const KIND_INDEX: u8 = 9;
const KIND_SEAL: u8 = 8;

/// The fixed 32 bytes at `chunk_size - 32` of a sealed v2 chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The chunk's epoch tag.
    pub tag: u32,
    /// Offset of the Index record.
    pub index_off: u32,
    /// Offset of the Seal record.
    pub seal_off: u32,
    /// Entries the Index record's runs hold.
    pub n_entries: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Trailer {
    /// Encode: magic, tag, index_off, seal_off, n_entries, reserved 0, CRC-32C of bytes 0..28.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..12].copy_from_slice(&self.tag.to_le_bytes());
        out[12..16].copy_from_slice(&self.index_off.to_le_bytes());
        out[16..20].copy_from_slice(&self.seal_off.to_le_bytes());
        out[20..24].copy_from_slice(&self.n_entries.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode and check magic, checksum and reserved field (not the tag nor the offsets:
    /// see [`read_footer`]). Total: any input gives a value or an error.
    pub fn decode(b: &[u8]) -> Result<Trailer, FooterError> {
        let Some(b) = b.get(..TRAILER_LEN) else {
            return Err(FooterError::NoMagic);
        };
        if b[..8] != TRAILER_MAGIC {
            return Err(FooterError::NoMagic);
        }
        let (stored, computed) = (le32(b, 28), crc32c::crc32c(&b[..28]));
        if stored != computed {
            return Err(FooterError::TrailerChecksum { stored, computed });
        }
        if le32(b, 24) != 0 {
            return Err(FooterError::TrailerReserved);
        }
        Ok(Trailer {
            tag: le32(b, 8),
            index_off: le32(b, 12),
            seal_off: le32(b, 16),
            n_entries: le32(b, 20),
        })
    }
}

/// A run of entries from a decoded Index body: indexes `first..first + len()`, one term,
/// one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'a> {
    /// The group the entries belong to: 0 (the default group) for a `TAG_RUN` item, never
    /// 0 for a `TAG_GROUP_RUN` item.
    pub group: u64,
    /// Index of the first entry.
    pub first: u64,
    /// Term of every entry.
    pub term: u64,
    /// `len()` little-endian u32 record offsets.
    raw: &'a [u8],
}

impl<'a> Run<'a> {
    /// Number of entries (at least 1).
    pub fn count(&self) -> usize {
        self.raw.len() / 4
    }

    /// Index of the last entry (no overflow: checked when decoded).
    pub fn last(&self) -> u64 {
        self.first + (self.count() as u64).saturating_sub(1)
    }

    /// Record offset of each entry, in order.
    pub fn offsets(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// One item of a decoded Index body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// Consecutive entries of one group and term.
    Run(Run<'a>),
    /// Another record, to decode from the chunk at `offset` and replay.
    Record {
        /// The record's offset in the chunk.
        offset: u32,
    },
}

/// Checks that item offsets are aligned, in `[HEADER_LEN, index_off)`, and in order.
struct Order {
    index_off: u32,
    /// Offset of the previous item's last record.
    prev: Option<u32>,
}

impl Order {
    fn check(&mut self, at: usize, offset: u32, same_record_ok: bool) -> Result<(), FooterError> {
        let after_prev = match self.prev {
            None => true,
            Some(p) if same_record_ok => offset >= p,
            Some(p) => offset > p,
        };
        let ok = after_prev
            && offset as usize % RECORD_ALIGN == 0
            && offset as usize >= HEADER_LEN
            && offset < self.index_off;
        self.prev = Some(offset);
        if ok {
            Ok(())
        } else {
            Err(FooterError::ItemOffset { at, offset })
        }
    }
}

/// Decode an Index body into its items, checking every count against the bytes before
/// anything is allocated, and every offset (aligned, in `[64, index_off)`, after the
/// previous one; entries of one run may share a Batch record's offset). Returns the items
/// and the number of entries the runs hold. Total: never panics.
pub fn decode_body(body: &[u8], index_off: u32) -> Result<(Vec<Item<'_>>, u64), FooterError> {
    let Some(head) = body.get(..BODY_HEAD_LEN) else {
        return Err(FooterError::BodyShort { len: body.len() });
    };
    let n_items = le32(head, 0);
    if le32(head, 4) != 0 {
        return Err(FooterError::ItemReserved { at: 4 });
    }
    let room = (body.len() - BODY_HEAD_LEN) / ITEM_MIN_LEN;
    if n_items as usize > room {
        return Err(FooterError::ItemCount {
            n_items,
            len: body.len(),
        });
    }
    let mut items = Vec::with_capacity(n_items as usize);
    let mut order = Order {
        index_off,
        prev: None,
    };
    let mut at = BODY_HEAD_LEN;
    let mut entries = 0u64;
    for _ in 0..n_items {
        let rest = &body[at..];
        let Some(head) = rest.get(..ITEM_MIN_LEN) else {
            return Err(FooterError::ItemTruncated { at });
        };
        if head[1..4] != [0; 3] {
            return Err(FooterError::ItemReserved { at });
        }
        match head[0] {
            TAG_RECORD => {
                order.check(at, le32(head, 4), false)?;
                items.push(Item::Record {
                    offset: le32(head, 4),
                });
                at += RECORD_ITEM_LEN;
            }
            TAG_RUN | TAG_GROUP_RUN => {
                let (run, len) = decode_run(rest, at, &mut order)?;
                entries += run.count() as u64;
                items.push(Item::Run(run));
                at += len;
            }
            tag => return Err(FooterError::ItemTag { at, tag }),
        }
    }
    if at != body.len() {
        return Err(FooterError::TrailingBytes {
            extra: body.len() - at,
        });
    }
    Ok((items, entries))
}

/// Decode the run (`TAG_RUN` or `TAG_GROUP_RUN`, by `rest[0]`) at the start of `rest` (body
/// offset `at`); returns it and its length.
fn decode_run<'a>(
    rest: &'a [u8],
    at: usize,
    order: &mut Order,
) -> Result<(Run<'a>, usize), FooterError> {
    let head_len = match rest.first() {
        Some(&TAG_GROUP_RUN) => GROUP_RUN_HEAD_LEN,
        _ => RUN_HEAD_LEN,
    };
    let Some(head) = rest.get(..head_len) else {
        return Err(FooterError::ItemTruncated { at });
    };
    let count = le32(head, 4);
    let (first, term) = (le64(head, 8), le64(head, 16));
    let group = if head_len == GROUP_RUN_HEAD_LEN {
        le64(head, 24)
    } else {
        0
    };
    if head_len == GROUP_RUN_HEAD_LEN && group == 0 {
        return Err(FooterError::GroupRunZero { at, first, count });
    }
    if count == 0 || first.checked_add(u64::from(count) - 1).is_none() {
        return Err(FooterError::RunCount { at, count });
    }
    // Bounded by the bytes before anything is computed from it.
    let raw_len = (count as usize)
        .checked_mul(4)
        .filter(|&n| n <= rest.len() - head_len)
        .ok_or(FooterError::ItemTruncated { at })?;
    let len = (head_len + raw_len).next_multiple_of(8);
    let Some(padded) = rest.get(head_len..len) else {
        return Err(FooterError::ItemTruncated { at });
    };
    let (raw, pad) = padded.split_at(raw_len);
    if pad.iter().any(|&b| b != 0) {
        return Err(FooterError::ItemReserved { at });
    }
    let run = Run {
        group,
        first,
        term,
        raw,
    };
    for (i, off) in run.offsets().enumerate() {
        order.check(at, off, i > 0)?;
    }
    Ok((run, len))
}

/// A validated footer: where the Index and Seal records are and the decoded items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer<'a> {
    /// The trailer.
    pub trailer: Trailer,
    /// The Index body's items, in record order.
    pub items: Vec<Item<'a>>,
}

/// Find and validate the footer of a sealed v2 chunk. `bytes` is the whole file, header
/// included; `chunk_size` and `tag` come from its (validated) header. In order: the file
/// holds the trailer; its magic, checksum, reserved field and tag; its offsets are aligned,
/// `64 <= index_off < seal_off` and the Seal ends before the trailer; the frame at
/// `index_off` is a valid (CRC-checked) Index record flagged to continue and ends exactly at
/// `seal_off`; the frame there is a Seal ending the group; the items decode
/// ([`decode_body`]); and the trailer's entry count matches the runs. Record items are not
/// decoded here: the caller does that (with their CRCs) before using any of them.
pub fn read_footer(bytes: &[u8], chunk_size: u64, tag: u32) -> Result<Footer<'_>, FooterError> {
    let short = FooterError::Short {
        len: bytes.len() as u64,
        chunk_size,
    };
    let Some(at) = usize::try_from(chunk_size)
        .ok()
        .and_then(|s| s.checked_sub(TRAILER_LEN))
    else {
        return Err(short);
    };
    let Some(raw) = bytes.get(at..at + TRAILER_LEN) else {
        return Err(short);
    };
    let t = Trailer::decode(raw)?;
    if t.tag != tag {
        return Err(FooterError::StaleTrailer {
            expected: tag,
            found: t.tag,
        });
    }
    let (index_off, seal_off) = (t.index_off as usize, t.seal_off as usize);
    let seal_end = seal_off as u64 + super::record::encoded_len(0) as u64;
    if index_off < HEADER_LEN
        || index_off % RECORD_ALIGN != 0
        || seal_off % RECORD_ALIGN != 0
        || index_off >= seal_off
        || seal_end > at as u64
    {
        return Err(FooterError::TrailerOffsets {
            index_off: t.index_off,
            seal_off: t.seal_off,
        });
    }
    let index = frame_at(bytes, t.index_off, at, tag)?;
    check_kind(&index, t.index_off, KIND_INDEX, FLAG_CONTINUES)?;
    let end = index_off as u64 + index.encoded_len as u64;
    if end != seal_off as u64 {
        return Err(FooterError::IndexEnd {
            end,
            seal_off: t.seal_off,
        });
    }
    let seal = frame_at(bytes, t.seal_off, at, tag)?;
    check_kind(&seal, t.seal_off, KIND_SEAL, 0)?;
    if !seal.body.is_empty() {
        return Err(FooterError::Frame {
            offset: t.seal_off,
            reason: CorruptionKind::BadBody {
                kind: "seal",
                what: "trailing bytes",
            },
        });
    }
    let (items, runs) = decode_body(index.body, t.index_off)?;
    if runs != u64::from(t.n_entries) {
        return Err(FooterError::EntryCount {
            trailer: t.n_entries,
            runs,
        });
    }
    Ok(Footer { trailer: t, items })
}

/// The CRC-checked frame at `off`, which must end before `limit` (the trailer).
fn frame_at(
    bytes: &[u8],
    off: u32,
    limit: usize,
    tag: u32,
) -> Result<super::record::Frame<'_>, FooterError> {
    let window = bytes.get(off as usize..limit).unwrap_or_default();
    decode_frame(window, tag).map_err(|e| match e {
        FrameError::Truncated => FooterError::FrameTruncated { offset: off },
        FrameError::Corrupt(reason) => FooterError::Frame {
            offset: off,
            reason,
        },
    })
}

fn check_kind(
    f: &super::record::Frame<'_>,
    offset: u32,
    expected: u8,
    flags: u8,
) -> Result<(), FooterError> {
    if f.kind == expected && f.flags == flags {
        Ok(())
    } else {
        Err(FooterError::WrongRecord {
            offset,
            kind: f.kind,
            flags: f.flags,
            expected,
        })
    }
}
