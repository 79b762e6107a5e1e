//! Configuration with documented defaults.

#[cfg(feature = "testing")]
use std::io;
use std::path::PathBuf;
#[cfg(feature = "testing")]
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConfigError, Result};

/// How open treats a damaged log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Default. Cut a torn tail off the last chunk (bytes no sync ever covered) and go on.
    /// Damage anywhere else, or damage that later records prove was synced, is a
    /// [`crate::Error::Corruption`].
    #[default]
    TolerateTornTail,
    /// Any damage, including a torn tail, is an error, and no record is changed. (Leftover
    /// temporary chunk files are still removed, and a short newest chunk is re-extended.)
    Strict,
}

/// How much of a log open checks before it returns (see `docs/durability.md`, "Verification
/// at open").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum VerifyOnOpen {
    /// Open reads every record of every chunk and checks its CRC, as format 1 always did:
    /// open time grows with the number of records.
    Full,
    /// Default. Sealed chunks that end in a valid seal-time index (format 2) are replayed
    /// from that index alone, and a background thread checks their records afterwards
    /// ([`crate::Wal::verification`]); the newest chunk and any chunk without a valid index
    /// are read record by record as in [`VerifyOnOpen::Full`]. Every read still checks the
    /// CRC and the identity of the record it returns, so a damaged sealed record is a
    /// [`crate::Error::Corruption`] when read, never wrong data.
    #[default]
    Lazy,
}

/// Whether appended entries are stored compressed. See `docs/tuning.md` (when to turn it
/// on) and `docs/format.md` (the Batch record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Default: every entry is its own record, read zero-copy from the map.
    #[default]
    None,
    /// LZ4 (feature `compression`; without it [`Config::validate`] refuses this with
    /// [`ConfigError::CompressionUnavailable`]). An append's run of consecutive entries of
    /// one term that holds at least `min_batch_bytes` of payload is written as one Batch
    /// record when that is at least 1/8 smaller than the entry records it replaces (chunks
    /// of format v2 only; a v1 chunk still being appended to takes plain entries).
    ///
    /// Reading a member decompresses the whole batch once and puts every member in the
    /// payload cache: such entries lose zero-copy reads from the map.
    Lz4 {
        /// Payload bytes a run needs before it is compressed.
        min_batch_bytes: usize,
    },
}

impl Compression {
    /// [`Compression::Lz4`] with this threshold.
    pub fn lz4(min_batch_bytes: usize) -> Self {
        Compression::Lz4 { min_batch_bytes }
    }
}

/// Hook called before every msync of chunk data; returning an error simulates a failed
/// sync, and it may sleep to simulate a slow one. For fault-injection tests (feature
/// `testing`).
#[cfg(feature = "testing")]
pub type SyncHook = Arc<dyn Fn(&std::path::Path) -> io::Result<()> + Send + Sync>;

/// Hook told of every byte range a sync covered: `(chunk path, start, end)`.
/// Used by power-loss simulation tests to rebuild a crash image (feature `testing`).
#[cfg(feature = "testing")]
pub type SyncRecorder = Arc<dyn Fn(&std::path::Path, u64, u64) + Send + Sync>;

