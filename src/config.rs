//! Configuration with documented defaults.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// How open treats a damaged log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Default. Cut a torn tail off the last chunk (bytes no sync ever covered) and go on.
    /// Damage anywhere else, or damage that later records prove was synced, is a
    /// [`Error::Corruption`].
    #[default]
    TolerateTornTail,
    /// Any damage, including a torn tail, is an error, and no record is changed. (Leftover
    /// temporary chunk files are still removed, and a short newest chunk is re-extended.)
    Strict,
}

/// Hook called before every msync of chunk data; returning an error simulates a failed
/// sync, and it may sleep to simulate a slow one. For fault-injection tests.
pub type SyncHook = Arc<dyn Fn(&std::path::Path) -> io::Result<()> + Send + Sync>;

/// Hook told of every byte range a sync covered: `(chunk path, start, end)`.
/// Used by power-loss simulation tests to rebuild a crash image.
pub type SyncRecorder = Arc<dyn Fn(&std::path::Path, u64, u64) + Send + Sync>;

/// Hook called at named points of the write path (for example `"write.after_put"`); it may
/// panic to simulate a bug there. For fault-injection tests (feature `testing`).
#[cfg(feature = "testing")]
pub type FailPoint = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Configuration for [`crate::Wal::open`].
#[derive(Clone)]
pub struct Config {
    /// Directory holding the chunk files.
    pub dir: PathBuf,
    /// Size of each preallocated chunk file. Default 64 MiB; 64 KiB to 1 GiB.
    pub chunk_size: u64,
    /// Payload cache bound in entries. Default 65 536.
    pub cache_max_items: usize,
    /// Payload cache bound in payload bytes. Default 64 MiB.
    pub cache_max_bytes: usize,
    /// Most flush requests merged into one sync (group commit). Default 1024.
    pub flush_batch_max: usize,
    /// What open does with a damaged log. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery_mode: RecoveryMode,
    /// Create the directory when missing. Default true.
    pub create_if_missing: bool,
    /// Purged chunk files kept as spares and reused for new chunks (recycling), at most.
    /// Default 4 (256 MiB of disk at the default chunk size); 0 removes purged chunks.
    /// A recycled chunk's blocks are already written, so syncs into it convert no extent
    /// (see `docs/tuning.md`).
    pub recycle_chunks: usize,
    /// Backpressure: when more than this many bytes of the active chunk are written but not
    /// yet durable, [`crate::Wal::append`] syncs (or waits for the sync running) before it
    /// returns. Default `None`: the writer never waits for the flush thread, and memory
    /// and the page cache bound how far it can run ahead.
    pub max_unsynced_bytes: Option<u64>,
    /// Log a `tracing` warning (and, with feature `metrics`, count
    /// `chunkwal_slow_syncs_total`) for every sync that takes longer than this. Default
    /// 1 s, etcd's threshold for its slow-fdatasync warning: a sync that slow stalls
    /// acknowledgements for as long as a typical Raft election timeout. `None`: never warn.
    pub slow_sync_warn: Option<Duration>,
    /// Fault injection: called before each msync of chunk data (feature `testing`).
    #[cfg(feature = "testing")]
    pub sync_hook: Option<SyncHook>,
    /// Observation: called after each successful msync with the range it covered (feature
    /// `testing`).
    #[cfg(feature = "testing")]
    pub sync_recorder: Option<SyncRecorder>,
    /// Observation: told of every completed create, rename, unlink and sync in the log
    /// directory, in order (feature `testing`).
    #[cfg(feature = "testing")]
    pub fs_observer: Option<crate::chunk::FsObserver>,
    /// Fault injection at named points of the write path (feature `testing`).
    #[cfg(feature = "testing")]
    pub fail_point: Option<FailPoint>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dir", &self.dir)
            .field("chunk_size", &self.chunk_size)
            .field("cache_max_items", &self.cache_max_items)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("flush_batch_max", &self.flush_batch_max)
            .field("recovery_mode", &self.recovery_mode)
            .field("create_if_missing", &self.create_if_missing)
            .field("recycle_chunks", &self.recycle_chunks)
            .field("max_unsynced_bytes", &self.max_unsynced_bytes)
            .field("slow_sync_warn", &self.slow_sync_warn)
            .finish_non_exhaustive()
    }
}

/// Smallest accepted chunk size.
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
/// Largest accepted chunk size (offsets inside a chunk are 32-bit).
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;

impl Config {
    /// Defaults for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Config {
            dir: dir.into(),
            chunk_size: 64 << 20,
            cache_max_items: 65_536,
            cache_max_bytes: 64 << 20,
            flush_batch_max: 1024,
            recovery_mode: RecoveryMode::default(),
            create_if_missing: true,
            recycle_chunks: 4,
            max_unsynced_bytes: None,
            slow_sync_warn: Some(Duration::from_secs(1)),
            #[cfg(feature = "testing")]
            sync_hook: None,
            #[cfg(feature = "testing")]
            sync_recorder: None,
            #[cfg(feature = "testing")]
            fs_observer: None,
            #[cfg(feature = "testing")]
            fail_point: None,
        }
    }

    /// Set the chunk size.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Set both cache bounds.
    pub fn cache(mut self, max_items: usize, max_bytes: usize) -> Self {
        self.cache_max_items = max_items;
        self.cache_max_bytes = max_bytes;
        self
    }

    /// Set how many purged chunk files are kept for reuse (0: none).
    pub fn recycle_chunks(mut self, spares: usize) -> Self {
        self.recycle_chunks = spares;
        self
    }

    /// Set the backpressure bound (see [`Config::max_unsynced_bytes`]).
    pub fn max_unsynced_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_unsynced_bytes = bytes;
        self
    }

    /// Set the slow-sync warning threshold (see [`Config::slow_sync_warn`]; `None`: off).
    pub fn slow_sync_warn(mut self, threshold: Option<Duration>) -> Self {
        self.slow_sync_warn = threshold;
        self
    }

    /// Set the recovery mode.
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// The log directory's files, with this config's test hooks.
    pub(crate) fn files(&self) -> crate::chunk::Files {
        #[cfg(feature = "testing")]
        let hooks = (
            self.sync_hook.clone(),
            self.sync_recorder.clone(),
            self.fs_observer.clone(),
        );
        #[cfg(not(feature = "testing"))]
        let hooks = (None, None, None);
        crate::chunk::Files::new(self.dir.clone(), hooks.0, hooks.1, hooks.2)
    }

    /// Run the fail point `name`, if a test set one.
    pub(crate) fn fail_point(&self, name: &'static str) {
        #[cfg(feature = "testing")]
        if let Some(f) = &self.fail_point {
            f(name);
        }
        #[cfg(not(feature = "testing"))]
        let _ = name;
    }

    /// Check every bound.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(Error::InvalidConfig {
                field: "chunk_size",
                reason: "must be between 64 KiB and 1 GiB",
            });
        }
        if self.chunk_size % 4096 != 0 {
            return Err(Error::InvalidConfig {
                field: "chunk_size",
                reason: "must be a multiple of 4096",
            });
        }
        if self.flush_batch_max == 0 {
            return Err(Error::InvalidConfig {
                field: "flush_batch_max",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}
