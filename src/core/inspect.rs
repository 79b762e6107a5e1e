//! Offline inspection of a log directory, without taking its lock or changing anything.
//! Backs the `stat`, `dump` and `verify` commands.

use std::path::Path;

use super::stat::{DumpRecord, OwnedRecord};
use crate::chunk::{chunk_path, list_chunks, open_existing, scan_chunk, Opened, Tail};
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
    let (seqs, _) = list_chunks(dir)?;
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
        match open_existing(&path, seq, false) {
            Ok(Opened::ReadOnly(c)) => {
                rep.header = Some(c.header);
                let is_last = i + 1 == seqs.len();
                let r = scan_chunk(
                    c.region.bytes(),
                    seq,
                    c.header.epoch_tag(),
                    is_last,
                    &mut |s| {
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
                    },
                );
                match r {
                    Ok(t) => rep.tail = Some(t),
                    Err(e) => {
                        rep.error.get_or_insert(e);
                    }
                }
            }
            Ok(_) => {
                rep.error.get_or_insert(Error::corrupt(
                    seq,
                    0,
                    CorruptionKind::ShortFile { len: file_len },
                ));
            }
            Err(e) => {
                rep.error.get_or_insert(e);
            }
        }
        on_chunk(&rep);
        out.push(rep);
    }
    Ok(out)
}
