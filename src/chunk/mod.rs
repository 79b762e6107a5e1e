//! Chunk files: the mapped region (all `unsafe` lives in `mmap`), file handling and scanning;
//! the platform-specific calls sit behind one seam, `sys`.

mod file;
mod files;
mod handle;
mod mmap;
mod owned;
mod recycle;
mod scan;
mod sys;
#[cfg(test)]
mod tests;

pub use file::{
    check_seq, chunk_file_name, chunk_path, is_blank, list_chunk_names, list_chunks, lock_dir,
    sync_dir, tmp_path, LOCK_FILE,
};
pub use files::{Files, Hooks, IoCounters, PreparedChunk};
#[cfg(feature = "testing")]
pub use files::{FsEvent, FsObserver};
pub use handle::{open_existing, open_existing_from, Chunk, Opened};
pub use mmap::{Ahead, Region, RegionWriter};
pub use owned::{read_chunk, Loaded};
pub use recycle::free_path;
#[cfg(feature = "testing")]
pub use scan::Scanned;
#[cfg(not(feature = "testing"))]
pub(crate) use scan::Scanned;
pub use scan::{scan_chunk, scan_chunk_checked, Tail};
