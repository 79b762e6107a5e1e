//! The write path: encode a call's records into a staging buffer, write them to the active
//! chunk with one `pwrite`, rotate chunks, and hand sync requests to the flush worker.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::batch::{unit_at, Unit};
use super::groups::GroupStates;
use super::prefault::Prefaulter;
use super::shared::{apply, check_all, Counters, Shared};
use crate::chunk::{Chunk, PreparedChunk, RegionWriter};
use crate::config::Config;
use crate::error::{copy_io, Error, Result};
use crate::flush::{Callback, DurableState, Job, SyncOwner, Target, WorkerHandle};
use crate::format::{
    encoded_len, write_frame, FooterBuilder, Record, StateImage, BODY_HEAD_LEN, FLAG_CONTINUES,
    HEADER_LEN, MAX_GROWTH_PER_RECORD, TRAILER_LEN,
};
use crate::types::{LogId, LogState};

/// Bytes kept free at the end of every chunk for its seal record.
pub(crate) const SEAL_LEN: usize = encoded_len(0);

/// Records are staged and written with one `pwrite` per call, or per this many bytes.
const STAGE_MAX: usize = 1 << 20;

/// A staged record: `recs[i]`, or a Batch record (of entries of the call, in order).
enum Staged {
    Rec(usize),
    Batch(crate::format::BatchHead),
}

/// Per-chunk facts the writer needs for purging.
#[derive(Debug, Clone)]
pub(crate) struct ChunkMeta {
    pub seq: u64,
    /// Highest entry index ever written into the chunk.
    pub max_index: Option<u64>,
}

/// The single writer. Lives behind the `Wal`'s mutex.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub config: Config,
    pub active: Arc<Chunk>,
    pub w: RegionWriter,
    pub metas: VecDeque<ChunkMeta>,
    /// Authoritative state; published to `shared.state` after each operation.
    pub state: LogState,
    /// The non-default groups' authoritative state (published to `shared.groups`).
    pub groups: GroupStates,
    pub gen: u64,
    /// Every sync, install and purge delete goes through it.
    pub owner: Arc<SyncOwner>,
    pub worker: WorkerHandle,
    /// The next chunk, prepared ahead (preallocated, header synced, not yet installed).
    pub spare: Option<PreparedChunk>,
    /// Reads pages ahead of the cursor on another thread.
    pub prefault: Prefaulter,
    /// Encoded records not yet written: `stage[..staged]` (see [`Writer::stage`]). The
    /// buffer is kept between calls.
    pub stage: Vec<u8>,
    /// Bytes of `stage` in use.
    pub staged: usize,
    /// The active chunk's footer, collected as records are staged (see [`Writer::seal`]):
    /// `Some` for a chunk of format v2 or later, `None` for a v1 chunk (which is sealed
    /// without one and keeps the v1 reserve).
    pub footer: Option<FooterBuilder>,
}

/// Largest payload accepted for a given chunk size: one that passes this check always fits
/// in a fresh chunk (format v2, with its footer reserve).
pub(crate) fn max_payload(chunk_size: u64) -> u64 {
    // Room for the header, the seal, a state image with vote and user data at their own
    // maximum (chunk_size / 8 each), and a truncate record that may share the group.
    let state_max = encoded_len(1 + 48 + 8 + 2 * (chunk_size as usize / 8));
    // The footer reserve `fits` keeps when the truncate and the entry are checked, after
    // the state image (bounded by `MAX_GROWTH_PER_RECORD` for each of the three records).
    let footer = footer_reserve(BODY_HEAD_LEN, growth_of(3));
    // The largest truncate record: since, presence byte, log id.
    let room = chunk_size as usize - HEADER_LEN - footer - state_max - encoded_len(25);
    (room - encoded_len(16) - 8) as u64
}

/// Bytes to keep free after a v2 chunk's records so that the Index record, grown from a
/// body of `body_len` bytes by `growth` more bytes, the Seal and the trailer all fit.
fn footer_reserve(body_len: usize, growth: usize) -> usize {
    encoded_len(body_len + growth) + SEAL_LEN + TRAILER_LEN
}

/// Footer growth bound for `records` records (a batch of `k` members counts as `k`).
const fn growth_of(records: usize) -> usize {
    records * MAX_GROWTH_PER_RECORD
}

/// Largest vote or user data accepted.
pub(crate) fn max_meta(chunk_size: u64) -> u64 {
    chunk_size / 8
}

