//! Process-kill crash test over many groups: a child process writes batches that mix five
//! groups (and a scratch group it removes and recreates), flushes, and records what each
//! flush acknowledged; the parent SIGKILLs it at a random moment, reopens the log and
//! checks every group's acknowledged entries, and that an acknowledged removal stays done.
//!
//! Cycles: `CHUNKWAL_CRASH_CYCLES` (default 30; modes alternate). Seed: `CHUNKWAL_SEED`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkwal::{GroupId, RecoveryMode, Wal, WriteBatch};
use parking_lot::Mutex;

use crate::common::cfg;
use crate::crash_util::*;

const DIR_ENV: &str = "CHUNKWAL_MG_CRASH_DIR";
const ACKS_ENV: &str = "CHUNKWAL_MG_CRASH_ACKS";
const TERM_ENV: &str = "CHUNKWAL_MG_CRASH_TERM";
const SEED_ENV: &str = "CHUNKWAL_MG_CRASH_SEED";
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// The groups whose acknowledged entries are checked (0 is the default group).
const GROUPS: [GroupId; 5] = [GroupId(0), GroupId(1), GroupId(2), GroupId(3), GroupId(4)];
/// Removed and recreated now and then; its entries carry its incarnation as their term.
const SCRATCH: GroupId = GroupId(9);
/// Two entries the parent writes first, never purged: a small lagging group that
/// rewrite-forward (on in every other child) moves to the head.
const LAGGING: GroupId = GroupId(5);
const REWRITE_ENV: &str = "CHUNKWAL_MG_CRASH_REWRITE";

/// The log's config; `rewrite`: rewrite-forward past two chunks.
fn config(dir: &Path, rewrite: bool) -> chunkwal::Config {
    cfg(dir).rewrite_threshold(rewrite.then_some(2 * crate::common::SMALL_CHUNK))
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("child needs {k}"))
}

/// Per group: the last index written and the highest index in a flush request.
struct Progress {
    next: [u64; 5],
    requested: [u64; 5],
    term: [u64; 5],
}

/// Add group `k`'s part of a batch: an append, or (sometimes) a rewrite of an
/// unacknowledged suffix under a new term.
fn add_group(b: &mut WriteBatch, p: &mut Progress, k: usize, rng: &mut Rng) {
    let g = GROUPS[k];
    // At most five groups of three entries of up to 2 KiB: a batch fits a chunk.
    let n = 1 + rng.below(3);
    let since = if rng.chance(5) && p.next[k] > p.requested[k] + 1 {
        p.term[k] += 1;
        let since = p.requested[k] + 1 + rng.below(p.next[k] - p.requested[k] - 1);
        b.truncate(g, since);
        since
    } else {
        p.next[k]
    };
    b.append(g, derived_entries_in(g, since, since + n, p.term[k]));
    p.next[k] = since + n;
}

