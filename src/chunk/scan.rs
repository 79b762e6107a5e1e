//! Scanning one chunk's bytes: records in order, then a verdict on how the chunk ends.
//!
//! Pure and total over its input, so the fuzzers drive it directly.

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    decode_frame, decode_frame_checked, FrameError, Record, FLAG_CONTINUES, HEADER_LEN,
    RECORD_ALIGN, RECORD_HEADER_LEN,
};

/// One record found by a scan.
#[derive(Debug, Clone, Copy)]
pub struct Scanned<'a> {
    /// Byte offset of the record in the chunk.
    pub offset: usize,
    /// Bytes the record occupies.
    pub encoded_len: usize,
    /// Durable hint stored in the record.
    pub hint: u32,
    /// The group the record belongs to (0: the default group).
    pub group: u64,
    /// The decoded record.
    pub record: Record<'a>,
}

/// How a chunk ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tail {
    /// A seal record ends the chunk at `end`.
    Sealed {
        /// Offset just past the seal.
        end: usize,
    },
    /// The records end at `end` and nothing that could be a record of this chunk follows:
    /// zero bytes, or records of a recycled chunk's earlier lives (other epoch tags).
    Clean {
        /// Offset just past the last complete group.
        end: usize,
    },
    /// Bytes that no sync covered and that carry this chunk's epoch tag follow `end`: a
    /// torn write.
    Torn {
        /// Offset just past the last complete group; the log resumes here.
        end: usize,
        /// Where the first damaged record starts.
        at: usize,
        /// What was wrong there.
        reason: CorruptionKind,
        /// One past the last record header after `end` that carries this chunk's epoch
        /// tag: zeroing `[end, garbage_end)` leaves nothing that can decode as a record.
        garbage_end: usize,
    },
}

/// Scan `bytes` (a whole chunk file, header included), calling `visit` for each record of
/// each *complete* atomic group, in order. `epoch_tag` and `version` come from the chunk's
/// header: record kinds new in format v2 are unknown (corruption) in a v1 chunk. `is_last`
/// says whether this is the newest chunk, the only one allowed to end without a seal.
pub fn scan_chunk<'a>(
    bytes: &'a [u8],
    seq: u64,
    epoch_tag: u32,
    version: u32,
    is_last: bool,
    visit: &mut dyn FnMut(&Scanned<'a>) -> Result<()>,
) -> Result<Tail> {
    scan_chunk_checked(bytes, seq, epoch_tag, version, is_last, true, visit)
}

/// [`scan_chunk`] with the per-record CRC check optional. Without it, the caller must verify
/// the chunk with [`scan_chunk`] before trusting anything this produced (open does so on a
/// second thread, in parallel). Unchecked scans of a sealed chunk (`!is_last`) also visit each
/// record at once instead of holding a group back until it completes: such a chunk is valid
/// only if every group in it is complete, which the verifying scan checks.
pub fn scan_chunk_checked<'a>(
    bytes: &'a [u8],
    seq: u64,
    epoch_tag: u32,
    version: u32,
    is_last: bool,
    verify_crc: bool,
    visit: &mut dyn FnMut(&Scanned<'a>) -> Result<()>,
) -> Result<Tail> {
    let mut pos = HEADER_LEN;
    let mut pending: Vec<Scanned<'a>> = Vec::new();
    let stop: Option<CorruptionKind> = loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        let frame = match decode_frame_checked(rest, epoch_tag, verify_crc) {
            Ok(f) => f,
            Err(FrameError::Truncated) => break None,
            Err(FrameError::Corrupt(k)) => break Some(k),
        };
        let record = match frame.record(version) {
            Ok(r) => r,
            // The checksum matched, so these bytes were written as they are: not a torn write.
            Err(k) => return Err(Error::corrupt(seq, pos as u64, k)),
        };
        let s = Scanned {
            offset: pos,
            encoded_len: frame.encoded_len,
            hint: frame.hint,
            group: frame.group,
            record,
        };
        pos += frame.encoded_len;
        if frame.flags & FLAG_CONTINUES != 0 && (verify_crc || is_last) {
            pending.push(s);
        } else {
            // The group is complete: apply what was held back, then this record.
            for p in &pending {
                visit(p)?;
            }
            pending.clear();
            visit(&s)?;
        }
        if matches!(record, Record::Seal) {
            if !pending.is_empty() {
                return Err(Error::corrupt(
                    seq,
                    pending[0].offset as u64,
                    CorruptionKind::UnterminatedGroup,
                ));
            }
            return Ok(Tail::Sealed { end: pos });
        }
    };
    let end = pending.first().map_or(pos, |s| s.offset);
    if !is_last {
        let reason = stop.unwrap_or(CorruptionKind::MissingSeal);
        return Err(Error::corrupt(seq, pos as u64, reason));
    }
    let garbage_end = garbage_end(bytes, end, epoch_tag);
    if garbage_end == end {
        return Ok(Tail::Clean { end });
    }
    // Something non-zero follows. If any later intact record says (through its durable hint)
    // that the damaged bytes had been synced, this is corruption, not a torn write.
    if let Some(later) = later_proof(bytes, pos, garbage_end, epoch_tag, version) {
        return Err(Error::corrupt(
            seq,
            pos as u64,
            CorruptionKind::DamagedDurableRecord {
                later: later as u64,
            },
        ));
    }
    Ok(Tail::Torn {
        end,
        at: pos,
        reason: stop.unwrap_or(CorruptionKind::UnterminatedGroup),
        garbage_end,
    })
}

