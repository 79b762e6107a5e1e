//! `chunkwal bench`: a short benchmark of appends, durable appends, reads and reopen, plus
//! an estimate of index memory per entry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::bench_report::Results;
use crate::fmt;

use crate::{CmdResult, Fail};

/// When durable appends wait for the disk.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `flush_blocking` after every batch (and every single-entry append).
    PerBatch,
    /// Never wait for the disk inside the timed loops.
    None,
}

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Entries for the buffered-append phase (and so for the read phases).
    #[arg(long, default_value_t = 200_000)]
    pub entries: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Entries per append call (and per durable batch).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Wait for durability per batch, or not at all.
    #[arg(long, value_enum, default_value_t = SyncMode::PerBatch)]
    pub sync: SyncMode,
    /// Chunk file size (e.g. 64MiB, 1M, 65536).
    #[arg(long, default_value = "64MiB", value_parser = fmt::parse_size)]
    pub chunk_size: u64,
    /// Payload cache bound in entries.
    #[arg(long, default_value_t = 65_536)]
    pub cache_items: usize,
    /// Payload cache bound in bytes (e.g. 64MiB).
    #[arg(long, default_value = "64MiB", value_parser = fmt::parse_size)]
    pub cache_bytes: u64,
    /// Durable batches to time [default: entries / batch, at most 500].
    #[arg(long)]
    pub durable_batches: Option<u64>,
    /// Single-entry durable appends to time [default: entries, at most 500].
    #[arg(long)]
    pub single_appends: Option<u64>,
    /// Run in this directory (created if missing, must hold no log) instead of a
    /// temporary one; the log is left there.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the hidden `__rss-probe` command.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The log to open.
    pub dir: PathBuf,
}

/// Anonymous resident memory in bytes: `RssAnon` from /proc/self/status, else
/// (resident - shared) pages from /proc/self/statm.
fn anon_rss() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        for line in s.lines() {
            if let Some(v) = line.strip_prefix("RssAnon:") {
                let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
                return Some(kb * 1024);
            }
        }
    }
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let f: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Some(f.get(1)?.saturating_sub(*f.get(2)?) * 4096)
}

