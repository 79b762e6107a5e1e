//! Observability hooks in one place: the log's `metrics` facade handles (feature `metrics`;
//! every name is in `docs/metrics.md`) and the tracing of syncs (span, slow-sync warning).
//!
//! Handles are taken once, at open, from the recorder installed then (the thread's local
//! recorder, else the global one), so the hot path only bumps them: no key is built, hashed
//! or allocated per call. Without the feature [`Metrics`] is empty and every hook is an
//! empty inline function.

use std::path::Path;
use std::time::{Duration, Instant};

/// Every metric of a log, registered at open. Shared (in an `Arc`) by the layers that
/// report to it: the chunk files, the sync owner, the poison flag, the cache and the writer.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    h: handles::Handles,
}

impl Metrics {
    /// Register every metric with the current recorder (a no-op without the feature).
    pub fn register() -> Metrics {
        Metrics {
            #[cfg(feature = "metrics")]
            h: handles::Handles::register(),
        }
    }

    /// A write call appended entries with `payloads` (one per entry). Once per call.
    #[inline]
    pub fn appended(&self, payloads: &[bytes::Bytes]) {
        #[cfg(feature = "metrics")]
        {
            let bytes: usize = payloads.iter().map(bytes::Bytes::len).sum();
            self.h.appends.increment(1);
            self.h.append_entries.increment(payloads.len() as u64);
            self.h.append_bytes.increment(bytes as u64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = payloads;
    }

    /// `bytes` of framed records reached a chunk file (one `pwrite`).
    #[inline]
    pub fn wrote(&self, bytes: usize) {
        #[cfg(feature = "metrics")]
        self.h.write_bytes.increment(bytes as u64);
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// A flush was requested (`flush` or `flush_blocking`).
    #[inline]
    pub fn flush_requested(&self) {
        #[cfg(feature = "metrics")]
        self.h.flush_requests.increment(1);
    }

    /// A sync completed: `bytes` msynced in `took`; `slow` if it passed the threshold.
    #[inline]
    pub fn synced(&self, bytes: u64, took: Duration, slow: bool) {
        #[cfg(feature = "metrics")]
        {
            self.h.syncs.increment(1);
            self.h.sync_seconds.record(took.as_secs_f64());
            self.h.sync_bytes.record(bytes as f64);
            if slow {
                self.h.slow_syncs.increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (bytes, took, slow);
    }

    /// A payload cache lookup hit or missed.
    #[inline]
    pub fn cache_lookup(&self, hit: bool) {
        #[cfg(feature = "metrics")]
        if hit {
            self.h.cache_hits.increment(1);
        } else {
            self.h.cache_misses.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = hit;
    }

    /// A chunk file was prepared: `recycled` from a spare, else created new.
    #[inline]
    pub fn chunk_prepared(&self, recycled: bool) {
        #[cfg(feature = "metrics")]
        if recycled {
            self.h.chunks_recycled.increment(1);
        } else {
            self.h.chunks_created.increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = recycled;
    }

    /// `n` chunks joined the log (open, rotation).
    #[inline]
    pub fn chunks_added(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.h.chunks_moved(n as i64);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// `n` chunks left the log (purge).
    #[inline]
    pub fn chunks_removed(&self, n: usize) {
        #[cfg(feature = "metrics")]
        self.h.chunks_moved(-(n as i64));
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// The log was poisoned (once per log: the first fatal error).
    #[inline]
    pub fn poisoned(&self) {
        #[cfg(feature = "metrics")]
        self.h.poisoned.increment(1);
    }
}

/// One sync pass of the sync owner: a `chunkwal_sync` span (debug) around it, and on
/// completion its bytes and duration recorded, as metrics and on the span, with a warning
/// past the configured threshold. A pass that found nothing to do records nothing.
pub(crate) struct SyncPass {
    span: tracing::Span,
    start: Instant,
    bytes: u64,
    worked: bool,
}

impl SyncPass {
    /// Start a pass towards chunk `seq` of the log in `dir` (after taking the sync turn).
    pub fn start(dir: &Path, seq: u64) -> SyncPass {
        let span = tracing::debug_span!(
            "chunkwal_sync",
            dir = %dir.display(),
            seq,
            bytes = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        );
        SyncPass {
            span,
            start: Instant::now(),
            bytes: 0,
            worked: false,
        }
    }

    /// The pass's span, to enter while it runs.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// An msync covered `bytes`.
    pub fn synced(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.worked |= bytes > 0;
    }

    /// A chunk was installed (renamed, directory fsynced).
    pub fn installed(&mut self) {
        self.worked = true;
    }

    /// The pass succeeded: record it, and warn if it took longer than `warn_after`.
    pub fn finish(self, dir: &Path, metrics: &Metrics, warn_after: Option<Duration>) {
        if !self.worked {
            return;
        }
        let took = self.start.elapsed();
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.span.record("bytes", self.bytes);
        self.span.record("duration_us", us);
        let slow = warn_after.is_some_and(|t| took > t);
        if slow {
            tracing::warn!(
                dir = %dir.display(),
                bytes = self.bytes,
                duration_ms = us / 1000,
                threshold_ms = warn_after.map_or(0, |t| t.as_millis() as u64),
                "slow sync: making the log durable took longer than slow_sync_warn"
            );
        }
        metrics.synced(self.bytes, took, slow);
    }
}

#[cfg(feature = "metrics")]
mod handles {
    //! The `metrics` handles themselves (feature `metrics`).

    use std::sync::atomic::{AtomicI64, Ordering};

    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
        Gauge, Histogram, Unit,
    };

    /// One handle per metric. The names and their docs are in `docs/metrics.md`.
    #[derive(Debug)]
    pub(super) struct Handles {
        pub appends: Counter,
        pub append_entries: Counter,
        pub append_bytes: Counter,
        pub write_bytes: Counter,
        pub flush_requests: Counter,
        pub syncs: Counter,
        pub slow_syncs: Counter,
        pub sync_seconds: Histogram,
        pub sync_bytes: Histogram,
        pub cache_hits: Counter,
        pub cache_misses: Counter,
        pub chunks: Gauge,
        /// What this log added to the `chunks` gauge (taken back when it is dropped, so
        /// several logs in one process add up).
        pub chunks_live: AtomicI64,
        pub chunks_created: Counter,
        pub chunks_recycled: Counter,
        pub poisoned: Counter,
    }

    impl Default for Handles {
        fn default() -> Self {
            Handles {
                appends: Counter::noop(),
                append_entries: Counter::noop(),
                append_bytes: Counter::noop(),
                write_bytes: Counter::noop(),
                flush_requests: Counter::noop(),
                syncs: Counter::noop(),
                slow_syncs: Counter::noop(),
                sync_seconds: Histogram::noop(),
                sync_bytes: Histogram::noop(),
                cache_hits: Counter::noop(),
                cache_misses: Counter::noop(),
                chunks: Gauge::noop(),
                chunks_live: AtomicI64::new(0),
                chunks_created: Counter::noop(),
                chunks_recycled: Counter::noop(),
                poisoned: Counter::noop(),
            }
        }
    }

    const APPENDS: &str = "chunkwal_appends_total";
    const APPEND_ENTRIES: &str = "chunkwal_append_entries_total";
    const APPEND_BYTES: &str = "chunkwal_append_bytes_total";
    const WRITE_BYTES: &str = "chunkwal_write_bytes_total";
    const FLUSH_REQUESTS: &str = "chunkwal_flush_requests_total";
    const SYNCS: &str = "chunkwal_syncs_total";
    const SLOW_SYNCS: &str = "chunkwal_slow_syncs_total";
    const SYNC_SECONDS: &str = "chunkwal_sync_duration_seconds";
    const SYNC_BYTES: &str = "chunkwal_sync_bytes";
    const CACHE_HITS: &str = "chunkwal_cache_hits_total";
    const CACHE_MISSES: &str = "chunkwal_cache_misses_total";
    const CHUNKS: &str = "chunkwal_chunks";
    const CHUNKS_CREATED: &str = "chunkwal_chunks_created_total";
    const CHUNKS_RECYCLED: &str = "chunkwal_chunks_recycled_total";
    const POISONED: &str = "chunkwal_poisoned_total";

    impl Handles {
        pub fn register() -> Handles {
            describe();
            Handles {
                appends: counter!(APPENDS),
                append_entries: counter!(APPEND_ENTRIES),
                append_bytes: counter!(APPEND_BYTES),
                write_bytes: counter!(WRITE_BYTES),
                flush_requests: counter!(FLUSH_REQUESTS),
                syncs: counter!(SYNCS),
                slow_syncs: counter!(SLOW_SYNCS),
                sync_seconds: histogram!(SYNC_SECONDS),
                sync_bytes: histogram!(SYNC_BYTES),
                cache_hits: counter!(CACHE_HITS),
                cache_misses: counter!(CACHE_MISSES),
                chunks: gauge!(CHUNKS),
                chunks_live: AtomicI64::new(0),
                chunks_created: counter!(CHUNKS_CREATED),
                chunks_recycled: counter!(CHUNKS_RECYCLED),
                poisoned: counter!(POISONED),
            }
        }

        /// Move the chunk gauge by `n` (negative: down).
        pub fn chunks_moved(&self, n: i64) {
            self.chunks_live.fetch_add(n, Ordering::Relaxed);
            if n >= 0 {
                self.chunks.increment(n as f64);
            } else {
                self.chunks.decrement(-n as f64);
            }
        }
    }

    impl Drop for Handles {
        fn drop(&mut self) {
            let live = self.chunks_live.load(Ordering::Relaxed);
            self.chunks.decrement(live as f64);
        }
    }

    fn describe() {
        let c = |name: &'static str, unit: Unit, what: &'static str| {
            describe_counter!(name, unit, what);
        };
        c(APPENDS, Unit::Count, "Write calls that appended entries");
        c(APPEND_ENTRIES, Unit::Count, "Entries appended");
        c(APPEND_BYTES, Unit::Bytes, "Payload bytes appended");
        c(
            WRITE_BYTES,
            Unit::Bytes,
            "Framed record bytes written to chunk files",
        );
        c(FLUSH_REQUESTS, Unit::Count, "Flushes requested");
        c(SYNCS, Unit::Count, "Completed syncs (group commits)");
        c(
            SLOW_SYNCS,
            Unit::Count,
            "Syncs slower than Config::slow_sync_warn",
        );
        c(CACHE_HITS, Unit::Count, "Payload cache lookups served");
        c(
            CACHE_MISSES,
            Unit::Count,
            "Payload cache lookups that missed",
        );
        c(CHUNKS_CREATED, Unit::Count, "Chunk files created new");
        c(
            CHUNKS_RECYCLED,
            Unit::Count,
            "Chunk files reused from spares",
        );
        c(POISONED, Unit::Count, "Logs poisoned by a fatal error");
        describe_histogram!(SYNC_SECONDS, Unit::Seconds, "Duration of each sync");
        describe_histogram!(SYNC_BYTES, Unit::Bytes, "Bytes msynced by each sync");
        describe_gauge!(CHUNKS, Unit::Count, "Chunk files in the log");
    }
}
