//! The workloads, generic over [`Log`]: every engine runs exactly the same code.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::diskstats::{Device, Meter};
use crate::engines::{Log, Opts};

/// Sizes of one comparison run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub payload: usize,
    /// Durable batches of `batch` entries.
    pub batches: usize,
    pub batch: usize,
    /// Durable single-entry appends.
    pub singles: usize,
    /// Entries appended buffered (in batches of `batch`).
    pub buffered: usize,
    /// Entries written, then read back warm.
    pub reads: usize,
    /// Entries in the reopen test.
    pub entries: usize,
    /// Reopen repetitions (fresh child process each).
    pub reopens: usize,
    /// Pipelined workload: flush windows of the callback engines (chunkwal, raft-log).
    pub windows: Vec<usize>,
    /// Pipelined workload: writer threads of the blocking engines (raft-engine, okaywal).
    pub threads: Vec<usize>,
    /// Steady state: segment size given to every engine (`Opts::chunk_size`).
    pub chunk_size: u64,
    /// Steady state: MiB of payload written.
    pub steady_mib: usize,
    /// Steady state: window (callback engines) or threads (blocking engines).
    pub steady_window: usize,
    /// Device floor: file size in MiB, and 16 KiB write + sync samples.
    pub floor_mib: usize,
    pub floor_small: usize,
}

/// A deterministic, incompressible payload.
/// Distinct payloads per entry: `POOL` different random payloads, cycled by index, so no
/// engine gains from compressing identical entries (real Raft payloads differ).
pub const POOL: usize = 1024;

/// The payload of entry `i`, from a pool made by [`payload`].
pub fn pick(pool: &Bytes, i: u64) -> Bytes {
    let len = pool.len() / POOL;
    let k = (i as usize % POOL) * len;
    pool.slice(k..k + len)
}

/// A pool of `POOL` random payloads of `len` bytes each, back to back.
pub fn payload(len: usize) -> Bytes {
    payload_seeded(len, 0)
}

/// Like [`payload`], from another seed: writer threads each get their own pool, so no two
/// threads write the same payloads.
pub fn payload_seeded(len: usize, seed: u64) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len * POOL)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Latency percentiles in microseconds: p50, p99, p99.9, max and the mean.
pub fn lat_json(mut v: Vec<Duration>) -> Value {
    v.sort();
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64;
    json!({
        "samples": v.len(),
        "p50_us": pct(&v, 0.5),
        "p99_us": pct(&v, 0.99),
        "p999_us": pct(&v, 0.999),
        "max_us": pct(&v, 1.0),
        "mean_us": mean * 1e6,
    })
}

/// Append `count` entries in batches, timing only the engine call. Returns total time and
/// per-batch latencies.
fn append_run<L: Log>(
    log: &mut L,
    first: u64,
    count: usize,
    batch: usize,
    p: &Bytes,
    durable: bool,
) -> io::Result<(Duration, Vec<Duration>)> {
    let mut lat = Vec::with_capacity(count / batch + 1);
    let mut total = Duration::ZERO;
    let mut i = first;
    let end = first + count as u64;
    while i < end {
        let n = batch.min((end - i) as usize);
        let b = log.prepare(i, n, p);
        let t = Instant::now();
        log.append(b, durable)?;
        let d = t.elapsed();
        lat.push(d);
        total += d;
        i += n as u64;
    }
    Ok((total, lat))
}

fn rate(entries: usize, payload: usize, t: Duration) -> Value {
    let s = t.as_secs_f64();
    json!({
        "entries": entries,
        "secs": s,
        "entries_per_s": entries as f64 / s,
        "mb_per_s": (entries * payload) as f64 / s / 1e6,
    })
}

/// `count` durable appends of `batch` entries after 16 unmeasured ones, in a fresh log;
/// device writes counted from before the open until after the drop.
fn durable<L: Log>(
    root: &Path,
    plan: &Plan,
    batch: usize,
    count: usize,
    dev: Option<&Device>,
) -> io::Result<Value> {
    let p = payload(plan.payload);
    let dir = tempfile::tempdir_in(root)?;
    let meter = Meter::start(dev)?;
    let mut log = L::open(dir.path(), &Opts::default())?;
    // Warm-up: a few appends (file creation, first faults) not measured.
    append_run(&mut log, 1, 16 * batch, batch, &p, true)?;
    let first = 1 + 16 * batch as u64;
    let n = count * batch;
    let (t, lat) = append_run(&mut log, first, n, batch, &p, true)?;
    drop(log);
    let mut v = rate(n, plan.payload, t);
    let key = if batch == 1 {
        "latency"
    } else {
        "batch_latency"
    };
    v[key] = lat_json(lat);
    v["device"] = meter.stop(((n + 16 * batch) * plan.payload) as u64)?;
    Ok(v)
}

