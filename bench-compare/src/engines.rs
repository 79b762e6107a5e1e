//! One adapter per engine over the same small interface, each using the engine's real API.
//!
//! What "durable" and "buffered" mean per engine (see docs/benchmarks.md):
//! - chunkwal: durable = `append` + `flush_blocking` (msync of the written range on the flush
//!   thread, then the callback). Buffered = `append` only (copied into the shared mapping, so
//!   it is in the page cache: survives a process crash, not a power loss).
//! - raft-engine: durable = `Engine::write(batch, sync = true)` (pwrite + fdatasync by the
//!   write-group leader). Buffered = `write(batch, false)` (pwrite only, in the page cache).
//! - raft-log: durable = `append` + `flush(true, Some(tx))` and wait for the callback (the
//!   flush worker `write_all`s and `fdatasync`s). Buffered = `append` + `flush(false, None)`:
//!   the records are handed to the flush worker, which writes them to the OS without fsync;
//!   a buffered run ends with `wait_worker_idle` so every record has reached the OS.
//! - okaywal: durable = `begin_entry`, one `write_chunk` per Raft entry, `commit` (commit
//!   always fdatasyncs, with group commit across threads). There is no buffered mode.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

/// Engine options the harness varies.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// Segment size in bytes (None = each engine's default). chunkwal: `chunk_size`;
    /// raft-engine: `target_file_size`, with `purge_threshold` = 3 x this; raft-log:
    /// `chunk_max_size`; okaywal: `preallocate_bytes`, and (unless `keep_all`)
    /// `checkpoint_after_bytes` = 3/4 of this, okaywal's default ratio.
    pub chunk_size: Option<u64>,
    /// chunkwal: cache bound in items (None = default).
    pub cache_items: Option<usize>,
    /// chunkwal: cache bound in payload bytes (None = default).
    pub cache_bytes: Option<usize>,
    /// okaywal: keep every entry in the WAL (no checkpoint), as a Raft log store must.
    pub keep_all: bool,
}

/// The interface every workload runs through.
pub trait Log: Sized {
    /// Entries ready to append, built outside the timed region.
    type Batch;
    fn open(dir: &Path, opts: &Opts) -> io::Result<Self>;
    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch;
    /// Append; when `durable`, return only once the batch is on stable storage.
    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()>;
    /// Whether the engine has an append mode without sync.
    fn can_buffer() -> bool {
        true
    }
    /// After buffered appends: wait until everything has been handed to the OS.
    fn settle(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Make everything durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Read `[from, to)`, check each entry, return the payload bytes read.
    fn read(&mut self, from: u64, to: u64) -> io::Result<usize>;
    /// Highest index held.
    fn last_index(&self) -> Option<u64>;
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn check_count(got: usize, from: u64, to: u64) -> io::Result<()> {
    if got as u64 != to - from {
        return Err(other(format!("read {got} entries of [{from}, {to})")));
    }
    Ok(())
}

// ---------------------------------------------------------------- chunkwal

pub struct Chunkwal(pub chunkwal::Wal);

impl Log for Chunkwal {
    type Batch = Vec<(chunkwal::LogId, Bytes)>;

    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        let mut cfg = chunkwal::Config::new(dir);
        if let Some(c) = opts.chunk_size {
            cfg = cfg.chunk_size(c);
        }
        if let Some(items) = opts.cache_items {
            cfg = cfg.cache_max_items(items);
        }
        if let Some(bytes) = opts.cache_bytes {
            cfg = cfg.cache_max_bytes(bytes);
        }
        chunkwal::Wal::open(cfg).map(Chunkwal).map_err(other)
    }

    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        (first..first + n as u64)
            .map(|i| {
                (
                    chunkwal::LogId::new(1, i),
                    crate::workloads::pick(payload, i),
                )
            })
            .collect()
    }

    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()> {
        self.0.append(batch).map_err(other)?;
        if durable {
            self.0.flush_blocking().map_err(other)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.flush_blocking().map_err(other)
    }

    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        let v = self.0.read(from..to).map_err(other)?;
        check_count(v.len(), from, to)?;
        Ok(v.iter().map(|(_, p)| p.len()).sum())
    }

    fn last_index(&self) -> Option<u64> {
        self.0.log_state().last.map(|l| l.index)
    }
}

// ---------------------------------------------------------------- raft-engine

/// A protobuf-free entry: protobuf's own `BytesValue` whose bytes are
/// `index (8, LE) | term (8, LE) | payload`, so the id costs what chunkwal's LogId costs.
pub struct RaftEngineEntry;

impl raft_engine::MessageExt for RaftEngineEntry {
    type Entry = protobuf::well_known_types::BytesValue;

    fn index(e: &Self::Entry) -> u64 {
        u64::from_le_bytes(e.value[..8].try_into().expect("8-byte index prefix"))
    }
}

pub struct RaftEngine {
    pub(crate) engine: raft_engine::Engine,
}

pub(crate) const REGION: u64 = 1;

