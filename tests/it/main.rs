//! Integration tests: one binary, one module per concern.

mod adapter;
mod basic;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod concurrent;
#[cfg(feature = "d-engine")]
mod d_engine;
mod model;
mod recovery;
