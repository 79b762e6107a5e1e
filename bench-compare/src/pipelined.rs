//! Pipelined durable workloads: batches of `batch` x `payload` B with several batches in
//! flight, and the steady state with purges behind the writer.
//!
//! - Windowed engines (chunkwal, raft-log): append a batch, request a flush with a
//!   callback; once `window` flushes are outstanding, wait for the oldest.
//! - Threaded engines (raft-engine, okaywal): `threads` writers, each writing its own batches
//!   (raft-engine: its own Raft group) and blocking on its own durable writes.
//!
//! Latency per batch runs from the append call to the durable acknowledgement (the callback's
//! time stamp, or the return of the blocking write). Throughput is payload over the wall
//! time of the measured batches. Device bytes count from before the engine opens until
//! after it is dropped and its file system synced (`diskstats::Meter`), against every payload
//! byte written in that span (warm-up included).

use std::io;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::diskstats::{Device, Meter};
use crate::engines::RaftLogNoWait;
use crate::engines::{Chunkwal, Okaywal, Opts, RaftEngine, RaftEngineNoLz4, RaftLog};
use crate::pipe::{Ack, Done, IoCounters, Threaded, Windowed};
use crate::workloads::{lat_json, payload, payload_seeded, Plan};

/// Batches written before the measured ones (file creation, first faults).
const WARMUP: usize = 16;

/// Purge behind the writer: keep about `keep` entries, purge in steps of `step`.
#[derive(Debug, Clone, Copy)]
pub struct PurgeRule {
    pub keep: u64,
    pub step: u64,
}

impl PurgeRule {
    /// The new purge point, if `durable` has moved far enough past `purged`.
    fn next(self, durable: u64, purged: u64) -> Option<u64> {
        (durable >= purged + self.keep + self.step).then(|| durable - self.keep)
    }

    /// The same rule for one of `threads` groups.
    fn per_group(self, threads: usize) -> PurgeRule {
        let t = threads.max(1) as u64;
        PurgeRule {
            keep: (self.keep / t).max(1),
            step: (self.step / t).max(1),
        }
    }
}

/// What a measured run returns.
struct RunOut {
    secs: f64,
    entries: usize,
    lat: Vec<Duration>,
    purges: u64,
}

/// Write-side state of a windowed run: acknowledgements seen and the purge point.
struct Acks {
    rx: Receiver<Done>,
    starts: Vec<Instant>,
    lat: Vec<Duration>,
    acked: Vec<bool>,
    contiguous: usize,
    purged: u64,
    purges: u64,
}

impl Acks {
    /// Wait for one acknowledgement; then purge if the rule says so.
    fn take<L: Windowed>(
        &mut self,
        log: &mut L,
        first: u64,
        batch: usize,
        rule: Option<PurgeRule>,
    ) -> io::Result<()> {
        let d = self
            .rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|e| io::Error::other(format!("no durable ack within 120 s: {e}")))?;
        d.res.map_err(io::Error::other)?;
        self.lat[d.seq] = d.at.saturating_duration_since(self.starts[d.seq]);
        self.acked[d.seq] = true;
        while self.contiguous < self.acked.len() && self.acked[self.contiguous] {
            self.contiguous += 1;
        }
        let durable = first - 1 + (self.contiguous * batch) as u64;
        if let Some(p) = rule.and_then(|r| r.next(durable, self.purged)) {
            log.purge(p)?;
            self.purged = p;
            self.purges += 1;
        }
        Ok(())
    }
}

/// How a windowed run writes.
struct Flow<'a> {
    batch: usize,
    window: usize,
    pool: &'a Bytes,
    rule: Option<PurgeRule>,
}

/// `batches` batches from index `first`, at most `f.window` flushes outstanding.
fn windowed_loop<L: Windowed>(
    log: &mut L,
    first: u64,
    batches: usize,
    f: &Flow,
    purged: &mut u64,
) -> io::Result<RunOut> {
    let (batch, window, pool, rule) = (f.batch, f.window, f.pool, f.rule);
    let (tx, rx) = channel();
    let mut a = Acks {
        rx,
        starts: Vec::with_capacity(batches),
        lat: vec![Duration::ZERO; batches],
        acked: vec![false; batches],
        contiguous: 0,
        purged: *purged,
        purges: 0,
    };
    let mut outstanding = 0;
    let t = Instant::now();
    for seq in 0..batches {
        while outstanding >= window.max(1) {
            a.take(log, first, batch, rule)?;
            outstanding -= 1;
        }
        let b = log.prepare(first + (seq * batch) as u64, batch, pool);
        a.starts.push(Instant::now());
        log.submit(
            b,
            Ack {
                seq,
                tx: tx.clone(),
            },
        )?;
        outstanding += 1;
    }
    while outstanding > 0 {
        a.take(log, first, batch, rule)?;
        outstanding -= 1;
    }
    *purged = a.purged;
    Ok(RunOut {
        secs: t.elapsed().as_secs_f64(),
        entries: batches * batch,
        lat: a.lat,
        purges: a.purges,
    })
}

