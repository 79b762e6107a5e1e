//! The write path: encode records straight into the active chunk's map, rotate chunks, and
//! hand sync requests to the flush worker.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::prefault::Prefaulter;
use super::shared::{apply, Counters, Shared};
use crate::chunk::{chunk_path, prepare_chunk, Chunk, Region, RegionWriter};
use crate::config::{Config, SyncHook, SyncRecorder};
use crate::error::{Error, Result};
use crate::flush::{sync_region, Callback, DurableState, Install, Job, SyncTarget, WorkerHandle};
use crate::format::{
    encoded_len, write_frame, ChunkHeader, Record, StateImage, FLAG_CONTINUES, HEADER_LEN,
};
use crate::types::{LogId, LogState};

/// Bytes kept free at the end of every chunk for its seal record.
pub(crate) const SEAL_LEN: usize = encoded_len(0);

/// Per-chunk facts the writer needs for purging.
#[derive(Debug, Clone)]
pub(crate) struct ChunkMeta {
    pub seq: u64,
    pub path: PathBuf,
    /// Highest entry index ever written into the chunk.
    pub max_index: Option<u64>,
}

/// The single writer. Lives behind the `Wal`'s mutex.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub config: Config,
    pub active: Arc<Chunk>,
    pub w: RegionWriter,
    pub metas: VecDeque<ChunkMeta>,
    /// Authoritative state; published to `shared.state` after each operation.
    pub state: LogState,
    /// Bytes of the active chunk before this offset were handed to the worker to sync.
    pub requested_to: usize,
    pub gen: u64,
    pub worker: WorkerHandle,
    /// The next chunk, prepared ahead (preallocated, header synced, not yet installed).
    pub spare: Option<Spare>,
    /// Faults pages in ahead of the cursor on another thread.
    pub prefault: Prefaulter,
    /// Rotations not yet handed to the worker (see [`Writer::rotate`]); they go first with
    /// the next job.
    pub pending: Vec<Job>,
}

/// A prepared but not installed chunk. If the writer goes away first, its temporary file is
/// removed by the next open.
pub(crate) struct Spare {
    seq: u64,
    header: ChunkHeader,
    tmp: PathBuf,
    w: RegionWriter,
}

/// A sync to run on the caller's thread; see [`Writer::inline_sync_job`].
pub(crate) struct InlineSync {
    /// Set instead when a rotation's install is still queued on the worker: wait for the
    /// worker's answer to a sync queued behind it.
    queued: Option<crossbeam_channel::Receiver<Result<()>>>,
    shared: Arc<Shared>,
    region: Arc<Region>,
    seq: u64,
    start: usize,
    end: usize,
    last_index: Option<u64>,
    gen: u64,
    hook: Option<SyncHook>,
    recorder: Option<SyncRecorder>,
}

impl InlineSync {
    /// msync the range, then move the durable point. Any error poisons the log.
    pub fn run(self) -> Result<()> {
        if let Some(rx) = self.queued {
            return rx.recv().unwrap_or(Err(Error::WorkerStopped));
        }
        if self.end > self.start {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sync_region(
                    &self.region,
                    self.start,
                    self.end,
                    self.hook.as_ref(),
                    self.recorder.as_ref(),
                )
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.shared.poison.poison("msync", e.kind()),
                Err(_) => self
                    .shared
                    .poison
                    .poison("msync (panicked)", std::io::ErrorKind::Other),
            }
        }
        self.shared.poison.check()?;
        self.shared.durable.advance(
            DurableState::pack(self.seq, self.end),
            self.last_index,
            self.gen,
        );
        Ok(())
    }
}

/// Largest payload accepted for a given chunk size.
pub(crate) fn max_payload(chunk_size: u64) -> u64 {
    // Room for the header, the seal, a state image with vote and user data at their own
    // maximum (chunk_size / 8 each), and a truncate record that may share the group.
    let state_max = encoded_len(1 + 48 + 8 + 2 * (chunk_size as usize / 8));
    // The largest truncate record: since, presence byte, log id.
    let room = chunk_size as usize - HEADER_LEN - SEAL_LEN - state_max - encoded_len(25);
    (room - encoded_len(16) - 8) as u64
}

