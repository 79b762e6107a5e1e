//! Errors of the openraft store and their mapping onto openraft's `StorageError`.

use ::openraft::{AnyError, NodeId, StorageError, StorageIOError};

/// What went wrong inside [`ChunkwalLogStore`](super::ChunkwalLogStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying log failed.
    #[error(transparent)]
    Wal(#[from] crate::Error),
    /// A value could not be serialized.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The codec error.
        source: postcard::Error,
    },
    /// Stored bytes could not be deserialized.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The codec error.
        source: postcard::Error,
    },
    /// An entry's own log id does not match the slot it is stored in.
    #[error("entry stored at index {index} carries index {found}")]
    EntryMismatch {
        /// The index the log holds the entry at.
        index: u64,
        /// The index inside the serialized entry.
        found: u64,
    },
    /// The store's metadata record has a version this build does not know.
    #[error("unknown openraft metadata version {version}")]
    MetaVersion {
        /// The version byte found.
        version: u8,
    },
    /// The core log was purged further than the store recorded, so the purged openraft log
    /// id cannot be rebuilt (the directory was modified by something other than this store).
    #[error("log purged up to index {core} but the store recorded {recorded:?}")]
    PurgeAhead {
        /// The core log's purge index.
        core: u64,
        /// The purge index the store recorded.
        recorded: Option<u64>,
    },
    /// The flush worker stopped before reporting a result.
    #[error("flush worker dropped the flush callback")]
    FlushDropped,
}

impl StoreError {
    /// As an `io::Error`, for openraft's `LogFlushed` callback.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    pub(crate) fn read_logs<NID: NodeId>(self) -> StorageError<NID> {
        StorageIOError::read_logs(AnyError::new(&self)).into()
    }

    pub(crate) fn write_logs<NID: NodeId>(self) -> StorageError<NID> {
        StorageIOError::write_logs(AnyError::new(&self)).into()
    }

    pub(crate) fn read_vote<NID: NodeId>(self) -> StorageError<NID> {
        StorageIOError::read_vote(AnyError::new(&self)).into()
    }

    pub(crate) fn write_vote<NID: NodeId>(self) -> StorageError<NID> {
        StorageIOError::write_vote(AnyError::new(&self)).into()
    }
}
