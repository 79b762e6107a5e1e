//! Crash images from a [`Recorder`]'s captures (see `crash_record.rs` for what a capture
//! knows). An image is:
//!
//! - names: the namespace as of the last directory fsync, plus each later create, rename
//!   and unlink applied or not, independently (every combination when there are few,
//!   random subsets and in-order prefixes otherwise; impossible combinations, such as
//!   renaming a name the image does not hold, are skipped): a lost rename leaves the file
//!   under its previous name;
//! - bytes of each named inode: every 512-byte sector whose current bytes differ from the
//!   durable ones holds either (zeros in a new file, the earlier life's bytes in a recycled
//!   one), or the new bytes up to an 8-byte boundary and the old ones after it (written back
//!   in the middle of an append); or all of them are lost, or all kept. Sizes stay as they
//!   are.
//!
//! Also here: the loop that builds and checks images, and the live log with its flushing
//! threads that the workloads share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chunkwal::{Config, Wal};

pub use crate::crash_record::{Counts, Mode, Recorder};
use crate::crash_util::Rng;

pub const SECTOR: usize = 512;

/// A directory operation not yet made durable by a directory fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirOp {
    Create { name: String, ino: u64 },
    Rename { from: String, to: String, ino: u64 },
    Unlink { name: String, ino: u64 },
}

impl DirOp {
    pub fn ino(&self) -> u64 {
        match self {
            DirOp::Create { ino, .. } | DirOp::Rename { ino, .. } | DirOp::Unlink { ino, .. } => {
                *ino
            }
        }
    }
}

impl std::fmt::Display for DirOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirOp::Create { name, ino } => write!(f, "create {name} (ino {ino})"),
            DirOp::Rename { from, to, ino } => write!(f, "rename {from} -> {to} (ino {ino})"),
            DirOp::Unlink { name, ino } => write!(f, "unlink {name} (ino {ino})"),
        }
    }
}

/// A recycling window open at a capture (see the module docs), in the order they open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// Renamed from `.free` to `.chunk.tmp`; the new header not written yet.
    Renamed,
    /// The new header written, its `SyncFile` not yet counted.
    HeaderWritten,
    /// The new header synced; not installed yet.
    HeaderSynced,
    /// Installed (renamed to `.chunk`); the directory not fsynced since.
    Installed,
}

/// One inode's bytes at a capture.
pub struct FileCut {
    pub bytes: Vec<u8>,
    /// The durable bytes, if any sector differs from them.
    pub durable: Option<Vec<u8>>,
    /// Sectors whose current bytes are not all durable.
    pub loose: Vec<usize>,
}

impl FileCut {
    /// The cut of an inode holding `bytes` now, of which `durable` are known durable.
    pub fn new(bytes: Vec<u8>, mut durable: Vec<u8>) -> FileCut {
        durable.resize(bytes.len(), 0);
        let loose: Vec<usize> = (0..bytes.len().div_ceil(SECTOR))
            .filter(|&k| {
                let r = k * SECTOR..((k + 1) * SECTOR).min(bytes.len());
                bytes[r.clone()] != durable[r]
            })
            .collect();
        let durable = (!loose.is_empty()).then_some(durable);
        FileCut {
            bytes,
            durable,
            loose,
        }
    }
}

pub struct Capture<S> {
    pub phase: String,
    pub event: u64,
    pub durable: BTreeMap<String, u64>,
    pub pending: Vec<DirOp>,
    pub files: HashMap<u64, FileCut>,
    /// The test's own knowledge at the capture (acknowledgements, what was written).
    pub snap: S,
    /// Recycling windows open at the capture.
    pub windows: Vec<Window>,
    /// Inodes that had an earlier life as another chunk.
    pub recycled: HashSet<u64>,
    pub tail: Vec<String>,
}

/// How the bytes no sync covered end up on the platter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// All of them were lost (each sector holds its durable bytes).
    AllLost,
    /// Each sector was written back with this chance (percent), independently; a sector not
    /// written back is sometimes cut in the middle instead (new bytes, then old ones).
    Sectors(u64),
    /// All of them were written back (only directory operations may be lost).
    NoneLost,
}

