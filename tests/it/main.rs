//! Integration tests: one binary, one module per concern.

mod basic;
mod common;
mod concurrent;
mod model;
#[cfg(feature = "openraft")]
mod openraft_suite;
mod recovery;
