//! bench-compare: the same workloads through chunkwal, raft-engine, raft-log and okaywal.
//!
//! ```text
//! cargo run --release -- [--dir /tmp] [--entries 1000000] [--engines a,b,...] [--out F]
//!     [--rounds N] [--parts floor,basic,pipelined,steady] [--windows 1,8,32] [--threads 1,8]
//!     [--chunk-size 8M] [--steady-mib 64] [--steady-window 8] [--floor-mib 64]
//!     [--floor-small 500] [--docs DIR|none] [--section NAME] [--title TEXT]
//! cargo run --release -- tuning [--dir /tmp]          # chunk size / cache sweep + SVGs
//! cargo run --release -- compress [--entries 200000]  # LZ4 on JSON-like entries (compress.rs)
//! cargo run --release -- reopen [--rounds 5] [--reopen-sizes 1M:256,2M:64] [--cold 1]
//! cargo run --release -- groups [--groups 100,1000] [--rounds 5]   # multi-group (groups.rs)
//! ```
//! Every flag is described in docs/benchmarks.md, "Methods".
//! Reopen and memory are measured in a fresh child process per engine and repetition
//! (`reopen-child`, re-exec of this binary) so earlier runs do not pollute the RSS.

/// Run `$body` with `$L` the engine type named `$name` (defined before the modules, so
/// `reopen` uses it too).
macro_rules! with_engine {
    ($name:expr, $L:ident => $body:expr) => {
        match $name {
            "chunkwal" => {
                type $L = Chunkwal;
                $body
            }
            "raft-engine" => {
                type $L = RaftEngine;
                $body
            }
            "raft-engine-nolz4" => {
                type $L = RaftEngineNoLz4;
                $body
            }
            "raft-log" => {
                type $L = RaftLog;
                $body
            }
            "raft-log-nowait" => {
                type $L = RaftLogNoWait;
                $body
            }
            "okaywal" => {
                type $L = Okaywal;
                $body
            }
            other => Err(io::Error::other(format!("unknown engine {other}"))),
        }
    };
}

mod alloc;
mod compress;
mod diskstats;
mod engines;
mod floor;
mod groups;
mod groups_chunkwal;
mod groups_engines;
mod groups_lag;
mod groups_report;
mod pipe;
mod pipelined;
mod reopen;
mod reopen_tables;
mod report;
mod tables;
mod tuning;
mod workloads;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use engines::{Chunkwal, Okaywal, Opts, RaftEngine, RaftEngineNoLz4, RaftLog, RaftLogNoWait};
use workloads::Plan;

/// Every engine the harness knows, in table order.
pub const ENGINES: &[&str] = &[
    "chunkwal",
    "raft-engine",
    "raft-engine-nolz4",
    "raft-log",
    "raft-log-nowait",
    "okaywal",
];

pub struct Args {
    pub dir: PathBuf,
    pub plan: Plan,
    pub engines: Vec<String>,
    pub out: PathBuf,
    pub docs: PathBuf,
    rest: Vec<(String, String)>,
}

impl Args {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.rest
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
}

fn parse(argv: &[String]) -> io::Result<Args> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        dir: PathBuf::from("/tmp"),
        plan: Plan {
            payload: 256,
            batches: 2000,
            batch: 64,
            singles: 2000,
            buffered: 500_000,
            reads: 50_000,
            entries: 1_000_000,
            reopens: 3,
            windows: vec![1, 8, 32],
            threads: vec![1, 8],
            chunk_size: 8 << 20,
            steady_mib: 64,
            steady_window: 8,
            floor_mib: 64,
            floor_small: 500,
        },
        engines: ENGINES.iter().map(|s| s.to_string()).collect(),
        out: here.join("results.json"),
        docs: here.join("../docs"),
        rest: Vec::new(),
    };
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| io::Error::other(format!("{k} needs a value")))?;
        let num =
            || parse_size(v).ok_or_else(|| io::Error::other(format!("{k}: not a number: {v}")));
        let list = || {
            v.split(',')
                .map(parse_size)
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| io::Error::other(format!("{k}: not a list of numbers: {v}")))
        };
        match k.as_str() {
            "--dir" => a.dir = v.into(),
            "--out" => a.out = v.into(),
            "--docs" => a.docs = v.into(),
            "--engines" => a.engines = v.split(',').map(str::to_string).collect(),
            "--entries" => a.plan.entries = num()?,
            "--batches" => a.plan.batches = num()?,
            "--batch" => a.plan.batch = num()?,
            "--singles" => a.plan.singles = num()?,
            "--buffered" => a.plan.buffered = num()?,
            "--reads" => a.plan.reads = num()?,
            "--reopens" => a.plan.reopens = num()?,
            "--payload" => a.plan.payload = num()?,
            "--windows" => a.plan.windows = list()?,
            "--threads" => a.plan.threads = list()?,
            "--chunk-size" => a.plan.chunk_size = num()? as u64,
            "--steady-mib" => a.plan.steady_mib = num()?,
            "--steady-window" => a.plan.steady_window = num()?,
            "--floor-mib" => a.plan.floor_mib = num()?,
            "--floor-small" => a.plan.floor_small = num()?,
            _ => a.rest.push((k.clone(), v.clone())),
        }
    }
    Ok(a)
}

