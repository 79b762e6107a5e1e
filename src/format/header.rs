//! The 64-byte chunk file header.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::CorruptionKind;

/// Magic bytes at the start of every chunk file.
pub const CHUNK_MAGIC: [u8; 8] = *b"CHUNKWAL";
/// The format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 3;
/// The first format version with groups: `FLAG_GROUP` frames, RemoveGroup records and
/// group runs in footers. An older build refuses such a chunk by its version instead of
/// misreading its group records as damage.
pub const GROUPS_VERSION: u32 = 3;
/// Size of the chunk header in bytes.
pub const HEADER_LEN: usize = 64;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    version: U32,
    header_len: U32,
    chunk_seq: U64,
    epoch: U64,
    chunk_size: U64,
    created_ms: U64,
    reserved: [u8; 12],
    crc: U32,
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_LEN);

/// A decoded chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Format version of the file.
    pub version: u32,
    /// Sequence number of the chunk; matches the file name.
    pub chunk_seq: u64,
    /// Random per-file value; records carry its low 32 bits.
    pub epoch: u64,
    /// Size the file was preallocated to.
    pub chunk_size: u64,
    /// Creation time, milliseconds since the Unix epoch (informational).
    pub created_ms: u64,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The header is damaged or not a chunkwal header.
    Corrupt(CorruptionKind),
    /// The header is intact but from a newer format.
    NewerVersion(u32),
}

impl ChunkHeader {
    /// The epoch tag records in this chunk carry.
    pub fn epoch_tag(&self) -> u32 {
        self.epoch as u32
    }

    /// Encode into exactly [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut raw = RawHeader {
            magic: CHUNK_MAGIC,
            version: U32::new(self.version),
            header_len: U32::new(HEADER_LEN as u32),
            chunk_seq: U64::new(self.chunk_seq),
            epoch: U64::new(self.epoch),
            chunk_size: U64::new(self.chunk_size),
            created_ms: U64::new(self.created_ms),
            reserved: [0; 12],
            crc: U32::new(0),
        };
        let crc = crc32c::crc32c(&raw.as_bytes()[..HEADER_LEN - 4]);
        raw.crc = U32::new(crc);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// Decode and validate a header. Total: any input gives a value or an error.
    pub fn decode(bytes: &[u8]) -> Result<ChunkHeader, HeaderError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(HeaderError::Corrupt(CorruptionKind::ShortFile {
                len: bytes.len() as u64,
            }));
        };
        let Ok(raw) = RawHeader::ref_from_bytes(head) else {
            return Err(HeaderError::Corrupt(CorruptionKind::ShortFile {
                len: bytes.len() as u64,
            }));
        };
        if raw.magic != CHUNK_MAGIC {
            return Err(HeaderError::Corrupt(CorruptionKind::BadMagic));
        }
        let computed = crc32c::crc32c(&head[..HEADER_LEN - 4]);
        if computed != raw.crc.get() {
            return Err(HeaderError::Corrupt(CorruptionKind::HeaderChecksum {
                stored: raw.crc.get(),
                computed,
            }));
        }
        let version = raw.version.get();
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        if version == 0 {
            return Err(HeaderError::Corrupt(CorruptionKind::BadHeaderField {
                field: "version",
            }));
        }
        if raw.header_len.get() as usize != HEADER_LEN {
            return Err(HeaderError::Corrupt(CorruptionKind::BadHeaderField {
                field: "header_len",
            }));
        }
        if raw.reserved != [0; 12] {
            return Err(HeaderError::Corrupt(CorruptionKind::BadHeaderField {
                field: "reserved",
            }));
        }
        let chunk_size = raw.chunk_size.get();
        if !chunk_size_in_range(chunk_size) {
            return Err(HeaderError::Corrupt(CorruptionKind::BadHeaderField {
                field: "chunk_size",
            }));
        }
        Ok(ChunkHeader {
            version,
            chunk_seq: raw.chunk_seq.get(),
            epoch: raw.epoch.get(),
            chunk_size,
            created_ms: raw.created_ms.get(),
        })
    }
}

/// Chunk sizes are whole 4 KiB pages, at most [`MAX_CHUNK_SIZE`](crate::MAX_CHUNK_SIZE)
/// (offsets inside a chunk must fit in 32 bits), and never zero. `Config` asks for at least
/// [`MIN_CHUNK_SIZE`](crate::MIN_CHUNK_SIZE) for new chunks; the reader accepts any page
/// count, which is always longer than the header.
fn chunk_size_in_range(size: u64) -> bool {
    size != 0 && size % CHUNK_SIZE_ALIGN == 0 && size <= crate::config::MAX_CHUNK_SIZE
}

/// Chunk sizes are multiples of this.
const CHUNK_SIZE_ALIGN: u64 = 4096;
const _: () = assert!(CHUNK_SIZE_ALIGN >= HEADER_LEN as u64);
