//! chunkwal: a memory-mapped, segmented write-ahead log for Raft logs.
//!
//! Entries are written (one `pwrite` per call) into preallocated chunk files that readers
//! see through shared read-only maps, and purged chunks are recycled. A flush thread
//! makes them durable with `msync` (group commit) and reports back in order. A lock-free
//! `SkipMap` index and a bounded payload cache serve readers on any thread without ever
//! blocking the writer.
//!
//! ```no_run
//! use chunkwal::{Config, LogId, Wal};
//! let wal = Wal::open(Config::new("/tmp/my-raft-log"))?;
//! wal.append([(LogId::new(1, 1), bytes::Bytes::from_static(b"hello"))])?;
//! wal.flush_blocking()?; // durable from here on
//! assert_eq!(wal.read(1, 2)?[0].1, &b"hello"[..]);
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

#[cfg(feature = "testing")]
pub use crate::chunk::{scan_chunk, FsEvent, FsObserver, Scanned};
pub use crate::config::{Config, RecoveryMode, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
#[cfg(feature = "testing")]
pub use crate::config::{FailPoint, SyncHook, SyncRecorder};
pub use crate::core::{AccessStat, Reader, Wal};
pub use crate::error::{ConfigError, CorruptionKind, Error, Panicked, Result};
pub use crate::flush::FlushTicket;
pub use crate::index::CacheStat;
pub use crate::types::{LogId, LogState, MAX_CHUNK_SEQ};
