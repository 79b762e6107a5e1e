//! What readers and the writer share, and how a record changes the log state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use parking_lot::RwLock;

use crate::chunk::Chunk;
use crate::error::CorruptionKind;
use crate::flush::{DurableState, Poison};
use crate::format::Record;
use crate::index::{EntryIndex, Loc, PayloadCache};
use crate::types::{LogId, LogState};

/// Read-side counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub reads: AtomicU64,
    pub read_entries: AtomicU64,
    pub appends: AtomicU64,
    pub appended_entries: AtomicU64,
    pub flushes: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// State shared between the writer, readers and the flush worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub index: EntryIndex,
    pub cache: PayloadCache,
    pub chunks: SkipMap<u64, Arc<Chunk>>,
    pub state: RwLock<LogState>,
    /// The non-default groups (see `groups.rs`).
    pub groups: super::groups::GroupMap,
    pub poison: Arc<Poison>,
    pub durable: Arc<DurableState>,
    pub counters: Counters,
    /// File-system work counters (shared with the sync owner's files).
    pub io: Arc<crate::chunk::IoCounters>,
    /// The log's metrics (feature `metrics`; empty without it).
    pub metrics: Arc<crate::observe::Metrics>,
    /// The directory lock (`LOCK`, flocked), held while the `Wal` or any `Reader` lives: no
    /// other opener can cut a torn tail under a live reader's index.
    pub _lock: Arc<std::fs::File>,
}

fn bad(what: &'static str) -> CorruptionKind {
    CorruptionKind::Inconsistent { what }
}

/// The log's last id if everything from `since` on were removed.
pub(crate) fn last_before(state: &LogState, index: &EntryIndex, since: u64) -> Option<LogId> {
    let prev = since.checked_sub(1)?;
    if let Some(loc) = index.get(prev) {
        return Some(LogId::new(loc.term, prev));
    }
    state.purged.filter(|p| p.index == prev)
}

/// Apply one record to `state` and `index`. Used by replay at open and by the writer, so
/// both agree on what every record means. `copy` turns borrowed bytes into owned ones.
pub(crate) fn apply(
    state: &mut LogState,
    index: &EntryIndex,
    rec: &Record<'_>,
    chunk: u64,
    offset: usize,
    copy: &mut dyn FnMut(&[u8]) -> Bytes,
) -> Result<(), CorruptionKind> {
    apply_to(state, Some(index), index, rec, chunk, offset, copy)
}

/// Apply a run of entries `first, first + 1, ...` of `term` at record `offsets` of
/// `chunk` exactly as that many Entry records would (the same contiguity check), with one
/// index lock. Used for footer runs and for consecutive entries in replay and batches.
/// Returns the run's last index (`None` for an empty run).
pub(crate) fn apply_run(
    state: &mut LogState,
    index: &EntryIndex,
    (first, term): (u64, u64),
    chunk: u64,
    offsets: &[u32],
) -> Result<Option<u64>, CorruptionKind> {
    if let Some(last) = state.last {
        if last.index.checked_add(1) != Some(first) {
            return Err(CorruptionKind::NonContiguous {
                expected: last.index.saturating_add(1),
                got: first,
            });
        }
    }
    let Some(n) = (offsets.len() as u64).checked_sub(1) else {
        return Ok(None);
    };
    let last = first.checked_add(n).ok_or(CorruptionKind::NonContiguous {
        expected: first,
        got: u64::MAX,
    })?;
    index.push_run(first, term, chunk, offsets);
    state.last = Some(LogId::new(term, last));
    Ok(Some(last))
}

