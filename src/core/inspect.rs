//! Offline inspection of a log directory, without taking its lock or changing anything.
//! Backs the `stat`, `dump` and `verify` commands. Chunk files are read into memory, never
//! mapped: the log may be open, and written, in another process.

use std::path::Path;

use super::stat::DumpRecord;
use crate::chunk::{check_seq, chunk_path, list_chunk_names, read_chunk, scan_chunk, Loaded, Tail};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::ChunkHeader;

/// What a chunk file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkHeaderInfo {
    /// Format version the file was written in.
    pub version: u32,
    /// Sequence number of the chunk (it matches the file name).
    pub seq: u64,
    /// Size the file was preallocated to: the log's `Config::chunk_size` when it was
    /// created.
    pub chunk_size: u64,
    /// The tag every record of this chunk carries (the low 32 bits of the header's random
    /// epoch); records of a recycled file's earlier lives carry other tags.
    pub epoch_tag: u32,
    /// Creation time, milliseconds since the Unix epoch (informational).
    pub created_ms: u64,
}

impl ChunkHeaderInfo {
    fn from_header(h: &ChunkHeader) -> Self {
        ChunkHeaderInfo {
            version: h.version,
            seq: h.chunk_seq,
            chunk_size: h.chunk_size,
            epoch_tag: h.epoch_tag(),
            created_ms: h.created_ms,
        }
    }
}

/// What inspection found in one chunk file.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChunkReport {
    /// Sequence number.
    pub seq: u64,
    /// File length.
    pub file_len: u64,
    /// Header, if it decoded.
    pub header: Option<ChunkHeaderInfo>,
    /// Records in complete groups.
    pub records: u64,
    /// Entries among them: entry records, and the members of batch records.
    pub entries: u64,
    /// How the chunk ends, if it scanned.
    pub tail: Option<Tail>,
    /// The first problem, if any.
    pub error: Option<Error>,
}

/// Inspect every chunk in `dir`, oldest first. `on_record` sees each record of each
/// complete group; `on_chunk` sees each chunk's report as it is finished. Problems are
/// reported per chunk rather than stopping the scan. Errors only for an unreadable or
/// non-existent directory.
///
/// Read-only and lock-free: files are read into memory, never mapped and never written, so
/// this is safe on a log another process has open (a write caught half done shows as a
/// problem in the newest chunk). Records are reported as stored, including entries that a
/// later truncate or purge removed from the log: replay them in order to rebuild the state.
pub fn inspect_dir(
    dir: &Path,
    on_record: &mut dyn FnMut(&DumpRecord),
    on_chunk: &mut dyn FnMut(&ChunkReport),
) -> Result<Vec<ChunkReport>> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(_) => {
            return Err(Error::NoSuchDirectory {
                path: dir.to_path_buf(),
            })
        }
    }
    let seqs = list_chunk_names(dir)?.seqs;
    let mut out = Vec::with_capacity(seqs.len());
    for (i, &seq) in seqs.iter().enumerate() {
        let path = chunk_path(dir, seq);
        let file_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut rep = ChunkReport {
            seq,
            file_len,
            header: None,
            records: 0,
            entries: 0,
            tail: None,
            error: None,
        };
        if i > 0 && seqs[i - 1] + 1 != seq {
            rep.error = Some(Error::corrupt(
                seqs[i - 1] + 1,
                0,
                CorruptionKind::MissingChunk {
                    missing: seqs[i - 1] + 1,
                },
            ));
        }
        if let Err(e) = inspect_chunk(&path, i + 1 == seqs.len(), &mut rep, on_record) {
            rep.error.get_or_insert(e);
        }
        on_chunk(&rep);
        out.push(rep);
    }
    Ok(out)
}

/// Read one chunk file into memory (never mapped: the log may be live, see
/// `docs/safety.md`) and scan it into `rep`.
fn inspect_chunk(
    path: &Path,
    is_last: bool,
    rep: &mut ChunkReport,
    on_record: &mut dyn FnMut(&DumpRecord),
) -> Result<()> {
    let seq = rep.seq;
    check_seq(path, seq)?;
    let (header, bytes) = match read_chunk(path, seq)? {
        Loaded::Chunk { header, bytes } => (header, bytes),
        Loaded::Blank => {
            return Err(Error::corrupt(
                seq,
                0,
                CorruptionKind::ShortFile { len: rep.file_len },
            ))
        }
    };
    rep.header = Some(ChunkHeaderInfo::from_header(&header));
    let tail = scan_chunk(
        &bytes,
        seq,
        header.epoch_tag(),
        header.version,
        is_last,
        &mut |s| {
            rep.records += 1;
            match s.record {
                crate::format::Record::Entry { .. } => rep.entries += 1,
                crate::format::Record::Batch { head, .. } => rep.entries += u64::from(head.count),
                _ => {}
            }
            on_record(&DumpRecord::scanned(seq, s));
            Ok(())
        },
    )?;
    rep.tail = Some(tail);
    Ok(())
}
