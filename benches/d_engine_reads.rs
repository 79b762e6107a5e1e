//! d-engine reads: `get_entries(1..=10_000)` of 10k entries with 256 B command payloads
//! through d-engine's `LogStore` trait (what d-engine's leader does when it builds
//! AppendEntries), next to the adapter's own `get_entries` of the same range, so the cost of
//! turning stored bytes into d-engine `Entry` values shows as the difference, and next to
//! cloning 10k already decoded entries (what a hit in a decoded-entry cache would cost).

#[path = "support/common.rs"]
mod common;

use chunkwal::adapter::{AdapterOptions, FlushPolicy, PersistenceStrategy};
use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::Config;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use d_engine::common::{entry_payload::Payload, Entry, EntryPayload};
use d_engine::{LogStore, StorageEngine};
use futures::executor::block_on;

const N: u64 = 10_000;

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        payload: Some(EntryPayload {
            payload: Some(Payload::Command(common::payload(index, 256))),
        }),
    }
}

fn open(dir: &std::path::Path) -> ChunkwalStorageEngine {
    ChunkwalStorageEngine::open(
        Config::new(dir),
        AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate),
    )
    .expect("open engine")
}

fn get_entries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open(dir.path());
    let log = engine.log_store();
    for k in 0..N / 250 {
        let batch = (1 + k * 250..=(k + 1) * 250).map(entry).collect();
        block_on(log.persist_entries(batch)).expect("persist");
    }
    log.flush().expect("flush");
    let mut g = c.benchmark_group("d_engine/get_entries");
    g.throughput(Throughput::Elements(N));
    g.bench_function("10k", |b| {
        b.iter(|| {
            let v = log.get_entries(1..=N).expect("get_entries");
            assert_eq!(v.len(), N as usize);
        })
    });
    g.bench_function("10k_adapter_only", |b| {
        b.iter(|| {
            let v = log.adapter().get_entries(1..=N).expect("get_entries");
            assert_eq!(v.len(), N as usize);
        })
    });
    // The floor of a decoded-entry cache (option (a) of issue #13): a hit still clones
    // every `Entry` out of the cache.
    let cached = log.get_entries(1..=N).expect("get_entries");
    g.bench_function("10k_clone_decoded", |b| {
        b.iter(|| {
            let v = cached.clone();
            assert_eq!(v.len(), N as usize);
        })
    });
    // After a reopen the payload cache is empty: every entry is read from the map and
    // CRC-checked.
    drop((log, engine));
    let engine = open(dir.path());
    let log = engine.log_store();
    g.bench_function("10k_reopened", |b| {
        b.iter(|| {
            let v = log.get_entries(1..=N).expect("get_entries");
            assert_eq!(v.len(), N as usize);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = get_entries
}
criterion_main!(benches);
