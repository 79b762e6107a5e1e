//! The `groups` bench's disk test with one lagging group, and the memory per group of many
//! short logs (issue #15). See `groups.rs` for the whole run.

use std::io;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use crate::diskstats::{Device, Meter};
use crate::groups::{dir_bytes, with_mg, Spec, PAYLOAD, PER_GROUP};
use crate::groups_chunkwal::MgChunkwal;
use crate::groups_engines::{MgLog, MgOpts, MgRaftEngine};
use crate::report::median_of;
use crate::workloads::payload;
use crate::Args;

/// The lagging group.
const LAGGARD: u64 = 1;

/// How the lagging test runs at one group count.
struct Lag {
    groups: usize,
    rounds: u64,
    purge_every: u64,
    maint_every: u64,
}

/// Peak and final bytes on disk, sampled after every round.
#[derive(Default)]
struct DiskTrack {
    peak_len: u64,
    peak_alloc: u64,
    last: (u64, u64),
}

impl DiskTrack {
    fn sample(&mut self, dir: &Path) -> io::Result<()> {
        let (len, alloc) = dir_bytes(dir)?;
        self.peak_len = self.peak_len.max(len);
        self.peak_alloc = self.peak_alloc.max(alloc);
        self.last = (len, alloc);
        Ok(())
    }
}

/// Round `k` of the lagging test: write (the laggard only in round 0), purge, maintain.
/// Returns whether the maintenance call named the laggard.
fn lag_round<L: MgLog>(
    log: &mut L,
    p: &Lag,
    k: u64,
    pool: &bytes::Bytes,
    seq: &mut u64,
) -> io::Result<Option<bool>> {
    let from = if k == 0 { 1 } else { 2 };
    let writers: Vec<u64> = (from..=p.groups as u64).collect();
    let first = k * PER_GROUP as u64 + 1;
    let batch = writers
        .iter()
        .map(|&g| {
            let e = log.prepare(first, PER_GROUP, pool, *seq);
            *seq += PER_GROUP as u64;
            (g, e)
        })
        .collect();
    log.write_durable(batch)?;
    if (k + 1).is_multiple_of(p.purge_every) && k > 0 {
        // Keep each group's newest round of entries.
        let upto = k * PER_GROUP as u64;
        let others: Vec<u64> = (2..=p.groups as u64).collect();
        log.purge(&others, upto)?;
    }
    if (k + 1).is_multiple_of(p.maint_every) {
        return Ok(Some(log.maintain()?.contains(&LAGGARD)));
    }
    Ok(None)
}

/// The whole lagging test in a fresh log in `dir`.
fn lagging<L: MgLog>(dir: &Path, o: &MgOpts, p: &Lag, dev: Option<&Device>) -> io::Result<Value> {
    let mut log = L::open(dir, o)?;
    let pool = payload(PAYLOAD);
    let mut seq = 0u64;
    let mut disk = DiskTrack::default();
    let (mut calls, mut named) = (0u64, 0u64);
    let meter = Meter::start(dev)?;
    let t = Instant::now();
    for k in 0..p.rounds {
        if let Some(n) = lag_round(&mut log, p, k, &pool, &mut seq)? {
            calls += 1;
            named += n as u64;
        }
        disk.sample(dir)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let bytes = seq * PAYLOAD as u64;
    let device = meter.stop(bytes)?;
    let laggard_ok = (1..=PER_GROUP as u64)
        .map(|i| log.entry_len(LAGGARD, i))
        .collect::<io::Result<Vec<_>>>()?
        .iter()
        .all(|l| *l == Some(PAYLOAD));
    let t_bytes = o.threshold.unwrap_or(1) as f64;
    Ok(json!({
        "rounds": p.rounds,
        "secs": secs,
        "payload_bytes": bytes,
        "peak_bytes": disk.peak_len,
        "final_bytes": disk.last.0,
        "peak_alloc_bytes": disk.peak_alloc,
        "final_alloc_bytes": disk.last.1,
        "peak_over_threshold": disk.peak_len as f64 / t_bytes,
        "final_over_threshold": disk.last.0 as f64 / t_bytes,
        "maintenance_calls": calls,
        "laggard_named": named,
        "laggard_readable": laggard_ok,
        "device": device,
    }))
}

/// The lagging test at G groups, every engine (interleaved when `--lag-rounds` > 1).
pub fn at_groups(a: &Args, s: &Spec, g: usize, dev: Option<&Device>) -> io::Result<Value> {
    let batch_bytes = (g * PER_GROUP * PAYLOAD) as u64;
    let p = Lag {
        groups: g,
        rounds: ((s.lag_mib << 20) / batch_bytes).max(1),
        purge_every: s.purge_every as u64,
        maint_every: s.maint_every as u64,
    };
    let base = MgOpts {
        chunk_size: Some(s.lag_chunk),
        threshold: Some(s.threshold),
        lz4: true,
    };
    let reps = a
        .get("--lag-rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); s.engines.len()];
    for r in 0..reps {
        for (k, e) in s.engines.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix(&format!("lag-{e}-"))
                .tempdir_in(&a.dir)?;
            let o = crate::groups::opts_for(e, base.clone());
            let v = with_mg!(e.as_str(), L => lagging::<L>(dir.path(), &o, &p, dev))?;
            eprintln!("lagging {g} groups, rep {r}, {e}: {v}");
            per[k].push(v);
        }
    }
    let mut out = serde_json::Map::new();
    for (e, v) in s.engines.iter().zip(&per) {
        out.insert(e.clone(), median_of(v));
    }
    Ok(json!({
        "groups": g,
        "threshold": s.threshold,
        "chunk": s.lag_chunk,
        "purge_every": s.purge_every,
        "maint_every": s.maint_every,
        "engines": out,
    }))
}

/// Write `groups` groups of `entries` entries each in one durable batch.
fn build_short<L: MgLog>(dir: &Path, o: &MgOpts, groups: usize, entries: usize) -> io::Result<()> {
    let mut log = L::open(dir, o)?;
    let pool = payload(PAYLOAD);
    let batch = (1..=groups as u64)
        .map(|g| (g, log.prepare(1, entries, &pool, g * entries as u64)))
        .collect();
    log.write_durable(batch)
}

/// Memory per group: `--mem-groups` short logs, each engine, reopened `--rounds` times.
pub fn memory(a: &Args, s: &Spec) -> io::Result<Value> {
    if s.mem_groups == 0 {
        return Ok(Value::Null);
    }
    let (g, n) = (s.mem_groups, s.mem_entries);
    let mut dirs = Vec::new();
    for e in &s.engines {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mem-{e}-"))
            .tempdir_in(&a.dir)?;
        let o = crate::groups::opts_for(e, MgOpts::default());
        with_mg!(e.as_str(), L => build_short::<L>(dir.path(), &o, g, n))?;
        dirs.push(dir);
    }
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); s.engines.len()];
    for _ in 0..s.rounds {
        for (k, e) in s.engines.iter().enumerate() {
            let v = crate::groups::spawn_probe(e, dirs[k].path(), g, n as u64)?;
            eprintln!("memory {g} x {n}, {e}: {v}");
            per[k].push(v);
        }
    }
    let mut out = serde_json::Map::new();
    for (e, v) in s.engines.iter().zip(&per) {
        let mut m = median_of(v);
        let live = m["heap_live_bytes"].as_f64().unwrap_or(f64::NAN);
        m["heap_per_group"] = json!(live / g as f64);
        m["heap_per_entry"] = json!(live / (g * n) as f64);
        out.insert(e.clone(), m);
    }
    Ok(json!({ "groups": g, "entries_per_group": n, "engines": out }))
}
