//! Integrations with Raft frameworks, each behind its own feature.

#[cfg(feature = "d-engine")]
pub mod d_engine;
#[cfg(feature = "openraft")]
pub mod openraft;
