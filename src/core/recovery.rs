//! Open: lock the directory, replay every chunk, repair a torn tail, start the worker.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use parking_lot::RwLock;

use super::shared::{apply, Counters, Shared};
use super::writer::{ChunkMeta, Writer};
use crate::chunk::{
    chunk_path, free_path, list_chunks, open_existing, open_existing_from, scan_chunk,
    scan_chunk_checked, sync_dir, tmp_path, Chunk, Opened, Region, RegionWriter, Tail,
};
use crate::config::{Config, RecoveryMode};
use crate::error::{CorruptionKind, Error, Result};
use crate::flush::{spawn, DurableState, Poison, SyncOwner, Target};
use crate::format::HEADER_LEN;
use crate::index::{EntryIndex, PayloadCache};
use crate::observe::Metrics;
use crate::types::LogState;

/// Everything open produces.
pub(crate) struct Opened2 {
    pub writer: Writer,
    /// The directory lock; every mapping of the log holds it too.
    pub lock: Arc<std::fs::File>,
    /// What recovery found, for the open span: `"new"` (no chunk yet), `"clean"`,
    /// `"torn tail cut"` or `"adopted"` (a chunk whose install was cut short).
    pub recovery: &'static str,
}

fn prepare_dir(config: &Config) -> Result<()> {
    let dir = &config.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory { path: dir.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !config.create_if_missing {
                return Err(Error::NoSuchDirectory { path: dir.clone() });
            }
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(Error::io("stat directory", dir, e)),
    }
}

/// A newest chunk file that is empty or all zero never received a header, so it holds no
/// records: under the tolerant mode it is left out, and removed once the open succeeded
/// (it cannot hold acknowledged data). Returns its path then.
fn drop_blank_newest(config: &Config, seqs: &mut Vec<u64>) -> Result<Option<PathBuf>> {
    let Some(&seq) = seqs.last() else {
        return Ok(None);
    };
    let path = chunk_path(&config.dir, seq);
    if !crate::chunk::is_blank(&path)? {
        return Ok(None);
    }
    if config.recovery_mode == RecoveryMode::Strict {
        return Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 }));
    }
    seqs.pop();
    Ok(Some(path))
}

/// A rotation installs the next chunk (renames its prepared file) on the flush worker, after
/// the old chunk's sync. If the process died in between, the next chunk is still a
/// temporary file, and it may hold appends that survived in the page cache. It is adopted
/// when the chunk before it is sealed and whole (checked by the caller: nothing can be missing
/// before it) and it holds at least one complete group; otherwise it is a leftover like an
/// unused spare. None of its entries were ever reported durable: its install had not happened.
fn adoptable(dir: &Path, seq: u64, leftovers: &[PathBuf]) -> Option<PathBuf> {
    let tmp = leftovers.iter().find(|p| **p == tmp_path(dir, seq))?;
    let Ok(Opened::ReadOnly(c)) = open_existing(tmp, seq, false) else {
        return None;
    };
    let mut any = false;
    // Stop at the first complete group: that is all this needs to know.
    let _ = scan_chunk(
        c.region.bytes(),
        seq,
        c.header.epoch_tag(),
        true,
        &mut |_| {
            any = true;
            Err(Error::WorkerStopped)
        },
    );
    any.then(|| tmp.clone())
}

/// After replay the state and the entries must agree: the entries run from just past the
/// purge point to the last id; with no entries, the last id is the purge point.
fn check_replayed(state: &LogState, index: &EntryIndex) -> Result<(), CorruptionKind> {
    let bad = |what| Err(CorruptionKind::Inconsistent { what });
    match (index.first(), index.last_index()) {
        (Some(first), Some(last)) => {
            if state.last.map(|l| l.index) != Some(last) {
                return bad("the last id does not name the last entry");
            }
            if state
                .purged
                .is_some_and(|p| p.index.checked_add(1) != Some(first))
            {
                return bad("entries do not start right after the purge point");
            }
        }
        _ => {
            if state.last != state.purged {
                return bad("no entries, but the last id is not the purge point");
            }
        }
    }
    Ok(())
}

