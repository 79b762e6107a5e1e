//! Integration tests of the `chunkwal` binary: one test binary, one module per concern.

mod cli;
mod common;
mod hostile;
#[path = "../../../tests/it/hostile_entries.rs"]
mod hostile_entries;
mod live;
