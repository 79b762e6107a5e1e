//! `Wal`: the synchronous Raft log API in the spirit of raft-log's `RaftLog`.

use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::iter::Entries;
use super::read::Reader;
use super::recovery::open;
use super::shared::{last_before, Counters};
use super::verify::{Background, VerifyProgress, VerifyReport, VerifyStatus};
use super::writer::{max_meta, max_payload, Writer};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::flush::FlushTicket;
use crate::format::Record;
use crate::types::{LogId, LogState};

/// A memory-mapped, segmented Raft log.
///
/// Writers (`append`, `truncate`, ...) serialize on an internal mutex; reads go through a
/// lock-free index and never wait for the writer. All methods take `&self`; `Wal` is `Sync`.
///
/// Writes are visible to readers on return and durable once a later [`Wal::flush`] callback
/// reports `Ok`. See `docs/durability.md`.
pub struct Wal {
    writer: Mutex<Writer>,
    pub(super) reader: Reader,
    max_payload: u64,
    max_meta: u64,
    /// The background verifier of the sealed chunks open did not check.
    verifier: Background,
    _lock: Arc<std::fs::File>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.reader.shared().dir)
            .field("state", &self.log_state())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Open the log in `config.dir`, creating it if allowed, and replay it.
    ///
    /// Takes an exclusive lock on the directory: a second open, from this or another
    /// process, fails with [`Error::Locked`].
    pub fn open(config: Config) -> Result<Wal> {
        let chunk_size = config.chunk_size;
        let span = tracing::info_span!(
            "chunkwal_open",
            dir = %config.dir.display(),
            chunks = tracing::field::Empty,
            recovery = tracing::field::Empty,
        )
        .entered();
        let o = open(config).inspect_err(|e| {
            span.record("recovery", "failed");
            tracing::debug!(error = %e, "open failed");
        })?;
        let chunks = o.writer.shared.chunks.len();
        span.record("chunks", chunks);
        span.record("recovery", o.recovery);
        tracing::info!(
            dir = %o.writer.shared.dir.display(),
            chunks,
            recovery = o.recovery,
            "chunkwal log opened"
        );
        let reader = Reader::new(Arc::clone(&o.writer.shared));
        // The sealed chunks open did not check (a lazy open) are checked in the background.
        let verifier = Background::start(&o.writer.shared, o.unverified);
        Ok(Wal {
            writer: Mutex::new(o.writer),
            reader,
            max_payload: max_payload(chunk_size),
            max_meta: max_meta(chunk_size),
            verifier,
            _lock: o.lock,
        })
    }

    /// A cheap, cloneable read handle for other threads.
    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }

    /// The largest payload one entry may carry with this chunk size.
    pub fn max_payload(&self) -> u64 {
        self.max_payload
    }

    pub(super) fn check_payload(&self, len: usize) -> Result<()> {
        if len as u64 > self.max_payload {
            return Err(Error::EntryTooLarge {
                size: len as u64,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    pub(super) fn check_meta(&self, len: usize) -> Result<()> {
        if len as u64 > self.max_meta {
            return Err(Error::EntryTooLarge {
                size: len as u64,
                max: self.max_meta,
            });
        }
        Ok(())
    }

    fn lock(&self) -> Result<parking_lot::MutexGuard<'_, Writer>> {
        let w = self.writer.lock();
        w.shared.poison.check()?;
        Ok(w)
    }

    /// Run a write under the writer mutex. A panic on the write path poisons the log
    /// (parking_lot mutexes do not): the disk, the index and the cache may disagree after it,
    /// so nothing more may be written or reported durable.
    pub(super) fn write_op<T>(&self, f: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        let mut w = self.lock()?;
        // A call that made the chunk files pass `Config::rewrite_threshold` also rewrites
        // lagging groups forward (`rewrite.rs`; a no-op check without a threshold).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = f(&mut w)?;
            w.maybe_rewrite()?;
            Ok(t)
        }));
        match r {
            Ok(r) => r,
            Err(_) => {
                w.shared.poison.poison_panic("write (panicked)");
                Err(w.shared.poison.error())
            }
        }
    }

    /// Append entries. Indexes must continue the log without gaps (the first append to an
    /// empty, never-purged log may start anywhere). One call is one atomic group per chunk
    /// it lands in. Readable on return; durable after a later flush completes.
    pub fn append<I>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (LogId, Bytes)>,
    {
        let (ids, payloads): (Vec<LogId>, Vec<Bytes>) = entries.into_iter().unzip();
        if ids.is_empty() {
            return Ok(());
        }
        let wait = self.write_op(|w| {
            self.append_locked(w, &ids, &payloads)?;
            Ok(w.backpressure())
        })?;
        // Configured backpressure: the append waits, outside the writer mutex, until
        // enough of what was written is durable (a sync already running is merged with).
        match wait {
            Some((owner, target)) => owner.sync_to(target),
            None => Ok(()),
        }
    }

    fn append_locked(&self, w: &mut Writer, ids: &[LogId], payloads: &[Bytes]) -> Result<()> {
        self.check_entries(&w.state, None, entry_lens(ids, payloads))?;
        let recs = entry_records(ids, payloads);
        let r = w.write(&recs, payloads, false);
        Counters::bump(&w.shared.counters.appends, 1);
        Counters::bump(&w.shared.counters.appended_entries, ids.len() as u64);
        r
    }

    /// Check entries, given as (id, payload length), against `state`: they must start at
    /// `since` (or continue the log), follow on without gaps or overflow, and each payload
    /// must fit a chunk. Every single-group write and every group of a batch checks here.
    pub(super) fn check_entries(
        &self,
        state: &LogState,
        since: Option<u64>,
        entries: impl ExactSizeIterator<Item = (LogId, usize)>,
    ) -> Result<()> {
        let n = entries.len();
        let mut expected = match since {
            Some(s) => Some(s),
            None => state.next_index(),
        };
        if state.last.is_some_and(|l| l.index == u64::MAX) && since.is_none() {
            return Err(Error::IndexOverflow);
        }
        for (k, (id, len)) in entries.enumerate() {
            if let Some(e) = expected {
                if id.index != e {
                    return Err(Error::NonContiguous {
                        expected: e,
                        got: id.index,
                    });
                }
            }
            self.check_payload(len)?;
            expected = match id.index.checked_add(1) {
                Some(next) => Some(next),
                None if k + 1 < n => return Err(Error::IndexOverflow),
                None => None,
            };
        }
        Ok(())
    }

    pub(super) fn check_truncate(state: &LogState, since: u64) -> Result<()> {
        if let Some(p) = state.purged {
            if since <= p.index {
                return Err(Error::TruncatePurged {
                    since,
                    purged: p.index,
                });
            }
        }
        Ok(())
    }

    /// Remove every entry with index >= `since`. A no-op past the last entry.
    pub fn truncate(&self, since: u64) -> Result<()> {
        self.write_op(|w| {
            Self::check_truncate(&w.state, since)?;
            if w.state.last.is_none_or(|l| since > l.index) {
                return Ok(());
            }
            let last = last_before(&w.state, &w.shared.index, since);
            w.write(&[Record::Truncate { since, last }], &[], false)
        })
    }

    /// Truncate at `since` and append `entries` (which must start at `since`) as one
    /// crash-atomic write: after a crash the log has either the old suffix or the new one
    /// (a new suffix that spans chunks may keep only a prefix of the new entries).
    pub fn replace_range<I>(&self, since: u64, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (LogId, Bytes)>,
    {
        let (ids, payloads): (Vec<LogId>, Vec<Bytes>) = entries.into_iter().unzip();
        self.write_op(|w| self.replace_locked(w, since, &ids, &payloads))
    }

    fn replace_locked(
        &self,
        w: &mut Writer,
        since: u64,
        ids: &[LogId],
        payloads: &[Bytes],
    ) -> Result<()> {
        Self::check_truncate(&w.state, since)?;
        if w.state.last.is_none() && w.state.purged.is_none() {
            // Nothing to replace: a plain append, under the same lock (so no other write
            // can come between the check and the append).
            if ids.is_empty() {
                return Ok(());
            }
            if ids[0].index != since {
                return Err(Error::NonContiguous {
                    expected: since,
                    got: ids[0].index,
                });
            }
            return self.append_locked(w, ids, payloads);
        }
        let next = w.state.next_index().unwrap_or(since);
        if since > next {
            return Err(Error::NonContiguous {
                expected: next,
                got: since,
            });
        }
        self.check_entries(&w.state, Some(since), entry_lens(ids, payloads))?;
        let mut recs = Vec::with_capacity(ids.len() + 1);
        // Nothing to cut when `since` is the next index: then it is a plain append.
        let cuts = w.state.last.is_some_and(|l| since <= l.index);
        if cuts {
            let last = last_before(&w.state, &w.shared.index, since);
            recs.push(Record::Truncate { since, last });
        }
        recs.extend(entry_records(ids, payloads));
        w.write(&recs, payloads, cuts)
    }

    /// Purge entries up to and including `upto`. `upto` may lie past the last entry (after a
    /// snapshot install): the log then becomes empty and continues at `upto.index + 1`.
    /// Chunk files are deleted only after the purge record is durable.
    pub fn purge(&self, upto: LogId) -> Result<()> {
        self.write_op(|w| {
            if w.state.purged.is_some_and(|p| p.index >= upto.index) {
                return Ok(());
            }
            w.write(&[Record::Purge { upto }], &[], false)?;
            w.retire_chunks(Some(upto))
        })
    }

    /// Remove every entry and the purge point (vote and user data stay), so the next
    /// append may start at any index. Durable after a later flush.
    pub fn reset(&self) -> Result<()> {
        self.write_op(|w| w.reset())
    }

    /// Record the committed log id.
    pub fn commit(&self, id: LogId) -> Result<()> {
        self.write_op(|w| w.write(&[Record::Commit { id }], &[], false))
    }

    /// Save the vote (opaque bytes). Durable after a later flush completes.
    pub fn save_vote(&self, vote: Bytes) -> Result<()> {
        self.check_meta(vote.len())?;
        self.write_op(|w| w.write(&[Record::Vote { vote: &vote }], &[], false))
    }

    /// Save or clear opaque application data.
    pub fn save_user_data(&self, data: Option<Bytes>) -> Result<()> {
        self.check_meta(data.as_ref().map_or(0, |d| d.len()))?;
        let data = data.as_deref();
        self.write_op(|w| w.write(&[Record::UserData { data }], &[], false))
    }

    /// Ask for everything written so far to be made durable; `callback` is called once with
    /// the result, in the order flushes were requested, after the sync covering the request
    /// completed (or failed). Concurrent requests are merged into one sync (group commit).
    ///
    /// Callbacks run on chunkwal's callback thread, never on the flush thread: a slow
    /// callback delays the callbacks after it, but no sync. A callback must not close or
    /// drop the last handle of this `Wal` (that waits for the callback thread, that is for
    /// itself). If this call returns an error, the callback is dropped without being
    /// called. See `docs/durability.md` §2.
    pub fn flush(&self, callback: impl FnOnce(Result<()>) + Send + 'static) -> Result<()> {
        self.write_op(|w| w.request_sync(Some(Box::new(callback))))
    }

    /// [`Wal::flush`] with a [`FlushTicket`] instead of a callback: wait on the ticket, or
    /// await it under any executor (no async runtime is needed).
    ///
    /// ```
    /// use chunkwal::{Config, LogId, Wal};
    /// let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(Config::new(dir.path()))?;
    /// wal.append([(LogId::new(1, 1), bytes::Bytes::from_static(b"a"))])?;
    /// let ticket = wal.flush_ticket()?;
    /// ticket.wait()?; // or `ticket.await?` in async code
    /// assert_eq!(wal.durable_index(), Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush_ticket(&self) -> Result<FlushTicket> {
        let (ticket, callback) = FlushTicket::new();
        self.write_op(|w| w.request_sync(Some(callback)))?;
        Ok(ticket)
    }

    /// Make everything written so far durable, syncing on the calling thread (no hand-off
    /// to the flush worker, so no thread wake-ups on the latency path). Other threads keep
    /// appending while it syncs; a sync already running (the worker's or another caller's)
    /// is waited for first, and whatever it covered is not synced again. On `Ok`, every
    /// write made before the call is durable.
    pub fn flush_blocking(&self) -> Result<()> {
        let (owner, target) = {
            let w = self.lock()?;
            Counters::bump(&w.shared.counters.flushes, 1);
            w.shared.metrics.flush_requested();
            (std::sync::Arc::clone(&w.owner), w.target())
        };
        owner.sync_to(target)
    }

    /// The smallest index the log holds, if it holds any entry.
    pub fn first_index(&self) -> Option<u64> {
        self.reader.first_index()
    }

    /// The largest index the log holds, if it holds any entry (never the purge point).
    pub fn last_index(&self) -> Option<u64> {
        self.reader.last_index()
    }

    /// Every entry of `range`, all or nothing; see [`Reader::read`] for the range rules
    /// (empty, unbounded, purged start, end past the last entry) and the errors.
    ///
    /// ```
    /// # use chunkwal::{Config, Error, LogId, Wal};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(Config::new(dir.path()))?;
    /// wal.append((1..=5).map(|i| (LogId::new(1, i), bytes::Bytes::from(vec![0; 10]))))?;
    /// assert_eq!(wal.read(2..4)?.len(), 2); // 2 and 3
    /// assert_eq!(wal.read(2..=4)?.len(), 3);
    /// assert_eq!(wal.read(3..)?.len(), 3); // through the last entry
    /// assert!(wal.read(6..)?.is_empty()); // caught up: nothing yet
    /// assert!(matches!(
    ///     wal.read(4..=6),
    ///     Err(Error::OutOfRange { from: 4, through: 6, first: Some(1), last: Some(5) })
    /// ));
    /// # Ok::<(), chunkwal::Error>(())
    /// ```
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(LogId, Bytes)>> {
        self.reader.read(range)
    }

    /// A prefix of `range` holding at most `max_bytes` of payload, but always at least one
    /// entry of a non-empty range; see [`Reader::read_bounded`].
    pub fn read_bounded(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<(LogId, Bytes)>> {
        self.reader.read_bounded(range, max_bytes)
    }

    /// A lazy iterator over `range` that holds no lock; see [`Entries`].
    pub fn iter(&self, range: impl RangeBounds<u64>) -> Result<Entries> {
        self.reader.iter(range)
    }

    /// The term of entry `index`, from the in-memory index alone (no payload read, no CRC
    /// check); `None` if the log does not hold it. See [`Reader::term`].
    pub fn term(&self, index: u64) -> Option<u64> {
        self.reader.term(index)
    }

    /// One entry, if the log holds it.
    pub fn entry(&self, index: u64) -> Result<Option<(LogId, Bytes)>> {
        self.reader.entry(index)
    }

    /// The latest state (including writes not yet durable).
    pub fn log_state(&self) -> LogState {
        self.reader.log_state()
    }

    /// Highest entry index known durable.
    pub fn durable_index(&self) -> Option<u64> {
        self.reader.durable_index()
    }

    /// Block until the flush worker has finished everything queued before this call
    /// (feature `testing`: lets a test observe the worker's effects deterministically).
    #[cfg(feature = "testing")]
    pub fn wait_worker_idle(&self) {
        self.worker_barrier();
    }

    /// Wait for the flush worker to finish every job queued before this call.
    fn worker_barrier(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = self
            .writer
            .lock()
            .worker
            .send(crate::flush::Job::Barrier(tx));
        if sent.is_ok() {
            let _ = rx.recv();
        }
    }

    /// Release the payload cache's memory: drop every cached payload that is durable at the
    /// time of the call. Entries not yet durable stay cached (the cache only ever evicts
    /// durable entries), so call [`Wal::flush_blocking`] first to release everything.
    /// Nothing is lost: reads of evicted entries come from the chunk maps (each record's
    /// CRC checked), and reads do not refill the cache (except reads of compressed entries,
    /// which put the members of the batch they decompressed there); new appends do, up to
    /// its bounds.
    /// Cheap (one pass over the cache) and safe at any time, from any thread.
    pub fn evict_durable_from_cache(&self) {
        // Under the writer lock: every cache mutation is made by one thread at a time.
        let w = self.writer.lock();
        w.shared.cache.evict(w.shared.durable.index(), true);
    }

    /// Write a final state record, sync, and stop the worker, after every pending flush
    /// callback has run. Dropping does the same, ignoring errors.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    /// Stop like a killed process would: queued syncs finish, but no checkpoint is written
    /// and nothing more is synced. The page cache keeps what was written, as after `kill -9`.
    /// For crash tests (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn simulate_crash(self) {
        self.writer.lock().worker.shutdown();
    }

    fn shutdown(&self) -> Result<()> {
        // First, so that close never waits for a long verification.
        self.verifier.stop();
        let mut w = self.writer.lock();
        if w.worker.tx.is_none() {
            return Ok(());
        }
        let r = (move || {
            w.shared.poison.check()?;
            w.request_sync(None)?;
            drop(w);
            self.worker_barrier();
            let mut w = self.writer.lock();
            // A checkpoint whose durable hint covers everything before it: later damage to
            // those bytes can never be mistaken for a torn tail.
            if w.fits_state() {
                w.put_state()?;
            }
            w.request_sync(None)?;
            Ok(())
        })();
        self.worker_barrier();
        // Joined outside the writer mutex: a callback still running may take it.
        let mut worker = self.writer.lock().worker.take();
        worker.shutdown();
        r.and_then(|()| self.reader.shared().poison.check())
    }

    /// Where the background verification of the sealed chunks open did not check stands:
    /// chunks and bytes checked, whether it is done, and the first corruption it found.
    ///
    /// A [`VerifyOnOpen::Lazy`](crate::VerifyOnOpen::Lazy) open replays sealed chunks from their
    /// seal-time index and leaves their records to a background thread (`chunkwal-verify-bg`),
    /// which checks them oldest first, at low priority, and stops when the log closes.
    /// Corruption it finds does not poison the log (reads of the damaged records fail with
    /// [`Error::Corruption`], the rest stays readable); it is logged with `tracing::error!`
    /// and reported here. See `docs/durability.md` §16.
    pub fn verification(&self) -> VerifyStatus {
        self.verifier.status()
    }

    /// Check the CRC of every record of every chunk in the log now (sealed chunks whole,
    /// the newest up to what is written), oldest first, calling `progress` after each chunk.
    /// Appends, reads, purges and flushes go on meanwhile: it takes no lock (chunks created
    /// after the call started are not checked; chunks purged before it reached them are
    /// skipped). Returns the first bad record as [`Error::Corruption`] (chunk, offset,
    /// reason), else what was checked. Finding corruption does not poison the log.
    ///
    /// ```
    /// # use chunkwal::{Config, LogId, Wal};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let wal = Wal::open(Config::new(dir.path()))?;
    /// wal.append([(LogId::new(1, 1), bytes::Bytes::from_static(b"a"))])?;
    /// let report = wal.verify(|p| eprintln!("chunk {}: {}/{}", p.chunk, p.chunks_done, p.chunks_total))?;
    /// assert_eq!(report.chunks, 1);
    /// # Ok::<(), chunkwal::Error>(())
    /// ```
    pub fn verify(&self, progress: impl FnMut(VerifyProgress)) -> Result<VerifyReport> {
        self.reader.verify(progress)
    }

    /// Hand every sealed chunk now in the log to the background verifier, as open does with
    /// the chunks a lazy open did not check (a running verification is stopped first). For
    /// tests of the verifier that must not depend on what open checks (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn verify_in_background(&self) {
        let shared = self.reader.shared();
        let mut sealed: Vec<_> = shared
            .chunks
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        // The newest chunk is the active one.
        sealed.pop();
        self.verifier.restart(shared, sealed);
    }

    /// Where entry `index` lies: its chunk file and the byte range of its record. For
    /// durability oracles in tests (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn locate(&self, index: u64) -> Option<(std::path::PathBuf, u64, u64)> {
        self.reader.locate(index)
    }

    /// The truncation generation and [`Wal::durable_index`], read together (feature
    /// `testing`): an oracle that locates the durable entry in between and reads the same
    /// generation after knows no truncate moved that entry meanwhile.
    #[cfg(feature = "testing")]
    pub fn durable_snapshot(&self) -> (u64, Option<u64>) {
        self.reader.durable_snapshot()
    }

    pub(crate) fn with_writer<T>(&self, f: impl FnOnce(&Writer) -> T) -> T {
        f(&self.writer.lock())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "chunkwal close failed");
        }
    }
}

fn entry_records<'a>(ids: &[LogId], payloads: &'a [Bytes]) -> Vec<Record<'a>> {
    ids.iter()
        .zip(payloads)
        .map(|(id, p)| Record::Entry {
            id: *id,
            payload: p,
        })
        .collect()
}

/// Entries as `Wal::check_entries` takes them: each id with its payload's length.
fn entry_lens<'a>(
    ids: &'a [LogId],
    payloads: &'a [Bytes],
) -> impl ExactSizeIterator<Item = (LogId, usize)> + 'a {
    ids.iter().zip(payloads).map(|(id, p)| (*id, p.len()))
}
