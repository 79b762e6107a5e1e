//! Helpers shared by the CLI tests: logs built through the library.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

// The library's test helpers (logs built through the library), shared by path; this binary
// uses only some of them.
#[allow(dead_code)]
#[path = "../../../tests/it/common.rs"]
mod lib_common;
pub use lib_common::*;

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
