//! Simulated power loss that may also lose directory operations.
//!
//! `power_loss.rs` builds its images from the sync recorder alone, so every create, rename
//! and unlink survives in them. Here a `Config::fs_observer` records every file-system
//! event of the log directory, and images are rebuilt from those events as
//! `crash_image.rs` describes: directory operations not followed by a directory fsync may
//! be lost (every combination when there are few, random subsets and in-order prefixes
//! otherwise), and unsynced sectors hold their new or their durable bytes (zeros in a new
//! file, the earlier life's bytes in a recycled one). Sizes stay as they are.
//!
//! Every image must open under the default tolerant recovery, and keep every acknowledged
//! entry (a flush callback's `Ok` or a `flush_blocking` return after the append, a
//! successful open's `durable_index()`), the acknowledged purge point and an acknowledged
//! reset; every entry it holds must carry the payload derived from its id.
//!
//! Workloads (64 KiB chunks, several threads flushing): appends across many installs;
//! appends with purges (purged chunks are recycled); a reset in the middle; adoption (a
//! process crash right after a rotation, then a normal reopen that adopts the `.chunk.tmp`
//! while the observer records).
//!
//! Images per run: `CHUNKWAL_DIROPS_IMAGES` (default 300, split over the workloads).
//! Seed: `CHUNKWAL_SEED` (thread timing still varies between runs).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkwal::{Config, LogState, Wal};
use parking_lot::Mutex;

use crate::common::SMALL_CHUNK;
use crate::crash_image::{
    check_captures, describe, Built, Capture, Choice, DirOp, Live, Mode, Stats,
};
use crate::crash_util::{derived, derived_entries, seed_from_env, Rng};

/// Terms of reset epoch `e` are `1 + TERMS_PER_EPOCH * e`: an entry's term says which
/// incarnation of the log (between resets) wrote it.
const TERMS_PER_EPOCH: u64 = 100;

fn epoch_of(term: u64) -> u64 {
    (term - 1) / TERMS_PER_EPOCH
}

fn term_of(epoch: u64) -> u64 {
    1 + TERMS_PER_EPOCH * epoch
}

/// What the test knows of a point in the log's life: the reset epoch, the last appended
/// index and the purge point (0: none; indexes start at 1 in every epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    epoch: u64,
    appended: u64,
    purged: u64,
}

/// Progress made by returned calls, and the part of it a flush acknowledged.
#[derive(Default)]
struct Acks {
    /// Calls that returned (taken before a flush is asked for).
    done: Mutex<Progress>,
    /// Acknowledged by a flush that returned Ok (or by a successful open).
    acked: Mutex<Progress>,
    /// Resets asked for (incremented before `reset()` is called): an image may be of any
    /// epoch up to this one.
    epoch_requested: AtomicU64,
}

impl Acks {
    fn ack(&self, snap: Progress) {
        let mut a = self.acked.lock();
        if snap.epoch > a.epoch {
            *a = snap;
        } else if snap.epoch == a.epoch {
            a.appended = a.appended.max(snap.appended);
            a.purged = a.purged.max(snap.purged);
        }
    }
}

/// A capture's knowledge: what was acknowledged, and the resets asked for.
type Snap = (Progress, u64);
type Cap = Capture<Snap>;

fn cfg(dir: &Path) -> Config {
    Config::new(dir).chunk_size(SMALL_CHUNK)
}

