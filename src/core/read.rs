//! The read path: index lookup, cache, then the map with CRC verification. Never locks.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::shared::{Counters, Shared};
use crate::chunk::Chunk;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{decode_frame, FrameError, Record, RECORD_HEADER_LEN};
use crate::index::{CacheCursor, CacheStat, Loc};
use crate::types::{LogId, LogState};

/// A cloneable, `Send + Sync` read handle. Reads never wait for the writer.
#[derive(Debug, Clone)]
pub struct Reader {
    shared: Arc<Shared>,
}

/// Read and write counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessStat {
    /// Cache counters.
    pub cache: CacheStat,
    /// Read calls.
    pub reads: u64,
    /// Entries returned by reads.
    pub read_entries: u64,
    /// Append calls.
    pub appends: u64,
    /// Entries appended.
    pub appended_entries: u64,
    /// Flush requests.
    pub flushes: u64,
    /// Completed syncs of chunk data: with group commit, one per wave of flush requests.
    pub syncs: u64,
    /// Bytes those syncs covered (`synced_bytes / syncs` is the mean bytes per sync).
    pub synced_bytes: u64,
    /// Completed directory fsyncs (chunk installs, purges, recycling).
    pub dir_syncs: u64,
    /// Chunk files created new since open.
    pub chunks_created: u64,
    /// Chunk files prepared from a recycled, purged chunk since open.
    pub chunks_recycled: u64,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Reader { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The latest log state.
    pub fn log_state(&self) -> LogState {
        self.shared.state.read().clone()
    }

    /// The smallest index the log holds, if it holds any entry.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.index.first()
    }

    /// Highest entry index known durable.
    pub fn durable_index(&self) -> Option<u64> {
        self.shared.durable.index()
    }

    /// Counters.
    pub fn access_stat(&self) -> AccessStat {
        let c = &self.shared.counters;
        let io = &self.shared.io;
        AccessStat {
            cache: self.shared.cache.stat(),
            reads: c.reads.load(Ordering::Relaxed),
            read_entries: c.read_entries.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            appended_entries: c.appended_entries.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            syncs: io.syncs.load(Ordering::Relaxed),
            synced_bytes: io.synced_bytes.load(Ordering::Relaxed),
            dir_syncs: io.dir_syncs.load(Ordering::Relaxed),
            chunks_created: io.chunks_created.load(Ordering::Relaxed),
            chunks_recycled: io.chunks_recycled.load(Ordering::Relaxed),
        }
    }

    /// One entry, if present.
    pub fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        let Some(loc) = self.shared.index.get(index) else {
            return Ok(None);
        };
        match self.payload(index, loc, &mut Cursor::default()) {
            Ok(p) => Ok(Some((LogId::new(loc.term, index), p))),
            // Purged while we looked.
            Err(Error::OutOfRange { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entries `[from, last]` (`last` included, so that an entry at index `u64::MAX` can be
    /// read too). Fails with [`Error::OutOfRange`] unless every one is present.
    pub fn read_through(&self, from: u64, last: u64) -> Result<Vec<(LogId, Bytes)>> {
        if from > last {
            return Ok(Vec::new());
        }
        match last.checked_add(1) {
            Some(to) => self.read(from, to),
            None => {
                let mut out = self.read(from, last)?;
                match self.entry(last)? {
                    Some(e) => out.push(e),
                    None => return Err(Error::OutOfRange { from, to: last }),
                }
                Ok(out)
            }
        }
    }

    /// Entries `[from, to)`. Fails with [`Error::OutOfRange`] unless every one is present.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<(LogId, Bytes)>> {
        Counters::bump(&self.shared.counters.reads, 1);
        if from >= to {
            return Ok(Vec::new());
        }
        // A range past either end fails anyway: say so before visiting (or allocating for)
        // anything. The checks race with appends and purges only as a later read would.
        let index = &self.shared.index;
        let held = index.first().zip(index.last_index());
        if held.is_none_or(|(first, last)| from < first || to - 1 > last) {
            return Err(Error::OutOfRange { from, to });
        }
        // Room for the entries that exist, not for the range asked for.
        let mut out = Vec::with_capacity((to - from).min(index.len() as u64) as usize);
        let mut cur = Cursor::default();
        let mut expect = from;
        index.visit(from, to, |i, loc| {
            if i != expect {
                return Err(Error::OutOfRange { from, to });
            }
            out.push((LogId::new(loc.term, i), self.payload(i, loc, &mut cur)?));
            expect += 1;
            Ok(())
        })?;
        if expect != to {
            return Err(Error::OutOfRange { from, to });
        }
        Counters::bump(&self.shared.counters.read_entries, out.len() as u64);
        Ok(out)
    }

    fn payload(&self, index: u64, loc: Loc, cur: &mut Cursor) -> Result<Bytes> {
        if let Some(b) = self.shared.cache.get_near(index, loc.pos(), &mut cur.cache) {
            return Ok(b);
        }
        if cur.chunk.as_ref().is_none_or(|c| c.seq != loc.chunk) {
            cur.chunk = self
                .shared
                .chunks
                .get(&loc.chunk)
                .map(|e| Arc::clone(e.value()));
        }
        let Some(c) = cur.chunk.as_ref() else {
            return Err(Error::OutOfRange {
                from: index,
                to: index + 1,
            });
        };
        read_verified(c, index, loc)
    }
}

/// What a scan over consecutive entries remembers between them.
#[derive(Default)]
struct Cursor {
    chunk: Option<Arc<Chunk>>,
    cache: CacheCursor,
}

/// Read the entry record at `loc` from the map, check its CRC and id, and return the
/// payload as a zero-copy slice of the map.
fn read_verified(c: &Arc<Chunk>, index: u64, loc: Loc) -> Result<Bytes> {
    let off = loc.offset as usize;
    let corrupt = |k| Error::corrupt(c.seq, off as u64, k);
    let bytes = c.region.bytes().get(off..).unwrap_or_default();
    let frame = decode_frame(bytes, c.header.epoch_tag()).map_err(|e| match e {
        FrameError::Truncated => corrupt(CorruptionKind::BadLength { len: 0 }),
        FrameError::Corrupt(k) => corrupt(k),
    })?;
    match Record::decode(frame.kind, frame.body).map_err(corrupt)? {
        Record::Entry { id, payload } if id == LogId::new(loc.term, index) => {
            let start = off + RECORD_HEADER_LEN + 16;
            c.region
                .bytes_at(start, payload.len())
                .ok_or_else(|| corrupt(CorruptionKind::BadLength { len: 0 }))
        }
        _ => Err(corrupt(CorruptionKind::BadBody {
            kind: "entry",
            what: "index points at another record",
        })),
    }
}

#[cfg(feature = "testing")]
impl Reader {
    /// Entry `index`'s chunk file and the byte range `[start, end)` of its record. For
    /// durability oracles in tests (feature `testing`).
    pub fn locate(&self, index: u64) -> Option<(std::path::PathBuf, u64, u64)> {
        let loc = self.shared.index.get(index)?;
        let c = self.shared.chunks.get(&loc.chunk)?;
        let c = c.value();
        let off = loc.offset as usize;
        let frame = decode_frame(c.region.bytes().get(off..)?, c.header.epoch_tag()).ok()?;
        let end = off + frame.encoded_len;
        Some((c.region.path().to_path_buf(), off as u64, end as u64))
    }

    /// The newest chunk's file and the end of what is published in it: a state record
    /// written just before is the last thing before this point (feature `testing`).
    pub fn tail_position(&self) -> Option<(std::path::PathBuf, u64)> {
        let e = self.shared.chunks.back()?;
        let r = &e.value().region;
        Some((r.path().to_path_buf(), r.published() as u64))
    }

    /// The truncation generation and the durable index, read together (feature
    /// `testing`); see `Wal::durable_snapshot`.
    pub fn durable_snapshot(&self) -> (u64, Option<u64>) {
        let d = &self.shared.durable;
        let gen = d.gen();
        (gen, d.index())
    }
}
