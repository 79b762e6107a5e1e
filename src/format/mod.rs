//! The on-disk byte layout: chunk headers, record frames and record bodies. Pure, no I/O.

mod batch;
mod body;
mod footer;
mod footer_builder;
mod footer_error;
#[cfg(test)]
mod footer_group_tests;
#[cfg(test)]
mod footer_tests;
mod header;
mod record;
#[cfg(test)]
mod tests;

pub use batch::BatchHead;
#[cfg(feature = "compression")]
pub use batch::{compress_into, decompress, BATCH_MIN_VERSION};
#[cfg(any(test, feature = "testing", feature = "compression"))]
pub use batch::{member_ranges, push_member, BATCH_HEAD_LEN, CODEC_LZ4, MEMBER_LEN_BYTES};
pub use body::{Record, StateImage};
#[cfg(any(test, feature = "testing"))]
pub use footer::{decode_body, Footer, Run, Trailer, TRAILER_MAGIC};
pub use footer::{read_footer, Item, BODY_HEAD_LEN, FOOTER_VERSION, TRAILER_LEN};
pub use footer_builder::{FooterBuilder, MAX_GROWTH_PER_GROUP_RECORD, MAX_GROWTH_PER_RECORD};
pub use footer_error::FooterError;
#[cfg(any(test, feature = "testing"))]
pub use header::CHUNK_MAGIC;
pub use header::{ChunkHeader, HeaderError, FORMAT_VERSION, GROUPS_VERSION, HEADER_LEN};
#[cfg(any(test, feature = "testing"))]
pub use record::Frame;
pub use record::{
    decode_frame, decode_frame_checked, encoded_len, write_frame, FrameError, FLAG_CONTINUES,
    FLAG_GROUP, GROUP_PREFIX_LEN, RECORD_ALIGN, RECORD_HEADER_LEN,
};
