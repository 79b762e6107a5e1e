//! Batch records (kind 10) in the core: which runs of an append the writer compresses into
//! one record, and how a read of a member decompresses the record once into the cache.
//!
//! The codec needs feature `compression`. Without it the writer never forms a batch, replay
//! still works (it needs only the head), and reading a member is
//! [`Error::CompressionUnsupported`].

use std::ops::Range;
#[cfg(feature = "compression")]
use std::sync::Arc;

#[cfg(feature = "compression")]
use bytes::Bytes;

#[cfg(feature = "compression")]
use super::shared::Shared;
use crate::chunk::Chunk;
#[cfg(feature = "compression")]
use crate::config::Compression;
use crate::config::Config;
#[cfg(feature = "compression")]
use crate::error::CorruptionKind;
use crate::error::{Error, Result};
use crate::format::{encoded_len, BatchHead, Record};
#[cfg(feature = "compression")]
use crate::format::{BATCH_HEAD_LEN, BATCH_MIN_VERSION, CODEC_LZ4, MEMBER_LEN_BYTES};
#[cfg(feature = "compression")]
use crate::types::position;

/// A batch holds members while their raw block stays within this (a single member may be
/// larger). LZ4's window is 64 KiB, so larger batches compress little better, and a read of
/// one member decompresses the whole batch.
#[cfg(feature = "compression")]
pub(crate) const BATCH_TARGET_RAW: usize = 64 << 10;

/// What the writer writes next: one record of the call, or a run of its entries as one
/// Batch record.
pub(crate) struct Unit {
    /// The call's records `recs[span]` this unit writes.
    pub span: Range<usize>,
    /// The Batch record, if the run is compressed: its head and compressed bytes.
    pub batch: Option<(BatchHead, Vec<u8>)>,
    /// Formed smaller than it could be because the room left in the chunk was short: form it
    /// again after a rotation.
    pub cut: bool,
}

impl Unit {
    /// The plain record `recs[i]`.
    pub fn one(i: usize, cut: bool) -> Unit {
        Unit {
            span: i..i + 1,
            batch: None,
            cut,
        }
    }

    /// Bytes the unit takes in the chunk (`sizes`: the encoded size of each record).
    pub fn size(&self, sizes: &[usize]) -> usize {
        match &self.batch {
            Some((head, data)) => encoded_len(Record::Batch { head: *head, data }.body_len()),
            None => sizes[self.span.start],
        }
    }
}

