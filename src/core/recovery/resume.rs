//! Resume writing after replay: the newest chunk (or a new first one), its torn tail zeroed,
//! what open must make durable handed to the sync owner.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use crate::chunk::{Chunk, PreparedChunk, RegionWriter};
use crate::config::Config;
use crate::core::writer::ChunkMeta;
use crate::error::{Error, Result};
use crate::flush::{SyncOwner, Target};
use crate::format::{FooterBuilder, FOOTER_VERSION, HEADER_LEN};

/// The newest chunk after replay.
pub(super) struct Tail0 {
    pub chunk: Arc<Chunk>,
    pub w: RegionWriter,
    /// Where writing resumes.
    pub end: usize,
    pub sealed: bool,
    /// A torn tail `[end, cut_to)` to zero once the open succeeded (0: none).
    pub cut_to: usize,
    /// The footer of the records before `end`, for the writer to continue (format v2).
    pub footer: Option<FooterBuilder>,
}

/// Where writing resumes, and what open found, for the open span: `"new"` (no chunk yet),
/// `"clean"`, `"torn tail cut"` or `"adopted"` (a chunk whose install was cut short).
pub(super) fn resume(
    config: &Config,
    owner: &SyncOwner,
    chunks: &SkipMap<u64, Arc<Chunk>>,
    metas: &mut VecDeque<ChunkMeta>,
    tail: Option<Tail0>,
    adopted: &[(u64, PathBuf)],
    last_index: Option<u64>,
) -> Result<(Tail0, &'static str)> {
    let mut recovery = if adopted.is_empty() {
        "clean"
    } else {
        "adopted"
    };
    let mut tail = match tail {
        Some(t) => t,
        None => {
            recovery = "new";
            new_first_chunk(config, owner, chunks, metas)?
        }
    };
    let (end, cut_to) = (tail.end, tail.cut_to);
    if cut_to > end {
        recovery = "torn tail cut";
        let w = &mut tail.w;
        w.write_zeros(cut_to - end)
            .map_err(|e| Error::io("zero torn tail", w.region().path(), e))?;
        w.seek(end);
    }
    track_unsynced(owner, chunks, adopted, &tail.chunk);
    // Data read back may still sit only in the page cache (after a process kill): make it
    // durable before anything new can claim to follow it. As a rotation's install would
    // have, the chunk before an adopted one is synced whole before the adopted one is
    // installed.
    let target = Target {
        seq: tail.chunk.seq,
        off: end,
        last_index,
        gen: 0,
    };
    // Past the replayed end the chunk holds zeros (a cut tail was zeroed above): synced as
    // they are, so no stale record can reappear behind new ones after a power loss. A
    // failure is returned as the `Poisoned` error it is (with its op, path and source); no
    // log was opened, so nothing stays poisoned.
    owner.sync_claiming(target, Some(cut_to.max(end)))?;
    // The scan faulted the newest chunk's pages in (up to where the file may hold data):
    // drop them from this process too. Readers fault back what they read; the prefault
    // thread maps the pages ahead of the cursor once appends start.
    if let Err(err) = tail.w.region().release_pages() {
        tracing::debug!(seq = tail.chunk.seq, error = %err, "madvise(DONTNEED) failed");
    }
    tail.w.seek(end);
    Ok((tail, recovery))
}

/// Tell the sync owner what open must make durable: the newest chunk (whose bytes may sit
/// only in the page cache), and, before an adopted chunk, the chunk it follows (whole) and
/// the adopted chunk's install.
fn track_unsynced(
    owner: &SyncOwner,
    chunks: &SkipMap<u64, Arc<Chunk>>,
    adopted: &[(u64, PathBuf)],
    active: &Arc<Chunk>,
) {
    if let Some(&(first, _)) = adopted.first() {
        if let Some(prev) = first.checked_sub(1).and_then(|p| chunks.get(&p)) {
            let r = &prev.value().region;
            owner.track(*prev.key(), Arc::clone(r), 0, Some(r.len()), false);
        }
    }
    for (seq, _) in adopted.iter().filter(|(s, _)| *s != active.seq) {
        if let Some(c) = chunks.get(seq) {
            let r = &c.value().region;
            owner.track(*seq, Arc::clone(r), 0, Some(r.len()), true);
        }
    }
    let install = adopted.iter().any(|(s, _)| *s == active.seq);
    owner.track(active.seq, Arc::clone(&active.region), 0, None, install);
}

/// No chunk is left: create the first one (seq 0, or one past the last, now deleted, one).
fn new_first_chunk(
    config: &Config,
    owner: &SyncOwner,
    chunks: &SkipMap<u64, Arc<Chunk>>,
    metas: &mut VecDeque<ChunkMeta>,
) -> Result<Tail0> {
    let seq = metas.back().map_or(0, |m: &ChunkMeta| m.seq + 1);
    let files = owner.files();
    let PreparedChunk { header, mut w, .. } = files.create(seq, config.chunk_size)?;
    files.install(seq)?;
    w.seek(HEADER_LEN);
    w.publish();
    let chunk = Arc::new(Chunk {
        seq,
        header,
        region: Arc::clone(w.region()),
    });
    chunks.insert(seq, Arc::clone(&chunk));
    metas.push_back(ChunkMeta {
        seq,
        max_index: None,
    });
    Ok(Tail0 {
        chunk,
        w,
        end: HEADER_LEN,
        sealed: false,
        cut_to: 0,
        footer: (header.version >= FOOTER_VERSION).then(FooterBuilder::new),
    })
}
