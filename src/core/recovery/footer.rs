//! Replay of a sealed chunk from its seal-time footer (format v2, `VerifyOnOpen::Lazy`):
//! runs of entries go into the index in bulk, the few other records are decoded from the
//! map (CRC checked) and applied as a scan would, and no entry record is read.

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::core::groups::GroupStates;
use crate::core::shared::{apply, apply_run};
use crate::core::writer::ChunkMeta;
use crate::error::{Error, Result};
use crate::format::{
    decode_frame, read_footer, FooterBuilder, FooterError, Item, Record, FOOTER_VERSION,
    GROUPS_VERSION,
};
use crate::index::EntryIndex;
use crate::types::LogState;

/// A validated footer, ready to replay.
pub(super) struct FromFooter<'a> {
    items: Vec<Item<'a>>,
    /// The Record items' records, decoded and CRC-checked, in order, with their offsets
    /// and groups.
    records: Vec<(u32, u64, Record<'a>)>,
}

/// What a footer replays into: the default group's state and index, and the other groups.
pub(super) struct Into<'a> {
    pub state: &'a mut LogState,
    pub index: &'a EntryIndex,
    pub groups: &'a mut GroupStates,
}

/// The footer of sealed chunk `c`, validated, with every Record item decoded and
/// CRC-checked before anything is applied. `None` for a v1 chunk, and (with a warning) for
/// any footer that fails a check: that chunk is then scanned record by record.
pub(super) fn load(c: &Chunk) -> Option<FromFooter<'_>> {
    if c.header.version < FOOTER_VERSION {
        return None;
    }
    match try_load(c) {
        // Group runs exist from format v3 on; in an older chunk they are forged.
        Ok(f) if c.header.version < GROUPS_VERSION && f.has_group_runs() => {
            tracing::warn!(seq = c.seq, "group runs in a pre-group chunk: scanning it");
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
        let rec = frame.record(c.header.version).map_err(bad)?;
        if matches!(rec, Record::Seal | Record::Index { .. })
            || (frame.group == 0 && matches!(rec, Record::Entry { .. }))
        {
            return Err(FooterError::NotReplayable {
                offset,
                kind: frame.kind,
            });
        }
        records.push((offset, frame.group, rec));
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

    /// Apply the chunk's records, in order, to `into` exactly as a scan of chunk `seq`
    /// would; `meta` gets the default group's highest entry index.
    pub fn replay(&self, seq: u64, into: Into<'_>, meta: &mut ChunkMeta) -> Result<()> {
        let Into {
            state,
            index,
            groups,
        } = into;
        let mut copy = |b: &[u8]| Bytes::copy_from_slice(b);
        let mut records = self.records.iter();
        let mut offsets = Vec::new();
        for item in &self.items {
            match item {
                Item::Run(run) if run.group != 0 => {
                    offsets.clear();
                    offsets.extend(run.offsets());
                    let at = u64::from(offsets.first().copied().unwrap_or_default());
                    groups
                        .push_run(run.group, (run.first, run.term), seq, &offsets, None)
                        .map_err(|k| Error::corrupt(seq, at, k))?;
                }
                Item::Run(run) => {
                    offsets.clear();
                    offsets.extend(run.offsets());
                    let at = u64::from(offsets.first().copied().unwrap_or_default());
                    apply_run(state, index, (run.first, run.term), seq, &offsets)
                        .map_err(|k| Error::corrupt(seq, at, k))?;
                    meta.max_index = Some(meta.max_index.map_or(run.last(), |m| m.max(run.last())));
                }
                Item::Record { .. } => {
                    // `try_load` decoded one record per Record item.
                    let Some((off, group, rec)) = records.next() else {
                        break;
                    };
                    let at = *off as usize;
                    let r = match group {
                        0 => apply(state, index, rec, seq, at, &mut copy),
                        g => groups.apply(*g, rec, seq, at, None),
                    };
                    r.map_err(|k| Error::corrupt(seq, u64::from(*off), k))?;
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
