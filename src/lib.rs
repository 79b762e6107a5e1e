//! chunkwal: a memory-mapped, segmented write-ahead log for Raft logs.
//!
//! Entries are written (one `pwrite` per call) into preallocated chunk files that readers
//! see through shared read-only maps, and purged chunks are recycled. A flush thread
//! makes them durable with `msync` (group commit) and reports back in order. A lock-free
//! `SkipMap` index and a bounded payload cache serve readers on any thread without ever
//! blocking the writer.
//!
//! ```
//! use bytes::Bytes;
//! use chunkwal::{Config, Error, LogId, Wal};
//!
//! let dir = tempfile::tempdir().unwrap(); // any directory; created if missing
//! let wal = Wal::open(Config::new(dir.path().join("log")))?;
//! wal.append((1..=5).map(|i| (LogId::new(1, i), Bytes::from(format!("entry {i}")))))?;
//! wal.flush_blocking()?; // durable from here on
//!
//! // Every read takes a range (`a..b`, `a..=b`, `a..`, `..=b`, `..`): all or nothing.
//! assert_eq!(wal.read(2..4)?.len(), 2);
//! assert_eq!(wal.read(..)?[0].1, "entry 1");
//! assert!(wal.read(6..)?.is_empty()); // nothing past the last entry yet
//! assert!(matches!(wal.read(4..=9), Err(Error::OutOfRange { last: Some(5), .. })));
//! // At most 16 payload bytes, but always one entry: entries 1 and 2 (7 bytes each).
//! assert_eq!(wal.read_bounded(1.., 16)?.len(), 2);
//! // Lazily, holding no lock; the term of an entry from the in-memory index alone.
//! let mut terms = Vec::new();
//! for e in wal.iter(3..)? {
//!     terms.push(e?.0.term);
//! }
//! assert_eq!(terms, [1, 1, 1]);
//! assert_eq!(wal.term(5), Some(1));
//!
//! wal.purge(LogId::new(1, 2))?; // drop up to and including 2
//! assert!(matches!(wal.read(1..=3), Err(Error::OutOfRange { first: Some(3), .. })));
//! # Ok::<(), chunkwal::Error>(())
//! ```
//!
//! Layers, bottom up: `format` (bytes) → `chunk` (files and maps) → `flush` (the worker)
//! → `index` (SkipMap and cache) → [`Wal`] (the core) → [`adapter`] (the async log store)
//! → [`integrations`] (openraft, d-engine). [`inspect`] is the read-only view of a log that
//! the `chunkwal` command-line tool (package `chunkwal-cli`) is built on.
//!
//! Cargo features: `openraft` and `d-engine` (the integrations), and `testing`: test seams
//! (fault and observer hooks in [`Config`], `Wal::simulate_crash`, `Wal::wait_worker_idle`,
//! `Wal::locate`, the `format` module), for this crate's own tests and fuzzers, outside any
//! stability promise.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod adapter;
mod chunk;
mod config;
mod core;
mod error;
mod flush;
/// The on-disk byte layout (feature `testing` only: for this crate's tests and fuzzers; no
/// stability promise). Read logs through [`inspect`].
#[cfg(feature = "testing")]
pub mod format;
#[cfg(not(feature = "testing"))]
mod format;
mod index;
pub mod inspect;
pub mod integrations;
mod observe;
mod types;

/// The README's Rust examples, compiled as doctests (`cargo test --doc`), so the README
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "testing")]
pub use crate::chunk::{scan_chunk, FsEvent, FsObserver, Scanned};
pub use crate::config::{
    Compression, Config, RecoveryMode, VerifyOnOpen, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
#[cfg(feature = "testing")]
pub use crate::config::{FailPoint, SyncHook, SyncRecorder};
pub use crate::core::{
    AccessStat, Entries, Group, GroupPin, GroupReader, Reader, VerifyProgress, VerifyReport,
    VerifyStatus, Wal, WriteBatch,
};
pub use crate::error::{ConfigError, CorruptionKind, Error, Panicked, Result};
pub use crate::flush::FlushTicket;
pub use crate::index::CacheStat;
pub use crate::types::{GroupId, LogId, LogState, MAX_CHUNK_SEQ};
