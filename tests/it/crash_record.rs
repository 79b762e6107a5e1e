//! The record that crash images are rebuilt from (`crash_image.rs`): the file-system
//! events of a log directory. Shared by `power_loss_dirops` and `power_loss_recycle`.
//!
//! A [`Recorder`] is the log's `Config::fs_observer`. It keeps a descriptor per inode (so an
//! unlinked or renamed file can still be read) and, per inode, the bytes known durable:
//!
//! - a created chunk file is preallocated: durable zeros, its header durable once its
//!   `SyncFile` is heard;
//! - `SyncData [s, e)` makes those bytes durable as they are at that moment (bytes before
//!   the reported end never change again within a chunk's life);
//! - `SyncFile` makes the header durable as it is (a recycled chunk's rewritten header);
//! - files already there when the recorder starts are durable as they are.
//!
//! Whatever a sync covered beyond what it reported (the rest of an msynced page, the zeros
//! open writes over a cut tail) counts as not durable: images may then hold more old bytes
//! than a disk could, never fewer.
//!
//! A rename moves the inode, durable bytes and all, to a new name: a recycled chunk
//! (`x.chunk -> x.free -> y.chunk.tmp -> y.chunk`) keeps its earlier life's bytes wherever
//! nothing synced since overwrote them. Directory operations are pending until the next
//! directory fsync. At a capture point (inside the observer, under its lock, so every other
//! engine thread stops at its next event) each inode an image may name is read, then the
//! test's snapshot is taken (acknowledgements given so far depend only on syncs already
//! heard; what the test had written by then bounds what the bytes can hold).
//!
//! Recycling windows (the engine's `Files::prepare` from a spare) are tracked per inode, so a
//! [`Mode::Recycle`] phase captures at every event while one is open: after the rename
//! `.free -> .chunk.tmp`, before the new header is written; right after the header write
//! (the capture taken at the rename, completed with the header once its `SyncFile` says
//! what it is: no event comes in between); at that `SyncFile` before it counts; after it,
//! before the install rename; after the install, before its directory fsync.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chunkwal::format::HEADER_LEN;
use chunkwal::{FsEvent, FsObserver};
use parking_lot::Mutex;

use crate::crash_image::{Capture, DirOp, FileCut, Window};
use crate::crash_util::Rng;

struct Inode {
    file: File,
    /// The bytes known durable (see the module docs).
    durable: Vec<u8>,
}

/// How a phase chooses its capture points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// About every `gap` events, and soon after each directory operation.
    #[default]
    Random,
    /// At every event (the events of an open).
    EveryEvent,
    /// As `Random`, and at every event while a recycling window is open (each window kept
    /// in its own reservoir of `cap`).
    Recycle,
}

struct Phase<S> {
    name: String,
    cap: usize,
    gap: u64,
    mode: Mode,
    /// Per reservoir: capture points seen, captures kept (reservoir sampling).
    kept: BTreeMap<Vec<Window>, (u64, Vec<Capture<S>>)>,
}

impl<S> Default for Phase<S> {
    fn default() -> Self {
        Phase {
            name: String::new(),
            cap: 0,
            gap: 1,
            mode: Mode::Random,
            kept: BTreeMap::new(),
        }
    }
}

/// What the recorder heard, for reports and assertions.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub events: u64,
    pub creates: u64,
    pub renames: u64,
    pub unlinks: u64,
    pub sync_dirs: u64,
    /// Renames `.chunk.tmp -> .chunk`.
    pub installs: u64,
    /// Renames `.chunk -> .free`.
    pub retires: u64,
    /// Renames `.free -> .chunk.tmp`.
    pub recycles: u64,
    /// Recycles of a spare whose own `.chunk -> .free` rename was not durable yet.
    pub early_reuses: u64,
    /// Files that vanished without an `Unlink` event (open's leftover removal).
    pub unobserved_unlinks: u64,
}

