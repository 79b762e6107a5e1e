//! Helpers shared by the criterion benches (included with `#[path]` from each bench).
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};
use criterion::Criterion;

/// Small sample sizes so the whole `cargo bench` run finishes in a few minutes.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

/// A deterministic, incompressible-looking payload.
pub fn payload(index: u64, len: usize) -> Bytes {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A batch of `n` entries starting at `from`, all sharing one payload buffer.
pub fn batch(from: u64, n: u64, p: &Bytes) -> Vec<(LogId, Bytes)> {
    (from..from + n)
        .map(|i| (LogId::new(1, i), p.clone()))
        .collect()
}

/// A fresh log in a temp dir.
pub fn fresh(cfg: impl FnOnce(Config) -> Config) -> (tempfile::TempDir, Wal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(cfg(Config::new(dir.path()))).expect("open");
    (dir, wal)
}

/// Fill `[1, n]` with `len`-byte payloads in batches of 256, then make it durable.
pub fn fill(wal: &Wal, n: u64, len: usize) {
    let p = payload(7, len);
    let mut i = 1;
    while i <= n {
        let k = 256.min(n + 1 - i);
        wal.append(batch(i, k, &p)).expect("append");
        i += k;
    }
    wal.flush_blocking().expect("flush");
}