/// Durable batches, durable singles, buffered, warm reads: each in a fresh directory.
/// Durable workloads also report device bytes written (open to close, `dev`).
pub fn run_writes<L: Log>(root: &Path, plan: &Plan, dev: Option<&Device>) -> io::Result<Value> {
    let p = payload(plan.payload);
    let mut out = serde_json::Map::new();

    out.insert(
        "durable_batch".into(),
        durable::<L>(root, plan, plan.batch, plan.batches, dev)?,
    );
    // Its own log, so its device writes are counted apart from the batches'.
    out.insert(
        "durable_single".into(),
        durable::<L>(root, plan, 1, plan.singles, dev)?,
    );

    if L::can_buffer() {
        let dir = tempfile::tempdir_in(root)?;
        let mut log = L::open(dir.path(), &Opts::default())?;
        append_run(&mut log, 1, 16 * plan.batch, plan.batch, &p, false)?;
        let first = 1 + 16 * plan.batch as u64;
        let (mut t, _) = append_run(&mut log, first, plan.buffered, plan.batch, &p, false)?;
        let s = Instant::now();
        log.settle()?;
        t += s.elapsed();
        out.insert("buffered".into(), rate(plan.buffered, plan.payload, t));
    } else {
        out.insert("buffered".into(), Value::Null);
    }

    {
        let dir = tempfile::tempdir_in(root)?;
        let opts = Opts {
            keep_all: true,
            ..Opts::default()
        };
        let mut log = L::open(dir.path(), &opts)?;
        append_run(&mut log, 1, plan.reads, 256, &p, false)?;
        log.sync()?;
        let n = plan.reads as u64;
        let window = plan.batch as u64;
        // One untimed pass, then three timed passes of range reads of `batch` entries.
        let pass = |log: &mut L| -> io::Result<usize> {
            let mut bytes = 0;
            let mut i = 1;
            while i <= n {
                let to = (i + window).min(n + 1);
                bytes += log.read(i, to)?;
                i = to;
            }
            Ok(bytes)
        };
        pass(&mut log)?;
        let t = Instant::now();
        for _ in 0..3 {
            let b = pass(&mut log)?;
            if b != plan.reads * plan.payload {
                return Err(io::Error::other(format!("read {b} payload bytes")));
            }
        }
        out.insert(
            "warm_read".into(),
            rate(3 * plan.reads, plan.payload, t.elapsed()),
        );
    }
    Ok(Value::Object(out))
}

/// Build the reopen fixture: `entries` entries in batches of 256, one sync, closed.
pub fn build_log<L: Log>(dir: &Path, plan: &Plan, opts: &Opts) -> io::Result<Duration> {
    let p = payload(plan.payload);
    let t = Instant::now();
    let mut log = L::open(dir, opts)?;
    append_run(&mut log, 1, plan.entries, 256, &p, false)?;
    log.settle()?;
    log.sync()?;
    drop(log);
    Ok(t.elapsed())
}

/// Resident and shared (file-backed) memory in bytes, from /proc/self/statm.
pub fn statm() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let f: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let page = 4096;
    (
        f.get(1).copied().unwrap_or(0) * page,
        f.get(2).copied().unwrap_or(0) * page,
    )
}

/// In the child process: open the log, measure time and memory, check it holds `entries`.
pub fn reopen_child<L: Log>(dir: &Path, entries: u64, opts: &Opts) -> io::Result<Value> {
    let (rss0, shared0) = statm();
    let t = Instant::now();
    let log = L::open(dir, opts)?;
    let secs = t.elapsed().as_secs_f64();
    let (rss1, shared1) = statm();
    let last = log.last_index();
    if last != Some(entries) {
        return Err(io::Error::other(format!("reopened log ends at {last:?}")));
    }
    // Hold the log until measured; dropping it is not part of the test.
    std::mem::forget(log);
    Ok(json!({
        "open_secs": secs,
        "rss_delta": rss1 as i64 - rss0 as i64,
        "anon_delta": (rss1 - shared1) as i64 - (rss0 - shared0) as i64,
        "rss_after": rss1,
    }))
}

/// chunkwal only, one workload, for `perf record` / callgrind: `buffered` appends,
/// `durable` 64-entry batches then single entries, `reopen` (build once, open 5 times), or
/// `build` / `open` (5 times) on `--dir` itself.
pub fn profile(root: &Path, plan: &Plan, what: &str) -> io::Result<()> {
    use crate::engines::Chunkwal;
    let p = payload(plan.payload);
    let dir = tempfile::tempdir_in(root)?;
    let t = Instant::now();
    match what {
        "buffered" => {
            let mut log = Chunkwal::open(dir.path(), &Opts::default())?;
            append_run(&mut log, 1, plan.buffered, plan.batch, &p, false)?;
        }
        "durable" => {
            let mut log = Chunkwal::open(dir.path(), &Opts::default())?;
            let n = plan.batches * plan.batch;
            append_run(&mut log, 1, n, plan.batch, &p, true)?;
            append_run(&mut log, 1 + n as u64, plan.singles, 1, &p, true)?;
        }
        // `build` then `open` on the same --dir (two processes, so each profiles alone).
        "build" => {
            build_log::<Chunkwal>(root, plan, &Opts::default())?;
        }
        "open" => {
            for _ in 0..5 {
                let log = Chunkwal::open(root, &Opts::default())?;
                if log.last_index() != Some(plan.entries as u64) {
                    return Err(io::Error::other("short log"));
                }
            }
        }
        "reopen" => {
            build_log::<Chunkwal>(dir.path(), plan, &Opts::default())?;
            eprintln!("built in {:?}", t.elapsed());
            let t = Instant::now();
            for _ in 0..5 {
                let log = Chunkwal::open(dir.path(), &Opts::default())?;
                if log.last_index() != Some(plan.entries as u64) {
                    return Err(io::Error::other("short log"));
                }
            }
            eprintln!("5 opens in {:?}", t.elapsed());
        }
        other => return Err(io::Error::other(format!("unknown workload {other}"))),
    }
    eprintln!("{what}: {:?}", t.elapsed());
    Ok(())
}