/// Check an opened image against what was acknowledged. Returns the entries checked.
fn verify(wal: &Wal, acked: Progress, epoch_requested: u64) -> Result<u64, String> {
    let s: LogState = wal.log_state();
    let Some(last) = s.last else {
        if s.purged.is_some() {
            return Err(format!("no last id but purged {:?}", s.purged));
        }
        // Empty: the state right after a reset that was asked for, or nothing acknowledged.
        if acked.appended > 0 && epoch_requested <= acked.epoch {
            return Err(format!(
                "log is empty but entry {} of epoch {} was acknowledged",
                acked.appended, acked.epoch
            ));
        }
        return Ok(0);
    };
    let ie = epoch_of(last.term);
    if ie < acked.epoch {
        return Err(format!(
            "acknowledged reset undone: log of epoch {ie} (last {last}), epoch {} acknowledged",
            acked.epoch
        ));
    }
    if ie > epoch_requested {
        return Err(format!("log of epoch {ie} that was never started"));
    }
    if ie == acked.epoch {
        if last.index < acked.appended {
            return Err(format!(
                "acknowledged entry {} lost: log ends at {last}",
                acked.appended
            ));
        }
        let p = s.purged.map_or(0, |p| p.index);
        if p < acked.purged {
            return Err(format!(
                "acknowledged purge to {} undone: purge point {:?}",
                acked.purged, s.purged
            ));
        }
    }
    if let Some(p) = s.purged {
        if epoch_of(p.term) != ie {
            return Err(format!("purge point {p} from another epoch than {last}"));
        }
    }
    let first = s.purged.map_or(1, |p| p.index + 1);
    if first > last.index {
        return Ok(0);
    }
    let got = wal
        .read(first..=last.index)
        .map_err(|e| format!("read [{first}, {}]: {e}", last.index))?;
    if got.len() as u64 != last.index + 1 - first {
        return Err(format!(
            "gap: [{first}, {}] holds {} entries",
            last.index,
            got.len()
        ));
    }
    let mut prev = 0;
    for (k, (id, p)) in got.iter().enumerate() {
        if id.index != first + k as u64 {
            return Err(format!("index out of order at {id}"));
        }
        if id.term < prev || epoch_of(id.term) != ie {
            return Err(format!("bad term at {id} (previous {prev}, epoch {ie})"));
        }
        prev = id.term;
        if *p != derived(id.index, id.term) {
            return Err(format!("payload of {id} altered"));
        }
    }
    Ok(got.len() as u64)
}

/// Open an image, check it, and sometimes go on writing and reopen it once more.
fn check_image(img: &Built, cap: &Cap, reopen: bool) -> Result<u64, String> {
    let wal = Wal::open(cfg(img.dir.path())).map_err(|e| format!("open failed: {e}"))?;
    let (acked, epoch_requested) = cap.snap;
    let n = verify(&wal, acked, epoch_requested)?;
    if !reopen {
        drop(wal);
        return Ok(n);
    }
    let s = wal.log_state();
    let term = s.last.map_or(term_of(epoch_requested), |l| l.term);
    let next = s.next_index().unwrap_or(1);
    wal.append(derived_entries(next, next + 3, term))
        .map_err(|e| format!("append after open: {e}"))?;
    wal.flush_blocking()
        .map_err(|e| format!("flush after open: {e}"))?;
    wal.close().map_err(|e| format!("close: {e}"))?;
    let wal = Wal::open(cfg(img.dir.path())).map_err(|e| format!("second open failed: {e}"))?;
    let acked = Progress {
        epoch: epoch_of(term),
        appended: next + 2,
        purged: 0,
    };
    verify(&wal, acked, acked.epoch).map_err(|e| format!("after a second open: {e}"))
}

