//! Power loss while purged chunks are recycled (issue #12).
//!
//! 64 KiB chunks, a writer appending batches of distinct random payloads, purging behind
//! itself so that chunks are retired (`{seq}.chunk -> {seq}.free`) and reused as new chunks
//! (`.free -> .chunk.tmp`, header rewritten, installed), truncating now and then, and two
//! threads flushing (`flush_blocking`, `flush(cb)`). A `crash_record::Recorder` captures
//! the directory at random points and at every event while a recycling window is open;
//! `crash_image` builds power-loss images from the captures (see there for the model).
//!
//! The truth is a [`History`]: every record the test wrote, in order, with the log's last id
//! and purge point after it, and every entry ever appended with its payload. A log opened
//! from an image must be the log as it stood after some record `k` of the history, with `k`
//! at or past the last acknowledged record (a flush callback's `Ok` or a `flush_blocking`
//! return after the call that wrote it) and at most what was written: its last id and purge
//! point are those after `k`, and every entry it holds is one the test wrote at that index
//! and term, with that payload, and not truncated by `k`. So no stale record of a recycled
//! chunk's earlier life can pass for an entry. Each image is then written to, closed, and
//! reopened under `RecoveryMode::Strict`: a clean close of a recycled newest chunk must open
//! strictly (stale bytes past the tail are not damage) and hold what it held plus the new
//! entries.
//!
//! Images per run: `CHUNKWAL_RECYCLE_IMAGES` (default 300). Seed: `CHUNKWAL_SEED`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{Config, CorruptionKind, Error, LogId, LogState, RecoveryMode, Wal};
use parking_lot::Mutex;

use crate::crash_image::{
    check_captures, describe, Built, Capture, Choice, Flushers, Mode, Recorder, Stats, Window,
};
use crate::crash_util::{seed_from_env, Rng};

const CHUNK: u64 = 64 << 10;

fn cfg(dir: &Path) -> Config {
    Config::new(dir).chunk_size(CHUNK)
}

/// An entry the test appended: its payload, the record that wrote it, and the record that
/// truncated it away (`u64::MAX`: none).
struct Written {
    payload: Bytes,
    at: u64,
    gone: u64,
}

/// Everything the test wrote, record by record; see the module docs.
struct History {
    /// The log's (last id, purge point) after each record; `[0]`: before any.
    states: Vec<(Option<LogId>, Option<LogId>)>,
    written: HashMap<LogId, Written>,
    /// The log now: index to term.
    live: BTreeMap<u64, u64>,
}

impl History {
    fn new() -> History {
        History {
            states: vec![(None, None)],
            written: HashMap::new(),
            live: BTreeMap::new(),
        }
    }

