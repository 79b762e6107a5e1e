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
    chunk_path, install_chunk, list_chunks, open_existing, open_existing_from, prepare_chunk,
    scan_chunk, scan_chunk_checked, sync_dir, tmp_path, Chunk, Opened, Region, RegionWriter, Tail,
};
use crate::config::{Config, RecoveryMode};
use crate::error::{CorruptionKind, Error, Result};
use crate::flush::{spawn, sync_region, DurableState, Poison};
use crate::format::{Record, HEADER_LEN};
use crate::index::{EntryIndex, PayloadCache};
use crate::types::LogState;

/// Everything open produces.
pub(crate) struct Opened2 {
    pub writer: Writer,
    pub lock: std::fs::File,
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
/// records: under the tolerant mode it is removed (it cannot hold acknowledged data).
fn drop_blank_newest(config: &Config, seqs: &mut Vec<u64>) -> Result<()> {
    let Some(&seq) = seqs.last() else {
        return Ok(());
    };
    let path = chunk_path(&config.dir, seq);
    if !crate::chunk::is_blank(&path)? {
        return Ok(());
    }
    if config.recovery_mode == RecoveryMode::Strict {
        return Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 }));
    }
    tracing::warn!(seq, "removing blank newest chunk");
    std::fs::remove_file(&path).map_err(|e| Error::io("remove blank chunk", &path, e))?;
    sync_dir(&config.dir)?;
    seqs.pop();
    Ok(())
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
            Verifier::Running(h) => h.join().unwrap_or(Err(Error::Poisoned {
                op: "checksum verifier (panicked)",
                kind: std::io::ErrorKind::Other,
            })),
        }
    }
}

/// Open (or create) the log described by `config`.
pub(crate) fn open(config: Config) -> Result<Opened2> {
    config.validate()?;
    prepare_dir(&config)?;
    let lock = crate::chunk::lock_dir(&config.dir)?;
    let dir = config.dir.clone();
    let (mut seqs, mut leftovers) = list_chunks(&dir)?;
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(Error::corrupt(
                w[0] + 1,
                0,
                CorruptionKind::MissingChunk { missing: w[0] + 1 },
            ));
        }
    }
    drop_blank_newest(&config, &mut seqs)?;
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
    // The newest chunk, mapped writable, and where writing resumes.
    let mut tail: Option<(Arc<Chunk>, RegionWriter, usize, bool)> = None;
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
                path: path.clone(),
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
                    if let Record::Entry { id, .. } = s.record {
                        meta.max_index = Some(meta.max_index.map_or(id.index, |m| m.max(id.index)));
                    }
                    apply(&mut state, &index, &s.record, seq, s.offset, &mut copy)
                        .map_err(|k| Error::corrupt(seq, s.offset as u64, k))
                })?
            };
            chunks.insert(seq, Arc::clone(&chunk));
            metas.push_back(meta);
            if let Some((mut w, _)) = writer {
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
                        w.seek(end);
                        if let Some(z) = w.space(garbage_end - end) {
                            z.fill(0);
                        }
                        (end, false)
                    }
                };
                w.seek(end);
                w.publish();
                tail = Some((chunk, w, end, sealed));
                if sealed && seqs.is_empty() {
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
    for e in chunks.iter() {
        if tail.as_ref().is_some_and(|t| t.0.seq == *e.key()) {
            continue;
        }
        // A sealed chunk is only read from here on, and rarely: do not keep it resident (nor
        // its file open, if it was the newest chunk before an adopted one).
        e.value().region.release_file();
        if let Err(err) = e.value().region.release_pages() {
            tracing::debug!(seq = *e.key(), error = %err, "madvise(DONTNEED) failed");
        }
    }

    if let Some(m) = metas.back() {
        check_replayed(&state, &index).map_err(|k| Error::corrupt(m.seq, 0, k))?;
    }
    // Only now that the log replayed: a failed open (Strict) leaves every file as it was.
    // As a rotation's install would have: the chunk before an adopted one (written, after a
    // process crash, perhaps only to the page cache) is synced whole before the adopted one
    // is installed. Only the newest chunk may hold unsynced bytes (synced below).
    for (seq, tmp) in &adopted {
        if let Some(prev) = chunks.get(&(seq - 1)) {
            let region = &prev.value().region;
            sync_region(
                region,
                0,
                region.len(),
                config.sync_hook.as_ref(),
                config.sync_recorder.as_ref(),
            )
            .map_err(|e| Error::io("sync recovered chunk", region.path(), e))?;
        }
        install_chunk(&dir, tmp, *seq)?;
    }
    crate::chunk::remove_leftovers(&dir, &leftovers)?;
    let poison = Arc::new(Poison::default());
    let (active, mut w, end, sealed, dirty_to) = match tail {
        Some((c, w, end, sealed)) => {
            // Data read back may still sit only in the page cache (after a process kill):
            // make it durable before anything new can claim to follow it.
            let dirty_to = w.region().len();
            (c, w, end, sealed, dirty_to)
        }
        None => {
            let seq = metas.back().map_or(0, |m: &ChunkMeta| m.seq + 1);
            let (file, header, tmp) = prepare_chunk(&dir, seq, config.chunk_size)?;
            let path = chunk_path(&dir, seq);
            let mut w = Region::map_writable(&file, config.chunk_size as usize, &path)
                .map_err(|e| Error::io("map chunk", &path, e))?;
            install_chunk(&dir, &tmp, seq)?;
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
                path,
                max_index: None,
            });
            (chunk, w, HEADER_LEN, false, HEADER_LEN)
        }
    };
    sync_region(
        w.region(),
        0,
        dirty_to,
        config.sync_hook.as_ref(),
        config.sync_recorder.as_ref(),
    )
    .map_err(|e| Error::io("sync recovered chunk", w.region().path(), e))?;
    // The scan faulted the newest chunk's pages in (up to where the file may hold data):
    // drop them from this process too. Readers fault back what they read; the prefault
    // thread maps the pages ahead of the cursor once appends start.
    if let Err(err) = w.region().release_pages() {
        tracing::debug!(seq = active.seq, error = %err, "madvise(DONTNEED) failed");
    }
    w.seek(end);
    let last_index = state.last.map(|l| l.index);
    let durable = Arc::new(DurableState::new(
        DurableState::pack(active.seq, end),
        last_index,
    ));
    let worker = spawn(
        Arc::clone(&poison),
        Arc::clone(&durable),
        config.flush_batch_max,
        config.sync_hook.clone(),
        config.sync_recorder.clone(),
    )?;
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        index,
        cache: PayloadCache::new(config.cache_max_items, config.cache_max_bytes),
        chunks,
        state: RwLock::new(state.clone()),
        poison,
        durable,
        counters: Counters::default(),
    });
    let fresh = end == HEADER_LEN;
    let prefault =
        super::prefault::Prefaulter::start(Arc::clone(&shared.poison), Arc::clone(&shared.durable));
    let mut writer = Writer {
        shared,
        config,
        active,
        w,
        metas,
        state,
        requested_to: end,
        gen: 0,
        worker,
        spare: None,
        prefault,
        pending: Vec::new(),
    };
    if sealed {
        writer.rotate(false)?;
    } else if fresh {
        writer.put_state()?;
    }
    Ok(Opened2 { writer, lock })
}