/// The known engine bug (see `out_of_order_purge_unlinks_leave_an_openable_log`): a purge
/// or reset unlinks several chunks, oldest first, before one directory fsync. An image that
/// keeps an older chunk whose unlink was lost but not a newer one whose unlink was applied
/// has a hole, and open refuses it with `MissingChunk`. True for exactly that: the open
/// failed on a missing chunk, every name missing inside the hole was unlinked in this image,
/// and the chunk before the hole is one whose unlink this image lost.
fn is_known_hole(cap: &Cap, ch: &Choice, img: &Built, why: &str) -> bool {
    if ch.ordered() || !why.starts_with("open failed") || !why.contains("is missing") {
        return false;
    }
    let unlink = |name: &str, applied: bool| {
        cap.pending.iter().zip(&ch.applied).any(|(op, &on)| {
            on == applied && matches!(op, DirOp::Unlink { name: n, .. } if n == name)
        })
    };
    let seqs: Vec<u64> = img
        .names
        .keys()
        .filter_map(|n| n.strip_suffix(".chunk")?.parse().ok())
        .collect();
    let mut holes = 0;
    for w in seqs.windows(2) {
        if w[1] == w[0] + 1 {
            continue;
        }
        holes += 1;
        if !unlink(&chunkwal::inspect::chunk_file_name(w[0]), false)
            || !(w[0] + 1..w[1]).all(|m| unlink(&chunkwal::inspect::chunk_file_name(m), true))
        {
            return false;
        }
    }
    holes > 0
}

fn report_failure(what: &str, seed: u64, cap: &Cap, ch: &Choice, img: &Built, why: &str) {
    eprintln!(
        "\n=== power_loss_dirops {what}: image failed: {why}\n\
         seed {seed} (CHUNKWAL_SEED={seed}), acknowledged {:?}, resets asked {}\n{}",
        cap.snap.0,
        cap.snap.1,
        describe(cap, ch, img)
    );
}

/// The log under test, its writers' bookkeeping and its flushing threads.
struct Driver {
    live: Live<Snap>,
    acks: Arc<Acks>,
    rng: Rng,
    next: u64,
    epoch: u64,
}

impl std::ops::Deref for Driver {
    type Target = Live<Snap>;
    fn deref(&self) -> &Live<Snap> {
        &self.live
    }
}

impl std::ops::DerefMut for Driver {
    fn deref_mut(&mut self) -> &mut Live<Snap> {
        &mut self.live
    }
}

impl Driver {
    fn new(seed: u64) -> Driver {
        let acks = Arc::new(Acks::default());
        let a = Arc::clone(&acks);
        // Acknowledgements are read under the record's lock: every sync an acknowledgement
        // seen there depends on was reported before it was given.
        let live = Live::new(seed ^ 0x5eed, move || {
            (*a.acked.lock(), a.epoch_requested.load(Ordering::SeqCst))
        });
        Driver {
            live,
            acks,
            rng: Rng::new(seed),
            next: 1,
            epoch: 0,
        }
    }

    /// Open the log with the observer; what it reports durable counts as acknowledged.
    fn open(&mut self) {
        let wal = self.live.open(cfg(self.dir.path()));
        let s = wal.log_state();
        let last = s.last.map_or(0, |l| l.index);
        let done = *self.acks.done.lock();
        assert_eq!(
            last, done.appended,
            "after a process crash the reopened log must hold every appended entry"
        );
        if let Some(d) = wal.durable_index() {
            self.acks.ack(Progress {
                appended: d,
                ..done
            });
        }
        self.next = last + 1;
        self.wal = Some(Arc::new(wal));
    }

    /// Threads that flush; each takes what returned calls did before it asks.
    fn start_flushers(&mut self) {
        let (a, b) = (Arc::clone(&self.acks), Arc::clone(&self.acks));
        let seed = self.rng.next_u64();
        self.live
            .start_flushers(seed, move || *a.done.lock(), move |snap| b.ack(snap));
    }

    /// Append a batch of 1-8 entries; now and then flush from this thread too.
    fn append(&mut self, may_flush: bool) {
        let n = 1 + self.rng.below(8);
        let term = term_of(self.epoch);
        self.wal()
            .append(derived_entries(self.next, self.next + n, term))
            .unwrap();
        self.next += n;
        self.acks.done.lock().appended = self.next - 1;
        if may_flush && self.rng.chance(3) {
            self.flush_here();
        }
        // Give the flushing threads time to sync parts of a chunk.
        if self.rng.chance(50) {
            std::thread::sleep(Duration::from_micros(self.rng.below(600)));
        }
    }

