//! Chunk files on disk: naming, creation with preallocation, the directory lock and fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use fs2::FileExt;

use super::recycle::{free_path, parse_free_name, tag_for_seq};
use crate::error::{Error, Result};
use crate::format::{ChunkHeader, FORMAT_VERSION};
use crate::types::MAX_CHUNK_SEQ;

const CHUNK_SUFFIX: &str = ".chunk";
const TMP_SUFFIX: &str = ".chunk.tmp";
/// Name of the lock file inside a log directory.
pub const LOCK_FILE: &str = "LOCK";

/// File name of chunk `seq`.
pub fn chunk_file_name(seq: u64) -> String {
    format!("{seq:020}{CHUNK_SUFFIX}")
}

/// Path of chunk `seq` in `dir`.
pub fn chunk_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(chunk_file_name(seq))
}

/// The sequence number in a chunk file name.
pub fn parse_chunk_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(CHUNK_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// fsync a directory so that file creations, renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// What a log directory holds, by file name only.
#[derive(Debug, Default)]
pub struct Listing {
    /// Chunk sequence numbers, sorted.
    pub seqs: Vec<u64>,
    /// Leftover temporary files of an interrupted rotation (never part of the log), sorted.
    pub tmps: Vec<PathBuf>,
    /// Spares (purged chunks kept for reuse, see `recycle`), by their old sequence number,
    /// sorted.
    pub free: Vec<u64>,
}

/// Sorted chunk sequence numbers in `dir`, the leftover temporary files of an interrupted
/// rotation, and the spares, by name only: nothing is opened or checked. Changes nothing.
pub fn list_chunk_names(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_chunk_name(name) {
            l.seqs.push(seq);
        } else if name.ends_with(TMP_SUFFIX) {
            l.tmps.push(ent.path());
        } else if let Some(seq) = parse_free_name(name) {
            l.free.push(seq);
        }
    }
    l.seqs.sort_unstable();
    l.tmps.sort_unstable();
    l.free.sort_unstable();
    Ok(l)
}

/// [`list_chunk_names`] for opening a log: refuses, before anything is opened or changed, a
/// directory holding a chunk, temporary chunk file or spare whose sequence number is past
/// [`MAX_CHUNK_SEQ`], or that is not a regular file (a FIFO there would block the open).
pub fn list_chunks(dir: &Path) -> Result<Listing> {
    let l = list_chunk_names(dir)?;
    for &seq in &l.seqs {
        check_entry(&chunk_path(dir, seq), Some(seq))?;
    }
    for p in &l.tmps {
        let seq = p.file_name().and_then(|n| n.to_str()).and_then(tmp_seq);
        check_entry(p, seq)?;
    }
    for &seq in &l.free {
        check_entry(&free_path(dir, seq), Some(seq))?;
    }
    Ok(l)
}

/// The sequence number in a temporary chunk file name.
fn tmp_seq(name: &str) -> Option<u64> {
    parse_chunk_name(name.strip_suffix(".tmp")?)
}

/// [`Error::ChunkSeqOutOfRange`] if chunk file `path` has a sequence number past the maximum.
pub fn check_seq(path: &Path, seq: u64) -> Result<()> {
    if seq > MAX_CHUNK_SEQ {
        return Err(Error::ChunkSeqOutOfRange {
            path: path.to_path_buf(),
            seq,
            max: MAX_CHUNK_SEQ,
        });
    }
    Ok(())
}

