//! Structured errors: every failure names what failed and where.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Result alias used throughout chunkwal.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a record or chunk was judged corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The chunk header does not start with the chunkwal magic.
    #[error("bad magic")]
    BadMagic,
    /// The chunk file is shorter than a chunk header.
    #[error("file too short for a header ({len} bytes)")]
    ShortFile {
        /// File length in bytes.
        len: u64,
    },
    /// The chunk header checksum does not match.
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the header bytes.
        computed: u32,
    },
    /// A header field holds an impossible value.
    #[error("bad header field {field}")]
    BadHeaderField {
        /// The field name.
        field: &'static str,
    },
    /// A record's checksum does not match its bytes.
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    RecordChecksum {
        /// Checksum stored in the record header.
        stored: u32,
        /// Checksum computed over the record.
        computed: u32,
    },
    /// The record header is all zeroes where a record was expected.
    #[error("zeroed record header")]
    ZeroHeader,
    /// The record length runs past the end of the chunk.
    #[error("record length {len} runs past the end of the chunk")]
    BadLength {
        /// The stored body length.
        len: u32,
    },
    /// The record belongs to another incarnation of the file.
    #[error("record epoch {found:#x} does not match chunk epoch {expected:#x}")]
    EpochMismatch {
        /// Epoch tag of the chunk.
        expected: u32,
        /// Epoch tag found in the record.
        found: u32,
    },
    /// Reserved bits are set.
    #[error("reserved bits set in record header")]
    ReservedBits,
    /// A record flagged as belonging to a group has no group id, or group 0, or is in a
    /// chunk whose format has no groups.
    #[error("bad group prefix (group {group:?})")]
    BadGroup {
        /// The group id found, if the prefix was there.
        group: Option<u64>,
    },
    /// The record kind byte is unknown.
    #[error("unknown record kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The record body does not decode for its kind.
    #[error("malformed {kind} body: {what}")]
    BadBody {
        /// Record kind name.
        kind: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// A record is damaged although later records prove it was synced.
    #[error(
        "damaged record followed by a valid record at offset {later} written after it was synced"
    )]
    DamagedDurableRecord {
        /// Offset of the later, valid record.
        later: u64,
    },
    /// A sealed (non-last) chunk ends without a seal record.
    #[error("chunk ends without a seal record")]
    MissingSeal,
    /// Entries are not contiguous.
    #[error("entry index {got} does not follow {expected}")]
    NonContiguous {
        /// Index that was expected.
        expected: u64,
        /// Index that was found.
        got: u64,
    },
    /// The chunk header sequence number does not match the file name.
    #[error("header says chunk {in_header}")]
    SeqMismatch {
        /// Sequence number in the header.
        in_header: u64,
    },
    /// A chunk in the middle of the log is missing.
    #[error("chunk {missing} is missing")]
    MissingChunk {
        /// The missing chunk sequence number.
        missing: u64,
    },
    /// A record contradicts the state replay has built so far.
    #[error("{what}")]
    Inconsistent {
        /// What disagrees.
        what: &'static str,
    },
    /// An atomic write group was cut off inside a sealed chunk.
    #[error("unterminated atomic group")]
    UnterminatedGroup,
    /// The last chunk has a torn tail and the recovery mode forbids repairing it.
    #[error("torn tail not allowed by the recovery mode")]
    TornTail,
}

