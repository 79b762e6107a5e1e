//! The flush layer: the sync owner (the one place that syncs, installs and deletes chunk
//! files and moves the durable point) and the flush worker thread that batches requests
//! into it and fires the callbacks in order.

mod owner;
mod state;
mod worker;

pub use owner::{SyncOwner, Target};
pub use state::{DurableState, Poison};
pub use worker::{spawn, Callback, Job, WorkerHandle};
