//! Chunk file lifecycle in one place: prepare (create), install (rename), remove, and every
//! sync of chunk data or of the directory. Each completed operation is reported to the
//! test observer, so power-loss tests can rebuild what a crash may keep.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::file::{chunk_path, new_header, prepare_chunk, sync_dir, tmp_path};
use super::mmap::{Region, RegionWriter};
use super::recycle::{free_path, reuse_as, Pool};
#[cfg(feature = "testing")]
use crate::config::{SyncHook, SyncRecorder};
use crate::error::{Error, Result};
use crate::format::ChunkHeader;
use crate::observe::Metrics;

/// A chunk prepared by [`Files::create`]: preallocated (or recycled), header synced, mapped
/// for writing, still under its temporary name (`tmp_path`) until [`Files::install`].
pub struct PreparedChunk {
    /// The chunk's sequence number.
    pub seq: u64,
    /// Its header, as written.
    pub header: ChunkHeader,
    /// The writable mapping, cursor at 0.
    pub w: RegionWriter,
}

/// A completed file-system operation on the log directory, as the observer hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsEvent<'a> {
    /// A file was created (durable only once the directory is synced after it).
    Create {
        /// The new file.
        path: &'a Path,
    },
    /// A file's data (everything written through `write`) was fsynced.
    SyncFile {
        /// The file.
        path: &'a Path,
    },
    /// `[start, end)` of a chunk's mapping was synced (`msync(MS_SYNC)` on Linux, a sync of
    /// the whole file on the portable path) and is durable with its present contents.
    SyncData {
        /// The chunk file (under its final name, even before it is installed).
        path: &'a Path,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A file was renamed (durable only once the directory is synced after it).
    Rename {
        /// Old name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// A file was removed (durable only once the directory is synced after it).
    Unlink {
        /// The removed file.
        path: &'a Path,
    },
    /// The directory was fsynced: every create, rename and unlink before it is durable.
    SyncDir {
        /// The directory.
        path: &'a Path,
    },
}

/// Hears of every completed file-system operation (feature `testing`).
#[cfg(feature = "testing")]
pub type FsObserver = Arc<dyn Fn(&FsEvent<'_>) + Send + Sync>;

/// Counts of the file-system work done on a log directory since it was opened.
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Completed syncs of chunk data (msync, or a file sync on the portable path).
    pub syncs: AtomicU64,
    /// Bytes those syncs covered (page-rounded ranges as asked, not what the kernel wrote).
    pub synced_bytes: AtomicU64,
    /// Completed directory fsyncs.
    pub dir_syncs: AtomicU64,
    /// Chunk files created new (preallocated: their blocks are unwritten extents).
    pub chunks_created: AtomicU64,
    /// Chunk files prepared from a recycled, purged chunk.
    pub chunks_recycled: AtomicU64,
}

impl IoCounters {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// The log directory's files: the only code that creates, renames, removes or syncs them
/// once a log is open.
#[derive(Clone)]
pub struct Files {
    dir: PathBuf,
    #[cfg(feature = "testing")]
    hooks: Hooks,
    io: Arc<IoCounters>,
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("dir", &self.dir).finish()
    }
}

/// The test hooks of a log's files (feature `testing`); without the feature it is empty
/// and the sync path checks nothing.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called before every msync of chunk data; an error fails the sync.
    #[cfg(feature = "testing")]
    pub sync: Option<SyncHook>,
    /// Told of every range a sync covered.
    #[cfg(feature = "testing")]
    pub recorder: Option<SyncRecorder>,
    /// Told of every completed file-system operation.
    #[cfg(feature = "testing")]
    pub observer: Option<FsObserver>,
}