struct Rec<S> {
    dir: PathBuf,
    inodes: HashMap<u64, Inode>,
    durable: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
    current: BTreeMap<String, u64>,
    stage: HashMap<u64, Window>,
    /// Per recycled inode renamed and not yet given its header: a capture of that moment.
    stash: HashMap<u64, Capture<S>>,
    recycled: HashSet<u64>,
    tail: VecDeque<String>,
    rng: Rng,
    countdown: u64,
    soon: Option<u64>,
    phase: Phase<S>,
    done: Vec<Capture<S>>,
    /// Set when the test starts `Wal::open`, until the open's first event.
    opening: bool,
    /// Events that did not fit the model (they fail the test).
    anomalies: Vec<String>,
    counts: Counts,
}

/// The observer and its record; see the module docs.
pub struct Recorder<S> {
    rec: Mutex<Rec<S>>,
    /// Called at each capture point, under the record's lock: it must take no lock that is
    /// held across a call into the log.
    snap: Box<dyn Fn() -> S + Send + Sync>,
}

pub fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn is_log_file(n: &str) -> bool {
    n.ends_with(".chunk") || n.ends_with(".chunk.tmp") || n.ends_with(".free")
}

fn read_all(f: &File) -> Vec<u8> {
    let mut b = vec![0u8; f.metadata().unwrap().len() as usize];
    f.read_exact_at(&mut b, 0).unwrap();
    b
}

