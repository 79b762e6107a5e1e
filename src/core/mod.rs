//! The synchronous core: open and recovery, the write path, the read path and statistics.

mod blame;
mod inspect;
mod iter;
mod prefault;
mod range;
mod read;
mod recovery;
mod shared;
mod stat;
mod verify;
mod wal;
mod writer;

pub use inspect::{inspect_dir, ChunkHeaderInfo, ChunkReport};
pub use iter::Entries;
pub use read::{AccessStat, Reader};
pub use stat::{ChunkStat, DumpData, DumpRecord, OwnedRecord, Stat};
pub use verify::{VerifyProgress, VerifyReport, VerifyStatus};
pub use wal::Wal;
