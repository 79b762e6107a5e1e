//! `RaftLogReader` over a chunkwal [`Reader`]: lock-free reads for replication tasks.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use ::openraft::{OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError};
use serde::de::DeserializeOwned;

use super::codec::decode;
use super::error::StoreError;
use crate::{Error, Reader};

/// A cloneable log reader handed to openraft's replication tasks. Reads never wait for the
/// writer.
pub struct ChunkwalLogReader<C> {
    reader: Reader,
    _p: PhantomData<C>,
}

impl<C> Clone for ChunkwalLogReader<C> {
    fn clone(&self) -> Self {
        ChunkwalLogReader {
            reader: self.reader.clone(),
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
    pub(crate) fn new(reader: Reader) -> Self {
        ChunkwalLogReader {
            reader,
            _p: PhantomData,
        }
    }
}

/// The half-open index range `[start, end)` a `RangeBounds` denotes.
fn half_open(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
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
/// skipped, as `RaftLogReader` allows).
pub(crate) fn read_entries<C>(
    reader: &Reader,
    range: &impl RangeBounds<u64>,
) -> Result<Vec<C::Entry>, StoreError>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let (start, end) = half_open(range);
    let state = reader.log_state();
    let (Some(first), Some(last)) = (reader.first_index(), state.last) else {
        return Ok(Vec::new());
    };
    let (from, to) = (start.max(first), end.min(last.index.saturating_add(1)));
    if from >= to {
        return Ok(Vec::new());
    }
    let raw = match reader.read(from, to) {
        Ok(raw) => raw,
        // A purge or truncate raced with us: take what is still there, one by one.
        Err(Error::OutOfRange { .. }) => {
            let mut raw = Vec::new();
            for i in from..to {
                match reader.entry(i)? {
                    Some(e) => raw.push(e),
                    None if raw.is_empty() => continue,
                    None => break,
                }
            }
            raw
        }
        Err(e) => return Err(e.into()),
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
        read_entries::<C>(&self.reader, &range).map_err(StoreError::read_logs)
    }
}
