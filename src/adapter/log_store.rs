//! `LogStore`: the async Raft log store over the synchronous [`Wal`], in the shape of
//! d-engine's `LogStore` and `MetaStore`, with no async runtime dependency.
//!
//! Futures complete from the core's flush callbacks (on its callback thread) through
//! [`crate::flush::oneshot`], so they run under any executor. See `docs/durability.md`, "Async adapter", for the guarantees of each
//! [`PersistenceStrategy`] × [`FlushPolicy`].

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::backpressure::{admit, Admission};
use super::batcher::{finish, lock, Book, Outcome};
use super::error::AdapterError;
use super::hard_state::HardState;
use super::policy::{AdapterOptions, FlushPolicy, PersistenceStrategy};
use super::timer::Timer;
use crate::flush::oneshot::Receiver;
use crate::format::encoded_len;
use crate::{Config, LogId, LogState, Reader, Wal};

type Result<T, E = AdapterError> = std::result::Result<T, E>;

/// An async Raft log store over chunkwal. Entries are `(LogId, Bytes)`.
///
/// All methods take `&self`; share it in an `Arc`. Writers serialize on one lock (as the
/// core's writer does); reads never wait for writers.
#[derive(Debug)]
pub struct LogStore {
    // Field order matters: the timer thread stops before the log closes.
    timer: Option<Timer>,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    wal: Wal,
    opts: AdapterOptions,
    /// Serializes writes with flush requests: see `batcher`.
    order: Mutex<()>,
    book: Arc<Mutex<Book>>,
}

/// What kind of write just happened, for the flush decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Entries (persist_entries, replace_range): governed by the policy's threshold.
    Entries,
    /// Truncate, purge, reset: DiskFirst makes them durable before returning.
    Control,
}

/// One attempt at a persist.
enum Step {
    /// MemFirst backpressure: wait for this flush, then try again.
    Blocked(Receiver<Outcome>),
    /// Written; DiskFirst waits for the covering flush.
    Written(Option<Receiver<Outcome>>),
}

async fn settle(rx: Receiver<Outcome>) -> Result<()> {
    rx.await.map_err(|_| AdapterError::Closed)?
}

fn encoded_bytes(entries: &[(LogId, Bytes)]) -> u64 {
    entries
        .iter()
        .map(|(_, p)| encoded_len(16 + p.len()) as u64)
        .sum()
}

impl LogStore {
    /// Open the log in `config.dir` with these adapter options.
    pub fn open(config: Config, opts: AdapterOptions) -> Result<LogStore> {
        opts.validate()?;
        LogStore::from_wal(Wal::open(config)?, opts)
    }

    /// Wrap an open log. Writes must from now on go through the adapter only.
    pub fn from_wal(wal: Wal, opts: AdapterOptions) -> Result<LogStore> {
        opts.validate()?;
        let inner = Arc::new(Inner {
            wal,
            opts,
            order: Mutex::new(()),
            book: Arc::new(Mutex::new(Book::default())),
        });
        let timer = match opts.policy {
            FlushPolicy::Immediate => None,
            FlushPolicy::Batch { interval, .. } => {
                let weak: Weak<Inner> = Arc::downgrade(&inner);
                Some(Timer::start(move || {
                    weak.upgrade().map(|i| i.tick(interval))
                })?)
            }
        };
        Ok(LogStore { timer, inner })
    }

    /// The options in force.
    pub fn options(&self) -> AdapterOptions {
        self.inner.opts
    }

    /// Persist entries. Entries at or below the purge point are dropped; entries the log
    /// already holds with the same term are skipped (Raft's log matching); the first held
    /// entry with another term starts an atomic truncate-and-append from that index.
    ///
    /// DiskFirst returns once a sync covered the entries (per the flush policy); MemFirst
    /// once they are readable, after waiting for a flush if `max_unflushed_bytes` is exceeded.
    pub async fn persist_entries(&self, entries: Vec<(LogId, Bytes)>) -> Result<()> {
        loop {
            match self.inner.try_persist(&entries)? {
                Step::Blocked(rx) => settle(rx).await?,
                Step::Written(None) => return Ok(()),
                Step::Written(Some(rx)) => return settle(rx).await,
            }
        }
    }

