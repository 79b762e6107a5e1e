//! `ChunkwalLogStore`: openraft's `RaftLogStorage` over a chunkwal [`Wal`].

use std::fmt::Debug;
use std::ops::RangeBounds;

use ::openraft::storage::{LogFlushed, RaftLogStorage};
use ::openraft::{
    LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{core_id, decode, encode};
use super::error::StoreError;
use super::meta::Meta;
use super::reader::{decode_entry, read_entries, ChunkwalLogReader, DEFAULT_READ_LIMIT};
use crate::{Config, Reader, Wal};

/// openraft log storage backed by a chunkwal [`Wal`], generic over the type config `C`.
///
/// - Entries are stored whole, serialized with postcard, at their log index; the core's
///   `LogId` is `{term: leader_id.term, index}`.
/// - `append` makes entries readable on return and reports durability from chunkwal's flush
///   thread (group commit), so openraft pipelines appends without waiting for `msync`.
///   Entries at or below the purge point are skipped; entries overlapping held ones replace
///   the suffix from their first index (one crash-atomic `replace_range`).
/// - `save_vote` returns only once the vote is durable.
/// - The full openraft purge point and committed id live in a small metadata record (the
///   core's user data slot, which this store owns); the core also records both as
///   `{term, index}`.
///
/// ```no_run
/// use std::io::Cursor; // the default `SnapshotData` of `declare_raft_types!`
/// use chunkwal::integrations::openraft::ChunkwalLogStore;
/// openraft::declare_raft_types!(pub TypeConfig:);
/// let store = ChunkwalLogStore::<TypeConfig>::open(chunkwal::Config::new("/tmp/raft-log"))?;
/// // Raft::new(node_id, config, network, store, state_machine).await?
/// # Ok::<(), chunkwal::integrations::openraft::StoreError>(())
/// ```
pub struct ChunkwalLogStore<C: RaftTypeConfig> {
    wal: Wal,
    reader: Reader,
    read_limit: u64,
    meta: Meta<C::NodeId>,
}

impl<C: RaftTypeConfig> Debug for ChunkwalLogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkwalLogStore")
            .field("wal", &self.wal)
            .field("read_limit", &self.read_limit)
            .field("meta", &self.meta)
            .finish()
    }
}

impl<C> ChunkwalLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// Open (or create) the log in `config.dir`.
    pub fn open(config: Config) -> Result<Self, StoreError> {
        Self::new(Wal::open(config)?)
    }

    /// Wrap an open log, finishing a purge a crash interrupted.
    pub fn new(wal: Wal) -> Result<Self, StoreError> {
        let meta = Meta::load(&wal)?;
        meta.reconcile(&wal)?;
        let reader = wal.reader();
        Ok(ChunkwalLogStore {
            wal,
            reader,
            read_limit: DEFAULT_READ_LIMIT,
            meta,
        })
    }

    /// Set the byte budget of `limited_get_log_entries` (openraft's replication reads) for
    /// this store and the readers it hands out from now on: a call returns at most
    /// `max_bytes` of encoded entries, but always at least one entry when the log holds
    /// one in the range, so replication always makes progress. The default is
    /// [`DEFAULT_READ_LIMIT`] (1 MiB); `u64::MAX` turns the limit off.
    /// `try_get_log_entries` is never limited.
    pub fn with_read_limit(mut self, max_bytes: u64) -> Self {
        self.read_limit = max_bytes;
        self
    }

    /// The underlying log, e.g. for statistics.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Give back the underlying log (to close it and see the result).
    pub fn into_wal(self) -> Wal {
        self.wal
    }

    /// Ask for a sync and wait, without blocking the async runtime, until it is done.
    async fn flush_durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.wal.flush(move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| StoreError::FlushDropped)??;
        Ok(())
    }

    /// The id of the last entry, or the purge point when every entry is purged.
    fn last_log_id(&self) -> Result<Option<LogId<C::NodeId>>, StoreError> {
        let state = self.wal.log_state();
        let Some(last) = state.last else {
            return Ok(None);
        };
        if self.wal.first_index().is_some() {
            if let Some((id, payload)) = self.reader.entry(last.index)? {
                let entry = decode_entry::<C>(id.index, &payload)?;
                return Ok(Some(entry.get_log_id().clone()));
            }
        }
        Ok(self.meta.purged.clone())
    }

    fn save_meta(&mut self, meta: Meta<C::NodeId>) -> Result<(), StoreError> {
        meta.save(&self.wal)?;
        self.meta = meta;
        Ok(())
    }

    fn purge_upto(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StoreError> {
        if self
            .meta
            .purged
            .as_ref()
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        let core = core_id(&log_id);
        let mut meta = self.meta.clone();
        meta.purged = Some(log_id);
        // Metadata first: a crash between the two is finished by `Meta::reconcile`.
        self.save_meta(meta)?;
        self.wal.purge(core)?;
        Ok(())
    }

    fn save_committed_id(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StoreError> {
        let core = committed.as_ref().map(core_id);
        let mut meta = self.meta.clone();
        meta.committed = committed;
        self.save_meta(meta)?;
        if let Some(id) = core {
            self.wal.commit(id)?;
        }
        Ok(())
    }

    fn append_entries<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let state = self.wal.log_state();
        let purged = state.purged.map(|p| p.index);
        // Entries at or below the purge point are already covered by a snapshot: drop them
        // (openraft's suite re-appends such entries after `get_initial_state` purged them).
        let batch = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.get_log_id().index > p))
            .map(|e| Ok((core_id(e.get_log_id()), encode(&e, "log entry")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        match (batch.first(), self.wal.first_index(), state.next_index()) {
            // Overwriting held entries: Raft replaces the conflicting suffix, atomically.
            (Some((first, _)), Some(held), Some(next))
                if first.index >= held && first.index < next =>
            {
                self.wal.replace_range(first.index, batch)?
            }
            _ => self.wal.append(batch)?,
        }
        self.wal.flush(move |r| {
            callback.log_io_completed(r.map_err(|e| StoreError::from(e).into_io()));
        })?;
        Ok(())
    }
}

impl<C> RaftLogReader<C> for ChunkwalLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        read_entries::<C>(&self.reader, &range, u64::MAX).map_err(StoreError::read_logs)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        read_entries::<C>(&self.reader, &(start..end), self.read_limit)
            .map_err(StoreError::read_logs)
    }
}

impl<C> RaftLogStorage<C> for ChunkwalLogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = ChunkwalLogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_log_id = self.last_log_id().map_err(StoreError::read_logs)?;
        Ok(LogState {
            last_purged_log_id: self.meta.purged.clone(),
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        ChunkwalLogReader::new(self.reader.clone(), self.read_limit)
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let r = async {
            self.wal.save_vote(encode(vote, "vote")?)?;
            self.flush_durable().await
        };
        r.await.map_err(StoreError::write_vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.wal
            .log_state()
            .vote
            .map(|b| decode(&b, "vote"))
            .transpose()
            .map_err(StoreError::read_vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.save_committed_id(committed)
            .map_err(StoreError::write_logs)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.meta.committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_entries(entries, callback)
            .map_err(StoreError::write_logs)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.wal
            .truncate(log_id.index)
            .map_err(|e| StoreError::from(e).write_logs())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.purge_upto(log_id).map_err(StoreError::write_logs)
    }
}
