//! Hostile directory entries shared by the library's and the CLI's tests (the CLI's test
//! binary includes this file by path): a sealed-newest log, and entries named like chunks
//! that are not regular files.

use std::path::{Path, PathBuf};

use chunkwal::inspect::chunk_file_name;

use crate::common::{entries, open};

/// A closed log of at least three chunks whose newest chunk file was then removed, so that
/// its newest chunk is sealed: open then also looks for a pending `.chunk.tmp` to adopt.
/// Returns the directory and the next chunk sequence number.
pub fn sealed_newest_log() -> (tempfile::TempDir, u64) {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    let mut i = 1;
    while wal.stat().chunks.len() < 3 {
        wal.append(entries(i, i + 10, 1, 500)).unwrap();
        i += 10;
    }
    wal.flush_blocking().unwrap();
    let newest = wal.stat().chunks.last().unwrap().seq;
    wal.close().unwrap();
    std::fs::remove_file(d.path().join(chunk_file_name(newest))).unwrap();
    (d, newest)
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Fifo,
    Socket,
    Dir,
    SymlinkToFifo,
}

impl Kind {
    /// Every kind, in the order the tests try them.
    pub const ALL: [Kind; 4] = [Kind::Fifo, Kind::Socket, Kind::Dir, Kind::SymlinkToFifo];
}

/// Put a `kind` entry at `path`; a symlink's FIFO goes into `aside`. Returns the FIFO a
/// blocked open waits on, if any.
pub fn make_entry(kind: Kind, path: &Path, aside: &Path) -> Option<PathBuf> {
    // The POSIX utility: rustix has no `mkfifoat` on macOS.
    let fifo = |p: &Path| {
        let st = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "mkfifo {}: {st}", p.display());
    };
    match kind {
        Kind::Fifo => {
            fifo(path);
            Some(path.to_path_buf())
        }
        Kind::Socket => {
            // The socket file stays when the listener is dropped.
            drop(std::os::unix::net::UnixListener::bind(path).unwrap());
            None
        }
        Kind::Dir => {
            std::fs::create_dir(path).unwrap();
            None
        }
        Kind::SymlinkToFifo => {
            let target = aside.join("fifo");
            fifo(&target);
            std::os::unix::fs::symlink(&target, path).unwrap();
            Some(target)
        }
    }
}

/// Let a thread blocked opening `fifo` for reading go on (so a failed test does not leave
/// it blocked): a non-blocking open for writing succeeds once a reader waits.
pub fn unblock(fifo: Option<&PathBuf>) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(f) = fifo {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(f);
    }
}
