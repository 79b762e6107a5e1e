//! Why a seal-time footer was not used (open then scans the chunk instead).

use crate::error::CorruptionKind;

/// Why a footer was not used. Open falls back to scanning the chunk; nothing here is an
/// error of the log as long as the scan succeeds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FooterError {
    /// The file is shorter than its header's chunk size, so the trailer is missing.
    #[error("file of {len} bytes has no trailer (chunk size {chunk_size})")]
    Short {
        /// Bytes present.
        len: u64,
        /// The header's chunk size.
        chunk_size: u64,
    },
    /// The trailer does not start with the magic bytes (no footer was written).
    #[error("no trailer magic")]
    NoMagic,
    /// The trailer's checksum does not match.
    #[error("trailer checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    TrailerChecksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// The trailer carries another epoch tag: it is an earlier life's (a recycled chunk).
    #[error("stale trailer: tag {found:#010x}, chunk tag {expected:#010x}")]
    StaleTrailer {
        /// The chunk's tag.
        expected: u32,
        /// The trailer's tag.
        found: u32,
    },
    /// A reserved trailer field is not zero.
    #[error("trailer reserved field is not zero")]
    TrailerReserved,
    /// The trailer's offsets are out of bounds, misaligned or out of order.
    #[error("trailer offsets index {index_off}, seal {seal_off} are not valid")]
    TrailerOffsets {
        /// Index record offset.
        index_off: u32,
        /// Seal record offset.
        seal_off: u32,
    },
    /// The record frame at the offset is cut short by the trailer.
    #[error("record at {offset} runs into the trailer")]
    FrameTruncated {
        /// Where the frame was expected.
        offset: u32,
    },
    /// No valid record frame at the offset.
    #[error("no valid record at {offset}: {reason}")]
    Frame {
        /// Where the frame was expected.
        offset: u32,
        /// What was wrong.
        reason: CorruptionKind,
    },
    /// The record at the offset is not of the expected kind (or flags).
    #[error("record at {offset} has kind {kind} flags {flags}, expected kind {expected}")]
    WrongRecord {
        /// Where.
        offset: u32,
        /// Kind found.
        kind: u8,
        /// Flags found.
        flags: u8,
        /// Kind expected.
        expected: u8,
    },
    /// A Record item names a record that is not replayed from a footer (an entry, a Seal,
    /// an Index record).
    #[error("record item at {offset} names a record of kind {kind}")]
    NotReplayable {
        /// Where.
        offset: u32,
        /// Kind found.
        kind: u8,
    },
    /// The Index record does not end where the Seal starts.
    #[error("index record ends at {end}, seal at {seal_off}")]
    IndexEnd {
        /// Where the Index record ends.
        end: u64,
        /// Where the Seal is.
        seal_off: u32,
    },
    /// The Index body is shorter than its own header.
    #[error("index body of {len} bytes is too short")]
    BodyShort {
        /// Body length.
        len: usize,
    },
    /// The item count cannot fit in the body.
    #[error("{n_items} items cannot fit in {len} body bytes")]
    ItemCount {
        /// Count read.
        n_items: u32,
        /// Body length.
        len: usize,
    },
    /// An item is cut short by the end of the body.
    #[error("item at body byte {at} is truncated")]
    ItemTruncated {
        /// Body offset of the item.
        at: usize,
    },
    /// An item's tag is unknown.
    #[error("item at body byte {at} has unknown tag {tag}")]
    ItemTag {
        /// Body offset of the item.
        at: usize,
        /// The tag.
        tag: u8,
    },
    /// Reserved or padding bytes of an item are not zero.
    #[error("item at body byte {at} has non-zero reserved bytes")]
    ItemReserved {
        /// Body offset of the item.
        at: usize,
    },
    /// A run is empty, or its indexes overflow `u64`.
    #[error("run at body byte {at} has a bad count {count}")]
    RunCount {
        /// Body offset of the item.
        at: usize,
        /// The count.
        count: u32,
    },
    /// A `TAG_GROUP_RUN` item names group 0 (the default group's runs are `TAG_RUN` items).
    #[error("group run at body byte {at} (first {first}, count {count}) names group 0")]
    GroupRunZero {
        /// Body offset of the item.
        at: usize,
        /// The run's first index.
        first: u64,
        /// The run's count.
        count: u32,
    },
    /// A record offset is misaligned, out of `[64, index_off)`, or not after the previous.
    #[error("item at body byte {at} names bad record offset {offset}")]
    ItemOffset {
        /// Body offset of the item.
        at: usize,
        /// The record offset.
        offset: u32,
    },
    /// Bytes follow the last item.
    #[error("{extra} bytes follow the last item")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The trailer's entry count disagrees with the runs.
    #[error("trailer counts {trailer} entries, the runs hold {runs}")]
    EntryCount {
        /// From the trailer.
        trailer: u32,
        /// Sum of the runs.
        runs: u64,
    },
}
