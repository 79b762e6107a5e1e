//! The truth the power-loss tests of chunk recycling (`power_loss_recycle`) check their
//! images against, and the live log they drive.
//!
//! A [`History`] holds every record the test wrote, in order, with the log's last id and
//! purge point after it, and every entry ever appended with its (random) payload. A log
//! opened from an image must be the log as it stood after some record `k` of the history,
//! with `k` at or past the last acknowledged record (a flush callback's `Ok` or a
//! `flush_blocking` return after the call that wrote it) and at most what was written: its
//! last id and purge point are those after `k`, and every entry it holds is one the test
//! wrote at that index and term, with that payload, and not truncated by `k`
//! ([`matches_history`]). So no stale record of a recycled chunk's earlier life can pass for
//! an entry. [`check_image`] then writes to the image, closes it, and reopens it under
//! `RecoveryMode::Strict`: a clean close of a recycled newest chunk must open strictly
//! (stale bytes past the tail are not damage) and hold what it held plus the new entries.
//!
//! [`Run`] drives the live log: a writer appending batches of distinct random payloads,
//! purging behind itself so that chunks are retired and recycled, truncating now and then
//! (later entries get a new term), and flushing threads; every call is registered in the
//! history before it is made.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkwal::{Config, LogId, LogState, RecoveryMode, Wal};
use parking_lot::Mutex;

use crate::crash_image::{check_captures, describe, Built, Capture, Choice, Live, Stats};
use crate::crash_util::Rng;

pub const CHUNK: u64 = 64 << 10;

pub fn cfg(dir: &Path) -> Config {
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
pub struct History {
    /// The log's (last id, purge point) after each record; `[0]`: before any.
    states: Vec<(Option<LogId>, Option<LogId>)>,
    written: HashMap<LogId, Written>,
    /// The log now: index to term.
    live: BTreeMap<u64, u64>,
}

impl History {
    pub fn new() -> History {
        History {
            states: vec![(None, None)],
            written: HashMap::new(),
            live: BTreeMap::new(),
        }
    }

    pub fn records(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    pub fn now(&self) -> (Option<LogId>, Option<LogId>) {
        *self.states.last().unwrap()
    }

    pub fn append(&mut self, batch: &[(LogId, Bytes)]) {
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

    pub fn truncate(&mut self, since: u64) {
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

    pub fn purge(&mut self, upto: LogId) {
        self.live = self.live.split_off(&(upto.index + 1));
        self.states.push((self.now().0, Some(upto)));
    }
}

/// What the test knows at a capture: records written or about to be, and acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub registered: u64,
    pub acked: u64,
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
pub struct Held {
    pub state: (Option<LogId>, Option<LogId>),
    pub entries: Vec<(LogId, Bytes)>,
}

pub fn held(wal: &Wal) -> Result<Held, String> {
    let s: LogState = wal.log_state();
    let first = s.purged.map_or(1, |p| p.index + 1);
    let entries = match s.last {
        Some(l) if l.index >= first => wal
            .read(first..=l.index)
            .map_err(|e| format!("read [{first}, {l}]: {e}"))?,
        _ => Vec::new(),
    };
    Ok(Held {
        state: (s.last, s.purged),
        entries,
    })
}

/// Is `h` the log after some record in `[acked, registered]` of `hist`? See the module docs.
pub fn matches_history(hist: &History, h: &Held, m: Mark) -> Result<u64, String> {
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

pub fn payload(rng: &mut Rng, id: LogId) -> Bytes {
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
pub fn check_image(img: &Built, m: Mark, hist: &History, rng: &mut Rng) -> Result<u64, String> {
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

/// The live log driven by a test that records its [`History`], under a recorder.
pub struct Run {
    pub live: Live<Mark>,
    pub hist: Arc<Mutex<History>>,
    n: Arc<Counters>,
    pub rng: Rng,
    term: u64,
    /// `Config::recycle_chunks` of the live log.
    pub spares: usize,
}

impl std::ops::Deref for Run {
    type Target = Live<Mark>;
    fn deref(&self) -> &Live<Mark> {
        &self.live
    }
}

impl std::ops::DerefMut for Run {
    fn deref_mut(&mut self) -> &mut Live<Mark> {
        &mut self.live
    }
}

impl Run {
    pub fn new(seed: u64) -> Run {
        let n = Arc::new(Counters::default());
        let m = Arc::clone(&n);
        let live = Live::new(seed ^ 0x5eed, move || Mark {
            registered: m.registered.load(Ordering::SeqCst),
            acked: m.acked.load(Ordering::SeqCst),
        });
        Run {
            live,
            hist: Arc::new(Mutex::new(History::new())),
            n,
            rng: Rng::new(seed),
            term: 1,
            spares: 4,
        }
    }

    /// Open the live log with the recorder; it must hold everything written.
    pub fn open(&mut self) {
        let wal = self
            .live
            .open(cfg(self.dir.path()).recycle_chunks(self.spares));
        let h = held(&wal).unwrap();
        assert_eq!(h.state, self.hist.lock().now(), "reopened log lost records");
        self.wal = Some(Arc::new(wal));
    }

    pub fn start_flushers(&mut self) {
        let (a, b) = (Arc::clone(&self.n), Arc::clone(&self.n));
        let seed = self.rng.next_u64();
        self.live.start_flushers(
            seed,
            move || a.done.load(Ordering::SeqCst),
            move |k| {
                b.acked.fetch_max(k, Ordering::SeqCst);
            },
        );
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
    pub fn append(&mut self, n: u64) {
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
    pub fn truncate(&mut self) {
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
    pub fn purge_behind(&mut self, keep: u64) {
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

    pub fn flush_here(&self) {
        let k = self.n.done.load(Ordering::SeqCst);
        self.wal().flush_blocking().unwrap();
        self.n.acked.fetch_max(k, Ordering::SeqCst);
    }

    /// One step of the standard workload: a batch, sometimes a truncation, a purge behind
    /// the writer, a flush from this thread, a pause.
    pub fn step(&mut self) {
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

    pub fn close(&mut self) {
        self.take_wal().close().unwrap();
        let done = self.n.done.load(Ordering::SeqCst);
        self.n.acked.store(done, Ordering::SeqCst);
    }

    /// Build about `quota` images from `caps`, check each; panics on any failure.
    pub fn check(&self, what: &str, seed: u64, caps: &[Capture<Mark>], quota: u64) -> Stats {
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
        let summary = st.summary(&self.rec.counts(), t.elapsed().as_secs_f64());
        println!("power_loss_recycle {what}: {summary}");
        assert_eq!(st.failures, 0, "{what}: images failed (seed {seed})");
        assert!(st.images > 0, "{what}: no image built");
        st
    }
}

pub fn images_from_env(default: u64) -> u64 {
    std::env::var("CHUNKWAL_RECYCLE_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