/// The entry's sequence number is in range and it is (or links to) a regular file. Looks at
/// the entry without opening it; [`open_regular`] checks again on the opened file.
fn check_entry(path: &Path, seq: Option<u64>) -> Result<()> {
    if let Some(seq) = seq {
        check_seq(path, seq)?;
    }
    let meta = fs::metadata(path).map_err(|e| Error::io("stat chunk", path, e))?;
    if !meta.is_file() {
        return Err(Error::NotARegularFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Open an existing chunk file, read-only or read-write, only if it is a regular file.
/// The open itself never blocks (`O_NONBLOCK`: a plain open of a FIFO waits for a writer
/// forever), and the opened file is checked with `fstat`, so an entry swapped for a FIFO
/// after [`list_chunks`] looked at it is refused too.
pub fn open_regular(path: &Path, write: bool) -> Result<File> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || Error::NotARegularFile {
        path: path.to_path_buf(),
    };
    let file = match OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        // A socket (ENXIO), a FIFO opened for writing (ENXIO), a directory opened for
        // writing (EISDIR): say what the entry is rather than how the open failed.
        Err(_) if fs::metadata(path).is_ok_and(|m| !m.is_file()) => return Err(not_regular()),
        Err(e) => return Err(Error::io("open chunk", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io("stat chunk", path, e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    // I/O on a regular file ignores the flag; clear it anyway, the file may be mapped and
    // shared with the flush worker.
    let flags = fcntl_getfl(&file).map_err(|e| Error::io("fcntl chunk", path, e.into()))?;
    fcntl_setfl(&file, flags - OFlags::NONBLOCK)
        .map_err(|e| Error::io("fcntl chunk", path, e.into()))?;
    Ok(file)
}

/// True if the file is empty or holds only zero bytes (a chunk that never got its header).
pub fn is_blank(path: &Path) -> Result<bool> {
    is_blank_file(&open_regular(path, false)?, path)
}

/// [`is_blank`] on an opened file (read with `pread`, the file offset does not move).
pub fn is_blank_file(f: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let n = f
            .read_at(&mut buf, at)
            .map_err(|e| Error::io("read chunk", path, e))?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
}

/// Take the exclusive directory lock; a second holder gets [`Error::Locked`].
pub fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    // A process that forks (to run any program) holds a copy of every open descriptor,
    // this lock included, until its exec closes it: a lock released a moment ago can still
    // look taken. So contention is retried briefly; a real holder keeps it longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(250);
    loop {
        match f.try_lock_exclusive() {
            Ok(()) => return Ok(f),
            Err(e) if e.raw_os_error() == fs2::lock_contended_error().raw_os_error() => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Locked {
                        path: dir.to_path_buf(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(Error::io("lock directory", &path, e)),
        }
    }
}

/// Path of chunk `seq` while it is prepared and not yet installed.
pub fn tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{TMP_SUFFIX}"))
}

/// Prepare chunk `seq` as a temporary file: preallocate `size` bytes, write and sync the
/// header. It becomes part of the log only when [`install_chunk`] renames it.
pub fn prepare_chunk(dir: &Path, seq: u64, size: u64) -> Result<(File, ChunkHeader, PathBuf)> {
    let tmp = tmp_path(dir, seq);
    let res = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| Error::io("create chunk", &tmp, e))?;
        preallocate(&f, size).map_err(|e| Error::io("preallocate chunk", &tmp, e))?;
        let header = new_header(seq, size);
        f.write_all(&header.encode())
            .map_err(|e| Error::io("write chunk header", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io("sync chunk header", &tmp, e))?;
        Ok((f, header))
    })();
    match res {
        Ok((f, h)) => Ok((f, h, tmp)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Allocate blocks for the first `len` bytes of `f` (so that a full disk shows here, not
/// in a later append), extending it if needed. Reports the real error, ENOSPC included.
/// `fallocate` on Linux; the platform's call or written zeros elsewhere (`sys::preallocate`).
pub fn preallocate(f: &File, len: u64) -> std::io::Result<()> {
    super::sys::preallocate(f, len)
}

/// A fresh header for chunk `seq` of `size` bytes.
pub fn new_header(seq: u64, size: u64) -> ChunkHeader {
    ChunkHeader {
        version: FORMAT_VERSION,
        chunk_seq: seq,
        epoch: chunk_epoch(seq),
        chunk_size: size,
        created_ms: now_ms(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The epoch of a new chunk `seq`: random high half, and the low half (the tag its records
/// carry) given by the sequence number (see [`tag_for_seq`]), so that records of a recycled
/// file's earlier lives never carry the new chunk's tag. The random half mixes time, pid, a
/// counter and ASLR through SipHash; it needs to differ between files, not to be
/// unpredictable.
fn chunk_epoch(seq: u64) -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(seq);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    (h.finish() & !0xFFFF_FFFF) | u64::from(tag_for_seq(seq))
}
