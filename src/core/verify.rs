//! Verifying records after open: the background verifier of the sealed chunks open did not
//! check, and the foreground full check behind `Wal::verify` and `Reader::verify`.
//!
//! Both CRC-check every record of a chunk with the chunk scanner (as a full open does) and
//! never take the writer lock: chunks come from the read path's skip list, each held through
//! its `Arc` while it is scanned, so a chunk purged meanwhile stays mapped (and sound to
//! read) until the scan lets it go. Corruption found by either does not poison the log:
//! the rest of the log can still be read around the damaged records, whose reads fail with
//! the same `Corruption` error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::shared::Shared;
use crate::chunk::{scan_chunk, Chunk, Tail};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{FooterBuilder, Record, FOOTER_VERSION};

/// How many records a scan checks between two looks at its stop flag.
const STOP_CHECK_EVERY: u64 = 1024;

/// Where the background verification of sealed chunks stands
/// ([`crate::Wal::verification`]).
///
/// A [`VerifyOnOpen::Lazy`](crate::VerifyOnOpen::Lazy) open that replays a sealed chunk from its seal-time
/// index, without checking its records, hands that chunk to a background thread, which
/// CRC-checks every record of it, oldest chunk first. A log whose open checked everything
/// has nothing to verify: `chunks_total` is 0 and `done` is true from the start.
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifyStatus {
    /// Chunks handed to the background verifier at open.
    pub chunks_total: usize,
    /// Chunks whose every record was checked (whether or not one was bad).
    pub chunks_checked: usize,
    /// Chunks purged before the verifier reached them (no longer part of the log).
    pub chunks_skipped: usize,
    /// Chunks in which a bad record was found.
    pub chunks_corrupt: usize,
    /// Bytes of the checked chunks covered by records (chunk headers included).
    pub bytes_checked: u64,
    /// Every chunk was checked or skipped. Stays false while the verifier runs, after it
    /// was stopped by close, and if its thread could not be started (logged; run
    /// [`crate::Wal::verify`] then).
    pub done: bool,
    /// The first bad record found, as the [`Error::Corruption`] a read of it returns
    /// (chunk, offset, reason). Also logged with `tracing::error!`. It does not poison the
    /// log.
    pub corruption: Option<Error>,
}

/// Progress of a foreground [`crate::Wal::verify`], reported after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyProgress {
    /// The chunk just checked.
    pub chunk: u64,
    /// Chunks checked so far, this one included.
    pub chunks_done: usize,
    /// Chunks in the log when the check started (chunks purged meanwhile are not checked,
    /// so `chunks_done` may end below it).
    pub chunks_total: usize,
    /// Records checked so far.
    pub records: u64,
    /// Bytes checked so far (records and chunk headers).
    pub bytes: u64,
}

/// What a foreground [`crate::Wal::verify`] checked: every record was intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Chunks checked.
    pub chunks: usize,
    /// Chunks that were in the log when the check started but were purged before it reached
    /// them.
    pub skipped: usize,
    /// Records checked (entries, state records, seals, ...).
    pub records: u64,
    /// Bytes checked (records and chunk headers).
    pub bytes: u64,
    /// How long the check took.
    pub duration: Duration,
}

/// What checking one chunk found.
enum Checked {
    /// Every record is intact.
    Intact { records: u64, bytes: u64 },
    /// The caller asked to stop before the chunk was done.
    Stopped,
}

