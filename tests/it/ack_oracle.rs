//! Every acknowledgement, checked by the oracle at the moment it is given, while several
//! threads mix appends, `flush(cb)`, `flush_blocking`, truncations, `replace_range`, purges
//! and rotations (small chunks), with random sync delays and injected sync failures. A
//! failure poisons the log: every later acknowledgement must be an error; the log is then
//! reopened and the run goes on.
//!
//! Flush acknowledgements per run: `CHUNKWAL_ORACLE_ACKS` (default 20,000), and the
//! `durable_index()` reads made meanwhile. Seed: `CHUNKWAL_SEED`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chunkwal::{Config, Error, LogId, Wal};
use parking_lot::Mutex;

use crate::common::{payload, SMALL_CHUNK};
use crate::crash_util::Rng;
use crate::oracle::{Located, Oracle};

/// The log plus the test's own lock for index bookkeeping: appenders and truncaters take it
/// to pick indexes; flushes, durable-index reads and the syncs themselves never do.
struct Run {
    wal: Wal,
    order: Mutex<()>,
    oracle: Arc<Oracle>,
    /// Set by the sync hook once it injected a failure in this epoch.
    failed: Arc<AtomicBool>,
    /// Acknowledgements of success given for requests made after the failure (must be 0).
    late_ok: AtomicU64,
    /// Acknowledgements given (Ok or Err).
    acks: AtomicU64,
    /// `flush(cb)` callbacks not yet run.
    in_flight: AtomicU64,
    /// Per kind: flush callbacks, flush_blocking returns, durable_index reads.
    kinds: [AtomicU64; 3],
}

fn config(
    dir: &std::path::Path,
    oracle: &Arc<Oracle>,
    seed: u64,
    fail_one_in: u64,
) -> (Config, Arc<AtomicBool>) {
    let failed = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&failed);
    let rng = Mutex::new(Rng::new(seed));
    let mut c = Config::new(dir).chunk_size(SMALL_CHUNK);
    c.fs_observer = Some(oracle.observer());
    c.sync_hook = Some(Arc::new(move |_p: &std::path::Path| {
        let (delay, fail) = {
            let mut r = rng.lock();
            (
                r.below(4) == 0,
                fail_one_in > 0 && r.below(fail_one_in) == 0,
            )
        };
        if delay {
            std::thread::sleep(Duration::from_micros(200 + (seed % 7) * 100));
        }
        if fail {
            f.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("injected sync failure"));
        }
        Ok(())
    }));
    (c, failed)
}

impl Run {
    /// Flush acknowledgements given so far (callbacks and `flush_blocking` returns).
    fn flush_acks(&self) -> u64 {
        self.kinds[0].load(Ordering::Relaxed) + self.kinds[1].load(Ordering::Relaxed)
    }
}

/// The last entry and where it lies, taken under the order lock.
fn last_located(run: &Run) -> Option<Located> {
    let _g = run.order.lock();
    let last = run.wal.log_state().last?;
    run.wal.locate(last.index)
}