    /// Atomically truncate at `from` and append `entries` (which start at `from`), with the
    /// same durability as [`LogStore::persist_entries`].
    pub async fn replace_range(&self, from: u64, entries: Vec<(LogId, Bytes)>) -> Result<()> {
        loop {
            let step = self.inner.gated(|i| {
                i.wal.replace_range(from, entries.iter().cloned())?;
                Ok((entries.len(), encoded_bytes(&entries)))
            })?;
            match step {
                Step::Blocked(rx) => settle(rx).await?,
                Step::Written(rx) => return self.inner.wait_opt(rx).await,
            }
        }
    }

    /// One entry, if held.
    pub async fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        Ok(self.inner.wal.entry(index)?)
    }

    /// The held entries within `range` (inclusive): a range partly or wholly outside the
    /// log yields only what the log holds, possibly nothing (d-engine's convention; the
    /// core's [`Wal::read`] fails instead). See [`LogStore::visit_entries`] for what a
    /// concurrent truncate or purge does.
    pub fn get_entries(&self, range: RangeInclusive<u64>) -> Result<Vec<(LogId, Bytes)>> {
        let mut out = Vec::new();
        self.visit_entries(range, |left, e| {
            out.reserve(left);
            out.push(e);
        })?;
        Ok(out)
    }

    /// Visit the held entries within `range` (inclusive) in index order, without
    /// collecting them: `visit(left, entry)` gets, with each entry, how many entries of the
    /// clamped range are left to visit, this one included (a capacity hint).
    ///
    /// The range is clamped to what the log holds. If a purge or truncate races the clamp
    /// before anything was visited, the bounds are read again. If one removes entries while
    /// the visit runs, the visit ends at the first removed entry: what was visited is a
    /// prefix of the range as the log held it, never a gap.
    pub fn visit_entries(
        &self,
        range: RangeInclusive<u64>,
        mut visit: impl FnMut(usize, (LogId, Bytes)),
    ) -> Result<()> {
        let wal = &self.inner.wal;
        let mut attempts = 0;
        loop {
            let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
                return Ok(());
            };
            let from = (*range.start()).max(first);
            let through = (*range.end()).min(last);
            if from > through {
                return Ok(());
            }
            let span = usize::try_from(through - from + 1).unwrap_or(usize::MAX);
            let mut visited = 0;
            let complete = wal.reader().visit_span(from, through, |e| {
                visit(span - visited, e);
                visited += 1;
                true
            })?;
            // Stopped before anything was visited: the bounds moved under the clamp (a
            // purge or truncate); look again.
            if complete || visited > 0 || attempts >= 8 {
                return Ok(());
            }
            attempts += 1;
        }
    }

    /// The term of entry `index`, if held, from the index alone (no payload read).
    pub fn term(&self, index: u64) -> Option<u64> {
        self.inner.wal.term(index)
    }

    /// Purge entries up to and including `cutoff` (which may lie past the last entry).
    pub async fn purge(&self, cutoff: LogId) -> Result<()> {
        let rx = self.inner.control(|w| w.purge(cutoff))?;
        self.inner.wait_opt(rx).await
    }

    /// Remove every entry with index >= `from`.
    pub async fn truncate(&self, from: u64) -> Result<()> {
        let rx = self.inner.control(|w| w.truncate(from))?;
        self.inner.wait_opt(rx).await
    }

    /// Remove every entry and the purge point; the hard state stays.
    pub async fn reset(&self) -> Result<()> {
        let rx = self.inner.control(Wal::reset)?;
        self.inner.wait_opt(rx).await
    }

    /// True when `persist_entries` returns only after a sync covered the entries
    /// (DiskFirst, either policy); false for MemFirst.
    pub fn is_write_durable(&self) -> bool {
        self.inner.opts.is_write_durable()
    }

    /// The last index, or the purge point when the log is empty after a purge; 0 if none.
    pub fn last_index(&self) -> u64 {
        self.inner.wal.log_state().last.map_or(0, |l| l.index)
    }

    /// The highest entry index a completed sync covered. Never ahead of msync.
    pub fn durable_index(&self) -> Option<u64> {
        self.inner.wal.durable_index()
    }

    /// Request a sync of everything written so far and block until it completes.
    pub fn flush(&self) -> Result<()> {
        let seq = self.inner.request_flush();
        self.inner.block_on(seq)
    }

    /// Request a sync of everything written so far and await it.
    pub async fn flush_async(&self) -> Result<()> {
        let seq = self.inner.request_flush();
        let rx = lock(&self.inner.book).wait_for(seq);
        settle(rx).await
    }

    /// The highest purged log id, if the log was ever purged (since the last reset).
    pub fn load_purge_boundary(&self) -> Result<Option<LogId>> {
        Ok(self.inner.wal.log_state().purged)
    }

    /// Save the hard state (as the core's vote bytes) and block until it is durable,
    /// whatever the strategy: Raft must never forget a vote.
    pub fn save_hard_state(&self, state: &HardState) -> Result<()> {
        self.save_vote(Bytes::copy_from_slice(&state.encode()))
    }

    /// The saved hard state, if any.
    pub fn load_hard_state(&self) -> Result<Option<HardState>> {
        self.load_vote().map(|v| HardState::decode(&v)).transpose()
    }

    /// Save opaque vote bytes and block until they are durable.
    pub fn save_vote(&self, vote: Bytes) -> Result<()> {
        let seq = {
            let order = self.inner.order();
            self.inner.wal.save_vote(vote)?;
            lock(&self.inner.book).note_write(0, 0);
            self.inner.issue(&order)
        };
        self.inner.block_on(seq)
    }

    /// The saved vote bytes, if any.
    pub fn load_vote(&self) -> Option<Bytes> {
        self.inner.wal.log_state().vote
    }

    /// Encoded bytes written and not yet covered by a completed sync.
    pub fn unflushed_bytes(&self) -> u64 {
        lock(&self.inner.book).unflushed_bytes
    }

    /// The log state (including writes not yet durable).
    pub fn log_state(&self) -> LogState {
        self.inner.wal.log_state()
    }

    /// A read handle for other threads.
    pub fn reader(&self) -> Reader {
        self.inner.wal.reader()
    }

    /// Stop the timer, sync and close the log.
    pub fn close(self) -> Result<()> {
        let LogStore { timer, inner } = self;
        drop(timer);
        match Arc::try_unwrap(inner) {
            Ok(i) => Ok(i.wal.close()?),
            // Only the timer ever holds another reference, and it is stopped.
            Err(_) => Ok(()),
        }
    }

    /// Stop like a killed process would (see [`Wal::simulate_crash`]). For crash tests
    /// (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn simulate_crash(self) {
        let LogStore { timer, inner } = self;
        drop(timer);
        if let Ok(i) = Arc::try_unwrap(inner) {
            i.wal.simulate_crash();
        }
    }
}

