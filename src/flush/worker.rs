//! The flush thread: group commit over a crossbeam channel, in-order callbacks, poison on error.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::state::{DurableState, Poison};
use crate::chunk::{install_chunk, sync_dir, Region};
use crate::config::{SyncHook, SyncRecorder};
use crate::error::{Error, Result};

/// A completion callback; receives the outcome of the sync that covered its request.
pub type Callback = Box<dyn FnOnce(Result<()>) + Send>;

/// A byte range of one chunk to make durable.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    /// The chunk's sequence number.
    pub seq: u64,
    /// The chunk's mapping.
    pub region: Arc<Region>,
    /// First byte not yet synced.
    pub start: usize,
    /// One past the last byte to sync.
    pub end: usize,
}

/// Rename a prepared chunk file into place (then fsync the directory).
#[derive(Debug, Clone)]
pub struct Install {
    /// The log directory.
    pub dir: PathBuf,
    /// The prepared file.
    pub tmp: PathBuf,
    /// The chunk it becomes.
    pub seq: u64,
}

/// Work for the flush thread.
pub enum Job {
    /// Sync `targets`; then entries up to `last_index` (as of truncation generation `gen`)
    /// are durable; then call `callback`.
    Sync {
        /// Ranges to sync, oldest chunk first.
        targets: Vec<SyncTarget>,
        /// Last entry index written when the request was made.
        last_index: Option<u64>,
        /// Truncation generation when the request was made.
        gen: u64,
        /// Called with the result, in request order.
        callback: Option<Callback>,
        /// A rotation: once `targets` (the old chunk's unsynced rest) are synced, install the
        /// next chunk. Such a job always ends its group-commit batch, so syncs of the new
        /// chunk, queued after it, happen only once it is installed.
        install: Option<Install>,
    },
    /// Delete purged chunk files (after every earlier sync), then fsync the directory.
    Delete {
        /// The directory.
        dir: PathBuf,
        /// Files to remove.
        paths: Vec<PathBuf>,
    },
    /// Reply once everything queued before it is done.
    Barrier(Sender<()>),
}

/// The sender side plus the thread handle.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Queue into the worker; `None` after shutdown.
    pub tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queue a job; fails if the worker is gone.
    pub fn send(&self, job: Job) -> Result<()> {
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| Error::WorkerStopped),
            None => Err(Error::WorkerStopped),
        }
    }

    /// Stop accepting jobs and wait for the thread to finish the queue.
    pub fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    rx: Receiver<Job>,
    poison: Arc<Poison>,
    durable: Arc<DurableState>,
    batch_max: usize,
    hook: Option<SyncHook>,
    recorder: Option<SyncRecorder>,
}

/// Start the flush thread.
pub fn spawn(
    poison: Arc<Poison>,
    durable: Arc<DurableState>,
    batch_max: usize,
    hook: Option<SyncHook>,
    recorder: Option<SyncRecorder>,
) -> Result<WorkerHandle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let w = Worker {
        rx,
        poison,
        durable,
        batch_max,
        hook,
        recorder,
    };
    let thread = std::thread::Builder::new()
        .name("chunkwal-flush".into())
        .spawn(move || w.run())
        .map_err(|e| Error::io("spawn flush worker", "", e))?;
    Ok(WorkerHandle {
        tx: Some(tx),
        thread: Some(thread),
    })
}

impl Worker {
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < self.batch_max && !ends_batch(&batch) {
                match self.rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let mut slots: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
            let r = catch_unwind(AssertUnwindSafe(|| self.process(&mut slots)));
            if r.is_err() {
                self.poison
                    .poison("flush worker (panicked)", std::io::ErrorKind::Other);
            }
            // Whatever a panic left unanswered still gets an answer.
            for job in slots.iter_mut().filter_map(Option::take) {
                self.fail(job);
            }
        }
    }

    fn fail(&self, job: Job) {
        match job {
            Job::Sync {
                callback: Some(cb), ..
            } => cb(Err(self.poison.error())),
            Job::Barrier(tx) => {
                let _ = tx.send(());
            }
            _ => {}
        }
    }

    fn process(&self, slots: &mut [Option<Job>]) {
        if self.poison.is_set() {
            return; // every job is failed by the caller
        }
        // Group commit: merge every range of the batch, per chunk, oldest chunk first.
        let mut merged: BTreeMap<u64, SyncTarget> = BTreeMap::new();
        let mut mark: Option<(Option<u64>, u64)> = None;
        for job in slots.iter().flatten() {
            if let Job::Sync {
                targets,
                last_index,
                gen,
                ..
            } = job
            {
                for t in targets {
                    merged
                        .entry(t.seq)
                        .and_modify(|m| {
                            m.start = m.start.min(t.start);
                            m.end = m.end.max(t.end);
                        })
                        .or_insert_with(|| t.clone());
                }
                mark = Some((*last_index, *gen));
            }
        }
        let mut last_pos = None;
        for t in merged.values() {
            if let Err(e) = self.sync(t) {
                tracing::error!(path = %t.region.path().display(), error = %e, "msync failed");
                self.poison.poison("msync", e.kind());
                return;
            }
            last_pos = Some(DurableState::pack(t.seq, t.end));
        }
        // Only the last job of a batch can be a rotation (see `ends_batch`).
        if let Some(Some(Job::Sync {
            install: Some(i), ..
        })) = slots.last()
        {
            if let Err(e) = install_chunk(&i.dir, &i.tmp, i.seq) {
                tracing::error!(seq = i.seq, error = %e, "installing the next chunk failed");
                let kind = match &e {
                    Error::Io { source, .. } => source.kind(),
                    _ => std::io::ErrorKind::Other,
                };
                self.poison.poison("install chunk", kind);
                return;
            }
            self.durable.set_installed(i.seq);
        }
        if let Some((li, gen)) = mark {
            self.durable.advance(last_pos.unwrap_or(0), li, gen);
        }
        for slot in slots.iter_mut() {
            match slot.take() {
                Some(Job::Sync {
                    callback: Some(cb), ..
                }) => cb(Ok(())),
                Some(Job::Delete { dir, paths }) => delete(&dir, &paths),
                Some(Job::Barrier(tx)) => {
                    let _ = tx.send(());
                }
                _ => {}
            }
        }
    }

    fn sync(&self, t: &SyncTarget) -> std::io::Result<()> {
        sync_region(
            &t.region,
            t.start,
            t.end,
            self.hook.as_ref(),
            self.recorder.as_ref(),
        )
    }
}

/// A rotation's job closes its batch: the next chunk must be installed before any sync
/// of it.
fn ends_batch(batch: &[Job]) -> bool {
    matches!(
        batch.last(),
        Some(Job::Sync {
            install: Some(_),
            ..
        })
    )
}

/// msync `[start, end)` of `region`, running the fault hook first and the recorder after.
pub fn sync_region(
    region: &Region,
    start: usize,
    end: usize,
    hook: Option<&SyncHook>,
    recorder: Option<&SyncRecorder>,
) -> std::io::Result<()> {
    if let Some(h) = hook {
        h(region.path())?;
    }
    region.sync_range(start, end.saturating_sub(start))?;
    if let Some(r) = recorder {
        r(region.path(), start as u64, end as u64);
    }
    Ok(())
}

fn delete(dir: &std::path::Path, paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = std::fs::remove_file(p) {
            // A leftover fully-purged chunk is harmless: open skips over it.
            tracing::warn!(path = %p.display(), error = %e, "could not remove purged chunk");
            return;
        }
    }
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(error = %e, "fsync of the directory after purge failed");
    }
}
