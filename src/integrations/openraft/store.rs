//! `ChunkwalLogStore`: openraft's `RaftLogStorage` over a chunkwal [`Wal`], or over one
//! group of a [`Wal`] that several Raft groups share.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use ::openraft::storage::{LogFlushed, RaftLogStorage};
use ::openraft::{
    LogId, LogState, OptionalSend, OptionalSync, RaftLogId, RaftLogReader, RaftTypeConfig,
    StorageError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{core_id, decode, encode};
use super::error::StoreError;
use super::meta::Meta;
use super::reader::{decode_entry, read_entries, ChunkwalLogReader, Source, DEFAULT_READ_LIMIT};
use crate::{Config, Group, GroupId, Wal};

/// openraft log storage backed by one group of a chunkwal [`Wal`], generic over the type
/// config `C` and over how the store holds the log, `W`: a [`Wal`] of its own (the default,
/// built by [`open`](Self::open) and [`new`](Self::new), on the log's default group) or any
/// `W: Borrow<Wal>` such as an `Arc<Wal>` shared by many groups ([`open_group`](Self::open_group);
/// [`ChunkwalGroupStore`] names that type).
///
/// - Entries are stored whole, serialized with postcard, at their log index; the core's
///   `LogId` is `{term: leader_id.term, index}`.
/// - `append` makes entries readable on return and reports durability from chunkwal's flush
///   thread (group commit), so openraft pipelines appends without waiting for `msync`.
///   Entries at or below the purge point are skipped; entries overlapping held ones replace
///   the suffix from their first index (one crash-atomic `replace_range`).
/// - `save_vote` returns only once the vote is durable.
/// - The full openraft purge point and committed id live in a small metadata record (the
///   user data slot of the store's group, which this store owns); the core also records both
///   as `{term, index}`.
/// - Every operation goes to the store's group only (`Wal::group`); the other groups of a
///   shared log are never touched, and a flush is the shared log's one group commit, which
///   covers the writes of every group. At most one store may serve a group at a time.
///
/// ```no_run
/// use std::io::Cursor; // the default `SnapshotData` of `declare_raft_types!`
/// use chunkwal::integrations::openraft::ChunkwalLogStore;
/// openraft::declare_raft_types!(pub TypeConfig:);
/// let store = ChunkwalLogStore::<TypeConfig>::open(chunkwal::Config::new("/tmp/raft-log"))?;
/// // Raft::new(node_id, config, network, store, state_machine).await?
/// # Ok::<(), chunkwal::integrations::openraft::StoreError>(())
/// ```
///
/// Many Raft groups on one log (one sync for all of them), one store per group:
///
/// ```no_run
/// use std::io::Cursor;
/// use std::sync::Arc;
/// use chunkwal::integrations::openraft::ChunkwalGroupStore;
/// use chunkwal::{GroupId, Wal};
/// openraft::declare_raft_types!(pub TypeConfig:);
/// let wal = Arc::new(Wal::open(chunkwal::Config::new("/tmp/raft-log"))?);
/// let stores = (1..=16)
///     .map(|g| ChunkwalGroupStore::<TypeConfig>::open_group(Arc::clone(&wal), GroupId(g)))
///     .collect::<Result<Vec<_>, _>>()?;
/// // One Raft::new(node_id, config, network, store, state_machine) per group.
/// # Ok::<(), chunkwal::integrations::openraft::StoreError>(())
/// ```
pub struct ChunkwalLogStore<C: RaftTypeConfig, W = Wal> {
    wal: W,
    group: GroupId,
    reader: Source,
    read_limit: u64,
    meta: Meta<C::NodeId>,
}

/// A store that is one group of a log shared through an `Arc` (see
/// [`ChunkwalLogStore::open_group`]).
pub type ChunkwalGroupStore<C> = ChunkwalLogStore<C, Arc<Wal>>;

impl<C: RaftTypeConfig, W: Borrow<Wal>> Debug for ChunkwalLogStore<C, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkwalLogStore")
            .field("wal", self.wal.borrow())
            .field("group", &self.group)
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
        Self::open_group(wal, GroupId::DEFAULT)
    }
}