/// `123`, `1_000`, `64k`, `8M`, `1G` (binary suffixes).
fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim().replace('_', "");
    let (num, mul) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1 << 10),
        'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
        'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (&v[..], 1),
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}

/// Spawn `reopen-child` for one engine and parse its JSON line.
fn reopen_in_child(engine: &str, dir: &Path, entries: usize) -> io::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args(["reopen-child", "--engine", engine, "--entries"])
        .arg(entries.to_string())
        .arg("--dir")
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "reopen-child {engine} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| io::Error::other(format!("{e}: {line}")))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Build the log once, reopen it `reopens` times in fresh processes, keep medians.
pub fn reopen_test(engine: &str, root: &Path, plan: &Plan, opts: &Opts) -> io::Result<Value> {
    let dir = tempfile::tempdir_in(root)?;
    let build = with_engine!(engine, L => workloads::build_log::<L>(dir.path(), plan, opts))?;
    let runs = (0..plan.reopens.max(1))
        .map(|_| reopen_in_child(engine, dir.path(), plan.entries))
        .collect::<io::Result<Vec<_>>>()?;
    let pick = |k: &str| {
        median(
            runs.iter()
                .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
                .collect(),
        )
    };
    let n = plan.entries as f64;
    Ok(json!({
        "entries": plan.entries,
        "build_secs": build.as_secs_f64(),
        "open_secs": pick("open_secs"),
        "rss_delta_bytes": pick("rss_delta"),
        "rss_per_entry": pick("rss_delta") / n,
        "anon_delta_bytes": pick("anon_delta"),
        "anon_per_entry": pick("anon_delta") / n,
        "runs": runs,
    }))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "loadavg_at_start": load.trim(),
    })
}

/// The parts of a comparison run, in the order each round runs them.
pub const PARTS: &[&str] = &["floor", "basic", "pipelined", "steady"];

fn parts(a: &Args) -> io::Result<Vec<String>> {
    let v: Vec<String> = a
        .get("--parts")
        .map(|p| p.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| PARTS.iter().map(|s| s.to_string()).collect());
    if let Some(bad) = v.iter().find(|p| !PARTS.contains(&p.as_str())) {
        return Err(io::Error::other(format!(
            "unknown part {bad}; parts: {PARTS:?}"
        )));
    }
    Ok(v)
}

/// One engine, one part of a round: the keys it adds to the engine's round object.
fn run_part(
    a: &Args,
    part: &str,
    e: &str,
    dev: Option<&diskstats::Device>,
) -> io::Result<Vec<(String, Value)>> {
    let p = &a.plan;
    Ok(match part {
        "basic" => {
            let w = with_engine!(e, L => workloads::run_writes::<L>(&a.dir, p, dev))?;
            let opts = Opts {
                keep_all: true,
                ..Opts::default()
            };
            let mut kv: Vec<(String, Value)> = w
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            kv.push(("reopen".into(), reopen_test(e, &a.dir, p, &opts)?));
            kv
        }
        "pipelined" => vec![("pipelined".into(), pipelined::pipelined(e, &a.dir, p, dev)?)],
        "steady" => vec![("steady".into(), pipelined::steady(e, &a.dir, p, dev)?)],
        _ => Vec::new(),
    })
}

