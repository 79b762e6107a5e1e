//! Throughput of d-engine's `LogStore` on chunkwal: batched `persist_entries` and
//! `get_entries` of 10k entries, for each strategy × policy. Prints figures; asserts nothing.
//!
//! `cargo run --release --features d-engine --example d_engine_throughput`

use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::adapter::{AdapterOptions, FlushPolicy, PersistenceStrategy};
use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::Config;
use d_engine::common::{entry_payload::Payload, Entry, EntryPayload};
use d_engine::{LogStore, StorageEngine};

const ENTRIES: u64 = 200_000;
const BATCH: u64 = 256;
const PAYLOAD: usize = 128;

fn entry(i: u64) -> Entry {
    Entry {
        index: i,
        term: 1,
        payload: Some(EntryPayload {
            payload: Some(Payload::Command(Bytes::from(vec![i as u8; PAYLOAD]))),
        }),
    }
}

async fn run(name: &str, opts: AdapterOptions) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let engine = ChunkwalStorageEngine::open(Config::new(dir.path()), opts)?;
    let log = engine.log_store();
    let t = Instant::now();
    let mut next = 1;
    while next <= ENTRIES {
        let batch: Vec<Entry> = (next..next + BATCH).map(entry).collect();
        log.persist_entries(batch).await?;
        next += BATCH;
    }
    log.flush_async().await?;
    let persist = t.elapsed();
    let (mut best, mut raw) = (Duration::MAX, Duration::MAX);
    for round in 0..20u64 {
        let from = 1 + (round * 9_973) % (ENTRIES - 10_000);
        let t = Instant::now();
        let got = log.get_entries(from..=from + 9_999)?;
        best = best.min(t.elapsed());
        assert_eq!(got.len(), 10_000);
        // The same range without the prost decode: chunkwal's share.
        let t = Instant::now();
        let got = log.adapter().get_entries(from..=from + 9_999)?;
        raw = raw.min(t.elapsed());
        assert_eq!(got.len(), 10_000);
    }
    println!(
        "{name:<30} persist_entries: {:>9.0} entries/s ({BATCH}/batch, {PAYLOAD} B payload)   \
         get_entries(10k): best {best:?} (chunkwal read without prost decode: {raw:?})",
        (next - 1) as f64 / persist.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch = FlushPolicy::Batch {
        threshold: 1024,
        interval: Duration::from_millis(2),
    };
    for (name, s, p) in [
        (
            "DiskFirst + Immediate",
            PersistenceStrategy::DiskFirst,
            FlushPolicy::Immediate,
        ),
        (
            "DiskFirst + Batch(1024, 2ms)",
            PersistenceStrategy::DiskFirst,
            batch,
        ),
        (
            "MemFirst + Immediate",
            PersistenceStrategy::MemFirst,
            FlushPolicy::Immediate,
        ),
        (
            "MemFirst + Batch(1024, 2ms)",
            PersistenceStrategy::MemFirst,
            batch,
        ),
    ] {
        run(name, AdapterOptions::new(s, p)).await?;
    }
    Ok(())
}