/// Largest vote or user data accepted.
pub(crate) fn max_meta(chunk_size: u64) -> u64 {
    chunk_size / 8
}

impl Writer {
    fn tag(&self) -> u32 {
        self.active.header.epoch_tag()
    }

    /// Encode one record at the cursor and publish it. The caller made sure it fits.
    fn put(&mut self, rec: &Record<'_>, flags: u8) -> Result<usize> {
        let body = rec.body_len();
        let size = encoded_len(body);
        let hint = self.shared.durable.offset_in(self.active.seq);
        let tag = self.tag();
        let off = self.w.cursor();
        let Some(dst) = self.w.space(size) else {
            return Err(Error::EntryTooLarge {
                size: size as u64,
                max: self.w.remaining() as u64,
            });
        };
        write_frame(dst, rec.kind(), flags, tag, hint, body, |b| {
            rec.write_body(b)
        });
        self.w.advance(size);
        self.w.publish();
        Ok(off)
    }

    fn fits(&self, bytes: usize) -> bool {
        bytes + SEAL_LEN <= self.w.remaining()
    }

    /// Write `recs` as atomic groups (one group per chunk they land in) and apply them.
    /// With `tie_first`, the first two records always share a group.
    pub fn write(
        &mut self,
        recs: &[Record<'_>],
        payloads: &[Bytes],
        tie_first: bool,
    ) -> Result<()> {
        // A batch that needs a new chunk gets it before anything is written, so a full
        // disk fails the call with nothing changed.
        let sizes: Vec<usize> = recs.iter().map(|r| encoded_len(r.body_len())).collect();
        if !self.fits(sizes.iter().sum()) {
            self.ensure_spare()?;
        }
        let mut written = Vec::with_capacity(payloads.len());
        let r = self.write_groups(recs, &sizes, tie_first, &mut written);
        self.prefault
            .ahead_of(self.w.region(), self.active.seq, self.w.cursor());
        // Even after a mid-batch failure what was written is complete and applied: publish
        // it and cache its payloads.
        if let Some(first) = recs.iter().find_map(|r| match r {
            Record::Entry { id, .. } => Some(id.index),
            _ => None,
        }) {
            let n = written.len();
            let evictable = self.shared.durable.index();
            self.shared
                .cache
                .insert(first, written, payloads[..n].to_vec(), evictable);
        }
        *self.shared.state.write() = self.state.clone();
        r
    }

    fn write_groups(
        &mut self,
        recs: &[Record<'_>],
        sizes: &[usize],
        tie_first: bool,
        written: &mut Vec<u64>,
    ) -> Result<()> {
        for (i, rec) in recs.iter().enumerate() {
            let need = if i == 0 && tie_first && recs.len() > 1 {
                sizes[0] + sizes[1]
            } else {
                sizes[i]
            };
            if !self.fits(need) {
                self.rotate(true)?;
                if !self.fits(need) {
                    return Err(Error::EntryTooLarge {
                        size: need as u64,
                        max: self.w.remaining().saturating_sub(SEAL_LEN) as u64,
                    });
                }
            }
            let next_fits = match sizes.get(i + 1) {
                Some(n) => self.fits(sizes[i] + n),
                None => false,
            };
            let flags = if next_fits || (i == 0 && tie_first && recs.len() > 1) {
                FLAG_CONTINUES
            } else {
                0
            };
            let off = self.put(rec, flags)?;
            let seq = self.active.seq;
            apply(
                &mut self.state,
                &self.shared.index,
                rec,
                seq,
                off,
                &mut Bytes::copy_from_slice,
            )
            .map_err(|k| Error::corrupt(seq, off as u64, k))?;
            match rec {
                Record::Entry { id, .. } => {
                    if let Some(m) = self.metas.back_mut() {
                        m.max_index = Some(m.max_index.map_or(id.index, |x| x.max(id.index)));
                    }
                    written.push(DurableState::pack(seq, off));
                }
                Record::Truncate { since, last } => {
                    self.shared.cache.remove_from(*since);
                    self.gen = self.shared.durable.on_truncate(last.map(|l| l.index));
                }
                Record::Purge { upto } => self.shared.cache.remove_upto(upto.index),
                _ => {}
            }
        }
        Ok(())
    }

    fn state_image(&self) -> (Option<Bytes>, Option<Bytes>, StateImage<'static>) {
        let s = &self.state;
        (
            s.vote.clone(),
            s.user_data.clone(),
            StateImage {
                vote: None,
                last: s.last,
                committed: s.committed,
                purged: s.purged,
                user_data: None,
            },
        )
    }

    /// Whether a state image still fits in the active chunk.
    pub fn fits_state(&self) -> bool {
        let (v, u, mut img) = self.state_image();
        img.vote = v.as_deref();
        img.user_data = u.as_deref();
        self.fits(encoded_len(Record::State(img).body_len()))
    }

    /// Empty the log: a state image with no entries and no purge point (vote and user data
    /// kept), then retire every older chunk once that image is durable.
    pub fn reset(&mut self) -> Result<()> {
        let before = self.state.clone();
        self.state.last = None;
        self.state.purged = None;
        self.state.committed = None;
        if !self.fits_state() {
            self.state = before.clone();
            self.rotate(true)?;
            self.state.last = None;
            self.state.purged = None;
            self.state.committed = None;
        }
        if let Err(e) = self.put_state() {
            self.state = before;
            return Err(e);
        }
        self.shared.index.remove_from(0);
        self.shared.cache.remove_from(0);
        self.gen = self.shared.durable.on_truncate(None);
        *self.shared.state.write() = self.state.clone();
        self.retire_chunks(LogId::new(u64::MAX, u64::MAX))
    }

    /// Write a full state image as its own group.
    pub fn put_state(&mut self) -> Result<()> {
        let (vote, ud, mut img) = self.state_image();
        img.vote = vote.as_deref();
        img.user_data = ud.as_deref();
        let rec = Record::State(img);
        if !self.fits(encoded_len(rec.body_len())) {
            return Err(Error::EntryTooLarge {
                size: rec.body_len() as u64,
                max: self.w.remaining() as u64,
            });
        }
        self.put(&rec, 0)?;
        Ok(())
    }

    /// A sync of `[start, end)` of chunk `seq`, run on the caller's thread; see
    /// [`InlineSync::run`].
    fn inline_sync(&self, seq: u64, region: Arc<Region>, start: usize, end: usize) -> InlineSync {
        InlineSync {
            queued: None,
            shared: Arc::clone(&self.shared),
            region,
            seq,
            start,
            end,
            last_index: self.state.last.map(|l| l.index),
            gen: self.gen,
            hook: self.config.sync_hook.clone(),
            recorder: self.config.sync_recorder.clone(),
        }
    }

    /// Describe a sync of everything in the active chunk not yet known durable, to be run
    /// by the caller after releasing the writer lock.
    pub fn inline_sync_job(&mut self) -> Result<InlineSync> {
        let end = self.w.cursor();
        let seq = self.active.seq;
        if !self.pending.is_empty() || self.shared.durable.installed() < seq {
            // A rotation's install (and the old chunk's sync) is still queued: only the
            // worker, which runs jobs in order, can sync this chunk now.
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.request_sync(Some(Box::new(move |r| {
                let _ = tx.send(r);
            })))?;
            let mut job = self.inline_sync(seq, Arc::clone(self.w.region()), end, end);
            job.queued = Some(rx);
            return Ok(job);
        }
        // Older chunks are wholly durable once the active one is installed (the install
        // follows their sync), so only the active chunk can hold unsynced bytes: from the
        // durable point, not from `requested_to`, because ranges handed to the worker may
        // still be queued.
        let start = self.shared.durable.offset_in(seq) as usize;
        self.requested_to = self.requested_to.max(end);
        Counters::bump(&self.shared.counters.flushes, 1);
        Ok(self.inline_sync(seq, Arc::clone(self.w.region()), start, end))
    }

    /// Prepare the next chunk if it is not ready yet.
    pub fn ensure_spare(&mut self) -> Result<()> {
        let seq = self.active.seq + 1;
        if self.spare.as_ref().is_some_and(|s| s.seq == seq) {
            return Ok(());
        }
        self.spare = None;
        let dir = &self.shared.dir;
        let (file, header, tmp) = prepare_chunk(dir, seq, self.config.chunk_size)?;
        let path = chunk_path(dir, seq);
        let w = match Region::map_writable(&file, self.config.chunk_size as usize, &path) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io("map chunk", &path, e));
            }
        };
        self.spare = Some(Spare {
            seq,
            header,
            tmp,
            w,
        });
        Ok(())
    }

    /// Seal the active chunk (unless it already is), make it durable, and switch to a new one
    /// that starts with a state image. A full disk leaves everything as it was.
    pub fn rotate(&mut self, seal_old: bool) -> Result<()> {
        self.ensure_spare()?;
        let Some(spare) = self.spare.take() else {
            return Err(Error::WorkerStopped);
        };
        let seq = spare.seq;
        let dir = self.shared.dir.clone();
        let path = chunk_path(&dir, seq);
        if seal_old {
            self.put(&Record::Seal, 0)?;
        }
        // The worker syncs everything of this chunk not yet known durable, from the durable
        // point rather than from `requested_to` (a flush on a caller's thread may still be
        // running), then installs the next chunk under its final name. Until then nothing
        // of the next chunk can be reported durable (see `inline_sync_job`), and an open
        // after a crash adopts the prepared file only if this chunk is sealed and whole.
        // The writer goes on at once: a rotation does not wait for a 64 MiB msync. The job
        // waits for the next one the writer sends (a flush, a purge, a close): until then
        // buffered appends cost no disk work at all, as with a plain write(2) log.
        let old_seq = self.active.seq;
        let job = Job::Sync {
            targets: vec![SyncTarget {
                seq: old_seq,
                region: Arc::clone(self.w.region()),
                start: (self.shared.durable.offset_in(old_seq) as usize).min(self.requested_to),
                end: self.w.cursor(),
            }],
            last_index: self.state.last.map(|l| l.index),
            gen: self.gen,
            callback: None,
            install: Some(Install {
                dir: dir.clone(),
                tmp: spare.tmp.clone(),
                seq,
            }),
        };
        self.pending.push(job);
        self.w.region().release_file();
        let Spare { header, mut w, .. } = spare;
        w.seek(HEADER_LEN);
        let chunk = Arc::new(Chunk {
            seq,
            header,
            region: Arc::clone(w.region()),
        });
        self.shared.chunks.insert(seq, Arc::clone(&chunk));
        self.active = chunk;
        self.w = w;
        self.requested_to = HEADER_LEN;
        self.prefault.reset();
        self.metas.push_back(ChunkMeta {
            seq,
            path,
            max_index: None,
        });
        self.put_state()?;
        tracing::debug!(seq, "rotated to a new chunk");
        Ok(())
    }

    /// Queue `job` on the worker, after any rotation still held back.
    fn send(&mut self, job: Job) -> Result<()> {
        for p in self.pending.drain(..) {
            self.worker.send(p)?;
        }
        self.worker.send(job)
    }

    /// Ask the worker to sync everything written so far, then call `callback`.
    pub fn request_sync(&mut self, callback: Option<Callback>) -> Result<()> {
        let end = self.w.cursor();
        let targets = if end > self.requested_to {
            vec![SyncTarget {
                seq: self.active.seq,
                region: Arc::clone(self.w.region()),
                start: self.requested_to,
                end,
            }]
        } else {
            Vec::new()
        };
        self.requested_to = end;
        Counters::bump(&self.shared.counters.flushes, 1);
        let job = Job::Sync {
            targets,
            last_index: self.state.last.map(|l| l.index),
            gen: self.gen,
            callback,
            install: None,
        };
        self.send(job)
    }

    /// After a purge up to `upto`: drop fully purged old chunks from the read path and have
    /// the worker delete their files once the purge record is durable.
    pub fn retire_chunks(&mut self, upto: LogId) -> Result<()> {
        let mut paths = Vec::new();
        while self.metas.len() > 1 {
            let Some(m) = self.metas.front() else { break };
            if m.seq == self.active.seq || m.max_index.is_some_and(|x| x > upto.index) {
                break;
            }
            let Some(m) = self.metas.pop_front() else {
                break;
            };
            self.shared.chunks.remove(&m.seq);
            paths.push(m.path);
        }
        if paths.is_empty() {
            return Ok(());
        }
        self.request_sync(None)?;
        self.send(Job::Delete {
            dir: self.shared.dir.clone(),
            paths,
        })
    }
}