/// Check that `recs`, applied in order to `state`, would all be accepted, without changing
/// anything. The writer calls it before it writes a record, so nothing it rejects is ever
/// published. Index checks see the index as it is: a write call holds at most one record
/// that changes it before its checks (a truncate or a state image, always first).
pub(crate) fn check_all(
    state: &LogState,
    index: &EntryIndex,
    recs: &[Record<'_>],
) -> Result<(), CorruptionKind> {
    let mut probe = state.clone();
    for rec in recs {
        apply_to(&mut probe, None, index, rec, 0, 0, &mut |_| Bytes::new())?;
    }
    Ok(())
}

/// [`apply`]; `index` is changed only through `change` (`None`: a dry run).
fn apply_to(
    state: &mut LogState,
    change: Option<&EntryIndex>,
    index: &EntryIndex,
    rec: &Record<'_>,
    chunk: u64,
    offset: usize,
    copy: &mut dyn FnMut(&[u8]) -> Bytes,
) -> Result<(), CorruptionKind> {
    match *rec {
        Record::Entry { id, .. } => {
            if let Some(last) = state.last {
                if last.index.checked_add(1) != Some(id.index) {
                    return Err(CorruptionKind::NonContiguous {
                        expected: last.index.saturating_add(1),
                        got: id.index,
                    });
                }
            }
            if let Some(index) = change {
                index.push(
                    id.index,
                    Loc {
                        term: id.term,
                        chunk,
                        offset: offset as u32,
                    },
                );
            }
            state.last = Some(id);
        }
        Record::Batch { head, .. } => {
            // Replay needs only the head: `count` entries of one term, all at this record
            // (reads decompress it; the count is bounded by the record's bytes).
            if let Some(last) = state.last {
                if last.index.checked_add(1) != Some(head.first) {
                    return Err(CorruptionKind::NonContiguous {
                        expected: last.index.saturating_add(1),
                        got: head.first,
                    });
                }
            }
            if let Some(index) = change {
                let loc = Loc {
                    term: head.term,
                    chunk,
                    offset: offset as u32,
                };
                for i in head.first..=head.last() {
                    index.push(i, loc);
                }
            }
            state.last = Some(LogId::new(head.term, head.last()));
        }
        Record::Truncate { since, last } => {
            // The writer only records a truncate that removes something, and stores the
            // last id it leaves. Replay checks both against what it has built so far (the
            // entry before `since` may live in a deleted chunk; then only its index can be
            // checked).
            if state.last.is_none_or(|l| since > l.index) {
                return Err(bad("truncate starts past the last entry"));
            }
            let expect = last_before(state, index, since);
            let agrees = match (last, expect) {
                (l, Some(e)) => l == Some(e),
                (Some(l), None) => Some(l.index) == since.checked_sub(1),
                (None, None) => true,
            };
            if !agrees {
                return Err(bad("truncate record's last id contradicts the entries"));
            }
            if let Some(index) = change {
                index.remove_from(since);
            }
            state.last = last;
        }
        Record::Purge { upto } => {
            if state.purged.is_none_or(|p| p.index < upto.index) {
                if let Some(index) = change {
                    index.remove_upto(upto.index);
                }
                state.purged = Some(upto);
                if state.last.is_none_or(|l| l.index < upto.index) {
                    state.last = Some(upto);
                }
            }
        }
        Record::Commit { id } => state.committed = Some(id),
        Record::Vote { vote } => state.vote = Some(copy(vote)),
        Record::UserData { data } => state.user_data = data.map(&mut *copy),
        Record::State(img) => {
            if let Some(p) = img.purged {
                if img.last.is_none_or(|l| l.index < p.index) {
                    return Err(bad("state image purges past its last entry"));
                }
            }
            if let Some(l) = img.last {
                if index.get(l.index).is_some_and(|loc| loc.term != l.term) {
                    return Err(bad("state image's last id contradicts the entries"));
                }
                if index.last_index().is_some_and(|i| i > l.index) {
                    return Err(bad("state image ends before entries already replayed"));
                }
            }
            // An image is authoritative: entries it does not cover go (a no-op for the image
            // at the start of a chunk; a reset writes one that empties the log).
            if let Some(index) = change {
                match img.last {
                    // Nothing can follow index u64::MAX (saturating would remove that entry).
                    Some(l) => {
                        if let Some(next) = l.index.checked_add(1) {
                            index.remove_from(next);
                        }
                    }
                    None => index.remove_from(0),
                }
                if let Some(p) = img.purged {
                    index.remove_upto(p.index);
                }
            }
            state.vote = img.vote.map(&mut *copy);
            state.last = img.last;
            state.committed = img.committed;
            state.purged = img.purged;
            state.user_data = img.user_data.map(&mut *copy);
        }
        // Applied by `GroupStates::apply` (a RemoveGroup record always has a group).
        Record::Seal | Record::Index { .. } | Record::RemoveGroup => {}
    }
    Ok(())
}
