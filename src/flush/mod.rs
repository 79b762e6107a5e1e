//! The flush worker: a thread that syncs dirty ranges, fires callbacks in order, and moves
//! the durable point that bounds cache eviction.

mod state;
mod worker;

pub use state::{DurableState, Poison};
pub use worker::{spawn, sync_region, Callback, Install, Job, SyncTarget, WorkerHandle};
