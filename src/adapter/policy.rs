//! Persistence strategy, flush policy and the adapter options that combine them.

use std::time::Duration;

use super::error::AdapterError;

/// When `persist_entries` returns, relative to durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersistenceStrategy {
    /// `persist_entries` returns only once a sync covered the entries (per the
    /// [`FlushPolicy`]). Writes are durable on return.
    #[default]
    DiskFirst,
    /// `persist_entries` returns once the entries are in the log (readable); the flush
    /// policy makes them durable in the background. Bounded by `max_unflushed_bytes`.
    MemFirst,
}

/// When a sync is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// A sync after every write (concurrent writers still share one msync: group commit).
    #[default]
    Immediate,
    /// A sync once `threshold` entries wait unflushed, or once `interval` passed since the
    /// last sync while unflushed writes exist (checked by the adapter's timer thread).
    Batch {
        /// Unflushed entries that trigger a sync. At least 1.
        threshold: usize,
        /// Longest time unflushed writes wait for a sync. Non-zero.
        interval: Duration,
    },
}

/// Options of [`super::LogStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterOptions {
    /// Default [`PersistenceStrategy::DiskFirst`].
    pub strategy: PersistenceStrategy,
    /// Default [`FlushPolicy::Immediate`].
    pub policy: FlushPolicy,
    /// MemFirst only: when more encoded bytes than this are written but not yet durable,
    /// writers wait (asynchronously) for a flush before writing more. Default 64 MiB.
    pub max_unflushed_bytes: u64,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            strategy: PersistenceStrategy::default(),
            policy: FlushPolicy::default(),
            max_unflushed_bytes: 64 << 20,
        }
    }
}

impl AdapterOptions {
    /// Options with this strategy and policy and the default bound.
    pub fn new(strategy: PersistenceStrategy, policy: FlushPolicy) -> Self {
        AdapterOptions {
            strategy,
            policy,
            ..AdapterOptions::default()
        }
    }

    /// Set the MemFirst backpressure bound.
    pub fn max_unflushed_bytes(mut self, bytes: u64) -> Self {
        self.max_unflushed_bytes = bytes;
        self
    }

    /// Whether `persist_entries` returns only after a sync covered the entries.
    pub fn is_write_durable(&self) -> bool {
        self.strategy == PersistenceStrategy::DiskFirst
    }

    /// Check every bound.
    pub fn validate(&self) -> Result<(), AdapterError> {
        if let FlushPolicy::Batch {
            threshold,
            interval,
        } = self.policy
        {
            if threshold == 0 {
                return Err(AdapterError::InvalidOptions {
                    field: "policy.threshold",
                    reason: "must be at least 1",
                });
            }
            if interval.is_zero() {
                return Err(AdapterError::InvalidOptions {
                    field: "policy.interval",
                    reason: "must be non-zero",
                });
            }
        }
        if self.max_unflushed_bytes == 0 {
            return Err(AdapterError::InvalidOptions {
                field: "max_unflushed_bytes",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}
