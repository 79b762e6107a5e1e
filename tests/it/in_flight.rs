//! Failures in flight: a sync fails while several requests wait on it, through the core
//! `Wal`. Every waiter not yet answered must get an error, every later request must fail, and
//! no success may be acknowledged after the failure point.
//!
//! The tools here ([`Clock`], [`Fault`], [`Acks`]) are shared with the adapter's and the
//! openraft store's versions of these tests.

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chunkwal::{Config, Error, Wal};

use crate::common::{cfg, entries};

/// One global sequence: every request issued, every acknowledgement and both ends of the
/// failing sync take a tick, so the test can tell what happened before what.
#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicU64>);

impl Clock {
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Turns a wait that should end into a failure when it does not; no result depends on it.
const HANG: Duration = Duration::from_secs(60);

#[derive(Default)]
struct FaultState {
    armed: Option<u64>,
    released: bool,
    /// Syncs that entered the hook since it was armed.
    entered: usize,
    /// Tick and time the failing sync entered the hook.
    started: Option<(u64, Instant)>,
    /// Tick and time the hook first returned the error.
    returned: Option<(u64, Instant)>,
}

/// An injected sync failure. Before [`Fault::arm`] every sync succeeds. Once armed, every
/// sync blocks in the hook until [`Fault::release`], then fails: a disk that died.
#[derive(Default)]
pub struct Fault {
    clock: Clock,
    state: Mutex<FaultState>,
    cv: Condvar,
}

impl Fault {
    pub fn new(clock: &Clock) -> Arc<Fault> {
        Arc::new(Fault {
            clock: clock.clone(),
            ..Fault::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `config` with this fault as its sync hook.
    pub fn install(self: &Arc<Self>, mut config: Config) -> Config {
        let f = Arc::clone(self);
        config.sync_hook = Some(Arc::new(move |p: &Path| f.hook(p)));
        config
    }

    fn hook(&self, _path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.armed.is_none() {
            return Ok(());
        }
        s.entered += 1;
        if s.started.is_none() {
            s.started = Some((self.clock.tick(), Instant::now()));
        }
        self.cv.notify_all();
        while !s.released {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.returned.is_none() {
            s.returned = Some((self.clock.tick(), Instant::now()));
        }
        Err(io::Error::other("injected sync failure"))
    }

    /// From now on every sync blocks, then fails.
    pub fn arm(&self) {
        self.lock().armed = Some(self.clock.tick());
    }

    /// Wait until `n` syncs are blocked in the hook.
    pub fn wait_entered(&self, n: usize) {
        let deadline = Instant::now() + HANG;
        let mut s = self.lock();
        while s.entered < n {
            assert!(
                Instant::now() < deadline,
                "only {} syncs entered",
                s.entered
            );
            s = self.cv.wait_timeout(s, HANG).expect("fault").0;
        }
    }

    /// Syncs blocked in the hook so far.
    pub fn entered(&self) -> usize {
        self.lock().entered
    }

    /// Let the blocked syncs fail.
    pub fn release(&self) {
        self.lock().released = true;
        self.cv.notify_all();
    }

    fn ticks(&self) -> (u64, u64, u64) {
        let s = self.lock();
        let armed = s.armed.expect("fault armed");
        let started = s.started.expect("the failing sync started").0;
        let returned = s.returned.expect("the hook returned its error").0;
        (armed, started, returned)
    }
}

/// One answer to one request.
#[derive(Debug, Clone)]
pub struct Ack {
    pub what: String,
    /// Tick when the request was issued.
    pub issued: u64,
    /// Tick when its answer was delivered.
    pub at: u64,
    /// `None` for success, else the error.
    pub err: Option<String>,
}

/// Every acknowledgement, in the order they happened.
#[derive(Clone, Default)]
pub struct Acks {
    clock: Clock,
    log: Arc<(Mutex<Vec<Ack>>, Condvar)>,
}

impl Acks {
    pub fn new(clock: &Clock) -> Acks {
        Acks {
            clock: clock.clone(),
            log: Arc::default(),
        }
    }

    /// Take the tick of a request about to be issued.
    pub fn issue(&self) -> u64 {
        self.clock.tick()
    }

    /// Record the answer to the request issued at `issued`.
    pub fn record<T, E: Debug>(&self, what: &str, issued: u64, r: &Result<T, E>) {
        let (m, cv) = &*self.log;
        let mut log = m.lock().unwrap_or_else(|e| e.into_inner());
        log.push(Ack {
            what: what.to_string(),
            issued,
            at: self.clock.tick(),
            err: r.as_ref().err().map(|e| format!("{e:?}")),
        });
        cv.notify_all();
    }

    /// A callback for the core's `flush` that records its answer.
    pub fn callback(&self, what: &str) -> impl FnOnce(chunkwal::Result<()>) + Send + 'static {
        let (acks, what, issued) = (self.clone(), what.to_string(), self.issue());
        move |r| acks.record(&what, issued, &r)
    }

    pub fn snapshot(&self) -> Vec<Ack> {
        self.log.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait until `n` answers are recorded.
    pub fn wait_for(&self, n: usize) {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + HANG;
        let mut log = m.lock().unwrap_or_else(|e| e.into_inner());
        while log.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} answers: {log:#?}",
                log.len()
            );
            log = cv.wait_timeout(log, HANG).expect("acks").0;
        }
    }

    /// Whether `what` was answered, waiting at most `grace` for it. Only decides how long
    /// to wait; the test never asserts on it.
    pub fn answered_within(&self, what: &str, grace: Duration) -> bool {
        let (m, cv) = &*self.log;
        let deadline = Instant::now() + grace;
        let mut log = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if log.iter().any(|a| a.what == what) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            log = cv.wait_timeout(log, deadline - now).expect("acks").0;
        }
    }

    /// The promises, given `expected` answers in all:
    /// - every request issued after the fault was armed failed (the first sync after arming
    ///   is the failing one, so none of them was covered by a successful sync);
    /// - no success was acknowledged for a request issued after the failing sync started;
    /// - no success was delivered after the hook returned its error.
    pub fn check(&self, fault: &Fault, expected: usize) -> Vec<Ack> {
        let acks = self.snapshot();
        let (armed, started, returned) = fault.ticks();
        let show = || format!("armed {armed}, started {started}, returned {returned}: {acks:#?}");
        assert_eq!(acks.len(), expected, "answers: {}", show());
        for a in acks.iter().filter(|a| a.err.is_none()) {
            assert!(
                a.issued < started,
                "{} issued after the failing sync started and acknowledged Ok; {}",
                a.what,
                show()
            );
            assert!(
                a.at < returned,
                "{} acknowledged Ok after the failure; {}",
                a.what,
                show()
            );
            assert!(
                a.issued < armed,
                "{} acknowledged Ok with no successful sync after it; {}",
                a.what,
                show()
            );
        }
        acks
    }
}

fn assert_poisoned<T: Debug>(r: chunkwal::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(Error::Poisoned { .. })),
        "{what}: expected Poisoned, got {r:?}"
    );
}