/// One round: the floor, then every part through every engine (engines interleaved
/// within each part, so a change in load hits them alike).
fn round(
    a: &Args,
    parts: &[String],
    r: usize,
    dev: Option<&diskstats::Device>,
    per: &mut [Vec<Value>],
) -> io::Result<Option<Value>> {
    let mut fl = None;
    let mut got: Vec<serde_json::Map<String, Value>> = vec![Default::default(); a.engines.len()];
    for part in parts {
        if part == "floor" {
            eprintln!("== round {r}: device floor");
            let fp = floor::FloorPlan {
                mib: a.plan.floor_mib,
                small: a.plan.floor_small,
            };
            fl = Some(floor::run(&a.dir, fp, dev)?);
            eprintln!("{}", serde_json::to_string(&fl).unwrap_or_default());
            continue;
        }
        for (k, e) in a.engines.iter().enumerate() {
            eprintln!("== round {r}, {e}: {part}");
            for (key, v) in run_part(a, part, e, dev)? {
                eprintln!("{key}: {}", serde_json::to_string(&v).unwrap_or_default());
                got[k].insert(key, v);
            }
        }
    }
    for (k, m) in got.into_iter().enumerate() {
        per[k].push(Value::Object(m));
    }
    Ok(fl)
}

fn compare(a: &Args) -> io::Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let started = started();
    let machine = machine();
    let parts = parts(a)?;
    let dev = diskstats::Device::of(&a.dir)
        .map_err(|e| eprintln!("no device bytes: {e}"))
        .ok();
    // Every number reported is the median over rounds.
    let rounds = a
        .get("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); a.engines.len()];
    let mut floors = Vec::new();
    for r in 0..rounds {
        floors.extend(round(a, &parts, r, dev.as_ref(), &mut per)?);
    }
    let mut results = serde_json::Map::new();
    let mut best = serde_json::Map::new();
    for (e, runs) in a.engines.iter().zip(&per) {
        results.insert(e.clone(), report::median_of(runs));
        best.insert(e.clone(), report::best_of(runs));
    }
    let best = report::with_ratios(json!({ "results": Value::Object(best) }));
    let doc = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "started": started,
        "machine": machine,
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "plan": format!("{:?}", a.plan),
        "parts": parts,
        "rounds": rounds,
        "per_round": a.engines.iter().zip(&per).map(|(e, r)| (e.clone(), json!(r))).collect::<serde_json::Map<_, _>>(),
        "dir": a.dir,
        "mount": diskstats::mount_of(&a.dir),
        "device": dev.as_ref().map(|d| json!({"name": d.name, "major": d.major, "minor": d.minor})),
        "floor": report::median_of(&floors),
        "floor_per_round": floors,
        "results": Value::Object(results),
    });
    let mut doc = report::with_ratios(doc);
    doc["best_of_rounds"] = best;
    std::fs::write(&a.out, serde_json::to_string_pretty(&doc)?)?;
    let md = tables::section(&doc, a.get("--title"));
    println!("{md}");
    if a.docs.as_os_str() != "none" {
        let section = a.get("--section").unwrap_or("tmp");
        let f = a.docs.join("benchmarks.md");
        tables::write_section(&f, section, &md)?;
        eprintln!("wrote section {section} of {}", f.display());
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// UTC start time, `date -u` style (no time crate in this harness).
fn started() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() -> io::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("reopen-child") => {
            let a = parse(&argv[1..])?;
            let engine = a.get("--engine").unwrap_or("chunkwal").to_string();
            let opts = Opts {
                keep_all: true,
                ..Opts::default()
            };
            let n = a.plan.entries as u64;
            let v =
                with_engine!(engine.as_str(), L => workloads::reopen_child::<L>(&a.dir, n, &opts))?;
            println!("{v}");
            Ok(())
        }
        Some("profile") => {
            let a = parse(&argv[1..])?;
            workloads::profile(&a.dir, &a.plan, a.get("--what").unwrap_or("buffered"))
        }
        Some("charts") => {
            let a = parse(&argv[1..])?;
            let f = a.out.with_file_name("tuning.json");
            let doc: Value = serde_json::from_slice(&std::fs::read(f)?)?;
            tuning::charts(&doc, &a.docs)
        }
        Some("tuning") => tuning::run(&parse(&argv[1..])?),
        Some("compress") => compress::run(&parse(&argv[1..])?),
        Some("reopen") => reopen::run(&parse(&argv[1..])?),
        Some("groups") => groups::run(&parse(&argv[1..])?),
        Some("groups-probe") => groups::probe(&parse(&argv[1..])?),
        Some("groups-table") => groups::table(&parse(&argv[1..])?),
        Some("reopen-probe") => reopen::probe(&parse(&argv[1..])?),
        Some("table") => {
            let a = parse(&argv[1..])?;
            let doc: Value = serde_json::from_slice(&std::fs::read(&a.out)?)?;
            println!("{}", tables::section(&doc, a.get("--title")));
            Ok(())
        }
        _ => compare(&parse(&argv)?),
    }
}
