//! The only module with `unsafe`: a mapped chunk with one writer and an immutable published prefix.
//!
//! Invariants this module enforces with its API (see `docs/safety.md`):
//! - bytes `[0, published)` never change again while the map exists; readers only ever get
//!   slices of that prefix;
//! - exactly one [`RegionWriter`] exists per writable region, and it writes only at or past
//!   `published`, so no reader slice ever aliases a write;
//! - the file is preallocated to the mapped length before mapping and is never shrunk while
//!   mapped, so no access faults with SIGBUS.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A mapped chunk file.
#[derive(Debug)]
pub struct Region {
    map: MmapRaw,
    /// The file, while the region is being appended to (see [`Region::fault_ahead`]): its
    /// own open file description, not a dup of the mapping's, so that nothing done through
    /// it can consume a writeback error before the msync of the mapping sees it (each open
    /// file description has its own error cursor). Dropped when its chunk is sealed, so a
    /// long log does not hold a descriptor per chunk; `None` also where no second
    /// description could be opened (then pages are faulted in through the main mapping).
    file: parking_lot::Mutex<Option<Arc<File>>>,
    len: usize,
    published: AtomicUsize,
    path: PathBuf,
}

/// What [`Region::fault_ahead`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// The range was faulted in.
    Done,
    /// The kernel refused a mapping or an advice (an old kernel): nothing was done.
    Refused,
    /// The chunk was sealed meanwhile: nothing to do.
    Sealed,
}

/// The unique write handle of a writable [`Region`].
#[derive(Debug)]
pub struct RegionWriter {
    region: Arc<Region>,
    cursor: usize,
}

impl Region {
    /// Map `len` bytes of `file` read-write. The caller guarantees the file is at least `len`
    /// bytes long and its blocks are allocated. Nothing is published yet.
    pub fn map_writable(file: &File, len: usize, path: &Path) -> io::Result<RegionWriter> {
        check_len(file, len)?;
        let map = MmapOptions::new().len(len).map_raw(file)?;
        let region = Arc::new(Region {
            map,
            file: parking_lot::Mutex::new(own_description(file).map(Arc::new)),
            len,
            published: AtomicUsize::new(0),
            path: path.to_path_buf(),
        });
        Ok(RegionWriter { region, cursor: 0 })
    }

    /// Map `len` bytes of `file` read-only; all of it is published.
    pub fn map_read_only(file: &File, len: usize, path: &Path) -> io::Result<Arc<Region>> {
        check_len(file, len)?;
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Arc::new(Region {
            map,
            file: parking_lot::Mutex::new(None),
            len,
            published: AtomicUsize::new(len),
            path: path.to_path_buf(),
        }))
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The file this region maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many leading bytes are published (immutable and readable).
    pub fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// The published prefix.
    pub fn bytes(&self) -> &[u8] {
        let n = self.published();
        // SAFETY: `[0, n)` lies inside the mapping (n <= len, enforced by `publish`), the
        // mapping lives as long as `self`, and published bytes are never written again:
        // the single writer only writes at or past `published` (see `RegionWriter::space`).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), n) }
    }

    /// A published sub-slice, or `None` when it is not (yet) published.
    pub fn slice(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.bytes().get(off..off.checked_add(len)?)
    }

    /// A zero-copy [`Bytes`] of published bytes that keeps the mapping alive.
    pub fn bytes_at(self: &Arc<Self>, off: usize, len: usize) -> Option<Bytes> {
        self.slice(off, len)?;
        Some(Bytes::from_owner(MappedSlice {
            region: Arc::clone(self),
            off,
            len,
        }))
    }

