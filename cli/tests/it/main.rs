//! Integration tests of the `chunkwal` binary: one test binary, one module per concern.

mod cli;
mod common;
mod hostile;
mod live;
