//! The platform seam: each file-system call whose best form is Linux-only, with its portable
//! fallback beside it (see `docs/durability.md`, "Platforms").
//!
//! The Linux forms are compiled under `cfg(all(target_os = "linux", not(chunkwal_portable)))`;
//! every other target, and a Linux build with `--cfg chunkwal_portable` (so that `.ci/run`
//! tests the fallbacks), gets the portable ones. The mapping-level calls (msync, madvise)
//! sit in `mmap`, the only module with `unsafe`, and ask [`FAST`] which form to use.

use std::fs::File;
use std::io;

/// True when the Linux fast paths are compiled in: `msync` syncs `pwrite`s into the mapped
/// range, `MADV_DONTNEED` drops page-table entries at once, `POSIX_FADV_WILLNEED` reads ahead,
/// `SEEK_DATA`/`SEEK_HOLE` find the data. False on the portable path.
pub(super) const FAST: bool = cfg!(all(target_os = "linux", not(chunkwal_portable)));

/// Allocate blocks for the first `len` bytes of `f`, extending it if needed (`f` is never
/// shorter than `len` afterwards; callers never ask for less than the file's length). Reports
/// the real error, ENOSPC included. Where the platform has no allocation call, or the file
/// system refuses it (`EOPNOTSUPP`; ZFS's `posix_fallocate` says `EINVAL`), the file is
/// extended with written zeros instead ([`write_extend`]).
pub(super) fn preallocate(f: &File, len: u64) -> io::Result<()> {
    match allocate(f, len) {
        Err(e) if unsupported(&e) => write_extend(f, len),
        r => r,
    }
}

/// `fallocate(2)` with mode 0 on Linux (both paths: it is `posix_fallocate` without
/// glibc's emulation), `posix_fallocate` on FreeBSD, illumos and Android, `F_PREALLOCATE`
/// then `ftruncate` on macOS and iOS (which could shrink the file: callers never ask for
/// less than its length).
#[cfg(not(any(
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "nto",
    target_os = "redox",
    target_os = "espidf",
    target_os = "horizon",
    target_os = "vita",
)))]
fn allocate(f: &File, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, len).map_err(io::Error::from)
}