/// Checks the CRCs of sealed chunks on a second thread while open replays them.
enum Verifier {
    Running(std::thread::JoinHandle<Result<()>>),
    Done(Result<()>),
}

impl Verifier {
    fn start(chunks: Vec<Arc<Chunk>>) -> Verifier {
        if chunks.is_empty() {
            return Verifier::Done(Ok(()));
        }
        let check = move || -> Result<()> {
            for c in &chunks {
                scan_chunk(
                    c.region.bytes(),
                    c.seq,
                    c.header.epoch_tag(),
                    false,
                    &mut |_| Ok(()),
                )?;
            }
            Ok(())
        };
        match std::thread::Builder::new()
            .name("chunkwal-verify".into())
            .spawn(check)
        {
            Ok(h) => Verifier::Running(h),
            // No thread: nothing was verified yet, so report why open cannot go on.
            Err(e) => Verifier::Done(Err(Error::io("spawn checksum verifier", "", e))),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Verifier::Done(r) => r,
            Verifier::Running(h) => h.join().unwrap_or_else(|_| {
                Err(Error::Poisoned {
                    op: "checksum verifier (panicked)",
                    path: None,
                    source: Arc::new(crate::error::Panicked::io()),
                })
            }),
        }
    }
}

/// The newest chunk after replay.
struct Tail0 {
    chunk: Arc<Chunk>,
    w: RegionWriter,
    /// Where writing resumes.
    end: usize,
    sealed: bool,
    /// A torn tail `[end, cut_to)` to zero once the open succeeded (0: none).
    cut_to: usize,
}

