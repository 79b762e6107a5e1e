//! Statistics, sizes and dumps of a live log.

use bytes::Bytes;

use super::read::AccessStat;
use super::wal::Wal;
use crate::chunk::{scan_chunk, Scanned};
use crate::error::Result;
use crate::format::Record;
use crate::index::CacheStat;
use crate::types::{LogId, LogState};

/// One chunk of a live log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkStat {
    /// Sequence number.
    pub seq: u64,
    /// Mapped (preallocated) size in bytes.
    pub size: u64,
    /// Bytes holding records (header included).
    pub written: u64,
}

/// A snapshot of a live log's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stat {
    /// Chunks, oldest first.
    pub chunks: Vec<ChunkStat>,
    /// Entries in the index.
    pub entries: usize,
    /// Estimated heap bytes of the entry index (its runs, their slots and their skip-list
    /// nodes, with allocations rounded as glibc's malloc rounds them): about 4 bytes per
    /// entry while entries share a term, at most about 12.2 when every entry has its own.
    pub index_bytes: usize,
    /// The log state.
    pub state: LogState,
    /// Highest entry index known durable.
    pub durable_index: Option<u64>,
    /// Cache counters.
    pub cache: CacheStat,
    /// Configured chunk size.
    pub chunk_size: u64,
}

/// A record as stored, with owned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnedRecord {
    /// A log entry.
    Entry {
        /// Its id.
        id: LogId,
        /// Its payload.
        payload: Bytes,
    },
    /// Truncate from `since`.
    Truncate {
        /// First removed index.
        since: u64,
        /// Last id after the truncation.
        last: Option<LogId>,
    },
    /// Purge through `upto`.
    Purge {
        /// Last removed id.
        upto: LogId,
    },
    /// Committed id.
    Commit {
        /// The id.
        id: LogId,
    },
    /// Vote bytes.
    Vote {
        /// The vote.
        vote: Bytes,
    },
    /// Application data.
    UserData {
        /// The data.
        data: Option<Bytes>,
    },
    /// A state image.
    State(LogState),
    /// End of chunk.
    Seal,
    /// Entries `first.index ..= first.index + count - 1`, all of term `first.term`, stored
    /// as one LZ4-compressed block (format v2, written with feature `compression`; see
    /// `docs/format.md`). Reading the members' payloads needs that feature:
    /// [`crate::Wal::read`] decompresses them.
    Batch {
        /// Id of the first member.
        first: LogId,
        /// Members (at least 1).
        count: u32,
        /// Bytes of the raw block (every member's 4-byte length and payload).
        raw_len: u32,
        /// The compressed block as stored.
        compressed: Bytes,
    },
    /// The seal-time footer of a v2 chunk (format v2): the raw Index body.
    Index {
        /// The body bytes (see `docs/format.md`).
        body: Bytes,
    },
    /// The record's group is removed (format v2).
    RemoveGroup,
}

impl OwnedRecord {
    /// Copy a borrowed record.
    pub(crate) fn from_record(r: &Record<'_>) -> Self {
        let b = Bytes::copy_from_slice;
        match *r {
            Record::Entry { id, payload } => OwnedRecord::Entry {
                id,
                payload: b(payload),
            },
            Record::Truncate { since, last } => OwnedRecord::Truncate { since, last },
            Record::Purge { upto } => OwnedRecord::Purge { upto },
            Record::Commit { id } => OwnedRecord::Commit { id },
            Record::Vote { vote } => OwnedRecord::Vote { vote: b(vote) },
            Record::UserData { data } => OwnedRecord::UserData { data: data.map(b) },
            Record::State(s) => OwnedRecord::State(LogState {
                vote: s.vote.map(b),
                last: s.last,
                committed: s.committed,
                purged: s.purged,
                user_data: s.user_data.map(b),
            }),
            Record::Seal => OwnedRecord::Seal,
            Record::Batch { head, data } => OwnedRecord::Batch {
                first: LogId::new(head.term, head.first),
                count: head.count,
                raw_len: head.raw_len,
                compressed: b(data),
            },
            Record::Index { body } => OwnedRecord::Index { body: b(body) },
            Record::RemoveGroup => OwnedRecord::RemoveGroup,
        }
    }

