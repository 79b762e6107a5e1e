//! Multi-group adapters for the `groups` bench (issue #15): every round is ONE batch holding
//! entries for every group, made durable by ONE sync, through each engine's own API.
//!
//! - chunkwal: one `chunkwal::WriteBatch`, `append(GroupId(g), ..)` per group, then
//!   `Wal::write` + `Wal::flush_blocking`. Purges: one `WriteBatch` of `purge`s, written
//!   without a sync. Maintenance: `Wal::pinning_groups`.
//! - raft-engine: one `LogBatch`, `add_entries` per region, then `Engine::write(.., true)`.
//!   Purges: one `LogBatch` of `Command::Compact` (as TiKV's batched raft-log GC does),
//!   written without a sync. Maintenance: `Engine::purge_expired_files`.
//!
//! The chunkwal adapter is in `groups_chunkwal.rs`.
//! Group `g` is chunkwal's `GroupId(g)` and raft-engine's region `g`; ids start at 1.

use std::io;
use std::path::Path;

use bytes::Bytes;

use crate::engines::RaftEngineEntry;
use crate::workloads::pick;

/// Engine options the `groups` bench varies.
#[derive(Debug, Clone, Default)]
pub struct MgOpts {
    /// Segment size (chunkwal `chunk_size`, raft-engine `target_file_size`); None: default.
    pub chunk_size: Option<u64>,
    /// Disk threshold (chunkwal `rewrite_threshold`, raft-engine `purge_threshold`).
    pub threshold: Option<u64>,
    /// raft-engine: LZ4 batch compression (its default, on for batches >= 8 KiB).
    pub lz4: bool,
}

/// The multi-group interface the `groups` workloads run through.
pub trait MgLog: Sized {
    /// One group's entries, built outside the timed region.
    type Entries;
    fn open(dir: &Path, o: &MgOpts) -> io::Result<Self>;
    /// Entries `first..first + n` (term 1); payload `seq + i` of the pool.
    fn prepare(&self, first: u64, n: usize, pool: &Bytes, seq: u64) -> Self::Entries;
    /// One batch with every `(group, entries)`, written and made durable by one sync.
    fn write_durable(&mut self, batch: Vec<(u64, Self::Entries)>) -> io::Result<()>;
    /// Drop entries `..=upto` of every group in `groups`: one batch, no sync.
    fn purge(&mut self, groups: &[u64], upto: u64) -> io::Result<()>;
    /// The periodic call applications make: the groups the engine asks to compact.
    fn maintain(&mut self) -> io::Result<Vec<u64>>;
    /// Payload length of entry `index` of `group`, if held.
    fn entry_len(&mut self, group: u64, index: u64) -> io::Result<Option<usize>>;
}

pub(crate) fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

// ---------------------------------------------------------------- raft-engine

pub struct MgRaftEngine(pub raft_engine::Engine);

impl MgLog for MgRaftEngine {
    type Entries = Vec<protobuf::well_known_types::BytesValue>;

    fn open(dir: &Path, o: &MgOpts) -> io::Result<Self> {
        let mut cfg = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        if !o.lz4 {
            cfg.batch_compression_threshold = raft_engine::ReadableSize(0);
        }
        if let Some(c) = o.chunk_size {
            cfg.target_file_size = raft_engine::ReadableSize(c);
        }
        if let Some(t) = o.threshold {
            cfg.purge_threshold = raft_engine::ReadableSize(t);
        }
        raft_engine::Engine::open(cfg)
            .map(MgRaftEngine)
            .map_err(other)
    }

    fn prepare(&self, first: u64, n: usize, pool: &Bytes, seq: u64) -> Self::Entries {
        (0..n as u64)
            .map(|i| {
                let p = pick(pool, seq + i);
                let mut v = Vec::with_capacity(16 + p.len());
                v.extend_from_slice(&(first + i).to_le_bytes());
                v.extend_from_slice(&1u64.to_le_bytes());
                v.extend_from_slice(&p);
                let mut e = protobuf::well_known_types::BytesValue::new();
                e.value = v;
                e
            })
            .collect()
    }

    fn write_durable(&mut self, batch: Vec<(u64, Self::Entries)>) -> io::Result<()> {
        let mut lb = raft_engine::LogBatch::with_capacity(batch.len());
        for (g, e) in &batch {
            lb.add_entries::<RaftEngineEntry>(*g, e).map_err(other)?;
        }
        self.0.write(&mut lb, true).map_err(other)?;
        Ok(())
    }

    fn purge(&mut self, groups: &[u64], upto: u64) -> io::Result<()> {
        let mut lb = raft_engine::LogBatch::with_capacity(groups.len());
        for &g in groups {
            // compact_to(index) keeps `index` and later: drop `..=upto`.
            lb.add_command(g, raft_engine::Command::Compact { index: upto + 1 });
        }
        self.0.write(&mut lb, false).map_err(other)?;
        Ok(())
    }

    fn maintain(&mut self) -> io::Result<Vec<u64>> {
        self.0.purge_expired_files().map_err(other)
    }

    fn entry_len(&mut self, group: u64, index: u64) -> io::Result<Option<usize>> {
        let e = self.0.get_entry::<RaftEngineEntry>(group, index);
        Ok(e.map_err(other)?.map(|e| e.value.len() - 16))
    }
}
