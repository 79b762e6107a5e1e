//! Async Raft log store adapter over the synchronous core, runtime-agnostic.

mod backpressure;
mod batcher;
mod error;
mod hard_state;
mod log_store;
mod policy;
mod timer;

pub use error::AdapterError;
pub use hard_state::{HardState, HARD_STATE_LEN};
pub use log_store::LogStore;
pub use policy::{AdapterOptions, FlushPolicy, PersistenceStrategy};
