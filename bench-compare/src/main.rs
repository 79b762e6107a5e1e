//! bench-compare: the same workloads through chunkwal, raft-engine, raft-log and okaywal.
//!
//! ```text
//! cargo run --release -- [--dir /tmp] [--entries 1000000] [--engines a,b,...] [--out F]
//! cargo run --release -- tuning [--dir /tmp]          # chunk size / cache sweep + SVGs
//! ```
//! Reopen and memory are measured in a fresh child process per engine and repetition
//! (`reopen-child`, re-exec of this binary) so earlier runs do not pollute the RSS.

mod engines;
mod report;
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
        let num = || {
            v.replace('_', "")
                .parse::<usize>()
                .map_err(|_| io::Error::other(format!("{k}: not a number: {v}")))
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
            _ => a.rest.push((k.clone(), v.clone())),
        }
    }
    Ok(a)
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

fn compare(a: &Args) -> io::Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let machine = machine();
    // Rounds interleave the engines so a change in machine load hits all of them alike;
    // every number reported is the median over rounds.
    let rounds = a
        .get("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); a.engines.len()];
    for round in 0..rounds {
        for (k, e) in a.engines.iter().enumerate() {
            eprintln!("== round {round}, {e}: writes and reads");
            let w = with_engine!(e.as_str(), L => workloads::run_writes::<L>(&a.dir, &a.plan))?;
            eprintln!(
                "== round {round}, {e}: reopen of {} entries",
                a.plan.entries
            );
            let opts = Opts {
                keep_all: true,
                ..Opts::default()
            };
            let r = reopen_test(e, &a.dir, &a.plan, &opts)?;
            let mut v = w;
            v["reopen"] = r;
            eprintln!("{}", serde_json::to_string(&v).unwrap_or_default());
            per[k].push(v);
        }
    }
    let mut results = serde_json::Map::new();
    let mut best = serde_json::Map::new();
    for (e, runs) in a.engines.iter().zip(&per) {
        results.insert(e.clone(), report::median_of(runs));
        best.insert(e.clone(), report::best_of(runs));
    }
    let best = report::with_ratios(json!({ "results": Value::Object(best) }));
    let doc = json!({
        "machine": machine,
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "plan": format!("{:?}", a.plan),
        "rounds": rounds,
        "per_round": a.engines.iter().zip(&per).map(|(e, r)| (e.clone(), json!(r))).collect::<serde_json::Map<_, _>>(),
        "dir": a.dir,
        "results": Value::Object(results),
    });
    let mut doc = report::with_ratios(doc);
    doc["best_of_rounds"] = best;
    std::fs::write(&a.out, serde_json::to_string_pretty(&doc)?)?;
    println!("## Median over {rounds} rounds\n\n{}", report::table(&doc));
    println!(
        "## Best round per engine and metric\n\n{}",
        report::table(&doc["best_of_rounds"])
    );
    eprintln!("wrote {}", a.out.display());
    Ok(())
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
        Some("table") => {
            let a = parse(&argv[1..])?;
            let doc: Value = serde_json::from_slice(&std::fs::read(&a.out)?)?;
            println!("## Median\n\n{}", report::table(&doc));
            println!("## Best round\n\n{}", report::table(&doc["best_of_rounds"]));
            Ok(())
        }
        _ => compare(&parse(&argv)?),
    }
}