/// CRC-check every record of `c` (with its group structure, as a full open does). `newest`:
/// the newest chunk, which may still take appends: only its published prefix is checked,
/// and it may end without a seal, or in a group whose rest is not written yet. `stop` is
/// asked every [`STOP_CHECK_EVERY`] records.
fn check_chunk(c: &Chunk, newest: bool, stop: &dyn Fn() -> bool) -> Result<Checked> {
    let bytes = c.region.bytes();
    let mut records = 0u64;
    let mut stopped = false;
    // The footer a v2 chunk's Index record must hold: what its records make.
    let mut footer = (c.header.version >= FOOTER_VERSION).then(FooterBuilder::new);
    let mut index: Option<(usize, &[u8])> = None;
    let (tag, version) = (c.header.epoch_tag(), c.header.version);
    let verdict = scan_chunk(bytes, c.seq, tag, version, newest, &mut |s| {
        records += 1;
        match (&mut footer, s.record) {
            (Some(_), Record::Index { body }) => index = Some((s.offset, body)),
            (Some(f), rec) => f.push_in(s.group, &rec, s.offset as u32),
            (None, _) => {}
        }
        if records % STOP_CHECK_EVERY == 0 && stop() {
            stopped = true;
            return Err(Error::WorkerStopped);
        }
        Ok(())
    });
    let verdict = match verdict {
        Err(_) if stopped => return Ok(Checked::Stopped),
        v => v?,
    };
    let end = match verdict {
        Tail::Sealed { end } | Tail::Clean { end } => end,
        // The published bytes end inside a group the writer is still writing: its records
        // were checked (the scan holds a group back only after its CRCs matched).
        Tail::Torn { at, .. } if newest && at >= bytes.len() => bytes.len(),
        // Anything else inside published bytes is damage: they were written whole (or
        // checked at open), and never change.
        Tail::Torn { at, reason, .. } => return Err(Error::corrupt(c.seq, at as u64, reason)),
    };
    // A lazy open replayed the chunk from its footer: the footer must say what the records
    // say (its CRC proves only that it is what was written).
    if let (Some(f), Some((at, body))) = (footer, index) {
        let mut want = vec![0u8; f.body_len()];
        f.encode_body(&mut want);
        if want != body {
            let reason = CorruptionKind::BadBody {
                kind: "index",
                what: "footer disagrees with the chunk's records",
            };
            return Err(Error::corrupt(c.seq, at as u64, reason));
        }
    }
    Ok(Checked::Intact {
        records,
        bytes: end as u64,
    })
}

/// Whether `c` is still part of the log (not purged).
fn live(shared: &Shared, c: &Arc<Chunk>) -> bool {
    shared
        .chunks
        .get(&c.seq)
        .is_some_and(|e| Arc::ptr_eq(e.value(), c))
}

/// A sealed chunk is rarely read: once checked, drop its pages from this process again.
fn release(c: &Chunk) {
    if let Err(err) = c.region.release_pages() {
        tracing::debug!(seq = c.seq, error = %err, "madvise(DONTNEED) failed");
    }
}

