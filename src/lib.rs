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
//! Layers, bottom up: [`format`] (bytes) → `chunk` (files and maps) → `flush` (the worker)
//! → `index` (SkipMap and cache) → [`Wal`] (the core).
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod adapter;
mod chunk;
mod config;
mod core;
mod error;
mod flush;
pub mod format;
mod index;
pub mod integrations;
mod types;

pub use crate::chunk::{chunk_file_name, scan_chunk, Scanned, Tail, LOCK_FILE};
#[cfg(feature = "testing")]
pub use crate::chunk::{FsEvent, FsObserver};
pub use crate::config::{Config, RecoveryMode, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
#[cfg(feature = "testing")]
pub use crate::config::{FailPoint, SyncHook, SyncRecorder};
pub use crate::core::{
    inspect_dir, AccessStat, ChunkReport, ChunkStat, DumpData, DumpRecord, Entries, OwnedRecord,
    Reader, Stat, Wal,
};
pub use crate::error::{CorruptionKind, Error, Result};
pub use crate::index::CacheStat;
pub use crate::types::{LogId, LogState, MAX_CHUNK_SEQ};
