//! Tuning knobs: chunk size (rotation cost, preallocation) and the payload cache bounds.

#[path = "support/common.rs"]
mod common;

use std::cell::Cell;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Buffered appends of 64 x 256 B with a (non-blocking) flush request every batch, so the
/// flush worker keeps syncing behind the writer and chunks keep rotating.
fn chunk_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("tuning/chunk_size");
    g.throughput(Throughput::Elements(64));
    for mib in [8u64, 64, 256] {
        let (_dir, wal) = common::fresh(|c| c.chunk_size(mib << 20));
        let p = common::payload(1, 256);
        let next = Cell::new(1u64);
        g.bench_function(
            BenchmarkId::new("append64x256B", format!("{mib}MiB")),
            |b| {
                b.iter(|| {
                    let i = next.get();
                    wal.append(common::batch(i, 64, &p)).expect("append");
                    wal.flush(|r| r.expect("flush")).expect("flush request");
                    next.set(i + 64);
                })
            },
        );
    }
    g.finish();
}

/// Reads of the newest 50k entries (a follower catching up) with different cache bounds:
/// the cache holds none, some or all of them.
fn cache(c: &mut Criterion) {
    const N: u64 = 50_000;
    let mut g = c.benchmark_group("tuning/cache");
    g.throughput(Throughput::Elements(N));
    for items in [0usize, 4096, 65_536] {
        let (_dir, wal) = common::fresh(|c| c.cache(items, 64 << 20));
        common::fill(&wal, N, 256);
        wal.wait_worker_idle();
        g.bench_function(
            BenchmarkId::new("read50kx256B", format!("{items}items")),
            |b| b.iter(|| std::hint::black_box(wal.read(1..=N).expect("read"))),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = chunk_size, cache
}
criterion_main!(benches);