/// One image: which pending operations it applies and how unsynced bytes fared.
pub struct Choice {
    pub applied: Vec<bool>,
    pub loss: Loss,
}

impl Choice {
    /// The applied operations are a prefix of the pending ones.
    pub fn ordered(&self) -> bool {
        let k = self.applied.iter().take_while(|&&a| a).count();
        self.applied[k..].iter().all(|&a| !a)
    }
}

/// The names of the image, or `None` if the combination is impossible.
pub fn names_for<S>(cap: &Capture<S>, applied: &[bool]) -> Option<BTreeMap<String, u64>> {
    let mut names = cap.durable.clone();
    for (op, &on) in cap.pending.iter().zip(applied) {
        if !on {
            continue;
        }
        match op {
            DirOp::Create { name, ino } => {
                if names.contains_key(name) {
                    return None;
                }
                names.insert(name.clone(), *ino);
            }
            DirOp::Rename { from, to, ino } => {
                if names.get(from) != Some(ino) {
                    return None;
                }
                names.remove(from);
                names.insert(to.clone(), *ino);
            }
            DirOp::Unlink { name, ino } => {
                if names.get(name) != Some(ino) {
                    return None;
                }
                names.remove(name);
            }
        }
    }
    Some(names)
}

pub struct Built {
    pub dir: tempfile::TempDir,
    pub names: BTreeMap<String, u64>,
    /// Unsynced sectors dropped (old bytes, whole or in part) and kept.
    pub dropped: u64,
    pub kept: u64,
}

fn image_root() -> PathBuf {
    // Images on tmpfs when there is one: opening them syncs, and nothing here needs a disk.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

pub fn build<S>(cap: &Capture<S>, ch: &Choice, rng: &mut Rng) -> Option<Built> {
    let names = names_for(cap, &ch.applied)?;
    let dir = tempfile::Builder::new()
        .prefix("chunkwal-image-")
        .tempdir_in(image_root())
        .unwrap();
    let (mut dropped, mut kept) = (0, 0);
    for (name, ino) in &names {
        let f = &cap.files[ino];
        let mut out = f.bytes.clone();
        if let Some(old) = &f.durable {
            for &k in &f.loose {
                let keep = match ch.loss {
                    Loss::AllLost => false,
                    Loss::NoneLost => true,
                    Loss::Sectors(p) => rng.chance(p),
                };
                if keep {
                    kept += 1;
                    continue;
                }
                dropped += 1;
                let r = k * SECTOR..((k + 1) * SECTOR).min(out.len());
                let cut = match ch.loss {
                    Loss::Sectors(_) if rng.chance(25) => r.start + 8 * rng.below(64) as usize,
                    _ => r.start,
                };
                let from = cut.min(r.end);
                out[from..r.end].copy_from_slice(&old[from..r.end]);
            }
        }
        std::fs::write(dir.path().join(name), out).unwrap();
    }
    Some(Built {
        dir,
        names,
        dropped,
        kept,
    })
}

/// Choices to try for a capture: every combination of its pending operations when there
/// are few, random subsets and random in-order prefixes otherwise.
pub fn choices<S>(cap: &Capture<S>, base: usize, rng: &mut Rng) -> Vec<Choice> {
    let n = cap.pending.len();
    let loss = |rng: &mut Rng, k: usize| match (k + rng.below(4) as usize) % 4 {
        0 => Loss::AllLost,
        1 => Loss::NoneLost,
        2 => Loss::Sectors(50),
        _ => Loss::Sectors(1 + rng.below(99)),
    };
    let mut out = Vec::new();
    if n <= 4 {
        let combos = 1usize << n;
        for k in 0..base.max(combos) {
            let m = k % combos;
            out.push(Choice {
                applied: (0..n).map(|b| m >> b & 1 == 1).collect(),
                loss: loss(rng, k),
            });
        }
    } else {
        for k in 0..base.max(8) {
            let applied = if k % 2 == 0 {
                let p = rng.below(n as u64 + 1) as usize;
                (0..n).map(|b| b < p).collect()
            } else {
                (0..n).map(|_| rng.chance(50)).collect()
            };
            out.push(Choice {
                applied,
                loss: loss(rng, k),
            });
        }
    }
    out
}

/// Image counts of one workload.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub captures: u64,
    pub images: u64,
    pub dirops_lost: u64,
    pub torn: u64,
    pub all_lost: u64,
    pub impossible: u64,
    pub entries_checked: u64,
    pub failures: u64,
    pub unordered_failures: u64,
    /// Failures the test's `known` predicate excused.
    pub known: u64,
}

