//! Failures in flight through the async adapter, for every strategy × policy: a sync fails
//! while persists, flushes and a hard-state save wait on it (see `in_flight` for the tools
//! and the promises checked).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread::Scope;
use std::time::{Duration, Instant};

use chunkwal::adapter::{
    AdapterError, AdapterOptions, FlushPolicy, HardState, LogStore, PersistenceStrategy,
};
use chunkwal::LogId;
use futures::executor::block_on;

use crate::common::{cfg, entries};
use crate::in_flight::{Acks, Clock, Fault};

type Fut<'a> = Pin<Box<dyn Future<Output = Result<(), AdapterError>> + Send + 'a>>;

const HOUR: Duration = Duration::from_secs(3600);

fn poll_once(fut: &mut Fut<'_>) -> Poll<Result<(), AdapterError>> {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    fut.as_mut().poll(&mut cx)
}

/// Issue `fut` here (its first poll issues its request), then wait for its answer on a
/// thread of `sc`, recording the answer the moment it is delivered.
fn start<'s, 'e>(sc: &'s Scope<'s, 'e>, acks: &Acks, what: &'static str, mut fut: Fut<'e>) {
    let issued = acks.issue();
    match poll_once(&mut fut) {
        Poll::Ready(r) => acks.record(what, issued, &r),
        Poll::Pending => {
            let acks = acks.clone();
            sc.spawn(move || {
                let r = block_on(fut);
                acks.record(what, issued, &r);
            });
        }
    }
}

/// A write: DiskFirst acknowledges durability, so it is an ack like a flush; MemFirst
/// returns once the write is in the log, before any sync.
fn write<'s, 'e>(
    sc: &'s Scope<'s, 'e>,
    acks: &Acks,
    strategy: PersistenceStrategy,
    what: &'static str,
    mut fut: Fut<'e>,
) {
    match strategy {
        PersistenceStrategy::DiskFirst => start(sc, acks, what, fut),
        _ => assert!(
            matches!(poll_once(&mut fut), Poll::Ready(Ok(()))),
            "MemFirst {what}: written at once"
        ),
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::yield_now();
    }
}

const HS: HardState = HardState {
    current_term: 5,
    voted_for: Some(2),
};

/// Pile requests of every kind up behind the failing sync, then let it fail.
fn pile_up(s: &LogStore, fault: &Fault, acks: &Acks, strategy: PersistenceStrategy) {
    std::thread::scope(|sc| {
        // Two entries: a flush under Immediate, and the Batch threshold: the flush thread
        // starts the failing sync.
        let persist =
            |from, to| -> Fut<'_> { Box::pin(s.persist_entries(entries(from, to, 1, 64))) };
        write(sc, acks, strategy, "persist 3..=4", persist(3, 5));
        fault.wait_entered(1);
        write(sc, acks, strategy, "persist 5..=6", persist(5, 7));
        start(sc, acks, "flush_async", Box::pin(s.flush_async()));
        // One entry: below the Batch threshold, it waits for the next request.
        write(sc, acks, strategy, "persist 7", persist(7, 8));
        write(
            sc,
            acks,
            strategy,
            "purge 1",
            Box::pin(s.purge(LogId::new(1, 1))),
        );
        let replace = s.replace_range(7, entries(7, 9, 2, 64));
        write(sc, acks, strategy, "replace_range 7..=8", Box::pin(replace));
        sc.spawn(|| {
            let issued = acks.issue();
            let r = s.save_hard_state(&HS);
            acks.record("save_hard_state", issued, &r);
        });
        // The vote is written; the next request is issued after the save's (same lock).
        wait_until("vote written", || {
            s.load_hard_state().ok() == Some(Some(HS))
        });
        start(
            sc,
            acks,
            "flush_async after the vote",
            Box::pin(s.flush_async()),
        );
        sc.spawn(|| {
            let issued = acks.issue();
            let r = s.flush();
            acks.record("flush", issued, &r);
        });
        fault.release();
    });
}

/// After the failure everything fails, and at once: nothing waits for a flush that cannot
/// succeed.
fn everything_fails_after(s: &LogStore, acks: &Acks) {
    let after: Vec<(&str, Fut<'_>)> = vec![
        (
            "persist new",
            Box::pin(s.persist_entries(entries(9, 10, 1, 64))),
        ),
        (
            "persist held",
            Box::pin(s.persist_entries(entries(1, 3, 1, 64))),
        ),
        ("persist nothing", Box::pin(s.persist_entries(Vec::new()))),
        ("flush_async", Box::pin(s.flush_async())),
        ("truncate", Box::pin(s.truncate(5))),
        ("purge", Box::pin(s.purge(LogId::new(1, 2)))),
        (
            "replace_range",
            Box::pin(s.replace_range(4, entries(4, 5, 3, 64))),
        ),
        ("reset", Box::pin(s.reset())),
    ];
    for (what, mut fut) in after {
        let issued = acks.issue();
        match poll_once(&mut fut) {
            Poll::Ready(r) => acks.record(what, issued, &r),
            Poll::Pending => panic!("{what} waits after the failure instead of failing"),
        }
    }
    let issued = acks.issue();
    acks.record("save_hard_state after", issued, &s.save_hard_state(&HS));
    let issued = acks.issue();
    acks.record("flush after", issued, &s.flush());
}

