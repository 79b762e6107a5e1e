//! Offline inspection of a log directory, without taking its lock or changing anything.
//! Backs the `stat`, `dump` and `verify` commands. Chunk files are read into memory, never
//! mapped: the log may be open, and written, in another process.

use std::path::Path;

use super::stat::{DumpRecord, OwnedRecord};
use crate::chunk::{check_seq, chunk_path, list_chunk_names, read_chunk, scan_chunk, Loaded, Tail};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::ChunkHeader;

/// What inspection found in one chunk file.
#[derive(Debug)]
pub struct ChunkReport {
    /// Sequence number.
    pub seq: u64,
    /// File length.
    pub file_len: u64,
    /// Header, if it decoded.
    pub header: Option<ChunkHeader>,
    /// Records in complete groups.
    pub records: u64,
    /// Entry records among them.
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
    rep.header = Some(header);
    let tail = scan_chunk(&bytes, seq, header.epoch_tag(), is_last, &mut |s| {
        rep.records += 1;
        if matches!(s.record, crate::format::Record::Entry { .. }) {
            rep.entries += 1;
        }
        on_record(&DumpRecord {
            chunk: seq,
            offset: s.offset as u64,
            encoded_len: s.encoded_len as u64,
            hint: s.hint,
            record: OwnedRecord::from_record(&s.record),
        });
        Ok(())
    })?;
    rep.tail = Some(tail);
    Ok(())
}
