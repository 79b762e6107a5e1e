//! Rewrite forward: once the chunk files pass `Config::rewrite_threshold`, the live entries
//! of small groups that keep the oldest chunk alive are written again at the head, so that
//! chunk can be retired while those groups lag.
//!
//! On disk a rewrite is one atomic group of ordinary records of the group: a Truncate of
//! every live entry, then a copy of each (same ids, same payloads). Replay applies it like
//! any `replace_range`, so after a crash the group has its entries either at the old
//! places (the rewrite did not survive) or at the new ones; the old chunk is deleted only
//! once the rewrite is durable (the retirement waits for a sync past it, as a purge's does).
//! In memory the group gets a new index, built aside and swapped in whole: a reader never
//! sees the group without its entries.

use std::sync::Arc;

use bytes::Bytes;

use super::groups::{GroupLog, GroupStates};
use super::read::Reader;
use super::shared::{apply, last_before};
use super::writer::Writer;
use super::writer_groups::{growth_in, size_in};
use crate::error::{Error, Result};
use crate::format::Record;

impl Writer {
    /// After a write call: if the chunk files take more than the rewrite threshold, rewrite
    /// forward the small groups whose first live entry is in the oldest chunk (unless the
    /// default group needs that chunk anyway), then retire what no group needs any more.
    /// Returns how many groups were rewritten.
    pub fn maybe_rewrite(&mut self) -> Result<usize> {
        let Some(threshold) = self.config.rewrite_threshold else {
            return Ok(0);
        };
        let size = self.config.chunk_size;
        if (self.shared.chunks.len() as u64).saturating_mul(size) <= threshold {
            return Ok(0);
        }
        let Some(front) = self.metas.front() else {
            return Ok(0);
        };
        let purged = self.state.purged.map(|p| p.index);
        let default_pins = front
            .max_index
            .is_some_and(|x| purged.is_none_or(|p| x > p));
        let front = front.seq;
        if front == self.active.seq || default_pins {
            return Ok(0);
        }
        let mut ids: Vec<u64> = self
            .groups
            .map
            .iter()
            .filter(|(_, g)| GroupStates::first_chunk(g).is_some_and(|c| c <= front))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let budget = size / 8;
        let mut done = 0;
        for id in ids {
            if self.rewrite_group(id, budget)? {
                done += 1;
            }
        }
        if done > 0 {
            tracing::debug!(groups = done, front, "rewrote lagging groups forward");
            self.retire_chunks(self.state.purged)?;
        }
        Ok(done)
    }

    /// Rewrite group `id`'s live entries at the head if their payloads take at most
    /// `budget` bytes. `Ok(false)`: left where it is (too big, or nothing live).
    fn rewrite_group(&mut self, id: u64, budget: u64) -> Result<bool> {
        let Some(g) = self.groups.map.get(&id) else {
            return Ok(false);
        };
        let (Some(first), Some(last)) = (g.log.index.first(), g.log.index.last_index()) else {
            return Ok(false);
        };
        let view = Reader::new(Arc::clone(&self.shared)).view_of(id);
        let entries = view.read_bounded(first..=last, budget)?;
        if entries.len() as u64 != last - first + 1 {
            return Ok(false);
        }
        let state = g.state.clone();
        let cut = last_before(&state, &g.log.index, first);
        let mut recs = Vec::with_capacity(entries.len() + 1);
        recs.push((
            id,
            Record::Truncate {
                since: first,
                last: cut,
            },
        ));
        recs.extend(entries.iter().map(|(lid, p)| {
            (
                id,
                Record::Entry {
                    id: *lid,
                    payload: p.as_ref(),
                },
            )
        }));
        let size: usize = recs.iter().map(|(g, r)| size_in(*g, r)).sum();
        let growth = recs.len() * growth_in(id);
        match self.make_room(size, growth) {
            Ok(()) => {}
            Err(Error::EntryTooLarge { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        let offs = self.put_batch(&recs)?;
        self.swap_in(id, &recs, &offs, state)?;
        Ok(true)
    }

    /// Apply a written rewrite of group `id` to a new index and `state`, then swap both in.
    fn swap_in(
        &mut self,
        id: u64,
        recs: &[(u64, Record<'_>)],
        offs: &[usize],
        mut state: crate::types::LogState,
    ) -> Result<()> {
        let seq = self.active.seq;
        let log = Arc::new(GroupLog::default());
        for ((_, rec), &off) in recs.iter().zip(offs) {
            let r = apply(
                &mut state,
                &log.index,
                rec,
                seq,
                off,
                &mut Bytes::copy_from_slice,
            );
            self.check_applied("apply a rewrite", r, (seq, off))?;
        }
        *log.state.write() = state.clone();
        if let Some(g) = self.groups.map.get_mut(&id) {
            g.state = state;
            g.log = Arc::clone(&log);
        }
        self.shared.groups.write().insert(id, log);
        Ok(())
    }
}
