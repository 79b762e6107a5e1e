//! The multi-group bench (issue #15): chunkwal against raft-engine on raft-engine's home
//! ground, the pattern of TiKV's raftstore.
//!
//! ```text
//! bench-compare groups [--dir D] [--groups 100,1000] [--rounds 5] [--mg-batches 100]
//!     [--mg-engines chunkwal,raft-engine] [--lag-groups 100,1000] [--threshold 256M]
//!     [--lag-chunk 64M] [--lag-mib 1024] [--purge-every 4] [--maint-every 8]
//!     [--mem-groups 10000] [--mem-entries 4] [--out F] [--docs DIR|none] [--section groups]
//! ```
//!
//! - **Throughput, reopen, memory.** For each group count G, `--rounds` rounds each run every
//!   engine in turn (A B A B ...), in a fresh directory: `--mg-batches` batches, each holding
//!   16 x 256 B entries (distinct random payloads) for EVERY group, made durable by one sync.
//!   Only the engine calls (building the engine's batch, writing, syncing) are timed. Then the
//!   log (G x 16 x batches entries) is closed and reopened in a fresh process
//!   (`groups-probe`), which times the open, counts the heap it leaves (`alloc.rs`) and
//!   reads the last entry of the first and the last group.
//! - **One lagging group.** Group 1 writes 16 entries once and never purges; every other
//!   group writes 16 entries per round and, every `--purge-every` rounds, purges all but its
//!   last 16 entries. Every `--maint-every` rounds the application's maintenance call runs
//!   (raft-engine `purge_expired_files`, chunkwal `pinning_groups`). chunkwal's
//!   `rewrite_threshold` and raft-engine's `purge_threshold` are both `--threshold`, the
//!   segment size `--lag-chunk`. The bytes of the files in the directory are sampled after
//!   every round: peak and final over the threshold.
//! - **Memory per group.** G = `--mem-groups` groups with `--mem-entries` entries each, one
//!   batch, one sync; the heap a fresh-process open leaves, per group.

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::diskstats::{Device, Meter};
use crate::groups_chunkwal::MgChunkwal;
use crate::groups_engines::{MgLog, MgOpts, MgRaftEngine};
use crate::report::median_of;
use crate::workloads::{lat_json, payload};
use crate::Args;

/// Entries per group per round, and their payload size (TiKV-like small entries).
pub const PER_GROUP: usize = 16;
pub const PAYLOAD: usize = 256;

/// The engine the ratios are taken against.
pub const BASELINE: &str = "raft-engine";

/// Run `$body` with `$L` the multi-group adapter of engine `$name`.
macro_rules! with_mg {
    ($name:expr, $L:ident => $body:expr) => {
        match $name {
            "chunkwal" => {
                type $L = MgChunkwal;
                $body
            }
            "raft-engine" | "raft-engine-nolz4" => {
                type $L = MgRaftEngine;
                $body
            }
            other => Err(io::Error::other(format!("groups: unknown engine {other}"))),
        }
    };
}

/// Everything one `groups` run does.
#[derive(Debug, Clone)]
pub struct Spec {
    pub groups: Vec<usize>,
    pub rounds: usize,
    pub batches: usize,
    pub engines: Vec<String>,
    pub lag_groups: Vec<usize>,
    pub threshold: u64,
    pub lag_chunk: u64,
    pub lag_mib: u64,
    pub purge_every: usize,
    pub maint_every: usize,
    pub mem_groups: usize,
    pub mem_entries: usize,
}

fn num(a: &Args, k: &str, default: usize) -> io::Result<usize> {
    match a.get(k) {
        None => Ok(default),
        Some(v) => {
            crate::parse_size(v).ok_or_else(|| io::Error::other(format!("{k}: bad number {v}")))
        }
    }
}

fn nums(a: &Args, k: &str, default: &str) -> io::Result<Vec<usize>> {
    let v = a.get(k).unwrap_or(default);
    if v == "none" {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|x| crate::parse_size(x).ok_or_else(|| io::Error::other(format!("{k}: bad {x}"))))
        .collect()
}

impl Spec {
    pub fn parse(a: &Args) -> io::Result<Spec> {
        let groups = nums(a, "--groups", "100,1000")?;
        let joined: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        Ok(Spec {
            lag_groups: nums(a, "--lag-groups", &joined.join(","))?,
            groups,
            rounds: num(a, "--rounds", 5)?.max(1),
            batches: num(a, "--mg-batches", 100)?.max(1),
            engines: a
                .get("--mg-engines")
                .unwrap_or("chunkwal,raft-engine")
                .split(',')
                .map(str::to_string)
                .collect(),
            threshold: num(a, "--threshold", 256 << 20)? as u64,
            lag_chunk: num(a, "--lag-chunk", 64 << 20)? as u64,
            lag_mib: num(a, "--lag-mib", 1024)? as u64,
            purge_every: num(a, "--purge-every", 4)?.max(1),
            maint_every: num(a, "--maint-every", 8)?.max(1),
            mem_groups: num(a, "--mem-groups", 10_000)?,
            mem_entries: num(a, "--mem-entries", 4)?.max(1),
        })
    }
}