/// Every error chunkwal returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The disk (or quota) is full. Nothing already written was lost.
    #[error("no space left while {op} on {path}")]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
    },
    /// Bytes on disk failed validation.
    #[error("corruption in chunk {chunk} at offset {offset}: {reason}")]
    Corruption {
        /// Chunk sequence number.
        chunk: u64,
        /// Byte offset inside the chunk file.
        offset: u64,
        /// What was wrong.
        reason: CorruptionKind,
    },
    /// The chunk was written by a newer format version.
    #[error("chunk {chunk} has format version {found}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// Chunk sequence number.
        chunk: u64,
        /// Version found in the header.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// Another process (or another handle) holds the directory lock.
    #[error("log directory {path} is locked by another process")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory does not exist and `create_if_missing` is off.
    #[error("log directory {path} does not exist")]
    NoSuchDirectory {
        /// The path.
        path: PathBuf,
    },
    /// A fatal failure (a failed sync, install or directory fsync, or a panic on the write
    /// or flush path) poisoned the log: every later write, flush and flush ticket returns
    /// this same error, source included, until the log is reopened. Also returned by
    /// [`crate::Wal::open`] when open's own sync of the tail fails (no log was opened).
    #[error("log is poisoned: {op} failed earlier{}: {source}; reopen to recover", on_path(.path))]
    Poisoned {
        /// The operation that failed first (for example `"msync"`, `"install chunk"`).
        op: &'static str,
        /// The file or directory it failed on, when one is known.
        path: Option<PathBuf>,
        /// The error that caused it (shared: every later call returns a clone of it). A
        /// caught panic is an [`io::ErrorKind::Other`] error wrapping [`Panicked`].
        #[source]
        source: Arc<io::Error>,
    },
    /// A new group, or a bigger vote or user data, would make the groups' state images
    /// (which start every chunk) pass the room a chunk keeps for them.
    #[error("{groups} groups' state images would take {image_bytes} bytes, more than {max}")]
    TooManyGroups {
        /// Groups in the log.
        groups: usize,
        /// Bytes their images would take.
        image_bytes: u64,
        /// The room for them: an eighth of the chunk size.
        max: u64,
    },
    /// The operation needs a non-default group (the default group is the log itself).
    #[error("{op} needs a non-default group")]
    DefaultGroup {
        /// The operation refused.
        op: &'static str,
    },
    /// A payload does not fit in a chunk.
    #[error("record of {size} bytes exceeds the maximum of {max} bytes for this chunk size")]
    EntryTooLarge {
        /// Encoded size requested.
        size: u64,
        /// Largest size accepted.
        max: u64,
    },
    /// Appended entries must follow the last index without gaps.
    #[error("non-contiguous append: expected index {expected}, got {got}")]
    NonContiguous {
        /// The next index the log accepts.
        expected: u64,
        /// The index that was given.
        got: u64,
    },
    /// The log already holds index `u64::MAX`; no entry can follow it.
    #[error("index overflow: no entry can follow index u64::MAX")]
    IndexOverflow,
    /// A read asked for entries the log does not hold: a bound of the range lies before the
    /// first held entry (purged) or after the last one, or an entry of the range vanished
    /// while the read ran (a concurrent purge or truncate). Every bound here is inclusive.
    #[error("entries {from}..={through} are not all in the log (it holds {})", held(*.first, *.last))]
    OutOfRange {
        /// First index asked for (inclusive).
        from: u64,
        /// Last index asked for (inclusive).
        through: u64,
        /// First index the log held when the read looked (inclusive); `None` if it held none.
        first: Option<u64>,
        /// Last index the log held when the read looked (inclusive); `None` if it held none.
        last: Option<u64>,
    },
    /// Truncating at or below the purge point is not possible.
    #[error("cannot truncate at {since}: entries up to {purged} are purged")]
    TruncatePurged {
        /// Requested truncation index.
        since: u64,
        /// Last purged index.
        purged: u64,
    },
    /// A configuration value breaks a rule of [`crate::Config::validate`].
    #[error("invalid config: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// A write was refused before anything of it was written: one of its records
    /// contradicts the log (it would not replay). Nothing changed.
    #[error("write refused, nothing written: {reason}")]
    Rejected {
        /// What the record contradicts.
        reason: CorruptionKind,
    },
    /// The flush worker is gone (it panicked or the log was closed).
    #[error("flush worker stopped")]
    WorkerStopped,
    /// A directory entry named like a chunk (or a pending chunk) is not a regular file: a
    /// FIFO, a socket, a device, a directory, or a symlink to one. chunkwal never creates
    /// one, and opening it could block forever (a FIFO), so it is refused without reading.
    #[error("{path} is named like a chunk file but is not a regular file")]
    NotARegularFile {
        /// The entry.
        path: PathBuf,
    },
    /// A chunk (or pending chunk) file's sequence number is past
    /// [`MAX_CHUNK_SEQ`](crate::MAX_CHUNK_SEQ): write positions could not represent it.
    #[error("chunk file {path} has sequence number {seq}, past the maximum {max}")]
    ChunkSeqOutOfRange {
        /// The file.
        path: PathBuf,
        /// Its sequence number.
        seq: u64,
        /// The largest sequence number a chunk may have.
        max: u64,
    },
    /// The entry is stored in a compressed Batch record (written with feature
    /// `compression`) and this build cannot decompress it: build chunkwal with feature
    /// `compression` to read it. Opening and replaying such a log works without it; only
    /// reading those entries' payloads fails. Nothing is damaged.
    #[error(
        "entry {index} is compressed (batch in chunk {chunk} at offset {offset}); \
         reading it needs chunkwal's cargo feature `compression`"
    )]
    CompressionUnsupported {
        /// The entry asked for.
        index: u64,
        /// Chunk sequence number of the Batch record.
        chunk: u64,
        /// Offset of the Batch record in the chunk.
        offset: u64,
    },
}

