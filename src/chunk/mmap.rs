//! The only module with `unsafe`: a mapped chunk with one writer and an immutable published prefix.
//!
//! Invariants this module enforces with its API (see `docs/safety.md`):
//! - bytes `[0, published)` never change again while the map exists; readers only ever get
//!   slices of that prefix;
//! - exactly one [`RegionWriter`] exists per writable region, and it writes (with `pwrite`,
//!   never through the mapping: every map is read-only) only at or past `published`, so no
//!   reader slice ever aliases a write;
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

use super::sys;

/// A mapped chunk file.
#[derive(Debug)]
pub struct Region {
    map: MmapRaw,
    /// The file, while the region is being appended to: the prefault thread reads ahead
    /// through it ([`Region::read_ahead`]). Dropped when its chunk is sealed, so a long log
    /// does not hold a descriptor per chunk.
    file: parking_lot::Mutex<Option<Arc<File>>>,
    /// The portable path only (`sys::FAST` false): the file its syncs go through
    /// (`fdatasync`, see [`Region::sync_range`]), from mapping until the sync owner has synced
    /// the sealed chunk whole ([`Region::release_sync_file`]). Always `None` on the Linux fast
    /// path, whose msync needs no descriptor.
    sync_file: parking_lot::Mutex<Option<Arc<File>>>,
    len: usize,
    published: AtomicUsize,
    path: PathBuf,
    /// Mapped from a file opened for writing: only then does `msync` sync anything (a
    /// shared mapping of a read-only file loses `VM_SHARED`, and its msync writes nothing).
    syncable: bool,
}

/// What [`Region::read_ahead`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// The read ahead was started.
    Done,
    /// The kernel refused the advice: nothing was done.
    Refused,
    /// The chunk was sealed meanwhile: nothing to do.
    Sealed,
}

/// The unique write handle of a writable [`Region`]: appends go through `pwrite` on its
/// file, at or past the published watermark, and become readable through the mapping once
/// published.
#[derive(Debug)]
pub struct RegionWriter {
    region: Arc<Region>,
    cursor: usize,
    file: Arc<File>,
}

impl Region {
    /// Map `len` bytes of `file` (opened read-write) for appending: the map itself is
    /// read-only, writes go through the returned writer's `pwrite`. The caller guarantees the
    /// file is at least `len` bytes long and its blocks are allocated. Nothing is published
    /// yet.
    ///
    /// Why not copy into a writable map: every sync of a written range write-protects the
    /// mapping's page-table entries of each page it cleans, with a TLB-shootdown IPI to the
    /// other CPUs running this process (the writer, above all) per page, and the writer then
    /// faults on the page it is filling. Measured with 8 to 32 batches in flight that halved
    /// durable throughput (`docs/durability.md` §12). Pages written with `pwrite` are in no
    /// page table, so a sync only writes them.
    ///
    /// A shared mapping of a file opened for writing keeps `VM_SHARED`, so `msync` of this
    /// read-only map still makes the range durable (`vfs_fsync_range`); it would not if the
    /// file were opened read-only.
    pub fn map_writable(file: &File, len: usize, path: &Path) -> io::Result<RegionWriter> {
        check_len(file, len)?;
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        let file = Arc::new(file.try_clone()?);
        let region = Arc::new(Region {
            map,
            file: parking_lot::Mutex::new(Some(Arc::clone(&file))),
            sync_file: parking_lot::Mutex::new((!sys::FAST).then(|| Arc::clone(&file))),
            len,
            published: AtomicUsize::new(0),
            path: path.to_path_buf(),
            syncable: true,
        });
        Ok(RegionWriter {
            region,
            cursor: 0,
            file,
        })
    }

