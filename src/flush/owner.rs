//! The sync owner: the one component that knows which bytes were asked to be durable and
//! which a completed sync covered. Every sync of chunk data, every install and every purge
//! delete goes through it, from the flush worker, from `flush_blocking` on a caller's
//! thread, and from open; and it alone moves the durable point.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::state::{DurableState, Poison};
use crate::chunk::{Files, Region};
use crate::error::{Error, Result};
use crate::observe::SyncPass;
use crate::types::position;

/// A point to make durable: every byte of the log before `(seq, off)`, and with it the
/// entries up to `last_index` as of truncation generation `gen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The chunk.
    pub seq: u64,
    /// The offset in it.
    pub off: usize,
    /// Last entry index written before the point.
    pub last_index: Option<u64>,
    /// Truncation generation when the point was taken.
    pub gen: u64,
}

impl Target {
    /// The packed position.
    pub fn pos(&self) -> u64 {
        position(self.seq, self.off)
    }
}

/// A chunk that is not yet wholly durable.
struct Tracked {
    seq: u64,
    region: Arc<Region>,
    /// Every byte before this offset is durable with its current contents.
    synced_to: usize,
    /// The chunk's end, once it is sealed (no byte past it is ever written).
    sealed_at: Option<usize>,
    /// Its file still has its temporary name: it must be installed (renamed, directory
    /// synced) before any byte of it counts, and only after every older chunk is durable.
    needs_install: bool,
}

/// The next piece of work towards a target, taken from the ledger.
enum Step {
    Done,
    Install(u64),
    Sync {
        region: Arc<Region>,
        seq: u64,
        from: usize,
        to: usize,
        claim: usize,
        whole: bool,
    },
}

/// Owns the requested and synced ranges; see the module docs.
pub struct SyncOwner {
    files: Files,
    durable: Arc<DurableState>,
    poison: Arc<Poison>,
    /// Chunks not yet wholly durable, oldest first. Locked briefly, never across a sync.
    ledger: Mutex<VecDeque<Tracked>>,
    /// Held for the whole of a sync, so syncs run one at a time, in order: the durable point
    /// moves only over what a completed sync covered, and no sync can claim another's range.
    turn: Mutex<()>,
    /// Warn about a sync pass slower than this (`Config::slow_sync_warn`).
    slow_sync_warn: Option<Duration>,
}

