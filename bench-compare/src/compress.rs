//! `compress`: compressible (JSON-like) entries through chunkwal with LZ4 batch compression
//! (`Compression::lz4`, feature `compression`) and raft-engine with its LZ4 batch
//! compression (`batch_compression_threshold`, default 8 KiB), each also without
//! compression. One run, engines interleaved within each round; medians over rounds.
//!
//! ```text
//! cargo run --release -- compress [--dir /tmp] [--entries 200000] [--payload 256]
//!     [--batch 64] [--rounds 3] [--threshold 8k] [--out compress.json]
//! ```
//! (`--entries` defaults to the harness's 1M; `--threshold` is chunkwal's `min_batch_bytes`,
//! matching raft-engine's default batch compression threshold.)
//!
//! Per engine: buffered appends of `--batch` entries per call, then one sync (timed
//! together: entries/s), the log's bytes per payload byte (chunkwal: the bytes of records
//! in its chunks, as chunks are preallocated files; raft-engine: the sizes of its files) and
//! the device bytes written per payload byte (`/proc/diskstats`, after `syncfs`; other
//! writers on the device add to it), then a reopen in this process and a read of every
//! entry, 1024 at a time (entries/s: chunkwal decompresses each batch once into its cache).

use std::io;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::diskstats::{self, Device, Meter};
use crate::engines::{Log, Opts, RaftEngine, RaftEngineEntry, REGION};
use crate::Args;

const ENGINES: &[&str] = &[
    "chunkwal-lz4",
    "chunkwal",
    "raft-engine",
    "raft-engine-nolz4",
];

/// A JSON-like payload of exactly `len` bytes: field names repeat, values vary (an order
/// event with a few line items, ids, amounts and a trace id from a xorshift stream).
pub fn json_entry(i: u64, len: usize) -> Bytes {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let statuses = ["new", "paid", "shipped", "delivered", "refunded"];
    let mut s = format!(
        "{{\"ts\":{},\"op\":\"put\",\"table\":\"orders\",\"key\":\"order-{:010}\",\
         \"customer\":\"cust-{:06}\",\"status\":\"{}\",\"currency\":\"EUR\",\"trace\":\"{:016x}\",\"items\":[",
        1_733_000_000_000u64 + i * 7,
        i,
        next() % 100_000,
        statuses[(next() % 5) as usize],
        next()
    );
    while s.len() + 2 < len {
        let v = next();
        s.push_str(&format!(
            "{{\"sku\":\"SKU-{:05}\",\"qty\":{},\"price\":{}.{:02}}},",
            v % 20_000,
            1 + v % 9,
            (v >> 20) % 500,
            (v >> 40) % 100
        ));
    }
    s.truncate(len.saturating_sub(2));
    s.push_str("]}");
    Bytes::from(s)
}

struct Plan {
    entries: u64,
    payload: usize,
    batch: u64,
    threshold: usize,
}

/// Sum of the file sizes under `dir` (raft-engine's log files).
fn file_bytes(dir: &Path) -> io::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            n += m.len();
        }
    }
    Ok(n)
}

fn chunkwal_cfg(dir: &Path, lz4: Option<usize>) -> chunkwal::Config {
    let c = chunkwal::Config::new(dir);
    match lz4 {
        Some(t) => c.compression(chunkwal::Compression::lz4(t)),
        None => c,
    }
}

