//! The writer's multi-group side: records of a group (a `FLAG_GROUP` frame), every group's
//! state image at the start of each chunk, and multi-group batches written as one atomic
//! group.

use bytes::Bytes;

use super::groups::footer_push;
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::format::{
    encoded_len, Record, StateImage, FLAG_CONTINUES, FLAG_GROUP, GROUPS_VERSION, GROUP_PREFIX_LEN,
    MAX_GROWTH_PER_GROUP_RECORD, MAX_GROWTH_PER_RECORD,
};
use crate::types::LogState;

/// The most one group record can grow a chunk's footer by.
pub(crate) const GROUP_GROWTH: usize = MAX_GROWTH_PER_GROUP_RECORD;

/// Flush the staging buffer to the file every this many bytes of a batch.
const BATCH_STAGE_MAX: usize = 1 << 20;

/// Encoded size of record `rec` of group `group`.
pub(crate) fn size_in(group: u64, rec: &Record<'_>) -> usize {
    let prefix = if group == 0 { 0 } else { GROUP_PREFIX_LEN };
    encoded_len(prefix + rec.body_len())
}

/// Footer growth bound of a record of `group`.
pub(crate) fn growth_in(group: u64) -> usize {
    if group == 0 {
        MAX_GROWTH_PER_RECORD
    } else {
        GROUP_GROWTH
    }
}

/// The state image of `s` (a chunk's first records hold one per group).
pub(crate) fn image_of(s: &LogState) -> Record<'_> {
    Record::State(StateImage {
        vote: s.vote.as_deref(),
        last: s.last,
        committed: s.committed,
        purged: s.purged,
        user_data: s.user_data.as_deref(),
    })
}

impl Writer {
    /// Stage record `rec` of `group` (see [`Writer::stage`]); a non-default group's record
    /// is a `FLAG_GROUP` frame whose body starts with the group id.
    pub(super) fn stage_in(&mut self, group: u64, rec: &Record<'_>, flags: u8) -> Result<usize> {
        if group == 0 {
            return self.stage(rec, flags);
        }
        let zero = !matches!(rec, Record::Entry { .. });
        let body = GROUP_PREFIX_LEN + rec.body_len();
        let off = self.stage_frame(rec.kind(), flags | FLAG_GROUP, body, zero, |b| {
            let (id, rest) = b.split_at_mut(GROUP_PREFIX_LEN);
            id.copy_from_slice(&group.to_le_bytes());
            rec.write_body(rest);
        })?;
        if let Some(f) = &mut self.footer {
            // Offsets are below the chunk size, at most 1 GiB.
            footer_push(f, group, rec, off as u32);
        }
        Ok(off)
    }

    /// The records a fresh chunk starts with: the default group's state image, then one
    /// per other group (ascending ids), so that no chunk is ever needed for a group's state.
    pub fn put_images(&mut self) -> Result<()> {
        self.put_state()?;
        if self.groups.map.is_empty() {
            return Ok(());
        }
        let states: Vec<(u64, LogState)> = self
            .groups
            .ids()
            .into_iter()
            .filter_map(|id| self.groups.map.get(&id).map(|g| (id, g.state.clone())))
            .collect();
        for (id, s) in &states {
            let rec = image_of(s);
            let size = size_in(*id, &rec);
            if !self.fits(size, GROUP_GROWTH) {
                // Bounded by `Writer::check_images` before any group grows; reaching this
                // is a bug, and the chunk now lacks images that retiring older chunks needs.
                let e = Error::EntryTooLarge {
                    size: size as u64,
                    max: self.room() as u64,
                };
                let src = std::io::Error::other(e.to_string());
                let path = self.active.region.path();
                self.shared
                    .poison
                    .poison("write group state images", Some(path), src);
                return Err(e);
            }
            self.stage_in(*id, &rec, 0)?;
            if self.staged >= BATCH_STAGE_MAX {
                self.commit()?;
            }
        }
        self.commit()
    }

    /// Rotate first if records of `size` bytes growing the footer by `growth` do not fit
    /// the active chunk's rest; [`Error::EntryTooLarge`] if they do not fit a fresh one.
    pub(super) fn make_room(&mut self, size: usize, growth: usize) -> Result<()> {
        if !self.fits(size, growth) {
            self.ensure_spare()?;
            self.rotate(true)?;
            if !self.fits(size, growth) {
                return Err(Error::EntryTooLarge {
                    size: size as u64,
                    max: self.room() as u64,
                });
            }
        }
        Ok(())
    }

