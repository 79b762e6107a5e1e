//! The reopen benchmark (issue #14): open time and index memory of a just-written log,
//! each open in a fresh process.
//!
//! ```text
//! bench-compare reopen [--dir D] [--rounds 5] [--reopen-sizes 1M:256,2M:64]
//!     [--reopen-engines chunkwal,raft-engine,raft-log,okaywal] [--scaling-sizes 1M,4M,10M|none]
//!     [--scaling-payload 64] [--cold 1] [--out F] [--docs DIR|none] [--section reopen]
//! ```
//!
//! Per size, every engine's log is written once (N entries of S distinct random bytes, in
//! batches of 64 without sync, then one sync, closed; chunkwal's open modes share one log).
//! Then `--rounds` rounds each probe every engine in turn (A B A B ...): the parent spawns
//! `bench-compare reopen-probe`, which opens the log, reads the last entry, and prints the
//! open time, the heap bytes the open left live (the counting allocator of `alloc.rs`),
//! the peak heap during the open and the RSS. Figures are medians over the rounds.
//! Before each warm probe the log's files are read once, so the page cache holds them
//! whatever ran before. `--cold 1` (root only; it empties the page cache of the whole
//! machine) adds, after the warm probes of a round, one probe per engine preceded by
//! `sync` and `echo 3 > /proc/sys/vm/drop_caches`.
//!
//! The scaling table is chunkwal only: N x `--scaling-payload` bytes for each N of
//! `--scaling-sizes`, every chunkwal open mode, with the number of chunks.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

use crate::engines::{
    Chunkwal, Log, Okaywal, Opts, RaftEngine, RaftEngineNoLz4, RaftLog, RaftLogNoWait,
};
use crate::workloads::{payload, statm};
use crate::Args;

/// How an open mode changes the default [`chunkwal::Config`].
type Mode = fn(chunkwal::Config) -> chunkwal::Config;

/// chunkwal's open modes, by engine name. A new mode is one line here; every mode opens the
/// same log (built with the defaults). `chunkwal` is the default (`VerifyOnOpen::Lazy`).
pub const CHUNKWAL_MODES: &[(&str, Mode)] = &[
    ("chunkwal", |c| c),
    ("chunkwal-full", |c| {
        c.verify_on_open(chunkwal::VerifyOnOpen::Full)
    }),
];

/// Peers of the comparison table unless `--reopen-engines` says otherwise. For 10M entries
/// pass `--reopen-engines chunkwal,raft-engine`: raft-log holds every payload in memory
/// (~800 B per 64 B entry) and okaywal syncs every batch, so building takes minutes.
const DEFAULT_PEERS: &[&str] = &["raft-engine", "raft-log", "okaywal"];

/// The engine the ratios are taken against.
pub const BASELINE: &str = "raft-engine";

/// Entries written per batch when building a log.
const BATCH: usize = 64;

/// One log shape: `entries` entries of `payload` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub entries: usize,
    pub payload: usize,
}

/// `123`, `1k` (1,000), `2M` (2,000,000), `1G`: entry counts are decimal.
fn parse_count(v: &str) -> Option<usize> {
    let v = v.trim().replace('_', "");
    let (num, mul) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1_000),
        'm' | 'M' => (&v[..v.len() - 1], 1_000_000),
        'g' | 'G' => (&v[..v.len() - 1], 1_000_000_000),
        _ => (&v[..], 1),
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}

fn bad(flag: &str, v: &str) -> io::Error {
    io::Error::other(format!("{flag}: cannot parse {v:?}"))
}

/// `1M:256,2M:64`: entries (decimal) and payload bytes per size.
fn parse_sizes(v: &str) -> io::Result<Vec<Size>> {
    v.split(',')
        .map(|s| {
            let (n, p) = s.split_once(':').ok_or_else(|| bad("--reopen-sizes", s))?;
            Ok(Size {
                entries: parse_count(n).ok_or_else(|| bad("--reopen-sizes", n))?,
                payload: parse_count(p).ok_or_else(|| bad("--reopen-sizes", p))?,
            })
        })
        .collect()
}

fn is_chunkwal(engine: &str) -> bool {
    CHUNKWAL_MODES.iter().any(|(n, _)| *n == engine)
}

fn chunkwal_config(engine: &str, dir: &Path) -> Option<chunkwal::Config> {
    let (_, mode) = CHUNKWAL_MODES.iter().find(|(n, _)| *n == engine)?;
    Some(mode(chunkwal::Config::new(dir)))
}

