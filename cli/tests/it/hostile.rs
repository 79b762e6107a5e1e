//! Hostile log directories: an entry named like the newest chunk that is not a regular file.
//! `chunkwal stat` must answer promptly (exit 1) and say what the entry is.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chunkwal::inspect::chunk_file_name;

use crate::hostile_entries::{make_entry, sealed_newest_log, unblock, Kind};

/// Longest the command may take before the test calls it a hang.
const PROMPT: Duration = Duration::from_secs(10);

#[test]
fn stat_refuses_non_regular_chunk_entries_promptly() {
    for kind in Kind::ALL {
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
