//! The flush layer: the sync owner (the one place that syncs, installs and deletes chunk
//! files and moves the durable point), the flush worker thread that batches requests into
//! it, the callback thread that answers them in order, and the flush ticket.

mod callbacks;
pub(crate) mod oneshot;
mod owner;
mod state;
mod ticket;
mod worker;

pub use owner::{SyncOwner, Target};
pub use state::{DurableState, Poison};
pub use ticket::FlushTicket;
pub use worker::{spawn, Callback, Job, WorkerHandle};