    /// The kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            OwnedRecord::Entry { .. } => "entry",
            OwnedRecord::Truncate { .. } => "truncate",
            OwnedRecord::Purge { .. } => "purge",
            OwnedRecord::Commit { .. } => "commit",
            OwnedRecord::Vote { .. } => "vote",
            OwnedRecord::UserData { .. } => "user_data",
            OwnedRecord::State(_) => "state",
            OwnedRecord::Seal => "seal",
            OwnedRecord::Batch { .. } => "batch",
            OwnedRecord::Index { .. } => "index",
            OwnedRecord::RemoveGroup => "remove_group",
        }
    }
}

/// A record with its place on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpRecord {
    /// Chunk sequence number.
    pub chunk: u64,
    /// Offset in the chunk.
    pub offset: u64,
    /// Bytes it occupies.
    pub encoded_len: u64,
    /// Durable hint stored with it.
    pub hint: u32,
    /// The group it belongs to (0: the default group).
    pub group: u64,
    /// The record.
    pub record: OwnedRecord,
}

impl DumpRecord {
    /// The record a scan of chunk `chunk` found.
    pub(crate) fn scanned(chunk: u64, s: &Scanned<'_>) -> DumpRecord {
        DumpRecord {
            chunk,
            offset: s.offset as u64,
            encoded_len: s.encoded_len as u64,
            hint: s.hint,
            group: s.group,
            record: OwnedRecord::from_record(&s.record),
        }
    }
}

/// The state and every live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpData {
    /// The log state.
    pub state: LogState,
    /// Every entry, in order.
    pub entries: Vec<(LogId, Bytes)>,
}

impl Wal {
    /// Shape of the log.
    pub fn stat(&self) -> Stat {
        let r = self.reader();
        let s = r.shared();
        let chunks = s
            .chunks
            .iter()
            .map(|e| ChunkStat {
                seq: *e.key(),
                size: e.value().region.len() as u64,
                written: e.value().region.published() as u64,
            })
            .collect();
        Stat {
            chunks,
            entries: s.index.len(),
            index_bytes: s.index.heap_bytes(),
            state: r.log_state(),
            durable_index: s.durable.index(),
            cache: s.cache.stat(),
            chunk_size: self.with_writer(|w| w.config.chunk_size),
        }
    }

    /// Read and write counters.
    pub fn access_stat(&self) -> AccessStat {
        self.reader().access_stat()
    }

    /// Bytes of records in all live chunks (the logical log size; files are preallocated
    /// to the chunk size on top of this).
    pub fn on_disk_size(&self) -> u64 {
        self.stat().chunks.iter().map(|c| c.written).sum()
    }

    /// Every record in every live chunk, in order, as it is on disk.
    pub fn dump(&self) -> Result<Vec<DumpRecord>> {
        let r = self.reader();
        let s = r.shared();
        let chunks: Vec<_> = s.chunks.iter().map(|e| e.value().clone()).collect();
        let mut out = Vec::new();
        let n = chunks.len();
        for (i, c) in chunks.iter().enumerate() {
            scan_chunk(
                c.region.bytes(),
                c.seq,
                c.header.epoch_tag(),
                c.header.version,
                i + 1 == n,
                &mut |sc| {
                    out.push(DumpRecord::scanned(c.seq, sc));
                    Ok(())
                },
            )?;
        }
        Ok(out)
    }

    /// The state and all live entries.
    pub fn dump_data(&self) -> Result<DumpData> {
        let state = self.log_state();
        let entries = self.read(..)?;
        Ok(DumpData { state, entries })
    }
}
