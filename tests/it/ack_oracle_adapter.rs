//! The acknowledgement oracle through the async adapter, for every strategy × policy: a
//! DiskFirst `persist_entries` return, a `flush` return, a `save_hard_state` return and every
//! `durable_index()` value read meanwhile must be covered by completed syncs when given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chunkwal::adapter::{AdapterOptions, FlushPolicy, HardState, LogStore, PersistenceStrategy};
use chunkwal::{Config, LogId, Reader};
use parking_lot::Mutex;

use crate::common::{payload, SMALL_CHUNK};
use crate::crash_util::Rng;
use crate::oracle::Oracle;

fn config(dir: &std::path::Path, oracle: &Arc<Oracle>, seed: u64) -> Config {
    let rng = Mutex::new(Rng::new(seed));
    let mut c = Config::new(dir).chunk_size(SMALL_CHUNK);
    c.fs_observer = Some(oracle.observer());
    c.sync_hook = Some(Arc::new(move |_p: &std::path::Path| {
        if rng.lock().below(3) == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        Ok(())
    }));
    c
}

/// Check the entry `durable_index()` names, if no truncate moved it meanwhile.
fn poll(reader: &Reader, oracle: &Oracle) {
    let (g1, d) = reader.durable_snapshot();
    let Some(d) = d else { return };
    let loc = reader.locate(d);
    if let (true, Some(loc)) = (reader.durable_snapshot().0 == g1, loc) {
        oracle.check("adapter durable_index", &loc);
    }
}

fn run(strategy: PersistenceStrategy, policy: FlushPolicy, seed: u64) -> u64 {
    let d = tempfile::tempdir().unwrap();
    let oracle = Oracle::new(d.path());
    let store = LogStore::open(
        config(d.path(), &oracle, seed),
        AdapterOptions::new(strategy, policy),
    )
    .unwrap();
    let reader = store.reader();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (reader, oracle, stop) = (reader.clone(), Arc::clone(&oracle), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                poll(&reader, &oracle);
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let mut rng = Rng::new(seed);
    let disk_first = strategy == PersistenceStrategy::DiskFirst;
    let mut next = 1u64;
    for round in 0..150u64 {
        let n = 1 + rng.below(10);
        let batch: Vec<_> = (next..next + n)
            .map(|i| (LogId::new(1, i), payload(i, 50 + rng.below(600) as usize)))
            .collect();
        futures::executor::block_on(store.persist_entries(batch)).unwrap();
        next += n;
        let last = reader.locate(next - 1).expect("just written");
        if disk_first {
            oracle.check("DiskFirst persist_entries", &last);
        }
        if round % 7 == 3 {
            store.flush().unwrap();
            oracle.check("adapter flush", &last);
        }
        if round % 11 == 5 {
            let hs = HardState {
                current_term: 1 + round,
                voted_for: Some(round % 3),
            };
            store.save_hard_state(&hs).unwrap();
            // The hard state is the last record written: everything before the tail now.
            let (path, end) = reader.tail_position().unwrap();
            oracle.check("save_hard_state", &(path, 0, end));
        }
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    store.close().unwrap();
    oracle.assert_clean();
    oracle.checked.load(Ordering::Relaxed)
}

#[test]
fn adapter_acknowledgements_are_covered_by_completed_syncs() {
    let mut rng = Rng::from_env("adapter ack oracle");
    let mut total = 0;
    for strategy in [
        PersistenceStrategy::DiskFirst,
        PersistenceStrategy::MemFirst,
    ] {
        for policy in [
            FlushPolicy::Immediate,
            FlushPolicy::Batch {
                threshold: 8,
                interval: Duration::from_millis(2),
            },
        ] {
            let n = run(strategy, policy, rng.next_u64());
            assert!(n > 0, "{strategy:?} {policy:?}: nothing checked");
            total += n;
        }
    }
    println!("adapter ack oracle: {total} acknowledgements checked over 4 strategy x policy runs");
}