    /// Drop this mapping's page-table entries (MADV_DONTNEED). The bytes stay in the page
    /// cache and on disk; the next access faults them back in unchanged. Used after replay so
    /// that a reopened log does not keep every chunk it scanned resident: on sealed chunks,
    /// and on the newest one right after open synced it, before any reader or the writer
    /// runs (dirty pages would not be lost anyway: their dirty state moves to the page cache).
    pub fn release_pages(&self) -> io::Result<()> {
        // SAFETY: the mapping is MAP_SHARED and file-backed, so MADV_DONTNEED discards no
        // data: dirty pages stay in the page cache and later accesses re-read the same file
        // contents. The virtual range stays mapped, so every outstanding slice stays valid and
        // sees the same bytes (published bytes never change).
        unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        }
    }

    /// Fault in `[off, off + len)` for writing ahead of the writer (MADV_POPULATE_WRITE), so
    /// page-fault and zero-fill work happens on the caller's thread instead of the writer's.
    /// A hint: errors (for example an older kernel) are for the caller to ignore.
    pub fn prefault(&self, off: usize, len: usize) -> io::Result<()> {
        let len = len.min(self.len.saturating_sub(off));
        if len == 0 {
            return Ok(());
        }
        self.map
            .advise_range(memmap2::Advice::PopulateWrite, off, len)
    }

    /// The chunk is sealed: nothing more is written ahead of a writer here, so let go of
    /// the file descriptor (an in-flight [`Region::fault_ahead`] keeps its own handle).
    pub fn release_file(&self) {
        self.file.lock().take();
    }

    /// Fault `[off, off + len)` of a writable region in ahead of the writer, through a
    /// short-lived second mapping of the same file advised `MADV_RANDOM`, so that the page
    /// cache backs it with single-page folios. Writes nothing back and changes no byte.
    ///
    /// Why (measured on ext4, Linux 6.18; see `docs/durability.md` §12 and
    /// `docs/benchmarks.md`): pages faulted in by a sequential writer through the main
    /// mapping are backed by folios of up to 2 MiB (fault-around and readahead ramp up), and
    /// dirtying one byte of such a folio dirties all of it, so every msync of a 16 KiB batch
    /// wrote whole large folios: 12-48 device bytes per payload byte instead of 1.2-1.7.
    ///
    /// A recycled chunk's blocks hold its old contents, which a write fault must read first:
    /// `MADV_WILLNEED` starts that read for the whole window at once (single-page folios
    /// too), so the faults that follow find the pages in the cache instead of reading them
    /// one by one. A fresh chunk's unwritten extents read as zeros without any I/O.
    pub fn fault_ahead(&self, off: usize, len: usize) -> Ahead {
        let Some(file) = self.file.lock().clone() else {
            return Ahead::Sealed;
        };
        let len = len.min(self.len.saturating_sub(off));
        if len == 0 {
            return Ahead::Done;
        }
        let Ok(window) = MmapOptions::new()
            .offset(off as u64)
            .len(len)
            .map_raw(&*file)
        else {
            return Ahead::Refused;
        };
        if window.advise(memmap2::Advice::Random).is_err() {
            return Ahead::Refused;
        }
        // A hint: without it the faults below read page by page.
        let _ = window.advise(memmap2::Advice::WillNeed);
        if window.advise(memmap2::Advice::PopulateWrite).is_err() {
            return Ahead::Refused;
        }
        Ahead::Done
    }

    /// msync(MS_SYNC) the byte range `[off, off + len)`: on return it is on stable storage.
    pub fn sync_range(&self, off: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(off, len)
    }
}

impl RegionWriter {
    /// The region this writer writes.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Next write position.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Every byte of the mapping, published or not. Sound because writes need `&mut self`,
    /// so none can happen while this borrow lives. Used by recovery to scan the tail.
    pub fn full_view(&self) -> &[u8] {
        // SAFETY: the whole mapping is valid for `len` bytes for the life of `self.region`;
        // the only writer is `self`, and it cannot write while this shared borrow of `self`
        // is alive. Concurrent readers only read.
        unsafe { std::slice::from_raw_parts(self.region.map.as_ptr(), self.region.len) }
    }

    /// Move the cursor forward (recovery sets it to the end of the valid records).
    pub fn seek(&mut self, pos: usize) {
        self.cursor = pos.clamp(self.region.published(), self.region.len);
    }

    /// Free bytes after the cursor.
    pub fn remaining(&self) -> usize {
        self.region.len - self.cursor
    }

    /// The unpublished bytes `[cursor, cursor + len)` for writing, if they fit.
    pub fn space(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.cursor.checked_add(len)?;
        if end > self.region.len {
            return None;
        }
        debug_assert!(self.cursor >= self.region.published());
        // SAFETY: `[cursor, end)` is inside the mapping (checked above) and at or past
        // `published` (cursor only moves forward from a value >= published, and publish sets
        // published <= cursor), so no reader holds a slice of it; `&mut self` makes this the
        // only live mutable view. The map was created writable (`map_raw`).
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.region.map.as_mut_ptr().add(self.cursor), len)
        })
    }

    /// Advance the cursor past bytes written through [`RegionWriter::space`].
    pub fn advance(&mut self, len: usize) {
        self.cursor = (self.cursor + len).min(self.region.len);
    }

    /// Publish everything before the cursor to readers.
    pub fn publish(&mut self) {
        self.region.published.store(self.cursor, Ordering::Release);
    }
}

/// Owner of a zero-copy slice; keeps the mapping alive for as long as the [`Bytes`] lives.
struct MappedSlice {
    region: Arc<Region>,
    off: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        // `bytes_at` checked the range was published, and published never shrinks.
        self.region.slice(self.off, self.len).unwrap_or_default()
    }
}

/// A second open file description of `file` (reopened through `/proc/self/fd`), unlike
/// `try_clone`, which dups the descriptor and shares the description and its writeback-error
/// cursor. `None` where that is not possible (no `/proc`).
fn own_description(file: &File) -> Option<File> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()
}

#[cfg(test)]
impl Region {
    /// The file used to fault pages in ahead of the writer (tests).
    pub(crate) fn ahead_file(&self) -> Option<Arc<File>> {
        self.file.lock().clone()
    }
}

fn check_len(file: &File, len: usize) -> io::Result<()> {
    let flen = file.metadata()?.len();
    if (flen as u128) < len as u128 || len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to map past the end of the file",
        ));
    }
    Ok(())
}
