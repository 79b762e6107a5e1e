//! The `Wal`'s multi-group calls: group handles, batches over many groups, group removal
//! and the groups that pin old chunks.

use bytes::Bytes;

use super::group::Group;
use super::groups::GroupW;
use super::shared::{check_all, last_before};
use super::wal::Wal;
use super::write_batch::{GroupOps, WriteBatch};
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::index::EntryIndex;
use crate::types::{GroupId, LogState};

/// A group that keeps old chunks alive (see [`Wal::pinning_groups`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPin {
    /// The group.
    pub group: GroupId,
    /// Its first live entry.
    pub first_index: Option<u64>,
    /// The chunk that entry is in: no chunk from it on can be deleted while it is live.
    pub oldest_chunk: u64,
    /// Bytes of the chunk files from `oldest_chunk` up to the newest one's start: what
    /// purging this group (or rewriting it forward) could free, at most.
    pub pinned_bytes: u64,
}

/// Bytes a new group's state image may take, beyond its vote and user data (a bound).
const NEW_IMAGE: usize = 104;

impl Wal {
    /// A handle on group `id` of this log, with the single-group API. Cheap; groups are
    /// created by their first write.
    pub fn group(&self, id: GroupId) -> Group<'_> {
        Group::new(self, id)
    }

    /// The groups that hold anything (entries or state), ascending. The default group is
    /// included when its state is not empty.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self
            .reader
            .shared()
            .groups
            .read()
            .keys()
            .map(|&id| GroupId(id))
            .collect();
        if self.log_state() != LogState::default() {
            ids.push(GroupId::DEFAULT);
        }
        ids.sort_unstable();
        ids
    }

    /// Remove group `id`: its entries and state are gone, and the chunks only it kept alive
    /// are deleted once the removal is durable. A no-op for a group that does not exist.
    pub fn remove_group(&self, id: GroupId) -> Result<()> {
        let mut b = WriteBatch::new();
        b.remove_group(id);
        self.write(&b)
    }

    /// Write `batch`: every group's records as ONE atomic group (after a crash, all of the
    /// batch is there or none of it), with one `pwrite`. Readable on return; durable after
    /// a later [`Wal::flush`] or [`Wal::flush_blocking`], one sync for every group. The
    /// batch is checked whole first: if any part is refused, nothing is written. A batch
    /// must fit in one chunk ([`Error::EntryTooLarge`] otherwise).
    pub fn write(&self, batch: &WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        for (g, ops) in &batch.groups {
            if g.is_default() && ops.remove {
                return Err(Error::DefaultGroup { op: "remove_group" });
            }
            self.check_meta(ops.vote.as_ref().map_or(0, |v| v.len()))?;
            self.check_meta(
                ops.user_data
                    .as_ref()
                    .map_or(0, |d| d.as_ref().map_or(0, |d| d.len())),
            )?;
        }
        let wait = self.write_op(|w| {
            let (recs, payloads, retire) = batch_records(self, w, batch)?;
            w.write_batch(&recs, &payloads)?;
            let counters = &w.shared.counters;
            super::shared::Counters::bump(&counters.appends, 1);
            super::shared::Counters::bump(&counters.appended_entries, batch.entries() as u64);
            if retire {
                let upto = w.state.purged;
                w.retire_chunks(upto)?;
            }
            Ok(w.backpressure())
        })?;
        match wait {
            Some((owner, target)) => owner.sync_to(target),
            None => Ok(()),
        }
    }

    /// The groups whose live entries keep the oldest chunks alive, most bytes first, at most
    /// `limit` of them: what raft-engine's `purge_expired_files` returns. The application
    /// compacts (purges) them, or lets [`Config::rewrite_threshold`](crate::Config) move
    /// small ones forward.
    pub fn pinning_groups(&self, limit: usize) -> Vec<GroupPin> {
        self.with_writer(|w| {
            let chunk_size = w.config.chunk_size;
            let active = w.active.seq;
            let mut pins: Vec<GroupPin> = w
                .groups
                .map
                .iter()
                .filter_map(|(&id, g)| {
                    let oldest = super::groups::GroupStates::first_chunk(g)?;
                    Some(GroupPin {
                        group: GroupId(id),
                        first_index: g.log.index.first(),
                        oldest_chunk: oldest,
                        pinned_bytes: active.saturating_sub(oldest) * chunk_size,
                    })
                })
                .filter(|p| p.oldest_chunk < active)
                .collect();
            pins.sort_unstable_by_key(|p| (std::cmp::Reverse(p.pinned_bytes), p.group));
            pins.truncate(limit);
            pins
        })
    }
}

/// A batch's records with their groups, the default group's payloads, and whether chunks
/// may be retired after it.
type BatchRecords<'a> = (Vec<(u64, Record<'a>)>, Vec<Bytes>, bool);