impl Writer {
    pub(super) fn tag(&self) -> u32 {
        self.active.header.epoch_tag()
    }

    /// Encode one record after the cursor and what is already staged; nothing reaches the
    /// file before [`Writer::commit`]. Returns the record's offset. The record goes into
    /// the active chunk's footer too.
    pub(super) fn stage(&mut self, rec: &Record<'_>, flags: u8) -> Result<usize> {
        // The buffer is reused without clearing: an entry's frame writes every byte (header,
        // id, payload, padding); other bodies may skip bytes, so those start from zeros.
        let zero = !matches!(rec, Record::Entry { .. } | Record::Batch { .. });
        let off = self.stage_frame(rec.kind(), flags, rec.body_len(), zero, |b| {
            rec.write_body(b)
        })?;
        if let Some(f) = &mut self.footer {
            // Offsets are below the chunk size, at most 1 GiB.
            f.push_in(0, rec, off as u32);
        }
        Ok(off)
    }

    /// Stage a frame of `kind` whose body `fill` writes (into zeros if `zero`).
    pub(super) fn stage_frame(
        &mut self,
        kind: u8,
        flags: u8,
        body: usize,
        zero: bool,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize> {
        let size = encoded_len(body);
        if size > self.room() {
            return Err(Error::EntryTooLarge {
                size: size as u64,
                max: self.room() as u64,
            });
        }
        let hint = self.shared.durable.offset_in(self.active.seq);
        let tag = self.tag();
        let at = self.staged;
        if self.stage.len() < at + size {
            self.stage.resize(at + size, 0);
        }
        let dst = &mut self.stage[at..at + size];
        if zero {
            dst.fill(0);
        }
        write_frame(dst, kind, flags, tag, hint, body, fill);
        self.staged = at + size;
        Ok(self.w.cursor() + at)
    }

    /// Write the staged records to the chunk (one `pwrite`) and publish them. A failed
    /// write poisons the log: what reached the page cache is unknown.
    pub(super) fn commit(&mut self) -> Result<()> {
        if self.staged == 0 {
            return Ok(());
        }
        let r = self.w.write(&self.stage[..self.staged]);
        if r.is_ok() {
            self.shared.metrics.wrote(self.staged);
        }
        self.staged = 0;
        if self.stage.len() > 4 * STAGE_MAX {
            self.stage = Vec::new();
        }
        match r {
            Ok(()) => {
                self.w.publish();
                Ok(())
            }
            Err(e) => {
                let path = self.w.region().path();
                let returned = Error::io("write chunk", path, copy_io(&e));
                self.shared.poison.poison("write chunk", Some(path), e);
                Err(returned)
            }
        }
    }

    /// Encode one record at the cursor, write and publish it. The caller made sure it fits.
    pub(super) fn put(&mut self, rec: &Record<'_>, flags: u8) -> Result<usize> {
        let off = self.stage(rec, flags)?;
        self.commit()?;
        Ok(off)
    }

    /// Free bytes after the cursor and the staged records.
    pub(super) fn room(&self) -> usize {
        self.w.remaining() - self.staged
    }

    /// Whether records of `bytes` encoded bytes in all, which grow the footer by at most
    /// `growth` bytes, fit after what is staged, keeping the room sealing needs: the Seal,
    /// and in a v2 chunk the footer and the trailer.
    pub(super) fn fits(&self, bytes: usize, growth: usize) -> bool {
        bytes + self.reserve(growth) <= self.room()
    }

    /// Room [`Writer::fits`] keeps free after records that grow the footer by `growth`.
    fn reserve(&self, growth: usize) -> usize {
        match &self.footer {
            Some(f) => footer_reserve(f.body_len(), growth),
            None => SEAL_LEN,
        }
    }

    /// How much unit `u` may grow the active chunk's footer (0 without one): a record's
    /// bound, and 4 bytes more per member of a batch.
    fn growth(&self, u: &Unit) -> usize {
        if self.footer.is_none() {
            return 0;
        }
        match &u.batch {
            Some((head, _)) => growth_of(1) + 4 * head.count as usize,
            None => growth_of(1),
        }
    }

    /// Write `recs` as atomic groups (one group per chunk they land in) and apply them.
    /// With `tie_first`, the first two records always share a group.
    pub fn write(
        &mut self,
        recs: &[Record<'_>],
        payloads: &[Bytes],
        tie_first: bool,
    ) -> Result<()> {
        // Every record is checked against the state it will meet before any is written: a
        // rejected record is never published (it would break the group it is in, and the
        // next open).
        check_all(&self.state, &self.shared.index, recs)
            .map_err(|reason| Error::Rejected { reason })?;
        // A batch that needs a new chunk gets it before anything is written, so a full
        // disk fails the call with nothing changed.
        let sizes: Vec<usize> = recs.iter().map(|r| encoded_len(r.body_len())).collect();
        if !self.fits(sizes.iter().sum(), growth_of(sizes.len())) {
            self.ensure_spare()?;
        }
        let mut written = Vec::with_capacity(payloads.len());
        let r = self.write_groups(recs, &sizes, tie_first, &mut written);
        self.prefault.ahead_of(self.w.region(), self.w.cursor());
        // Even after a mid-batch failure what was written is complete and applied: publish
        // it and cache its payloads.
        if let Some(first) = recs.iter().find_map(|r| match r {
            Record::Entry { id, .. } => Some(id.index),
            _ => None,
        }) {
            let n = written.len();
            self.shared.metrics.appended(&payloads[..n]);
            let evictable = self.shared.durable.index();
            self.shared
                .cache
                .insert(first, written, payloads[..n].to_vec(), evictable);
        }
        *self.shared.state.write() = self.state.clone();
        r
    }

    /// Stage `recs` (rotating where they do not fit) and write, publish and apply them, at
    /// the latest at each rotation and every `STAGE_MAX` bytes. After a failure what was
    /// staged before it is still written and applied.
    fn write_groups(
        &mut self,
        recs: &[Record<'_>],
        sizes: &[usize],
        tie_first: bool,
        written: &mut Vec<u64>,
    ) -> Result<()> {
        let mut staged = Vec::with_capacity(recs.len());
        let r = self.stage_groups(recs, sizes, tie_first, written, &mut staged);
        let applied = self.apply_staged(recs, &mut staged, written);
        r.and(applied)
    }

    /// Stage `recs` unit by unit (a record, or a run of entries as one Batch record: see
    /// [`unit_at`]), rotating where a unit does not fit. Each unit is formed before the one
    /// before it is staged, so that one's `FLAG_CONTINUES` knows whether the next fits.
    fn stage_groups(
        &mut self,
        recs: &[Record<'_>],
        sizes: &[usize],
        tie_first: bool,
        written: &mut Vec<u64>,
        staged: &mut Vec<(Staged, usize)>,
    ) -> Result<()> {
        let tied = tie_first && recs.len() > 1;
        let mut raw = Vec::new();
        let mut cur = self.unit(recs, sizes, 0, self.avail(), &mut raw);
        while let Some(mut u) = cur.take() {
            let mut rotated = false;
            let (size, grows, next) = loop {
                let (size, grows) = (u.size(sizes), self.growth(&u));
                let after = self.avail().saturating_sub(size + grows);
                let next = self.unit(recs, sizes, u.span.end, after, &mut raw);
                let (need, need_growth) = match &next {
                    Some(n) if u.span.start == 0 && tied => {
                        (size + n.size(sizes), grows + self.growth(n))
                    }
                    _ => (size, grows),
                };
                if self.fits(need, need_growth) {
                    break (size, grows, next);
                }
                if rotated {
                    return Err(Error::EntryTooLarge {
                        size: need as u64,
                        max: self.avail() as u64,
                    });
                }
                self.apply_staged(recs, staged, written)?;
                self.rotate(true)?;
                rotated = true;
                if u.cut {
                    // Formed for the old chunk's short room: form it again for this one.
                    let start = u.span.start;
                    u = self
                        .unit(recs, sizes, start, self.avail(), &mut raw)
                        .unwrap_or(Unit::one(start, false));
                }
            };
            let next_fits = next
                .as_ref()
                .is_some_and(|n| self.fits(size + n.size(sizes), grows + self.growth(n)));
            let flags = if next_fits || (u.span.start == 0 && tied) {
                FLAG_CONTINUES
            } else {
                0
            };
            match &u.batch {
                Some((head, data)) => {
                    // The footer records the batch as a run of its members, every offset
                    // `off` (`FooterBuilder::push`).
                    let off = self.stage(&Record::Batch { head: *head, data }, flags)?;
                    staged.push((Staged::Batch(*head), off));
                }
                None => {
                    let off = self.stage(&recs[u.span.start], flags)?;
                    staged.push((Staged::Rec(u.span.start), off));
                }
            }
            self.config.run_fail_point("write.after_put");
            if self.staged >= STAGE_MAX {
                self.apply_staged(recs, staged, written)?;
            }
            cur = next;
        }
        Ok(())
    }

    /// The unit starting at `recs[i]` for `avail` free bytes (see [`unit_at`]).
    fn unit(
        &self,
        recs: &[Record<'_>],
        sizes: &[usize],
        i: usize,
        avail: usize,
        raw: &mut Vec<u8>,
    ) -> Option<Unit> {
        let version = self.active.header.version;
        // A batch grows the footer by 4 bytes a member beyond a record's bound.
        let per_member = if self.footer.is_some() { 4 } else { 0 };
        unit_at(
            &self.config,
            version,
            recs,
            sizes,
            i,
            (avail, per_member),
            raw,
        )
    }

    /// The most bytes a single record may take and still [`Writer::fits`] (the two must
    /// agree; a batch also keeps 4 bytes per member, see [`unit_at`]).
    fn avail(&self) -> usize {
        let growth = if self.footer.is_some() {
            growth_of(1)
        } else {
            0
        };
        self.room().saturating_sub(self.reserve(growth))
    }

    /// Write and publish the staged records, then apply them to the state and the index
    /// (in that order: an index entry never points at unpublished bytes).
    fn apply_staged(
        &mut self,
        recs: &[Record<'_>],
        staged: &mut Vec<(Staged, usize)>,
        written: &mut Vec<u64>,
    ) -> Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        self.commit()?;
        let seq = self.active.seq;
        for (what, off) in staged.drain(..) {
            let rec = match &what {
                Staged::Rec(i) => recs[*i],
                // Replay needs the head only.
                Staged::Batch(head) => Record::Batch {
                    head: *head,
                    data: &[],
                },
            };
            let r = apply(
                &mut self.state,
                &self.shared.index,
                &rec,
                seq,
                off,
                &mut Bytes::copy_from_slice,
            );
            // Checked above, so the disk and the state can only diverge by a bug here.
            self.check_applied("apply a checked record", r, (seq, off))?;
            self.note(&rec, seq, off, written);
        }
        Ok(())
    }

    /// Bookkeeping after record `rec` at `(seq, off)` was applied.
    pub(super) fn note(&mut self, rec: &Record<'_>, seq: u64, off: usize, written: &mut Vec<u64>) {
        if let Some(last) = rec.last_entry_index() {
            if let Some(m) = self.metas.back_mut() {
                m.max_index = Some(m.max_index.map_or(last, |x| x.max(last)));
            }
        }
        match rec {
            Record::Entry { .. } => written.push(DurableState::pack(seq, off)),
            Record::Batch { head, .. } => {
                let pos = DurableState::pack(seq, off);
                written.extend(std::iter::repeat_n(pos, head.count as usize));
            }
            Record::Truncate { since, last } => {
                self.shared.cache.remove_from(*since);
                self.gen = self.shared.durable.on_truncate(last.map(|l| l.index));
            }
            Record::Purge { upto } => self.shared.cache.remove_upto(upto.index),
            _ => {}
        }
    }

    fn state_image(&self) -> (Option<Bytes>, Option<Bytes>, StateImage<'static>) {
        let s = &self.state;
        (
            s.vote.clone(),
            s.user_data.clone(),
            StateImage {
                vote: None,
                last: s.last,
                committed: s.committed,
                purged: s.purged,
                user_data: None,
            },
        )
    }

    /// Whether a state image still fits in the active chunk.
    pub fn fits_state(&self) -> bool {
        let (v, u, mut img) = self.state_image();
        img.vote = v.as_deref();
        img.user_data = u.as_deref();
        self.fits(encoded_len(Record::State(img).body_len()), growth_of(1))
    }

    /// Empty the log: a state image with no entries and no purge point (vote and user data
    /// kept), then retire every older chunk once that image is durable.
    pub fn reset(&mut self) -> Result<()> {
        let before = self.state.clone();
        self.state.last = None;
        self.state.purged = None;
        self.state.committed = None;
        if !self.fits_state() {
            self.state = before.clone();
            self.rotate(true)?;
            self.state.last = None;
            self.state.purged = None;
            self.state.committed = None;
        }
        if let Err(e) = self.put_state() {
            self.state = before;
            return Err(e);
        }
        self.shared.index.remove_from(0);
        self.shared.cache.remove_from(0);
        self.gen = self.shared.durable.on_truncate(None);
        *self.shared.state.write() = self.state.clone();
        self.retire_chunks(Some(LogId::new(u64::MAX, u64::MAX)))
    }

    /// Write a full state image as its own group.
    pub fn put_state(&mut self) -> Result<()> {
        let (vote, ud, mut img) = self.state_image();
        img.vote = vote.as_deref();
        img.user_data = ud.as_deref();
        let rec = Record::State(img);
        if !self.fits(encoded_len(rec.body_len()), growth_of(1)) {
            return Err(Error::EntryTooLarge {
                size: rec.body_len() as u64,
                max: self.w.remaining() as u64,
            });
        }
        self.put(&rec, 0)?;
        Ok(())
    }

    /// The point a flush requested now must make durable: everything written so far.
    pub fn target(&self) -> Target {
        debug_assert_eq!(self.staged, 0, "a target taken with records staged");
        Target {
            seq: self.active.seq,
            off: self.w.cursor(),
            last_index: self.state.last.map(|l| l.index),
            gen: self.gen,
        }
    }

    /// Under `Config::max_unsynced_bytes`: if more than that many bytes of the active chunk
    /// are written but not durable, the point to sync to before the append returns.
    pub fn backpressure(&self) -> Option<(Arc<SyncOwner>, Target)> {
        let max = self.config.max_unsynced_bytes?;
        let durable = self.shared.durable.offset_in(self.active.seq) as u64;
        let lag = (self.w.cursor() as u64).saturating_sub(durable);
        (lag > max).then(|| (Arc::clone(&self.owner), self.target()))
    }

    /// Ask the worker to make everything written so far durable, then call `callback`.
    pub fn request_sync(&mut self, callback: Option<Callback>) -> Result<()> {
        Counters::bump(&self.shared.counters.flushes, 1);
        self.shared.metrics.flush_requested();
        let target = self.target();
        self.worker.send(Job::Sync { target, callback })
    }

    /// After a purge up to `upto`: drop fully purged old chunks from the read path and have
    /// the worker delete their files once the purge record is durable.
    /// With `upto` `None`, only chunks that hold no entry of the default group go. Either
    /// way, no chunk goes that holds a live entry of another group (see `groups.rs`).
    pub fn retire_chunks(&mut self, upto: Option<LogId>) -> Result<()> {
        let mut chunks = Vec::new();
        let floor = self.groups.pin_floor().map(|(c, _)| c);
        while self.metas.len() > 1 {
            let Some(m) = self.metas.front() else { break };
            let holds = |x: u64| upto.is_none_or(|u| x > u.index);
            if m.seq == self.active.seq
                || m.max_index.is_some_and(holds)
                || floor.is_some_and(|f| m.seq >= f)
            {
                break;
            }
            let Some(m) = self.metas.pop_front() else {
                break;
            };
            let region = self
                .shared
                .chunks
                .remove(&m.seq)
                .map_or_else(Weak::new, |e| Arc::downgrade(&e.value().region));
            chunks.push((m.seq, region));
        }
        if chunks.is_empty() {
            return Ok(());
        }
        self.shared.metrics.chunks_removed(chunks.len());
        let target = self.target();
        self.worker.send(Job::Retire { target, chunks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures docs/format.md gives, and a fresh chunk's worst case fitting exactly
    /// as `fits` counts it.
    #[test]
    fn max_payload_leaves_the_footer_reserve() {
        assert_eq!(max_payload(64 << 20), 50_331_208);
        assert_eq!(max_payload(64 << 10), 48_712);
        for size in [64 << 10, 1 << 20, 64 << 20] {
            let state = encoded_len(1 + 48 + 8 + 2 * (size as usize / 8));
            let entry = encoded_len(16 + max_payload(size) as usize);
            let used = HEADER_LEN + state + encoded_len(25) + entry;
            // After the State image the body holds one Record item (8 bytes past its own
            // 8); the group of Truncate and entry is checked for two more records.
            let room = size as usize - used;
            assert!(room >= footer_reserve(BODY_HEAD_LEN + 8, 2), "{size}");
        }
    }
}
