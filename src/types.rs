//! Plain value types shared by every layer: log ids and the replayed log state.

use bytes::Bytes;

/// A Raft log id: the term that created the entry and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    /// The leader term that created the entry.
    pub term: u64,
    /// The position of the entry in the log.
    pub index: u64,
}

impl LogId {
    /// Build a log id.
    pub const fn new(term: u64, index: u64) -> Self {
        LogId { term, index }
    }
}

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.term, self.index)
    }
}

/// A Raft group's id in a log shared by many groups (see `Wal::group`). Group 0,
/// [`GroupId::DEFAULT`], is the log's own single-group API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The default group: what `Wal::append`, `Wal::read` and the other single-group calls
    /// use.
    pub const DEFAULT: GroupId = GroupId(0);

    /// Whether this is the default group.
    pub const fn is_default(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "group {}", self.0)
    }
}

/// The largest chunk sequence number a log may use. Write positions pack the sequence
/// number into 32 bits (see `position`), so open refuses any chunk file past it, and a
/// rotation must not go past it either.
pub const MAX_CHUNK_SEQ: u64 = u32::MAX as u64;

/// A write position packed into one `u64`: chunk sequence number above, byte offset (chunks
/// are at most 1 GiB) below, so later writes compare greater. The durable point and the
/// cache's stale-entry check both use it and must agree. Never wraps: a sequence number
/// past [`MAX_CHUNK_SEQ`] or an offset past `u32::MAX` (both refused elsewhere) saturates,
/// and debug builds assert on it.
pub(crate) fn position(chunk: u64, offset: usize) -> u64 {
    debug_assert!(
        chunk <= MAX_CHUNK_SEQ,
        "chunk seq {chunk} past MAX_CHUNK_SEQ"
    );
    debug_assert!(
        offset as u64 <= u64::from(u32::MAX),
        "offset {offset} past 4 GiB"
    );
    (chunk.min(MAX_CHUNK_SEQ) << 32) | (offset as u64).min(u64::from(u32::MAX))
}

/// The Raft state the log rebuilds on open: everything except the entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogState {
    /// The last saved vote, as opaque bytes.
    pub vote: Option<Bytes>,
    /// The id of the last entry, or the purge point when every entry is purged.
    pub last: Option<LogId>,
    /// The last committed log id the application recorded.
    pub committed: Option<LogId>,
    /// The highest purged log id (index *and* term).
    pub purged: Option<LogId>,
    /// Opaque application data.
    pub user_data: Option<Bytes>,
}

impl LogState {
    /// The index the next appended entry must have, if the log constrains it. Saturates at
    /// `u64::MAX`: a log whose last index is `u64::MAX` accepts no further entry.
    pub fn next_index(&self) -> Option<u64> {
        self.last.map(|l| l.index.saturating_add(1))
    }
}