/// The records of `batch`, checked against the groups' state under the writer lock, with
/// the default group's payloads (for the cache) and whether chunks may now be retired.
fn batch_records<'a>(wal: &Wal, w: &Writer, batch: &'a WriteBatch) -> Result<BatchRecords<'a>> {
    let mut recs = Vec::with_capacity(batch.entries() + batch.groups() * 2);
    let mut payloads = Vec::new();
    let (mut retire, mut extra_images) = (false, 0usize);
    let empty = GroupW::default();
    for (g, ops) in &batch.groups {
        let id = g.0;
        let start = recs.len();
        let (state, index, exists) = match id {
            0 => (&w.state, &w.shared.index, true),
            _ => match w.groups.map.get(&id) {
                Some(gw) => (&gw.state, &gw.log.index, true),
                None => (&empty.state, &empty.log.index, false),
            },
        };
        let (state, index) = if ops.remove {
            if exists {
                recs.push((id, Record::RemoveGroup));
                retire = true;
            }
            (&empty.state, &empty.log.index)
        } else {
            (state, index)
        };
        group_records(wal, (id, ops), (state, index), &mut recs)?;
        retire |= ops.purge.is_some() || ops.truncate.is_some();
        // `group_records` checked every entry against the state (contiguity, overflow), and
        // they come after the only records whose check depends on them (remove, truncate)
        // and before ones whose application cannot fail (purge, commit, vote, user data):
        // what is left to check is the rest, in order.
        let mine: Vec<Record<'_>> = recs[start..]
            .iter()
            .filter(|(_, r)| !matches!(r, Record::Entry { .. }))
            .map(|(_, r)| *r)
            .collect();
        let checked = match id {
            0 => check_all(&w.state, &w.shared.index, &mine),
            _ => w.groups.check(id, &mine),
        };
        checked.map_err(|reason| Error::Rejected { reason })?;
        if id == 0 {
            payloads.extend(ops.entries.iter().map(|(_, p)| p.clone()));
        } else if recs.len() > start {
            let new = !exists || ops.remove;
            extra_images += if new { NEW_IMAGE } else { 0 };
            extra_images += ops.vote.as_ref().map_or(0, |v| v.len());
            extra_images += ops
                .user_data
                .as_ref()
                .map_or(0, |d| d.as_ref().map_or(0, |d| d.len()));
        }
    }
    if extra_images > 0 {
        w.check_images(extra_images)?;
    }
    Ok((recs, payloads, retire))
}

/// Group `id`'s records from `ops`, in the batch order, against its `state` and `index`.
/// Errors are the single-group calls' errors ([`Wal::check_entries`] checks the entries).
fn group_records<'a>(
    wal: &Wal,
    (id, ops): (u64, &'a GroupOps),
    (state, index): (&LogState, &EntryIndex),
    recs: &mut Vec<(u64, Record<'a>)>,
) -> Result<()> {
    let empty = state.last.is_none() && state.purged.is_none();
    if let Some(since) = ops.truncate {
        Wal::check_truncate(state, since)?;
        if !empty {
            let next = state.next_index().unwrap_or(since);
            if since > next && ops.entries.is_empty() {
                // Nothing from `since` on: a no-op, as `Wal::truncate` past the end is.
                push_state(id, ops, state, recs);
                return Ok(());
            }
            if since > next {
                return Err(Error::NonContiguous {
                    expected: next,
                    got: since,
                });
            }
            if state.last.is_some_and(|l| since <= l.index) {
                let last = last_before(state, index, since);
                recs.push((id, Record::Truncate { since, last }));
            }
        }
    }
    if !ops.entries.is_empty() {
        let lens = ops.entries.iter().map(|(lid, p)| (*lid, p.len()));
        wal.check_entries(state, ops.truncate, lens)?;
    }
    recs.extend(ops.entries.iter().map(|(lid, p)| {
        (
            id,
            Record::Entry {
                id: *lid,
                payload: p,
            },
        )
    }));
    push_state(id, ops, state, recs);
    Ok(())
}

/// The purge, commit, vote and user data records of `ops`.
fn push_state<'a>(id: u64, ops: &'a GroupOps, state: &LogState, recs: &mut Vec<(u64, Record<'a>)>) {
    if let Some(upto) = ops.purge {
        if state.purged.is_none_or(|p| p.index < upto.index) {
            recs.push((id, Record::Purge { upto }));
        }
    }
    if let Some(cid) = ops.commit {
        recs.push((id, Record::Commit { id: cid }));
    }
    if let Some(v) = &ops.vote {
        recs.push((id, Record::Vote { vote: v }));
    }
    if let Some(d) = &ops.user_data {
        recs.push((id, Record::UserData { data: d.as_deref() }));
    }
}
