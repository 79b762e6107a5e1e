//! The device floor, measured in the same run as the engines: what plain `pwrite` +
//! `fdatasync` achieves on the bench directory's file system, with no log format at all.
//!
//! - Bandwidth: a file of `floor_mib` MiB is written once in full and synced, then rewritten
//!   sequentially in 1 MiB `pwrite`s, each followed by `fdatasync` (queue depth 1, blocks
//!   already allocated, so no metadata needs writing).
//! - Latency: `floor_small` 16 KiB `pwrite` + `fdatasync` pairs, at consecutive offsets in
//!   the same written file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::diskstats::{Device, Meter};
use crate::workloads::{lat_json, payload_seeded};

/// Sizes of the floor measurement.
#[derive(Debug, Clone, Copy)]
pub struct FloorPlan {
    /// File size, and bytes rewritten for the bandwidth figure.
    pub mib: usize,
    /// 16 KiB write + sync samples.
    pub small: usize,
}

const BIG: usize = 1 << 20;
const SMALL: usize = 16 << 10;

fn fill(f: &File, mib: usize, data: &[u8]) -> io::Result<()> {
    for k in 0..mib {
        f.write_all_at(data, (k * BIG) as u64)?;
    }
    f.sync_all()
}

/// 1 MiB pwrite + fdatasync over the whole file: bandwidth and per-MiB latency.
fn bandwidth(f: &File, mib: usize, data: &[u8]) -> io::Result<Value> {
    let mut lat = Vec::with_capacity(mib);
    let t = Instant::now();
    for k in 0..mib {
        let s = Instant::now();
        // Rotate which part of the random buffer goes where, so no two MiB repeat a pass.
        let r = (k * 4099) % BIG;
        f.write_all_at(&data[r..], (k * BIG) as u64)?;
        f.write_all_at(&data[..r], (k * BIG + BIG - r) as u64)?;
        f.sync_data()?;
        lat.push(s.elapsed());
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({
        "bytes": mib * BIG,
        "secs": secs,
        "mb_per_s": (mib * BIG) as f64 / secs / 1e6,
        "per_mib_latency": lat_json(lat),
    }))
}

/// 16 KiB pwrite + fdatasync at consecutive offsets into written blocks.
fn small_sync(f: &File, mib: usize, n: usize, data: &[u8]) -> io::Result<Value> {
    let slots = (mib * BIG / SMALL).max(1);
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    for k in 0..n {
        let off = (k % slots) * SMALL;
        let src = (k * SMALL) % (BIG - SMALL);
        let s = Instant::now();
        f.write_all_at(&data[src..src + SMALL], off as u64)?;
        f.sync_data()?;
        lat.push(s.elapsed());
    }
    let mut v = lat_json(lat);
    v["samples"] = json!(n);
    Ok(v)
}

/// The floor in a fresh temporary directory under `root`.
pub fn run(root: &Path, plan: FloorPlan, dev: Option<&Device>) -> io::Result<Value> {
    let dir = tempfile::tempdir_in(root)?;
    let data = payload_seeded(BIG / crate::workloads::POOL, 0xF100);
    let mib = plan.mib.max(1);
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("floor.dat"))?;
    fill(&f, mib, &data)?;
    let m = Meter::start(dev)?;
    let bw = bandwidth(&f, mib, &data)?;
    let bw_dev = m.stop((mib * BIG) as u64)?;
    let m = Meter::start(dev)?;
    let small = small_sync(&f, mib, plan.small, &data)?;
    let small_dev = m.stop((plan.small * SMALL) as u64)?;
    let mut v = json!({
        "file_mib": mib,
        "seq_1mib_sync": bw,
        "sync_16k": small,
    });
    v["seq_1mib_sync"]["device"] = bw_dev;
    v["sync_16k"]["device"] = small_dev;
    Ok(v)
}
