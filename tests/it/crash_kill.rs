//! Process-kill crash test: a child process (this test binary, re-executed) writes and
//! flushes; the parent SIGKILLs it at a random moment and checks every acknowledged entry.
//!
//! Cycles per mode: `CHUNKWAL_CRASH_CYCLES` (default 50). Seed: `CHUNKWAL_SEED`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkwal::{RecoveryMode, Wal};
use parking_lot::Mutex;

use crate::common::cfg;
use crate::crash_util::*;

const DIR_ENV: &str = "CHUNKWAL_CRASH_DIR";
const ACKS_ENV: &str = "CHUNKWAL_CRASH_ACKS";
const TERM_ENV: &str = "CHUNKWAL_CRASH_TERM";
const SEED_ENV: &str = "CHUNKWAL_CRASH_CHILD_SEED";
const MODE_ENV: &str = "CHUNKWAL_CRASH_MODE";
/// A child that is never killed stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

fn mode_from(s: &str) -> RecoveryMode {
    if s == "strict" {
        RecoveryMode::Strict
    } else {
        RecoveryMode::TolerateTornTail
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("child needs {k}"))
}

/// The child side. Does nothing unless started by [`run_cycles`].
#[test]
#[ignore = "child process of the kill tests; runs only when re-executed by them"]
fn child_main() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let mode = mode_from(&env(MODE_ENV));
    let mut term: u64 = env(TERM_ENV).parse().unwrap();
    let mut rng = Rng::new(env(SEED_ENV).parse().unwrap());
    let side = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env(ACKS_ENV))
        .unwrap();
    let side = Arc::new(Mutex::new(side));
    let wal = Wal::open(cfg(Path::new(&dir)).recovery_mode(mode)).expect("child open");
    let acked = Arc::new(AtomicU64::new(0));
    // Highest index ever included in a flush request: never truncated below.
    let mut requested = wal.log_state().last.map_or(0, |l| l.index);
    let mut next = wal.log_state().next_index().unwrap_or(1);
    let start = Instant::now();
    while start.elapsed() < CHILD_LIFETIME {
        let n = 1 + rng.below(16);
        if rng.chance(4) && next > requested + 1 {
            // Rewrite an unacknowledged suffix under a new term.
            let since = requested + 1 + rng.below(next - requested - 1);
            term += 1;
            let es = derived_entries(since, since + n, term);
            if rng.chance(50) {
                wal.replace_range(since, es).unwrap();
            } else {
                wal.truncate(since).unwrap();
                wal.append(es).unwrap();
            }
            next = since + n;
        } else {
            wal.append(derived_entries(next, next + n, term)).unwrap();
            next += n;
        }
        if rng.chance(60) {
            let last = next - 1;
            requested = last;
            let (side, acked) = (Arc::clone(&side), Arc::clone(&acked));
            wal.flush(move |r| {
                if r.is_ok() {
                    let mut f = side.lock();
                    writeln!(f, "{last}").unwrap();
                    f.sync_data().unwrap();
                    acked.fetch_max(last, Ordering::SeqCst);
                }
            })
            .unwrap();
        }
        if rng.chance(4) {
            let a = acked.load(Ordering::SeqCst);
            if a > 300 {
                if let Some((id, _)) = wal.entry(a - 300).unwrap() {
                    wal.purge(id).unwrap();
                }
            }
        }
    }
}

/// Highest index on a complete line of the side file.
fn max_acked(path: &Path) -> (Option<u64>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let nums: Vec<u64> = complete.lines().filter_map(|l| l.parse().ok()).collect();
    (nums.iter().copied().max(), nums.len())
}

fn count_lines(path: &Path) -> usize {
    max_acked(path).1
}

#[derive(Debug, Default)]
struct Stats {
    cycles: u64,
    child_acks: usize,
    verified: u64,
    strict_refusals: u64,
    killed_after_ack: u64,
    /// Cycles whose child was killed before it created the log directory (only the first
    /// can be: the directory stays from then on).
    unopened: u64,
}

