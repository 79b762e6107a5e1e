//! A chunk file read into memory with `pread`, for the lock-free inspection paths: a log
//! open in another process is being written, so those paths never map it (mapped bytes
//! that change under a `&[u8]` are undefined behaviour; a copy is only a stale snapshot).
//! See `docs/safety.md`, "Inspection never maps".

use std::path::Path;

use super::file::open_regular;
use super::handle::{read_header, read_prefix};
use super::sys::data_end;
use crate::error::{Error, Result};
use crate::format::ChunkHeader;

/// What reading a chunk file found.
#[derive(Debug)]
pub enum Loaded {
    /// The file is empty or all zero: a chunk that never received its header.
    Blank,
    /// A chunk with a valid header, and a copy of the whole file (header included).
    Chunk {
        /// The decoded header.
        header: ChunkHeader,
        /// The file's bytes, as long as the file was when it was opened.
        bytes: Vec<u8>,
    },
}

/// Read chunk `seq` at `path` into memory, with the same header checks as
/// [`open_existing`](super::open_existing). Never maps, never blocks on a FIFO, and never
/// allocates more than `chunk_size` (at most `MAX_CHUNK_SIZE`) bytes.
pub fn read_chunk(path: &Path, seq: u64) -> Result<Loaded> {
    let file = open_regular(path, false)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat chunk", path, e))?
        .len();
    let Some(header) = read_header(&file, path, seq, len)? else {
        return Ok(Loaded::Blank);
    };
    // `read_header` checked `len <= chunk_size <= MAX_CHUNK_SIZE`. Past the last data
    // extent the file reads as zeroes: those bytes stay the (lazily zeroed) allocation.
    let data = data_end(&file).map_or(len, |e| e.min(len)) as usize;
    let mut bytes = vec![0u8; len as usize];
    let n = read_prefix(&file, &mut bytes[..data]).map_err(|e| Error::io("read chunk", path, e))?;
    if n < data {
        // The file got shorter meanwhile: keep what is still there.
        bytes.truncate(n);
    }
    Ok(Loaded::Chunk { header, bytes })
}