/// No allocation call in rustix (NetBSD, OpenBSD, DragonFly, ...): always [`write_extend`].
#[cfg(any(
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "nto",
    target_os = "redox",
    target_os = "espidf",
    target_os = "horizon",
    target_os = "vita",
))]
fn allocate(_f: &File, _len: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// The file system (or platform) has no preallocation: not an error of the file.
fn unsupported(e: &io::Error) -> bool {
    let Some(code) = e.raw_os_error() else {
        return false;
    };
    code == libc::EOPNOTSUPP
        || code == libc::ENOTSUP
        || (!cfg!(target_os = "linux") && code == libc::EINVAL)
}

/// Extend `f` to `len` bytes by writing zeros past its end (`pwrite`), so that the blocks
/// are allocated (on a file system that overwrites in place) and ENOSPC shows here. Bytes
/// already in the file are left alone.
pub(super) fn write_extend(f: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const STEP: u64 = 1 << 20;
    let zeros = vec![0u8; STEP as usize];
    let mut at = f.metadata()?.len();
    while at < len {
        let n = (len - at).min(STEP);
        f.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// End of the last data region of `f`: past it the file reads as zeros, so a scan need not
/// look there. Linux: `SEEK_DATA`/`SEEK_HOLE`; file systems without support report the whole
/// file as data, which only makes the caller scan more.
#[cfg(all(target_os = "linux", not(chunkwal_portable)))]
pub(super) fn data_end(f: &File) -> io::Result<u64> {
    use rustix::fs::{seek, SeekFrom};
    let mut end = 0;
    loop {
        let start = match seek(f, SeekFrom::Data(end)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => return Ok(end),
            Err(e) => return Err(e.into()),
        };
        end = seek(f, SeekFrom::Hole(start))?;
        if end <= start {
            return Ok(start);
        }
    }
}

/// Portable: the whole file counts as data, and the caller's scan (which stops at the last
/// non-zero byte) reads it all. `SEEK_HOLE` is not trusted elsewhere: HFS+ has none, and
/// OpenZFS has reported holes over dirty, not yet written data.
#[cfg(not(all(target_os = "linux", not(chunkwal_portable))))]
pub(super) fn data_end(f: &File) -> io::Result<u64> {
    Ok(f.metadata()?.len())
}

/// Read `[off, off + len)` of `f` into the page cache ahead of a writer. Linux:
/// `POSIX_FADV_WILLNEED`. `false` if nothing was done (refused, or the portable path, which
/// gives no advice).
#[cfg(all(target_os = "linux", not(chunkwal_portable)))]
pub(super) fn will_need(f: &File, off: u64, len: std::num::NonZeroU64) -> bool {
    rustix::fs::fadvise(f, off, Some(len), rustix::fs::Advice::WillNeed).is_ok()
}

/// Portable: no read-ahead advice (the writer reads or allocates its pages itself).
#[cfg(not(all(target_os = "linux", not(chunkwal_portable))))]
pub(super) fn will_need(_f: &File, _off: u64, _len: std::num::NonZeroU64) -> bool {
    false
}

/// Make everything written to `f` durable, data and the metadata needed to read it back:
/// `File::sync_data`, which is `fdatasync` on Linux, FreeBSD, NetBSD, OpenBSD and Android,
/// `fcntl(F_FULLFSYNC)` on macOS and iOS (a plain `fsync` there leaves the data in the
/// drive's cache), and `fsync` elsewhere. The portable form of a chunk sync.
pub(super) fn sync_file_data(f: &File) -> io::Result<()> {
    f.sync_data()
}

#[cfg(test)]
mod tests {
    //! Each call of the seam, asserted on whichever path this build compiled (`FAST`).

    use std::os::unix::fs::FileExt;

    use super::super::mmap::{Ahead, Region};
    use super::*;

    fn scratch() -> (tempfile::TempDir, std::path::PathBuf, File) {
        super::super::tests::scratch_file(0)
    }

    #[test]
    fn write_extend_appends_zeros_and_keeps_what_is_there() {
        let (_d, path, f) = scratch();
        f.write_all_at(b"head", 0).unwrap();
        write_extend(&f, (3 << 20) + 5).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), (3 << 20) + 5);
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..].iter().all(|&b| b == 0));
        // Never shrinks, and a second call past the length changes nothing.
        write_extend(&f, 10).unwrap();
        assert_eq!(f.metadata().unwrap().len(), (3 << 20) + 5);
    }

    #[test]
    fn preallocate_extends_to_the_length_with_zeros() {
        let (_d, path, f) = scratch();
        f.write_all_at(b"head", 0).unwrap();
        preallocate(&f, 1 << 20).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert_eq!(&bytes[..4], b"head");
        assert!(bytes[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn unsupported_means_no_allocation_call_only() {
        let code = io::Error::from_raw_os_error;
        assert!(unsupported(&code(libc::EOPNOTSUPP)));
        assert!(!unsupported(&code(libc::ENOSPC)), "a full disk is reported");
        assert!(!unsupported(&code(libc::EIO)));
        assert!(!unsupported(&io::Error::other("not an errno")));
    }

    /// A file with 4 KiB of data and then a hole: every path bounds the data within the file
    /// and never before its last data byte; the portable path takes the whole file.
    #[test]
    fn data_end_covers_the_data() {
        let (_d, _path, f) = scratch();
        f.write_all_at(&[7u8; 4096], 0).unwrap();
        f.set_len(1 << 20).unwrap();
        let end = data_end(&f).unwrap();
        assert!((4096..=1 << 20).contains(&end), "{end}");
        if !FAST {
            assert_eq!(end, 1 << 20, "the portable path scans it all");
        }
        // Data after the hole moves the end past it on every path.
        f.write_all_at(&[7u8; 4096], (1 << 20) - 4096).unwrap();
        assert_eq!(data_end(&f).unwrap(), 1 << 20);
    }

    /// The read-ahead hint is given on the fast path only.
    #[test]
    fn read_ahead_is_advice_on_linux_only() {
        let (_d, path, f) = scratch();
        f.set_len(1 << 16).unwrap();
        let w = Region::map_writable(&f, 1 << 16, &path).unwrap();
        let want = if FAST { Ahead::Done } else { Ahead::Refused };
        assert_eq!(w.region().read_ahead(0, 1 << 16), want);
        w.region().release_file();
        assert_eq!(w.region().read_ahead(0, 1 << 16), Ahead::Sealed);
    }

    /// A sealed chunk outlives its read-ahead handle and is still synced; once synced whole
    /// the portable path lets go of its sync handle too, and refuses to sync again rather
    /// than report a sync it cannot do. msync needs no handle.
    #[test]
    fn sync_handle_outlives_the_seal_until_synced_whole() {
        let (_d, path, f) = scratch();
        f.set_len(1 << 16).unwrap();
        let mut w = Region::map_writable(&f, 1 << 16, &path).unwrap();
        drop(f);
        w.write(b"data").unwrap();
        w.region().release_file();
        w.region().sync_range(0, 4096).unwrap();
        w.region().release_sync_file();
        let again = w.region().sync_range(0, 4096);
        if FAST {
            again.unwrap();
        } else {
            assert_eq!(again.unwrap_err().kind(), io::ErrorKind::Unsupported);
        }
        // Releasing pages never changes what the map shows.
        w.publish();
        w.region().release_pages().unwrap();
        assert_eq!(w.region().slice(0, 4), Some(&b"data"[..]));
    }
}
