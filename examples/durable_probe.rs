//! A quick probe of the durable append path: sync-per-batch and pipelined flushes on a
//! fresh log (and, with `--steady`, with purges feeding chunk recycling), reporting
//! entries/s, latency percentiles, syncs and device bytes written per payload byte.
//!
//! `cargo run --release --example durable_probe -- [dir] [batches] [window] [chunk_mib] [--steady] [--reopen]`
//! (window 0: buffered appends, one flush at the end; `--reopen`: time a reopen after)

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};

/// Sectors written to the device holding `dir`, from /proc/diskstats.
fn sectors_written(dir: &std::path::Path) -> Option<u64> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc_major(dev), libc_minor(dev));
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[0] == maj.to_string() && f[1] == min.to_string())
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steady = args.iter().any(|a| a == "--steady");
    let reopen = args.iter().any(|a| a == "--reopen");
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let root = args.first().map_or("/tmp".into(), |s| s.to_string());
    let batches: usize = args.get(1).map_or(2000, |s| s.parse().unwrap());
    let window: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let chunk_mib: u64 = args.get(3).map_or(64, |s| s.parse().unwrap());
    let dir = tempfile_dir(&root);
    let wal = Wal::open(Config::new(&dir).chunk_size(chunk_mib << 20)).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let pool: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let pool = Bytes::from(pool);
    let before = sectors_written(&dir);
    let s0 = wal.access_stat();
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(batches);
    let mut inflight: VecDeque<(Instant, mpsc::Receiver<()>)> = VecDeque::new();
    let keep = (chunk_mib << 20) * 2 / 300;
    let mut next = 1u64;
    for _ in 0..batches {
        let start = Instant::now();
        let batch: Vec<_> = (0..64)
            .map(|_| {
                let k = (next as usize % 1024) * 256;
                let e = (LogId::new(1, next), pool.slice(k..k + 256));
                next += 1;
                e
            })
            .collect();
        wal.append(batch).unwrap();
        if steady && next > keep && next % 4096 < 64 {
            wal.purge(LogId::new(1, next - keep)).unwrap();
        }
        if window == 0 {
            lat.push(start.elapsed());
        } else if window == 1 {
            wal.flush_blocking().unwrap();
            lat.push(start.elapsed());
        } else {
            let (tx, rx) = mpsc::channel();
            wal.flush(move |r| {
                r.unwrap();
                let _ = tx.send(());
            })
            .unwrap();
            inflight.push_back((start, rx));
            while inflight.len() >= window {
                let (s, rx) = inflight.pop_front().unwrap();
                rx.recv().unwrap();
                lat.push(s.elapsed());
            }
        }
    }
    if window == 0 {
        wal.flush_blocking().unwrap();
    }
    for (s, rx) in inflight {
        rx.recv().unwrap();
        lat.push(s.elapsed());
    }
    let secs = t0.elapsed().as_secs_f64();
    let s1 = wal.access_stat();
    let newest_recycled = wal.access_stat().chunks_recycled > 0;
    wal.close().unwrap();
    let after = sectors_written(&dir);
    if reopen {
        let t = Instant::now();
        let wal = Wal::open(Config::new(&dir).chunk_size(chunk_mib << 20)).unwrap();
        println!(
            "reopen: {:.1} ms ({} entries, recycled chunks in the log: {newest_recycled})",
            t.elapsed().as_secs_f64() * 1e3,
            wal.log_state().last.map_or(0, |l| l.index) - wal.first_index().unwrap_or(1) + 1
        );
    }
    let payload = (batches * 64 * 256) as f64;
    let dev = match (before, after) {
        (Some(a), Some(b)) => (b - a) as f64 * 512.0 / payload,
        _ => f64::NAN,
    };
    let syncs = s1.syncs - s0.syncs;
    println!(
        "window {window} chunk {chunk_mib} MiB steady {steady}: {:.0} e/s, {:.0} MB/s, p50 {:.0} p99 {:.0} p99.9 {:.0} us, syncs/s {:.0}, KiB/sync {:.1}, device B/payload B {:.3}, created {} recycled {}",
        (batches * 64) as f64 / secs,
        payload / secs / 1e6,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 0.999),
        syncs as f64 / secs,
        (s1.synced_bytes - s0.synced_bytes) as f64 / syncs.max(1) as f64 / 1024.0,
        dev,
        s1.chunks_created - s0.chunks_created,
        s1.chunks_recycled - s0.chunks_recycled,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(root: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(root).join(format!("durable-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