/// A baseline append and flush that succeed before the fault.
fn baseline(wal: &Wal, acks: &Acks) {
    wal.append(entries(1, 3, 1, 64)).expect("append");
    let issued = acks.issue();
    let r = wal.flush_blocking();
    acks.record("baseline flush_blocking", issued, &r);
    r.expect("baseline");
}

#[test]
fn core_sync_failure_fails_every_flush_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::default();
    let (fault, acks) = (Fault::new(&clock), Acks::new(&clock));
    let wal = Wal::open(fault.install(cfg(dir.path()))).expect("open");
    baseline(&wal, &acks);
    fault.arm();
    wal.append(entries(3, 5, 1, 64)).expect("append");
    wal.flush(acks.callback("flush 1")).expect("queued");
    // The flush thread is in the failing sync; pile requests up behind it.
    fault.wait_entered(1);
    wal.append(entries(5, 7, 1, 64)).expect("append");
    wal.flush(acks.callback("flush 2")).expect("queued");
    wal.append(entries(7, 9, 1, 64)).expect("append");
    wal.flush(acks.callback("flush 3")).expect("queued");
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let issued = acks.issue();
            let r = wal.flush_blocking();
            acks.record("flush_blocking", issued, &r);
        });
        // It waits behind the failing sync (syncs run one at a time through the sync
        // owner): give it time to get there. Correctness does not depend on the wait.
        std::thread::sleep(Duration::from_millis(50));
        wal.flush(acks.callback("flush 4")).expect("queued");
        fault.release();
    });
    acks.wait_for(6);
    // Every later request fails.
    assert_poisoned(wal.append(entries(9, 10, 1, 64)), "append");
    let issued = acks.issue();
    let r = wal.flush(|_| panic!("a refused flush must not call back"));
    acks.record("flush after", issued, &r);
    assert_poisoned(r, "flush");
    let issued = acks.issue();
    let r = wal.flush_blocking();
    acks.record("flush_blocking after", issued, &r);
    assert_poisoned(r, "flush_blocking");
    let got = acks.check(&fault, 8);
    assert_eq!(got.iter().filter(|a| a.err.is_some()).count(), 7);
    assert!(
        wal.durable_index() <= Some(2),
        "unsynced entries reported durable"
    );
}

#[test]
fn core_flush_behind_a_failing_flush_blocking_is_not_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::default();
    let (fault, acks) = (Fault::new(&clock), Acks::new(&clock));
    let wal = Wal::open(fault.install(cfg(dir.path()))).expect("open");
    baseline(&wal, &acks);
    fault.arm();
    wal.append(entries(3, 5, 1, 64)).expect("append");
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let issued = acks.issue();
            let r = wal.flush_blocking();
            acks.record("flush_blocking", issued, &r);
        });
        fault.wait_entered(1);
        // Entries 3 and 4 are not durable: this flush must not succeed before the sync
        // that covers them does.
        wal.flush(acks.callback("flush")).expect("queued");
        // Give a wrong early answer the chance to show; a correct core may hold the answer
        // back until the sync above finishes, so this wait decides nothing by itself.
        acks.answered_within("flush", Duration::from_millis(500));
        fault.release();
    });
    acks.wait_for(3);
    acks.check(&fault, 3);
}
