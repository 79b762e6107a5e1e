//! Which chunk an open failure names when the newest chunk is garbage.
//!
//! Open replays chunks oldest first and verifies every chunk but the newest as sealed. If
//! the newest file is garbage (a random header, or no valid record where its first record
//! should be), the chunk before it was in truth the newest, so it ends without a seal and
//! replay fails there first: at the healthy end of the wrong chunk. The garbage file is the
//! cause, so the error names it.

use std::path::Path;

use crate::chunk::{chunk_path, read_chunk, scan_chunk, Loaded, Tail};
use crate::error::{CorruptionKind, Error};
use crate::format::{decode_frame, FrameError, HEADER_LEN};

/// `err` stopped an open of `dir`, whose newest chunk is `newest`. If `err` names the chunk
/// just before it and the newest chunk is garbage, the newest chunk's own error; else `err`.
pub(super) fn blame_newest(err: Error, dir: &Path, newest: Option<u64>) -> Error {
    let Some(newest) = newest else { return err };
    match &err {
        Error::Corruption { chunk, .. } if chunk.checked_add(1) == Some(newest) => {}
        _ => return err,
    }
    newest_garbage(dir, newest).unwrap_or(err)
}

/// Why chunk `seq` is garbage: its header does not decode, or it holds no complete group and
/// a damaged record where its first one should be. `None` if it looks like a chunk.
fn newest_garbage(dir: &Path, seq: u64) -> Option<Error> {
    // Only on a failed open, so reading the file into memory costs nothing that matters.
    let (header, bytes) = match read_chunk(&chunk_path(dir, seq), seq) {
        Err(e) => return Some(e),
        Ok(Loaded::Blank) => return None,
        Ok(Loaded::Chunk { header, bytes }) => (header, bytes),
    };
    let mut any = false;
    // Stop at the first complete group: a chunk with one is not garbage.
    let verdict = scan_chunk(
        &bytes,
        seq,
        header.epoch_tag(),
        header.version,
        true,
        &mut |_| {
            any = true;
            Err(Error::WorkerStopped)
        },
    );
    if any {
        return None;
    }
    match verdict {
        Ok(Tail::Torn { at, reason, .. }) => Some(Error::corrupt(seq, at as u64, reason)),
        // No record at all, but bytes where the first one should be: garbage too (a scan
        // leaves untagged bytes alone, as a recycled chunk's old contents).
        Ok(Tail::Clean { end }) if end == HEADER_LEN => match decode_frame(
            bytes.get(HEADER_LEN..).unwrap_or_default(),
            header.epoch_tag(),
        ) {
            Err(FrameError::Corrupt(reason)) if reason != CorruptionKind::ZeroHeader => {
                Some(Error::corrupt(seq, HEADER_LEN as u64, reason))
            }
            _ => None,
        },
        Ok(Tail::Clean { .. } | Tail::Sealed { .. }) => None,
        Err(e) => Some(e),
    }
}