    /// Purge up to a point some way below the acknowledged entries.
    fn maybe_purge(&mut self) {
        let a = *self.acks.acked.lock();
        if a.epoch != self.epoch || a.appended < 150 {
            return;
        }
        let upto = a.appended - 20 - self.rng.below(100);
        if upto <= self.acks.done.lock().purged {
            return;
        }
        let (id, _) = self.wal().entry(upto).unwrap().expect("entry to purge");
        self.wal().purge(id).unwrap();
        self.acks.done.lock().purged = upto;
    }

    /// Flush from this thread and count what it covered as acknowledged.
    fn flush_here(&self) {
        let snap = *self.acks.done.lock();
        self.wal().flush_blocking().unwrap();
        self.acks.ack(snap);
    }

    fn reset(&mut self) {
        self.acks.epoch_requested.fetch_add(1, Ordering::SeqCst);
        self.wal().reset().unwrap();
        self.epoch += 1;
        self.next = 1;
        *self.acks.done.lock() = Progress {
            epoch: self.epoch,
            appended: 0,
            purged: 0,
        };
    }

    /// Chunk installs (renames `.chunk.tmp -> .chunk`) so far.
    fn installs(&self) -> u64 {
        self.rec.counts().installs
    }

    /// Stop like a killed process, right after a rotation (the new chunk still a
    /// `.chunk.tmp`): no flushing thread runs, so nothing sends the rotation's job.
    fn crash_after_rotation(&mut self) {
        self.stop_flushers();
        let c = self.rec.counts();
        let prepared0 = c.creates + c.recycles;
        let rotations = 1 + self.rng.below(2);
        while {
            let c = self.rec.counts();
            c.creates + c.recycles < prepared0 + rotations
        } {
            self.append(false);
        }
        for _ in 0..self.rng.below(4) {
            self.append(false);
        }
        let names = self.rec.current_names();
        assert!(
            names.iter().any(|n| n.ends_with(".chunk.tmp")),
            "no prepared chunk pending at the crash: {names:?}"
        );
        self.rec.capture_now();
        let wal = self.take_wal();
        wal.simulate_crash();
    }

    fn close(&mut self) {
        let wal = self.take_wal();
        wal.close().unwrap();
    }
}

/// (a) Appends across many installs, flushed by `flush_blocking`, `flush(cb)` and the
/// writer itself.
fn workload_appends(seed: u64) -> (Driver, Vec<Cap>) {
    let mut d = Driver::new(seed);
    d.rec.phase("open", 4, 1, Mode::EveryEvent);
    d.open();
    d.rec.phase("appends", 40, 30, Mode::Random);
    d.start_flushers();
    while d.installs() < 24 {
        d.append(true);
    }
    d.rec.phase("close", 4, 1, Mode::EveryEvent);
    d.close();
    let caps = d.rec.take_captures();
    (d, caps)
}

/// (b) Appends with purges (chunks retired, kept as spares and recycled) and flushes.
fn workload_purges(seed: u64) -> (Driver, Vec<Cap>) {
    let mut d = Driver::new(seed);
    d.open();
    d.rec.phase("purges", 48, 30, Mode::Random);
    d.start_flushers();
    while d.installs() < 40 {
        d.append(true);
        if d.rng.chance(4) {
            d.maybe_purge();
        }
    }
    d.close();
    let caps = d.rec.take_captures();
    (d, caps)
}

/// (c) Appends and purges, a reset in the middle, appends again.
fn workload_reset(seed: u64) -> (Driver, Vec<Cap>) {
    let mut d = Driver::new(seed);
    d.open();
    d.rec.phase("before reset", 16, 30, Mode::Random);
    d.start_flushers();
    while d.installs() < 8 {
        d.append(true);
        if d.rng.chance(3) {
            d.maybe_purge();
        }
    }
    d.rec.phase("reset", 24, 3, Mode::Random);
    d.reset();
    let i0 = d.installs();
    while d.installs() < i0 + 2 {
        d.append(true);
    }
    d.rec.phase("after reset", 16, 30, Mode::Random);
    while d.installs() < i0 + 10 {
        d.append(true);
        if d.rng.chance(3) {
            d.maybe_purge();
        }
    }
    d.close();
    let caps = d.rec.take_captures();
    (d, caps)
}

