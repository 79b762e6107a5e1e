//! The writer's chunk changes: preparing the next chunk, rotating to it, sealing the old one
//! (with its footer in a v2+ chunk).

use std::sync::Arc;

use super::writer::{ChunkMeta, Writer, SEAL_LEN};
use crate::chunk::{chunk_path, Chunk, PreparedChunk};
use crate::error::{copy_io, Error, Result};
use crate::format::{encoded_len, Record, FLAG_CONTINUES, FOOTER_VERSION, HEADER_LEN, TRAILER_LEN};

impl Writer {
    /// Prepare the next chunk if it is not ready yet.
    pub fn ensure_spare(&mut self) -> Result<()> {
        let seq = self.active.seq + 1;
        if self.spare.as_ref().is_some_and(|s| s.seq == seq) {
            return Ok(());
        }
        if seq > crate::types::MAX_CHUNK_SEQ {
            return Err(Error::ChunkSeqOutOfRange {
                path: chunk_path(self.owner.files().dir(), seq),
                seq,
                max: crate::types::MAX_CHUNK_SEQ,
            });
        }
        self.spare = None;
        self.spare = Some(self.owner.files().create(seq, self.config.chunk_size)?);
        Ok(())
    }

    /// Seal the active chunk (unless it already is) and switch to a new one that starts with
    /// a state image. A full disk leaves everything as it was.
    ///
    /// Nothing is synced here, so a rotation does not wait for a 64 MiB msync: the sync
    /// owner now knows the old chunk's end and that the new one still needs its install, and
    /// the next sync (a flush on any thread, a purge, a close) syncs the old chunk's rest,
    /// installs the new one and only then syncs into it. Until then nothing of the new chunk
    /// can be reported durable, and an open after a crash adopts the prepared file only if
    /// this chunk is sealed and whole.
    pub fn rotate(&mut self, seal_old: bool) -> Result<()> {
        let span = tracing::debug_span!(
            "chunkwal_rotate",
            dir = %self.shared.dir.display(),
            old = self.active.seq,
            new = tracing::field::Empty,
        )
        .entered();
        self.ensure_spare()?;
        let Some(spare) = self.spare.take() else {
            return Err(Error::WorkerStopped);
        };
        let seq = spare.seq;
        span.record("new", seq);
        if seal_old {
            self.seal()?;
        }
        let PreparedChunk { header, mut w, .. } = spare;
        // The old chunk is synced to its file's end, trailer included.
        self.owner.rotate(
            self.active.seq,
            self.w.region().len(),
            seq,
            Arc::clone(w.region()),
            HEADER_LEN,
        );
        self.w.region().release_file();
        w.seek(HEADER_LEN);
        let chunk = Arc::new(Chunk {
            seq,
            header,
            region: Arc::clone(w.region()),
        });
        self.shared.chunks.insert(seq, Arc::clone(&chunk));
        self.shared.metrics.chunks_added(1);
        self.active = chunk;
        self.w = w;
        self.prefault.reset();
        let mut footer = self.footer.take().unwrap_or_default();
        footer.clear();
        self.footer = (header.version >= FOOTER_VERSION).then_some(footer);
        self.metas.push_back(ChunkMeta {
            seq,
            max_index: None,
        });
        self.put_images()?;
        tracing::debug!(seq, "rotated to a new chunk");
        Ok(())
    }

    /// End the active chunk. A v2 chunk gets its footer: the Index record and the Seal as
    /// one group, then the trailer in the file's last bytes (past every record, never
    /// published: only open reads it). A v1 chunk, or one whose footer would not fit (only
    /// a chunk written without the v2 reserve), gets the Seal alone and is scanned at open.
    fn seal(&mut self) -> Result<()> {
        debug_assert_eq!(self.staged, 0, "sealing with records staged");
        let end = self.w.region().len();
        let footer = self.footer.take().filter(|f| {
            let need = encoded_len(f.body_len()) + SEAL_LEN + TRAILER_LEN;
            f.encodable() && self.w.cursor() + need <= end
        });
        let Some(f) = footer else {
            self.put(&Record::Seal, 0)?;
            return Ok(());
        };
        let kind = Record::Index { body: &[] }.kind();
        let index_off = self.stage_frame(kind, FLAG_CONTINUES, f.body_len(), false, |b| {
            f.encode_body(b)
        })?;
        let seal_off = self.stage(&Record::Seal, 0)?;
        self.commit()?;
        let trailer = f
            .trailer(self.tag(), index_off as u32, seal_off as u32)
            .encode();
        self.footer = Some(f);
        if let Err(e) = self.w.write_at_end(&trailer) {
            let path = self.w.region().path();
            let returned = Error::io("write chunk trailer", path, copy_io(&e));
            self.shared
                .poison
                .poison("write chunk trailer", Some(path), e);
            return Err(returned);
        }
        Ok(())
    }
}
