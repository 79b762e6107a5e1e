//! Errors of the async adapter.

use std::sync::Arc;

/// Everything the adapter can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The core log refused or failed the operation.
    #[error(transparent)]
    Wal(#[from] crate::Error),
    /// The sync that was to make the caller's writes durable failed. Shared by every caller
    /// waiting on that sync; the log is poisoned and must be reopened.
    #[error("sync failed: {0}")]
    SyncFailed(#[source] Arc<crate::Error>),
    /// The log was closed (or its flush worker stopped) before the flush completed.
    #[error("the log closed before the flush completed")]
    Closed,
    /// The stored hard state does not decode.
    #[error("stored hard state is malformed: {reason} ({len} bytes)")]
    BadHardState {
        /// Length of the stored vote bytes.
        len: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// An adapter option is out of range.
    #[error("invalid adapter option {field}: {reason}")]
    InvalidOptions {
        /// The option.
        field: &'static str,
        /// The rule it broke.
        reason: &'static str,
    },
    /// The adapter could not start its batch timer thread.
    #[error("could not start the batch timer thread: {0}")]
    Timer(#[source] std::io::Error),
}