impl Inner {
    fn order(&self) -> MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn disk_first(&self) -> bool {
        self.opts.strategy == PersistenceStrategy::DiskFirst
    }

    /// Issue a flush request to the core; the order lock proves the caller serializes it
    /// with writes.
    fn issue(&self, _order: &MutexGuard<'_, ()>) -> u64 {
        let seq = lock(&self.book).start_request();
        let book = Arc::clone(&self.book);
        if let Err(e) = self.wal.flush(move |r| finish(&book, seq, r)) {
            finish(&self.book, seq, Err(e));
        }
        seq
    }

    /// Block the calling thread until request `seq` is answered.
    fn block_on(&self, seq: u64) -> Result<()> {
        // Bind first: the book lock must be released before waiting.
        let rx = lock(&self.book).wait_for(seq);
        rx.wait().map_err(|_| AdapterError::Closed)?
    }

    fn request_flush(&self) -> u64 {
        let order = self.order();
        self.issue(&order)
    }

    /// Account for a write and apply the policy. Returns what a DiskFirst caller awaits.
    fn after_write(
        &self,
        order: &MutexGuard<'_, ()>,
        kind: Write,
        entries: usize,
        bytes: u64,
    ) -> Option<Receiver<Outcome>> {
        let flush_now = {
            let mut b = lock(&self.book);
            b.note_write(entries, bytes);
            match self.opts.policy {
                FlushPolicy::Immediate => true,
                FlushPolicy::Batch { threshold, .. } => {
                    b.pending_entries >= threshold || (kind == Write::Control && self.disk_first())
                }
            }
        };
        if flush_now {
            self.issue(order);
        }
        if self.disk_first() {
            let mut b = lock(&self.book);
            let seq = b.covering();
            Some(b.wait_for(seq))
        } else {
            None
        }
    }