/// Position of the last non-zero byte. Tests 64-byte blocks at a time (the OR-fold
/// vectorises), since the tail after the last record is normally megabytes of zeroes.
pub(super) fn last_nonzero(t: &[u8]) -> Option<usize> {
    const B: usize = 64;
    let full = t.len() / B * B;
    if let Some(i) = t[full..].iter().rposition(|&b| b != 0) {
        return Some(full + i);
    }
    let mut at = full;
    while at >= B {
        let block = &t[at - B..at];
        if block.iter().fold(0u8, |a, &b| a | b) != 0 {
            return block.iter().rposition(|&b| b != 0).map(|i| at - B + i);
        }
        at -= B;
    }
    None
}

/// Where the garbage after the records (ending at `end`) ends; `end` if there is none.
///
/// Past the end there may be bytes no sync covered (a torn write), and in a recycled chunk
/// the records of its earlier lives, which carry other epoch tags and can never decode
/// here. Only what carries this chunk's tag could ever be taken for one of its records, so
/// that is the garbage: everything up to the last header that carries it. Other non-zero
/// bytes (stale contents, or a torn header cut before its tag) are left alone: they can
/// never decode, and a recycled chunk's old contents are not damage.
fn garbage_end(bytes: &[u8], end: usize, epoch_tag: u32) -> usize {
    let nonzero_end = bytes
        .get(end..)
        .and_then(last_nonzero)
        .map_or(end, |i| end + i + 1);
    last_tagged(bytes, end, nonzero_end, epoch_tag).unwrap_or(end)
}

/// The epoch tag sits at bytes 12..16 of a record header.
const TAG_AT: usize = 12;
const TAG_END: usize = TAG_AT + 4;

/// Whether a record header at `p` would carry `tag` (a filter: nothing else is checked).
fn carries_tag(bytes: &[u8], p: usize, tag: u32) -> bool {
    bytes.get(p + TAG_AT..p + TAG_END) == Some(&tag.to_le_bytes()[..])
}

/// One past the last record header at an aligned offset in `[from, limit)` that carries
/// `tag` and is not all zero, if any (a header cut short by the end of the file counts if its
/// tag is there; the result never passes the end). Scans backwards.
///
/// In a recycled newest chunk this looks at every aligned position up to the file's end
/// (its earlier lives' bytes are not zero), so it compares the tags in 8-byte steps over one
/// slice, without a bounds check per position.
pub(super) fn last_tagged(bytes: &[u8], from: usize, limit: usize, tag: u32) -> Option<usize> {
    let last = limit.checked_sub(1)?.min(bytes.len().checked_sub(TAG_END)?);
    let top = last & !(RECORD_ALIGN - 1);
    let lo = from.checked_add(RECORD_ALIGN - 1)? & !(RECORD_ALIGN - 1);
    if top < lo {
        return None;
    }
    // `tags[8 k ..]` starts with the tag of the header at `lo + 8 k`.
    let tags = bytes.get(lo + TAG_AT..top + TAG_END)?;
    let want = tag.to_le_bytes();
    let mut upto = tags.len();
    while upto > 0 {
        let k = tags[..upto]
            .chunks(RECORD_ALIGN)
            .rposition(|c| c[..4] == want)?;
        let p = lo + k * RECORD_ALIGN;
        let head = &bytes[p..(p + RECORD_HEADER_LEN).min(bytes.len())];
        if head.iter().any(|&b| b != 0) {
            return Some(p + head.len());
        }
        upto = k * RECORD_ALIGN;
    }
    None
}

/// Offset of an intact record after `damaged` whose durable hint covers `damaged`.
fn later_proof(
    bytes: &[u8],
    damaged: usize,
    limit: usize,
    epoch_tag: u32,
    version: u32,
) -> Option<usize> {
    let mut p = damaged + RECORD_ALIGN;
    while p < limit && p + RECORD_HEADER_LEN <= bytes.len() {
        // Cheap filter before a full decode.
        if carries_tag(bytes, p, epoch_tag) {
            if let Ok(f) = decode_frame(&bytes[p..], epoch_tag) {
                if f.record(version).is_ok() && f.hint as usize > damaged {
                    return Some(p);
                }
            }
        }
        p += RECORD_ALIGN;
    }
    None
}
