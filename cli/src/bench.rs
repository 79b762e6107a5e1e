//! `chunkwal bench`: a short benchmark of appends, durable appends, reads and reopen, plus
//! an estimate of index memory per entry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::fmt::{self, Table};
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
struct Samples {
    lat: Vec<Duration>,
    total: Duration,
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
    fn p(&mut self, q: f64) -> Duration {
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

/// Run `bench`.
pub fn run(a: Args) -> CmdResult {
    if a.entries == 0 || a.batch == 0 {
        return Err(Fail::error("--entries and --batch must be at least 1"));
    }
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            check_bench_dir(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("chunkwal-bench-")
                .tempdir()
                .map_err(|e| Fail::error(format!("cannot create a temporary directory: {e}")))?;
            tmp.path().to_path_buf()
        }
    };
    let cfg = Config::new(&dir)
        .chunk_size(a.chunk_size)
        .cache(a.cache_items, a.cache_bytes as usize);
    cfg.validate()?;
    let hide = a.json;
    let payload = Bytes::from(vec![0xA5u8; a.payload]);
    let pb = a.payload as u64;
    let wal = Wal::open(cfg.clone())?;
    let mut next = 1u64;
    let batch = |n: u64, next: &mut u64| -> Vec<(LogId, Bytes)> {
        let v = (*next..*next + n)
            .map(|i| (LogId::new(1, i), payload.clone()))
            .collect();
        *next += n;
        v
    };

    // 1. Durable batches, on the fresh log.
    let per_batch = a.sync == SyncMode::PerBatch;
    let nb = a
        .durable_batches
        .unwrap_or_else(|| a.entries.div_ceil(a.batch as u64).min(500));
    let b = bar(nb, "durable batches", hide);
    let mut durable = Samples::new();
    for _ in 0..nb {
        let v = batch(a.batch as u64, &mut next);
        let t = Instant::now();
        wal.append(v)?;
        if per_batch {
            wal.flush_blocking()?;
        }
        durable.add(t.elapsed());
        b.inc(1);
    }
    b.finish_and_clear();

    // 1b. The same batches with up to 8 flushes in flight (group commit).
    let pipe = pipelined(&wal, nb, || batch(a.batch as u64, &mut next), hide)?;

    // 2. Single-entry durable appends.
    let ns = a.single_appends.unwrap_or_else(|| a.entries.min(500));
    let b = bar(ns, "single-entry appends", hide);
    let mut single = Samples::new();
    for _ in 0..ns {
        let v = batch(1, &mut next);
        let t = Instant::now();
        wal.append(v)?;
        if per_batch {
            wal.flush_blocking()?;
        }
        single.add(t.elapsed());
        b.inc(1);
    }
    b.finish_and_clear();
    // 3. Buffered appends: no waiting for the disk.
    let b = bar(a.entries, "buffered appends", hide);
    let t = Instant::now();
    let mut left = a.entries;
    while left > 0 {
        let n = left.min(a.batch as u64);
        wal.append(batch(n, &mut next))?;
        b.inc(n);
        left -= n;
    }
    let buffered = t.elapsed();
    b.finish_and_clear();
    let t = Instant::now();
    wal.flush_blocking()?;
    let final_flush = t.elapsed();

    wal.flush_blocking()?;
    let last = next - 1;
    let total_entries = last;

    // 4. Warm reads: the entries the cache holds.
    let cached = (wal.stat().cache.items as u64).min(total_entries);
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
        warm_n += read_all(&wal, warm_from, last + 1, &b)?;
    }
    let warm = t.elapsed();
    let warm_hits = wal.access_stat().cache.hits - hits0;
    b.finish_and_clear();

    // 5. Cold reads: from the map, each record's CRC checked. Everything is durable (the
    // flush_blocking above), so this empties the cache.
    wal.evict_durable_from_cache();
    let b = bar(total_entries, "cold reads (map + CRC)", hide);
    let miss0 = wal.access_stat().cache.misses;
    let t = Instant::now();
    let cold_n = read_all(&wal, 1, last + 1, &b)?;
    let cold = t.elapsed();
    let cold_misses = wal.access_stat().cache.misses - miss0;
    b.finish_and_clear();