/// Hook called at named points of the write path (for example `"write.after_put"`); it may
/// panic to simulate a bug there. For fault-injection tests (feature `testing`).
#[cfg(feature = "testing")]
pub type FailPoint = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Configuration for [`crate::Wal::open`].
///
/// Build one with [`Config::new`] and the builder methods (one per knob); the fields stay
/// public for reading (and assigning), but the struct is `#[non_exhaustive]`, so a struct
/// literal outside chunkwal does not compile and new knobs are not breaking changes.
/// [`Config::validate`] (run by open) checks every rule and names the broken one in a
/// [`ConfigError`].
///
/// ```
/// use chunkwal::{Config, RecoveryMode};
/// let dir = tempfile::tempdir()?;
/// let config = Config::new(dir.path())
///     .chunk_size(16 << 20)
///     .cache_max_items(10_000)
///     .cache_max_bytes(32 << 20)
///     .flush_batch_max(256)
///     .recovery_mode(RecoveryMode::Strict)
///     .max_unsynced_bytes(Some(4 << 20));
/// config.validate()?;
/// let wal = chunkwal::Wal::open(config)?;
/// # drop(wal);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Directory holding the chunk files.
    pub dir: PathBuf,
    /// Size of each preallocated chunk file. Default 64 MiB; 64 KiB to 1 GiB.
    pub chunk_size: u64,
    /// Payload cache bound in entries. Default 65 536; 0 disables the cache.
    pub cache_max_items: usize,
    /// Payload cache bound in payload bytes. Default 64 MiB; 0 disables the cache.
    pub cache_max_bytes: usize,
    /// Most flush requests merged into one sync (group commit). Default 1024; at least 1.
    pub flush_batch_max: usize,
    /// What open does with a damaged log. Default [`RecoveryMode::TolerateTornTail`].
    pub recovery_mode: RecoveryMode,
    /// How much open checks before it returns. Default [`VerifyOnOpen::Lazy`].
    pub verify_on_open: VerifyOnOpen,
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
    /// and the page cache bound how far it can run ahead. `Some(n)` needs
    /// `1 <= n < chunk_size` (only the active chunk's bytes are counted).
    pub max_unsynced_bytes: Option<u64>,
    /// Rewrite forward (multi-group logs): once the chunk files take more than this many
    /// bytes, the live entries of small groups that keep the oldest chunks alive are
    /// written again at the head, so those chunks can go (see `Wal::pinning_groups` and
    /// `docs/durability.md`). Default `None`: never. `Some(n)` needs `n >= 2 * chunk_size`.
    pub rewrite_threshold: Option<u64>,
    /// Log a `tracing` warning (and, with feature `metrics`, count
    /// `chunkwal_slow_syncs_total`) for every sync that takes longer than this. Default
    /// 1 s, etcd's threshold for its slow-fdatasync warning: a sync that slow stalls
    /// acknowledgements for as long as a typical Raft election timeout. `None`: never warn.
    pub slow_sync_warn: Option<Duration>,
    /// Batch compression of appended entries. Default [`Compression::None`].
    pub compression: Compression,
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
            .field("verify_on_open", &self.verify_on_open)
            .field("create_if_missing", &self.create_if_missing)
            .field("recycle_chunks", &self.recycle_chunks)
            .field("max_unsynced_bytes", &self.max_unsynced_bytes)
            .field("rewrite_threshold", &self.rewrite_threshold)
            .field("slow_sync_warn", &self.slow_sync_warn)
            .field("compression", &self.compression)
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
            verify_on_open: VerifyOnOpen::default(),
            create_if_missing: true,
            recycle_chunks: 4,
            max_unsynced_bytes: None,
            rewrite_threshold: None,
            slow_sync_warn: Some(Duration::from_secs(1)),
            compression: Compression::None,
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

    /// Set batch compression (see [`Compression`]).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Set the chunk size (see [`Config::chunk_size`](Config#structfield.chunk_size)).
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Set both cache bounds (entries and payload bytes).
    pub fn cache(mut self, max_items: usize, max_bytes: usize) -> Self {
        self.cache_max_items = max_items;
        self.cache_max_bytes = max_bytes;
        self
    }

    /// Set the cache bound in entries (0 disables the cache).
    pub fn cache_max_items(mut self, max_items: usize) -> Self {
        self.cache_max_items = max_items;
        self
    }

    /// Set the cache bound in payload bytes (0 disables the cache).
    pub fn cache_max_bytes(mut self, max_bytes: usize) -> Self {
        self.cache_max_bytes = max_bytes;
        self
    }

    /// Set the most flush requests merged into one sync (at least 1).
    pub fn flush_batch_max(mut self, requests: usize) -> Self {
        self.flush_batch_max = requests;
        self
    }

    /// Set whether open creates a missing directory.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Set how many purged chunk files are kept for reuse (0: none).
    pub fn recycle_chunks(mut self, spares: usize) -> Self {
        self.recycle_chunks = spares;
        self
    }

    /// Set the backpressure bound (see
    /// [`Config::max_unsynced_bytes`](Config#structfield.max_unsynced_bytes)).
    pub fn max_unsynced_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_unsynced_bytes = bytes;
        self
    }

    /// Set the disk use past which small lagging groups are rewritten forward (see
    /// [`Config::rewrite_threshold`](Config#structfield.rewrite_threshold)).
    pub fn rewrite_threshold(mut self, bytes: Option<u64>) -> Self {
        self.rewrite_threshold = bytes;
        self
    }

    /// Set the slow-sync warning threshold (see [`Config::slow_sync_warn`]; `None`: off).
    pub fn slow_sync_warn(mut self, threshold: Option<Duration>) -> Self {
        self.slow_sync_warn = threshold;
        self
    }

    /// Set how much open checks (see [`VerifyOnOpen`]).
    pub fn verify_on_open(mut self, mode: VerifyOnOpen) -> Self {
        self.verify_on_open = mode;
        self
    }

    /// Set the recovery mode.
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Set the sync fault-injection hook (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn sync_hook(mut self, hook: SyncHook) -> Self {
        self.sync_hook = Some(hook);
        self
    }

    /// Set the synced-range observer (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn sync_recorder(mut self, recorder: SyncRecorder) -> Self {
        self.sync_recorder = Some(recorder);
        self
    }

    /// Set the file-system operation observer (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn fs_observer(mut self, observer: crate::chunk::FsObserver) -> Self {
        self.fs_observer = Some(observer);
        self
    }

    /// Set the write-path fail point (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn fail_point(mut self, hook: FailPoint) -> Self {
        self.fail_point = Some(hook);
        self
    }

    /// The log directory's files, with this config's test hooks.
    pub(crate) fn files(&self) -> crate::chunk::Files {
        let hooks = crate::chunk::Hooks {
            #[cfg(feature = "testing")]
            sync: self.sync_hook.clone(),
            #[cfg(feature = "testing")]
            recorder: self.sync_recorder.clone(),
            #[cfg(feature = "testing")]
            observer: self.fs_observer.clone(),
        };
        crate::chunk::Files::new(self.dir.clone(), hooks)
    }

    /// Run the fail point `name`, if a test set one.
    pub(crate) fn run_fail_point(&self, name: &'static str) {
        #[cfg(feature = "testing")]
        if let Some(f) = &self.fail_point {
            f(name);
        }
        #[cfg(not(feature = "testing"))]
        let _ = name;
    }

    /// Check every rule; the first one broken is named in the error
    /// ([`crate::Error::InvalidConfig`]).
    ///
    /// ```
    /// use chunkwal::{Config, ConfigError, Error};
    /// let err = Config::new("/tmp/x").chunk_size(1000).validate().unwrap_err();
    /// assert!(matches!(
    ///     err,
    ///     Error::InvalidConfig(ConfigError::ChunkSizeOutOfRange { value: 1000, .. })
    /// ));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Into::into)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ConfigError::ChunkSizeOutOfRange {
                value: self.chunk_size,
                min: MIN_CHUNK_SIZE,
                max: MAX_CHUNK_SIZE,
            });
        }
        if self.chunk_size % CHUNK_ALIGN != 0 {
            return Err(ConfigError::ChunkSizeUnaligned {
                value: self.chunk_size,
                align: CHUNK_ALIGN,
            });
        }
        if self.flush_batch_max == 0 {
            return Err(ConfigError::FlushBatchMaxZero);
        }
        match self.max_unsynced_bytes {
            Some(0) => return Err(ConfigError::MaxUnsyncedBytesZero),
            Some(value) if value >= self.chunk_size => {
                return Err(ConfigError::MaxUnsyncedBytesTooLarge {
                    value,
                    chunk_size: self.chunk_size,
                })
            }
            _ => {}
        }
        if let Some(value) = self.rewrite_threshold {
            if value < 2 * self.chunk_size {
                return Err(ConfigError::RewriteThresholdTooSmall {
                    value,
                    chunk_size: self.chunk_size,
                });
            }
        }
        if matches!(self.compression, Compression::Lz4 { .. }) && !cfg!(feature = "compression") {
            return Err(ConfigError::CompressionUnavailable {
                codec: "lz4",
                feature: "compression",
            });
        }
        Ok(())
    }
}

