//! `chunkwal repair DIR`: apply the tolerant recovery on purpose, after a backup.
//!
//! Inspects first; only a torn tail (or a blank newest chunk) is repaired, exactly as
//! `Wal::open` with `RecoveryMode::TolerateTornTail` would. Any other damage is refused
//! without touching the directory.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chunkwal::inspect::{chunk_file_name, ChunkReport};
use chunkwal::{Config, Wal};

use crate::stat::replay_dir;
use crate::verify::{problems_in, Problem};
use crate::{fmt, CmdResult, Fail, EXIT_DAMAGED};

/// Arguments of `repair`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

fn id_text(id: Option<chunkwal::LogId>) -> String {
    id.map_or("-".into(), |i| i.to_string())
}

/// Fail with `Locked` if another process holds the directory lock, without creating it.
fn check_unlocked(dir: &Path) -> CmdResult {
    use fs2::FileExt;
    let path = dir.join(chunkwal::inspect::LOCK_FILE);
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    else {
        return Ok(()); // No lock file: nobody holds it.
    };
    match f.try_lock_exclusive() {
        Ok(()) => {
            let _ = FileExt::unlock(&f);
            Ok(())
        }
        Err(_) => Err(chunkwal::Error::Locked {
            path: dir.to_path_buf(),
        }
        .into()),
    }
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            eprintln!();
            false
        }
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}

/// A fresh `DIR/backup-<unix-time>[-N]` directory.
fn backup_dir(dir: &Path) -> Result<PathBuf, Fail> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for n in 0..1000 {
        let name = if n == 0 {
            format!("backup-{secs}")
        } else {
            format!("backup-{secs}-{n}")
        };
        let p = dir.join(name);
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Fail::error(format!(
                    "cannot create backup directory {}: {e}",
                    p.display()
                )))
            }
        }
    }
    Err(Fail::error("cannot find a free backup directory name"))
}

/// Run `repair`.
pub fn run(a: Args) -> CmdResult {
    let (before, reports) = replay_dir(&a.dir)?;
    let probs = problems_in(&a.dir, &reports);
    refuse_unrepairable(&probs)?;
    let mut out = crate::stdout();
    if probs.is_empty() {
        writeln!(
            out,
            "nothing to repair: {} chunks, last log id {}",
            reports.len(),
            id_text(before.state.last)
        )?;
        out.flush()?;
        return Ok(());
    }
    check_unlocked(&a.dir)?;
    for p in &probs {
        writeln!(out, "found: {}", p.line())?;
    }
    out.flush()?;
    if !a.yes && !confirm("Repair (a backup of every changed file is made first)?") {
        return Err(Fail::error(
            "aborted; nothing was changed (pass --yes to skip the question)",
        ));
    }
    let backup = back_up(&a.dir, &reports, &probs, &mut out)?;
    // Opening the log does the repair: it cuts the torn tail, removes a blank newest chunk.
    let wal = Wal::open(repair_config(&a.dir, &reports))?;
    wal.close()?;
    for p in &probs {
        match p {
            Problem::Torn {
                chunk,
                end,
                garbage_end,
                ..
            } => writeln!(
                out,
                "cut {} from chunk {chunk} (offsets {end}..{garbage_end})",
                fmt::bytes(garbage_end - end)
            )?,
            Problem::BlankNewest { chunk } => writeln!(out, "removed blank chunk {chunk}")?,
            _ => {}
        }
    }
    let (after, reports) = replay_dir(&a.dir)?;
    let left = problems_in(&a.dir, &reports);
    writeln!(
        out,
        "repaired: {} entries, last log id {} (was {}); backup in {}",
        after.entries(),
        id_text(after.state.last),
        id_text(before.state.last),
        backup.display()
    )?;
    out.flush()?;
    drop(out);
    crate::verify::fail_on(&left, true)
}

/// Damage repair cannot mend: print it and refuse, changing nothing.
fn refuse_unrepairable(probs: &[Problem]) -> CmdResult {
    if !probs.iter().any(|p| !p.is_repairable()) {
        return Ok(());
    }
    for p in probs {
        eprintln!("chunkwal: {}", p.line());
    }
    let code = if probs.iter().any(Problem::is_corrupt) {
        EXIT_DAMAGED
    } else {
        crate::EXIT_ERROR
    };
    Err(Fail {
        code,
        msg: Some(
            "repair only cuts a torn tail or a blank newest chunk; this damage needs \
             manual recovery. Nothing was changed."
                .into(),
        ),
    })
}

/// Copy every file the repair changes into a new backup directory, which is returned: the
/// newest chunk (cut, then a closing state record) and, when that one is blank and gets
/// removed, the chunk before it (it becomes the newest).
fn back_up(
    dir: &Path,
    reports: &[ChunkReport],
    probs: &[Problem],
    out: &mut dyn Write,
) -> Result<PathBuf, Fail> {
    let newest = reports.len() - 1;
    let mut changed = vec![newest];
    if probs
        .iter()
        .any(|p| matches!(p, Problem::BlankNewest { .. }))
        && newest > 0
    {
        changed.insert(0, newest - 1);
    }
    let backup = backup_dir(dir)?;
    for &i in &changed {
        let name = chunk_file_name(reports[i].seq);
        std::fs::copy(dir.join(&name), backup.join(&name))
            .map_err(|e| Fail::error(format!("backup of {name} failed: {e}")))?;
        writeln!(out, "backed up {name} to {}", backup.display())?;
    }
    Ok(backup)
}

/// The config to open the log with: its own chunk size (from the newest readable header),
/// no cache, never creating anything.
fn repair_config(dir: &Path, reports: &[ChunkReport]) -> Config {
    let chunk_size = reports
        .iter()
        .rev()
        .find_map(|r| r.header.map(|h| h.chunk_size))
        .unwrap_or(64 << 20);
    let mut cfg = Config::new(dir).cache(0, 0);
    cfg.create_if_missing = false;
    if Config::new(dir).chunk_size(chunk_size).validate().is_ok() {
        cfg = cfg.chunk_size(chunk_size);
    }
    cfg
}
