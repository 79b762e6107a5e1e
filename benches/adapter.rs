//! The async adapter: `persist_entries` throughput per strategy × policy (batches of 256 ×
//! 256 B), and `get_entries` of 10k entries. Driven by `futures::executor::block_on`, so no
//! runtime is involved.

#[path = "support/common.rs"]
mod common;

use std::cell::Cell;
use std::time::Duration;

use chunkwal::adapter::{AdapterOptions, FlushPolicy, LogStore, PersistenceStrategy};
use chunkwal::Config;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::executor::block_on;

const BATCH: u64 = 256;

fn persist(c: &mut Criterion) {
    let batch_policy = FlushPolicy::Batch {
        threshold: 4096,
        interval: Duration::from_millis(2),
    };
    let mut g = c.benchmark_group("adapter/persist_entries");
    g.throughput(Throughput::Elements(BATCH));
    for (sname, strategy) in [
        ("disk_first", PersistenceStrategy::DiskFirst),
        ("mem_first", PersistenceStrategy::MemFirst),
    ] {
        for (pname, policy) in [
            ("immediate", FlushPolicy::Immediate),
            ("batch", batch_policy),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = LogStore::open(
                Config::new(dir.path()),
                AdapterOptions::new(strategy, policy),
            )
            .expect("open adapter");
            let p = common::payload(1, 256);
            let next = Cell::new(1u64);
            g.bench_function(BenchmarkId::new(sname, pname), |b| {
                b.iter(|| {
                    let i = next.get();
                    block_on(store.persist_entries(common::batch(i, BATCH, &p))).expect("persist");
                    next.set(i + BATCH);
                })
            });
        }
    }
    g.finish();
}

fn get_entries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LogStore::open(
        Config::new(dir.path()),
        AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate),
    )
    .expect("open adapter");
    let p = common::payload(1, 256);
    for k in 0..40u64 {
        block_on(store.persist_entries(common::batch(1 + k * 256, 256, &p))).expect("persist");
    }
    let mut g = c.benchmark_group("adapter/get_entries");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("10k", |b| {
        b.iter(|| {
            let v = store.get_entries(1..=10_000).expect("get_entries");
            assert_eq!(v.len(), 10_000);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = persist, get_entries
}
criterion_main!(benches);