/// The peers' options: okaywal keeps every entry (no checkpoint), as a Raft log must.
fn peer_opts() -> Opts {
    Opts {
        keep_all: true,
        ..Opts::default()
    }
}

/// Which log an engine opens: chunkwal's modes share one.
fn log_of(engine: &str) -> &str {
    if is_chunkwal(engine) {
        "chunkwal"
    } else {
        engine
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

// ---------------------------------------------------------------- the child

/// `reopen-probe --engine E --dir D --entries N --payload S`: open, read the last entry,
/// print one JSON line.
pub fn probe(a: &Args) -> io::Result<()> {
    crate::alloc::start();
    let engine = a.get("--engine").unwrap_or("chunkwal").to_string();
    let size = Size {
        entries: a.plan.entries,
        payload: a.plan.payload,
    };
    let v = if let Some(cfg) = chunkwal_config(&engine, &a.dir) {
        measure(
            size,
            || chunkwal::Wal::open(cfg).map(Chunkwal).map_err(other),
            |l| Some(l.0.stat().chunks.len()),
        )?
    } else {
        let dir = a.dir.clone();
        with_engine!(engine.as_str(), L => measure(size, || L::open(&dir, &peer_opts()), |_| None))?
    };
    println!("{v}");
    Ok(())
}

/// Time `open`, count what it leaves on the heap, then read the last entry.
fn measure<L: Log>(
    size: Size,
    open: impl FnOnce() -> io::Result<L>,
    chunks: impl Fn(&L) -> Option<usize>,
) -> io::Result<Value> {
    let n = size.entries as u64;
    let (rss0, shared0) = statm();
    crate::alloc::reset_peak();
    let h0 = crate::alloc::now();
    let t = Instant::now();
    let mut log = open()?;
    let open_secs = t.elapsed().as_secs_f64();
    let h1 = crate::alloc::now();
    let (rss1, shared1) = statm();
    let t = Instant::now();
    let got = log.read(n, n + 1)?;
    let read_secs = t.elapsed().as_secs_f64();
    if got != size.payload || log.last_index() != Some(n) {
        return Err(other(format!(
            "reopened log: last entry {n} has {got} bytes, last index {:?}",
            log.last_index()
        )));
    }
    let chunks = chunks(&log);
    // Hold the log until measured; dropping it is not part of the test.
    std::mem::forget(log);
    let live = h1.live - h0.live;
    Ok(json!({
        "open_secs": open_secs,
        "read_last_secs": read_secs,
        "ready_secs": open_secs + read_secs,
        "heap_live_bytes": live,
        "heap_per_entry": live as f64 / n as f64,
        "heap_peak_bytes": h1.peak - h0.live,
        "rss_after": rss1,
        "rss_delta": rss1 as i64 - rss0 as i64,
        "anon_delta": (rss1 - shared1) as i64 - (rss0 - shared0) as i64,
        "chunks": chunks,
    }))
}

// ---------------------------------------------------------------- the parent

/// Write the log of `engine` (any chunkwal mode writes with the defaults).
fn build(engine: &str, dir: &Path, size: Size) -> io::Result<Value> {
    let t = Instant::now();
    if is_chunkwal(engine) {
        fill(Chunkwal::open(dir, &Opts::default())?, size)?;
    } else {
        with_engine!(engine, L => fill(L::open(dir, &peer_opts())?, size))?;
    }
    let secs = t.elapsed().as_secs_f64();
    let (files, bytes, disk) = files_in(dir)?;
    Ok(json!({ "build_secs": secs, "files": files, "bytes": bytes, "disk_bytes": disk }))
}

/// Append `size.entries` entries in batches of [`BATCH`], no sync between, one at the end.
fn fill<L: Log>(mut log: L, size: Size) -> io::Result<()> {
    let p = payload(size.payload);
    let mut i = 1u64;
    let end = size.entries as u64 + 1;
    while i < end {
        let n = BATCH.min((end - i) as usize);
        let b = log.prepare(i, n, &p);
        log.append(b, false)?;
        i += n as u64;
    }
    log.settle()?;
    log.sync()
}

/// Every regular file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            walk(&e.path(), out)?;
        } else if m.is_file() {
            out.push((e.path(), m));
        }
    }
    Ok(())
}