impl<S: Clone + Send + 'static> Recorder<S> {
    /// A recorder for `dir`; its chunk files and spares are durable as they are now.
    pub fn new(dir: &Path, seed: u64, snap: impl Fn() -> S + Send + Sync + 'static) -> Arc<Self> {
        let mut r = Rec {
            dir: dir.to_path_buf(),
            inodes: HashMap::new(),
            durable: BTreeMap::new(),
            pending: Vec::new(),
            current: BTreeMap::new(),
            stage: HashMap::new(),
            stash: HashMap::new(),
            recycled: HashSet::new(),
            tail: VecDeque::new(),
            rng: Rng::new(seed),
            countdown: 1,
            soon: None,
            phase: Phase::default(),
            done: Vec::new(),
            opening: false,
            anomalies: Vec::new(),
            counts: Counts::default(),
        };
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_log_file(&name) {
                continue;
            }
            let file = File::open(e.path()).unwrap();
            let ino = file.metadata().unwrap().ino();
            let durable = read_all(&file);
            r.inodes.insert(ino, Inode { file, durable });
            r.durable.insert(name.clone(), ino);
            r.current.insert(name, ino);
        }
        Arc::new(Recorder {
            rec: Mutex::new(r),
            snap: Box::new(snap),
        })
    }

    pub fn observer(self: &Arc<Self>) -> FsObserver {
        let me = Arc::clone(self);
        Arc::new(move |ev: &FsEvent<'_>| me.observe(ev))
    }

    /// Around `Wal::open` (no other engine thread runs then): names that vanish meanwhile
    /// without an event are taken as removed durably.
    pub fn set_opening(&self, on: bool) {
        let mut r = self.rec.lock();
        if !on {
            r.reconcile(None);
        }
        r.opening = on;
    }

    /// The previous process renamed `from` to `to` and died before the directory fsync
    /// that would have made it durable: the rename is pending.
    pub fn assume_pending_rename(&self, from: &str, to: &str) {
        let mut r = self.rec.lock();
        let ino = r.durable.remove(to).expect("renamed file");
        r.durable.insert(from.to_string(), ino);
        r.pending.push(DirOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
            ino,
        });
    }

    /// Start a capture phase: keep up to `cap` captures (per reservoir).
    pub fn phase(&self, name: &str, cap: usize, gap: u64, mode: Mode) {
        let mut r = self.rec.lock();
        r.end_phase();
        r.phase = Phase {
            name: name.to_string(),
            cap,
            gap,
            mode,
            kept: BTreeMap::new(),
        };
        r.countdown = 1 + r.rng.below(2 * gap.max(1));
    }

    /// A capture point outside any event (engine threads stop at their next event).
    pub fn capture_now(&self) {
        let mut r = self.rec.lock();
        r.offer(&*self.snap);
    }

    pub fn take_captures(&self) -> Vec<Capture<S>> {
        let mut r = self.rec.lock();
        r.end_phase();
        std::mem::take(&mut r.done)
    }

    pub fn counts(&self) -> Counts {
        self.rec.lock().counts.clone()
    }

    /// Names in the directory as the log sees it now.
    pub fn current_names(&self) -> Vec<String> {
        self.rec.lock().current.keys().cloned().collect()
    }

    pub fn anomalies(&self) -> Vec<String> {
        self.rec.lock().anomalies.clone()
    }

    fn observe(&self, ev: &FsEvent<'_>) {
        let mut guard = self.rec.lock();
        let r = &mut *guard;
        if r.opening {
            // Once per open, at its first event: its leftover removal came before it. The
            // file the event itself renamed or removed is gone already, and not unobserved.
            r.opening = false;
            let skip = match *ev {
                FsEvent::Rename { from, .. } => Some(name_of(from)),
                FsEvent::Unlink { path } => Some(name_of(path)),
                _ => None,
            };
            r.reconcile(skip.as_deref());
        }
        r.counts.events += 1;
        let n = r.counts.events;
        let mut dirop = true;
        let line = match *ev {
            FsEvent::Create { path } => {
                let name = name_of(path);
                let file = File::open(path).unwrap_or_else(|e| panic!("open {name}: {e}"));
                let ino = file.metadata().unwrap().ino();
                r.counts.creates += 1;
                if let Some(&old) = r.current.get(&name) {
                    r.anomalies.push(format!(
                        "#{n}: create of {name} over ino {old} (new ino {ino})"
                    ));
                }
                // Preallocated: unwritten blocks read as zeros until a sync says otherwise.
                let durable = vec![0u8; file.metadata().unwrap().len() as usize];
                r.inodes.entry(ino).or_insert(Inode { file, durable });
                r.current.insert(name.clone(), ino);
                r.pending.push(DirOp::Create { name, ino });
                format!("#{n} {}", r.pending.last().unwrap())
            }
            FsEvent::SyncFile { path } => {
                dirop = false;
                let name = name_of(path);
                match r.current.get(&name).copied() {
                    Some(ino) => {
                        if r.stage.get(&ino) == Some(&Window::Renamed) {
                            r.header_written(ino, &*self.snap);
                            r.stage.insert(ino, Window::HeaderSynced);
                        }
                        let i = r.inodes.get_mut(&ino).unwrap();
                        let h = HEADER_LEN.min(i.durable.len());
                        i.file.read_exact_at(&mut i.durable[..h], 0).unwrap();
                    }
                    None => r
                        .anomalies
                        .push(format!("#{n}: sync of unknown file {name}")),
                }
                format!("#{n} syncfile {name}")
            }
            FsEvent::SyncData { path, start, end } => {
                dirop = false;
                let name = name_of(path);
                let tmp = format!("{name}.tmp");
                let found = (r.current.get(&name).copied(), r.current.get(&tmp).copied());
                let ino = match found {
                    (Some(i), _) => Some(i),
                    (None, Some(i)) => {
                        r.anomalies
                            .push(format!("#{n}: {name} synced before it was installed"));
                        Some(i)
                    }
                    _ => None,
                };
                match ino {
                    Some(ino) => {
                        let i = r.inodes.get_mut(&ino).unwrap();
                        let (s, e) = (start as usize, end as usize);
                        if i.durable.len() < e {
                            i.durable.resize(e, 0);
                        }
                        i.file.read_exact_at(&mut i.durable[s..e], start).unwrap();
                    }
                    None => r
                        .anomalies
                        .push(format!("#{n}: sync of unknown chunk {name}")),
                }
                format!("#{n} syncdata {name} [{start}, {end})")
            }
            FsEvent::Rename { from, to } => {
                let (from, to) = (name_of(from), name_of(to));
                r.counts.renames += 1;
                match r.current.remove(&from) {
                    Some(ino) => {
                        r.on_rename(n, &from, &to, ino);
                        r.current.insert(to.clone(), ino);
                        r.pending.push(DirOp::Rename { from, to, ino });
                        let line = format!("#{n} {}", r.pending.last().unwrap());
                        let recycling = r.phase.mode == Mode::Recycle && r.phase.cap > 0;
                        if recycling && r.stage.get(&ino) == Some(&Window::Renamed) {
                            // The header is written right after this event: a capture of
                            // now, completed with it once its `SyncFile` tells what it is.
                            r.tail.push_back(line.clone());
                            let c = r.capture(&*self.snap, vec![Window::HeaderWritten]);
                            r.tail.pop_back();
                            r.stash.insert(ino, c);
                        }
                        line
                    }
                    None => {
                        r.anomalies
                            .push(format!("#{n}: rename of unknown file {from}"));
                        format!("#{n} rename {from} -> {to} (unknown)")
                    }
                }
            }
            FsEvent::Unlink { path } => {
                let name = name_of(path);
                r.counts.unlinks += 1;
                match r.current.remove(&name) {
                    Some(ino) => {
                        r.stage.remove(&ino);
                        r.stash.remove(&ino);
                        r.pending.push(DirOp::Unlink { name, ino });
                        format!("#{n} {}", r.pending.last().unwrap())
                    }
                    None => {
                        r.anomalies
                            .push(format!("#{n}: unlink of unknown file {name}"));
                        format!("#{n} unlink {name} (unknown)")
                    }
                }
            }
            FsEvent::SyncDir { .. } => {
                dirop = false;
                r.counts.sync_dirs += 1;
                r.dir_synced();
                format!("#{n} syncdir")
            }
        };
        r.tail.push_back(line);
        if r.tail.len() > 40 {
            r.tail.pop_front();
        }
        if r.should_fire(dirop) && r.phase.cap > 0 {
            r.offer(&*self.snap);
        }
    }
}

