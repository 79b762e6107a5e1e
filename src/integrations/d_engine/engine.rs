//! `ChunkwalStorageEngine`: d-engine's `StorageEngine`, one chunkwal log for entries and
//! hard state.

use std::path::PathBuf;
use std::sync::Arc;

use super::stores::{ChunkwalLogStore, ChunkwalMetaStore};
use crate::adapter::{AdapterError, AdapterOptions, LogStore as Adapter};
use crate::Config;

/// d-engine storage engine on chunkwal. Log and meta stores share one log directory.
#[derive(Debug)]
pub struct ChunkwalStorageEngine {
    log: Arc<ChunkwalLogStore>,
    meta: Arc<ChunkwalMetaStore>,
}

impl ChunkwalStorageEngine {
    /// Open (or create) the log in `config.dir` with these adapter options.
    pub fn open(config: Config, opts: AdapterOptions) -> Result<Self, AdapterError> {
        let store = Arc::new(Adapter::open(config, opts)?);
        Ok(ChunkwalStorageEngine {
            log: Arc::new(ChunkwalLogStore {
                store: Arc::clone(&store),
            }),
            meta: Arc::new(ChunkwalMetaStore { store }),
        })
    }

    /// Open with the default configuration and DiskFirst + Immediate.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, AdapterError> {
        Self::open(Config::new(dir), AdapterOptions::default())
    }
}

impl d_engine::StorageEngine for ChunkwalStorageEngine {
    type LogStore = ChunkwalLogStore;
    type MetaStore = ChunkwalMetaStore;

    fn log_store(&self) -> Arc<Self::LogStore> {
        Arc::clone(&self.log)
    }

    fn meta_store(&self) -> Arc<Self::MetaStore> {
        Arc::clone(&self.meta)
    }
}