/// A chunk size must be a multiple of this.
const CHUNK_ALIGN: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(c: Config) -> ConfigError {
        match c.validate() {
            Err(crate::Error::InvalidConfig(e)) => e,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::new("d").validate().unwrap();
        Config::new("d").cache(0, 0).validate().unwrap();
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let c = || Config::new("d");
        assert_eq!(
            broken(c().chunk_size(MIN_CHUNK_SIZE - 4096)),
            ConfigError::ChunkSizeOutOfRange {
                value: MIN_CHUNK_SIZE - 4096,
                min: MIN_CHUNK_SIZE,
                max: MAX_CHUNK_SIZE
            }
        );
        assert!(matches!(
            broken(c().chunk_size(MAX_CHUNK_SIZE + 4096)),
            ConfigError::ChunkSizeOutOfRange { .. }
        ));
        assert_eq!(
            broken(c().chunk_size(MIN_CHUNK_SIZE + 1)),
            ConfigError::ChunkSizeUnaligned {
                value: MIN_CHUNK_SIZE + 1,
                align: 4096
            }
        );
        assert_eq!(
            broken(c().flush_batch_max(0)),
            ConfigError::FlushBatchMaxZero
        );
        assert_eq!(
            broken(c().max_unsynced_bytes(Some(0))),
            ConfigError::MaxUnsyncedBytesZero
        );
        assert_eq!(
            broken(c().chunk_size(1 << 20).max_unsynced_bytes(Some(1 << 20))),
            ConfigError::MaxUnsyncedBytesTooLarge {
                value: 1 << 20,
                chunk_size: 1 << 20
            }
        );
        c().chunk_size(1 << 20)
            .max_unsynced_bytes(Some((1 << 20) - 1))
            .validate()
            .unwrap();
    }

    #[test]
    fn builders_set_their_field() {
        let c = Config::new("d")
            .cache_max_items(3)
            .cache_max_bytes(4)
            .flush_batch_max(5)
            .create_if_missing(false)
            .recycle_chunks(6);
        assert_eq!(
            (
                c.cache_max_items,
                c.cache_max_bytes,
                c.flush_batch_max,
                c.create_if_missing,
                c.recycle_chunks
            ),
            (3, 4, 5, false, 6)
        );
    }
}