impl<C, W> ChunkwalLogStore<C, W>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    W: Borrow<Wal>,
{
    /// The store of `group` of the log `wal` (typically an `Arc<Wal>` shared with the stores
    /// of other groups), finishing a purge of that group a crash interrupted. The group is
    /// created by its first write; a group never written starts empty. Only one store may
    /// serve a group at a time (the store caches the group's metadata). A non-default
    /// group's reads have no payload cache (the core keeps none for them): they come from
    /// the map, CRC-checked.
    pub fn open_group(wal: W, group: GroupId) -> Result<Self, StoreError> {
        let (meta, reader) = {
            let log: &Wal = wal.borrow();
            let handle = log.group(group);
            let meta = Meta::load(&handle)?;
            meta.reconcile(&handle)?;
            (meta, Source::new(log.reader(), group))
        };
        Ok(ChunkwalLogStore {
            wal,
            group,
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

    /// The underlying log, e.g. for statistics (shared by every group of it).
    pub fn wal(&self) -> &Wal {
        self.wal.borrow()
    }

    /// The log group this store keeps its entries, vote and metadata in.
    pub fn group_id(&self) -> GroupId {
        self.group
    }

    /// Give back the underlying log (to close it and see the result): the [`Wal`] for a store
    /// from [`open`](ChunkwalLogStore::open) or [`new`](ChunkwalLogStore::new), the shared
    /// handle (e.g. the `Arc<Wal>`) for one from [`open_group`](Self::open_group).
    pub fn into_wal(self) -> W {
        self.wal
    }

    /// The handle on this store's group.
    fn log(&self) -> Group<'_> {
        self.wal.borrow().group(self.group)
    }

    /// Ask for a sync and wait, without blocking the async runtime, until it is done.
    async fn flush_durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.wal().flush(move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| StoreError::FlushDropped)??;
        Ok(())
    }

    /// The id of the last entry, or the purge point when every entry is purged.
    fn last_log_id(&self) -> Result<Option<LogId<C::NodeId>>, StoreError> {
        let state = self.log().log_state();
        let Some(last) = state.last else {
            return Ok(None);
        };
        if self.reader.first_index().is_some() {
            if let Some((id, payload)) = self.reader.entry(last.index)? {
                let entry = decode_entry::<C>(id.index, &payload)?;
                return Ok(Some(entry.get_log_id().clone()));
            }
        }
        Ok(self.meta.purged.clone())
    }

    fn save_meta(&mut self, meta: Meta<C::NodeId>) -> Result<(), StoreError> {
        meta.save(&self.log())?;
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
        self.log().purge(core)?;
        Ok(())
    }

    fn save_committed_id(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StoreError> {
        let core = committed.as_ref().map(core_id);
        let mut meta = self.meta.clone();
        meta.committed = committed;
        self.save_meta(meta)?;
        if let Some(id) = core {
            self.log().commit(id)?;
        }
        Ok(())
    }

    fn append_entries<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let log = self.log();
        let state = log.log_state();
        let purged = state.purged.map(|p| p.index);
        // Entries at or below the purge point are already covered by a snapshot: drop them
        // (openraft's suite re-appends such entries after `get_initial_state` purged them).
        let batch = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.get_log_id().index > p))
            .map(|e| Ok((core_id(e.get_log_id()), encode(&e, "log entry")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        match (batch.first(), log.first_index(), state.next_index()) {
            // Overwriting held entries: Raft replaces the conflicting suffix, atomically.
            (Some((first, _)), Some(held), Some(next))
                if first.index >= held && first.index < next =>
            {
                log.replace_range(first.index, batch)?
            }
            _ => log.append(batch)?,
        }
        self.wal().flush(move |r| {
            callback.log_io_completed(r.map_err(|e| StoreError::from(e).into_io()));
        })?;
        Ok(())
    }
}

impl<C, W> RaftLogReader<C> for ChunkwalLogStore<C, W>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    W: Borrow<Wal> + OptionalSend + OptionalSync + 'static,
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

impl<C, W> RaftLogStorage<C> for ChunkwalLogStore<C, W>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    W: Borrow<Wal> + OptionalSend + OptionalSync + 'static,
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
            self.log().save_vote(encode(vote, "vote")?)?;
            self.flush_durable().await
        };
        r.await.map_err(StoreError::write_vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.log()
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
        self.log()
            .truncate(log_id.index)
            .map_err(|e| StoreError::from(e).write_logs())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.purge_upto(log_id).map_err(StoreError::write_logs)
    }
}
