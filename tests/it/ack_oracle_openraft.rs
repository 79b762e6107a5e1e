//! The acknowledgement oracle through the openraft store: every `LogFlushed` report of
//! success and every `save_vote` return must be covered by completed syncs when given.
//!
//! openraft builds `LogFlushed` only inside its own crate, so each comes from
//! `blocking_append` on a catching store (see `in_flight_openraft`); its return is the moment
//! the report is delivered. The entry's location is sent to the checking thread right after
//! `append` returns, before any sync of it can have completed in practice (a check that ran
//! later could only miss a violation, never invent one).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::Vote;
use parking_lot::Mutex;

use crate::common::cfg;
use crate::crash_util::Rng;
use crate::in_flight_openraft::{entry, Catch, Store};
use crate::oracle::Oracle;

#[test]
fn openraft_log_flushed_is_covered_by_completed_syncs() {
    let d = tempfile::tempdir().unwrap();
    let oracle = Oracle::new(d.path());
    let mut c = cfg(d.path());
    c.fs_observer = Some(oracle.observer());
    let rng = Mutex::new(Rng::from_env("openraft ack oracle"));
    c.sync_hook = Some(Arc::new(move |_p: &std::path::Path| {
        if rng.lock().below(3) == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        Ok(())
    }));
    let mut store = Store::open(c).unwrap();
    let reader = store.wal().reader();
    std::thread::scope(|sc| {
        for k in 0..200u64 {
            let (from, to) = (k * 4, k * 4 + 4);
            let (tx, rx) = mpsc::channel();
            let (loc_tx, loc_rx) = mpsc::channel();
            let o = Arc::clone(&oracle);
            sc.spawn(move || {
                let r = block_on(Catch(tx).blocking_append(Vec::new()));
                let loc = loc_rx.recv().expect("location");
                assert!(r.is_ok(), "LogFlushed reported {r:?}");
                o.check("openraft LogFlushed", &loc);
            });
            let cb = rx.recv().expect("LogFlushed");
            block_on(store.append((from..to).map(entry), cb)).expect("append");
            loc_tx
                .send(reader.locate(to - 1).expect("just written"))
                .unwrap();
            if k % 10 == 9 {
                block_on(store.save_vote(&Vote::new(k, 1))).expect("save_vote");
                let (path, end) = reader.tail_position().unwrap();
                oracle.check("openraft save_vote", &(path, 0, end));
            }
        }
    });
    oracle.assert_clean();
    let n = oracle.checked.load(std::sync::atomic::Ordering::Relaxed);
    println!("openraft ack oracle: {n} acknowledgements checked");
    assert_eq!(n, 220);
}
