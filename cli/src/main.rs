//! `chunkwal`: benchmark, inspect, verify and repair chunkwal log directories.
//!
//! Exit codes: 0 success, 1 error (bad input, I/O, locked, newer format), 2 usage error,
//! 3 the log is damaged (corruption, or a torn tail for `verify`).

mod bench;
mod bench_report;
mod dump;
mod fmt;
mod repair;
mod stat;
mod verify;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmark, inspect, verify and repair chunkwal write-ahead logs.
#[derive(Parser, Debug)]
#[command(name = "chunkwal", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a short benchmark (temporary directory unless --dir) and print a table.
    Bench(bench::Args),
    /// Summarise a log directory (read-only, works while another process holds it).
    Stat(stat::Args),
    /// Print every record as stored, including state records (--from/--to: a range).
    Dump(dump::Args),
    /// Check every CRC; exit 3 on corruption or a torn tail. Never modifies anything.
    Verify(verify::Args),
    /// Cut a torn tail off the newest chunk (after a backup), as a tolerant open would.
    Repair(repair::Args),
    /// Internal: measure resident memory around opening a log (used by `bench`).
    #[command(name = "__rss-probe", hide = true)]
    RssProbe(bench::ProbeArgs),
}

/// Why a command stopped. `msg` goes to stderr as one line; `code` is the exit status.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub msg: Option<String>,
}

/// Exit status for a plain error.
pub const EXIT_ERROR: u8 = 1;
/// Exit status when the log is damaged.
pub const EXIT_DAMAGED: u8 = 3;

impl Fail {
    /// A plain error (exit 1).
    pub fn error(msg: impl Into<String>) -> Self {
        Fail {
            code: EXIT_ERROR,
            msg: Some(msg.into()),
        }
    }

    /// The log is damaged (exit 3).
    pub fn damaged(msg: impl Into<String>) -> Self {
        Fail {
            code: EXIT_DAMAGED,
            msg: Some(msg.into()),
        }
    }

    /// Problems were already printed; just exit with `code`.
    pub fn quiet(code: u8) -> Self {
        Fail { code, msg: None }
    }
}

impl From<chunkwal::Error> for Fail {
    fn from(e: chunkwal::Error) -> Self {
        let code = match e {
            chunkwal::Error::Corruption { .. } => EXIT_DAMAGED,
            _ => EXIT_ERROR,
        };
        Fail {
            code,
            msg: Some(describe(&e)),
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // `chunkwal dump DIR | head`: the reader left; that is not an error.
            Fail { code: 0, msg: None }
        } else {
            Fail::error(format!("write to stdout failed: {e}"))
        }
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Fail>;

/// One line describing a library error for a person.
pub fn describe(e: &chunkwal::Error) -> String {
    use chunkwal::Error as E;
    match e {
        E::NoSuchDirectory { path } => format!("{}: no such directory", path.display()),
        E::NotADirectory { path } => format!("{}: not a directory", path.display()),
        E::Locked { path } => format!(
            "{}: locked by another process (stop the process using the log first)",
            path.display()
        ),
        E::UnsupportedVersion {
            chunk,
            found,
            supported,
        } => format!(
            "chunk {chunk} was written by a newer chunkwal (format version {found}; \
             this build reads up to {supported})"
        ),
        E::Corruption {
            chunk,
            offset,
            reason,
        } => format!("corruption in chunk {chunk} at offset {offset}: {reason}"),
        E::DiskFull { op, path } => format!("disk full while {op} on {}", path.display()),
        E::Io { op, path, source } => format!("{op} failed on {}: {source}", path.display()),
        E::InvalidConfig(e) => format!("invalid configuration: {e}"),
        other => other.to_string(),
    }
}

/// Inspect `dir` read-only. Fails for a missing directory, a file, or a directory without
/// chunk files ("not a chunkwal log").
pub fn inspect(
    dir: &Path,
    on_record: &mut dyn FnMut(&chunkwal::inspect::DumpRecord),
    on_chunk: &mut dyn FnMut(&chunkwal::inspect::ChunkReport),
) -> Result<Vec<chunkwal::inspect::ChunkReport>, Fail> {
    check_log_dir(dir)?;
    let reports = chunkwal::inspect::inspect_dir(dir, on_record, on_chunk)?;
    if reports.is_empty() {
        return Err(not_a_log(dir));
    }
    Ok(reports)
}

/// The directory exists, is a directory, and holds at least one chunk file.
pub fn check_log_dir(dir: &Path) -> CmdResult {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Fail::error(format!("{}: no such directory", dir.display())),
        _ => Fail::error(format!("{}: {e}", dir.display())),
    })?;
    if !meta.is_dir() {
        return Err(Fail::error(format!("{}: not a directory", dir.display())));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Fail::error(format!("{}: {e}", dir.display())))?;
    let has_chunk = rd.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".chunk"))
    });
    if !has_chunk {
        return Err(not_a_log(dir));
    }
    Ok(())
}

fn not_a_log(dir: &Path) -> Fail {
    Fail::error(format!(
        "{}: not a chunkwal log (no chunk files)",
        dir.display()
    ))
}

/// Buffered stdout for a command's output.
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::new(io::stdout().lock())
}

/// Path argument shared by the inspection commands.
#[derive(clap::Args, Debug)]
pub struct DirArg {
    /// The log directory.
    pub dir: PathBuf,
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("chunkwal: internal error: {msg}{at}");
    }));
    let cli = Cli::parse();
    let Some(cmd) = cli.cmd else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    let r = std::panic::catch_unwind(move || match cmd {
        Cmd::Bench(a) => bench::run(a),
        Cmd::Stat(a) => stat::run(a),
        Cmd::Dump(a) => dump::run(a),
        Cmd::Verify(a) => verify::run(a),
        Cmd::Repair(a) => repair::run(a),
        Cmd::RssProbe(a) => bench::probe(a),
    });
    match r {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(f)) => {
            if let Some(m) = f.msg {
                let _ = io::stdout().flush();
                eprintln!("chunkwal: {m}");
            }
            ExitCode::from(f.code)
        }
        Err(_) => ExitCode::from(101),
    }
}