/// (d) Adoption: a process crash right after a rotation, then a normal reopen that adopts
/// the prepared chunk while the observer records (capturing at each of its events).
fn workload_adoption(seed: u64) -> (Driver, Vec<Cap>) {
    let mut d = Driver::new(seed);
    d.open();
    for cycle in 0..3 {
        d.rec.phase(&format!("run {cycle}"), 8, 30, Mode::Random);
        d.start_flushers();
        let i0 = d.installs();
        while d.installs() < i0 + 4 {
            d.append(true);
            if d.rng.chance(3) {
                d.maybe_purge();
            }
        }
        d.rec.phase(
            &format!("rotation before crash {cycle}"),
            6,
            2,
            Mode::Random,
        );
        d.crash_after_rotation();
        d.rec
            .phase(&format!("adopting open {cycle}"), 16, 1, Mode::EveryEvent);
        d.open();
        d.rec.capture_now();
        d.rec
            .phase(&format!("after adoption {cycle}"), 8, 3, Mode::Random);
        d.start_flushers();
        for _ in 0..40 {
            d.append(true);
        }
    }
    d.close();
    let caps = d.rec.take_captures();
    assert!(
        caps.iter().any(|c| c.phase.starts_with("adopting")
            && c.pending
                .iter()
                .any(|op| matches!(op, DirOp::Rename { from, .. } if from.ends_with(".tmp")))),
        "no capture inside an adopting open, between its install and the directory fsync"
    );
    (d, caps)
}

/// Targeted cases: retirements one directory fsync at a time, leftovers at open.
mod targeted;

type Workload = fn(u64) -> (Driver, Vec<Cap>);

#[test]
fn power_loss_with_directory_operations_keeps_every_acknowledged_entry() {
    let total: u64 = std::env::var("CHUNKWAL_DIROPS_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let seed = seed_from_env("power_loss_dirops");
    let mut rng = Rng::new(seed);
    let workloads: [(&str, Workload); 4] = [
        ("appends", workload_appends),
        ("purges", workload_purges),
        ("reset", workload_reset),
        ("adoption", workload_adoption),
    ];
    let mut all = Vec::new();
    for (k, (what, run)) in workloads.iter().enumerate() {
        let t = Instant::now();
        let (d, caps) = run(seed.wrapping_add(k as u64));
        let c = d.live.finish();
        drop(d);
        let mut st = Stats::default();
        let quota = total.div_ceil(workloads.len() as u64);
        check_captures(
            &caps,
            quota,
            &mut rng,
            &mut st,
            |cap, img, rng| check_image(img, cap, rng.chance(25)),
            is_known_hole,
            |cap, ch, img, why| report_failure(what, seed, cap, ch, img, why),
        );
        let secs = t.elapsed().as_secs_f64();
        println!("power_loss_dirops {what}: {}", st.summary(&c, secs));
        all.push((*what, st, c));
    }
    let failed: Vec<_> = all.iter().filter(|(_, s, _)| s.failures > 0).collect();
    assert!(
        failed.is_empty(),
        "images failed (see the reports above; seed {seed}): {:?}",
        failed
            .iter()
            .map(|(w, s, _)| (w, s.failures))
            .collect::<Vec<_>>()
    );
    for (what, s, c) in &all {
        assert!(s.images > 0, "{what}: no image built");
        // The directory is fsynced after every purge unlink: no image can hold a hole.
        assert_eq!(
            s.known, 0,
            "{what}: images refused for a hole (seed {seed})"
        );
        assert_eq!(
            c.unobserved_unlinks, 0,
            "{what}: unlinks the observer missed"
        );
    }
}
