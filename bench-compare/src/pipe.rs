//! The two ways an engine is driven in the pipelined and steady-state workloads, each
//! through the engine's own API for durable writes:
//!
//! - [`Windowed`] (chunkwal, raft-log): one writer appends a batch and asks for a durable
//!   flush with a callback, without waiting; up to `window` flushes are outstanding.
//! - [`Threaded`] (raft-engine, okaywal): their durable write blocks its caller, so
//!   parallelism comes from writer threads, each waiting for its own writes; the engine
//!   group-commits across threads internally.

use std::io;
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::engines::RaftLogNoWait;
use crate::engines::{Chunkwal, Log, Okaywal, RaftEngine, RaftEngineNoLz4, RaftLog, RlCallback};

/// A durable acknowledgement of one batch, stamped when the engine reports it.
pub struct Done {
    pub seq: usize,
    pub at: Instant,
    pub res: Result<(), String>,
}

/// Handed to the engine with a flush request; the engine's callback calls [`Ack::done`]
/// (on the engine's own thread), which records the completion time.
pub struct Ack {
    pub seq: usize,
    pub tx: Sender<Done>,
}

impl Ack {
    pub fn done(self, res: Result<(), String>) {
        let _ = self.tx.send(Done {
            seq: self.seq,
            at: Instant::now(),
            res,
        });
    }
}

/// chunkwal's I/O counters (`AccessStat`), as deltas over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoCounters {
    pub syncs: u64,
    pub synced_bytes: u64,
    pub dir_syncs: u64,
    pub chunks_created: u64,
    pub chunks_recycled: u64,
}

impl IoCounters {
    pub fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            syncs: self.syncs - earlier.syncs,
            synced_bytes: self.synced_bytes - earlier.synced_bytes,
            dir_syncs: self.dir_syncs - earlier.dir_syncs,
            chunks_created: self.chunks_created - earlier.chunks_created,
            chunks_recycled: self.chunks_recycled - earlier.chunks_recycled,
        }
    }
}

/// An engine with a non-blocking durable flush that reports completion by callback.
pub trait Windowed: Log {
    /// Append `batch`, then request a durable flush whose completion calls `ack.done`.
    fn submit(&mut self, batch: Self::Batch, ack: Ack) -> io::Result<()>;
    /// Drop entries up to and including `upto`.
    fn purge(&mut self, upto: u64) -> io::Result<()>;
    /// The engine's own sync counters, where it has them.
    fn counters(&self) -> Option<IoCounters> {
        None
    }
}

/// An engine whose durable write blocks the calling thread and may be called from many.
pub trait Threaded: Log + Sync
where
    Self::Batch: Send,
{
    /// Write `batch` for Raft group `group`; return once it is durable.
    fn write_durable(&self, group: u64, batch: Self::Batch) -> io::Result<()>;
    /// Drop entries of `group` up to and including `upto`; `leader` (one thread) also
    /// runs the engine-wide part of purging. False: the engine has no purge call.
    fn purge(&self, group: u64, upto: u64, leader: bool) -> io::Result<bool>;
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

// ---------------------------------------------------------------- chunkwal

impl Windowed for Chunkwal {
    fn submit(&mut self, batch: Self::Batch, ack: Ack) -> io::Result<()> {
        self.0.append(batch).map_err(other)?;
        self.0
            .flush(move |r| ack.done(r.map_err(|e| e.to_string())))
            .map_err(other)
    }

    fn purge(&mut self, upto: u64) -> io::Result<()> {
        self.0.purge(chunkwal::LogId::new(1, upto)).map_err(other)
    }

    fn counters(&self) -> Option<IoCounters> {
        let s = self.0.access_stat();
        Some(IoCounters {
            syncs: s.syncs,
            synced_bytes: s.synced_bytes,
            dir_syncs: s.dir_syncs,
            chunks_created: s.chunks_created,
            chunks_recycled: s.chunks_recycled,
        })
    }
}

// ---------------------------------------------------------------- raft-log

impl Windowed for RaftLog {
    fn submit(&mut self, batch: Self::Batch, ack: Ack) -> io::Result<()> {
        use raft_log::api::raft_log_writer::RaftLogWriter;
        self.0.append(batch)?;
        self.0.flush(true, Some(RlCallback::Ack(ack)))
    }

    fn purge(&mut self, upto: u64) -> io::Result<()> {
        use raft_log::api::raft_log_writer::RaftLogWriter;
        // Takes effect, and removes whole chunks, with the next `flush(true, _)`.
        self.0.purge((1, upto)).map(|_| ())
    }
}

impl Windowed for RaftLogNoWait {
    fn submit(&mut self, batch: Self::Batch, ack: Ack) -> io::Result<()> {
        self.0.submit(batch, ack)
    }

    fn purge(&mut self, upto: u64) -> io::Result<()> {
        Windowed::purge(&mut self.0, upto)
    }
}

// ---------------------------------------------------------------- raft-engine

impl Threaded for RaftEngine {
    fn write_durable(&self, group: u64, batch: Self::Batch) -> io::Result<()> {
        let mut lb = raft_engine::LogBatch::with_capacity(batch.len());
        lb.add_entries::<crate::engines::RaftEngineEntry>(group, &batch)
            .map_err(other)?;
        self.engine.write(&mut lb, true).map_err(other)?;
        Ok(())
    }

    fn purge(&self, group: u64, upto: u64, leader: bool) -> io::Result<bool> {
        // `compact_to` drops entries before its index (a Compact command, written without
        // sync); `purge_expired_files` then deletes or recycles files nothing needs.
        self.engine.compact_to(group, upto + 1);
        if leader {
            self.engine.purge_expired_files().map_err(other)?;
        }
        Ok(true)
    }
}

impl Threaded for RaftEngineNoLz4 {
    fn write_durable(&self, group: u64, batch: Self::Batch) -> io::Result<()> {
        self.0.write_durable(group, batch)
    }

    fn purge(&self, group: u64, upto: u64, leader: bool) -> io::Result<bool> {
        Threaded::purge(&self.0, group, upto, leader)
    }
}

// ---------------------------------------------------------------- okaywal

impl Threaded for Okaywal {
    /// One okaywal entry per batch, one chunk per Raft entry, then the durable commit.
    /// Positions are not kept: these workloads never read.
    fn write_durable(&self, _group: u64, (first, n, pool): Self::Batch) -> io::Result<()> {
        let mut w = self.wal.begin_entry()?;
        for i in first..first + n as u64 {
            w.write_chunk(&crate::workloads::pick(&pool, i))?;
        }
        w.commit()?;
        Ok(())
    }

    /// okaywal has no purge: its checkpointing (a no-op `checkpoint_to`, so the entries are
    /// dropped) recycles segments once `checkpoint_after_bytes` have been written.
    fn purge(&self, _group: u64, _upto: u64, _leader: bool) -> io::Result<bool> {
        Ok(false)
    }
}
