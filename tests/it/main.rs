//! Integration tests: one binary, one module per concern.

mod basic;
mod common;
mod concurrent;
mod model;
mod recovery;
mod crash_kill;
mod crash_util;