fn ack(run: &Run, what: &str, loc: &Option<Located>, asked_after_failure: bool, ok: bool) {
    run.acks.fetch_add(1, Ordering::Relaxed);
    run.kinds[usize::from(what == "flush_blocking")].fetch_add(1, Ordering::Relaxed);
    if ok {
        if asked_after_failure {
            run.late_ok.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(loc) = loc {
            run.oracle.check(what, loc);
        }
    }
}

fn appender(run: &Run, rng: &mut Rng, term: u64) -> bool {
    let _g = run.order.lock();
    let next = run.wal.log_state().next_index().unwrap_or(1);
    let n = 1 + rng.below(12);
    let batch: Vec<_> = (next..next + n)
        .map(|i| {
            (
                LogId::new(term, i),
                payload(i ^ term << 40, 40 + rng.below(900) as usize),
            )
        })
        .collect();
    run.wal.append(batch).is_ok()
}

fn editor(run: &Run, rng: &mut Rng, term: u64) -> bool {
    let _g = run.order.lock();
    let s = run.wal.log_state();
    let (Some(last), first) = (s.last, run.wal.first_index()) else {
        return true;
    };
    let Some(first) = first else { return true };
    let r = match rng.below(3) {
        0 => run
            .wal
            .truncate(last.index.saturating_sub(rng.below(8)).max(first + 1)),
        1 => {
            let since = last.index.saturating_sub(rng.below(5)).max(first + 1);
            let es: Vec<_> = (since..since + 1 + rng.below(6))
                .map(|i| (LogId::new(term, i), payload(i ^ term << 40, 100)))
                .collect();
            run.wal.replace_range(since, es)
        }
        _ => {
            let upto = first + rng.below(last.index.saturating_sub(first) / 2 + 1);
            match run.wal.entry(upto) {
                Ok(Some((id, _))) => run.wal.purge(id),
                _ => Ok(()),
            }
        }
    };
    match r {
        Ok(()) => true,
        Err(e) if e.is_poisoned() => false,
        Err(Error::TruncatePurged { .. }) | Err(Error::NonContiguous { .. }) => true,
        Err(e) => panic!("edit failed: {e:?}"),
    }
}

/// Queue a `flush(cb)`, keeping at most 32 unanswered (a pipelined Raft leader's window).
fn flusher_cb(run: &Arc<Run>) -> bool {
    while run.in_flight.load(Ordering::SeqCst) >= 32 {
        std::thread::yield_now();
    }
    let loc = last_located(run);
    let after = run.failed.load(Ordering::SeqCst);
    let r2 = Arc::clone(run);
    run.in_flight.fetch_add(1, Ordering::SeqCst);
    let queued = run.wal.flush(move |res| {
        ack(&r2, "flush callback", &loc, after, res.is_ok());
        r2.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    if queued.is_err() {
        run.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    queued.is_ok()
}

fn flusher_blocking(run: &Run) -> bool {
    let loc = last_located(run);
    let after = run.failed.load(Ordering::SeqCst);
    let r = run.wal.flush_blocking();
    ack(run, "flush_blocking", &loc, after, r.is_ok());
    r.is_ok()
}

/// Reads `durable_index()` and checks the entry it names, when no truncate moved it between
/// the read and the location.
fn poll_durable(run: &Run) {
    let (g1, d) = run.wal.durable_snapshot();
    let Some(d) = d else { return };
    let loc = run.wal.locate(d);
    let (g2, _) = run.wal.durable_snapshot();
    if let (true, Some(loc)) = (g1 == g2, loc) {
        run.acks.fetch_add(1, Ordering::Relaxed);
        run.kinds[2].fetch_add(1, Ordering::Relaxed);
        run.oracle.check("durable_index", &loc);
    }
}

fn epoch(run: &Arc<Run>, seed: u64, target_acks: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..5u64 {
        let run = Arc::clone(run);
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ ((t + 1) * 0x1234_5678));
            while !stop.load(Ordering::Relaxed) && run.flush_acks() < target_acks {
                let go_on = match t {
                    0 => appender(&run, &mut rng, 2) && flusher_blocking(&run),
                    1 => appender(&run, &mut rng, 2) && flusher_cb(&run),
                    2 => flusher_cb(&run) && (rng.below(3) != 0 || flusher_blocking(&run)),
                    3 => {
                        std::thread::sleep(Duration::from_micros(300));
                        editor(&run, &mut rng, 2)
                    }
                    _ => {
                        poll_durable(&run);
                        std::thread::sleep(Duration::from_micros(100));
                        true
                    }
                };
                if !go_on && t != 4 {
                    break;
                }
                if run.wal.log_state().last.is_some() && run.failed.load(Ordering::SeqCst) {
                    // Poisoned: every call from here on must fail; let the threads see it.
                    if run.wal.flush_blocking().is_ok() {
                        run.late_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
        }));
    }
    for h in handles {
        h.join().expect("thread panicked");
    }
}

#[test]
fn every_acknowledgement_is_covered_by_a_completed_sync() {
    let mut rng = Rng::from_env("ack oracle");
    let total: u64 = std::env::var("CHUNKWAL_ORACLE_ACKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let d = tempfile::tempdir().unwrap();
    let oracle = Oracle::new(d.path());
    let (mut acks, mut epochs, mut failures) = (0u64, 0u64, 0u64);
    while acks < total {
        let seed = rng.next_u64();
        // Every other epoch injects failures (one sync in 300 fails).
        let fail_one_in = if epochs % 2 == 1 { 300 } else { 0 };
        let (cfg, failed) = config(d.path(), &oracle, seed, fail_one_in);
        let wal = Wal::open(cfg).expect("reopen after an epoch");
        let run = Arc::new(Run {
            wal,
            order: Mutex::new(()),
            oracle: Arc::clone(&oracle),
            failed: Arc::clone(&failed),
            late_ok: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            kinds: Default::default(),
            in_flight: AtomicU64::new(0),
        });
        epoch(&run, seed, (total - acks).min(3_000));
        if failed.load(Ordering::SeqCst) {
            failures += 1;
            // Sticky: nothing succeeds after a failed sync.
            assert!(run.wal.flush_blocking().unwrap_err().is_poisoned());
        }
        acks += run.flush_acks();
        println!(
            "epoch {epochs}: {} acks {:?}, {} checked so far, failure injected: {}",
            run.acks.load(Ordering::Relaxed),
            run.kinds,
            oracle.checked.load(Ordering::Relaxed),
            failed.load(Ordering::SeqCst)
        );
        assert_eq!(
            run.late_ok.load(Ordering::Relaxed),
            0,
            "Ok given after a failed sync"
        );
        run.wal.wait_worker_idle();
        let run = Arc::try_unwrap(run)
            .ok()
            .expect("threads and callbacks done");
        drop(run);
        epochs += 1;
        oracle.assert_clean();
    }
    println!(
        "ack oracle: {} acknowledgements checked ({} counted) over {epochs} epochs, 5 threads, {failures} injected failures",
        oracle.checked.load(Ordering::Relaxed),
        acks
    );
    assert!(oracle.checked.load(Ordering::Relaxed) >= total / 2);
    oracle.assert_clean();
}
