//! State shared by the writer, the flush worker and readers: poison and the durable point.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Panicked};
use crate::observe::Metrics;

/// Sticky fatal-error flag. Once set, every write and flush fails until the log is reopened.
#[derive(Debug, Default)]
pub struct Poison {
    set: AtomicBool,
    cause: Mutex<Option<Cause>>,
    /// Told once, when the log is poisoned.
    metrics: Arc<Metrics>,
}

/// The first fatal error: what failed, where, and the error itself.
#[derive(Debug, Clone)]
struct Cause {
    op: &'static str,
    path: Option<PathBuf>,
    source: Arc<io::Error>,
}

impl Poison {
    /// An unset flag that reports poisoning to `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Poison {
            metrics,
            ..Poison::default()
        }
    }

    /// Record the first fatal error: `op` failed (on `path`, if known) with `source`. Later
    /// calls keep the first cause.
    pub fn poison(&self, op: &'static str, path: Option<&Path>, source: io::Error) {
        let mut c = self.cause.lock();
        if c.is_none() {
            tracing::error!(op, path = ?path, error = %source, "chunkwal poisoned: refusing further writes");
            *c = Some(Cause {
                op,
                path: path.map(Path::to_path_buf),
                source: Arc::new(source),
            });
            self.metrics.poisoned();
        }
        self.set.store(true, Ordering::Release);
    }

    /// Record a caught panic in `op` as the first fatal error (see [`Poison::poison`]).
    pub fn poison_panic(&self, op: &'static str) {
        self.poison(op, None, Panicked::io());
    }

    /// `Err(Poisoned)` once poisoned.
    pub fn check(&self) -> Result<(), Error> {
        if self.set.load(Ordering::Acquire) {
            return Err(self.error());
        }
        Ok(())
    }

    /// The sticky error (its source shared with every other copy).
    pub fn error(&self) -> Error {
        let c = self.cause.lock().clone().unwrap_or_else(|| Cause {
            op: "unknown",
            path: None,
            source: Arc::new(Panicked::io()),
        });
        Error::Poisoned {
            op: c.op,
            path: c.path,
            source: c.source,
        }
    }

    /// Whether the log is poisoned.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

const NONE: u64 = u64::MAX;

/// Where durability stands: the synced byte position and the highest durable entry index.
#[derive(Debug)]
pub struct DurableState {
    /// `(chunk_seq << 32) | offset`: every byte before it is on stable storage.
    pos: AtomicU64,
    /// Highest index whose entry (as the log holds it now) is durable; `u64::MAX` for none.
    index: AtomicU64,
    /// Truncation generation; guards `index` against marks from before a truncate.
    gen: Mutex<u64>,
}

impl DurableState {
    /// Start with `pos` durable and entries up to `index` durable.
    pub fn new(pos: u64, index: Option<u64>) -> Self {
        DurableState {
            pos: AtomicU64::new(pos),
            index: AtomicU64::new(index.unwrap_or(NONE)),
            gen: Mutex::new(0),
        }
    }

    /// Pack a chunk position (see [`crate::types::position`]).
    pub fn pack(seq: u64, offset: usize) -> u64 {
        crate::types::position(seq, offset)
    }

    /// The durable byte offset inside chunk `seq` (0 if nothing of it is known durable).
    pub fn offset_in(&self, seq: u64) -> u32 {
        let p = self.pos.load(Ordering::Acquire);
        if p >> 32 == seq {
            p as u32
        } else {
            0
        }
    }

    /// A completed sync covered everything before `pos` (only the sync owner calls this).
    pub fn advance_pos(&self, pos: u64) {
        self.pos.fetch_max(pos, Ordering::AcqRel);
    }

    /// The truncation generation now.
    #[cfg(feature = "testing")]
    pub fn gen(&self) -> u64 {
        *self.gen.lock()
    }

    /// Highest durable entry index.
    pub fn index(&self) -> Option<u64> {
        match self.index.load(Ordering::Acquire) {
            NONE => None,
            i => Some(i),
        }
    }

    /// A truncate left `last` as the last index: nothing past it is durable any more.
    pub fn on_truncate(&self, last: Option<u64>) -> u64 {
        let mut g = self.gen.lock();
        *g += 1;
        let cur = self.index.load(Ordering::Acquire);
        let capped = last.unwrap_or(NONE);
        if cur != NONE && (capped == NONE || cur > capped) {
            self.index.store(capped, Ordering::Release);
        }
        *g
    }

    /// A completed sync covered everything before `pos`, which holds entries up to
    /// `last_index` as of `gen` (only the sync owner calls this).
    pub fn advance(&self, pos: u64, last_index: Option<u64>, gen: u64) {
        self.pos.fetch_max(pos, Ordering::AcqRel);
        let g = self.gen.lock();
        if let Some(li) = last_index {
            if *g == gen {
                let cur = self.index.load(Ordering::Acquire);
                if cur == NONE || cur < li {
                    self.index.store(li, Ordering::Release);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_index_ignores_marks_from_before_a_truncate() {
        let d = DurableState::new(DurableState::pack(0, 64), None);
        d.advance(DurableState::pack(0, 100), Some(10), 0);
        assert_eq!(d.index(), Some(10));
        let gen = d.on_truncate(Some(5));
        assert_eq!(d.index(), Some(5));
        // A sync requested before the truncate completes late: it must not raise the index.
        d.advance(DurableState::pack(0, 200), Some(12), gen - 1);
        assert_eq!(d.index(), Some(5));
        d.advance(DurableState::pack(0, 300), Some(8), gen);
        assert_eq!(d.index(), Some(8));
        assert_eq!(d.offset_in(0), 300);
        assert_eq!(d.offset_in(1), 0);
        d.on_truncate(None);
        assert_eq!(d.index(), None);
    }

    #[test]
    fn poison_is_sticky_and_keeps_the_first_cause() {
        let p = Poison::default();
        assert!(p.check().is_ok());
        p.poison(
            "msync",
            Some(Path::new("/x/0.chunk")),
            io::Error::from_raw_os_error(5),
        );
        p.poison("later", None, io::Error::from(io::ErrorKind::NotFound));
        for _ in 0..2 {
            match p.check() {
                Err(Error::Poisoned { op, path, source }) => {
                    assert_eq!(op, "msync");
                    assert_eq!(path.as_deref(), Some(Path::new("/x/0.chunk")));
                    assert_eq!(source.raw_os_error(), Some(5));
                }
                other => panic!("{other:?}"),
            }
        }
        // Every copy shares the one source.
        let (Error::Poisoned { source: a, .. }, Error::Poisoned { source: b, .. }) =
            (p.error(), p.error())
        else {
            panic!("not poisoned");
        };
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_caught_panic_is_the_source() {
        let p = Poison::default();
        p.poison_panic("write (panicked)");
        let e = p.error();
        let src = std::error::Error::source(&e).expect("a source");
        let io = src.downcast_ref::<Arc<io::Error>>().expect("an io::Error");
        assert!(io.get_ref().is_some_and(|i| i.is::<Panicked>()), "{io:?}");
        assert!(e.to_string().contains("write (panicked)"), "{e}");
    }
}