    /// Map `len` bytes of `file` read-only; all of it is published.
    pub fn map_read_only(file: &File, len: usize, path: &Path) -> io::Result<Arc<Region>> {
        check_len(file, len)?;
        let map = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Arc::new(Region {
            map,
            file: parking_lot::Mutex::new(None),
            sync_file: parking_lot::Mutex::new(None),
            len,
            published: AtomicUsize::new(len),
            path: path.to_path_buf(),
            syncable: false,
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
        // the single writer only writes at or past `published` (see `RegionWriter::write`).
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
    /// Linux only: on the portable path this does nothing (other kernels' `MADV_DONTNEED`
    /// is a hint about page priority, not a release; the kernel reclaims clean file pages).
    pub fn release_pages(&self) -> io::Result<()> {
        if !sys::FAST {
            return Ok(());
        }
        // SAFETY: reached on Linux only (`sys::FAST`). The mapping is MAP_SHARED and
        // file-backed, so Linux's MADV_DONTNEED discards no data: dirty pages stay in the page
        // cache and later accesses re-read the same file contents. The virtual range stays
        // mapped, so every outstanding slice stays valid and sees the same bytes (published
        // bytes never change).
        unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        }
    }

    /// The chunk is sealed: nothing more is read ahead of a writer here, so let go of the
    /// file descriptor (an in-flight [`Region::read_ahead`] keeps its own handle).
    pub fn release_file(&self) {
        self.file.lock().take();
    }

    /// Start reading `[off, off + len)` into the page cache ahead of the writer
    /// (`POSIX_FADV_WILLNEED`), so that its `pwrite`s find the pages there: a recycled
    /// chunk's pages hold its old contents, which a write that does not cover a whole page
    /// would otherwise read from disk on the writer's thread; a fresh chunk's unwritten
    /// extents read as zeros without I/O, and its pages are allocated here instead of in
    /// the writer's copies. A hint: it changes no byte. Linux only: the portable path gives
    /// no advice and reports [`Ahead::Refused`].
    pub fn read_ahead(&self, off: usize, len: usize) -> Ahead {
        let Some(file) = self.file.lock().clone() else {
            return Ahead::Sealed;
        };
        let len = len.min(self.len.saturating_sub(off));
        let Some(len) = std::num::NonZeroU64::new(len as u64) else {
            return Ahead::Done;
        };
        if sys::will_need(&file, off as u64, len) {
            Ahead::Done
        } else {
            Ahead::Refused
        }
    }

    /// Make the byte range `[off, off + len)` durable: on return it is on stable storage.
    /// Refused for a read-only region, whose msync would silently write nothing.
    ///
    /// Linux: `msync(MS_SYNC)` of the range, which syncs the `pwrite`s into it
    /// (`vfs_fsync_range`). Portable: `fdatasync` of the whole file (`F_FULLFSYNC` on
    /// macOS), since other kernels' msync need not write back pages dirtied by `write`;
    /// refused once [`Region::release_sync_file`] let go of the file.
    pub fn sync_range(&self, off: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if !self.syncable {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "msync of a chunk mapped from a read-only file would write nothing",
            ));
        }
        if sys::FAST {
            return self.map.flush_range(off, len);
        }
        let Some(file) = self.sync_file.lock().clone() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "sync of a chunk whose sync handle was released",
            ));
        };
        sys::sync_file_data(&file)
    }

    /// The sync owner has synced this (sealed) chunk whole and will not sync it again: on the
    /// portable path, close the file its syncs used, so that a long log does not hold a
    /// descriptor per chunk. Nothing to do on the Linux fast path.
    pub fn release_sync_file(&self) {
        self.sync_file.lock().take();
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
        // the only writer is `self` (through `pwrite`), and it cannot write while this shared
        // borrow of `self` is alive. Concurrent readers only read.
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

    /// Write `buf` at the cursor (`pwrite`, at or past the published watermark) and move the
    /// cursor past it. Not yet readable: see [`RegionWriter::publish`]. A short or failed
    /// write leaves the cursor where it was.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = self
            .cursor
            .checked_add(buf.len())
            .filter(|&e| e <= self.region.len);
        let Some(end) = end else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the chunk",
            ));
        };
        debug_assert!(self.cursor >= self.region.published());
        self.file.write_all_at(buf, self.cursor as u64)?;
        self.cursor = end;
        Ok(())
    }

    /// Write `buf` as the region's last bytes (`pwrite`), without moving the cursor or
    /// publishing anything: a sealed chunk's trailer. Refused unless it lies wholly at or
    /// past the cursor, so it never touches a record or a published byte.
    pub fn write_at_end(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let at = self.region.len.checked_sub(buf.len());
        let Some(at) = at.filter(|&a| a >= self.cursor) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "trailer overlaps the records",
            ));
        };
        self.file.write_all_at(buf, at as u64)
    }

    /// Write `len` zero bytes at the cursor (recovery: over a torn tail).
    pub fn write_zeros(&mut self, len: usize) -> io::Result<()> {
        let zeros = vec![0u8; len.min(1 << 20)];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len());
            self.write(&zeros[..n])?;
            left -= n;
        }
        Ok(())
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