/// The options of `engine` (LZ4 unless `raft-engine-nolz4`) on top of `base`.
pub(crate) fn opts_for(engine: &str, base: MgOpts) -> MgOpts {
    MgOpts {
        lz4: engine != "raft-engine-nolz4",
        ..base
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Groups `from..=to`, as ids.
fn ids(from: usize, to: usize) -> Vec<u64> {
    (from as u64..=to as u64).collect()
}

/// Round `k`'s batch: entries `k*16+1 ..= k*16+16` of every group in `groups`.
fn round_batch<L: MgLog>(
    log: &L,
    groups: &[u64],
    k: u64,
    pool: &bytes::Bytes,
    seq: &mut u64,
) -> Vec<(u64, L::Entries)> {
    let first = k * PER_GROUP as u64 + 1;
    groups
        .iter()
        .map(|&g| {
            let e = log.prepare(first, PER_GROUP, pool, *seq);
            *seq += PER_GROUP as u64;
            (g, e)
        })
        .collect()
}

/// Throughput of `batches` durable all-group batches into a fresh log in `dir`.
fn throughput<L: MgLog>(
    dir: &Path,
    o: &MgOpts,
    groups: usize,
    batches: usize,
    dev: Option<&Device>,
) -> io::Result<Value> {
    let mut log = L::open(dir, o)?;
    let pool = payload(PAYLOAD);
    let all = ids(1, groups);
    let mut seq = 0u64;
    let mut lat = Vec::with_capacity(batches);
    let meter = Meter::start(dev)?;
    for k in 0..batches as u64 {
        let b = round_batch(&log, &all, k, &pool, &mut seq);
        let t = Instant::now();
        log.write_durable(b)?;
        lat.push(t.elapsed());
    }
    let total: Duration = lat.iter().sum();
    let entries = (groups * PER_GROUP * batches) as f64;
    let bytes = entries as u64 * PAYLOAD as u64;
    let device = meter.stop(bytes)?;
    drop(log);
    Ok(json!({
        "entries": entries,
        "secs": total.as_secs_f64(),
        "entries_per_s": entries / total.as_secs_f64(),
        "mb_per_s": bytes as f64 / total.as_secs_f64() / 1e6,
        "batch_latency": lat_json(lat),
        "device": device,
    }))
}

/// `groups-probe --engine E --dir D --groups G --last L`: open in this fresh process, count
/// the heap the open leaves, check entry L of groups 1 and G; print one JSON line.
pub fn probe(a: &Args) -> io::Result<()> {
    crate::alloc::start();
    let engine = a.get("--engine").unwrap_or("chunkwal").to_string();
    let groups = num(a, "--groups", 1)? as u64;
    let last = num(a, "--last", 1)? as u64;
    let o = opts_for(&engine, MgOpts::default());
    let dir = a.dir.clone();
    let v = with_mg!(engine.as_str(), L => probe_open::<L>(&dir, &o, groups, last))?;
    println!("{v}");
    Ok(())
}

fn probe_open<L: MgLog>(dir: &Path, o: &MgOpts, groups: u64, last: u64) -> io::Result<Value> {
    crate::alloc::reset_peak();
    let h0 = crate::alloc::now();
    let t = Instant::now();
    let mut log = L::open(dir, o)?;
    let open_secs = t.elapsed().as_secs_f64();
    let h1 = crate::alloc::now();
    for g in [1, groups] {
        let got = log.entry_len(g, last)?;
        if got != Some(PAYLOAD) || log.entry_len(g, last + 1)?.is_some() {
            return Err(other(format!("reopened: group {g} entry {last}: {got:?}")));
        }
    }
    // Hold the log until measured; dropping it is not part of the test.
    std::mem::forget(log);
    let live = h1.live - h0.live;
    Ok(json!({
        "open_secs": open_secs,
        "heap_live_bytes": live,
        "heap_peak_bytes": h1.peak - h0.live,
    }))
}

/// Spawn `groups-probe` and parse its JSON line.
pub(crate) fn spawn_probe(engine: &str, dir: &Path, groups: usize, last: u64) -> io::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["groups-probe", "--engine", engine, "--groups"])
        .arg(groups.to_string())
        .arg("--last")
        .arg(last.to_string())
        .arg("--dir")
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(other(format!(
            "groups-probe {engine} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| other(format!("{e}: {line}")))
}

/// One engine, one round at G groups: throughput, then the reopen probe of that log.
fn one_round(a: &Args, s: &Spec, e: &str, g: usize, dev: Option<&Device>) -> io::Result<Value> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("groups-{e}-"))
        .tempdir_in(&a.dir)?;
    let o = opts_for(e, MgOpts::default());
    let mut v = with_mg!(e, L => throughput::<L>(dir.path(), &o, g, s.batches, dev))?;
    let last = (s.batches * PER_GROUP) as u64;
    let p = spawn_probe(e, dir.path(), g, last)?;
    let entries = (g * PER_GROUP * s.batches) as f64;
    v["reopen"] = json!({
        "entries": entries,
        "open_secs": p["open_secs"],
        "heap_live_bytes": p["heap_live_bytes"],
        "heap_peak_bytes": p["heap_peak_bytes"],
        "heap_per_entry": p["heap_live_bytes"].as_f64().unwrap_or(f64::NAN) / entries,
    });
    Ok(v)
}

/// All rounds at G groups: `{engine: median}` and `{engine: [rounds]}`.
fn at_groups(a: &Args, s: &Spec, g: usize, dev: Option<&Device>) -> io::Result<Value> {
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); s.engines.len()];
    for r in 0..s.rounds {
        for (k, e) in s.engines.iter().enumerate() {
            let v = one_round(a, s, e, g, dev)?;
            eprintln!("groups {g} round {r} {e}: {v}");
            per[k].push(v);
        }
    }
    let mut med = serde_json::Map::new();
    let mut runs = serde_json::Map::new();
    for (e, v) in s.engines.iter().zip(per) {
        med.insert(e.clone(), median_of(&v));
        runs.insert(e.clone(), json!(v));
    }
    Ok(json!({ "groups": g, "engines": med, "per_round": runs }))
}

