//! d-engine's `LogStore` and `MetaStore` on the chunkwal async adapter.

use std::ops::RangeInclusive;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use d_engine::common::{Entry, LogId as DLogId};
use d_engine::{Error, HardState};

use super::codec::{decode_hard_state, encode_hard_state, to_d_error};
use super::entry::{decode_stored, entries_to_log, log_to_entry};
use crate::adapter::LogStore as Adapter;
use crate::LogId;

/// d-engine `LogStore` over chunkwal. Entries are stored under their `LogId` with a tagged
/// body that decodes by slicing (see `docs/durability.md`, d-engine); logs written with the
/// earlier whole-prost encoding still read.
#[derive(Debug, Clone)]
pub struct ChunkwalLogStore {
    pub(crate) store: Arc<Adapter>,
}

/// d-engine `MetaStore` over chunkwal: the hard state is the log's vote record, in the same
/// chunk files as the entries.
#[derive(Debug, Clone)]
pub struct ChunkwalMetaStore {
    pub(crate) store: Arc<Adapter>,
}

impl ChunkwalLogStore {
    /// The adapter underneath (for `durable_index`, stats, ...).
    pub fn adapter(&self) -> &Arc<Adapter> {
        &self.store
    }
}

#[async_trait]
impl d_engine::LogStore for ChunkwalLogStore {
    async fn persist_entries(&self, entries: Vec<Entry>) -> Result<(), Error> {
        self.store
            .persist_entries(entries_to_log(&entries))
            .await
            .map_err(to_d_error)
    }

    async fn entry(&self, index: u64) -> Result<Option<Entry>, Error> {
        let e = self.store.entry(index).await.map_err(to_d_error)?;
        Ok(e.map(log_to_entry).transpose()?)
    }

    fn get_entries(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>, Error> {
        // Decoded straight from the log's iterator into one vector: no intermediate
        // vector of stored entries.
        let mut out = Vec::new();
        let mut bad = None;
        self.store
            .visit_entries(range, |left, stored| {
                if bad.is_some() {
                    return;
                }
                match decode_stored(stored) {
                    Ok(e) => {
                        out.reserve(left);
                        out.push(e);
                    }
                    Err(e) => bad = Some(e),
                }
            })
            .map_err(to_d_error)?;
        match bad {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    async fn purge(&self, cutoff_index: DLogId) -> Result<(), Error> {
        // Index 0 is d-engine's "nothing": no entry has it.
        if cutoff_index.index == 0 {
            return Ok(());
        }
        let cutoff = LogId::new(cutoff_index.term, cutoff_index.index);
        self.store.purge(cutoff).await.map_err(to_d_error)
    }

    async fn truncate(&self, from_index: u64) -> Result<(), Error> {
        self.store.truncate(from_index).await.map_err(to_d_error)
    }

    async fn replace_range(&self, from_index: u64, new_entries: Vec<Entry>) -> Result<(), Error> {
        self.store
            .replace_range(from_index, entries_to_log(&new_entries))
            .await
            .map_err(to_d_error)
    }

    fn is_write_durable(&self) -> bool {
        self.store.is_write_durable()
    }

    fn flush(&self) -> Result<(), Error> {
        self.store.flush().map_err(to_d_error)
    }

    async fn flush_async(&self) -> Result<(), Error> {
        self.store.flush_async().await.map_err(to_d_error)
    }

    async fn reset(&self) -> Result<(), Error> {
        self.store.reset().await.map_err(to_d_error)
    }

    fn last_index(&self) -> u64 {
        self.store.last_index()
    }

    fn load_purge_boundary(&self) -> Result<Option<DLogId>, Error> {
        let p = self.store.load_purge_boundary().map_err(to_d_error)?;
        Ok(p.map(|id| DLogId {
            term: id.term,
            index: id.index,
        }))
    }
}

#[async_trait]
impl d_engine::MetaStore for ChunkwalMetaStore {
    fn save_hard_state(&self, state: &HardState) -> Result<(), Error> {
        let bytes = Bytes::copy_from_slice(&encode_hard_state(state));
        self.store.save_vote(bytes).map_err(to_d_error)
    }

    fn load_hard_state(&self) -> Result<Option<HardState>, Error> {
        self.store
            .load_vote()
            .map(|v| decode_hard_state(&v))
            .transpose()
            .map_err(to_d_error)
    }

    fn flush(&self) -> Result<(), Error> {
        self.store.flush().map_err(to_d_error)
    }

    async fn flush_async(&self) -> Result<(), Error> {
        self.store.flush_async().await.map_err(to_d_error)
    }
}