/// The unit that starts at `recs[i]`, if any, for a chunk with `avail` bytes free (what
/// `Writer::fits` accepts for one record) and format `version`; a batch must also leave
/// `per_member` bytes of that room per member (the seal-time footer's entry for each).
/// `raw` is scratch space.
///
/// A run of consecutive entries of one term becomes a Batch record when compression is on,
/// the chunk is of format v2, the run holds at least `min_batch_bytes` of payload, and the
/// record is at least 1/8 smaller than the entry records. The run ends at the call's end,
/// a record that is no entry, a change of term, [`BATCH_TARGET_RAW`] raw bytes, or what
/// fits in `avail` even if LZ4 could not compress it at all (a batch never spans chunks);
/// cut short by `avail`, it is marked `cut`.
pub(crate) fn unit_at(
    config: &Config,
    version: u32,
    recs: &[Record<'_>],
    sizes: &[usize],
    i: usize,
    (avail, per_member): (usize, usize),
    raw: &mut Vec<u8>,
) -> Option<Unit> {
    recs.get(i)?;
    #[cfg(feature = "compression")]
    if let Compression::Lz4 { min_batch_bytes } = config.compression {
        if version >= BATCH_MIN_VERSION {
            let room = (avail, per_member);
            return Some(lz4_unit(min_batch_bytes, recs, sizes, i, room, raw));
        }
    }
    let _ = (config, version, sizes, avail, per_member, raw);
    Some(Unit::one(i, false))
}

/// [`unit_at`] with LZ4 on.
#[cfg(feature = "compression")]
fn lz4_unit(
    min_batch_bytes: usize,
    recs: &[Record<'_>],
    sizes: &[usize],
    i: usize,
    (avail, per_member): (usize, usize),
    raw: &mut Vec<u8>,
) -> Unit {
    let Record::Entry { id: first, .. } = recs[i] else {
        return Unit::one(i, false);
    };
    let (mut end, mut raw_len, mut payload, mut cut) = (i, 0usize, 0usize, false);
    while let Some(Record::Entry { id, payload: p }) = recs.get(end) {
        let add = MEMBER_LEN_BYTES + p.len();
        if id.term != first.term || (end > i && raw_len + add > BATCH_TARGET_RAW) {
            break;
        }
        // Fits even if nothing compresses.
        let worst = encoded_len(BATCH_HEAD_LEN + lz4_bound(raw_len + add));
        if worst + per_member * (end - i + 1) > avail || raw_len + add > u32::MAX as usize {
            cut = true;
            break;
        }
        raw_len += add;
        payload += p.len();
        end += 1;
    }
    if end == i || payload < min_batch_bytes {
        return Unit::one(i, cut);
    }
    raw.clear();
    for rec in &recs[i..end] {
        if let Record::Entry { payload: p, .. } = rec {
            crate::format::push_member(raw, p);
        }
    }
    let mut data = Vec::new();
    crate::format::compress_into(raw, &mut data);
    let head = BatchHead {
        first: first.index,
        term: first.term,
        count: (end - i) as u32,
        codec: CODEC_LZ4,
        raw_len: raw_len as u32,
    };
    let batch_size = encoded_len(BATCH_HEAD_LEN + data.len());
    let plain: usize = sizes[i..end].iter().sum();
    // Worth it only if at least 1/8 smaller (and never for an empty output: a codec error).
    if data.is_empty() || batch_size.saturating_mul(8) > plain.saturating_mul(7) {
        return Unit::one(i, cut);
    }
    Unit {
        span: i..end,
        batch: Some((head, data)),
        cut,
    }
}

/// LZ4's worst case for `n` input bytes (what its block compressor may emit at most).
#[cfg(feature = "compression")]
fn lz4_bound(n: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(n)
}

/// The members of one Batch record, decompressed once: slices of one buffer.
#[derive(Debug)]
pub(crate) struct Members {
    /// Write position of the Batch record (the position every member's index entry has).
    pub pos: u64,
    /// Index of the first member.
    pub first: u64,
    /// Every member's payload, in order.
    pub payloads: Vec<bytes::Bytes>,
}

impl Members {
    /// Member `index`'s payload, if it is one.
    pub fn get(&self, index: u64) -> Option<bytes::Bytes> {
        let slot = usize::try_from(index.checked_sub(self.first)?).ok()?;
        self.payloads.get(slot).cloned()
    }
}

/// Decompress the Batch record `head`/`data` at `off` in chunk `c` (its CRC already checked,
/// and `index` one of its members), and put every member still in the log into the payload
/// cache. Without feature `compression`: [`Error::CompressionUnsupported`].
#[cfg(feature = "compression")]
pub(crate) fn decompress_members(
    shared: &Shared,
    c: &Chunk,
    off: usize,
    (head, data): (&BatchHead, &[u8]),
    _index: u64,
) -> Result<Arc<Members>> {
    let corrupt = |k: CorruptionKind| Error::corrupt(c.seq, off as u64, k);
    // No writer makes a batch larger than its chunk: bounds the allocation.
    let raw =
        crate::format::decompress(head, data, c.header.chunk_size as usize).map_err(corrupt)?;
    let ranges = crate::format::member_ranges(&raw, head.count).map_err(corrupt)?;
    let buf = Bytes::from(raw);
    let payloads: Vec<Bytes> = ranges.iter().map(|&(s, n)| buf.slice(s..s + n)).collect();
    let pos = position(c.seq, off);
    let held = |i: u64| {
        shared
            .index
            .get(i)
            .is_some_and(|l| l.pos() == pos && l.term == head.term)
    };
    shared
        .cache
        .insert_read(head.first, pos, &payloads, held, shared.durable.index());
    Ok(Arc::new(Members {
        pos,
        first: head.first,
        payloads,
    }))
}

/// Without feature `compression`, a member cannot be read.
#[cfg(not(feature = "compression"))]
pub(crate) fn decompress_members(
    _shared: &super::shared::Shared,
    c: &Chunk,
    off: usize,
    _batch: (&BatchHead, &[u8]),
    index: u64,
) -> Result<std::sync::Arc<Members>> {
    Err(Error::CompressionUnsupported {
        index,
        chunk: c.seq,
        offset: off as u64,
    })
}
