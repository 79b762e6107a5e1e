//! openraft 0.9 log storage (`RaftLogStorage` + `RaftLogReader`) over a chunkwal [`Wal`], or
//! over one group of a [`Wal`] shared by many Raft groups ([`ChunkwalGroupStore`]).
//!
//! [`Wal`]: crate::Wal

mod codec;
mod error;
mod meta;
mod reader;
mod store;

pub use error::StoreError;
pub use reader::{ChunkwalLogReader, DEFAULT_READ_LIMIT};
pub use store::{ChunkwalGroupStore, ChunkwalLogStore};