    // 6. 10k-entry range reads (cold: reads do not fill the cache).
    let range = total_entries.min(10_000);
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

    let stat = wal.stat();
    let chunks = stat.chunks.len();
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
        buffered,
        final_flush,
        durable,
        nb,
        pipe,
        single,
        ns,
        warm: (warm_n, warm, warm_hits),
        cold: (cold_n, cold, cold_misses),
        range,
        ranges,
        reopen,
        reopened_entries,
        mem,
        chunks,
        written,
        pb,
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

struct Results<'a> {
    a: &'a Args,
    dir: &'a Path,
    buffered: Duration,
    final_flush: Duration,
    durable: Samples,
    nb: u64,
    /// Durable batches with 8 flushes in flight: ack latencies, wall time, syncs.
    pipe: (Samples, Duration, u64),
    single: Samples,
    ns: u64,
    warm: (u64, Duration, u64),
    cold: (u64, Duration, u64),
    range: u64,
    ranges: Samples,
    reopen: Duration,
    reopened_entries: u64,
    mem: Result<(f64, u64), String>,
    chunks: usize,
    written: u64,
    pb: u64,
}

impl Results<'_> {
    fn durable_entries(&self) -> u64 {
        self.nb * self.a.batch as u64
    }

    fn json(mut self) -> Value {
        let a = self.a;
        let de = self.durable_entries();
        json!({
            "config": {
                "entries": a.entries, "payload": a.payload, "batch": a.batch,
                "sync": if a.sync == SyncMode::PerBatch { "per-batch" } else { "none" },
                "chunk_size": a.chunk_size, "cache_items": a.cache_items,
                "cache_bytes": a.cache_bytes, "dir": self.dir.display().to_string(),
            },
            "buffered_append": {
                "entries": a.entries, "secs": self.buffered.as_secs_f64(),
                "entries_per_sec": fmt::per_sec(a.entries, self.buffered),
                "mib_per_sec": fmt::mib_per_sec(a.entries * self.pb, self.buffered),
                "final_flush_us": fmt::micros(self.final_flush),
            },
            "durable_append": {
                "batches": self.nb, "entries": de,
                "entries_per_sec": fmt::per_sec(de, self.durable.total),
                "mib_per_sec": fmt::mib_per_sec(de * self.pb, self.durable.total),
                "p50_us": fmt::micros(self.durable.p(50.0)),
                "p99_us": fmt::micros(self.durable.p(99.0)),
            },
            "pipelined_append": {
                "batches": self.nb, "in_flight": 8, "entries": de,
                "entries_per_sec": fmt::per_sec(de, self.pipe.1),
                "p50_us": fmt::micros(self.pipe.0.p(50.0)),
                "p99_us": fmt::micros(self.pipe.0.p(99.0)),
                "syncs": self.pipe.2,
            },
            "single_append": {
                "count": self.ns,
                "entries_per_sec": fmt::per_sec(self.ns, self.single.total),
                "p50_us": fmt::micros(self.single.p(50.0)),
                "p99_us": fmt::micros(self.single.p(99.0)),
            },
            "warm_read": {
                "entries": self.warm.0, "cache_hits": self.warm.2,
                "entries_per_sec": fmt::per_sec(self.warm.0, self.warm.1),
            },
            "cold_read": {
                "entries": self.cold.0, "cache_misses": self.cold.2,
                "entries_per_sec": fmt::per_sec(self.cold.0, self.cold.1),
            },
            "range_read": {
                "entries": self.range, "reads": self.ranges.lat.len(),
                "p50_us": fmt::micros(self.ranges.p(50.0)),
                "p99_us": fmt::micros(self.ranges.p(99.0)),
            },
            "reopen": { "entries": self.reopened_entries, "ms": self.reopen.as_secs_f64() * 1e3 },
            "index_memory": match &self.mem {
                Ok((b, n)) => json!({"estimate": true, "bytes_per_entry": b, "entries": n,
                                     "method": "anonymous RSS delta around Wal::open in a fresh process"}),
                Err(e) => json!({"estimate": true, "bytes_per_entry": null, "error": e}),
            },
            "log": { "chunks": self.chunks, "written_bytes": self.written },
        })
    }

    fn table(mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let a = self.a;
        let sync = if a.sync == SyncMode::PerBatch {
            "flush per batch"
        } else {
            "no flush"
        };
        writeln!(
            out,
            "chunkwal bench: {} entries × {} payload, batch {}, chunk {}, cache {} items / {}",
            a.entries,
            fmt::bytes(self.pb),
            a.batch,
            fmt::bytes(a.chunk_size),
            a.cache_items,
            fmt::bytes(a.cache_bytes)
        )?;
        writeln!(out, "directory: {}\n", self.dir.display())?;
        let rate = |n: u64, d: Duration| format!("{} entries/s", fmt::count(fmt::per_sec(n, d)));
        let mibs = |n: u64, d: Duration| format!("{:.1} MiB/s", fmt::mib_per_sec(n, d));
        let mut t = Table::new(&["phase", "work", "rate", "throughput", "p50", "p99"]);
        t.row(vec![
            "buffered appends".into(),
            format!("{} entries", a.entries),
            rate(a.entries, self.buffered),
            mibs(a.entries * self.pb, self.buffered),
            String::new(),
            String::new(),
        ]);
        t.row(vec![
            "  then one flush".into(),
            fmt::duration(self.final_flush),
        ]);
        let de = self.durable_entries();
        let (dp50, dp99) = (self.durable.p(50.0), self.durable.p(99.0));
        t.row(vec![
            format!("durable batches ({sync})"),
            format!("{} × {}", self.nb, a.batch),
            rate(de, self.durable.total),
            mibs(de * self.pb, self.durable.total),
            fmt::duration(dp50),
            fmt::duration(dp99),
        ]);
        let (pp50, pp99) = (self.pipe.0.p(50.0), self.pipe.0.p(99.0));
        t.row(vec![
            format!("durable batches, 8 in flight ({} syncs)", self.pipe.2),
            format!("{} × {}", self.nb, a.batch),
            rate(de, self.pipe.1),
            mibs(de * self.pb, self.pipe.1),
            fmt::duration(pp50),
            fmt::duration(pp99),
        ]);
        let (sp50, sp99) = (self.single.p(50.0), self.single.p(99.0));
        t.row(vec![
            format!("single-entry appends ({sync})"),
            format!("{}", self.ns),
            rate(self.ns, self.single.total),
            String::new(),
            fmt::duration(sp50),
            fmt::duration(sp99),
        ]);
        if self.warm.0 == 0 {
            t.row(vec!["warm reads (cache hits)".into(), "cache empty".into()]);
        } else {
            t.row(vec![
                "warm reads (cache hits)".into(),
                format!("{} entries", self.warm.0),
                rate(self.warm.0, self.warm.1),
                mibs(self.warm.0 * self.pb, self.warm.1),
            ]);
        }
        t.row(vec![
            "cold reads (map + CRC)".into(),
            format!("{} entries", self.cold.0),
            rate(self.cold.0, self.cold.1),
            mibs(self.cold.0 * self.pb, self.cold.1),
        ]);
        let (rp50, rp99) = (self.ranges.p(50.0), self.ranges.p(99.0));
        t.row(vec![
            format!("range read of {} entries", self.range),
            format!("{} reads", self.ranges.lat.len()),
            String::new(),
            String::new(),
            fmt::duration(rp50),
            fmt::duration(rp99),
        ]);
        t.row(vec![
            "reopen (replay + index)".into(),
            format!("{} entries", self.reopened_entries),
            fmt::duration(self.reopen),
        ]);
        t.print(out)?;
        writeln!(
            out,
            "\nlog written: {} in {} chunks",
            fmt::bytes(self.written),
            self.chunks
        )?;
        match &self.mem {
            Ok((b, n)) => writeln!(
                out,
                "index memory: ~{b:.0} B/entry (estimate: anonymous RSS growth while opening \
                 {n} entries in a fresh process)"
            ),
            Err(e) => writeln!(out, "index memory: not measured ({e})"),
        }
    }
}
