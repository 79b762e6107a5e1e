//! The acknowledgement oracle: a record of every completed sync and directory operation,
//! and the check that an acknowledged entry's bytes were covered by one.
//!
//! The rules it checks (docs/durability.md, "The rules the oracle checks"):
//! - an entry counts as durable only once completed msyncs have covered every byte of its
//!   chunk from the end of the header through the end of its record (recovery must be able
//!   to scan up to it), and
//! - its chunk file's name is durable: the chunk was renamed into place (or created) and the
//!   directory was fsynced after that.
//!
//! Each acknowledgement (a flush callback's `Ok`, a `flush_blocking` return, a value of
//! `durable_index()`, an adapter or openraft acknowledgement) is checked when it is given.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chunkwal::format::HEADER_LEN;
use chunkwal::{FsEvent, FsObserver};
use parking_lot::Mutex;

#[derive(Default)]
struct Record {
    /// Per chunk file: merged synced ranges, sorted.
    synced: HashMap<PathBuf, Vec<(u64, u64)>>,
    /// Names created or renamed into place, not yet followed by a directory fsync.
    unsynced_names: HashSet<PathBuf>,
    /// Names made durable by a directory fsync.
    durable_names: HashSet<PathBuf>,
    /// Durably named chunks removed since (a purge removes a chunk only once the purge
    /// record is durable): an acknowledgement checked after that still had its bytes
    /// covered, which is what the synced ranges, kept, show.
    retired: HashSet<PathBuf>,
}

/// Where an acknowledged entry lies: its chunk file and record range.
pub type Located = (PathBuf, u64, u64);

/// See the module docs.
#[derive(Default)]
pub struct Oracle {
    rec: Mutex<Record>,
    /// Acknowledgements checked.
    pub checked: AtomicU64,
    /// Violations seen (each a description).
    pub violations: Mutex<Vec<String>>,
}

impl Oracle {
    /// A new oracle; chunk files already in `dir` count as durably named.
    pub fn new(dir: &Path) -> Arc<Oracle> {
        let o = Oracle::default();
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut r = o.rec.lock();
            for e in rd.flatten() {
                r.durable_names.insert(e.path());
            }
        }
        Arc::new(o)
    }

    /// The observer to put in `Config::fs_observer`.
    pub fn observer(self: &Arc<Self>) -> FsObserver {
        let me = Arc::clone(self);
        Arc::new(move |ev: &FsEvent<'_>| me.observe(ev))
    }

    fn observe(&self, ev: &FsEvent<'_>) {
        let mut r = self.rec.lock();
        match *ev {
            FsEvent::SyncData { path, start, end } => {
                let v = r.synced.entry(path.to_path_buf()).or_default();
                v.push((start, end));
                v.sort_unstable();
                let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
                for &(s, e) in v.iter() {
                    match merged.last_mut() {
                        Some(last) if s <= last.1 => last.1 = last.1.max(e),
                        _ => merged.push((s, e)),
                    }
                }
                *v = merged;
            }
            FsEvent::Create { path } => {
                r.retired.remove(path);
                r.unsynced_names.insert(path.to_path_buf());
            }
            FsEvent::Rename { from, to } => {
                r.unsynced_names.remove(from);
                // A durably named chunk renamed away is retired (kept as a spare for
                // recycling): like a removed one, its bytes were covered before.
                if r.durable_names.remove(from) {
                    r.retired.insert(from.to_path_buf());
                }
                // Its data before the rename was synced under the final name already.
                r.retired.remove(to);
                r.unsynced_names.insert(to.to_path_buf());
            }
            FsEvent::Unlink { path } => {
                r.unsynced_names.remove(path);
                if r.durable_names.remove(path) {
                    r.retired.insert(path.to_path_buf());
                } else {
                    r.synced.remove(path);
                }
            }
            FsEvent::SyncDir { .. } => {
                let names: Vec<_> = r.unsynced_names.drain().collect();
                r.durable_names.extend(names);
            }
            FsEvent::SyncFile { .. } => {}
        }
    }

    /// Is the entry at `loc` durable by the rules? `Err` says why not.
    pub fn covered(&self, loc: &Located) -> Result<(), String> {
        let (path, _start, end) = loc;
        let r = self.rec.lock();
        if !r.durable_names.contains(path) && !r.retired.contains(path) {
            return Err(format!("{} is not durably named", path.display()));
        }
        let need = (HEADER_LEN as u64, *end);
        let ok = r
            .synced
            .get(path)
            .is_some_and(|v| v.iter().any(|&(s, e)| s <= need.0 && e >= need.1));
        if ok {
            Ok(())
        } else {
            let have = r.synced.get(path).cloned().unwrap_or_default();
            Err(format!(
                "{} bytes {:?} not covered by completed syncs {:?}",
                path.display(),
                need,
                have
            ))
        }
    }

    /// Check an acknowledgement now; a violation is recorded (and returned).
    pub fn check(&self, what: &str, loc: &Located) -> bool {
        self.checked.fetch_add(1, Ordering::Relaxed);
        match self.covered(loc) {
            Ok(()) => true,
            Err(why) => {
                self.violations.lock().push(format!("{what}: {why}"));
                false
            }
        }
    }

    /// Panic with every violation seen, if any.
    pub fn assert_clean(&self) {
        let v = self.violations.lock();
        assert!(
            v.is_empty(),
            "{} acknowledgements not covered by a completed sync, first: {:?}",
            v.len(),
            &v[..v.len().min(5)]
        );
    }
}