    fn records(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    fn now(&self) -> (Option<LogId>, Option<LogId>) {
        *self.states.last().unwrap()
    }

    fn append(&mut self, batch: &[(LogId, Bytes)]) {
        for (id, p) in batch {
            self.states.push((Some(*id), self.now().1));
            let at = self.records();
            self.live.insert(id.index, id.term);
            let w = Written {
                payload: p.clone(),
                at,
                gone: u64::MAX,
            };
            assert!(self.written.insert(*id, w).is_none(), "{id} written twice");
        }
    }

    fn truncate(&mut self, since: u64) {
        let at = self.records() + 1;
        for (i, t) in self.live.split_off(&since) {
            self.written.get_mut(&LogId::new(t, i)).unwrap().gone = at;
        }
        let last = self
            .live
            .iter()
            .next_back()
            .map(|(&i, &t)| LogId::new(t, i));
        self.states.push((last, self.now().1));
    }

    fn purge(&mut self, upto: LogId) {
        self.live = self.live.split_off(&(upto.index + 1));
        self.states.push((self.now().0, Some(upto)));
    }
}

/// What the test knows at a capture: records written or about to be, and acknowledged.
#[derive(Debug, Clone, Copy)]
struct Mark {
    registered: u64,
    acked: u64,
}

#[derive(Default)]
struct Counters {
    /// Records registered in the history (before the call that writes them).
    registered: AtomicU64,
    /// Records whose call returned.
    done: AtomicU64,
    /// Records a flush acknowledged.
    acked: AtomicU64,
}

/// A log opened from an image (or reopened): its state and entries.
#[derive(Debug, PartialEq)]
struct Held {
    state: (Option<LogId>, Option<LogId>),
    entries: Vec<(LogId, Bytes)>,
}

fn held(wal: &Wal) -> Result<Held, String> {
    let s: LogState = wal.log_state();
    let first = s.purged.map_or(1, |p| p.index + 1);
    let entries = match s.last {
        Some(l) if l.index >= first => wal
            .read(first, l.index + 1)
            .map_err(|e| format!("read [{first}, {l}]: {e}"))?,
        _ => Vec::new(),
    };
    Ok(Held {
        state: (s.last, s.purged),
        entries,
    })
}

/// Is `h` the log after some record in `[acked, registered]` of `hist`? See the module docs.
fn matches_history(hist: &History, h: &Held, m: Mark) -> Result<u64, String> {
    let (mut lo, mut hi) = (m.acked, m.registered.min(hist.records()));
    let mut prev: Option<LogId> = None;
    for (id, p) in &h.entries {
        let Some(w) = hist.written.get(id) else {
            return Err(format!("entry {id} was never appended"));
        };
        if *p != w.payload {
            return Err(format!("payload of {id} is not the one written"));
        }
        if prev.is_some_and(|q| q.index + 1 != id.index || q.term > id.term) {
            return Err(format!("{id} follows {prev:?}"));
        }
        prev = Some(*id);
        lo = lo.max(w.at);
        hi = hi.min(w.gone.saturating_sub(1));
    }
    if prev.is_some() && prev != h.state.0 {
        return Err(format!("last entry {prev:?}, last id {:?}", h.state.0));
    }
    if (lo..=hi).any(|k| hist.states[k as usize] == h.state) {
        return Ok(h.entries.len() as u64);
    }
    Err(format!(
        "(last, purged) {:?} with {} entries is the log after no record in [{lo}, {hi}] \
         (acknowledged: {}, {:?} after it; registered {})",
        h.state,
        h.entries.len(),
        m.acked,
        hist.states[m.acked as usize],
        m.registered
    ))
}

fn payload(rng: &mut Rng, id: LogId) -> Bytes {
    let len = 16 + rng.below(700) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.index.to_le_bytes());
    v.extend_from_slice(&id.term.to_le_bytes());
    while v.len() < len {
        v.push(rng.next_u64() as u8);
    }
    Bytes::from(v)
}

/// Open an image, check it against the history, then append, close, reopen strictly and
/// check that it holds the same plus the new entries.
fn check_image(img: &Built, m: Mark, hist: &History, rng: &mut Rng) -> Result<u64, String> {
    let wal = Wal::open(cfg(img.dir.path())).map_err(|e| format!("open failed: {e}"))?;
    let mut h = held(&wal)?;
    let n = matches_history(hist, &h, m)?;
    let next = h.state.0.map_or(1, |l| l.index + 1);
    let term = 1 << 40;
    let batch: Vec<(LogId, Bytes)> = (next..next + 1 + rng.below(40))
        .map(|i| (LogId::new(term, i), payload(rng, LogId::new(term, i))))
        .collect();
    wal.append(batch.clone())
        .map_err(|e| format!("append after open: {e}"))?;
    wal.flush_blocking()
        .map_err(|e| format!("flush after open: {e}"))?;
    wal.close().map_err(|e| format!("close: {e}"))?;
    let strict = cfg(img.dir.path()).recovery_mode(RecoveryMode::Strict);
    let wal = Wal::open(strict).map_err(|e| format!("strict reopen after close: {e}"))?;
    h.state.0 = batch.last().map(|e| e.0);
    h.entries.extend(batch);
    let again = held(&wal)?;
    if again != h {
        return Err(format!(
            "strict reopen holds {:?} ({} entries), expected {:?} ({} entries)",
            again.state,
            again.entries.len(),
            h.state,
            h.entries.len()
        ));
    }
    Ok(n)
}

