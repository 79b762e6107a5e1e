//! The chunkwal adapter of the `groups` bench: one `chunkwal::WriteBatch` per round
//! (see `groups_engines.rs` for the interface and what each engine does).

use std::io;
use std::path::Path;

use bytes::Bytes;

use crate::groups_engines::{other, MgLog, MgOpts};
use crate::workloads::pick;

pub struct MgChunkwal(pub chunkwal::Wal);

impl MgLog for MgChunkwal {
    type Entries = Vec<(chunkwal::LogId, Bytes)>;

    fn open(dir: &Path, o: &MgOpts) -> io::Result<Self> {
        let mut cfg = chunkwal::Config::new(dir);
        if let Some(c) = o.chunk_size {
            cfg = cfg.chunk_size(c);
        }
        if o.threshold.is_some() {
            cfg = cfg.rewrite_threshold(o.threshold);
        }
        chunkwal::Wal::open(cfg).map(MgChunkwal).map_err(other)
    }

    fn prepare(&self, first: u64, n: usize, pool: &Bytes, seq: u64) -> Self::Entries {
        (0..n as u64)
            .map(|i| (chunkwal::LogId::new(1, first + i), pick(pool, seq + i)))
            .collect()
    }

    fn write_durable(&mut self, batch: Vec<(u64, Self::Entries)>) -> io::Result<()> {
        let mut b = chunkwal::WriteBatch::new();
        for (g, e) in batch {
            b.append(chunkwal::GroupId(g), e);
        }
        self.0.write(&b).map_err(other)?;
        self.0.flush_blocking().map_err(other)
    }

    fn purge(&mut self, groups: &[u64], upto: u64) -> io::Result<()> {
        let mut b = chunkwal::WriteBatch::new();
        for &g in groups {
            b.purge(chunkwal::GroupId(g), chunkwal::LogId::new(1, upto));
        }
        self.0.write(&b).map_err(other)
    }

    fn maintain(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.0.pinning_groups(4).iter().map(|p| p.group.0).collect())
    }

    fn entry_len(&mut self, group: u64, index: u64) -> io::Result<Option<usize>> {
        let e = self.0.group(chunkwal::GroupId(group)).entry(index);
        Ok(e.map_err(other)?.map(|(_, p)| p.len()))
    }
}
