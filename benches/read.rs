//! Read paths: warm (payload cache), cold (verified read from the map), and range reads.

#[path = "support/common.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: u64 = 10_000;

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");

    // Warm: everything just written is still cached.
    let (_d1, warm) = common::fresh(|c| c);
    common::fill(&warm, N, 256);
    assert_eq!(warm.access_stat().cache.items, N as usize);
    g.throughput(Throughput::Elements(N));
    g.bench_function("entry/warm/256B", |b| {
        b.iter(|| {
            for i in 1..=N {
                std::hint::black_box(warm.entry(i).expect("read"));
            }
        })
    });

    // Cold: cache drained, every read decodes and CRC-checks the record in the map.
    let (_d2, cold) = common::fresh(|c| c);
    common::fill(&cold, N, 256);
    cold.wait_worker_idle();
    cold.evict_durable_from_cache();
    assert_eq!(cold.access_stat().cache.items, 0);
    g.bench_function("entry/cold/256B", |b| {
        b.iter(|| {
            for i in 1..=N {
                std::hint::black_box(cold.entry(i).expect("read"));
            }
        })
    });

    // Range reads of 10k entries, warm and cold.
    g.bench_function("range10k/warm/256B", |b| {
        b.iter(|| std::hint::black_box(warm.read(1..=N).expect("read")))
    });
    g.bench_function("range10k/cold/256B", |b| {
        b.iter(|| std::hint::black_box(cold.read(1..=N).expect("read")))
    });
    let (_d3, cold4k) = common::fresh(|c| c);
    common::fill(&cold4k, N, 4096);
    cold4k.wait_worker_idle();
    cold4k.evict_durable_from_cache();
    g.bench_function("range10k/cold/4KiB", |b| {
        b.iter(|| std::hint::black_box(cold4k.read(1..=N).expect("read")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = reads
}
criterion_main!(benches);