impl Stats {
    /// One line for a test's output: these counts and what the recorder heard.
    pub fn summary(&self, c: &Counts, secs: f64) -> String {
        format!(
            "{} images from {} captures ({} events: {} creates, {} installs, {} retires, {} \
             recycles ({} early), {} unlinks, {} unlinks at open unobserved): {} with directory \
             operations lost, {} with torn sectors, {} with all unsynced bytes lost, {} \
             impossible combinations skipped, {} entries checked, {} known failures, {} \
             failures ({} of them from out-of-order subsets), {secs:.1}s",
            self.images,
            self.captures,
            c.events,
            c.creates,
            c.installs,
            c.retires,
            c.recycles,
            c.early_reuses,
            c.unlinks,
            c.unobserved_unlinks,
            self.dirops_lost,
            self.torn,
            self.all_lost,
            self.impossible,
            self.entries_checked,
            self.known,
            self.failures,
            self.unordered_failures
        )
    }
}

/// Build images for `caps` (about `quota` in all) and `check` each; failures are counted
/// and the first three reported through `report`.
pub fn check_captures<S>(
    caps: &[Capture<S>],
    quota: u64,
    rng: &mut Rng,
    st: &mut Stats,
    mut check: impl FnMut(&Capture<S>, &Built, &mut Rng) -> Result<u64, String>,
    known: impl Fn(&Capture<S>, &Choice, &Built, &str) -> bool,
    report: impl Fn(&Capture<S>, &Choice, &Built, &str),
) {
    st.captures += caps.len() as u64;
    let base = (quota as usize).div_ceil(caps.len().max(1)).max(1);
    let mut reported = 0;
    for cap in caps {
        for ch in choices(cap, base, rng) {
            let Some(img) = build(cap, &ch, rng) else {
                st.impossible += 1;
                continue;
            };
            st.images += 1;
            st.dirops_lost += u64::from(ch.applied.iter().any(|&a| !a));
            st.torn += u64::from(img.dropped > 0 && img.kept > 0);
            st.all_lost += u64::from(ch.loss == Loss::AllLost && img.dropped > 0);
            match check(cap, &img, rng) {
                Ok(n) => st.entries_checked += n,
                Err(why) if known(cap, &ch, &img, &why) => st.known += 1,
                Err(why) => {
                    st.failures += 1;
                    st.unordered_failures += u64::from(!ch.ordered());
                    if reported < 3 {
                        reported += 1;
                        report(cap, &ch, &img, &why);
                    }
                }
            }
        }
    }
}

/// A failing image for a post-mortem: the capture, the choice and where the image is kept.
pub fn describe<S>(cap: &Capture<S>, ch: &Choice, img: &Built) -> String {
    let kept = crate::crash_util::keep_for_debug(img.dir.path(), "image");
    let mut s = format!(
        "phase {:?}, capture at event #{}, recycling windows {:?}\n\
         loss {:?}, unsynced sectors dropped {} kept {}, ops applied in order: {}\n\
         names durable at the last directory fsync: {:?}\n\
         operations since (applied or lost in this image):\n",
        cap.phase,
        cap.event,
        cap.windows,
        ch.loss,
        img.dropped,
        img.kept,
        ch.ordered(),
        cap.durable.keys().collect::<Vec<_>>()
    );
    for (op, &on) in cap.pending.iter().zip(&ch.applied) {
        s += &format!("  [{}] {op}\n", if on { "applied" } else { "LOST" });
    }
    s += &format!(
        "image names: {:?}\nimage kept in {}\nevent tail:\n",
        img.names.keys().collect::<Vec<_>>(),
        kept.display()
    );
    for l in &cap.tail {
        s += &format!("  {l}\n");
    }
    s
}

