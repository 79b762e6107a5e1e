//! Flush callbacks run off the sync loop (a blocked callback stops no sync), fire in order
//! and exactly once, also at close; flush tickets (wait, await with and without a runtime,
//! poison); the poison error keeps its source.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chunkwal::{Config, Error, Wal};

use crate::common::{cfg, entries};
use crate::faults::failing_hook;

/// Wait until `cond` holds; fail (instead of hanging) if it never does.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_blocked_callback_stops_no_sync() {
    let d = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(cfg(d.path())).unwrap());
    wal.append(entries(1, 11, 1, 32)).unwrap();
    let (order_tx, order_rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let o1 = order_tx.clone();
    wal.flush(move |r| {
        started_tx.send(()).unwrap();
        gate_rx.recv().unwrap(); // blocks until the test opens the gate
        o1.send((1, r.is_ok())).unwrap();
    })
    .unwrap();
    started_rx.recv().unwrap();
    // Callback 1 is running and blocked. A later request is still synced by the flush
    // thread (only it can move the durable index here: nobody else syncs)...
    wal.append(entries(11, 21, 1, 32)).unwrap();
    let o2 = order_tx.clone();
    wal.flush(move |r| o2.send((2, r.is_ok())).unwrap())
        .unwrap();
    let ticket = wal.flush_ticket().unwrap();
    eventually("the worker syncs request 2", || {
        wal.durable_index() == Some(20)
    });
    // ... and a flush_blocking on another thread completes.
    wal.append(entries(21, 31, 1, 32)).unwrap();
    let w = Arc::clone(&wal);
    std::thread::spawn(move || w.flush_blocking())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(wal.durable_index(), Some(30));
    // Answers keep request order: callback 2 and the ticket wait for callback 1.
    assert!(order_rx.try_recv().is_err());
    assert!(!ticket.is_ready());
    gate_tx.send(()).unwrap();
    assert_eq!(order_rx.recv().unwrap(), (1, true));
    assert_eq!(order_rx.recv().unwrap(), (2, true));
    ticket.wait().unwrap();
    drop(order_tx);
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    assert!(order_rx.try_recv().is_err(), "a callback fired twice");
}

#[test]
fn close_fires_every_pending_callback_in_order() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    let fired = Arc::new(Mutex::new(Vec::new()));
    for i in 0..200u64 {
        wal.append(entries(i + 1, i + 2, 1, 16)).unwrap();
        let f = Arc::clone(&fired);
        wal.flush(move |r| f.lock().unwrap().push((i, r.is_ok())))
            .unwrap();
    }
    wal.close().unwrap();
    let got = fired.lock().unwrap().clone();
    assert_eq!(got, (0..200).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn a_panicking_callback_poisons_nothing() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    wal.append(entries(1, 2, 1, 16)).unwrap();
    wal.flush(|_| panic!("injected callback panic")).unwrap();
    wal.append(entries(2, 3, 1, 16)).unwrap();
    let (tx, rx) = mpsc::channel();
    wal.flush(move |r| tx.send(r.is_ok()).unwrap()).unwrap();
    assert!(rx.recv().unwrap(), "the callback after a panicking one");
    wal.flush_blocking().unwrap();
    wal.close().unwrap();
}

#[test]
fn a_ticket_waits_or_is_awaited_without_a_runtime() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    wal.append(entries(1, 5, 1, 16)).unwrap();
    let t = wal.flush_ticket().unwrap();
    assert!(t.wait_timeout(Duration::from_secs(120)));
    assert!(t.is_ready());
    t.wait().unwrap();
    assert_eq!(wal.durable_index(), Some(4));
    wal.append(entries(5, 9, 1, 16)).unwrap();
    futures::executor::block_on(wal.flush_ticket().unwrap()).unwrap();
    assert_eq!(wal.durable_index(), Some(8));
    // Dropped unused: the sync still happens, nothing breaks.
    wal.append(entries(9, 12, 1, 16)).unwrap();
    drop(wal.flush_ticket().unwrap());
    wal.flush_ticket().unwrap().wait().unwrap();
    assert_eq!(wal.durable_index(), Some(11));
    wal.close().unwrap();
}

#[test]
fn a_ticket_is_awaited_under_tokio() {
    let d = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(cfg(d.path())).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = Arc::clone(&wal);
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for k in 0..4u64 {
            w.append(entries(k * 3 + 1, k * 3 + 4, 1, 16)).unwrap();
            let ticket = w.flush_ticket().unwrap();
            tasks.push(tokio::spawn(ticket));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    assert_eq!(wal.durable_index(), Some(12));
}

/// The poison's parts: op, path, source.
fn poison_of(e: Error) -> (&'static str, Option<std::path::PathBuf>, Arc<io::Error>) {
    match e {
        Error::Poisoned { op, path, source } => (op, path, source),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

#[test]
fn a_poisoned_ticket_and_every_later_call_carry_the_source() {
    let d = tempfile::tempdir().unwrap();
    let (armed, hook) = failing_hook();
    let wal = Wal::open(cfg(d.path()).sync_hook(hook)).unwrap();
    wal.append(entries(1, 3, 1, 16)).unwrap();
    wal.flush_ticket().unwrap().wait().unwrap();
    armed.store(true, Ordering::SeqCst);
    wal.append(entries(3, 5, 1, 16)).unwrap();
    let ticket = wal.flush_ticket().unwrap();
    let (op, path, source) = poison_of(ticket.wait().unwrap_err());
    assert_eq!(op, "msync");
    assert_eq!(source.raw_os_error(), Some(5));
    let path = path.expect("the chunk that failed");
    assert!(path.starts_with(d.path()), "{}", path.display());
    assert!(std::error::Error::source(&wal.flush_blocking().unwrap_err()).is_some());
    // Every later call returns the same poison, the same source.
    let later = [
        wal.append(entries(5, 6, 1, 16)).unwrap_err(),
        wal.flush_blocking().unwrap_err(),
        wal.flush(|_| {}).unwrap_err(),
        wal.flush_ticket().unwrap_err(),
        wal.truncate(2).unwrap_err(),
    ];
    for e in later {
        let (op2, path2, source2) = poison_of(e);
        assert_eq!((op2, path2.as_deref()), (op, Some(path.as_path())));
        assert!(Arc::ptr_eq(&source, &source2));
    }
    assert!(wal.close().unwrap_err().is_poisoned());
}

#[test]
fn a_sync_failing_at_open_is_reported_as_the_poison_it_is() {
    let d = tempfile::tempdir().unwrap();
    let (armed, hook) = failing_hook();
    armed.store(true, Ordering::SeqCst);
    let err = Wal::open(Config::new(d.path()).sync_hook(hook)).unwrap_err();
    let (op, path, source) = poison_of(err);
    assert_eq!(op, "msync");
    assert_eq!(source.raw_os_error(), Some(5));
    assert!(path.is_some_and(|p| p.starts_with(d.path())));
    // Nothing stays poisoned: the log opens once the disk works.
    armed.store(false, Ordering::SeqCst);
    Wal::open(Config::new(d.path())).unwrap().close().unwrap();
}