/// The child side. Does nothing unless started by the parent test.
#[test]
#[ignore = "child process of the multi-group kill test; runs only when re-executed by it"]
fn child_groups_main() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let base: u64 = env(TERM_ENV).parse().unwrap();
    let mut rng = Rng::new(env(SEED_ENV).parse().unwrap());
    let side = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env(ACKS_ENV))
        .unwrap();
    let side = Arc::new(Mutex::new(side));
    let rewrite = env(REWRITE_ENV) == "1";
    let wal = Wal::open(config(Path::new(&dir), rewrite)).expect("child open");
    let acked: Arc<[AtomicU64; 5]> = Arc::default();
    let mut p = Progress {
        next: [0; 5],
        requested: [0; 5],
        term: [base; 5],
    };
    for (k, g) in GROUPS.iter().enumerate() {
        let s = wal.group(*g).log_state();
        p.requested[k] = s.last.map_or(0, |l| l.index);
        p.next[k] = s.next_index().unwrap_or(1);
    }
    let mut scratch_term = base;
    let mut scratch_next = wal.group(SCRATCH).log_state().next_index().unwrap_or(1);
    // The scratch incarnation the last removal ended (0: none yet).
    let mut removed = 0;
    let start = Instant::now();
    while start.elapsed() < CHILD_LIFETIME {
        let mut b = WriteBatch::new();
        for k in 0..GROUPS.len() {
            if rng.chance(70) {
                add_group(&mut b, &mut p, k, &mut rng);
            }
        }
        if rng.chance(3) {
            b.remove_group(SCRATCH);
            removed = scratch_term;
            scratch_term += 1;
            scratch_next = 1;
        }
        if rng.chance(30) {
            let n = 1 + rng.below(3);
            let es = derived_entries_in(SCRATCH, scratch_next, scratch_next + n, scratch_term);
            b.append(SCRATCH, es);
            scratch_next += n;
        }
        wal.write(&b).unwrap();
        if rng.chance(50) {
            let lasts: Vec<u64> = p.next.iter().map(|n| n - 1).collect();
            p.requested.copy_from_slice(&lasts);
            let (side, acked) = (Arc::clone(&side), Arc::clone(&acked));
            wal.flush(move |r| {
                if r.is_ok() {
                    let mut f = side.lock();
                    let line: Vec<String> = lasts.iter().map(|l| l.to_string()).collect();
                    writeln!(f, "{} {removed}", line.join(" ")).unwrap();
                    f.sync_data().unwrap();
                    for (a, l) in acked.iter().zip(&lasts) {
                        a.fetch_max(*l, Ordering::SeqCst);
                    }
                }
            })
            .unwrap();
        }
        if rng.chance(4) {
            let mut b = WriteBatch::new();
            for (k, g) in GROUPS.iter().enumerate() {
                let a = acked[k].load(Ordering::SeqCst);
                if a > 200 {
                    if let Some((id, _)) = wal.group(*g).entry(a - 200).unwrap() {
                        b.purge(*g, id);
                    }
                }
            }
            wal.write(&b).unwrap();
        }
    }
}

/// What the complete lines of a side file acknowledged: per group the highest index, and
/// the highest scratch incarnation whose removal was acknowledged. And the line count.
fn read_acks(path: &Path) -> ([u64; 5], u64, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let (mut lasts, mut removed, mut n) = ([0u64; 5], 0, 0);
    for line in complete.lines() {
        let v: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 6, "side file line {line:?}");
        for (l, x) in lasts.iter_mut().zip(&v) {
            *l = (*l).max(*x);
        }
        removed = removed.max(v[5]);
        n += 1;
    }
    (lasts, removed, n)
}

/// Check a reopened log: every group holds what was acknowledged, the scratch group holds
/// no entry of an incarnation whose removal was acknowledged. Returns entries checked.
fn verify_groups(wal: &Wal, acked: &[u64; 5], removed: u64) -> u64 {
    let mut n = 0;
    for (g, a) in GROUPS.iter().zip(acked) {
        n += verify_group(wal, *g, (*a > 0).then_some(*a));
    }
    n += verify_group(wal, SCRATCH, None);
    n += verify_group(wal, LAGGING, Some(2));
    assert_eq!(wal.group(LAGGING).first_index(), Some(1), "lagging group");
    for (id, _) in wal.group(SCRATCH).read(..).unwrap() {
        assert!(
            id.term > removed,
            "scratch entry {id} survived its acknowledged removal"
        );
    }
    let listed = wal.groups();
    assert!(
        listed
            .iter()
            .all(|g| GROUPS.contains(g) || *g == SCRATCH || *g == LAGGING),
        "unknown groups {listed:?}"
    );
    n
}

