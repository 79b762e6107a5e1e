//! Replay: list the chunk files, then read every chunk, oldest first, into the state and the
//! entry index, checking the sealed chunks' CRCs on a second thread.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use super::footer::{builder_for, FromFooter};
use super::resume::Tail0;
use super::runs::RunReplay;
use crate::chunk::{
    chunk_path, free_path, list_chunks, open_existing, open_existing_from, scan_chunk,
    scan_chunk_checked, tmp_path, Chunk, Opened, RegionWriter, Tail,
};
use crate::config::{Config, RecoveryMode, VerifyOnOpen};
use crate::core::groups::{footer_push, GroupStates};
use crate::core::writer::ChunkMeta;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::FooterBuilder;
use crate::index::EntryIndex;
use crate::types::LogState;

/// The log directory's files, as open found them.
pub(super) struct Listing {
    /// The chunks of the log, oldest first (contiguous).
    pub seqs: Vec<u64>,
    /// Files to remove once the open succeeded: unused `.chunk.tmp` files, spares beyond
    /// what the pool keeps, a blank newest chunk.
    pub leftovers: Vec<PathBuf>,
    /// Spares the pool keeps.
    pub spares: Vec<u64>,
}

impl Listing {
    /// List `config.dir` and check that its chunks form one contiguous run.
    pub fn read(config: &Config) -> Result<Listing> {
        let dir = &config.dir;
        let listing = list_chunks(dir)?;
        let (mut seqs, mut leftovers) = (listing.seqs, listing.tmps);
        // Spares beyond what the pool keeps are removed with the leftovers.
        let keep = listing.free.len().min(config.recycle_chunks);
        let (spares, extra) = listing.free.split_at(keep);
        leftovers.extend(extra.iter().map(|&s| free_path(dir, s)));
        for w in seqs.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(Error::corrupt(
                    w[0] + 1,
                    0,
                    CorruptionKind::MissingChunk { missing: w[0] + 1 },
                ));
            }
        }
        if let Some(blank) = drop_blank_newest(config, &mut seqs)? {
            leftovers.push(blank);
        }
        Ok(Listing {
            seqs,
            leftovers,
            spares: spares.to_vec(),
        })
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

/// The newest chunk's writable mapping and where its file may hold data.
type Writable = (RegionWriter, usize);

/// What replay rebuilt.
#[derive(Default)]
pub(super) struct Replayed {
    pub index: EntryIndex,
    pub chunks: SkipMap<u64, Arc<Chunk>>,
    pub state: LogState,
    /// The non-default groups.
    pub groups: GroupStates,
    pub metas: VecDeque<ChunkMeta>,
    /// The newest chunk, mapped writable (`None`: the log has no chunk yet).
    pub tail: Option<Tail0>,
    /// Prepared chunks being adopted (see [`adoptable`]): replayed from their temporary
    /// file, renamed only once the open succeeded (a failed strict open changes no file).
    pub adopted: Vec<(u64, PathBuf)>,
    /// Sealed chunks whose records open did not check; a background thread does.
    pub unverified: Vec<Arc<Chunk>>,
}

/// Replay every chunk in `listing`. Changes no file.
pub(super) fn replay(config: &Config, listing: &mut Listing) -> Result<Replayed> {
    let dir = config.dir.clone();
    let newest = listing.seqs.last().copied();
    // Every chunk but the newest is sealed. Open them all now. Under `VerifyOnOpen::Lazy`
    // those with a valid footer are replayed from it and verified later, in the background.
    // The others are scanned, and their checksums verified on a second thread while this one
    // replays them without checking: open succeeds only if both do, and a checksum failure
    // is the error reported.
    let mut sealed = Vec::new();
    for &seq in listing
        .seqs
        .iter()
        .take(listing.seqs.len().saturating_sub(1))
    {
        match open_existing(&chunk_path(&dir, seq), seq, false)? {
            Opened::ReadOnly(c) => sealed.push(c),
            _ => return Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 })),
        }
    }
    let footers: Vec<Option<FromFooter<'_>>> = match config.verify_on_open {
        VerifyOnOpen::Lazy => sealed.iter().map(|c| super::footer::load(c)).collect(),
        _ => sealed.iter().map(|_| None).collect(),
    };
    let scanned = sealed.iter().zip(&footers).filter(|(_, f)| f.is_none());
    let verifier = Verifier::start(scanned.map(|(c, _)| Arc::clone(c)).collect());
    let mut r = Replayed::default();
    let sealed: VecDeque<_> = sealed.iter().cloned().zip(footers).collect();
    let replayed = r.replay_all(config, listing, sealed);
    // A checksum failure is the real cause of anything replay tripped over, unless the
    // newest chunk is garbage (see `blame_newest`).
    let blame = |e| crate::core::blame::blame_newest(e, &dir, newest);
    verifier.finish().map_err(blame)?;
    replayed.map_err(blame)?;
    release_sealed(&r.chunks, r.tail.as_ref().map(|t| t.chunk.seq));
    if let Some(m) = r.metas.back() {
        check_replayed(&r.state, &r.index).map_err(|k| Error::corrupt(m.seq, 0, k))?;
        for g in r.groups.map.values() {
            check_replayed(&g.state, &g.log.index).map_err(|k| Error::corrupt(m.seq, 0, k))?;
        }
    }
    Ok(r)
}