/// Bytes of the files under `dir`: (apparent length, allocated blocks).
pub fn dir_bytes(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut alloc) = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_dir() {
            // raft-engine and chunkwal keep their files flat; count subdirectories anyway.
            continue;
        }
        len += m.len();
        alloc += m.blocks() * 512;
    }
    Ok((len, alloc))
}

/// `bench-compare groups`: see the module docs.
pub fn run(a: &Args) -> io::Result<()> {
    let t0 = Instant::now();
    let s = Spec::parse(a)?;
    std::fs::create_dir_all(&a.dir)?;
    let started = crate::started();
    let machine = crate::machine();
    let dev = Device::of(&a.dir)
        .map_err(|e| eprintln!("no device bytes: {e}"))
        .ok();
    let mut tp = Vec::new();
    for &g in &s.groups {
        tp.push(at_groups(a, &s, g, dev.as_ref())?);
    }
    let mut lag = Vec::new();
    for &g in &s.lag_groups {
        lag.push(crate::groups_lag::at_groups(a, &s, g, dev.as_ref())?);
    }
    let mem = crate::groups_lag::memory(a, &s)?;
    let doc = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "started": started,
        "machine": machine,
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "dir": a.dir,
        "mount": crate::diskstats::mount_of(&a.dir),
        "device": dev.as_ref().map(|d| json!({"name": d.name})),
        "spec": format!("{s:?}"),
        "rounds": s.rounds,
        "batches": s.batches,
        "baseline": BASELINE,
        "throughput": tp,
        "lagging": lag,
        "memory": mem,
        "run_secs": t0.elapsed().as_secs_f64(),
    });
    write_out(a, &doc)
}

/// Where the raw results go: `--out`, or `results-groups.json` beside the harness.
fn out_path(a: &Args) -> std::path::PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if a.out == here.join("results.json") {
        here.join("results-groups.json")
    } else {
        a.out.clone()
    }
}

fn write_out(a: &Args, doc: &Value) -> io::Result<()> {
    let out = out_path(a);
    std::fs::write(&out, serde_json::to_string_pretty(doc)?)?;
    emit(a, doc)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Print the tables and write them to the docs section (unless `--docs none`).
fn emit(a: &Args, doc: &Value) -> io::Result<()> {
    let md = crate::groups_report::section(doc, a.get("--title"));
    println!("{md}");
    if a.docs.as_os_str() != "none" {
        let section = a.get("--section").unwrap_or("groups");
        let f = a.docs.join("benchmarks.md");
        crate::tables::write_section(&f, section, &md)?;
        eprintln!("wrote section {section} of {}", f.display());
    }
    Ok(())
}

/// `bench-compare groups-table [--out F]`: the tables again, from a run's raw results.
pub fn table(a: &Args) -> io::Result<()> {
    let doc: Value = serde_json::from_slice(&std::fs::read(out_path(a))?)?;
    emit(a, &doc)
}

pub(crate) use with_mg;