/// `__rss-probe DIR`: open the log in a fresh process and report the memory it took.
pub fn probe(a: ProbeArgs) -> CmdResult {
    let before = anon_rss().ok_or_else(|| Fail::error("cannot read /proc/self memory"))?;
    let t = Instant::now();
    let mut cfg = Config::new(&a.dir).cache(0, 0);
    cfg.create_if_missing = false;
    let wal = Wal::open(cfg)?;
    let open = t.elapsed();
    let after = anon_rss().ok_or_else(|| Fail::error("cannot read /proc/self memory"))?;
    let entries = wal.stat().entries;
    drop(wal);
    let v = json!({"before": before, "after": after, "entries": entries,
                   "open_us": fmt::micros(open)});
    let mut out = crate::stdout();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

fn bar(len: u64, what: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:28} {bar:30} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

/// Latency samples and their total.
pub(crate) struct Samples {
    pub lat: Vec<Duration>,
    pub total: Duration,
}

impl Samples {
    fn new() -> Self {
        Samples {
            lat: Vec::new(),
            total: Duration::ZERO,
        }
    }
    fn add(&mut self, d: Duration) {
        self.lat.push(d);
        self.total += d;
    }
    pub fn p(&mut self, q: f64) -> Duration {
        self.lat.sort_unstable();
        fmt::percentile(&self.lat, q)
    }
}

/// `nb` durable batches from `next_batch` with up to 8 `flush` callbacks outstanding: the
/// latency of each batch from its append to its callback, the wall time, and the syncs.
fn pipelined(
    wal: &Wal,
    nb: u64,
    mut next_batch: impl FnMut() -> Vec<(LogId, Bytes)>,
    hide: bool,
) -> Result<(Samples, Duration, u64), Fail> {
    const WINDOW: u64 = 8;
    let b = bar(nb, "durable batches, 8 in flight", hide);
    let syncs = wal.access_stat().syncs;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut lat = Samples::new();
    let wait = |lat: &mut Samples| -> Result<(), Fail> {
        let (d, r): (Duration, chunkwal::Result<()>) = rx
            .recv()
            .map_err(|_| Fail::error("the flush callback was dropped"))?;
        r?;
        lat.add(d);
        Ok(())
    };
    let t0 = Instant::now();
    for i in 0..nb {
        let start = Instant::now();
        wal.append(next_batch())?;
        let tx = tx.clone();
        wal.flush(move |r| {
            let _ = tx.send((start.elapsed(), r));
        })?;
        if i + 1 >= WINDOW {
            wait(&mut lat)?;
        }
        b.inc(1);
    }
    for _ in 0..nb.min(WINDOW - 1) {
        wait(&mut lat)?;
    }
    b.finish_and_clear();
    Ok((lat, t0.elapsed(), wal.access_stat().syncs - syncs))
}

/// Read `[from, to)` in calls of at most 1000 entries; returns entries read.
fn read_all(wal: &Wal, from: u64, to: u64, bar: &ProgressBar) -> Result<u64, Fail> {
    let mut n = 0;
    let mut i = from;
    while i < to {
        let j = (i + 1000).min(to);
        n += wal.read(i..j)?.len() as u64;
        bar.inc(j - i);
        i = j;
    }
    Ok(n)
}

fn check_bench_dir(dir: &Path) -> CmdResult {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(()); // Missing: the log creates it.
    };
    let holds_log = rd.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".chunk"))
    });
    if holds_log {
        return Err(Fail::error(format!(
            "{}: already holds a log; bench needs an empty directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Batches of distinct indexes with one shared payload.
struct Batches {
    payload: Bytes,
    next: u64,
}

impl Batches {
    fn take(&mut self, n: u64) -> Vec<(LogId, Bytes)> {
        let v = (self.next..self.next + n)
            .map(|i| (LogId::new(1, i), self.payload.clone()))
            .collect();
        self.next += n;
        v
    }
}

/// What the append phases measured.
pub(crate) struct Appends {
    pub buffered: Duration,
    pub final_flush: Duration,
    pub durable: Samples,
    pub nb: u64,
    /// Durable batches with 8 flushes in flight: ack latencies, wall time, syncs.
    pub pipe: (Samples, Duration, u64),
    pub single: Samples,
    pub ns: u64,
}

/// What the read phases measured: (entries, time, cache hits or misses).
pub(crate) struct Reads {
    pub warm: (u64, Duration, u64),
    pub cold: (u64, Duration, u64),
    pub range: u64,
    pub ranges: Samples,
}

/// The bench directory: the one given (it must not hold a log) or a temporary one.
fn bench_dir(a: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>), Fail> {
    match &a.dir {
        Some(d) => {
            check_bench_dir(d)?;
            Ok((d.clone(), None))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("chunkwal-bench-")
                .tempdir()
                .map_err(|e| Fail::error(format!("cannot create a temporary directory: {e}")))?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// Run `bench`.
pub fn run(a: Args) -> CmdResult {
    if a.entries == 0 || a.batch == 0 {
        return Err(Fail::error("--entries and --batch must be at least 1"));
    }
    let (dir, _tmp) = bench_dir(&a)?;
    let cfg = Config::new(&dir)
        .chunk_size(a.chunk_size)
        .cache(a.cache_items, a.cache_bytes as usize);
    cfg.validate()?;
    let wal = Wal::open(cfg.clone())?;
    let mut gen = Batches {
        payload: Bytes::from(vec![0xA5u8; a.payload]),
        next: 1,
    };
    let w = append_phases(&a, &wal, &mut gen)?;
    let r = read_phases(&a, &wal, gen.next - 1)?;
    let chunks = wal.stat().chunks.len();
    let written = wal.on_disk_size();
    wal.close()?;

    // 7. Reopen: replay every chunk and rebuild the index.
    let t = Instant::now();
    let wal = Wal::open(cfg)?;
    let reopen = t.elapsed();
    let reopened_entries = wal.stat().entries as u64;
    wal.close()?;

    // 8. Index memory: open the log in a fresh process and compare its anonymous RSS.
    let mem = rss_probe(&dir);
    let s = Results {
        a: &a,
        dir: &dir,
        w,
        r,
        reopen,
        reopened_entries,
        mem,
        chunks,
        written,
        pb: a.payload as u64,
    };
    let mut out = crate::stdout();
    if a.json {
        writeln!(out, "{}", s.json())?;
    } else {
        s.table(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Phases 1-3: durable batches (one at a time, then 8 in flight), single-entry durable
/// appends, buffered appends and the flush after them.
fn append_phases(a: &Args, wal: &Wal, gen: &mut Batches) -> Result<Appends, Fail> {
    let hide = a.json;
    let per_batch = a.sync == SyncMode::PerBatch;
    let batch = a.batch as u64;
    // 1. Durable batches, on the fresh log.
    let nb = a
        .durable_batches
        .unwrap_or_else(|| a.entries.div_ceil(batch).min(500));
    let durable = timed_appends(
        wal,
        nb,
        batch,
        per_batch,
        gen,
        bar(nb, "durable batches", hide),
    )?;
    // 1b. The same batches with up to 8 flushes in flight (group commit).
    let pipe = pipelined(wal, nb, || gen.take(batch), hide)?;
    // 2. Single-entry durable appends.
    let ns = a.single_appends.unwrap_or_else(|| a.entries.min(500));
    let b = bar(ns, "single-entry appends", hide);
    let single = timed_appends(wal, ns, 1, per_batch, gen, b)?;
    // 3. Buffered appends: no waiting for the disk.
    let b = bar(a.entries, "buffered appends", hide);
    let t = Instant::now();
    let mut left = a.entries;
    while left > 0 {
        let n = left.min(batch);
        wal.append(gen.take(n))?;
        b.inc(n);
        left -= n;
    }
    let buffered = t.elapsed();
    b.finish_and_clear();
    let t = Instant::now();
    wal.flush_blocking()?;
    let final_flush = t.elapsed();
    wal.flush_blocking()?;
    Ok(Appends {
        buffered,
        final_flush,
        durable,
        nb,
        pipe,
        single,
        ns,
    })
}

/// `count` appends of `n` entries, each timed (with its flush when `sync`).
fn timed_appends(
    wal: &Wal,
    count: u64,
    n: u64,
    sync: bool,
    gen: &mut Batches,
    b: ProgressBar,
) -> Result<Samples, Fail> {
    let mut lat = Samples::new();
    for _ in 0..count {
        let v = gen.take(n);
        let t = Instant::now();
        wal.append(v)?;
        if sync {
            wal.flush_blocking()?;
        }
        lat.add(t.elapsed());
        b.inc(1);
    }
    b.finish_and_clear();
    Ok(lat)
}

/// Phases 4-6: warm reads from the cache, cold reads from the map, 10k range reads.
fn read_phases(a: &Args, wal: &Wal, last: u64) -> Result<Reads, Fail> {
    let hide = a.json;
    // 4. Warm reads: the entries the cache holds.
    let cached = (wal.stat().cache.items as u64).min(last);
    let warm_from = last + 1 - cached;
    let passes = if cached == 0 {
        0
    } else {
        a.entries.div_ceil(cached).clamp(1, 20)
    };
    let b = bar(cached * passes, "warm reads (cache)", hide);
    let hits0 = wal.access_stat().cache.hits;
    let t = Instant::now();
    let mut warm_n = 0;
    for _ in 0..passes {
        warm_n += read_all(wal, warm_from, last + 1, &b)?;
    }
    let warm = (warm_n, t.elapsed(), wal.access_stat().cache.hits - hits0);
    b.finish_and_clear();

    // 5. Cold reads: from the map, each record's CRC checked. Everything is durable (the
    // flush_blocking above), so this empties the cache.
    wal.evict_durable_from_cache();
    let b = bar(last, "cold reads (map + CRC)", hide);
    let miss0 = wal.access_stat().cache.misses;
    let t = Instant::now();
    let cold_n = read_all(wal, 1, last + 1, &b)?;
    let cold = (cold_n, t.elapsed(), wal.access_stat().cache.misses - miss0);
    b.finish_and_clear();

    // 6. 10k-entry range reads (cold: reads do not fill the cache).
    let range = last.min(10_000);
    let reps = 20;
    let b = bar(reps, "10k range reads", hide);
    let mut ranges = Samples::new();
    for _ in 0..reps {
        let t = Instant::now();
        let got = wal.read(1..1 + range)?;
        ranges.add(t.elapsed());
        if got.len() as u64 != range {
            return Err(Fail::error(
                "range read returned the wrong number of entries",
            ));
        }
        b.inc(1);
    }
    b.finish_and_clear();
    Ok(Reads {
        warm,
        cold,
        range,
        ranges,
    })
}

/// (bytes per entry, entries) from the probe, or why it could not run.
fn rss_probe(dir: &Path) -> Result<(f64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("__rss-probe")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let entries = get("entries");
    if entries == 0 {
        return Err("the log holds no entries".into());
    }
    let delta = get("after").saturating_sub(get("before"));
    Ok((delta as f64 / entries as f64, entries))
}
