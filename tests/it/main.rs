//! Integration tests: one binary, one module per concern.

mod ack_oracle;
mod ack_oracle_adapter;
#[cfg(feature = "openraft")]
mod ack_oracle_openraft;
mod adapter;
mod basic;
mod callbacks;
mod common;
mod compression;
mod concurrent;
mod corruption;
mod corruption_groups;
mod crash_image;
mod crash_kill;
mod crash_kill_groups;
mod crash_record;
mod crash_util;
#[cfg(feature = "d-engine")]
mod d_engine;
#[cfg(feature = "d-engine")]
mod d_engine_format;
#[cfg(feature = "d-engine")]
mod d_engine_reads;
mod faults;
mod fixtures;
mod fixtures_v1;
mod fixtures_v2;
mod fixtures_v3;
mod footer;
mod fuzz_corpus;
mod fuzz_seeds;
mod groups;
mod groups_rewrite;
mod history;
mod hostile;
mod hostile_entries;
mod in_flight;
mod in_flight_adapter;
#[cfg(feature = "openraft")]
mod in_flight_openraft;
mod live_inspect;
#[cfg(feature = "metrics")]
mod metrics;
mod model;
mod model_groups;
#[cfg(feature = "openraft")]
mod openraft_group_suite;
#[cfg(feature = "openraft")]
mod openraft_suite;
mod oracle;
mod power_loss;
mod power_loss_dirops;
mod power_loss_groups;
mod power_loss_recycle;
mod races;
mod reads;
mod recovery;
mod recycling;
mod tracing_events;
mod verify;