impl<S> Rec<S> {
    fn on_rename(&mut self, n: u64, from: &str, to: &str, ino: u64) {
        if from.ends_with(".chunk") && to.ends_with(".free") {
            self.counts.retires += 1;
        } else if from.ends_with(".free") && to.ends_with(".chunk.tmp") {
            self.counts.recycles += 1;
            let early = self.pending.iter().any(
                |op| matches!(op, DirOp::Rename { to, ino: i, .. } if *i == ino && to == from),
            );
            self.counts.early_reuses += u64::from(early);
            self.recycled.insert(ino);
            self.stage.insert(ino, Window::Renamed);
        } else if from.ends_with(".chunk.tmp") && to.ends_with(".chunk") {
            self.counts.installs += 1;
            match self.stage.get(&ino) {
                None => {}
                Some(Window::HeaderSynced) => {
                    self.stage.insert(ino, Window::Installed);
                }
                Some(w) => self.anomalies.push(format!(
                    "#{n}: recycled {from} installed in window {w:?} (header not synced)"
                )),
            }
        } else {
            self.anomalies
                .push(format!("#{n}: unexpected rename {from} -> {to}"));
        }
    }

    fn should_fire(&mut self, dirop: bool) -> bool {
        let mut fire = self.phase.mode == Mode::EveryEvent
            || (self.phase.mode == Mode::Recycle && !self.stage.is_empty());
        if let Some(s) = self.soon {
            if s == 0 {
                fire = true;
                self.soon = None;
            } else {
                self.soon = Some(s - 1);
            }
        }
        if dirop && self.soon.is_none() && self.rng.chance(60) {
            match self.rng.below(4) {
                0 => fire = true,
                k => self.soon = Some(k - 1),
            }
        }
        self.countdown -= 1;
        if self.countdown == 0 {
            fire = true;
            self.countdown = 1 + self.rng.below(2 * self.phase.gap.max(1));
        }
        fire
    }

    fn end_phase(&mut self) {
        let old = std::mem::take(&mut self.phase);
        for (_, (_, kept)) in old.kept {
            self.done.extend(kept);
        }
    }

    fn dir_synced(&mut self) {
        self.durable = self.current.clone();
        self.pending.clear();
        self.stage.retain(|_, w| *w != Window::Installed);
        // Inodes no image can name any more: their descriptors can go.
        let live: HashSet<u64> = self.durable.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }

    /// Open removes leftover files before its first event. While an open runs (no other
    /// engine thread does), a name gone from the directory is taken as removed durably.
    fn reconcile(&mut self, skip: Option<&str>) {
        let gone: Vec<String> = self
            .current
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != skip)
            .filter(|(name, &ino)| {
                std::fs::symlink_metadata(self.dir.join(name)).map_or(true, |m| m.ino() != ino)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for n in gone {
            self.current.remove(&n);
            self.tail
                .push_back(format!("(unobserved unlink of {n}, directory fsynced)"));
            self.counts.unobserved_unlinks += 1;
        }
        self.dir_synced();
    }

    /// A capture point: kept by reservoir sampling within the phase (and window).
    fn offer(&mut self, snap: &dyn Fn() -> S) {
        let key: Vec<Window> = if self.phase.mode == Mode::Recycle {
            let mut w: Vec<Window> = self.stage.values().copied().collect();
            w.sort_unstable();
            w.dedup();
            w
        } else {
            Vec::new()
        };
        if let Some(slot) = self.reserve(&key) {
            let c = self.capture(snap, key.clone());
            self.keep(&key, slot, c);
        }
    }

    /// Where a capture for reservoir `key` goes: `Some(None)` appended, `Some(Some(k))` in
    /// place of the `k`-th, `None` dropped.
    fn reserve(&mut self, key: &[Window]) -> Option<Option<usize>> {
        let cap = self.phase.cap;
        let e = self.phase.kept.entry(key.to_vec()).or_default();
        e.0 += 1;
        if e.1.len() < cap {
            return Some(None);
        }
        let k = self.rng.below(e.0) as usize;
        (k < cap).then_some(Some(k))
    }

    fn keep(&mut self, key: &[Window], slot: Option<usize>, c: Capture<S>) {
        let kept = &mut self.phase.kept.get_mut(key).unwrap().1;
        match slot {
            None => kept.push(c),
            Some(k) => kept[k] = c,
        }
    }

    /// The new header of recycled inode `ino` is written (its `SyncFile` is being heard):
    /// offer the capture stashed at its rename with the header in place, a power loss right
    /// after the header write; and a capture of now, before the sync counts.
    fn header_written(&mut self, ino: u64, snap: &dyn Fn() -> S) {
        if self.phase.mode != Mode::Recycle || self.phase.cap == 0 {
            return;
        }
        self.stage.insert(ino, Window::HeaderWritten);
        if let Some(mut c) = self.stash.remove(&ino) {
            let key = vec![Window::HeaderWritten];
            if let Some(slot) = self.reserve(&key) {
                let cut = c.files.remove(&ino).unwrap();
                let durable = cut.durable.unwrap_or_else(|| cut.bytes.clone());
                let mut bytes = cut.bytes;
                let h = HEADER_LEN.min(bytes.len());
                self.inodes[&ino]
                    .file
                    .read_exact_at(&mut bytes[..h], 0)
                    .unwrap();
                c.files.insert(ino, FileCut::new(bytes, durable));
                c.tail
                    .push("(new header written, power loss before any later event)".into());
                self.keep(&key, slot, c);
            }
        }
        self.offer(snap);
    }

    /// Every inode an image may name, as it is now; then the test's snapshot (taken after
    /// the bytes: it bounds what they can hold).
    fn capture(&self, snap: &dyn Fn() -> S, windows: Vec<Window>) -> Capture<S> {
        let mut wanted: Vec<u64> = self.durable.values().copied().collect();
        wanted.extend(self.pending.iter().map(DirOp::ino));
        wanted.sort_unstable();
        wanted.dedup();
        let mut files = HashMap::new();
        for ino in wanted {
            let i = &self.inodes[&ino];
            files.insert(ino, FileCut::new(read_all(&i.file), i.durable.clone()));
        }
        Capture {
            phase: self.phase.name.clone(),
            event: self.counts.events,
            durable: self.durable.clone(),
            pending: self.pending.clone(),
            files,
            snap: snap(),
            windows,
            recycled: self.recycled.clone(),
            tail: self.tail.iter().cloned().collect(),
        }
    }
}
