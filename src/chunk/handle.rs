//! A chunk as the rest of the engine sees it: sequence number, header and mapped region.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::mmap::{Region, RegionWriter};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{ChunkHeader, HeaderError, FORMAT_VERSION, HEADER_LEN};

/// A chunk file that is part of the log.
#[derive(Debug)]
pub struct Chunk {
    /// Sequence number (from the file name, checked against the header).
    pub seq: u64,
    /// Decoded header.
    pub header: ChunkHeader,
    /// The mapping. Readers hold an `Arc<Chunk>`, so the mapping outlives a purge.
    pub region: Arc<Region>,
}

/// What opening an existing chunk file found.
#[derive(Debug)]
pub enum Opened {
    /// The file is empty or all zero: a chunk that never received its header.
    Blank,
    /// A valid chunk, mapped read-only.
    ReadOnly(Arc<Chunk>),
    /// A valid chunk, mapped read-write (the newest chunk, to continue writing).
    Writable(Arc<Chunk>, RegionWriter, usize),
}

/// Open chunk `seq` at `path`. `writable` maps it read-write, extending it back to
/// `chunk_size` first if it was cut short.
pub fn open_existing(path: &Path, seq: u64, writable: bool) -> Result<Opened> {
    open_existing_from(path, path, seq, writable)
}

/// [`open_existing`], reading the file at `from` (a prepared chunk open adopts, still under
/// its temporary name until the open succeeds) while the chunk is known by `path`.
pub fn open_existing_from(from: &Path, path: &Path, seq: u64, writable: bool) -> Result<Opened> {
    let file = super::file::open_regular(from, writable)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat chunk", path, e))?
        .len();
    let Some(header) = read_header(&file, from, seq, len)? else {
        return Ok(Opened::Blank);
    };
    if writable {
        // `read_header` checked `len <= chunk_size <= MAX_CHUNK_SIZE`.
        let want = header.chunk_size;
        if len < want {
            super::file::preallocate(&file, want)
                .map_err(|e| Error::io("re-extend chunk", path, e))?;
        }
        let w = Region::map_writable(&file, want as usize, path)
            .map_err(|e| Error::io("map chunk", path, e))?;
        let chunk = Arc::new(Chunk {
            seq,
            header,
            region: Arc::clone(w.region()),
        });
        // Where data may lie: past the last data extent the file reads as zeroes, so the
        // tail scan need not touch (and fault in) the unwritten rest of the chunk (Linux;
        // the portable path scans it all).
        let data_end = super::sys::data_end(&file).map_or(want, |e| e.min(want)) as usize;
        Ok(Opened::Writable(chunk, w, data_end))
    } else {
        let region = Region::map_read_only(&file, len as usize, path)
            .map_err(|e| Error::io("map chunk", path, e))?;
        Ok(Opened::ReadOnly(Arc::new(Chunk {
            seq,
            header,
            region,
        })))
    }
}

/// Read and check the header of chunk `seq`, the opened file `file` (at `path`, `len` bytes
/// long). `None`: the file is blank (empty or all zero), it never received a header.
/// A header is refused unless it decodes, names `seq`, and its `chunk_size` covers the file:
/// chunkwal never writes past `chunk_size`, and a longer file could hold offsets past it.
pub(super) fn read_header(
    file: &File,
    path: &Path,
    seq: u64,
    len: u64,
) -> Result<Option<ChunkHeader>> {
    let mut head = [0u8; HEADER_LEN];
    let n = read_prefix(file, &mut head).map_err(|e| Error::io("read chunk header", path, e))?;
    if head[..n].iter().all(|&b| b == 0) && super::file::is_blank_file(file, path)? {
        return Ok(None);
    }
    let header = match ChunkHeader::decode(&head[..n]) {
        Ok(h) => h,
        Err(HeaderError::NewerVersion(found)) => {
            return Err(Error::UnsupportedVersion {
                chunk: seq,
                found,
                supported: FORMAT_VERSION,
            })
        }
        Err(HeaderError::Corrupt(k)) => return Err(Error::corrupt(seq, 0, k)),
    };
    if header.chunk_seq != seq {
        return Err(Error::corrupt(
            seq,
            0,
            CorruptionKind::SeqMismatch {
                in_header: header.chunk_seq,
            },
        ));
    }
    if len > header.chunk_size {
        return Err(Error::corrupt(
            seq,
            0,
            CorruptionKind::BadHeaderField {
                field: "chunk_size",
            },
        ));
    }
    Ok(Some(header))
}

pub(super) fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        let r = file.read_at(&mut buf[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}
