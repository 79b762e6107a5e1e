//! The flush thread: group commit over a crossbeam channel, poison on error. Every sync it
//! runs goes through the [`SyncOwner`]. It runs no user code: each answer (a callback with
//! its result, a barrier) goes to the callback thread ([`super::callbacks`]) in request
//! order, once the sync covering it completed or failed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::callbacks::{self, Replies, Reply};
use super::owner::{SyncOwner, Target};
use crate::error::{Error, Result};

/// A completion callback; receives the outcome of the sync that covered its request.
pub type Callback = Box<dyn FnOnce(Result<()>) + Send>;

/// Work for the flush thread.
pub enum Job {
    /// Make everything before `target` durable, then call `callback` (in request order).
    Sync {
        /// The point to make durable.
        target: Target,
        /// Called with the result.
        callback: Option<Callback>,
    },
    /// Once everything before `target` is durable, retire purged chunks (recycle or remove).
    Retire {
        /// The purge record's end.
        target: Target,
        /// The chunks to retire, with their mappings.
        chunks: Vec<(u64, std::sync::Weak<crate::chunk::Region>)>,
    },
    /// Reply once everything queued before it is done, callbacks included.
    Barrier(Sender<()>),
}

/// The sender side plus the handles of the flush and callback threads.
#[derive(Debug, Default)]
pub struct WorkerHandle {
    /// Queue into the worker; `None` after shutdown.
    pub tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    callbacks: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queue a job; fails if the worker is gone.
    pub fn send(&self, job: Job) -> Result<()> {
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|_| Error::WorkerStopped),
            None => Err(Error::WorkerStopped),
        }
    }

    /// Stop accepting jobs and wait for the flush thread to finish the queue, then for the
    /// callback thread to run every callback it was handed.
    pub fn shutdown(&mut self) {
        self.tx = None;
        for t in [self.thread.take(), self.callbacks.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }

    /// Move the handles out, leaving a stopped handle (so the caller can join the threads
    /// without holding a lock a callback may want).
    pub fn take(&mut self) -> WorkerHandle {
        std::mem::take(self)
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    rx: Receiver<Job>,
    owner: Arc<SyncOwner>,
    batch_max: usize,
    replies: Replies,
}

/// Start the flush thread and its callback thread.
pub fn spawn(owner: Arc<SyncOwner>, batch_max: usize) -> Result<WorkerHandle> {
    let (replies, callbacks) = callbacks::spawn()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let w = Worker {
        rx,
        owner,
        batch_max,
        replies,
    };
    // If this spawn fails, `w` (and with it the replies sender) is dropped, so the callback
    // thread ends by itself.
    let thread = std::thread::Builder::new()
        .name("chunkwal-flush".into())
        .spawn(move || w.run())
        .map_err(|e| Error::io("spawn flush worker", "", e))?;
    Ok(WorkerHandle {
        tx: Some(tx),
        thread: Some(thread),
        callbacks: Some(callbacks),
    })
}

impl Worker {
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match self.rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let mut slots: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
            let r = catch_unwind(AssertUnwindSafe(|| self.process(&mut slots)));
            if r.is_err() {
                self.owner.poison().poison_panic("flush worker (panicked)");
            }
            // Whatever a failure or a panic left unanswered gets the error.
            for job in slots.iter_mut().filter_map(Option::take) {
                self.fail(job);
            }
        }
    }

    fn fail(&self, job: Job) {
        match job {
            Job::Sync {
                callback: Some(cb), ..
            } => self
                .replies
                .send(Reply::Done(cb, Err(self.owner.poison().error()))),
            Job::Barrier(tx) => self.replies.send(Reply::Barrier(tx)),
            _ => {}
        }
    }

    /// Group commit: one sync to the batch's last target (targets only grow: they are taken
    /// under the writer mutex, in queue order), then every job of the batch in order.
    fn process(&self, slots: &mut [Option<Job>]) {
        let last = slots.iter().flatten().rev().find_map(|j| match j {
            Job::Sync { target, .. } | Job::Retire { target, .. } => Some(*target),
            Job::Barrier(_) => None,
        });
        if let Some(target) = last {
            if self.owner.sync_to(target).is_err() {
                return; // every job is failed by the caller
            }
        } else if self.owner.poison().is_set() {
            return;
        }
        for slot in slots.iter_mut() {
            match slot.take() {
                Some(Job::Sync {
                    callback: Some(cb), ..
                }) => self.replies.send(Reply::Done(cb, Ok(()))),
                Some(Job::Retire { target, chunks })
                    if self.owner.retire(target, &chunks).is_err() =>
                {
                    return;
                }
                Some(Job::Barrier(tx)) => self.replies.send(Reply::Barrier(tx)),
                _ => {}
            }
        }
    }
}