/// The foreground full check: every record of every chunk in the log when it starts,
/// oldest first; the first bad record is returned as its `Corruption` error. Takes no
/// lock: it walks the skip list one chunk at a time, so appends, purges and rotations go
/// on meanwhile (chunks created after the start are not checked).
pub(crate) fn verify_all(
    shared: &Shared,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<VerifyReport> {
    let started = Instant::now();
    let total = shared.chunks.len();
    let Some(last) = shared.chunks.back().map(|e| *e.key()) else {
        return Ok(VerifyReport {
            chunks: 0,
            skipped: 0,
            records: 0,
            bytes: 0,
            duration: started.elapsed(),
        });
    };
    let mut p = VerifyProgress {
        chunk: 0,
        chunks_done: 0,
        chunks_total: total,
        records: 0,
        bytes: 0,
    };
    let mut next = 0u64;
    while let Some(c) = shared
        .chunks
        .lower_bound(std::ops::Bound::Included(&next))
        .filter(|e| *e.key() <= last)
        .map(|e| Arc::clone(e.value()))
    {
        let newest = c.seq == last;
        let (records, bytes) = match check_chunk(&c, newest, &|| false)? {
            Checked::Intact { records, bytes } => (records, bytes),
            Checked::Stopped => break,
        };
        if !newest {
            release(&c);
        }
        p.chunk = c.seq;
        p.chunks_done += 1;
        p.records += records;
        p.bytes += bytes;
        progress(p);
        match c.seq.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok(VerifyReport {
        chunks: p.chunks_done,
        skipped: total.saturating_sub(p.chunks_done),
        records: p.records,
        bytes: p.bytes,
        duration: started.elapsed(),
    })
}

/// What the background thread has done, shared with the status call.
#[derive(Debug, Default)]
struct Progress {
    stop: AtomicBool,
    total: usize,
    checked: AtomicUsize,
    skipped: AtomicUsize,
    corrupt: AtomicUsize,
    bytes: AtomicU64,
    done: AtomicBool,
    first: Mutex<Option<(u64, u64, CorruptionKind)>>,
}

impl Progress {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One run of the background verifier.
#[derive(Debug)]
struct Run {
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
}

/// The background verifier (thread `chunkwal-verify-bg`) of the chunks open did not check.
#[derive(Debug)]
pub(crate) struct Background {
    run: Mutex<Run>,
}

impl Background {
    /// Verify `chunks` (sealed chunks of the log in `shared`) in the background; with none,
    /// nothing runs and the status is done at once.
    pub fn start(shared: &Arc<Shared>, chunks: Vec<Arc<Chunk>>) -> Background {
        Background {
            run: Mutex::new(Run::start(shared, chunks)),
        }
    }

    /// Stop a running verification, then verify `chunks` instead.
    #[cfg(feature = "testing")]
    pub fn restart(&self, shared: &Arc<Shared>, chunks: Vec<Arc<Chunk>>) {
        self.stop();
        *self.run.lock() = Run::start(shared, chunks);
    }

    /// Where it stands.
    pub fn status(&self) -> VerifyStatus {
        let p = Arc::clone(&self.run.lock().progress);
        let corruption = p
            .first
            .lock()
            .clone()
            .map(|(chunk, offset, reason)| Error::corrupt(chunk, offset, reason));
        VerifyStatus {
            chunks_total: p.total,
            chunks_checked: p.checked.load(Ordering::Acquire),
            chunks_skipped: p.skipped.load(Ordering::Acquire),
            chunks_corrupt: p.corrupt.load(Ordering::Acquire),
            bytes_checked: p.bytes.load(Ordering::Acquire),
            done: p.done.load(Ordering::Acquire),
            corruption,
        }
    }

    /// Stop the thread (it stops within [`STOP_CHECK_EVERY`] records) and wait for it.
    /// Idempotent.
    pub fn stop(&self) {
        let thread = {
            let mut run = self.run.lock();
            run.progress.stop.store(true, Ordering::Relaxed);
            run.thread.take()
        };
        if let Some(t) = thread {
            // A panic in the verifier took nothing else down; there is nothing to report.
            let _ = t.join();
        }
    }
}

impl Run {
    fn start(shared: &Arc<Shared>, mut chunks: Vec<Arc<Chunk>>) -> Run {
        chunks.sort_by_key(|c| c.seq);
        chunks.dedup_by_key(|c| c.seq);
        let progress = Arc::new(Progress {
            total: chunks.len(),
            done: AtomicBool::new(chunks.is_empty()),
            ..Progress::default()
        });
        if chunks.is_empty() {
            return Run {
                progress,
                thread: None,
            };
        }
        // Held weakly: a chunk purged before its turn is unmapped (and its file recycled) as
        // if the verifier did not exist.
        let queue: VecDeque<Weak<Chunk>> = chunks.iter().map(Arc::downgrade).collect();
        drop(chunks);
        let (p, weak) = (Arc::clone(&progress), Arc::downgrade(shared));
        let spawned = std::thread::Builder::new()
            .name("chunkwal-verify-bg".into())
            .spawn(move || run(&p, &weak, queue));
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot start the background verifier: sealed chunks stay unchecked until \
                     Wal::verify runs"
                );
                None
            }
        };
        Run { progress, thread }
    }
}

/// The background thread: check each chunk, oldest first, yielding between chunks.
fn run(p: &Progress, shared: &Weak<Shared>, mut chunks: VecDeque<Weak<Chunk>>) {
    let _span = tracing::debug_span!("chunkwal_verify_bg", chunks = chunks.len()).entered();
    while let Some(c) = chunks.pop_front() {
        if p.stopped() {
            return;
        }
        // The log is gone (every handle dropped): nothing left to verify for.
        let Some(s) = shared.upgrade() else { return };
        // Held from here until it is checked: a purge meanwhile leaves it mapped.
        let c = c.upgrade().filter(|c| live(&s, c));
        drop(s);
        let Some(c) = c else {
            p.skipped.fetch_add(1, Ordering::AcqRel);
            continue;
        };
        match check_chunk(&c, false, &|| p.stopped()) {
            Ok(Checked::Stopped) => return,
            Ok(Checked::Intact { bytes, .. }) => {
                p.bytes.fetch_add(bytes, Ordering::AcqRel);
            }
            Err(e) => {
                tracing::error!(seq = c.seq, error = %e, "background verification found corruption");
                p.corrupt.fetch_add(1, Ordering::AcqRel);
                if let Error::Corruption {
                    chunk,
                    offset,
                    reason,
                } = e
                {
                    p.first.lock().get_or_insert((chunk, offset, reason));
                }
            }
        }
        release(&c);
        p.checked.fetch_add(1, Ordering::AcqRel);
        drop(c);
        std::thread::yield_now();
    }
    p.done.store(true, Ordering::Release);
    let corrupt = p.corrupt.load(Ordering::Acquire);
    tracing::info!(
        checked = p.checked.load(Ordering::Acquire),
        skipped = p.skipped.load(Ordering::Acquire),
        corrupt,
        "background verification done"
    );
}