impl RaftEngine {
    pub fn open_with(dir: &Path, lz4: bool, opts: &Opts) -> io::Result<Self> {
        let mut cfg = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Default::default()
        };
        if !lz4 {
            cfg.batch_compression_threshold = raft_engine::ReadableSize(0);
        }
        if let Some(c) = opts.chunk_size {
            cfg.target_file_size = raft_engine::ReadableSize(c);
            cfg.purge_threshold = raft_engine::ReadableSize(3 * c);
        }
        let engine = raft_engine::Engine::open(cfg).map_err(other)?;
        Ok(RaftEngine { engine })
    }
}

impl Log for RaftEngine {
    type Batch = Vec<protobuf::well_known_types::BytesValue>;

    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        Self::open_with(dir, true, opts)
    }

    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        (first..first + n as u64)
            .map(|i| {
                let mut v = Vec::with_capacity(16 + payload.len() / crate::workloads::POOL);
                v.extend_from_slice(&i.to_le_bytes());
                v.extend_from_slice(&1u64.to_le_bytes());
                v.extend_from_slice(&crate::workloads::pick(payload, i));
                let mut e = protobuf::well_known_types::BytesValue::new();
                e.value = v;
                e
            })
            .collect()
    }

    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()> {
        let mut lb = raft_engine::LogBatch::with_capacity(batch.len());
        lb.add_entries::<RaftEngineEntry>(REGION, &batch)
            .map_err(other)?;
        self.engine.write(&mut lb, durable).map_err(other)?;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.engine.sync().map_err(other)
    }

    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        let mut v = Vec::with_capacity((to - from) as usize);
        self.engine
            .fetch_entries_to::<RaftEngineEntry>(REGION, from, to, None, &mut v)
            .map_err(other)?;
        check_count(v.len(), from, to)?;
        Ok(v.iter().map(|e| e.value.len() - 16).sum())
    }

    fn last_index(&self) -> Option<u64> {
        self.engine.last_index(REGION)
    }
}

/// raft-engine with LZ4 batch compression off (the default compresses batches >= 8 KiB).
pub struct RaftEngineNoLz4(pub RaftEngine);

impl Log for RaftEngineNoLz4 {
    type Batch = <RaftEngine as Log>::Batch;
    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        RaftEngine::open_with(dir, false, opts).map(RaftEngineNoLz4)
    }
    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        self.0.prepare(first, n, payload)
    }
    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()> {
        self.0.append(batch, durable)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        self.0.read(from, to)
    }
    fn last_index(&self) -> Option<u64> {
        self.0.last_index()
    }
}

// ---------------------------------------------------------------- raft-log

/// Payload with a cheap clone, encoded as `len (u32 BE) | bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlPayload(Bytes);

impl raft_log::codeq::Encode for RlPayload {
    fn encode<W: io::Write>(&self, mut w: W) -> io::Result<usize> {
        w.write_all(&(self.0.len() as u32).to_be_bytes())?;
        w.write_all(&self.0)?;
        Ok(4 + self.0.len())
    }
}

impl raft_log::codeq::Decode for RlPayload {
    fn decode<R: Read>(mut r: R) -> io::Result<Self> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let mut v = vec![0u8; u32::from_be_bytes(len) as usize];
        r.read_exact(&mut v)?;
        Ok(RlPayload(v.into()))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RlTypes;

impl raft_log::Types for RlTypes {
    /// (term, index)
    type LogId = (u64, u64);
    type LogPayload = RlPayload;
    type Vote = (u64, u64);
    type Callback = RlCallback;
    type UserData = String;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.0.len() as u64
    }
}

/// raft-log's flush callback: a blocking wait's channel, or a pipelined run's [`Ack`].
pub enum RlCallback {
    Wait(SyncSender<io::Result<()>>),
    Ack(crate::pipe::Ack),
}

impl raft_log::Callback for RlCallback {
    fn send(self, res: io::Result<()>) {
        match self {
            RlCallback::Wait(tx) => {
                let _ = SyncSender::send(&tx, res);
            }
            RlCallback::Ack(a) => a.done(res.map_err(|e| e.to_string())),
        }
    }
}

pub struct RaftLog(pub(crate) raft_log::RaftLog<RlTypes>);

impl RaftLog {
    pub fn open_with(dir: &Path, batch_wait: Option<Duration>, opts: &Opts) -> io::Result<Self> {
        let mut cfg = raft_log::Config::new(dir.to_string_lossy());
        cfg.wal.flush_batch_wait = batch_wait;
        cfg.wal.chunk_max_size = opts.chunk_size.map(|c| c as usize);
        raft_log::RaftLog::open(Arc::new(cfg)).map(RaftLog)
    }

    fn flush_wait(&mut self) -> io::Result<()> {
        use raft_log::api::raft_log_writer::RaftLogWriter;
        let (tx, rx) = sync_channel(1);
        self.0.flush(true, Some(RlCallback::Wait(tx)))?;
        rx.recv().map_err(other)?
    }
}

