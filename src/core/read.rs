//! The read path: index lookup, cache, then the map with CRC verification. Never locks.
//! Range rules: [`Reader::read`]; the lazy iterator: [`Entries`] (`iter.rs`).

use std::ops::RangeBounds;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::batch::{decompress_members, Members};
use super::groups::GroupLog;
use super::iter::Entries;
use super::range::{out_of_range, resolve};
use super::shared::{Counters, Shared};
use crate::chunk::Chunk;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{decode_frame, FrameError, Record, GROUP_PREFIX_LEN, RECORD_HEADER_LEN};
use crate::index::{CacheCursor, CacheStat, EntryIndex, Loc};
use crate::types::{LogId, LogState};

/// A cloneable, `Send + Sync` read handle. Reads never wait for the writer.
#[derive(Debug, Clone)]
pub struct Reader {
    shared: Arc<Shared>,
    /// A view of one non-default group (`None`: the default group), taken per call by
    /// [`GroupReader`](super::group::GroupReader).
    view: Option<(u64, Arc<GroupLog>)>,
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
        Reader { shared, view: None }
    }

    /// A reader of group `id`'s log as it is now (an empty one if the group does not exist).
    pub(crate) fn view_of(&self, id: u64) -> Reader {
        if id == 0 {
            return Reader::new(Arc::clone(&self.shared));
        }
        let log = self.shared.groups.read().get(&id).cloned();
        Reader {
            shared: Arc::clone(&self.shared),
            view: Some((id, log.unwrap_or_default())),
        }
    }

    /// The index this reader reads.
    pub(super) fn index(&self) -> &EntryIndex {
        match &self.view {
            Some((_, g)) => &g.index,
            None => &self.shared.index,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The latest log state.
    pub fn log_state(&self) -> LogState {
        match &self.view {
            Some((_, g)) => g.state.read().clone(),
            None => self.shared.state.read().clone(),
        }
    }

    /// The smallest index the log holds, if it holds any entry.
    pub fn first_index(&self) -> Option<u64> {
        self.index().first()
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

    /// The largest index the log holds, if it holds any entry (from the index; unlike
    /// [`LogState::last`], never the purge point).
    pub fn last_index(&self) -> Option<u64> {
        self.index().last_index()
    }

    /// The first and last index held, if any.
    pub(super) fn held(&self) -> Option<(u64, u64)> {
        let index = self.index();
        index.first().zip(index.last_index())
    }

    /// The term of entry `index`, if the log holds it: served from the in-memory index
    /// alone, without touching the payload, the cache or the map (no CRC check).
    ///
    /// `None` for an index the log does not hold, including the purge point itself: its
    /// term is in [`LogState::purged`].
    pub fn term(&self, index: u64) -> Option<u64> {
        self.index().get(index).map(|loc| loc.term)
    }

    /// One entry, if present.
    pub fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        let Some(loc) = self.index().get(index) else {
            return Ok(None);
        };
        // `None`: purged while we looked.
        let p = self.payload(index, loc, &mut Cursor::default())?;
        Ok(p.map(|p| (LogId::new(loc.term, index), p)))
    }

    /// [`crate::Wal::verify`] from a read handle: check the CRC of every record of every
    /// chunk in the log now, calling `progress` after each chunk; the first bad record is
    /// returned as [`Error::Corruption`]. Takes no lock.
    pub fn verify(
        &self,
        mut progress: impl FnMut(super::verify::VerifyProgress),
    ) -> Result<super::verify::VerifyReport> {
        super::verify::verify_all(&self.shared, &mut progress)
    }

    /// Every entry of `range`, in order, served from the cache or from the map with a CRC
    /// check of each record. All or nothing:
    ///
    /// - An **empty** range (`5..5`, `7..=3`, `..0`) returns `Ok(vec![])`, wherever it lies.
    /// - An **unbounded** side stands for the log's end on that side: `..` is the whole log,
    ///   `5..` is 5 through the last entry, `..=9` the first entry through 9. A side that
    ///   resolves past the other (`5..` on a log that ends at 3, `..=3` on a log that starts
    ///   at 5, either on an empty log) is an empty range: `Ok(vec![])`. So `read(next..)`
    ///   polls for new entries without ever failing for being caught up.
    /// - Otherwise every index of the range must be held: a start **before the first held
    ///   index** (purged, or never written) or an end **past the last held index** fails with
    ///   [`Error::OutOfRange`] (`from`, `through`: the requested span, inclusive; `first`,
    ///   `last`: what the log held, inclusive). It fails before visiting or allocating
    ///   anything, so a hostile `0..u64::MAX` costs nothing. An entry that a concurrent
    ///   purge or truncate removes during the read fails it the same way.
    ///
    /// The result is allocated for the entries that exist, never for the range asked for.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Bytes)>> {
        self.collect(&range, u64::MAX)
    }

    /// Like [`Reader::read`] (same range rules and errors), but stops before the entry whose
    /// payload would take the total of payload bytes returned past `max_bytes`. The first
    /// entry of a non-empty range is always returned, even if its payload alone exceeds
    /// `max_bytes` (so `max_bytes = 0` reads exactly one entry): a caller that loops on
    /// `read_bounded(next..=end, limit)` always makes progress. The result is a prefix of
    /// the range; only payload bytes count (not ids or framing).
    ///
    /// This is what openraft's `limited_get_log_entries` and raft-engine's
    /// `fetch_entries_to` (with `max_size`) offer.
    pub fn read_bounded(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(LogId, Bytes)>> {
        self.collect(&range, max_bytes)
    }

    /// A lazy iterator over the entries of `range`; see [`Entries`] for how it behaves
    /// when the log changes under it. The range is resolved and checked now, by the rules
    /// of [`Reader::read`] (so this fails exactly when `read` would fail up front); an
    /// unbounded end stands for the last entry held now.
    pub fn iter(&self, range: impl RangeBounds<u64>) -> Result<Entries> {
        Counters::bump(&self.shared.counters.reads, 1);
        let span = resolve(&range, self.held())?;
        Ok(Entries::new(self.clone(), span))
    }

    fn collect(
        &self,
        range: &impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(LogId, Bytes)>> {
        Counters::bump(&self.shared.counters.reads, 1);
        // Bounds past either end fail before anything is visited or allocated. The check
        // races with appends and purges only as a later read would.
        let Some((from, through)) = resolve(range, self.held())? else {
            return Ok(Vec::new());
        };
        // Room for the entries that exist, not for the range asked for; a bounded read
        // starts small and grows.
        let mut cap = (through - from)
            .min(self.index().len() as u64)
            .saturating_add(1);
        if max_bytes != u64::MAX {
            cap = cap.min(256);
        }
        let mut out = Vec::with_capacity(cap as usize);
        let (mut bytes, mut full) = (0u64, false);
        let complete = self.walk(from, through, |e| {
            bytes = bytes.saturating_add(e.1.len() as u64);
            full = bytes > max_bytes && !out.is_empty();
            if !full {
                out.push(e);
            }
            !full
        })?;
        if !complete && !full {
            return Err(out_of_range(from, through, self.held()));
        }
        Counters::bump(&self.shared.counters.read_entries, out.len() as u64);
        Ok(out)
    }

    /// Visit the entries of `[from, through]` in order, without collecting them, as
    /// [`Reader::read`] serves them: `Ok(true)` once all were visited, `Ok(false)` if the
    /// walk stopped early (`sink` returned false, or an entry was missing: removed while
    /// the walk ran, or never held). What was visited is a prefix of the span.
    pub(crate) fn visit_span(
        &self,
        from: u64,
        through: u64,
        sink: impl FnMut((LogId, Bytes)) -> bool,
    ) -> Result<bool> {
        Counters::bump(&self.shared.counters.reads, 1);
        let mut n = 0u64;
        let mut sink = sink;
        let r = self.walk(from, through, |e| {
            n += 1;
            sink(e)
        });
        Counters::bump(&self.shared.counters.read_entries, n);
        r
    }

    /// The walk behind `collect` and `visit_span`: `Ok(true)` if every entry of the span
    /// was handed to `sink`.
    fn walk(
        &self,
        from: u64,
        through: u64,
        mut sink: impl FnMut((LogId, Bytes)) -> bool,
    ) -> Result<bool> {
        let mut cur = Cursor::default();
        let mut expect = Some(from);
        let r = self.index().visit(from, through, |i, loc| {
            if expect != Some(i) {
                return Err(Halt::Gap);
            }
            let p = self.payload(i, loc, &mut cur)?.ok_or(Halt::Gap)?;
            if !sink((LogId::new(loc.term, i), p)) {
                return Err(Halt::Full);
            }
            expect = i.checked_add(1);
            Ok(())
        });
        match r {
            // The index ended before `through`: a gap at the end.
            Ok(()) => Ok(expect.is_none_or(|e| e > through)),
            Err(Halt::Full) | Err(Halt::Gap) => Ok(false),
            Err(Halt::Err(e)) => Err(e),
        }
    }

    /// The payload of entry `index` at `loc`: `None` if its chunk is gone (purged since the
    /// index was read).
    pub(super) fn payload(&self, index: u64, loc: Loc, cur: &mut Cursor) -> Result<Option<Bytes>> {
        // Only the default group has a payload cache.
        if self.view.is_none() {
            if let Some(b) = self.shared.cache.get_near(index, loc.pos(), &mut cur.cache) {
                return Ok(Some(b));
            }
        }
        // A member of the Batch record this walk decompressed last (not cached, or evicted).
        let last_batch = cur.batch.as_ref().filter(|m| m.pos == loc.pos());
        if let Some(p) = last_batch.and_then(|m| m.get(index)) {
            return Ok(Some(p));
        }
        if cur.chunk.as_ref().is_none_or(|c| c.seq != loc.chunk) {
            cur.chunk = self
                .shared
                .chunks
                .get(&loc.chunk)
                .map(|e| Arc::clone(e.value()));
        }
        match cur.chunk.as_ref() {
            Some(c) => {
                let group = self.view.as_ref().map_or(0, |(id, _)| *id);
                read_verified(&self.shared, c, (group, index), loc, &mut cur.batch).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Why a range walk stopped early.
enum Halt {
    /// An entry of the range is missing (removed while the read ran).
    Gap,
    /// The byte budget of a bounded read is spent.
    Full,
    /// Reading a payload failed.
    Err(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Err(e)
    }
}

/// What a scan over consecutive entries remembers between them.
#[derive(Default)]
pub(super) struct Cursor {
    chunk: Option<Arc<Chunk>>,
    cache: CacheCursor,
    /// The Batch record decompressed last, so a walk decompresses each batch once.
    batch: Option<Arc<Members>>,
}

/// Read the entry record at `loc` from the map, check its CRC and id, and return the
/// payload as a zero-copy slice of the map. A Batch record holding the entry is
/// decompressed instead ([`decompress_members`]: its members go to the cache and to
/// `batch`), and the payload is a slice of the decompressed block.
fn read_verified(
    shared: &Shared,
    c: &Arc<Chunk>,
    (group, index): (u64, u64),
    loc: Loc,
    batch: &mut Option<Arc<Members>>,
) -> Result<Bytes> {
    let off = loc.offset as usize;
    let corrupt = |k| Error::corrupt(c.seq, off as u64, k);
    let bytes = c.region.bytes().get(off..).unwrap_or_default();
    let frame = decode_frame(bytes, c.header.epoch_tag()).map_err(|e| match e {
        FrameError::Truncated => corrupt(CorruptionKind::BadLength { len: 0 }),
        FrameError::Corrupt(k) => corrupt(k),
    })?;
    if frame.group != group {
        return Err(corrupt(CorruptionKind::BadGroup {
            group: Some(frame.group),
        }));
    }
    match frame.record(c.header.version).map_err(corrupt)? {
        Record::Entry { id, payload } if id == LogId::new(loc.term, index) => {
            let prefix = if group == 0 { 0 } else { GROUP_PREFIX_LEN };
            let start = off + RECORD_HEADER_LEN + prefix + 16;
            c.region
                .bytes_at(start, payload.len())
                .ok_or_else(|| corrupt(CorruptionKind::BadLength { len: 0 }))
        }
        Record::Batch { head, data } if head.holds(index) && head.term == loc.term => {
            let members = decompress_members(shared, c, off, (&head, data), index)?;
            let p = members.get(index).ok_or_else(|| {
                corrupt(CorruptionKind::BadBody {
                    kind: "batch",
                    what: "member missing",
                })
            })?;
            *batch = Some(members);
            Ok(p)
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
        let loc = self.index().get(index)?;
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
