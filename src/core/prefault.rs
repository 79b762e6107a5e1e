//! The prefault thread: it prepares the active chunk's pages ahead of the writer (see
//! `docs/durability.md` §12).

use std::sync::Arc;

use crate::chunk::{Region, WriteBack};
use crate::flush::{DurableState, Poison};

/// How far ahead of the cursor pages are faulted in.
const PREFAULT_AHEAD: usize = 4 << 20;

/// Pages are prepared in steps of this size.
const PREFAULT_STEP: usize = 1 << 20;

/// The writer counts as syncing as it goes while its unsynced bytes stay below this.
const FOLLOW_LAG: usize = 1 << 20;

/// A thread that prepares the active chunk's pages ahead of the writer, so that its copies
/// land on mapped pages instead of taking page faults, and, while the writer syncs as it goes
/// (durable appends), so that each sync writes only the bytes it must:
///
/// - while the writer syncs as it goes, each step first goes through
///   [`Region::write_back_ahead`]: the zeros are written back (converting the unwritten
///   extents, ~250-300 µs per durable 64 x 256 B batch instead of ~170 µs on ext4) into
///   single-page folios (else one byte dirtied in a 2 MiB folio made every msync write
///   2 MiB);
/// - while it streams without syncing (buffered appends) that would only compete with it,
///   so steps are just faulted in, and the kernel's larger folios make that cheaper.
///
/// Steps the writer already passed are skipped. An msync error here poisons the log like any
/// other.
pub(crate) struct Prefaulter {
    tx: Option<crossbeam_channel::Sender<PrefaultRequest>>,
    /// Pages of the active chunk before this offset were requested.
    requested_to: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Prefaulter {
    /// Stop the thread and wait for it: it may hold a chunk's mapping and file.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// "Prepare chunk `seq`'s pages up to `to`."
type PrefaultRequest = (Arc<Region>, u64, usize);

impl Prefaulter {
    /// Start the thread (if it cannot start, prefaulting is simply skipped).
    pub fn start(poison: Arc<Poison>, durable: Arc<DurableState>) -> Prefaulter {
        let (tx, rx) = crossbeam_channel::unbounded::<PrefaultRequest>();
        let thread = std::thread::Builder::new()
            .name("chunkwal-prefault".into())
            .spawn(move || prefault_loop(&rx, &poison, &durable))
            .ok();
        Prefaulter {
            tx: thread.is_some().then_some(tx),
            requested_to: 0,
            thread,
        }
    }

    /// Keep the pages up to `PREFAULT_AHEAD` past `cursor` requested.
    pub fn ahead_of(&mut self, region: &Arc<Region>, seq: u64, cursor: usize) {
        let Some(tx) = &self.tx else { return };
        let want = (cursor + PREFAULT_AHEAD).min(region.len());
        if self.requested_to < cursor + PREFAULT_AHEAD / 2 && self.requested_to < want {
            if tx.send((Arc::clone(region), seq, want)).is_err() {
                self.tx = None;
            }
            self.requested_to = want;
        }
    }

    /// A new chunk became active.
    pub fn reset(&mut self) {
        self.requested_to = 0;
    }
}

/// The prefault thread. A step the writer was too close to write back is faulted in only,
/// and retried by the next request (by then usually passed), so a writer that slows down
/// after a fast burst still gets written-back steps soon.
fn prefault_loop(
    rx: &crossbeam_channel::Receiver<PrefaultRequest>,
    poison: &Poison,
    durable: &DurableState,
) {
    let mut current: Option<Arc<Region>> = None;
    // Steps of `current` before this offset were written back or passed by the writer.
    let mut done_to = 0;
    let mut write_back = true;
    while let Ok((region, seq, to)) = rx.recv() {
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &region)) {
            current = Some(Arc::clone(&region));
            done_to = 0;
        }
        let mut off = done_to.max(region.published());
        while off < to && !poison.is_set() {
            let n = (to - off).min(PREFAULT_STEP);
            let published = region.published();
            if published >= off + n {
                off += n;
                done_to = off;
                continue;
            }
            let following =
                published - (durable.offset_in(seq) as usize).min(published) <= FOLLOW_LAG;
            if write_back && following && published + PREFAULT_STEP <= off {
                match region.write_back_ahead(off, n) {
                    Ok(WriteBack::Done) => done_to = off + n,
                    // A refused hint (old kernel): stop trying.
                    Ok(WriteBack::Refused) => write_back = false,
                    // A stale request for a chunk that is sealed by now.
                    Ok(WriteBack::Sealed) => break,
                    Err(e) => {
                        poison.poison("msync (ahead of the writer)", e.kind());
                        return;
                    }
                }
            }
            // A hint: an old kernel without MADV_POPULATE_WRITE just says no.
            if region.prefault(off, n).is_err() {
                break;
            }
            off += n;
        }
    }
}
