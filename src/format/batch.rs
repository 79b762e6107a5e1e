//! The Batch record (kind 10, format v2): a run of entries of one term stored as one
//! LZ4-compressed block. Pure, no I/O.
//!
//! Body: a 32-byte head (`first: u64, term: u64, count: u32, codec: u8, reserved [u8; 3],
//! raw_len: u32, reserved: u32`), then the compressed bytes of the raw block, which holds, per
//! member, `len: u32` and the payload. The head alone is enough to replay the record (no
//! decompression); the codec itself needs feature `compression`.

use crate::error::CorruptionKind;

/// Bytes of the head at the start of a Batch body.
pub const BATCH_HEAD_LEN: usize = 32;
/// Codec byte: an LZ4 block (the only one defined).
pub const CODEC_LZ4: u8 = 1;
/// The oldest chunk format version in which Batch records are valid.
pub const BATCH_MIN_VERSION: u32 = 2;
/// Bytes each member takes in the raw block besides its payload (its `len`).
pub const MEMBER_LEN_BYTES: usize = 4;
/// An LZ4 block never expands more than this: one input byte yields at most 255 output bytes.
const LZ4_MAX_RATIO: u64 = 255;

/// What a Batch record's head says: enough to replay it without decompressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHead {
    /// Index of the first member.
    pub first: u64,
    /// Term of every member.
    pub term: u64,
    /// Members (at least 1; indexes `first..first + count`).
    pub count: u32,
    /// Codec of the compressed bytes ([`CODEC_LZ4`]).
    pub codec: u8,
    /// Length of the raw block once decompressed.
    pub raw_len: u32,
}

impl BatchHead {
    /// Index of the last member (checked at decode not to overflow).
    pub fn last(&self) -> u64 {
        self.first
            .saturating_add(u64::from(self.count).saturating_sub(1))
    }

    /// Whether `index` is a member.
    pub fn holds(&self, index: u64) -> bool {
        self.first <= index && index <= self.last()
    }

    /// Write the head into `dst`, which is exactly [`BATCH_HEAD_LEN`] bytes long.
    pub fn write(&self, dst: &mut [u8]) {
        dst[..8].copy_from_slice(&self.first.to_le_bytes());
        dst[8..16].copy_from_slice(&self.term.to_le_bytes());
        dst[16..20].copy_from_slice(&self.count.to_le_bytes());
        dst[20] = self.codec;
        dst[21..24].fill(0);
        dst[24..28].copy_from_slice(&self.raw_len.to_le_bytes());
        dst[28..32].fill(0);
    }

    /// Split a Batch body into its head and compressed bytes, checking every field that
    /// replay relies on. Total: never panics. The member count is bounded by the bytes
    /// (each member takes at least 4 raw bytes, and LZ4 expands at most 255-fold), so
    /// replay never pushes more index entries than the record's size allows.
    pub fn decode(body: &[u8]) -> Result<(BatchHead, &[u8]), CorruptionKind> {
        let bad = |what| CorruptionKind::BadBody {
            kind: "batch",
            what,
        };
        if body.len() < BATCH_HEAD_LEN {
            return Err(bad("too short"));
        }
        let (h, data) = body.split_at(BATCH_HEAD_LEN);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let head = BatchHead {
            first: u64_at(0),
            term: u64_at(8),
            count: u32_at(16),
            codec: h[20],
            raw_len: u32_at(24),
        };
        if h[21..24] != [0; 3] || u32_at(28) != 0 {
            return Err(bad("reserved bytes set"));
        }
        if head.codec != CODEC_LZ4 {
            return Err(bad("unknown codec"));
        }
        if head.count == 0 {
            return Err(bad("no members"));
        }
        if head.first.checked_add(u64::from(head.count) - 1).is_none() {
            return Err(bad("member index overflows"));
        }
        if (head.raw_len as usize) < head.count as usize * MEMBER_LEN_BYTES {
            return Err(bad("raw length too short for its members"));
        }
        if u64::from(head.raw_len) > LZ4_MAX_RATIO * data.len() as u64 {
            return Err(bad("raw length impossible for the compressed length"));
        }
        Ok((head, data))
    }
}

#[cfg(any(test, feature = "testing", feature = "compression"))]
/// Append `payload` as one member to the raw block `raw`.
pub fn push_member(raw: &mut Vec<u8>, payload: &[u8]) {
    raw.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    raw.extend_from_slice(payload);
}