    async fn wait_opt(&self, rx: Option<Receiver<Outcome>>) -> Result<()> {
        match rx {
            Some(rx) => settle(rx).await,
            None => Ok(()),
        }
    }

    /// Fail once a flush failed: the log refuses everything until it is reopened. Writes
    /// that add nothing (entries the log already holds) never reach the core, which would
    /// refuse them, so MemFirst, which does not wait for a flush, asks here.
    fn check_failed(&self) -> Result<()> {
        lock(&self.book).failure().map_or(Ok(()), Err)
    }

    /// Run an entry write under the order lock, after MemFirst admission.
    fn gated(&self, write: impl FnOnce(&Inner) -> Result<(usize, u64)>) -> Result<Step> {
        let order = self.order();
        self.check_failed()?;
        if !self.disk_first() {
            let adm = admit(&lock(&self.book), self.opts.max_unflushed_bytes);
            let seq = match adm {
                Admission::Admit => None,
                Admission::WaitFor(seq) => Some(seq),
                Admission::FlushAndWait => Some(self.issue(&order)),
            };
            if let Some(seq) = seq {
                return Ok(Step::Blocked(lock(&self.book).wait_for(seq)));
            }
        }
        match write(self) {
            Ok((n, bytes)) => {
                let rx = self.after_write(&order, Write::Entries, n, bytes);
                if rx.is_none() {
                    // MemFirst: the flush this write may have requested can have failed on
                    // the spot.
                    self.check_failed()?;
                }
                Ok(Step::Written(rx))
            }
            Err(e) => {
                // Part of the batch may be written: make sure a later flush covers it.
                lock(&self.book).note_write(0, 0);
                Err(e)
            }
        }
    }

    fn try_persist(&self, entries: &[(LogId, Bytes)]) -> Result<Step> {
        self.gated(|i| i.write_entries(entries))
    }

    /// Write what `entries` adds to the log (see `persist_entries`). Under the order lock.
    fn write_entries(&self, entries: &[(LogId, Bytes)]) -> Result<(usize, u64)> {
        let st = self.wal.log_state();
        let floor = st.purged.map(|p| p.index);
        let mut k = entries
            .iter()
            .take_while(|(id, _)| floor.is_some_and(|f| id.index <= f))
            .count();
        let mut conflict = None;
        if let Some(last) = st.last {
            while let Some((id, _)) = entries.get(k) {
                if id.index > last.index {
                    break;
                }
                // The term alone decides (Raft's log matching): no payload read.
                match self.wal.term(id.index) {
                    Some(term) if term == id.term => k += 1,
                    _ => {
                        conflict = Some(id.index);
                        break;
                    }
                }
            }
        }
        let rest = entries.get(k..).unwrap_or_default();
        if rest.is_empty() {
            return Ok((0, 0));
        }
        match conflict {
            Some(at) => self.wal.replace_range(at, rest.iter().cloned())?,
            None => self.wal.append(rest.iter().cloned())?,
        }
        Ok((rest.len(), encoded_bytes(rest)))
    }

    /// Truncate, purge or reset under the order lock.
    fn control(
        &self,
        op: impl FnOnce(&Wal) -> crate::Result<()>,
    ) -> Result<Option<Receiver<Outcome>>> {
        let order = self.order();
        self.check_failed()?;
        if let Err(e) = op(&self.wal) {
            lock(&self.book).note_write(0, 0);
            return Err(e.into());
        }
        Ok(self.after_write(&order, Write::Control, 0, 0))
    }

    /// The Batch timer: flush when `interval` passed since the last request and writes wait.
    /// Returns how long to sleep.
    fn tick(&self, interval: Duration) -> Duration {
        let order = self.order();
        {
            let b = lock(&self.book);
            if !b.dirty {
                return interval;
            }
            let elapsed = b.last_request.elapsed();
            if elapsed < interval {
                return interval - elapsed;
            }
        }
        self.issue(&order);
        interval
    }
}