impl std::fmt::Debug for SyncOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOwner")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl SyncOwner {
    /// An owner with nothing tracked yet.
    pub fn new(files: Files, durable: Arc<DurableState>, poison: Arc<Poison>) -> Self {
        SyncOwner {
            files,
            durable,
            poison,
            ledger: Mutex::new(VecDeque::new()),
            turn: Mutex::new(()),
            slow_sync_warn: None,
        }
    }

    /// The same owner, warning about every sync pass slower than `threshold`.
    pub fn warn_slower_than(mut self, threshold: Option<Duration>) -> Self {
        self.slow_sync_warn = threshold;
        self
    }

    /// The files it manages.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// The log's poison flag.
    pub fn poison(&self) -> &Arc<Poison> {
        &self.poison
    }

    /// The durable point it moves.
    pub fn durable(&self) -> &Arc<DurableState> {
        &self.durable
    }

    /// Start tracking chunk `seq`: bytes before `synced_to` are durable already, and
    /// `sealed_at` is its end if nothing more will be written to it.
    pub fn track(
        &self,
        seq: u64,
        region: Arc<Region>,
        synced_to: usize,
        sealed_at: Option<usize>,
        needs_install: bool,
    ) {
        self.ledger.lock().push_back(Tracked {
            seq,
            region,
            synced_to,
            sealed_at,
            needs_install,
        });
    }

    /// A rotation: chunk `old` ends at `end`; chunk `new` (prepared, header synced, not yet
    /// installed) follows it. Nothing is synced here: the next sync does it, in order.
    pub fn rotate(&self, old: u64, end: usize, new: u64, region: Arc<Region>, header: usize) {
        let mut l = self.ledger.lock();
        if let Some(t) = l.iter_mut().find(|t| t.seq == old) {
            t.sealed_at = Some(end);
        }
        l.push_back(Tracked {
            seq: new,
            region,
            synced_to: header,
            sealed_at: None,
            needs_install: true,
        });
    }

    /// Make everything before `target` durable, then move the durable point to it. Runs on
    /// the caller's thread; waits for a sync already running. Any failure poisons the log.
    pub fn sync_to(&self, target: Target) -> Result<()> {
        self.sync_claiming(target, None)
    }

    /// [`SyncOwner::sync_to`], but msync chunk `target.seq` through `sync_end` while
    /// claiming only `target.off` as durable (open: bytes past the replayed end are synced
    /// as they are, zeros or a cut tail, and will be overwritten).
    pub fn sync_claiming(&self, target: Target, sync_end: Option<usize>) -> Result<()> {
        self.poison.check()?;
        let _turn = self.turn.lock();
        self.poison.check()?;
        let mut pass = SyncPass::start(self.files.dir(), target.seq);
        let _span = pass.span().clone().entered();
        loop {
            match self.next_step(&target, sync_end)? {
                Step::Done => break,
                Step::Install(seq) => {
                    if let Err(e) = self.files.install(seq) {
                        tracing::error!(seq, error = %e, "installing the next chunk failed");
                        return Err(self.fail("install chunk", e));
                    }
                    self.set(seq, |t| t.needs_install = false);
                    pass.installed();
                }
                Step::Sync {
                    region,
                    seq,
                    from,
                    to,
                    claim,
                    whole,
                } => {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        self.files.sync_data(&region, from, to, claim)
                    }));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(path = %region.path().display(), error = %e, "msync failed");
                            self.poison.poison("msync", Some(region.path()), e);
                            return Err(self.poison.error());
                        }
                        Err(_) => {
                            self.poison.poison_panic("msync (panicked)");
                            return Err(self.poison.error());
                        }
                    }
                    pass.synced(to - from);
                    self.durable.advance_pos(position(seq, claim));
                    if !whole {
                        // The target's own chunk: nothing after it to do.
                        self.set(seq, |t| t.synced_to = claim);
                        break;
                    }
                    self.ledger.lock().retain(|t| t.seq != seq);
                    // Synced whole, never synced again: the portable sync's handle can go.
                    region.release_sync_file();
                }
            }
        }
        pass.finish(self.files.dir(), self.files.metrics(), self.slow_sync_warn);
        self.durable
            .advance(target.pos(), target.last_index, target.gen);
        Ok(())
    }

    fn set(&self, seq: u64, f: impl FnOnce(&mut Tracked)) {
        if let Some(t) = self.ledger.lock().iter_mut().find(|t| t.seq == seq) {
            f(t);
        }
    }

    /// Poison the log with `e` as the cause of `op`'s failure; the poison error.
    fn fail(&self, op: &'static str, e: Error) -> Error {
        let (path, source) = match e {
            Error::Io { path, source, .. } => (Some(path), source),
            Error::DiskFull { path, .. } => (Some(path), std::io::ErrorKind::StorageFull.into()),
            e => (None, std::io::Error::other(e)),
        };
        self.poison.poison(op, path.as_deref(), source);
        self.poison.error()
    }

    /// What to do next towards `target`: install the oldest chunk that needs it, else sync
    /// the oldest unsynced range at or before the target.
    fn next_step(&self, target: &Target, sync_end: Option<usize>) -> Result<Step> {
        let l = self.ledger.lock();
        let Some(t) = l.front().filter(|t| t.seq <= target.seq) else {
            return Ok(Step::Done);
        };
        if t.needs_install {
            return Ok(Step::Install(t.seq));
        }
        let (to, claim, whole) = if t.seq < target.seq {
            match t.sealed_at {
                Some(end) => (end, end, true),
                // A chunk is sealed before any later one is tracked.
                None => return Err(Error::WorkerStopped),
            }
        } else {
            let claim = target.off.max(t.synced_to);
            (sync_end.unwrap_or(claim).max(claim), claim, false)
        };
        if !whole && to <= t.synced_to {
            return Ok(Step::Done);
        }
        Ok(Step::Sync {
            region: Arc::clone(&t.region),
            seq: t.seq,
            from: t.synced_to.min(to),
            to,
            claim,
            whole,
        })
    }

    /// After `target` is durable, retire the chunk files `chunks` (purged: nothing of them
    /// is needed any more once the purge record is durable; each comes with its mapping,
    /// which must be gone before the file is reused), oldest first: each is kept as a spare
    /// for recycling or removed, and the directory is fsynced after each. A file system may
    /// persist renames and unlinks in any order, and a lost one of an older chunk behind a
    /// durable one of a newer chunk would leave a gap that open refuses (`MissingChunk`).
    pub fn retire(&self, target: Target, chunks: &[(u64, Weak<Region>)]) -> Result<()> {
        self.sync_to(target)?;
        let _turn = self.turn.lock();
        for (seq, region) in chunks {
            let kept = match self.files.retire_chunk(*seq) {
                Ok(kept) => kept,
                Err(e) => {
                    // A leftover fully purged chunk is harmless: open skips over it.
                    tracing::warn!(seq, error = %e, "could not retire purged chunk");
                    return Ok(());
                }
            };
            // fsyncgate: a failed directory fsync may have dropped more than this change.
            if let Err(e) = self.files.sync_dir() {
                tracing::error!(error = %e, "fsync of the directory after purge failed");
                return Err(self.fail("fsync directory", e));
            }
            // A spare becomes reusable only now that its new name is durable (see
            // `Files::keep_spare`).
            if kept {
                self.files.keep_spare(*seq, Weak::clone(region));
            }
        }
        Ok(())
    }
}