    /// Write `recs` (each with its group) as ONE atomic group, in the active chunk (rotating
    /// first if they do not fit its rest), and apply them. `payloads` are the default
    /// group's entry payloads, in order, for the cache. The caller checked every record.
    pub fn write_batch(&mut self, recs: &[(u64, Record<'_>)], payloads: &[Bytes]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let grouped = recs.iter().any(|(g, _)| *g != 0);
        if grouped && self.active.header.version < GROUPS_VERSION {
            // An older chunk holds no group records: they start a new chunk.
            self.rotate(true)?;
        }
        let size: usize = recs.iter().map(|(g, r)| size_in(*g, r)).sum();
        let growth: usize = recs.iter().map(|(g, _)| growth_in(*g)).sum();
        self.make_room(size, growth)?;
        let offs = self.put_batch(recs)?;
        self.apply_batch(recs, &offs, payloads)
    }

    /// Stage and write `recs`, which fit the active chunk, as one atomic group; returns their
    /// offsets. Nothing is applied.
    pub(super) fn put_batch(&mut self, recs: &[(u64, Record<'_>)]) -> Result<Vec<usize>> {
        let mut offs = Vec::with_capacity(recs.len());
        for (i, (g, rec)) in recs.iter().enumerate() {
            let flags = if i + 1 < recs.len() {
                FLAG_CONTINUES
            } else {
                0
            };
            offs.push(self.stage_in(*g, rec, flags)?);
            if self.staged >= BATCH_STAGE_MAX {
                // Published but not applied: nothing points at these bytes until the whole
                // batch is written, and replay drops a group that does not end.
                self.commit()?;
            }
        }
        self.config.run_fail_point("write.after_put");
        self.commit()?;
        Ok(offs)
    }

    /// Apply a written batch, then publish the states and cache the default group's
    /// entries.
    fn apply_batch(
        &mut self,
        recs: &[(u64, Record<'_>)],
        offs: &[usize],
        payloads: &[Bytes],
    ) -> Result<()> {
        let seq = self.active.seq;
        let mut written = Vec::with_capacity(payloads.len());
        let mut first = None;
        let mut touched = Vec::new();
        let mut run = Vec::new();
        let mut i = 0;
        while i < recs.len() {
            let ((g, rec), off) = (&recs[i], offs[i]);
            if let (true, Record::Entry { id, .. }) = (*g != 0, rec) {
                // Consecutive entries of one group and term go into its index as one run.
                let n = entry_run(&recs[i..], *g, *id);
                run.clear();
                run.extend(offs[i..i + n].iter().map(|&o| o as u32));
                if touched.last() != Some(g) {
                    touched.push(*g);
                }
                let published = Some(&self.shared.groups);
                let r = self
                    .groups
                    .push_run(*g, (id.index, id.term), seq, &run, published);
                self.check_applied("apply a checked record", r, (seq, off))?;
                i += n;
                continue;
            }
            i += 1;
            let r = if *g == 0 {
                if let Record::Entry { id, .. } = rec {
                    first.get_or_insert(id.index);
                }
                let r = super::shared::apply(
                    &mut self.state,
                    &self.shared.index,
                    rec,
                    seq,
                    off,
                    &mut Bytes::copy_from_slice,
                );
                if r.is_ok() {
                    self.note(rec, seq, off, &mut written);
                }
                r
            } else {
                if touched.last() != Some(g) {
                    touched.push(*g);
                }
                self.groups
                    .apply(*g, rec, seq, off, Some(&self.shared.groups))
            };
            self.check_applied("apply a checked record", r, (seq, off))?;
        }
        self.groups.publish(touched);
        if let Some(first) = first {
            let n = written.len().min(payloads.len());
            self.shared.metrics.appended(&payloads[..n]);
            let evictable = self.shared.durable.index();
            self.shared
                .cache
                .insert(first, written, payloads[..n].to_vec(), evictable);
        }
        *self.shared.state.write() = self.state.clone();
        Ok(())
    }

    /// A record that was checked before it was written failed to apply: a bug, after which
    /// the disk and the state disagree, so the log is poisoned.
    pub(super) fn check_applied(
        &self,
        op: &'static str,
        r: std::result::Result<(), crate::error::CorruptionKind>,
        (seq, off): (u64, usize),
    ) -> Result<()> {
        let Err(k) = r else {
            return Ok(());
        };
        let cause = Error::corrupt(seq, off as u64, k.clone());
        let path = self.active.region.path();
        let source = std::io::Error::other(cause);
        self.shared.poison.poison(op, Some(path), source);
        Err(Error::corrupt(seq, off as u64, k))
    }

    /// Check that every group's state image still fits the room a fresh chunk keeps for
    /// them (an eighth of it) if `extra` more bytes of images are added.
    pub fn check_images(&self, extra: usize) -> Result<()> {
        let max = self.config.chunk_size as usize / 8;
        let have = self.groups.images;
        if have + extra > max {
            return Err(Error::TooManyGroups {
                groups: self.groups.map.len(),
                image_bytes: (have + extra) as u64,
                max: max as u64,
            });
        }
        Ok(())
    }
}

/// How many records from the start of `recs` (the first being entry `first` of `group`)
/// are consecutive entries of that group and term.
fn entry_run(recs: &[(u64, Record<'_>)], group: u64, first: crate::types::LogId) -> usize {
    let mut n = 1;
    for (g, rec) in &recs[1..] {
        match rec {
            Record::Entry { id, .. }
                if *g == group
                    && id.term == first.term
                    && first.index.checked_add(n as u64) == Some(id.index) =>
            {
                n += 1
            }
            _ => break,
        }
    }
    n
}