impl Error {
    /// Wrap an I/O error, recognising a full disk.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_no_space(&source) {
            Error::DiskFull { op, path }
        } else {
            Error::Io { op, path, source }
        }
    }

    /// A corruption error.
    pub(crate) fn corrupt(chunk: u64, offset: u64, reason: CorruptionKind) -> Self {
        Error::Corruption {
            chunk,
            offset,
            reason,
        }
    }

    /// True if this error means the log must be reopened.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned { .. })
    }
}

/// An [`io::Error`] like `e` (same OS error code, or the same kind), for when one error
/// must be both returned and kept (`io::Error` is not `Clone`).
pub(crate) fn copy_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::from(e.kind()),
    }
}

/// `" on <path>"`, or nothing.
fn on_path(path: &Option<PathBuf>) -> String {
    path.as_deref().map(on).unwrap_or_default()
}

fn on(path: &Path) -> String {
    format!(" on {}", path.display())
}

/// The source of a [`Error::Poisoned`] caused by a caught panic (wrapped in an
/// [`io::Error`] of kind [`io::ErrorKind::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a panic was caught")]
pub struct Panicked;

impl Panicked {
    /// The [`io::Error`] a poison caused by a panic carries.
    pub(crate) fn io() -> io::Error {
        io::Error::other(Panicked)
    }
}

/// Which rule of [`crate::Config::validate`] a configuration broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `chunk_size` is outside the accepted range.
    #[error("chunk_size {value} is not between {min} and {max} bytes")]
    ChunkSizeOutOfRange {
        /// The configured value.
        value: u64,
        /// Smallest accepted ([`crate::MIN_CHUNK_SIZE`]).
        min: u64,
        /// Largest accepted ([`crate::MAX_CHUNK_SIZE`]).
        max: u64,
    },
    /// `chunk_size` is not a multiple of the page-sized alignment.
    #[error("chunk_size {value} is not a multiple of {align}")]
    ChunkSizeUnaligned {
        /// The configured value.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// `flush_batch_max` is 0: no flush request could ever be taken.
    #[error("flush_batch_max must be at least 1")]
    FlushBatchMaxZero,
    /// `rewrite_threshold` is below two chunks.
    #[error("rewrite_threshold {value} must be at least twice chunk_size {chunk_size}")]
    RewriteThresholdTooSmall {
        /// The threshold given.
        value: u64,
        /// The chunk size.
        chunk_size: u64,
    },
    /// `max_unsynced_bytes` is `Some(0)`. Use `None` for no backpressure, or
    /// [`crate::Wal::flush_blocking`] after each append to make every append durable.
    #[error("max_unsynced_bytes must be at least 1 (use None for no bound)")]
    MaxUnsyncedBytesZero,
    /// `max_unsynced_bytes` is not below `chunk_size`. The bound counts the active chunk's
    /// unsynced bytes, which never reach the chunk size, so it could never apply.
    #[error("max_unsynced_bytes {value} must be below chunk_size {chunk_size}")]
    MaxUnsyncedBytesTooLarge {
        /// The configured bound.
        value: u64,
        /// The configured chunk size.
        chunk_size: u64,
    },
    /// `compression` asks for a codec this build does not have: build chunkwal with the
    /// cargo feature named here.
    #[error("compression codec {codec} needs chunkwal's cargo feature `{feature}`")]
    CompressionUnavailable {
        /// The codec asked for (`"lz4"`).
        codec: &'static str,
        /// The feature that provides it (`"compression"`).
        feature: &'static str,
    },
}

/// What a log holds, for [`Error::OutOfRange`]'s message.
fn held(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => format!("{f}..={l}"),
        _ => "no entries".to_owned(),
    }
}

/// ENOSPC or EDQUOT.
fn is_no_space(e: &io::Error) -> bool {
    // EDQUOT is 122 on Linux but 69 on macOS and the BSDs: take the platform's numbers.
    matches!(e.raw_os_error(), Some(c) if c == libc::ENOSPC || c == libc::EDQUOT)
        || e.kind() == io::ErrorKind::StorageFull
}