/// One writer thread: warm-up batches, the barrier, then its share of measured batches.
fn writer<L: Threaded>(
    log: &L,
    group: u64,
    warmup: usize,
    batches: usize,
    plan: &Plan,
    rule: Option<PurgeRule>,
    start: &Barrier,
) -> io::Result<RunOut>
where
    L::Batch: Send,
{
    let pool = payload_seeded(plan.payload, group);
    let mut next = 1u64;
    let mut purged = 0u64;
    let mut purges = 0;
    let mut lat = Vec::with_capacity(batches);
    for k in 0..warmup + batches {
        if k == warmup {
            start.wait();
        }
        let b = log.prepare(next, plan.batch, &pool);
        let s = Instant::now();
        log.write_durable(group, b)?;
        if k >= warmup {
            lat.push(s.elapsed());
        }
        next += plan.batch as u64;
        if let Some(p) = rule.and_then(|r| r.next(next - 1, purged)) {
            purges += log.purge(group, p, group == 1)? as u64;
            purged = p;
        }
    }
    Ok(RunOut {
        secs: 0.0,
        entries: batches * plan.batch,
        lat,
        purges,
    })
}

/// `threads` writers sharing `batches` measured batches; wall time from the barrier.
fn threaded_loop<L: Threaded>(
    log: &L,
    threads: usize,
    batches: usize,
    plan: &Plan,
    rule: Option<PurgeRule>,
) -> io::Result<RunOut>
where
    L::Batch: Send,
{
    let threads = threads.max(1);
    let per = (batches / threads).max(1);
    let warmup = WARMUP.div_ceil(threads);
    let rule = rule.map(|r| r.per_group(threads));
    let start = Barrier::new(threads + 1);
    let outs = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                s.spawn(move || writer(log, t as u64 + 1, warmup, per, plan, rule, start))
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let outs: Vec<io::Result<RunOut>> = hs
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("writer panicked")))
            })
            .collect();
        (t0.elapsed(), outs)
    });
    let (wall, outs) = outs;
    let mut all = RunOut {
        secs: wall.as_secs_f64(),
        entries: 0,
        lat: Vec::new(),
        purges: 0,
    };
    for o in outs {
        let o = o?;
        all.entries += o.entries;
        all.lat.extend(o.lat);
        all.purges += o.purges;
    }
    Ok(all)
}

/// Figures of one run: rates, ack latency, device writes and (chunkwal) sync counters.
fn figures(out: RunOut, payload: usize, device: Value, io: Option<IoCounters>) -> Value {
    let s = out.secs;
    let mut v = json!({
        "entries": out.entries,
        "secs": s,
        "entries_per_s": out.entries as f64 / s,
        "mb_per_s": (out.entries * payload) as f64 / s / 1e6,
        "ack_latency": lat_json(out.lat),
        "purges": out.purges,
        "device": device,
    });
    if let Some(c) = io {
        v["chunkwal"] = json!({
            "syncs": c.syncs,
            "syncs_per_s": c.syncs as f64 / s,
            "synced_bytes": c.synced_bytes,
            "mean_bytes_per_sync": c.synced_bytes as f64 / c.syncs.max(1) as f64,
            "dir_syncs": c.dir_syncs,
            "chunks_created": c.chunks_created,
            "chunks_recycled": c.chunks_recycled,
        });
    }
    v
}

/// Total size of the files under `dir` (the space the log holds).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One windowed configuration in a fresh directory.
fn windowed_one<L: Windowed>(
    root: &Path,
    plan: &Plan,
    window: usize,
    batches: usize,
    opts: &Opts,
    rule: Option<PurgeRule>,
    dev: Option<&Device>,
) -> io::Result<Value> {
    let dir = tempfile::tempdir_in(root)?;
    let pool = payload(plan.payload);
    let meter = Meter::start(dev)?;
    let mut log = L::open(dir.path(), opts)?;
    let mut purged = 0;
    let flow = Flow {
        batch: plan.batch,
        window,
        pool: &pool,
        rule,
    };
    windowed_loop(&mut log, 1, WARMUP, &flow, &mut purged)?;
    let before = log.counters();
    let first = 1 + (WARMUP * plan.batch) as u64;
    let out = windowed_loop(&mut log, first, batches, &flow, &mut purged)?;
    let io = log.counters().zip(before).map(|(a, b)| a.since(b));
    let held = dir_bytes(dir.path());
    drop(log);
    let written = ((WARMUP + batches) * plan.batch * plan.payload) as u64;
    let mut v = figures(out, plan.payload, meter.stop(written)?, io);
    v["window"] = json!(window);
    v["dir_bytes_at_end"] = json!(held);
    Ok(v)
}

