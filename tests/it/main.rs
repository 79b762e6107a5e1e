//! Integration tests: one binary, one module per concern.

mod adapter;
mod basic;
#[cfg(feature = "cli")]
mod cli;
mod common;
mod concurrent;
mod corruption;
mod crash_kill;
mod crash_util;
#[cfg(feature = "d-engine")]
mod d_engine;
mod faults;
mod fuzz_corpus;
mod hostile;
mod live_inspect;
mod model;
#[cfg(feature = "openraft")]
mod openraft_suite;
mod power_loss;
mod recovery;