/// The live log: its writer, the history, the recorder and the flushing threads.
struct Run {
    dir: tempfile::TempDir,
    wal: Option<Arc<Wal>>,
    hist: Arc<Mutex<History>>,
    n: Arc<Counters>,
    rec: Arc<Recorder<Mark>>,
    flushers: Vec<Flushers>,
    rng: Rng,
    term: u64,
    /// `Config::recycle_chunks` of the live log.
    spares: usize,
}

impl Run {
    fn new(seed: u64) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let n = Arc::new(Counters::default());
        let m = Arc::clone(&n);
        let rec = Recorder::new(dir.path(), seed ^ 0x5eed, move || Mark {
            registered: m.registered.load(Ordering::SeqCst),
            acked: m.acked.load(Ordering::SeqCst),
        });
        Run {
            dir,
            wal: None,
            hist: Arc::new(Mutex::new(History::new())),
            n,
            rec,
            flushers: Vec::new(),
            rng: Rng::new(seed),
            term: 1,
            spares: 4,
        }
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().unwrap()
    }

    fn open(&mut self) {
        let mut c = cfg(self.dir.path()).recycle_chunks(self.spares);
        c.fs_observer = Some(self.rec.observer());
        self.rec.set_opening(true);
        let wal = Wal::open(c).expect("open of the live log");
        self.rec.set_opening(false);
        let h = held(&wal).unwrap();
        let hist = self.hist.lock();
        assert_eq!(h.state, hist.now(), "reopened log lost written records");
        self.wal = Some(Arc::new(wal));
    }

    fn start_flushers(&mut self) {
        let (a, b) = (Arc::clone(&self.n), Arc::clone(&self.n));
        self.flushers.push(Flushers::start(
            self.wal.as_ref().unwrap(),
            self.rng.next_u64(),
            move || a.done.load(Ordering::SeqCst),
            move |k| {
                b.acked.fetch_max(k, Ordering::SeqCst);
            },
        ));
    }

    fn stop_flushers(&mut self) {
        for f in self.flushers.drain(..) {
            f.stop();
        }
    }

    /// Register what a call will write, make the call, and count it done.
    fn record(&mut self, what: impl FnOnce(&mut History), call: impl FnOnce(&Wal)) {
        let k = {
            let mut h = self.hist.lock();
            what(&mut h);
            h.records()
        };
        self.n.registered.store(k, Ordering::SeqCst);
        call(self.wal());
        self.n.done.store(k, Ordering::SeqCst);
    }

    /// Append a batch of `n` entries with fresh random payloads.
    fn append(&mut self, n: u64) {
        let next = self.hist.lock().now().0.map_or(1, |l| l.index + 1);
        let term = self.term;
        let batch: Vec<(LogId, Bytes)> = (next..next + n)
            .map(|i| {
                (
                    LogId::new(term, i),
                    payload(&mut self.rng, LogId::new(term, i)),
                )
            })
            .collect();
        let b = batch.clone();
        self.record(|h| h.append(&b), |w| w.append(batch).unwrap());
    }

    /// Truncate a few entries off the end (never into the purged part); later entries get a
    /// new term.
    fn truncate(&mut self) {
        let (last, purged) = self.hist.lock().now();
        let (Some(last), floor) = (last, purged.map_or(1, |p| p.index + 2)) else {
            return;
        };
        let since = last.index.saturating_sub(self.rng.below(12)).max(floor);
        if since > last.index {
            return;
        }
        self.term += 1;
        self.record(|h| h.truncate(since), |w| w.truncate(since).unwrap());
    }

    /// Purge up to `keep` entries behind the last one.
    fn purge_behind(&mut self, keep: u64) {
        let (last, purged) = self.hist.lock().now();
        let Some(last) = last else { return };
        let upto = last.index.saturating_sub(keep);
        if upto <= purged.map_or(0, |p| p.index) {
            return;
        }
        let term = self.hist.lock().live[&upto];
        let id = LogId::new(term, upto);
        self.record(|h| h.purge(id), |w| w.purge(id).unwrap());
    }

    fn flush_here(&self) {
        let k = self.n.done.load(Ordering::SeqCst);
        self.wal().flush_blocking().unwrap();
        self.n.acked.fetch_max(k, Ordering::SeqCst);
    }

    /// One step of the standard workload: a batch, sometimes a truncation, a purge behind
    /// the writer, a flush from this thread, a pause.
    fn step(&mut self) {
        let n = 1 + self.rng.below(8);
        self.append(n);
        if self.rng.chance(3) {
            self.truncate();
        }
        if self.rng.chance(8) {
            let keep = 100 + self.rng.below(300);
            self.purge_behind(keep);
        }
        if self.rng.chance(5) {
            self.flush_here();
        }
        if self.rng.chance(30) {
            std::thread::sleep(Duration::from_micros(self.rng.below(500)));
        }
    }

    fn take_wal(&mut self) -> Wal {
        self.stop_flushers();
        match Arc::try_unwrap(self.wal.take().unwrap()) {
            Ok(w) => w,
            Err(_) => panic!("the log is still shared"),
        }
    }

    fn close(&mut self) {
        self.take_wal().close().unwrap();
        self.n
            .acked
            .store(self.n.done.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    fn check_anomalies(&self) {
        let a = self.rec.anomalies();
        assert!(a.is_empty(), "events that do not fit the model: {a:?}");
    }

    /// Build about `quota` images from `caps`, check each; panics on any failure.
    fn check(&self, what: &str, seed: u64, caps: &[Capture<Mark>], quota: u64) -> Stats {
        let t = Instant::now();
        let mut st = Stats::default();
        let mut rng = Rng::new(seed ^ 0x1a6e);
        let hist = self.hist.lock();
        let report = |cap: &Capture<Mark>, ch: &Choice, img: &Built, why: &str| {
            eprintln!(
                "\n=== power_loss_recycle {what}: image failed: {why}\nseed {seed} \
                 (CHUNKWAL_SEED={seed}), {:?}\n{}",
                cap.snap,
                describe(cap, ch, img)
            );
        };
        check_captures(
            caps,
            quota,
            &mut rng,
            &mut st,
            |cap, img, rng| check_image(img, cap.snap, &hist, rng),
            |_, _, _, _| false,
            report,
        );
        let c = self.rec.counts();
        println!(
            "power_loss_recycle {what}: {} images from {} captures ({} events: {} creates, \
             {} retires, {} recycles, {} installs, {} early reuses): {} with directory \
             operations lost, {} torn, {} all lost, {} entries checked, {} failures, {:.1}s",
            st.images,
            st.captures,
            c.events,
            c.creates,
            c.retires,
            c.recycles,
            c.installs,
            c.early_reuses,
            st.dirops_lost,
            st.torn,
            st.all_lost,
            st.entries_checked,
            st.failures,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(st.failures, 0, "{what}: images failed (seed {seed})");
        assert!(st.images > 0, "{what}: no image built");
        st
    }
}

fn images_from_env(default: u64) -> u64 {
    std::env::var("CHUNKWAL_RECYCLE_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Power loss at random points of a long run with purges, recycling and truncations, and
/// at every event of each recycling window.
#[test]
fn power_loss_while_recycling_keeps_every_acknowledged_entry() {
    let seed = seed_from_env("power_loss_recycle");
    let mut r = Run::new(seed);
    r.open();
    r.start_flushers();
    r.rec.phase("recycling", 10, 40, Mode::Recycle);
    let installs = 40 + images_from_env(300) / 10;
    while r.rec.counts().installs < installs {
        r.step();
    }
    let recycled = r.wal().access_stat().chunks_recycled;
    r.rec.phase("close", 4, 1, Mode::EveryEvent);
    r.close();
    r.check_anomalies();
    let caps = r.rec.take_captures();
    assert!(recycled > 0, "no chunk was recycled");
    for w in [
        Window::Renamed,
        Window::HeaderWritten,
        Window::HeaderSynced,
        Window::Installed,
    ] {
        assert!(
            caps.iter().any(|c| c.windows.contains(&w)),
            "no capture in recycling window {w:?}"
        );
    }
    let newest_recycled = caps
        .iter()
        .filter(|c| {
            let newest = c
                .durable
                .iter()
                .filter(|(n, _)| n.ends_with(".chunk"))
                .last();
            newest.is_some_and(|(_, ino)| c.recycled.contains(ino))
        })
        .count();
    assert!(
        newest_recycled > 0,
        "no capture with a recycled newest chunk"
    );
    r.check("run", seed, &caps, images_from_env(300));
}

/// Purge, then rotate right away: the spare the purge made is the next chunk. It must not
/// be reused before its rename to `.free` is durable: if it were, an image losing both
/// renames holds the old chunk's name with the new chunk's header (or records), and open
/// refuses the log.
#[test]
fn a_spare_is_reused_only_once_its_retirement_is_durable() {
    let seed = seed_from_env("power_loss_recycle reuse after purge");
    let mut r = Run::new(seed);
    // One spare at most: the chunk a purge retires is the next one.
    r.spares = 1;
    r.open();
    r.rec.phase("purge then rotate", 12, 60, Mode::Recycle);
    for _ in 0..24 {
        // Fill the active chunk almost to its end.
        while r.wal().reader().tail_position().unwrap().1 < CHUNK - 2500 {
            r.append(1);
        }
        r.flush_here();
        // A retirement renames the chunk to a spare, or removes it when the pool is full.
        let retired = |r: &Run| r.rec.counts().retires + r.rec.counts().unlinks;
        let retires = retired(&r);
        let chunks = r
            .rec
            .current_names()
            .iter()
            .filter(|n| n.ends_with(".chunk"))
            .count();
        r.purge_behind(2);
        // The purged chunk's mapping goes once the epoch collector frees the removed
        // skiplist node that held it (any thread's pins do that in a busy process).
        let t = Instant::now();
        while chunks > 1 && retired(&r) == retires && t.elapsed() < Duration::from_secs(2) {
            crossbeam_epoch::pin().flush();
        }
        // A moment for the retirement to go on (its directory fsync), then the rotation.
        let pause = Duration::from_micros(r.rng.below(4) * r.rng.below(30));
        let t = Instant::now();
        while t.elapsed() < pause {
            crossbeam_epoch::pin().flush();
        }
        r.append(8);
        r.flush_here();
    }
    let recycled = r.wal().access_stat().chunks_recycled;
    r.close();
    r.check_anomalies();
    assert!(recycled > 0, "no chunk was recycled");
    let caps = r.rec.take_captures();
    r.check("reuse after purge", seed, &caps, images_from_env(300) / 2);
    let early = r.rec.counts().early_reuses;
    assert_eq!(early, 0, "spares reused before their rename was durable");
}

/// The previous process retired chunk 0 (renamed it to `.free`) and died before the
/// directory fsync. An open that finds the spare must not reuse it before that rename is
/// durable.
#[test]
fn a_spare_found_at_open_is_reused_only_once_its_name_is_durable() {
    let seed = seed_from_env("power_loss_recycle spare at open");
    let mut r = Run::new(seed);
    r.open();
    r.append(4);
    while r.wal().locate(1).unwrap().0 == r.wal().reader().tail_position().unwrap().0 {
        r.append(4);
    }
    for _ in 0..40 {
        r.append(4);
    }
    // Purge exactly the entries of chunk 0.
    let mut last0 = 1;
    while r.wal().locate(last0 + 1).unwrap().0 == r.wal().locate(1).unwrap().0 {
        last0 += 1;
    }
    let last = r.hist.lock().now().0.unwrap().index;
    r.purge_behind(last - last0);
    r.flush_here();
    r.wal().wait_worker_idle();
    r.close();
    let (chunk0, free0) = (chunkwal::chunk_file_name(0), "00000000000000000000.free");
    assert!(
        r.dir.path().join(free0).exists(),
        "chunk 0 was not kept as a spare"
    );
    r.rec.assume_pending_rename(&chunk0, free0);
    r.rec.phase("reopen and reuse", 16, 10, Mode::Recycle);
    r.open();
    while r.rec.counts().recycles == 0 {
        r.append(4);
    }
    r.append(4);
    r.flush_here();
    r.close();
    r.check_anomalies();
    let caps = r.rec.take_captures();
    r.check("spare at open", seed, &caps, images_from_env(300) / 3);
    assert_eq!(
        r.rec.counts().early_reuses,
        0,
        "spare reused before its name was durable"
    );
}

/// A zero-copy `Bytes` of a purged chunk must never change while the writer goes on: the
/// chunk's file is not reused while its mapping lives, and is once it is dropped.
#[test]
fn bytes_held_from_a_purged_chunk_never_change() {
    let seed = seed_from_env("power_loss_recycle held bytes");
    let mut r = Run::new(seed);
    let mut c = cfg(r.dir.path()).cache(0, 0);
    c.fs_observer = Some(r.rec.observer());
    r.wal = Some(Arc::new(Wal::open(c).unwrap()));
    while r.rec.counts().installs < 3 {
        r.append(4);
        r.flush_here();
    }
    r.flush_here();
    // Early entries of chunk 0, read from the map (no cache), and a copy of them.
    let held: Vec<(LogId, Bytes)> = r.wal().read(1, 30).unwrap();
    let copy: Vec<Vec<u8>> = held.iter().map(|(_, b)| b.to_vec()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (held, copy, stop) = (held.clone(), copy.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for ((id, b), c) in held.iter().zip(&copy) {
                    assert_eq!(&b[..], &c[..], "bytes of {id} changed under a reader");
                }
                rounds += 1;
                std::thread::yield_now();
            }
            rounds
        })
    };
    let free0 = r.dir.path().join("00000000000000000000.free");
    let mut seen_spare = false;
    let i0 = r.rec.counts().installs;
    while r.rec.counts().installs < i0 + 12 {
        r.append(4);
        r.purge_behind(60);
        if r.rng.chance(30) {
            r.flush_here();
        }
        seen_spare |= free0.exists();
        assert!(
            !seen_spare || free0.exists(),
            "chunk 0's file was reused while a reader held its bytes"
        );
    }
    r.flush_here();
    r.wal().wait_worker_idle();
    assert!(
        free0.exists(),
        "chunk 0 was not kept as a spare (or was reused)"
    );
    let s = r.wal().access_stat();
    assert!(
        s.chunks_recycled > 0,
        "no other chunk was recycled meanwhile"
    );
    stop.store(true, Ordering::SeqCst);
    let rounds = checker.join().expect("held bytes changed");
    assert!(rounds > 0);
    for ((id, b), c) in held.iter().zip(&copy) {
        assert_eq!(&b[..], &c[..], "bytes of {id} changed");
    }
    drop(held);
    // Once the mapping is gone the spare may be reused: it is the oldest, so next.
    let i1 = r.rec.counts().installs;
    while free0.exists() && r.rec.counts().installs < i1 + 8 {
        r.append(4);
        r.purge_behind(60);
        r.flush_here();
    }
    assert!(
        !free0.exists(),
        "chunk 0's spare was never reused after the bytes were dropped"
    );
    r.close();
}

/// A recycled newest chunk whose earlier life held more records than the new one: the
/// stale records past the tail are left alone by a clean reopen (strict too) and by opens
/// after power loss, and new appends over them read back right.
#[test]
fn stale_records_past_a_recycled_tail_stay_inert() {
    let seed = seed_from_env("power_loss_recycle stale tail");
    let mut r = Run::new(seed);
    r.open();
    r.start_flushers();
    // Run until a rotation lands in a recycled chunk, then write a little into it.
    let mut rotations = 0;
    while rotations < 3 {
        let rec0 = r.rec.counts().recycles;
        let i0 = r.rec.counts().installs;
        while r.rec.counts().installs == i0 {
            r.step();
        }
        rotations += u64::from(r.rec.counts().recycles > rec0);
    }
    r.rec.phase("recycled tail", 16, 3, Mode::Random);
    for _ in 0..3 {
        r.append(2);
        r.flush_here();
        r.append(1);
        r.rec.capture_now();
    }
    let (tail, end) = r.wal().reader().tail_position().unwrap();
    r.close();
    let bytes = std::fs::read(&tail).unwrap();
    assert!(
        bytes[end as usize + 512..].iter().any(|&b| b != 0),
        "the newest chunk holds nothing past its tail: not a recycled one"
    );
    let caps = r.rec.take_captures();
    let hist = r.hist.lock();
    let all = Mark {
        registered: hist.records(),
        acked: hist.records(),
    };
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        let wal = Wal::open(cfg(r.dir.path()).recovery_mode(mode)).expect("clean reopen");
        matches_history(&hist, &held(&wal).unwrap(), all).unwrap();
        wal.close().unwrap();
    }
    // Append over the stale records, reopen strictly (check_image does that), twice.
    for _ in 0..2 {
        let img = Built {
            dir: crate::crash_util::copy_dir(r.dir.path()),
            names: BTreeMap::new(),
            dropped: 0,
            kept: 0,
        };
        check_image(&img, all, &hist, &mut r.rng).unwrap();
    }
    drop(hist);
    r.check("stale tail", seed, &caps, images_from_env(300) / 3);
}

/// A recycled chunk whose new header did not reach the disk still carries its earlier
/// life's header (and complete records of that life): open must never take it for the
/// new chunk. Prepared, it is not adopted; installed (which the engine never does before
/// the header is synced), it is refused.
#[test]
fn a_recycled_chunk_with_its_old_header_is_not_taken_for_the_new_one() {
    let seed = seed_from_env("power_loss_recycle old header");
    let mut r = Run::new(seed);
    r.open();
    while r.rec.counts().retires < 2 {
        r.step();
    }
    r.flush_here();
    r.wal().wait_worker_idle();
    // Old headers of the spares, then a crash right after a rotation into one of them.
    let spares: Vec<(String, Vec<u8>)> = r
        .rec
        .current_names()
        .into_iter()
        .filter(|n| n.ends_with(".free"))
        .map(|n| {
            let b = std::fs::read(r.dir.path().join(&n)).unwrap();
            (n, b[..chunkwal::format::HEADER_LEN].to_vec())
        })
        .collect();
    let rec0 = r.rec.counts().recycles;
    while r.rec.counts().recycles == rec0 {
        r.append(3);
    }
    r.append(3);
    let registered = r.hist.lock().records();
    r.take_wal().simulate_crash();
    let names = r.rec.current_names();
    let tmp = names.iter().find(|n| n.ends_with(".chunk.tmp")).unwrap();
    let (_, old_header) = spares
        .iter()
        .find(|(n, _)| !names.contains(n))
        .expect("the spare that was reused");
    let hist = r.hist.lock();
    let m = Mark {
        registered,
        acked: 0,
    };
    // Prepared under its temporary name with the old header: a leftover, not adopted.
    let img = crate::crash_util::copy_dir(r.dir.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path().join(tmp))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, old_header, 0).unwrap();
    let wal = Wal::open(cfg(img.path())).expect("open with an unadoptable prepared chunk");
    let h = held(&wal).unwrap();
    matches_history(&hist, &h, m).unwrap();
    drop(wal);
    // The same log without the prepared chunk at all.
    let without = crate::crash_util::copy_dir(r.dir.path());
    std::fs::remove_file(without.path().join(tmp)).unwrap();
    let wal = Wal::open(cfg(without.path())).unwrap();
    assert_eq!(
        h,
        held(&wal).unwrap(),
        "the prepared chunk with its old header was adopted"
    );
    drop(wal);
    // Installed with the old header: refused, never read as the new chunk.
    let img = crate::crash_util::copy_dir(r.dir.path());
    let chunk = tmp.strip_suffix(".tmp").unwrap();
    std::fs::rename(img.path().join(tmp), img.path().join(chunk)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(img.path().join(chunk))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, old_header, 0).unwrap();
    match Wal::open(cfg(img.path())) {
        Err(Error::Corruption {
            reason: CorruptionKind::SeqMismatch { .. },
            ..
        }) => {}
        Err(e) => panic!("open failed, but not for the header's sequence number: {e}"),
        Ok(wal) => panic!(
            "an installed chunk with another chunk's header was opened: {:?}",
            held(&wal).unwrap().state
        ),
    }
}
