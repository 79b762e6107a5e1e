//! Replay of a sealed chunk from its seal-time footer (format v2, `VerifyOnOpen::Lazy`):
//! runs of entries go into the index in bulk, the few other records are decoded from the
//! map (CRC checked) and applied as a scan would, and no entry record is read.

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::core::shared::apply;
use crate::core::writer::ChunkMeta;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    decode_frame, read_footer, FooterBuilder, FooterError, Item, Record, FOOTER_VERSION,
};
use crate::index::EntryIndex;
use crate::types::{LogId, LogState};

/// A validated footer, ready to replay.
pub(super) struct FromFooter<'a> {
    items: Vec<Item<'a>>,
    /// The Record items' records, decoded and CRC-checked, in order, with their offsets.
    records: Vec<(u32, Record<'a>)>,
}

/// The footer of sealed chunk `c`, validated, with every Record item decoded and
/// CRC-checked before anything is applied. `None` for a v1 chunk, and (with a warning) for
/// any footer that fails a check: that chunk is then scanned record by record. Also `None`
/// for a footer holding runs of a non-default group: replay does not apply those from a
/// footer yet, so such a chunk is scanned too.
pub(super) fn load(c: &Chunk) -> Option<FromFooter<'_>> {
    if c.header.version < FOOTER_VERSION {
        return None;
    }
    match try_load(c) {
        Ok(f) if f.has_group_runs() => {
            tracing::debug!(
                seq = c.seq,
                "chunk footer holds group runs: scanning the chunk"
            );
            None
        }
        Ok(f) => Some(f),
        Err(error) => {
            tracing::warn!(seq = c.seq, %error, "chunk footer not used: scanning the chunk");
            None
        }
    }
}

fn try_load(c: &Chunk) -> Result<FromFooter<'_>, FooterError> {
    let bytes = c.region.bytes();
    let tag = c.header.epoch_tag();
    let footer = read_footer(bytes, c.header.chunk_size, tag)?;
    // Records lie before the Index record (`read_footer` checked every offset is below it).
    let limit = footer.trailer.index_off as usize;
    let mut records = Vec::new();
    for item in &footer.items {
        let Item::Record { offset } = *item else {
            continue;
        };
        let window = bytes.get(offset as usize..limit).unwrap_or_default();
        let bad = |reason| FooterError::Frame { offset, reason };
        let frame = decode_frame(window, tag).map_err(|e| match e {
            crate::format::FrameError::Truncated => FooterError::FrameTruncated { offset },
            crate::format::FrameError::Corrupt(k) => bad(k),
        })?;
        let rec = Record::decode_in(c.header.version, frame.kind, frame.body).map_err(bad)?;
        if matches!(
            rec,
            Record::Entry { .. } | Record::Seal | Record::Index { .. }
        ) {
            return Err(FooterError::NotReplayable {
                offset,
                kind: frame.kind,
            });
        }
        records.push((offset, rec));
    }
    Ok(FromFooter {
        items: footer.items,
        records,
    })
}

impl FromFooter<'_> {
    /// Whether any run belongs to a non-default group.
    fn has_group_runs(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, Item::Run(r) if r.group != 0))
    }

    /// Apply the chunk's records, in order, to `state` and `index` exactly as a scan of
    /// chunk `seq` would; `meta` gets its highest entry index. Every run is a default-group
    /// run (`load` gives no footer with others).
    pub fn replay(
        &self,
        seq: u64,
        state: &mut LogState,
        index: &EntryIndex,
        meta: &mut ChunkMeta,
    ) -> Result<()> {
        let mut copy = |b: &[u8]| Bytes::copy_from_slice(b);
        let mut records = self.records.iter();
        let mut offsets = Vec::new();
        for item in &self.items {
            match item {
                Item::Run(run) => {
                    offsets.clear();
                    offsets.extend(run.offsets());
                    let at = u64::from(offsets.first().copied().unwrap_or_default());
                    // The check `apply` makes of each entry; within a run, indexes follow on.
                    if let Some(last) = state.last {
                        if last.index.checked_add(1) != Some(run.first) {
                            let reason = CorruptionKind::NonContiguous {
                                expected: last.index.saturating_add(1),
                                got: run.first,
                            };
                            return Err(Error::corrupt(seq, at, reason));
                        }
                    }
                    index.push_run(run.first, run.term, seq, &offsets);
                    state.last = Some(LogId::new(run.term, run.last()));
                    meta.max_index = Some(meta.max_index.map_or(run.last(), |m| m.max(run.last())));
                }
                Item::Record { .. } => {
                    // `try_load` decoded one record per Record item.
                    let Some((off, rec)) = records.next() else {
                        break;
                    };
                    apply(state, index, rec, seq, *off as usize, &mut copy)
                        .map_err(|k| Error::corrupt(seq, u64::from(*off), k))?;
                }
            }
        }
        Ok(())
    }
}

/// Collects the footer of the newest chunk while it is scanned, so that the writer that
/// resumes there seals it with a complete one (format v2 only).
pub(super) fn builder_for(c: &Chunk) -> Option<FooterBuilder> {
    (c.header.version >= FOOTER_VERSION).then(FooterBuilder::new)
}