fn in_flight(strategy: PersistenceStrategy, policy: FlushPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::default();
    let (fault, acks) = (Fault::new(&clock), Acks::new(&clock));
    let opts = AdapterOptions::new(strategy, policy);
    let s = LogStore::open(fault.install(cfg(dir.path())), opts).expect("open");
    block_on(s.persist_entries(entries(1, 3, 1, 64))).expect("baseline persist");
    let issued = acks.issue();
    let r = block_on(s.flush_async());
    acks.record("baseline flush", issued, &r);
    r.expect("baseline flush");
    fault.arm();
    pile_up(&s, &fault, &acks, strategy);
    everything_fails_after(&s, &acks);
    let durable_acks = match strategy {
        PersistenceStrategy::DiskFirst => 5,
        _ => 0,
    };
    // Baseline, the in-flight acks, and the 10 requests after the failure.
    let got = acks.check(&fault, 1 + durable_acks + 4 + 10);
    assert_eq!(
        got.iter().filter(|a| a.err.is_none()).count(),
        1,
        "{got:#?}"
    );
    assert!(
        s.durable_index() <= Some(2),
        "unsynced entries reported durable"
    );
}

fn batch() -> FlushPolicy {
    FlushPolicy::Batch {
        threshold: 2,
        interval: HOUR,
    }
}

#[test]
fn in_flight_failure_disk_first_immediate() {
    in_flight(PersistenceStrategy::DiskFirst, FlushPolicy::Immediate);
}

#[test]
fn in_flight_failure_disk_first_batch() {
    in_flight(PersistenceStrategy::DiskFirst, batch());
}

#[test]
fn in_flight_failure_mem_first_immediate() {
    in_flight(PersistenceStrategy::MemFirst, FlushPolicy::Immediate);
}

#[test]
fn in_flight_failure_mem_first_batch() {
    in_flight(PersistenceStrategy::MemFirst, batch());
}

/// One race of a flush refused on the spot against the flushes still queued on the flush
/// thread: every one of them must fail.
fn refused_on_the_spot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::default();
    let (fault, acks) = (Fault::new(&clock), Acks::new(&clock));
    // MemFirst that never flushes by itself: the writes cross a chunk boundary unsynced,
    // and the rotation's sync, which answers no request, goes out with the next flush.
    let policy = FlushPolicy::Batch {
        threshold: usize::MAX,
        interval: HOUR,
    };
    let opts = AdapterOptions::new(PersistenceStrategy::MemFirst, policy);
    let s = LogStore::open(fault.install(cfg(dir.path())), opts).expect("open");
    for k in 0..6 {
        block_on(s.persist_entries(entries(1 + 4 * k, 5 + 4 * k, 1, 4000))).expect("persist");
    }
    fault.arm();
    let spun = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        start(sc, &acks, "flush", Box::pin(s.flush_async()));
        // The flush thread is in the rotation's sync; the request waits behind it.
        fault.wait_entered(1);
        // Issue flushes without waiting until one is refused on the spot: the log is
        // poisoned from the moment the sync fails, while the flush thread still has to
        // answer the requests queued behind it.
        let spinner = sc.spawn(|| {
            let mut queued = Vec::new();
            loop {
                let issued = acks.issue();
                let mut fut: Fut<'_> = Box::pin(s.flush_async());
                match poll_once(&mut fut) {
                    Poll::Ready(r) => {
                        acks.record("flush refused on the spot", issued, &r);
                        return queued;
                    }
                    Poll::Pending => queued.push((issued, fut)),
                }
                spun.fetch_add(1, Ordering::SeqCst);
            }
        });
        wait_until("spinning", || spun.load(Ordering::SeqCst) > 0);
        fault.release();
        for (issued, fut) in spinner.join().expect("spinner") {
            acks.record("queued flush", issued, &block_on(fut));
        }
    });
    let n = acks.snapshot().len();
    let got = acks.check(&fault, n);
    assert!(got.iter().all(|a| a.err.is_some()), "{got:#?}");
    assert_eq!(fault.entered(), 1, "no sync after the failure");
}

/// D2 through the public API. The race is the flush thread answering the queued requests
/// after the poison is set; a fixed adapter passes every round whoever wins. The old
/// adapter lost about one round in three on the 2-core test machine.
#[test]
fn a_flush_refused_on_the_spot_fails_the_flushes_still_queued() {
    for _ in 0..30 {
        refused_on_the_spot();
    }
}
