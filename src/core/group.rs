//! Handles on one group of a shared log: [`Group`] (reads and writes, borrows the `Wal`)
//! and [`GroupReader`] (reads, owned, for other threads).

use std::ops::RangeBounds;

use bytes::Bytes;

use super::iter::Entries;
use super::read::Reader;
use super::wal::Wal;
use super::write_batch::WriteBatch;
use crate::error::Result;
use crate::types::{GroupId, LogId, LogState};

/// One group of a [`Wal`], with the single-group API. Every call means what the `Wal`
/// method of the same name means, for this group alone; [`GroupId::DEFAULT`]'s handle
/// calls those methods. A write to another group is a one-group [`WriteBatch`]: one atomic
/// group, readable on return, durable after a later [`Wal::flush`] (which covers every
/// group). A group that was never written is empty.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    wal: &'a Wal,
    id: GroupId,
}

impl<'a> Group<'a> {
    pub(super) fn new(wal: &'a Wal, id: GroupId) -> Self {
        Group { wal, id }
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    fn write(&self, f: impl FnOnce(&mut WriteBatch, GroupId)) -> Result<()> {
        let mut b = WriteBatch::new();
        f(&mut b, self.id);
        self.wal.write(&b)
    }

    /// Append entries (see [`Wal::append`]).
    pub fn append<I>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (LogId, Bytes)>,
    {
        if self.id.is_default() {
            return self.wal.append(entries);
        }
        self.write(|b, g| {
            b.append(g, entries);
        })
    }

    /// Remove every entry from `since` on (see [`Wal::truncate`]).
    pub fn truncate(&self, since: u64) -> Result<()> {
        if self.id.is_default() {
            return self.wal.truncate(since);
        }
        self.write(|b, g| {
            b.truncate(g, since);
        })
    }

    /// Truncate at `since` and append `entries` as one atomic write (see
    /// [`Wal::replace_range`]).
    pub fn replace_range<I>(&self, since: u64, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (LogId, Bytes)>,
    {
        if self.id.is_default() {
            return self.wal.replace_range(since, entries);
        }
        self.write(|b, g| {
            b.truncate(g, since).append(g, entries);
        })
    }

    /// Purge entries up to and including `upto` (see [`Wal::purge`]).
    pub fn purge(&self, upto: LogId) -> Result<()> {
        if self.id.is_default() {
            return self.wal.purge(upto);
        }
        self.write(|b, g| {
            b.purge(g, upto);
        })
    }

    /// Record the committed log id.
    pub fn commit(&self, id: LogId) -> Result<()> {
        if self.id.is_default() {
            return self.wal.commit(id);
        }
        self.write(|b, g| {
            b.commit(g, id);
        })
    }

    /// Save the vote.
    pub fn save_vote(&self, vote: Bytes) -> Result<()> {
        if self.id.is_default() {
            return self.wal.save_vote(vote);
        }
        self.write(|b, g| {
            b.save_vote(g, vote);
        })
    }

    /// Save or clear application data.
    pub fn save_user_data(&self, data: Option<Bytes>) -> Result<()> {
        if self.id.is_default() {
            return self.wal.save_user_data(data);
        }
        self.write(|b, g| {
            b.save_user_data(g, data);
        })
    }

    fn view(&self) -> Reader {
        self.wal.reader.view_of(self.id.0)
    }

    /// Entries in `range` (see [`Wal::read`]).
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Bytes)>> {
        self.view().read(range)
    }

    /// At most `max_bytes` of payload from `range`, and always its first entry (see
    /// [`Reader::read_bounded`]).
    pub fn read_bounded(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(LogId, Bytes)>> {
        self.view().read_bounded(range, max_bytes)
    }

    /// Entries in `range`, lazily (see [`Wal::iter`]).
    pub fn iter(&self, range: impl RangeBounds<u64>) -> Result<Entries> {
        self.view().iter(range)
    }

    /// One entry, if the group holds it.
    pub fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        self.view().entry(index)
    }

    /// The term of entry `index`, if the group holds it.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.view().term(index)
    }

    /// The group's state.
    pub fn log_state(&self) -> LogState {
        self.view().log_state()
    }

    /// The group's smallest index, if it holds any entry.
    pub fn first_index(&self) -> Option<u64> {
        self.view().first_index()
    }

    /// The group's largest index, if it holds any entry.
    pub fn last_index(&self) -> Option<u64> {
        self.view().last_index()
    }

    /// An owned read handle on this group, for other threads.
    pub fn reader(&self) -> GroupReader {
        self.wal.reader.group(self.id)
    }
}

/// An owned, cloneable read handle on one group (see [`Reader::group`]). Each call reads
/// the group as it is at that moment; reads never wait for the writer.
#[derive(Debug, Clone)]
pub struct GroupReader {
    reader: Reader,
    id: GroupId,
}

impl GroupReader {
    pub(super) fn new(reader: Reader, id: GroupId) -> Self {
        GroupReader { reader, id }
    }

    fn view(&self) -> Reader {
        self.reader.view_of(self.id.0)
    }

    /// The group's id.
    pub fn id(&self) -> GroupId {
        self.id
    }

    /// Entries in `range` (see [`Reader::read`]).
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Bytes)>> {
        self.view().read(range)
    }

    /// At most `max_bytes` of payload from `range`, and always its first entry (see
    /// [`Reader::read_bounded`]).
    pub fn read_bounded(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(LogId, Bytes)>> {
        self.view().read_bounded(range, max_bytes)
    }

    /// Entries in `range`, lazily.
    pub fn iter(&self, range: impl RangeBounds<u64>) -> Result<Entries> {
        self.view().iter(range)
    }

    /// One entry, if the group holds it.
    pub fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        self.view().entry(index)
    }

    /// The term of entry `index`, if the group holds it.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.view().term(index)
    }

    /// The group's state.
    pub fn log_state(&self) -> LogState {
        self.view().log_state()
    }

    /// The group's smallest index, if it holds any entry.
    pub fn first_index(&self) -> Option<u64> {
        self.view().first_index()
    }

    /// The group's largest index, if it holds any entry.
    pub fn last_index(&self) -> Option<u64> {
        self.view().last_index()
    }
}

impl Reader {
    /// A read handle on group `id` of this log.
    pub fn group(&self, id: GroupId) -> GroupReader {
        GroupReader::new(self.clone(), id)
    }
}