fn run_cycles(mode: RecoveryMode, tag: &str) -> Stats {
    let cycles: u64 = std::env::var("CHUNKWAL_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng::from_env(&format!("crash_kill {tag}"));
    let d = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    let log_dir = d.path().join("log");
    let mut acked: Option<u64> = None;
    let mut st = Stats::default();
    for c in 0..cycles {
        let acks = side.path().join(format!("acks-{c}"));
        let child_log = side.path().join(format!("child-{c}.log"));
        let envs = [
            (DIR_ENV, log_dir.to_string_lossy().into_owned()),
            (ACKS_ENV, acks.to_string_lossy().into_owned()),
            (TERM_ENV, ((c + 1) << 20).to_string()),
            (SEED_ENV, rng.next_u64().to_string()),
            (MODE_ENV, tag.to_string()),
        ];
        let mut child = spawn_self("crash_kill::child_main", &envs, &child_log);
        let wait_for_ack = rng.chance(60);
        if wait_for_ack {
            // Let the child get going (its first acknowledgment) before the random delay.
            let since = Instant::now();
            while count_lines(&acks) == 0 {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "child exited early ({status}): {}",
                        std::fs::read_to_string(&child_log).unwrap_or_default()
                    );
                }
                assert!(
                    since.elapsed() < Duration::from_secs(120),
                    "child made no progress"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "child exited before the kill ({status}): {}",
                std::fs::read_to_string(&child_log).unwrap_or_default()
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (child_max, n) = max_acked(&acks);
        st.child_acks += n;
        if n > 0 {
            st.killed_after_ack += 1;
        }
        acked = acked.max(child_max);
        if !log_dir.exists() {
            // Killed before it created anything (a slow start on a loaded machine).
            assert_eq!(c, 0, "the log directory vanished after cycle 0");
            st.unopened += 1;
            continue;
        }

        let before = snapshot(&log_dir);
        let wal = match Wal::open(cfg(&log_dir).recovery_mode(mode)) {
            Ok(w) => w,
            Err(e) if mode == RecoveryMode::Strict && is_torn_tail(&e) => {
                let after = snapshot(&log_dir);
                assert!(
                    after == before,
                    "strict open changed {:?}",
                    changed_files(&before, &after)
                );
                st.strict_refusals += 1;
                Wal::open(cfg(&log_dir)).expect("tolerant open after strict refusal")
            }
            Err(e) => {
                let kept = keep_for_debug(&log_dir, "kill");
                panic!(
                    "cycle {c}: reopen failed: {e} (image kept in {})",
                    kept.display()
                );
            }
        };
        st.verified += verify_log(&wal, acked);
        // The recovered log accepts new appends, and they are durable.
        let s = wal.log_state();
        let next = s.next_index().unwrap_or(1);
        let term = s.last.map_or(1, |l| l.term);
        wal.append(derived_entries(next, next + 1, term)).unwrap();
        wal.flush_blocking().unwrap();
        assert_eq!(wal.durable_index(), Some(next));
        acked = Some(next);
        wal.close().unwrap();
        st.cycles += 1;
    }
    println!("crash_kill {tag}: {st:?}, last acknowledged index {acked:?}");
    assert_eq!(
        st.cycles + st.unopened,
        cycles,
        "every cycle reopened a log"
    );
    assert!(
        st.child_acks > 0,
        "no child ever acknowledged a flush: the test proved nothing"
    );
    st
}

#[test]
fn kill_during_writes_loses_nothing_acknowledged_tolerant() {
    run_cycles(RecoveryMode::TolerateTornTail, "tolerant");
}

#[test]
fn kill_during_writes_loses_nothing_acknowledged_strict() {
    run_cycles(RecoveryMode::Strict, "strict");
}

/// Not a crash test, but it needs the same child trick: a second *process* gets `Locked`.
#[test]
#[ignore = "child process of the lock test; runs only when re-executed by it"]
fn lock_child() {
    let Ok(dir) = std::env::var("CHUNKWAL_LOCK_DIR") else {
        return;
    };
    let out = env("CHUNKWAL_LOCK_OUT");
    let verdict = match Wal::open(cfg(Path::new(&dir))) {
        Ok(w) => {
            drop(w);
            "opened".to_string()
        }
        Err(chunkwal::Error::Locked { .. }) => "locked".to_string(),
        Err(e) => format!("error: {e}"),
    };
    std::fs::write(out, verdict).unwrap();
}

fn lock_verdict(dir: &Path, side: &Path, n: u32) -> String {
    let out = side.join(format!("verdict-{n}"));
    let envs = [
        ("CHUNKWAL_LOCK_DIR", dir.to_string_lossy().into_owned()),
        ("CHUNKWAL_LOCK_OUT", out.to_string_lossy().into_owned()),
    ];
    let log = side.join(format!("lock-{n}.log"));
    let status = spawn_self("crash_kill::lock_child", &envs, &log)
        .wait()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    std::fs::read_to_string(&out).expect("child wrote no verdict")
}

#[test]
fn second_process_gets_locked() {
    let d = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    wal.append(derived_entries(1, 4, 1)).unwrap();
    assert_eq!(lock_verdict(d.path(), side.path(), 0), "locked");
    wal.close().unwrap();
    assert_eq!(lock_verdict(d.path(), side.path(), 1), "opened");
    let wal = Wal::open(cfg(d.path())).unwrap();
    assert_eq!(lock_verdict(d.path(), side.path(), 2), "locked");
    drop(wal);
}
