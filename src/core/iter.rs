//! `Entries`: a lazy iterator over a range of the log, made by [`Reader::iter`] and
//! [`Wal::iter`](super::Wal::iter). Holds no lock.

use std::collections::VecDeque;
use std::iter::FusedIterator;

use bytes::Bytes;

use super::range::out_of_range;
use super::read::{Cursor, Reader};
use super::shared::Counters;
use crate::error::Result;
use crate::index::Loc;
use crate::types::LogId;

/// Index locations looked up at a time.
const BATCH: u64 = 256;

/// A lazy iterator over the entries of a range, in index order, each `Ok((id, payload))`
/// served like [`Reader::read`] serves it (cache, or the map with a CRC check).
///
/// It reads entries only as it is advanced, looking locations up a batch at a time, and
/// holds **no lock**: the writer appends, truncates and purges while it lives. It holds an
/// `Arc` of the log's shared state, at most one chunk's mapping (the last it read from) and
/// at most one cached batch; a purged chunk whose mapping it holds is deleted or recycled
/// only once it lets go, as for any payload `Bytes` a caller keeps.
///
/// **When the log changes under it.** The range is fixed when the iterator is made (an
/// unbounded end stands for the last entry held then; entries appended later are not
/// visited). Each item is the entry the log holds at that index when the item is produced:
/// after any truncate, purge or reset, the iterator looks its next locations up again. So
/// - entries that a truncate removed and a later write put back are returned as they are
///   now (a prefix of the old log followed by the new entries: still a valid log);
/// - if the next index is no longer held (purged, or truncated away), the iterator yields
///   one `Err(Error::OutOfRange)` (with the remaining span and what the log holds now) and
///   then ends. It never skips an entry silently.
///
/// An error reading a payload (corruption) is yielded once, and the iterator then ends.
#[derive(Debug)]
pub struct Entries {
    reader: Reader,
    /// The next index to yield and the last one of the range (inclusive); `None` once done.
    span: Option<(u64, u64)>,
    /// Locations looked up ahead, from the next index on, consecutive.
    ahead: VecDeque<(u64, Loc)>,
    /// `EntryIndex::removals` when `ahead` was filled.
    seen: u64,
    cursor: Cursor,
    yielded: u64,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").finish_non_exhaustive()
    }
}

impl Entries {
    pub(super) fn new(reader: Reader, span: Option<(u64, u64)>) -> Entries {
        Entries {
            reader,
            span,
            ahead: VecDeque::new(),
            seen: 0,
            cursor: Cursor::default(),
            yielded: 0,
        }
    }

    /// The span still to visit, inclusive: `None` once the iterator is done.
    pub fn remaining(&self) -> Option<(u64, u64)> {
        self.span
    }

    /// Look up to `BATCH` locations from `next` on; stop at the first gap.
    fn fill(&mut self, next: u64, through: u64) {
        let index = &self.reader.index();
        self.ahead.clear();
        self.seen = index.removals();
        let to = through.min(next.saturating_add(BATCH - 1));
        let mut expect = Some(next);
        let ahead = &mut self.ahead;
        let _ = index.visit(next, to, |i, loc| {
            if expect != Some(i) {
                return Err(());
            }
            ahead.push_back((i, loc));
            expect = i.checked_add(1);
            Ok(())
        });
    }

    /// End the iteration with an `OutOfRange` for `[next, through]`.
    fn fail(&mut self, next: u64, through: u64) -> Option<Result<(LogId, Bytes)>> {
        self.span = None;
        self.ahead.clear();
        Some(Err(out_of_range(next, through, self.reader.held())))
    }
}

impl Iterator for Entries {
    type Item = Result<(LogId, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (next, through) = self.span?;
        // A removal since the look-up may have made the locations ahead stale.
        if self.ahead.is_empty() || self.reader.index().removals() != self.seen {
            self.fill(next, through);
        }
        let Some(&(i, loc)) = self.ahead.front().filter(|(i, _)| *i == next) else {
            return self.fail(next, through);
        };
        match self.reader.payload(i, loc, &mut self.cursor) {
            Ok(Some(p)) => {
                self.ahead.pop_front();
                self.yielded += 1;
                self.span = i
                    .checked_add(1)
                    .filter(|n| *n <= through)
                    .map(|n| (n, through));
                Some(Ok((LogId::new(loc.term, i), p)))
            }
            // Its chunk is gone: purged since the look-up.
            Ok(None) => self.fail(next, through),
            Err(e) => {
                self.span = None;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.span {
            // At most the rest of the range, and the error item if entries vanish.
            Some((n, t)) => (
                0,
                usize::try_from(t - n).ok().and_then(|k| k.checked_add(1)),
            ),
            None => (0, Some(0)),
        }
    }
}

impl FusedIterator for Entries {}

impl Drop for Entries {
    fn drop(&mut self) {
        Counters::bump(&self.reader.shared().counters.read_entries, self.yielded);
    }
}
