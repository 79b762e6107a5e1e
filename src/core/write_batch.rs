//! `WriteBatch`: entries, truncations, purges and state of many groups, written by one
//! [`Wal::write`](crate::Wal::write) as one atomic group and made durable by one sync.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::{GroupId, LogId};

/// What a batch does to one group. Records go out in this order: remove, truncate,
/// entries, purge, commit, vote, user data.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupOps {
    pub remove: bool,
    pub truncate: Option<u64>,
    pub entries: Vec<(LogId, Bytes)>,
    pub purge: Option<LogId>,
    pub commit: Option<LogId>,
    pub vote: Option<Bytes>,
    pub user_data: Option<Option<Bytes>>,
}

/// Writes to many groups, applied together: [`Wal::write`](crate::Wal::write) writes the
/// whole batch as one atomic group (after a crash, all of it or none of it is there) with
/// one `pwrite`, and one later flush makes all of it durable.
///
/// Per group, the batch's operations go out in a fixed order whatever order they were
/// added in: `remove_group`, `truncate`, the entries, `purge`, `commit`, the vote, the user
/// data. So `truncate(g, i)` plus `append(g, ..)` from `i` is a `replace_range`. Setting the
/// same thing twice keeps the last value; `append` extends. Groups go in ascending order.
///
/// ```
/// # use bytes::Bytes;
/// # use chunkwal::{Config, GroupId, LogId, Wal, WriteBatch};
/// # let dir = tempfile::tempdir().unwrap();
/// # let wal = Wal::open(Config::new(dir.path())).unwrap();
/// let mut batch = WriteBatch::new();
/// for g in 1..=3 {
///     batch.append(GroupId(g), [(LogId::new(1, 1), Bytes::from_static(b"x"))]);
/// }
/// wal.write(&batch)?;
/// wal.flush_blocking()?; // one sync for every group
/// assert_eq!(wal.group(GroupId(2)).last_index(), Some(1));
/// # Ok::<(), chunkwal::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) groups: BTreeMap<GroupId, GroupOps>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn ops(&mut self, g: GroupId) -> &mut GroupOps {
        self.groups.entry(g).or_default()
    }

    /// Append entries to group `g` (after any earlier `append` to `g` in this batch).
    pub fn append(
        &mut self,
        g: GroupId,
        entries: impl IntoIterator<Item = (LogId, Bytes)>,
    ) -> &mut Self {
        self.ops(g).entries.extend(entries);
        self
    }

    /// Remove group `g`'s entries from `since` on (before this batch's entries for `g`).
    pub fn truncate(&mut self, g: GroupId, since: u64) -> &mut Self {
        self.ops(g).truncate = Some(since);
        self
    }

    /// Purge group `g`'s entries up to and including `upto`.
    pub fn purge(&mut self, g: GroupId, upto: LogId) -> &mut Self {
        self.ops(g).purge = Some(upto);
        self
    }

    /// Record group `g`'s committed log id.
    pub fn commit(&mut self, g: GroupId, id: LogId) -> &mut Self {
        self.ops(g).commit = Some(id);
        self
    }

    /// Save group `g`'s vote.
    pub fn save_vote(&mut self, g: GroupId, vote: Bytes) -> &mut Self {
        self.ops(g).vote = Some(vote);
        self
    }

    /// Save or clear group `g`'s application data.
    pub fn save_user_data(&mut self, g: GroupId, data: Option<Bytes>) -> &mut Self {
        self.ops(g).user_data = Some(data);
        self
    }

    /// Remove group `g` (entries and state) before this batch's other writes to it. Not
    /// for the default group ([`Error::DefaultGroup`](crate::Error::DefaultGroup)).
    pub fn remove_group(&mut self, g: GroupId) -> &mut Self {
        let ops = self.ops(g);
        *ops = GroupOps {
            remove: true,
            ..GroupOps::default()
        };
        self
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many groups the batch writes to.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Entries the batch appends, over all groups.
    pub fn entries(&self) -> usize {
        self.groups.values().map(|o| o.entries.len()).sum()
    }

    /// Empty the batch (keeping its allocation).
    pub fn clear(&mut self) {
        self.groups.clear();
    }
}
