//! Hostile log directories: an entry named like the newest chunk that is not a regular file.
//! `chunkwal stat` must answer promptly (exit 1) and say what the entry is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chunkwal::inspect::chunk_file_name;

use crate::common::*;

/// Longest the command may take before the test calls it a hang.
const PROMPT: Duration = Duration::from_secs(10);

/// A closed log of at least three chunks whose newest chunk file was then removed.
/// Returns the directory and the removed chunk's sequence number.
fn sealed_newest_log() -> (tempfile::TempDir, u64) {
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
enum Kind {
    Fifo,
    Socket,
    Dir,
    SymlinkToFifo,
}

/// Put a `kind` entry at `path`; a symlink's FIFO goes into `aside`. Returns the FIFO a
/// blocked open waits on, if any.
fn make_entry(kind: Kind, path: &Path, aside: &Path) -> Option<PathBuf> {
    use rustix::fs::{mkfifoat, Mode, CWD};
    let fifo = |p: &Path| mkfifoat(CWD, p, Mode::from_raw_mode(0o644)).unwrap();
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

/// Let a process blocked opening `fifo` for reading go on: a non-blocking open for writing
/// succeeds once a reader waits.
fn unblock(fifo: Option<&PathBuf>) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(f) = fifo {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(f);
    }
}

#[test]
fn stat_refuses_non_regular_chunk_entries_promptly() {
    for kind in [Kind::Fifo, Kind::Socket, Kind::Dir, Kind::SymlinkToFifo] {
        let (d, seq) = sealed_newest_log();
        let aside = tempfile::tempdir().unwrap();
        let path = d.path().join(chunk_file_name(seq));
        let fifo = make_entry(kind, &path, aside.path());
        let mut child = Command::new(env!("CARGO_BIN_EXE_chunkwal"))
            .arg("stat")
            .arg(d.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > PROMPT {
                let _ = child.kill();
                unblock(fifo.as_ref());
                panic!("{kind:?}: chunkwal stat hangs");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind:?}: {err}");
        assert!(err.contains("not a regular file"), "{kind:?}: {err}");
        assert!(path.symlink_metadata().is_ok(), "{kind:?}: entry removed");
    }
}
