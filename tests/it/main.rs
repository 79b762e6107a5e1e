//! Integration tests: one binary, one module per concern.

mod adapter;
mod basic;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod concurrent;
mod model;
mod recovery;
