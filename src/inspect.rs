//! Read-only inspection of a log: what the `chunkwal` tool's `stat`, `dump`, `verify` and
//! `repair` commands are built on, for your own tooling too.
//!
//! Two ways in:
//! - [`inspect_dir`] scans a log *directory* without opening it: no lock is taken and no
//!   file is mapped or written, so it is safe on a log another process has open. It reports
//!   every record as stored ([`DumpRecord`], [`OwnedRecord`]) and, per chunk file, a
//!   [`ChunkReport`] with its header ([`ChunkHeaderInfo`]), how it ends ([`Tail`]) and the
//!   first problem found.
//! - On an open [`Wal`](crate::Wal): [`Wal::stat`](crate::Wal::stat) ([`Stat`],
//!   [`ChunkStat`]), [`Wal::dump`](crate::Wal::dump) (records as stored) and
//!   [`Wal::dump_data`](crate::Wal::dump_data) ([`DumpData`]: the state and every live
//!   entry).
//!
//! [`chunk_file_name`] and [`LOCK_FILE`] name the files of a log directory (see
//! `docs/format.md`), for tools that copy or check them.
//!
//! Stability: nothing here changes a log. The structs and enums are `#[non_exhaustive]`:
//! a minor release may add fields, record kinds or tail verdicts (match with a `_` arm).
//! What they describe is the on-disk format, which is versioned on its own (every chunk
//! header carries its format version; a build refuses versions newer than it reads with
//! [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion)). The raw byte layout
//! (frame and header codecs) is not public.
//!
//! ```no_run
//! use chunkwal::inspect::{inspect_dir, OwnedRecord};
//!
//! let mut entries = 0;
//! let reports = inspect_dir(
//!     std::path::Path::new("/var/lib/my-raft/log"),
//!     &mut |r| entries += matches!(r.record, OwnedRecord::Entry { .. }) as u64,
//!     &mut |_| {},
//! )?;
//! let damaged = reports.iter().filter(|c| c.error.is_some()).count();
//! println!("{} chunks, {entries} entry records, {damaged} damaged", reports.len());
//! # Ok::<(), chunkwal::Error>(())
//! ```

pub use crate::chunk::{chunk_file_name, Tail, LOCK_FILE};
pub use crate::core::{
    inspect_dir, ChunkHeaderInfo, ChunkReport, ChunkStat, DumpData, DumpRecord, OwnedRecord, Stat,
};
