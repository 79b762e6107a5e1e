//! Scan replay in bulk: consecutive entry records of one group and term are collected into a
//! run and pushed into the index at once (one lock, one allocation per run), exactly as
//! that many single pushes would; every other record flushes the run first.

use bytes::Bytes;

use crate::core::groups::GroupStates;
use crate::core::shared::{apply, apply_run};
use crate::core::writer::ChunkMeta;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::index::EntryIndex;
use crate::types::LogState;

/// The run being collected.
#[derive(Default)]
struct Open {
    group: u64,
    first: u64,
    term: u64,
    /// The entries' record offsets; empty: no run.
    offsets: Vec<u32>,
}

/// Applies a scanned chunk's records to the default group and the other groups.
pub(super) struct RunReplay<'a> {
    pub seq: u64,
    pub state: &'a mut LogState,
    pub index: &'a EntryIndex,
    pub groups: &'a mut GroupStates,
    pub meta: &'a mut ChunkMeta,
    run: Open,
}

impl<'a> RunReplay<'a> {
    pub fn new(
        seq: u64,
        (state, index): (&'a mut LogState, &'a EntryIndex),
        groups: &'a mut GroupStates,
        meta: &'a mut ChunkMeta,
    ) -> Self {
        RunReplay {
            seq,
            state,
            index,
            groups,
            meta,
            run: Open::default(),
        }
    }

    /// Apply record `rec` of `group` at `offset`.
    pub fn record(&mut self, group: u64, rec: &Record<'_>, offset: usize) -> Result<()> {
        if let Record::Entry { id, .. } = rec {
            let r = &self.run;
            let follows = !r.offsets.is_empty()
                && r.group == group
                && r.term == id.term
                && r.first.checked_add(r.offsets.len() as u64) == Some(id.index);
            if !follows {
                self.flush()?;
                self.run.group = group;
                self.run.first = id.index;
                self.run.term = id.term;
            }
            // Offsets are below the chunk size, at most 1 GiB.
            self.run.offsets.push(offset as u32);
            return Ok(());
        }
        self.flush()?;
        let (seq, at) = (self.seq, offset as u64);
        if group != 0 {
            return self
                .groups
                .apply(group, rec, seq, offset, None)
                .map_err(|k| Error::corrupt(seq, at, k));
        }
        if let Some(i) = rec.last_entry_index() {
            self.meta.max_index = Some(self.meta.max_index.map_or(i, |m| m.max(i)));
        }
        let mut copy = |b: &[u8]| Bytes::copy_from_slice(b);
        apply(self.state, self.index, rec, seq, offset, &mut copy)
            .map_err(|k| Error::corrupt(seq, at, k))
    }

    /// Push the collected run, with the check `apply` makes of its first entry.
    pub fn flush(&mut self) -> Result<()> {
        if self.run.offsets.is_empty() {
            return Ok(());
        }
        let seq = self.seq;
        let Open {
            group,
            first,
            term,
            ref offsets,
        } = self.run;
        let at = u64::from(offsets[0]);
        if group != 0 {
            self.groups
                .push_run(group, (first, term), seq, offsets, None)
                .map_err(|k| Error::corrupt(seq, at, k))?;
        } else {
            let last = apply_run(self.state, self.index, (first, term), seq, offsets)
                .map_err(|k| Error::corrupt(seq, at, k))?;
            if let Some(last) = last {
                self.meta.max_index = Some(self.meta.max_index.map_or(last, |m| m.max(last)));
            }
        }
        self.run.offsets.clear();
        Ok(())
    }
}
