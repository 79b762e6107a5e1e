//! The prefault thread: it prepares the active chunk's pages ahead of the writer (see
//! `docs/durability.md` §12).

use std::sync::Arc;

use crate::chunk::{Ahead, Region};
use crate::flush::Poison;

/// How far ahead of the cursor pages are read ahead.
const PREFAULT_AHEAD: usize = 4 << 20;

/// Pages are prepared in steps of this size.
const PREFAULT_STEP: usize = 1 << 20;

/// A thread that brings the active chunk's pages into the page cache ahead of the writer
/// (`POSIX_FADV_WILLNEED`), so that its `pwrite`s neither allocate them nor, in a recycled
/// chunk, read a page's old contents from disk first (a write that does not cover a whole
/// page must). Nothing is written ahead: the first sync through a fresh chunk converts its
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

/// "Read the region's pages ahead up to `to`."
type PrefaultRequest = (Arc<Region>, usize);

impl Prefaulter {
    /// Start the thread (if it cannot start, prefaulting is simply skipped).
    pub fn start(poison: Arc<Poison>) -> Prefaulter {
        let (tx, rx) = crossbeam_channel::unbounded::<PrefaultRequest>();
        let thread = std::thread::Builder::new()
            .name("chunkwal-prefault".into())
            .spawn(move || prefault_loop(&rx, &poison))
            .ok();
        Prefaulter {
            tx: thread.is_some().then_some(tx),
            requested_to: 0,
            thread,
        }
    }

    /// Keep the pages up to `PREFAULT_AHEAD` past `cursor` requested.
    pub fn ahead_of(&mut self, region: &Arc<Region>, cursor: usize) {
        let Some(tx) = &self.tx else { return };
        let want = (cursor + PREFAULT_AHEAD).min(region.len());
        if self.requested_to < cursor + PREFAULT_AHEAD / 2 && self.requested_to < want {
            if tx.send((Arc::clone(region), want)).is_err() {
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

/// The prefault thread: each step not yet passed by the writer is read ahead.
fn prefault_loop(rx: &crossbeam_channel::Receiver<PrefaultRequest>, poison: &Poison) {
    let mut current: Option<Arc<Region>> = None;
    // Steps of `current` before this offset were read ahead or passed by the writer.
    let mut done_to = 0;
    while let Ok((region, to)) = rx.recv() {
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &region)) {
            current = Some(Arc::clone(&region));
            done_to = 0;
        }
        let mut off = done_to.max(region.published());
        while off < to && !poison.is_set() {
            let n = (to - off).min(PREFAULT_STEP);
            if region.published() < off + n {
                match region.read_ahead(off, n) {
                    Ahead::Done => {}
                    // A stale request for a chunk that is sealed by now, or a refused hint
                    // (the writer then allocates and reads its pages itself).
                    Ahead::Sealed | Ahead::Refused => break,
                }
            }
            off += n;
            done_to = off;
        }
    }
}
