//! Helpers shared by the CLI tests: logs built through the library.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use chunkwal::{Config, LogId, Wal};
use serde_json::Value;

/// Small chunks so rotation happens often.
pub const SMALL_CHUNK: u64 = 64 * 1024;

pub fn cfg(dir: &std::path::Path) -> Config {
    Config::new(dir).chunk_size(SMALL_CHUNK)
}

/// `len` xorshift bytes derived from `index`.
pub fn payload(index: u64, len: usize) -> Bytes {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    Bytes::from(v)
}

pub fn entries(from: u64, to: u64, term: u64, len: usize) -> Vec<(LogId, Bytes)> {
    (from..to)
        .map(|i| (LogId::new(term, i), payload(i, len)))
        .collect()
}

pub fn open(dir: &std::path::Path) -> Wal {
    Wal::open(cfg(dir)).expect("open")
}

/// Check the log holds exactly `[from, to)` with payloads from `payload(i, len)`.
pub fn assert_holds(wal: &Wal, from: u64, to: u64, term: u64, len: usize) {
    let got = wal.read(from..to).expect("read");
    assert_eq!(got.len() as u64, to - from);
    for (id, p) in got {
        assert_eq!(id.term, term, "term of {}", id.index);
        assert_eq!(p, payload(id.index, len), "payload of {}", id.index);
    }
}

/// Write chunk 0 of `dir` as a full-size chunk whose header claims the next format version.
pub fn write_newer_version_chunk(dir: &std::path::Path) {
    use chunkwal::format::{ChunkHeader, FORMAT_VERSION};
    let h = ChunkHeader {
        version: FORMAT_VERSION + 1,
        chunk_seq: 0,
        epoch: 5,
        chunk_size: SMALL_CHUNK,
        created_ms: 0,
    };
    let mut bytes = h.encode().to_vec();
    bytes.resize(SMALL_CHUNK as usize, 0);
    std::fs::write(dir.join(chunkwal::inspect::chunk_file_name(0)), bytes).unwrap();
}

/// Run the `chunkwal` binary with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkwal"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chunkwal")
}

/// Run `chunkwal ARGS[0] DIR ARGS[1..]`.
pub fn run_in(args: &[&str], dir: &Path) -> Output {
    let mut v = args.to_vec();
    let d = dir.to_str().unwrap();
    v.insert(1, d);
    run(&v)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with both streams shown unless the exit status is `code`.
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

/// Stdout as one JSON object.
pub fn json_line(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim()).expect("one JSON object")
}
