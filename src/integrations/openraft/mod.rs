//! openraft 0.9 log storage (`RaftLogStorage` + `RaftLogReader`) over a chunkwal [`Wal`].
//!
//! [`Wal`]: crate::Wal

mod codec;
mod error;
mod meta;
mod reader;
mod store;

pub use error::StoreError;
pub use reader::{ChunkwalLogReader, DEFAULT_READ_LIMIT};
pub use store::ChunkwalLogStore;