/// Open (or create) the log described by `config`.
pub(crate) fn open(config: Config) -> Result<Opened2> {
    config.validate()?;
    prepare_dir(&config)?;
    let lock = Arc::new(crate::chunk::lock_dir(&config.dir)?);
    let dir = config.dir.clone();
    let listing = list_chunks(&dir)?;
    let (mut seqs, mut leftovers) = (listing.seqs, listing.tmps);
    // Spares beyond what the pool keeps are removed with the leftovers.
    let keep = listing.free.len().min(config.recycle_chunks);
    let (spares, extra) = listing.free.split_at(keep);
    leftovers.extend(extra.iter().map(|&s| free_path(&dir, s)));
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::corrupt(
                w[0] + 1,
                0,
                CorruptionKind::MissingChunk { missing: w[0] + 1 },
            ));
        }
    }
    if let Some(blank) = drop_blank_newest(&config, &mut seqs)? {
        leftovers.push(blank);
    }
    let newest = seqs.last().copied();
    let index = EntryIndex::default();
    let chunks = SkipMap::new();
    let mut state = LogState::default();
    let mut metas = VecDeque::new();
    let mut copy = |b: &[u8]| Bytes::copy_from_slice(b);

    // Every chunk but the newest is sealed. Open them all now, and verify their checksums on
    // a second thread while this one replays them without checking: open succeeds only if
    // both do, and a checksum failure is the error reported.
    let mut sealed_chunks = VecDeque::new();
    for &seq in seqs.iter().take(seqs.len().saturating_sub(1)) {
        match open_existing(&chunk_path(&dir, seq), seq, false)? {
            Opened::ReadOnly(c) => sealed_chunks.push_back(c),
            _ => return Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 })),
        }
    }
    let verifier = Verifier::start(sealed_chunks.iter().cloned().collect());

    // A prepared chunk being adopted (see `adoptable`): replayed from its temporary file,
    // renamed only once the open succeeded (a failed strict open changes no file).
    let mut adopted: Vec<(u64, PathBuf)> = Vec::new();
    // The newest chunk, mapped writable, where writing resumes, whether it is sealed, and
    // where a torn tail cut off ends (zeroed only once the open succeeded).
    let mut tail: Option<Tail0> = None;
    let replayed = (|| -> Result<()> {
        while let Some(&seq) = seqs.first() {
            let is_last = seqs.len() == 1;
            seqs.remove(0);
            let path = chunk_path(&dir, seq);
            let from = adopted.iter().find(|(s, _)| *s == seq).map(|(_, tmp)| tmp);
            let opened = match (sealed_chunks.pop_front(), from) {
                (Some(c), _) if !is_last => Opened::ReadOnly(c),
                (_, Some(tmp)) => open_existing_from(tmp, &path, seq, true)?,
                _ => open_existing(&path, seq, is_last)?,
            };
            let (chunk, writer) = match opened {
                // A blank newest chunk was dropped (or refused) by `drop_blank_newest`.
                Opened::Blank => {
                    return Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 }));
                }
                Opened::ReadOnly(c) => (c, None),
                Opened::Writable(c, w, data_end) => (c, Some((w, data_end))),
            };
            let tag = chunk.header.epoch_tag();
            let mut meta = ChunkMeta {
                seq,
                max_index: None,
            };
            let verdict = {
                let bytes: &[u8] = match &writer {
                    // Past `data_end` the file holds no data: it reads as zeroes.
                    Some((w, data_end)) => {
                        let all = w.full_view();
                        all.get(..*data_end).unwrap_or(all)
                    }
                    None => chunk.region.bytes(),
                };
                // The newest chunk is checked here; sealed ones by the verifier.
                scan_chunk_checked(bytes, seq, tag, is_last, writer.is_some(), &mut |s| {
                    if let Some(i) = s.record.last_entry_index() {
                        meta.max_index = Some(meta.max_index.map_or(i, |m| m.max(i)));
                    }
                    apply(&mut state, &index, &s.record, seq, s.offset, &mut copy)
                        .map_err(|k| Error::corrupt(seq, s.offset as u64, k))
                })?
            };
            chunks.insert(seq, Arc::clone(&chunk));
            metas.push_back(meta);
            if let Some((mut w, _)) = writer {
                let mut cut_to = 0;
                let (end, sealed) = match verdict {
                    Tail::Sealed { end } => (end, true),
                    Tail::Clean { end } => (end, false),
                    Tail::Torn {
                        end,
                        at,
                        reason,
                        garbage_end,
                    } => {
                        if config.recovery_mode == RecoveryMode::Strict {
                            tracing::error!(seq, at, %reason, "torn tail under strict recovery");
                            return Err(Error::corrupt(seq, at as u64, CorruptionKind::TornTail));
                        }
                        tracing::warn!(seq, at, %reason, cut = garbage_end - end, "cutting torn tail");
                        cut_to = garbage_end;
                        (end, false)
                    }
                };
                w.seek(end);
                w.publish();
                tail = Some(Tail0 {
                    chunk,
                    w,
                    end,
                    sealed,
                    cut_to,
                });
                if sealed && seqs.is_empty() {
                    // `tail` is this chunk: an adopted successor replaces it below.
                    if let Some(tmp) = adoptable(&dir, seq + 1, &leftovers) {
                        tracing::warn!(
                            seq = seq + 1,
                            "adopting a chunk whose install was cut short"
                        );
                        leftovers.retain(|p| *p != tmp);
                        adopted.push((seq + 1, tmp));
                        seqs.push(seq + 1);
                    }
                }
            }
        }
        Ok(())
    })();
    // A checksum failure is the real cause of anything replay tripped over, unless the
    // newest chunk is garbage (see `blame_newest`).
    let blame = |e| super::blame::blame_newest(e, &dir, newest);
    verifier.finish().map_err(blame)?;
    let replayed = replayed.map_err(blame);
    replayed?;
    release_sealed(&chunks, tail.as_ref().map(|t| t.chunk.seq));
    if let Some(m) = metas.back() {
        check_replayed(&state, &index).map_err(|k| Error::corrupt(m.seq, 0, k))?;
    }
    // Only now that the log replayed and every check passed does open change files: a
    // failed open leaves every file as it was.
    let metrics = Arc::new(Metrics::register());
    let poison = Arc::new(Poison::with_metrics(Arc::clone(&metrics)));
    let durable = Arc::new(DurableState::new(0, None));
    let files = config.files().with_pool(config.recycle_chunks, spares);
    let owner = Arc::new(
        SyncOwner::new(
            files.with_metrics(Arc::clone(&metrics)),
            Arc::clone(&durable),
            Arc::clone(&poison),
        )
        .warn_slower_than(config.slow_sync_warn),
    );
    // Leftovers (unused spares, a blank newest chunk) go first: a new first chunk may take
    // a blank one's name.
    owner.files().remove_leftovers(&leftovers)?;
    // The names listed above may not be durable yet: a process that died between a
    // retirement's rename and its directory fsync leaves a spare whose rename a power loss
    // can still undo. Reusing it before the fsync would put a new chunk's header and records
    // under the old chunk's name (found by `power_loss_recycle`). So sync the directory
    // before any spare can be taken (removing leftovers synced it already).
    if !spares.is_empty() && leftovers.is_empty() {
        owner.files().sync_dir()?;
    }
    let mut recovery = if adopted.is_empty() {
        "clean"
    } else {
        "adopted"
    };
    let tail = match tail {
        Some(t) => t,
        None => {
            recovery = "new";
            new_first_chunk(&config, &owner, &chunks, &mut metas)?
        }
    };
    let Tail0 {
        chunk: active,
        mut w,
        end,
        sealed,
        cut_to,
    } = tail;
    if cut_to > end {
        recovery = "torn tail cut";
        w.write_zeros(cut_to - end)
            .map_err(|e| Error::io("zero torn tail", w.region().path(), e))?;
        w.seek(end);
    }
    track_unsynced(&owner, &chunks, &adopted, &active);
    // Data read back may still sit only in the page cache (after a process kill): make it
    // durable before anything new can claim to follow it. As a rotation's install would
    // have, the chunk before an adopted one is synced whole before the adopted one is
    // installed.
    let last_index = state.last.map(|l| l.index);
    let target = Target {
        seq: active.seq,
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
    if let Err(err) = w.region().release_pages() {
        tracing::debug!(seq = active.seq, error = %err, "madvise(DONTNEED) failed");
    }
    w.seek(end);
    let worker = spawn(Arc::clone(&owner), config.flush_batch_max)?;
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        index,
        cache: PayloadCache::new(config.cache_max_items, config.cache_max_bytes)
            .with_metrics(Arc::clone(&metrics)),
        chunks,
        state: RwLock::new(state.clone()),
        poison,
        durable,
        counters: Counters::default(),
        io: Arc::clone(owner.files().io()),
        metrics,
        _lock: Arc::clone(&lock),
    });
    shared.metrics.chunks_added(shared.chunks.len());
    let fresh = end == HEADER_LEN;
    let prefault = super::prefault::Prefaulter::start(Arc::clone(&shared.poison));
    let mut writer = Writer {
        shared,
        config,
        active,
        w,
        metas,
        state,
        gen: 0,
        owner,
        worker,
        spare: None,
        prefault,
        stage: Vec::new(),
        staged: 0,
    };
    if sealed {
        writer.rotate(false)?;
    } else if fresh {
        writer.put_state()?;
    }
    Ok(Opened2 {
        writer,
        lock,
        recovery,
    })
}

/// A sealed chunk is only read from here on, and rarely: do not keep it resident (nor its
/// file open, if it was the newest chunk before an adopted one).
fn release_sealed(chunks: &SkipMap<u64, Arc<Chunk>>, tail: Option<u64>) {
    for e in chunks.iter() {
        if tail == Some(*e.key()) {
            continue;
        }
        e.value().region.release_file();
        if let Err(err) = e.value().region.release_pages() {
            tracing::debug!(seq = *e.key(), error = %err, "madvise(DONTNEED) failed");
        }
    }
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
    let (file, header, _tmp) = files.prepare(seq, config.chunk_size)?;
    let path = chunk_path(files.dir(), seq);
    let mut w = Region::map_writable(&file, config.chunk_size as usize, &path)
        .map_err(|e| Error::io("map chunk", &path, e))?;
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
    })
}
