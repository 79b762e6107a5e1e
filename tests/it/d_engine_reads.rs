//! d-engine reads after every kind of rewrite: `get_entries` and `entry` return exactly what a
//! model of the log holds after persist, truncate, replace_range, purge and reset, before and
//! after a reopen, and a reader racing those rewrites never sees an entry that was not
//! written under its id. Entries of one `persist_entries` share one buffer in memory, so the
//! cases cut batches in the middle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::Config;
use d_engine::common::{Entry, LogId};
use d_engine::{LogStore, StorageEngine};
use futures::executor::block_on;

use crate::common::SMALL_CHUNK;
use crate::d_engine_format::shaped_entry;

/// What the log should hold: index → term.
type Model = BTreeMap<u64, u64>;

fn open(dir: &std::path::Path, opts: chunkwal::adapter::AdapterOptions) -> ChunkwalStorageEngine {
    ChunkwalStorageEngine::open(Config::new(dir).chunk_size(SMALL_CHUNK), opts).expect("open")
}

fn check(log: &impl LogStore, model: &Model, step: &str) {
    let want: Vec<Entry> = model.iter().map(|(&i, &t)| shaped_entry(i, t)).collect();
    assert_eq!(log.get_entries(1..=1000).expect("get"), want, "{step}");
    let (lo, hi) = (model.keys().next().copied(), model.keys().last().copied());
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let mid = lo + (hi - lo) / 2;
        let part: Vec<Entry> = want.iter().filter(|e| e.index >= mid).cloned().collect();
        assert_eq!(log.get_entries(mid..=hi + 5).expect("get"), part, "{step}");
    }
    for i in [
        lo.unwrap_or(1).saturating_sub(1),
        lo.unwrap_or(1),
        hi.unwrap_or(1) + 1,
    ] {
        let want = model.get(&i).map(|&t| shaped_entry(i, t));
        assert_eq!(
            block_on(log.entry(i)).expect("entry"),
            want,
            "{step}: entry {i}"
        );
    }
}

fn persist(log: &impl LogStore, model: &mut Model, range: std::ops::RangeInclusive<u64>, t: u64) {
    block_on(log.persist_entries(range.clone().map(|i| shaped_entry(i, t)).collect()))
        .expect("persist");
    model.extend(range.map(|i| (i, t)));
}

#[test]
fn get_entries_never_returns_a_removed_or_replaced_entry() {
    for (name, opts) in crate::d_engine::combos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open(dir.path(), opts);
        let log = engine.log_store();
        let mut m = Model::new();
        persist(&*log, &mut m, 1..=40, 1);
        check(&*log, &m, &format!("{name}: persist"));
        block_on(log.truncate(25)).expect("truncate");
        m.retain(|&i, _| i < 25);
        check(&*log, &m, &format!("{name}: truncate mid-batch"));
        persist(&*log, &mut m, 25..=50, 2);
        check(&*log, &m, &format!("{name}: rewrite after truncate"));
        let es = (10..=30).map(|i| shaped_entry(i, 3)).collect();
        block_on(log.replace_range(10, es)).expect("replace");
        m.retain(|&i, _| i < 10);
        m.extend((10..=30).map(|i| (i, 3)));
        check(&*log, &m, &format!("{name}: replace_range"));
        // Raft log matching: a conflicting term from 20 on rewrites the tail.
        persist(&*log, &mut m, 20..=35, 4);
        m.retain(|&i, _| i <= 35);
        check(&*log, &m, &format!("{name}: conflicting persist"));
        block_on(log.purge(LogId { term: 3, index: 15 })).expect("purge");
        m.retain(|&i, _| i > 15);
        check(&*log, &m, &format!("{name}: purge"));
        log.flush().expect("flush");
        drop((log, engine));
        let engine = open(dir.path(), opts);
        let log = engine.log_store();
        check(&*log, &m, &format!("{name}: reopened"));
        block_on(log.reset()).expect("reset");
        m.clear();
        check(&*log, &m, &format!("{name}: reset"));
        persist(&*log, &mut m, 1..=5, 5);
        check(&*log, &m, &format!("{name}: after reset"));
    }
}

#[test]
fn a_reader_racing_rewrites_sees_only_entries_written_under_their_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path(), chunkwal::adapter::AdapterOptions::default());
    let log = engine.log_store();
    block_on(log.persist_entries((1..=64).map(|i| shaped_entry(i, 1)).collect())).expect("persist");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                // A truncate racing the read ends it early: the result is a prefix of what
                // the log held, never an error, a gap or a wrong entry.
                let got = log
                    .get_entries(1..=200)
                    .expect("get_entries never fails on a race");
                if let Some(e) = got.first() {
                    assert_eq!(e.index, 1, "nothing is purged: a read starts at 1");
                }
                for w in got.windows(2) {
                    assert_eq!(w[1].index, w[0].index + 1, "a gap");
                    assert!(w[1].term >= w[0].term, "terms go down");
                }
                for e in &got {
                    assert_eq!(*e, shaped_entry(e.index, e.term), "a torn entry");
                }
                reads += 1;
            }
            reads
        })
    };
    for round in 2..=200u64 {
        let from = 1 + round % 50;
        if round % 3 == 0 {
            block_on(log.truncate(from)).expect("truncate");
            let es = (from..=from + 20).map(|i| shaped_entry(i, round)).collect();
            block_on(log.persist_entries(es)).expect("persist");
        } else {
            let es = (from..=from + 30).map(|i| shaped_entry(i, round)).collect();
            block_on(log.replace_range(from, es)).expect("replace");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0, "no read completed");
}
