//! The writer's side of the seal-time footer: [`FooterBuilder`] collects a chunk's Index
//! body (runs of entries per group, Record items) while its records are staged or scanned.

use super::body::Record;
use super::footer::{
    Trailer, BODY_HEAD_LEN, GROUP_RUN_HEAD_LEN, RUN_HEAD_LEN, TAG_GROUP_RUN, TAG_RECORD, TAG_RUN,
};

/// The most one default-group record can grow an Index body by (a new run holding one
/// offset; a Record item takes 8). The writer reserves this much per record it has not
/// staged yet.
pub const MAX_GROWTH_PER_RECORD: usize = RUN_HEAD_LEN + 8;
/// The most one record of a non-default group can grow an Index body by: a new group run
/// holding one offset (its 32-byte head and one offset, padded to 8).
pub const MAX_GROWTH_PER_GROUP_RECORD: usize = GROUP_RUN_HEAD_LEN + 8;

/// The run being extended: where its header sits in the builder's buffer.
#[derive(Debug, Clone, Copy)]
struct OpenRun {
    at: usize,
    group: u64,
    first: u64,
    term: u64,
    count: u32,
}

/// Collects the items of an Index body while the writer stages a chunk's records. Appending
/// is amortised O(1) and [`FooterBuilder::encode_body`] is one copy.
#[derive(Debug, Clone, Default)]
pub struct FooterBuilder {
    /// The items encoded so far, except the open run's padding.
    buf: Vec<u8>,
    n_items: u32,
    n_entries: u64,
    run: Option<OpenRun>,
}

impl FooterBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything (a new chunk starts).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.n_items = 0;
        self.n_entries = 0;
        self.run = None;
    }

    /// Entries recorded so far.
    #[cfg(any(test, feature = "testing"))]
    pub fn n_entries(&self) -> u64 {
        self.n_entries
    }

    /// Items recorded so far.
    #[cfg(any(test, feature = "testing"))]
    pub fn n_items(&self) -> u32 {
        self.n_items
    }

    /// Whether the counts fit their on-disk fields (they always do for real chunks; a
    /// writer that finds otherwise seals without a footer).
    pub fn encodable(&self) -> bool {
        self.n_entries <= u64::from(u32::MAX)
    }

    /// Record a default-group entry (or Batch member): [`FooterBuilder::push_entry_in`]
    /// with group 0.
    #[cfg(any(test, feature = "testing"))]
    pub fn push_entry(&mut self, index: u64, term: u64, offset: u32) {
        self.push_entry_in(0, index, term, offset);
    }

    /// Record an entry (or a Batch member) of group `group`, index `index` and term `term`
    /// in the record at `offset`. Consecutive entries of one group and term extend the
    /// current run; a run never spans groups. Group 0 writes `TAG_RUN` runs (as format v2
    /// always did), any other group `TAG_GROUP_RUN` runs.
    pub fn push_entry_in(&mut self, group: u64, index: u64, term: u64, offset: u32) {
        self.n_entries += 1;
        if let Some(r) = &mut self.run {
            let next = r.first.checked_add(u64::from(r.count));
            if r.group == group && r.term == term && next == Some(index) && r.count < u32::MAX {
                r.count += 1;
                let at = r.at + 4;
                self.buf[at..at + 4].copy_from_slice(&r.count.to_le_bytes());
                self.buf.extend_from_slice(&offset.to_le_bytes());
                return;
            }
        }
        self.close_run();
        let at = self.buf.len();
        let tag = if group == 0 { TAG_RUN } else { TAG_GROUP_RUN };
        self.buf.extend_from_slice(&[tag, 0, 0, 0]);
        self.buf.extend_from_slice(&1u32.to_le_bytes());
        self.buf.extend_from_slice(&index.to_le_bytes());
        self.buf.extend_from_slice(&term.to_le_bytes());
        if group != 0 {
            self.buf.extend_from_slice(&group.to_le_bytes());
        }
        self.buf.extend_from_slice(&offset.to_le_bytes());
        self.n_items += 1;
        self.run = Some(OpenRun {
            at,
            group,
            first: index,
            term,
            count: 1,
        });
    }

    /// Record default-group record `rec`: [`FooterBuilder::push_in`] with group 0.
    #[cfg(any(test, feature = "testing"))]
    pub fn push(&mut self, rec: &Record<'_>, offset: u32) {
        self.push_in(0, rec, offset);
    }

    /// Record `rec` of group `group` (0: the default group), staged or scanned at
    /// `offset`: an entry extends or starts a run of that group, the Index and Seal records
    /// are not items, anything else is a Record item (its frame names its group).
    pub fn push_in(&mut self, group: u64, rec: &Record<'_>, offset: u32) {
        match rec {
            Record::Entry { id, .. } => self.push_entry_in(group, id.index, id.term, offset),
            // Every member of a batch is a run entry at the batch's offset: replay never
            // needs to read the batch itself.
            Record::Batch { head, .. } => {
                for i in 0..u64::from(head.count) {
                    self.push_entry_in(group, head.first + i, head.term, offset);
                }
            }
            Record::Seal | Record::Index { .. } => {}
            _ => self.push_record(offset),
        }
    }

    /// Record any other record (not Index, not Seal) at `offset`; it ends the current run.
    pub fn push_record(&mut self, offset: u32) {
        self.close_run();
        self.buf.extend_from_slice(&[TAG_RECORD, 0, 0, 0]);
        self.buf.extend_from_slice(&offset.to_le_bytes());
        self.n_items += 1;
    }

    fn close_run(&mut self) {
        if self.run.take().is_some() {
            self.buf.resize(self.buf.len().next_multiple_of(8), 0);
        }
    }

    /// Length of the Index body [`FooterBuilder::encode_body`] writes.
    pub fn body_len(&self) -> usize {
        BODY_HEAD_LEN + self.buf.len().next_multiple_of(8)
    }

    /// Write the Index body into `dst`, which is exactly [`FooterBuilder::body_len`] long.
    pub fn encode_body(&self, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), self.body_len());
        dst[..4].copy_from_slice(&self.n_items.to_le_bytes());
        dst[4..8].fill(0);
        let end = BODY_HEAD_LEN + self.buf.len();
        dst[BODY_HEAD_LEN..end].copy_from_slice(&self.buf);
        dst[end..].fill(0);
    }

    /// The trailer for this builder's Index record at `index_off` and Seal at `seal_off`.
    pub fn trailer(&self, tag: u32, index_off: u32, seal_off: u32) -> Trailer {
        Trailer {
            tag,
            index_off,
            seal_off,
            n_entries: u32::try_from(self.n_entries).unwrap_or(u32::MAX),
        }
    }
}