/// Threads that flush a shared log until stopped: one with `flush_blocking`, one with
/// `flush(cb)` (at most 16 callbacks in flight). Each takes `snap()` before it asks, and
/// passes it to `ack` once the flush reported `Ok`.
pub struct Flushers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Flushers {
    pub fn start<A: Send + 'static>(
        wal: &Arc<Wal>,
        seed: u64,
        snap: impl Fn() -> A + Send + Sync + 'static,
        ack: impl Fn(A) + Send + Sync + 'static,
    ) -> Flushers {
        let stop = Arc::new(AtomicBool::new(false));
        let (snap, ack) = (Arc::new(snap), Arc::new(ack));
        let mut handles = Vec::new();
        {
            let (wal, stop, snap, ack) = (
                Arc::clone(wal),
                Arc::clone(&stop),
                Arc::clone(&snap),
                Arc::clone(&ack),
            );
            let mut rng = Rng::new(seed);
            handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let s = snap();
                    wal.flush_blocking().expect("flush_blocking");
                    ack(s);
                    std::thread::sleep(Duration::from_micros(rng.below(400)));
                }
            }));
        }
        let (wal, stop2) = (Arc::clone(wal), Arc::clone(&stop));
        let mut rng = Rng::new(seed ^ 1);
        handles.push(std::thread::spawn(move || {
            let in_flight = Arc::new(AtomicU64::new(0));
            while !stop2.load(Ordering::SeqCst) {
                if in_flight.load(Ordering::SeqCst) < 16 {
                    let s = snap();
                    let (a, f) = (Arc::clone(&ack), Arc::clone(&in_flight));
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    wal.flush(move |r| {
                        r.expect("flush callback");
                        a(s);
                        f.fetch_sub(1, Ordering::SeqCst);
                    })
                    .expect("flush");
                }
                std::thread::sleep(Duration::from_micros(rng.below(300)));
            }
        }));
        Flushers { stop, handles }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().expect("a flushing thread panicked");
        }
    }
}

/// A live log in a temporary directory, under a [`Recorder`], and its flushing threads.
pub struct Live<S> {
    pub dir: tempfile::TempDir,
    pub wal: Option<Arc<Wal>>,
    pub rec: Arc<Recorder<S>>,
    flushers: Vec<Flushers>,
}

impl<S: Clone + Send + 'static> Live<S> {
    /// A new directory and its recorder, which calls `snap` at each capture point.
    pub fn new(seed: u64, snap: impl Fn() -> S + Send + Sync + 'static) -> Live<S> {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::new(dir.path(), seed, snap);
        Live {
            dir,
            wal: None,
            rec,
            flushers: Vec::new(),
        }
    }

    pub fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the log is open")
    }

    /// Open the log with `c` and the recorder as its observer (the caller keeps it in
    /// `wal` once it checked it).
    pub fn open(&self, mut c: Config) -> Wal {
        c.fs_observer = Some(self.rec.observer());
        self.rec.set_opening(true);
        let wal = Wal::open(c).expect("open of the live log");
        self.rec.set_opening(false);
        wal
    }

    /// Start two more flushing threads (see [`Flushers`]).
    pub fn start_flushers<A: Send + 'static>(
        &mut self,
        seed: u64,
        snap: impl Fn() -> A + Send + Sync + 'static,
        ack: impl Fn(A) + Send + Sync + 'static,
    ) {
        let f = Flushers::start(self.wal.as_ref().unwrap(), seed, snap, ack);
        self.flushers.push(f);
    }

    pub fn stop_flushers(&mut self) {
        for f in self.flushers.drain(..) {
            f.stop();
        }
    }

    /// The log, once no flushing thread shares it any more.
    pub fn take_wal(&mut self) -> Wal {
        self.stop_flushers();
        match Arc::try_unwrap(self.wal.take().unwrap()) {
            Ok(w) => w,
            Err(_) => panic!("the log is still shared"),
        }
    }

    /// Panic if an event did not fit the model; else what the recorder heard.
    pub fn finish(&self) -> Counts {
        let a = self.rec.anomalies();
        assert!(a.is_empty(), "events that do not fit the model: {a:?}");
        self.rec.counts()
    }
}
