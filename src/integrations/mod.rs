//! Integrations with Raft engines, each behind its own feature.

#[cfg(feature = "d-engine")]
pub mod d_engine;