#[cfg(any(test, feature = "testing", feature = "compression"))]
/// The members of a decompressed raw block as `(start, len)` byte ranges of `raw`: exactly
/// `count` of them, covering `raw` exactly. Total: never panics.
pub fn member_ranges(raw: &[u8], count: u32) -> Result<Vec<(usize, usize)>, CorruptionKind> {
    let bad = |what| CorruptionKind::BadBody {
        kind: "batch",
        what,
    };
    // The count was bounded by the raw length at decode, and the caller checked that `raw`
    // has that length: this allocation is bounded by the bytes.
    let mut out = Vec::with_capacity((count as usize).min(raw.len() / MEMBER_LEN_BYTES));
    let mut at = 0usize;
    for _ in 0..count {
        let Some(len) = raw.get(at..at + MEMBER_LEN_BYTES) else {
            return Err(bad("raw block ends inside a member length"));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let start = at + MEMBER_LEN_BYTES;
        if raw.len() - start < len {
            return Err(bad("member runs past the raw block"));
        }
        out.push((start, len));
        at = start + len;
    }
    if at != raw.len() {
        return Err(bad("raw block has bytes after its last member"));
    }
    Ok(out)
}

/// Compress the raw block `raw` (an LZ4 block) into `out`, replacing its contents.
#[cfg(feature = "compression")]
pub fn compress_into(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
    // The buffer has the codec's own worst-case size, so this cannot fail; if it did, the
    // empty output makes the caller write plain entries instead.
    let n = lz4_flex::block::compress_into(raw, out).unwrap_or(0);
    out.truncate(n);
}

/// Decompress a batch's bytes into its raw block. `max_raw` bounds the allocation (the
/// caller passes the chunk size: no writer makes a batch larger than a chunk) before
/// anything is allocated. Hostile bytes give an error, never a panic.
#[cfg(feature = "compression")]
pub fn decompress(
    head: &BatchHead,
    data: &[u8],
    max_raw: usize,
) -> Result<Vec<u8>, CorruptionKind> {
    let bad = |what| CorruptionKind::BadBody {
        kind: "batch",
        what,
    };
    let raw_len = head.raw_len as usize;
    if raw_len > max_raw {
        return Err(bad("raw length larger than a chunk"));
    }
    let mut raw = vec![0u8; raw_len];
    match lz4_flex::block::decompress_into(data, &mut raw) {
        Ok(n) if n == raw_len => Ok(raw),
        Ok(_) => Err(bad("decompressed length differs from the raw length")),
        Err(_) => Err(bad("compressed bytes do not decode")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(count: u32, raw_len: u32) -> BatchHead {
        BatchHead {
            first: 5,
            term: 2,
            count,
            codec: CODEC_LZ4,
            raw_len,
        }
    }

    fn body(h: &BatchHead, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEAD_LEN];
        h.write(&mut b);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn head_round_trips_and_bad_heads_are_refused() {
        let h = head(2, 10);
        let b = body(&h, &[0u8; 8]);
        assert_eq!(BatchHead::decode(&b).unwrap(), (h, &[0u8; 8][..]));
        assert_eq!(h.last(), 6);
        assert!(h.holds(5) && h.holds(6) && !h.holds(7) && !h.holds(4));
        let refused = |b: &[u8]| {
            matches!(
                BatchHead::decode(b),
                Err(CorruptionKind::BadBody { kind: "batch", .. })
            )
        };
        assert!(refused(&b[..31]));
        assert!(refused(&body(&head(0, 10), &[0; 8])));
        assert!(
            refused(&body(&head(3, 10), &[0; 8])),
            "3 members need 12 raw bytes"
        );
        assert!(
            refused(&body(&head(1, 255 * 8 + 1), &[0; 8])),
            "past LZ4's ratio"
        );
        let mut codec = b.clone();
        codec[20] = 2;
        assert!(refused(&codec));
        for at in [21, 22, 23, 28, 31] {
            let mut r = b.clone();
            r[at] = 1;
            assert!(refused(&r), "reserved byte {at}");
        }
        let mut over = head(2, 10);
        over.first = u64::MAX;
        assert!(refused(&body(&over, &[0; 8])));
    }

    #[test]
    fn member_ranges_cover_the_block_exactly() {
        let mut raw = Vec::new();
        push_member(&mut raw, b"abc");
        push_member(&mut raw, b"");
        push_member(&mut raw, b"de");
        assert_eq!(
            member_ranges(&raw, 3).unwrap(),
            vec![(4, 3), (11, 0), (15, 2)]
        );
        assert!(member_ranges(&raw, 2).is_err(), "bytes left over");
        assert!(member_ranges(&raw, 4).is_err(), "a member missing");
        assert!(member_ranges(&raw[..raw.len() - 1], 3).is_err());
        let mut huge = raw.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(member_ranges(&huge, 3).is_err());
    }

    #[cfg(feature = "compression")]
    #[test]
    fn lz4_round_trip_and_hostile_bytes_never_panic() {
        let mut raw = Vec::new();
        for i in 0..50u32 {
            push_member(
                &mut raw,
                format!("{{\"key\":{i},\"value\":\"aaaaaaaaaaaa\"}}").as_bytes(),
            );
        }
        let mut z = Vec::new();
        compress_into(&raw, &mut z);
        assert!(z.len() < raw.len());
        let h = head(50, raw.len() as u32);
        assert_eq!(decompress(&h, &z, 1 << 20).unwrap(), raw);
        assert!(
            decompress(&h, &z, raw.len() - 1).is_err(),
            "bounded before allocating"
        );
        let mut wrong = h;
        wrong.raw_len += 1;
        assert!(decompress(&wrong, &z, 1 << 20).is_err());
        // Every single-byte change and every prefix: an error or some bytes, never a panic.
        for at in 0..z.len() {
            for v in [0u8, 0xFF, z[at] ^ 0x55] {
                let mut d = z.clone();
                d[at] = v;
                let _ = decompress(&h, &d, 1 << 20);
            }
            let _ = decompress(&h, &z[..at], 1 << 20);
        }
    }
}
