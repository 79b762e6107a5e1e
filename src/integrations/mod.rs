//! Adapters that plug chunkwal into Raft frameworks, each behind its own feature.

#[cfg(feature = "openraft")]
pub mod openraft;