#[test]
fn kill_during_group_batches_loses_nothing_acknowledged() {
    let cycles: u64 = std::env::var("CHUNKWAL_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = Rng::from_env("crash_kill_groups");
    let d = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    let log_dir = d.path().join("log");
    {
        let wal = Wal::open(cfg(&log_dir)).unwrap();
        let es = derived_entries_in(LAGGING, 1, 3, 1);
        wal.group(LAGGING).append(es).unwrap();
        wal.flush_blocking().unwrap();
    }
    let (mut acked, mut removed) = ([0u64; 5], 0u64);
    let (mut child_acks, mut verified, mut refusals) = (0, 0, 0);
    for c in 0..cycles {
        let mode = if c % 2 == 1 {
            RecoveryMode::Strict
        } else {
            RecoveryMode::TolerateTornTail
        };
        let acks = side.path().join(format!("acks-{c}"));
        let child_log = side.path().join(format!("child-{c}.log"));
        let envs = [
            (DIR_ENV, log_dir.to_string_lossy().into_owned()),
            (ACKS_ENV, acks.to_string_lossy().into_owned()),
            (TERM_ENV, ((c + 1) << 20).to_string()),
            (SEED_ENV, rng.next_u64().to_string()),
            (REWRITE_ENV, if c % 4 < 2 { "1" } else { "0" }.to_string()),
        ];
        let mut child = spawn_self("crash_kill_groups::child_groups_main", &envs, &child_log);
        let since = Instant::now();
        let wait_for_ack = rng.chance(70);
        while wait_for_ack && read_acks(&acks).2 == 0 {
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
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "child exited before the kill ({status}): {}",
                std::fs::read_to_string(&child_log).unwrap_or_default()
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (lasts, r, n) = read_acks(&acks);
        child_acks += n;
        for (a, l) in acked.iter_mut().zip(&lasts) {
            *a = (*a).max(*l);
        }
        removed = removed.max(r);
        let before = snapshot(&log_dir);
        let wal = match Wal::open(config(&log_dir, c % 4 < 2).recovery_mode(mode)) {
            Ok(w) => w,
            Err(e) if mode == RecoveryMode::Strict && is_torn_tail(&e) => {
                assert!(snapshot(&log_dir) == before, "strict open changed files");
                refusals += 1;
                Wal::open(cfg(&log_dir)).expect("tolerant open after strict refusal")
            }
            Err(e) => {
                let kept = keep_for_debug(&log_dir, "kill-groups");
                panic!("cycle {c}: reopen failed: {e} (kept in {})", kept.display());
            }
        };
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verify_groups(&wal, &acked, removed)
        }));
        match checked {
            Ok(n) => verified += n,
            Err(p) => {
                let kept = keep_for_debug(&log_dir, "kill-groups");
                eprintln!("cycle {c}: bad recovery, kept in {}", kept.display());
                std::panic::resume_unwind(p);
            }
        }
        // The recovered log takes a batch over every group, durably.
        let mut b = WriteBatch::new();
        for (k, g) in GROUPS.iter().enumerate() {
            let s = wal.group(*g).log_state();
            let next = s.next_index().unwrap_or(1);
            let term = s.last.map_or(1, |l| l.term);
            b.append(*g, derived_entries_in(*g, next, next + 1, term));
            acked[k] = next;
        }
        wal.write(&b).unwrap();
        wal.flush_blocking().unwrap();
        wal.close().unwrap();
    }
    println!(
        "crash_kill_groups: {cycles} cycles, {child_acks} acks, {verified} entries verified, \
         {refusals} strict refusals, acked {acked:?}, scratch removed through {removed}"
    );
    assert!(
        child_acks > 0,
        "no child ever acknowledged a flush: the test proved nothing"
    );
    // The last children wrote with rewrite-forward on: the lagging group left chunk 0.
    let wal = Wal::open(config(&log_dir, true)).unwrap();
    let pins = wal.pinning_groups(100);
    assert!(wal.stat().chunks[0].seq > 0, "chunk 0 never retired");
    let lag = pins.iter().find(|p| p.group == LAGGING);
    assert!(lag.is_none_or(|p| p.oldest_chunk > 0), "{pins:?}");
    assert!(verified > 0);
}