/// One threaded configuration in a fresh directory.
fn threaded_one<L: Threaded>(
    root: &Path,
    plan: &Plan,
    threads: usize,
    batches: usize,
    opts: &Opts,
    rule: Option<PurgeRule>,
    dev: Option<&Device>,
) -> io::Result<Value>
where
    L::Batch: Send,
{
    let dir = tempfile::tempdir_in(root)?;
    let meter = Meter::start(dev)?;
    let log = L::open(dir.path(), opts)?;
    let out = threaded_loop(&log, threads, batches, plan, rule)?;
    let held = dir_bytes(dir.path());
    drop(log);
    let t = threads.max(1);
    let per = (batches / t).max(1);
    let written = (t * (WARMUP.div_ceil(t) + per) * plan.batch * plan.payload) as u64;
    let mut v = figures(out, plan.payload, meter.stop(written)?, None);
    v["threads"] = json!(threads);
    v["dir_bytes_at_end"] = json!(held);
    Ok(v)
}

fn windowed_all<L: Windowed>(root: &Path, plan: &Plan, dev: Option<&Device>) -> io::Result<Value> {
    let mut m = serde_json::Map::new();
    for &w in &plan.windows {
        let v = windowed_one::<L>(root, plan, w, plan.batches, &Opts::default(), None, dev)?;
        m.insert(format!("w{w}"), v);
    }
    Ok(Value::Object(m))
}

fn threaded_all<L: Threaded>(root: &Path, plan: &Plan, dev: Option<&Device>) -> io::Result<Value>
where
    L::Batch: Send,
{
    let mut m = serde_json::Map::new();
    for &t in &plan.threads {
        let v = threaded_one::<L>(root, plan, t, plan.batches, &Opts::default(), None, dev)?;
        m.insert(format!("t{t}"), v);
    }
    Ok(Value::Object(m))
}

/// The pipelined workload for one engine: `{"w1": .., "w8": ..}` or `{"t1": .., "t8": ..}`.
pub fn pipelined(
    engine: &str,
    root: &Path,
    plan: &Plan,
    dev: Option<&Device>,
) -> io::Result<Value> {
    match engine {
        "chunkwal" => windowed_all::<Chunkwal>(root, plan, dev),
        "raft-log" => windowed_all::<RaftLog>(root, plan, dev),
        "raft-log-nowait" => windowed_all::<RaftLogNoWait>(root, plan, dev),
        "raft-engine" => threaded_all::<RaftEngine>(root, plan, dev),
        "raft-engine-nolz4" => threaded_all::<RaftEngineNoLz4>(root, plan, dev),
        "okaywal" => threaded_all::<Okaywal>(root, plan, dev),
        other => Err(io::Error::other(format!("unknown engine {other}"))),
    }
}

/// The steady state: window (or threads) `plan.steady_window`, `plan.steady_mib` MiB of
/// payload, chunks of `plan.chunk_size`, purging to keep about two chunks of entries.
pub fn steady(engine: &str, root: &Path, plan: &Plan, dev: Option<&Device>) -> io::Result<Value> {
    let opts = Opts {
        chunk_size: Some(plan.chunk_size),
        ..Opts::default()
    };
    let per_chunk = plan.chunk_size / plan.payload.max(1) as u64;
    let rule = Some(PurgeRule {
        keep: 2 * per_chunk,
        step: (per_chunk / 4).max(1),
    });
    let batches = (plan.steady_mib << 20) / (plan.batch * plan.payload).max(1);
    let w = plan.steady_window;
    let mut v = match engine {
        "chunkwal" => windowed_one::<Chunkwal>(root, plan, w, batches, &opts, rule, dev),
        "raft-log" => windowed_one::<RaftLog>(root, plan, w, batches, &opts, rule, dev),
        "raft-log-nowait" => {
            windowed_one::<RaftLogNoWait>(root, plan, w, batches, &opts, rule, dev)
        }
        "raft-engine" => threaded_one::<RaftEngine>(root, plan, w, batches, &opts, rule, dev),
        "raft-engine-nolz4" => {
            threaded_one::<RaftEngineNoLz4>(root, plan, w, batches, &opts, rule, dev)
        }
        "okaywal" => threaded_one::<Okaywal>(root, plan, w, batches, &opts, rule, dev),
        other => Err(io::Error::other(format!("unknown engine {other}"))),
    }?;
    v["chunk_size"] = json!(plan.chunk_size);
    v["keep_entries"] = json!(2 * per_chunk);
    Ok(v)
}
