//! The prefault thread: it prepares the active chunk's pages ahead of the writer (see
//! `docs/durability.md` §12).

use std::sync::Arc;

use crate::chunk::{Ahead, Region};
use crate::flush::{DurableState, Poison};

/// How far ahead of the cursor pages are faulted in.
const PREFAULT_AHEAD: usize = 4 << 20;

/// Pages are prepared in steps of this size.
const PREFAULT_STEP: usize = 1 << 20;

/// The writer counts as syncing as it goes while its unsynced bytes stay below this.
const FOLLOW_LAG: usize = 1 << 20;

/// A thread that faults the active chunk's pages in ahead of the writer, so that its copies
/// land on mapped pages instead of taking page faults (and, in a recycled chunk, reading
/// each page's old contents from disk first):
/// - while the writer syncs as it goes (durable appends), through a `MADV_RANDOM` window,
///   into single-page folios, so that each sync writes only the pages it must;
/// - while it streams without syncing (buffered appends), through the main mapping: the
///   kernel's larger folios make that 15-25% faster, and the few large syncs write them
///   whole anyway.
///
/// Nothing is written back ahead: the first sync through a fresh chunk converts its
/// unwritten extents itself (see `docs/durability.md` §12), and recycled chunks have none.
/// Steps the writer already passed are skipped.
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

/// "Fault chunk `seq`'s pages in up to `to`."
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

/// The prefault thread: each step not yet passed by the writer is faulted in, through a
/// `MADV_RANDOM` window while the writer syncs as it goes (see [`Region::fault_ahead`]), else
/// (or where the kernel refuses the window) through the main mapping.
fn prefault_loop(
    rx: &crossbeam_channel::Receiver<PrefaultRequest>,
    poison: &Poison,
    durable: &DurableState,
) {
    let mut current: Option<Arc<Region>> = None;
    // Steps of `current` before this offset were faulted in or passed by the writer.
    let mut done_to = 0;
    let mut window = true;
    while let Ok((region, seq, to)) = rx.recv() {
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &region)) {
            current = Some(Arc::clone(&region));
            done_to = 0;
        }
        let mut off = done_to.max(region.published());
        while off < to && !poison.is_set() {
            let n = (to - off).min(PREFAULT_STEP);
            let published = region.published();
            if published < off + n {
                let synced = (durable.offset_in(seq) as usize).min(published);
                let follows = published - synced <= FOLLOW_LAG;
                let how = if window && follows {
                    region.fault_ahead(off, n)
                } else {
                    Ahead::Refused
                };
                match how {
                    Ahead::Done => {}
                    // A stale request for a chunk that is sealed by now.
                    Ahead::Sealed => break,
                    // Streaming, or an old kernel (then stop trying the window). Without
                    // MADV_POPULATE_WRITE at all the writer takes its own page faults.
                    Ahead::Refused => {
                        window &= !follows;
                        if region.prefault(off, n).is_err() {
                            break;
                        }
                    }
                }
            }
            off += n;
            done_to = off;
        }
    }
}