impl Files {
    /// The files of `dir`, with the test hooks (empty without feature `testing`).
    pub fn new(dir: PathBuf, hooks: Hooks) -> Self {
        #[cfg(not(feature = "testing"))]
        let _ = hooks;
        Files {
            dir,
            #[cfg(feature = "testing")]
            hooks,
            io: Arc::default(),
            pool: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// The same files, recycling purged chunks into a pool of at most `keep` spares, which
    /// starts with the spares `found` (by old sequence number) at open.
    pub fn with_pool(mut self, keep: usize, found: &[u64]) -> Self {
        self.pool = Arc::new(Pool::new(keep, found));
        self
    }

    /// The same files, reporting to the log's `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The log's metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The I/O counters.
    pub fn io(&self) -> &Arc<IoCounters> {
        &self.io
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tell(&self, ev: FsEvent<'_>) {
        #[cfg(feature = "testing")]
        if let Some(o) = &self.hooks.observer {
            o(&ev);
        }
        #[cfg(not(feature = "testing"))]
        let _ = ev;
    }

    /// Prepare chunk `seq` as a temporary file: from a spare when the pool has a reusable
    /// one, else a new preallocated file (see [`prepare_chunk`]). Either way its header is
    /// synced, and nothing of the log changes until [`Files::install`].
    pub fn prepare(&self, seq: u64, size: u64) -> Result<(File, ChunkHeader, PathBuf)> {
        while let Some(old) = self.pool.take() {
            if let Some(done) = self.prepare_recycled(old, seq, size)? {
                return Ok(done);
            }
        }
        let (f, h, tmp) = prepare_chunk(&self.dir, seq, size)?;
        IoCounters::bump(&self.io.chunks_created, 1);
        self.metrics.chunk_prepared(false);
        self.tell(FsEvent::Create { path: &tmp });
        self.tell(FsEvent::SyncFile { path: &tmp });
        Ok((f, h, tmp))
    }

    /// Create chunk `seq` (see [`Files::prepare`]) and map it for writing: the one way a
    /// new chunk comes to be, for the writer's spare and for a log's first chunk. A failed
    /// mapping removes the temporary file.
    pub fn create(&self, seq: u64, size: u64) -> Result<PreparedChunk> {
        let (file, header, tmp) = self.prepare(seq, size)?;
        let path = chunk_path(&self.dir, seq);
        match Region::map_writable(&file, size as usize, &path) {
            Ok(w) => Ok(PreparedChunk { seq, header, w }),
            Err(e) => {
                let _ = self.remove(&tmp);
                Err(Error::io("map chunk", &path, e))
            }
        }
    }

    /// Turn spare `old` into prepared chunk `seq`; `None` (and the spare removed) if it
    /// turned out not to be reusable.
    fn prepare_recycled(
        &self,
        old: u64,
        seq: u64,
        size: u64,
    ) -> Result<Option<(File, ChunkHeader, PathBuf)>> {
        let (from, tmp) = (free_path(&self.dir, old), tmp_path(&self.dir, seq));
        match std::fs::rename(&from, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("recycle chunk", &from, e)),
        }
        self.tell(FsEvent::Rename {
            from: &from,
            to: &tmp,
        });
        let header = new_header(seq, size);
        let reused = reuse_as(&tmp, old, seq, size, header);
        match reused {
            Ok(Some(f)) => {
                IoCounters::bump(&self.io.chunks_recycled, 1);
                self.metrics.chunk_prepared(true);
                self.tell(FsEvent::SyncFile { path: &tmp });
                Ok(Some((f, header, tmp)))
            }
            Ok(None) => {
                tracing::debug!(old, "spare not reusable, removing it");
                self.remove(&tmp)
                    .map_err(|e| Error::io("remove spare chunk", &tmp, e))?;
                Ok(None)
            }
            Err(e) => {
                let _ = self.remove(&tmp);
                Err(e)
            }
        }
    }

    /// Retire purged chunk `seq`: rename it to its spare name if the pool has room (`true`),
    /// else remove it. The caller syncs the directory, then hands a renamed one to the pool
    /// with [`Files::keep_spare`].
    pub fn retire_chunk(&self, seq: u64) -> io::Result<bool> {
        let path = chunk_path(&self.dir, seq);
        if self.pool.has_room() {
            let to = free_path(&self.dir, seq);
            std::fs::rename(&path, &to)?;
            self.tell(FsEvent::Rename {
                from: &path,
                to: &to,
            });
            return Ok(true);
        }
        self.remove(&path).map(|()| false)
    }

    /// Make retired chunk `seq` (renamed to its spare name, and the directory synced since),
    /// whose mapping was `region`, available for reuse.
    ///
    /// Only once the rename is durable: until then a power loss may undo it, and a spare
    /// already rewritten as a new chunk (header, records) would be back under its old chunk
    /// name, which open refuses (`SeqMismatch`, or records of another chunk inside a sealed
    /// one). Found by `power_loss_recycle`: a rotation right after a purge took the spare
    /// while the directory fsync after its rename was still running.
    pub fn keep_spare(&self, seq: u64, region: std::sync::Weak<Region>) {
        self.pool.push(seq, region);
    }

    /// Rename prepared chunk `seq` into place, then fsync the directory.
    pub fn install(&self, seq: u64) -> Result<()> {
        let (tmp, path) = (tmp_path(&self.dir, seq), chunk_path(&self.dir, seq));
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("install chunk", &path, e))?;
        self.tell(FsEvent::Rename {
            from: &tmp,
            to: &path,
        });
        self.sync_dir()
    }

    /// Remove a file of the log directory (the caller syncs the directory after).
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        self.tell(FsEvent::Unlink { path });
        Ok(())
    }

    /// Remove leftover files (unused spares, a blank newest chunk) at open, then fsync the
    /// directory.
    pub fn remove_leftovers(&self, paths: &[PathBuf]) -> Result<()> {
        for p in paths {
            tracing::warn!(path = %p.display(), "removing leftover chunk file");
            self.remove(p)
                .map_err(|e| Error::io("remove leftover chunk", p, e))?;
        }
        if !paths.is_empty() {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// fsync the directory.
    pub fn sync_dir(&self) -> Result<()> {
        sync_dir(&self.dir)?;
        IoCounters::bump(&self.io.dir_syncs, 1);
        self.tell(FsEvent::SyncDir { path: &self.dir });
        Ok(())
    }

    /// Sync `[start, end)` of `region` ([`Region::sync_range`]): the fault hook first, the
    /// recorders after success.
    /// Only `[start, durable_to)` is reported as made durable: bytes past `durable_to` were
    /// synced as they are (zeros over a cut tail, at open) and are overwritten later, so no
    /// observer may take them as covering what is written there afterwards.
    pub fn sync_data(
        &self,
        region: &Region,
        start: usize,
        end: usize,
        durable_to: usize,
    ) -> io::Result<()> {
        if end <= start {
            return Ok(());
        }
        #[cfg(feature = "testing")]
        if let Some(h) = &self.hooks.sync {
            h(region.path())?;
        }
        region.sync_range(start, end - start)?;
        IoCounters::bump(&self.io.syncs, 1);
        IoCounters::bump(&self.io.synced_bytes, (end - start) as u64);
        let (start, end) = (start as u64, end.min(durable_to).max(start) as u64);
        #[cfg(feature = "testing")]
        if let Some(r) = &self.hooks.recorder {
            r(region.path(), start, end);
        }
        self.tell(FsEvent::SyncData {
            path: region.path(),
            start,
            end,
        });
        Ok(())
    }
}