/// Writes, size, reopen and read of one chunkwal log.
fn run_chunkwal(
    dir: &Path,
    p: &Plan,
    pool: &[Bytes],
    lz4: bool,
    dev: Option<&Device>,
) -> io::Result<Value> {
    let lz4 = lz4.then_some(p.threshold);
    let wal = chunkwal::Wal::open(chunkwal_cfg(dir, lz4)).map_err(io::Error::other)?;
    let batches: Vec<Vec<(chunkwal::LogId, Bytes)>> = (0..p.entries / p.batch)
        .map(|b| {
            (b * p.batch + 1..=(b + 1) * p.batch)
                .map(|i| {
                    (
                        chunkwal::LogId::new(1, i),
                        pool[(i as usize) % pool.len()].clone(),
                    )
                })
                .collect()
        })
        .collect();
    let meter = Meter::start(dev)?;
    let t = Instant::now();
    for b in batches {
        wal.append(b).map_err(io::Error::other)?;
    }
    wal.flush_blocking().map_err(io::Error::other)?;
    let write = t.elapsed().as_secs_f64();
    let log_bytes = wal.on_disk_size();
    wal.close().map_err(io::Error::other)?;
    let device = meter.stop(payload_bytes(p))?;
    let t = Instant::now();
    let wal = chunkwal::Wal::open(chunkwal_cfg(dir, lz4)).map_err(io::Error::other)?;
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut got = 0u64;
    let mut from = 1;
    while from <= p.entries {
        let to = (from + 1024).min(p.entries + 1);
        let v = wal.read(from..to).map_err(io::Error::other)?;
        got += v.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        from = to;
    }
    let read = t.elapsed().as_secs_f64();
    check(got, p)?;
    Ok(result(p, write, log_bytes, device, open, read))
}

fn raft_entries(first: u64, n: u64, pool: &[Bytes]) -> Vec<protobuf::well_known_types::BytesValue> {
    (first..first + n)
        .map(|i| {
            let payload = &pool[(i as usize) % pool.len()];
            let mut v = Vec::with_capacity(16 + payload.len());
            v.extend_from_slice(&i.to_le_bytes());
            v.extend_from_slice(&1u64.to_le_bytes());
            v.extend_from_slice(payload);
            let mut e = protobuf::well_known_types::BytesValue::new();
            e.value = v;
            e
        })
        .collect()
}

/// Writes, size, reopen and read of one raft-engine log.
fn run_raft_engine(
    dir: &Path,
    p: &Plan,
    pool: &[Bytes],
    lz4: bool,
    dev: Option<&Device>,
) -> io::Result<Value> {
    let opts = Opts::default();
    let mut e = RaftEngine::open_with(dir, lz4, &opts)?;
    let batches: Vec<_> = (0..p.entries / p.batch)
        .map(|b| raft_entries(b * p.batch + 1, p.batch, pool))
        .collect();
    let meter = Meter::start(dev)?;
    let t = Instant::now();
    for b in batches {
        let mut lb = raft_engine::LogBatch::with_capacity(b.len());
        lb.add_entries::<RaftEngineEntry>(REGION, &b)
            .map_err(io::Error::other)?;
        e.engine.write(&mut lb, false).map_err(io::Error::other)?;
    }
    e.sync()?;
    let write = t.elapsed().as_secs_f64();
    drop(e);
    diskstats::syncfs(dir)?;
    let log_bytes = file_bytes(dir)?;
    let device = meter.stop(payload_bytes(p))?;
    let t = Instant::now();
    let mut e = RaftEngine::open_with(dir, lz4, &opts)?;
    let open = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut got = 0u64;
    let mut from = 1;
    while from <= p.entries {
        let to = (from + 1024).min(p.entries + 1);
        got += e.read(from, to)? as u64;
        from = to;
    }
    let read = t.elapsed().as_secs_f64();
    check(got, p)?;
    Ok(result(p, write, log_bytes, device, open, read))
}

fn payload_bytes(p: &Plan) -> u64 {
    p.entries / p.batch * p.batch * p.payload as u64
}

fn check(got: u64, p: &Plan) -> io::Result<()> {
    if got != payload_bytes(p) {
        return Err(io::Error::other(format!(
            "read {got} payload bytes, wrote {}",
            payload_bytes(p)
        )));
    }
    Ok(())
}