impl Replayed {
    /// Replay the chunks oldest first; the newest one is opened writable and becomes the
    /// tail (and, if it is sealed, a prepared successor holding records may be adopted).
    fn replay_all(
        &mut self,
        config: &Config,
        listing: &mut Listing,
        mut sealed: VecDeque<(Arc<Chunk>, Option<FromFooter<'_>>)>,
    ) -> Result<()> {
        let dir = config.dir.as_path();
        let mut seqs: VecDeque<u64> = listing.seqs.iter().copied().collect();
        while let Some(seq) = seqs.pop_front() {
            let is_last = seqs.is_empty();
            let (opened, footer) = sealed.pop_front().unzip();
            let (chunk, writer) = self.open_chunk(dir, seq, is_last, opened)?;
            if let (Some(Some(f)), None) = (&footer, &writer) {
                self.replay_footer(&chunk, f)?;
                self.unverified.push(Arc::clone(&chunk));
                self.chunks.insert(seq, chunk);
                continue;
            }
            let (verdict, built) = self.scan(&chunk, writer.as_ref(), is_last)?;
            self.chunks.insert(seq, Arc::clone(&chunk));
            let Some((w, _)) = writer else { continue };
            let sealed_tail = self.resume_at(config, chunk, w, verdict, built)?;
            if sealed_tail && seqs.is_empty() {
                // The tail is this chunk: an adopted successor replaces it.
                if let Some(tmp) = adoptable(dir, seq + 1, &listing.leftovers) {
                    tracing::warn!(
                        seq = seq + 1,
                        "adopting a chunk whose install was cut short"
                    );
                    listing.leftovers.retain(|p| *p != tmp);
                    self.adopted.push((seq + 1, tmp));
                    seqs.push_back(seq + 1);
                }
            }
        }
        Ok(())
    }

    /// Open chunk `seq`: a sealed one read-only (already opened), the newest writable (from
    /// its temporary file if it is being adopted).
    fn open_chunk(
        &self,
        dir: &Path,
        seq: u64,
        is_last: bool,
        sealed: Option<Arc<Chunk>>,
    ) -> Result<(Arc<Chunk>, Option<Writable>)> {
        let path = chunk_path(dir, seq);
        let from = self.adopted.iter().find(|(s, _)| *s == seq).map(|(_, t)| t);
        let opened = match (sealed, from) {
            (Some(c), _) if !is_last => Opened::ReadOnly(c),
            (_, Some(tmp)) => open_existing_from(tmp, &path, seq, true)?,
            _ => open_existing(&path, seq, is_last)?,
        };
        match opened {
            // A blank newest chunk was dropped (or refused) by `drop_blank_newest`.
            Opened::Blank => Err(Error::corrupt(seq, 0, CorruptionKind::ShortFile { len: 0 })),
            Opened::ReadOnly(c) => Ok((c, None)),
            Opened::Writable(c, w, data_end) => Ok((c, Some((w, data_end)))),
        }
    }

    /// Replay sealed chunk `chunk` from its footer `f` (see `footer`).
    fn replay_footer(&mut self, chunk: &Chunk, f: &FromFooter<'_>) -> Result<()> {
        let mut meta = ChunkMeta {
            seq: chunk.seq,
            max_index: None,
        };
        let into = super::footer::Into {
            state: &mut self.state,
            index: &self.index,
            groups: &mut self.groups,
        };
        f.replay(chunk.seq, into, &mut meta)?;
        self.metas.push_back(meta);
        Ok(())
    }

    /// Scan one chunk record by record and apply what it holds. The newest chunk's CRCs are
    /// checked here; sealed ones by the verifier. For the newest chunk (opened writable) of
    /// format v2, also returns the footer of what it holds, which the writer continues.
    fn scan(
        &mut self,
        chunk: &Arc<Chunk>,
        writer: Option<&Writable>,
        is_last: bool,
    ) -> Result<(Tail, Option<FooterBuilder>)> {
        let seq = chunk.seq;
        let bytes: &[u8] = match writer {
            // Past `data_end` the file holds no data: it reads as zeroes.
            Some((w, data_end)) => {
                let all = w.full_view();
                all.get(..*data_end).unwrap_or(all)
            }
            None => chunk.region.bytes(),
        };
        let mut meta = ChunkMeta {
            seq,
            max_index: None,
        };
        let mut replay = RunReplay::new(
            seq,
            (&mut self.state, &self.index),
            &mut self.groups,
            &mut meta,
        );
        let (tag, version) = (chunk.header.epoch_tag(), chunk.header.version);
        let mut built = writer.and_then(|_| builder_for(chunk));
        let verify = writer.is_some();
        let verdict = scan_chunk_checked(bytes, seq, tag, version, is_last, verify, &mut |s| {
            if let Some(b) = &mut built {
                footer_push(b, s.group, &s.record, s.offset as u32);
            }
            replay.record(s.group, &s.record, s.offset)
        })?;
        replay.flush()?;
        self.metas.push_back(meta);
        Ok((verdict, built))
    }

    /// The newest chunk: writing resumes where its records end (a torn tail is cut off
    /// unless recovery is strict). Returns whether it is sealed.
    fn resume_at(
        &mut self,
        config: &Config,
        chunk: Arc<Chunk>,
        mut w: RegionWriter,
        verdict: Tail,
        footer: Option<FooterBuilder>,
    ) -> Result<bool> {
        let seq = chunk.seq;
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
        self.tail = Some(Tail0 {
            chunk,
            w,
            end,
            sealed,
            cut_to,
            footer,
        });
        Ok(sealed)
    }
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
        c.header.version,
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
                    c.header.version,
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