/// (files, apparent bytes, allocated bytes) under `dir`.
fn files_in(dir: &Path) -> io::Result<(usize, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut v = Vec::new();
    walk(dir, &mut v)?;
    let bytes = v.iter().map(|(_, m)| m.len()).sum();
    let disk = v.iter().map(|(_, m)| m.blocks() * 512).sum();
    Ok((v.len(), bytes, disk))
}

/// Read every file of the log once, so its pages are in the page cache.
fn warm_up(dir: &Path) -> io::Result<()> {
    let mut v = Vec::new();
    walk(dir, &mut v)?;
    let mut buf = vec![0u8; 1 << 20];
    for (p, _) in v {
        let mut f = std::fs::File::open(p)?;
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// Write back dirty pages, then drop the page cache, dentries and inodes (root only).
/// Then read this binary and its shared libraries back in, so a cold probe faults in the
/// log's pages, not the harness's code.
fn drop_caches() -> io::Result<()> {
    let ok = Command::new("sync").status()?.success();
    if !ok {
        return Err(other("sync failed"));
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| other(format!("drop_caches (needs root): {e}")))?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .collect();
    files.dedup();
    let mut buf = vec![0u8; 1 << 20];
    for p in files {
        if let Ok(mut f) = std::fs::File::open(p) {
            while f.read(&mut buf)? > 0 {}
        }
    }
    Ok(())
}

/// Spawn `reopen-probe` for one engine and parse its JSON line.
fn spawn_probe(engine: &str, dir: &Path, size: Size) -> io::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["reopen-probe", "--engine", engine, "--entries"])
        .arg(size.entries.to_string())
        .arg("--payload")
        .arg(size.payload.to_string())
        .arg("--dir")
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(other(format!(
            "reopen-probe {engine} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| other(format!("{e}: {line}")))
}

/// What one size measures: which engines, how many rounds, cold probes or not.
struct Plan<'a> {
    root: &'a Path,
    engines: &'a [String],
    rounds: usize,
    cold: bool,
}

/// One size: build each log once, probe in interleaved rounds, delete the logs.
fn measure_size(p: &Plan, size: Size) -> io::Result<Value> {
    let mut logs: Vec<(String, tempfile::TempDir, Value)> = Vec::new();
    for e in p.engines {
        let name = log_of(e);
        if logs.iter().any(|(n, _, _)| n == name) {
            continue;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("reopen-{name}-"))
            .tempdir_in(p.root)?;
        eprintln!("== build {name}: {} x {} B", size.entries, size.payload);
        let b = build(e, dir.path(), size)?;
        eprintln!("{b}");
        logs.push((name.to_string(), dir, b));
    }
    let dir_of = |e: &str| {
        let (_, d, b) = logs.iter().find(|(n, _, _)| n == log_of(e)).expect("built");
        (d.path().to_path_buf(), b.clone())
    };
    let mut warm: Vec<Vec<Value>> = vec![Vec::new(); p.engines.len()];
    let mut cold: Vec<Vec<Value>> = vec![Vec::new(); p.engines.len()];
    for r in 0..p.rounds {
        for (k, e) in p.engines.iter().enumerate() {
            let (d, _) = dir_of(e);
            warm_up(&d)?;
            let v = spawn_probe(e, &d, size)?;
            eprintln!("round {r} {e} warm: {v}");
            warm[k].push(v);
        }
        for (k, e) in p.engines.iter().enumerate().filter(|_| p.cold) {
            let (d, _) = dir_of(e);
            drop_caches()?;
            let v = spawn_probe(e, &d, size)?;
            eprintln!("round {r} {e} cold: {v}");
            cold[k].push(v);
        }
    }
    let mut out = serde_json::Map::new();
    for (k, e) in p.engines.iter().enumerate() {
        let (_, b) = dir_of(e);
        let mut v = json!({ "build": b, "warm": crate::report::median_of(&warm[k]),
            "warm_runs": warm[k] });
        if p.cold {
            v["cold"] = crate::report::median_of(&cold[k]);
            v["cold_runs"] = json!(cold[k]);
        }
        out.insert(e.clone(), v);
    }
    drop(logs); // deletes every log of this size
    let mut v = json!({ "entries": size.entries, "payload": size.payload, "engines": out });
    v["ratios"] = ratios(&v["engines"]);
    Ok(v)
}

/// Each engine over [`BASELINE`]: time until readable and live heap per entry.
fn ratios(engines: &Value) -> Value {
    let base = &engines[BASELINE];
    let mut out = serde_json::Map::new();
    for (e, v) in engines.as_object().into_iter().flatten() {
        let mut r = serde_json::Map::new();
        for cache in ["warm", "cold"] {
            for key in ["ready_secs", "open_secs", "heap_per_entry"] {
                let (a, b) = (v[cache][key].as_f64(), base[cache][key].as_f64());
                if let (Some(a), Some(b)) = (a, b) {
                    r.insert(format!("{cache}.{key}"), json!(a / b));
                }
            }
        }
        out.insert(e.clone(), Value::Object(r));
    }
    Value::Object(out)
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::to_string).collect()
}

/// `bench-compare reopen`: the comparison sizes, then the chunkwal scaling table.
pub fn run(a: &Args) -> io::Result<()> {
    let t0 = Instant::now();
    let started = crate::started();
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let default_engines: Vec<&str> = CHUNKWAL_MODES
        .iter()
        .map(|(n, _)| *n)
        .chain(DEFAULT_PEERS.iter().copied())
        .collect();
    let engines = list(
        a.get("--reopen-engines")
            .unwrap_or(&default_engines.join(",")),
    );
    let sizes = parse_sizes(a.get("--reopen-sizes").unwrap_or("1M:256,2M:64"))?;
    let scaling_payload = match a.get("--scaling-payload") {
        Some(v) => parse_count(v).ok_or_else(|| bad("--scaling-payload", v))?,
        None => 64,
    };
    let scaling: Vec<usize> = match a.get("--scaling-sizes").unwrap_or("1M,4M,10M") {
        "none" => Vec::new(),
        v => v
            .split(',')
            .map(|n| parse_count(n).ok_or_else(|| bad("--scaling-sizes", n)))
            .collect::<io::Result<_>>()?,
    };
    let rounds = a
        .get("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    let cold = a.get("--cold").is_some_and(|v| v == "1");
    if cold {
        drop_caches()?; // fail early without root
    }
    std::fs::create_dir_all(&a.dir)?;
    let plan = Plan {
        root: &a.dir,
        engines: &engines,
        rounds,
        cold,
    };
    let compare = sizes
        .iter()
        .map(|s| measure_size(&plan, *s))
        .collect::<io::Result<Vec<_>>>()?;
    let modes: Vec<String> = CHUNKWAL_MODES.iter().map(|(n, _)| n.to_string()).collect();
    let plan = Plan {
        engines: &modes,
        ..plan
    };
    let scale = scaling
        .iter()
        .map(|&entries| {
            measure_size(
                &plan,
                Size {
                    entries,
                    payload: scaling_payload,
                },
            )
        })
        .collect::<io::Result<Vec<_>>>()?;
    let doc = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "started": started,
        "loadavg_at_start": load0.trim(),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "machine": crate::machine(),
        "dir": a.dir,
        "mount": crate::diskstats::mount_of(&a.dir),
        "rounds": rounds,
        "cold": cold,
        "baseline": BASELINE,
        "sizes": compare,
        "scaling": scale,
        "run_secs": t0.elapsed().as_secs_f64(),
    });
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = if a.out == here.join("results.json") {
        here.join("results-reopen.json")
    } else {
        a.out.clone()
    };
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    let md = crate::reopen_tables::section(&doc, a.get("--title"));
    println!("{md}");
    if a.docs.as_os_str() != "none" {
        let section = a.get("--section").unwrap_or("reopen");
        let f = a.docs.join("benchmarks.md");
        crate::tables::write_section(&f, section, &md)?;
        eprintln!("wrote section {section} of {}", f.display());
    }
    eprintln!(
        "wrote {} in {:.0} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_decimal_counts() {
        let v = parse_sizes("1M:256,2M:64,10k:4k").unwrap();
        let got: Vec<(usize, usize)> = v.iter().map(|s| (s.entries, s.payload)).collect();
        assert_eq!(got, [(1_000_000, 256), (2_000_000, 64), (10_000, 4_000)]);
        assert!(parse_sizes("1M").is_err());
        assert!(parse_sizes("1M:x").is_err());
    }

    #[test]
    fn chunkwal_modes_share_one_log() {
        for (name, _) in CHUNKWAL_MODES {
            assert_eq!(log_of(name), "chunkwal");
        }
        assert_eq!(log_of("raft-engine"), "raft-engine");
    }
}
