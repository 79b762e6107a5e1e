//! The synchronous core: open and recovery, the write path, the read path and statistics.

mod batch;
mod blame;
mod group;
mod groups;
mod inspect;
mod iter;
mod prefault;
mod range;
mod read;
mod recovery;
mod rewrite;
mod shared;
mod stat;
mod verify;
mod wal;
mod wal_groups;
mod write_batch;
mod writer;
mod writer_chunks;
mod writer_groups;

pub use group::{Group, GroupReader};
pub use inspect::{inspect_dir, ChunkHeaderInfo, ChunkReport};
pub use iter::Entries;
pub use read::{AccessStat, Reader};
pub use stat::{ChunkStat, DumpData, DumpRecord, OwnedRecord, Stat};
pub use verify::{VerifyProgress, VerifyReport, VerifyStatus};
pub use wal::Wal;
pub use wal_groups::GroupPin;
pub use write_batch::WriteBatch;