fn result(p: &Plan, write: f64, log_bytes: u64, device: Value, open: f64, read: f64) -> Value {
    let n = (p.entries / p.batch * p.batch) as f64;
    json!({
        "write_entries_per_sec": n / write,
        "write_secs": write,
        "log_bytes": log_bytes,
        "log_bytes_per_payload_byte": log_bytes as f64 / payload_bytes(p) as f64,
        "device": device,
        "open_secs": open,
        "read_entries_per_sec": n / read,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `compress` subcommand.
pub fn run(a: &Args) -> io::Result<()> {
    let num = |k: &str, d: usize| a.get(k).and_then(crate::parse_size).unwrap_or(d);
    let p = Plan {
        entries: a.plan.entries as u64,
        payload: a.plan.payload,
        batch: a.plan.batch.max(1) as u64,
        threshold: num("--threshold", 8 << 10),
    };
    let rounds = num("--rounds", 3).max(1);
    std::fs::create_dir_all(&a.dir)?;
    let dev = Device::of(&a.dir).ok();
    // A pool of distinct payloads, as the other workloads use (built outside the timing).
    let pool: Vec<Bytes> = (0..4096).map(|i| json_entry(i, p.payload)).collect();
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); ENGINES.len()];
    for r in 0..rounds {
        for (k, e) in ENGINES.iter().enumerate() {
            let dir = tempfile::tempdir_in(&a.dir)?;
            let v = match *e {
                "chunkwal-lz4" => run_chunkwal(dir.path(), &p, &pool, true, dev.as_ref())?,
                "chunkwal" => run_chunkwal(dir.path(), &p, &pool, false, dev.as_ref())?,
                "raft-engine" => run_raft_engine(dir.path(), &p, &pool, true, dev.as_ref())?,
                _ => run_raft_engine(dir.path(), &p, &pool, false, dev.as_ref())?,
            };
            eprintln!("round {r} {e}: {v}");
            per[k].push(v);
        }
    }
    let pick = |runs: &[Value], f: &dyn Fn(&Value) -> Option<f64>| {
        median(runs.iter().filter_map(f).collect())
    };
    let mut table = String::from(
        "| engine | appends (entries/s) | log bytes / payload byte | device bytes / payload byte | reopen (ms) | read after reopen (entries/s) |\n|---|---|---|---|---|---|\n",
    );
    let mut results = serde_json::Map::new();
    for (e, runs) in ENGINES.iter().zip(&per) {
        let w = pick(runs, &|v| v["write_entries_per_sec"].as_f64());
        let lb = pick(runs, &|v| v["log_bytes_per_payload_byte"].as_f64());
        let db = pick(runs, &|v| v["device"]["per_payload_byte"].as_f64());
        let o = pick(runs, &|v| v["open_secs"].as_f64());
        let rd = pick(runs, &|v| v["read_entries_per_sec"].as_f64());
        table.push_str(&format!(
            "| {e} | {:.0} | {lb:.3} | {db:.3} | {:.1} | {rd:.0} |\n",
            w,
            o * 1e3
        ));
        results.insert(
            e.to_string(),
            json!({"median": {
            "write_entries_per_sec": w, "log_bytes_per_payload_byte": lb,
            "device_bytes_per_payload_byte": db, "open_secs": o, "read_entries_per_sec": rd,
        }, "runs": runs}),
        );
    }
    let doc = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "plan": {"entries": p.entries, "payload": p.payload, "batch": p.batch,
                 "chunkwal_min_batch_bytes": p.threshold,
                 "raft_engine_batch_compression_threshold": "8 KiB (default)"},
        "rounds": rounds,
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "results": Value::Object(results),
        "table": table,
    });
    // `--out` (default: compress.json beside results.json).
    let out = if a.out.ends_with("results.json") {
        a.out.with_file_name("compress.json")
    } else {
        a.out.clone()
    };
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    println!("{table}");
    eprintln!("wrote {}", out.display());
    Ok(())
}
