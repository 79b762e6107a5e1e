//! `RaftLogReader` over a chunkwal [`Reader`] (the default group) or [`GroupReader`] (any
//! other group of a shared log): lock-free reads for replication tasks.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use ::openraft::{OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::codec::decode;
use super::error::StoreError;
use crate::{Error, GroupId, GroupReader, Reader};

/// The owned read handle of the store's group: the default group reads through the log's
/// [`Reader`] (with its payload cache), any other group through its [`GroupReader`].
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The default group.
    Default(Reader),
    /// A non-default group of a shared log.
    Group(GroupReader),
}

impl Source {
    /// The handle for `group` of the log `reader` reads.
    pub(crate) fn new(reader: Reader, group: GroupId) -> Self {
        if group == GroupId::DEFAULT {
            Source::Default(reader)
        } else {
            Source::Group(reader.group(group))
        }
    }

    pub(crate) fn first_index(&self) -> Option<u64> {
        match self {
            Source::Default(r) => r.first_index(),
            Source::Group(r) => r.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> Option<u64> {
        match self {
            Source::Default(r) => r.last_index(),
            Source::Group(r) => r.last_index(),
        }
    }

    pub(crate) fn entry(&self, index: u64) -> crate::Result<Option<(crate::LogId, Bytes)>> {
        match self {
            Source::Default(r) => r.entry(index),
            Source::Group(r) => r.entry(index),
        }
    }

    /// `from..=through`, by the rules of [`Reader::read_bounded`]: the prefix of the range
    /// whose payloads fit `max_bytes`, but at least one entry.
    fn read_bounded(
        &self,
        from: u64,
        through: u64,
        max_bytes: u64,
    ) -> crate::Result<Vec<(crate::LogId, Bytes)>> {
        match self {
            Source::Default(r) => r.read_bounded(from..=through, max_bytes),
            Source::Group(r) => r.read_bounded(from..=through, max_bytes),
        }
    }
}

/// A cloneable log reader handed to openraft's replication tasks. Reads never wait for the
/// writer.
pub struct ChunkwalLogReader<C> {
    reader: Source,
    read_limit: u64,
    _p: PhantomData<C>,
}

impl<C> Clone for ChunkwalLogReader<C> {
    fn clone(&self) -> Self {
        ChunkwalLogReader {
            reader: self.reader.clone(),
            read_limit: self.read_limit,
            _p: PhantomData,
        }
    }
}

impl<C> Debug for ChunkwalLogReader<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkwalLogReader").finish_non_exhaustive()
    }
}

impl<C> ChunkwalLogReader<C> {
    pub(crate) fn new(reader: Source, read_limit: u64) -> Self {
        ChunkwalLogReader {
            reader,
            read_limit,
            _p: PhantomData,
        }
    }
}

/// The default payload budget of [`RaftLogReader::limited_get_log_entries`] (1 MiB of
/// encoded entries): see [`ChunkwalLogStore::with_read_limit`](super::ChunkwalLogStore::with_read_limit).
pub const DEFAULT_READ_LIMIT: u64 = 1 << 20;

/// The inclusive span of `range` that the log holds now, if any.
fn clamp(reader: &Source, range: &impl RangeBounds<u64>) -> Option<(u64, u64)> {
    let (first, last) = reader.first_index().zip(reader.last_index())?;
    let from = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => first,
    };
    let through = match range.end_bound() {
        Bound::Included(e) => *e,
        Bound::Excluded(e) => e.checked_sub(1)?,
        Bound::Unbounded => last,
    };
    let span = (from.max(first), through.min(last));
    (span.0 <= span.1).then_some(span)
}

/// Decode one stored entry and check it belongs at `index`.
pub(crate) fn decode_entry<C>(index: u64, payload: &[u8]) -> Result<C::Entry, StoreError>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let entry: C::Entry = decode(payload, "log entry")?;
    let found = entry.get_log_id().index;
    if found != index {
        return Err(StoreError::EntryMismatch { index, found });
    }
    Ok(entry)
}

/// The entries of `range` the log holds (missing ones, purged or never written, are
/// skipped, as `RaftLogReader` allows), at most `max_bytes` of encoded entries but at least
/// one when the log holds one in the range.
pub(crate) fn read_entries<C>(
    reader: &Source,
    range: &impl RangeBounds<u64>,
    max_bytes: u64,
) -> Result<Vec<C::Entry>, StoreError>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let mut attempts = 0;
    let raw = loop {
        let Some((from, through)) = clamp(reader, range) else {
            return Ok(Vec::new());
        };
        match reader.read_bounded(from, through, max_bytes) {
            Ok(raw) => break raw,
            // A purge or truncate raced the bounds: look again.
            Err(Error::OutOfRange { .. }) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    raw.iter()
        .map(|(id, payload)| decode_entry::<C>(id.index, payload))
        .collect()
}

impl<C> RaftLogReader<C> for ChunkwalLogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        read_entries::<C>(&self.reader, &range, u64::MAX).map_err(StoreError::read_logs)
    }

    /// `[start, end)`, at most the store's read limit of encoded entries (but at least one
    /// entry when the log holds one in the range): see
    /// [`ChunkwalLogStore::with_read_limit`](super::ChunkwalLogStore::with_read_limit).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        read_entries::<C>(&self.reader, &(start..end), self.read_limit)
            .map_err(StoreError::read_logs)
    }
}