impl Log for RaftLog {
    type Batch = Vec<((u64, u64), RlPayload)>;

    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        Self::open_with(dir, None, opts)
    }

    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        (first..first + n as u64)
            .map(|i| ((1, i), RlPayload(crate::workloads::pick(payload, i))))
            .collect()
    }

    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()> {
        use raft_log::api::raft_log_writer::RaftLogWriter;
        self.0.append(batch)?;
        if durable {
            self.flush_wait()
        } else {
            self.0.flush(false, None)
        }
    }

    fn settle(&mut self) -> io::Result<()> {
        self.0.wait_worker_idle()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush_wait()
    }

    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        let mut n = 0;
        let mut bytes = 0;
        for r in self.0.read(from, to) {
            bytes += r?.1 .0.len();
            n += 1;
        }
        check_count(n, from, to)?;
        Ok(bytes)
    }

    fn last_index(&self) -> Option<u64> {
        self.0.log_state().last().map(|l| l.1)
    }
}

/// raft-log with `flush_batch_wait = 0`: the flush worker syncs as soon as a request arrives
/// instead of waiting up to 1 ms (its default) for more.
pub struct RaftLogNoWait(pub RaftLog);

impl Log for RaftLogNoWait {
    type Batch = <RaftLog as Log>::Batch;
    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        RaftLog::open_with(dir, Some(Duration::ZERO), opts).map(RaftLogNoWait)
    }
    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        self.0.prepare(first, n, payload)
    }
    fn append(&mut self, batch: Self::Batch, durable: bool) -> io::Result<()> {
        self.0.append(batch, durable)
    }
    fn settle(&mut self) -> io::Result<()> {
        self.0.settle()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        self.0.read(from, to)
    }
    fn last_index(&self) -> Option<u64> {
        self.0.last_index()
    }
}

// ---------------------------------------------------------------- okaywal

/// The application-side index okaywal leaves to its user: the position of every entry's
/// chunk, in index order (entries start at 1). Rebuilt by `recover` on reopen.
type Positions = Arc<Mutex<Vec<okaywal::LogPosition>>>;

#[derive(Debug)]
struct Manager(Positions);

impl okaywal::LogManager for Manager {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> io::Result<()> {
        let mut found = Vec::new();
        loop {
            match entry.read_chunk()? {
                okaywal::ReadChunkResult::Chunk(mut c) => {
                    found.push(c.log_position());
                    c.read_all()?;
                    if !c.check_crc()? {
                        return Err(other("okaywal chunk crc mismatch"));
                    }
                }
                okaywal::ReadChunkResult::EndOfEntry => break,
                okaywal::ReadChunkResult::AbortedEntry => return Ok(()),
            }
        }
        self.0.lock().expect("positions").extend(found);
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

pub struct Okaywal {
    pub(crate) wal: okaywal::WriteAheadLog,
    positions: Positions,
}

impl Log for Okaywal {
    type Batch = (u64, usize, Bytes);

    fn open(dir: &Path, opts: &Opts) -> io::Result<Self> {
        let positions: Positions = Arc::default();
        let mut cfg = okaywal::Configuration::default_for(dir);
        if let Some(c) = opts.chunk_size {
            cfg = cfg
                .preallocate_bytes(c.min(u32::MAX as u64) as u32)
                .checkpoint_after_bytes(c / 4 * 3);
        }
        if opts.keep_all {
            // A Raft log must keep entries until purged: never checkpoint them away.
            cfg = cfg.checkpoint_after_bytes(u64::MAX);
        }
        let wal = cfg.open(Manager(Arc::clone(&positions)))?;
        Ok(Okaywal { wal, positions })
    }

    fn prepare(&self, first: u64, n: usize, payload: &Bytes) -> Self::Batch {
        (first, n, payload.clone())
    }

    fn can_buffer() -> bool {
        false
    }

    fn append(&mut self, (first, n, pool): Self::Batch, _durable: bool) -> io::Result<()> {
        let mut w = self.wal.begin_entry()?;
        let mut got = Vec::with_capacity(n);
        for i in first..first + n as u64 {
            got.push(w.write_chunk(&crate::workloads::pick(&pool, i))?.position);
        }
        w.commit()?;
        self.positions.lock().expect("positions").extend(got);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(()) // every commit is durable
    }

    fn read(&mut self, from: u64, to: u64) -> io::Result<usize> {
        let pos: Vec<_> = {
            let p = self.positions.lock().expect("positions");
            p.get((from - 1) as usize..(to - 1) as usize)
                .ok_or_else(|| other("okaywal: range not held"))?
                .to_vec()
        };
        let mut bytes = 0;
        let mut buf = Vec::new();
        for p in pos {
            let mut r = self.wal.read_at(p)?;
            buf.clear();
            r.read_to_end(&mut buf)?;
            if !r.crc_is_valid()? {
                return Err(other("okaywal read crc mismatch"));
            }
            bytes += buf.len();
        }
        Ok(bytes)
    }

    fn last_index(&self) -> Option<u64> {
        let n = self.positions.lock().expect("positions").len() as u64;
        (n > 0).then_some(n)
    }
}
