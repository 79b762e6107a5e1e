//! State shared by the writer, the flush worker and readers: poison and the durable point.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;
use crate::observe::Metrics;

/// Sticky fatal-error flag. Once set, every write and flush fails until the log is reopened.
#[derive(Debug, Default)]
pub struct Poison {
    set: AtomicBool,
    cause: Mutex<Option<(&'static str, io::ErrorKind)>>,
    /// Told once, when the log is poisoned.
    metrics: Arc<Metrics>,
}

impl Poison {
    /// An unset flag that reports poisoning to `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Poison {
            metrics,
            ..Poison::default()
        }
    }

    /// Record the first fatal error.
    pub fn poison(&self, op: &'static str, kind: io::ErrorKind) {
        let mut c = self.cause.lock();
        if c.is_none() {
            *c = Some((op, kind));
            tracing::error!(op, ?kind, "chunkwal poisoned: refusing further writes");
            self.metrics.poisoned();
        }
        self.set.store(true, Ordering::Release);
    }

    /// `Err(Poisoned)` once poisoned.
    pub fn check(&self) -> Result<(), Error> {
        if self.set.load(Ordering::Acquire) {
            return Err(self.error());
        }
        Ok(())
    }

    /// The sticky error.
    pub fn error(&self) -> Error {
        let (op, kind) = self
            .cause
            .lock()
            .unwrap_or(("unknown", io::ErrorKind::Other));
        Error::Poisoned { op, kind }
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
        p.poison("msync", io::ErrorKind::Other);
        p.poison("later", io::ErrorKind::NotFound);
        match p.check() {
            Err(Error::Poisoned { op, .. }) => assert_eq!(op, "msync"),
            other => panic!("{other:?}"),
        }
    }
}
