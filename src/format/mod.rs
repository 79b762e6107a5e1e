//! The on-disk byte layout: chunk headers, record frames and record bodies. Pure, no I/O.

mod body;
mod header;
mod record;
#[cfg(test)]
mod tests;

pub use body::{Record, StateImage};
pub use header::{ChunkHeader, HeaderError, CHUNK_MAGIC, FORMAT_VERSION, HEADER_LEN};
pub use record::{
    decode_frame, decode_frame_checked, encoded_len, write_frame, Frame, FrameError,
    FLAG_CONTINUES, RECORD_ALIGN, RECORD_HEADER_LEN,
};
