//! `chunkwal verify DIR`: a full CRC scan that names every problem and changes nothing.
//! Also holds the problem list the other inspection commands share.

use std::io::Write;
use std::path::{Path, PathBuf};

use chunkwal::inspect::{ChunkReport, DumpRecord, OwnedRecord, Tail};
use chunkwal::{CorruptionKind, Error};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::stat::Replay;
use crate::{describe, fmt, CmdResult, Fail, EXIT_DAMAGED, EXIT_ERROR};

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One thing wrong with a log directory.
#[derive(Debug, Clone)]
pub enum Problem {
    /// The newest chunk ends in bytes no sync covered; a tolerant open cuts them.
    Torn {
        chunk: u64,
        end: u64,
        at: u64,
        reason: CorruptionKind,
        garbage_end: u64,
    },
    /// The newest chunk never received its header; a tolerant open removes it.
    BlankNewest { chunk: u64 },
    /// Damage that no open repairs.
    Corrupt {
        chunk: u64,
        offset: u64,
        reason: CorruptionKind,
    },
    /// Anything else (newer format, I/O): not damage, but the log cannot be read.
    Other(String),
}

impl Problem {
    /// One line for a person.
    pub fn line(&self) -> String {
        match self {
            Problem::Torn {
                chunk,
                end,
                at,
                reason,
                garbage_end,
            } => format!(
                "chunk {chunk}: torn tail at offset {at} ({reason}); {} bytes from offset {end} \
                 are not part of the log (`chunkwal repair` cuts them)",
                garbage_end - end
            ),
            Problem::BlankNewest { chunk } => format!(
                "chunk {chunk}: newest chunk is blank, it never got a header \
                 (`chunkwal repair` removes it)"
            ),
            Problem::Corrupt {
                chunk,
                offset,
                reason,
            } => format!("chunk {chunk}: corruption at offset {offset}: {reason}"),
            Problem::Other(m) => m.clone(),
        }
    }

    /// Damage a tolerant open would refuse.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Problem::Corrupt { .. })
    }

    /// What a tolerant open repairs.
    pub fn is_repairable(&self) -> bool {
        matches!(self, Problem::Torn { .. } | Problem::BlankNewest { .. })
    }

    /// JSON form.
    pub fn json(&self) -> serde_json::Value {
        let (kind, chunk, offset) = match self {
            Problem::Torn { chunk, at, .. } => ("torn_tail", Some(*chunk), Some(*at)),
            Problem::BlankNewest { chunk } => ("blank_newest_chunk", Some(*chunk), None),
            Problem::Corrupt { chunk, offset, .. } => ("corruption", Some(*chunk), Some(*offset)),
            Problem::Other(_) => ("error", None, None),
        };
        json!({"kind": kind, "chunk": chunk, "offset": offset, "message": self.line()})
    }
}

/// The file at `path` is a regular file holding only zero bytes. Opened without blocking
/// (a FIFO named like a chunk must not hang the command) and read, never mapped.
fn all_zero(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut b = Vec::new();
    f.read_to_end(&mut b).is_ok() && b.iter().all(|&x| x == 0)
}

/// Problems in inspection reports, oldest chunk first. `dir` finds blank files.
pub fn problems_in(dir: &Path, reports: &[ChunkReport]) -> Vec<Problem> {
    let mut out = Vec::new();
    let n = reports.len();
    for (i, r) in reports.iter().enumerate() {
        match &r.error {
            None => {}
            Some(Error::Corruption {
                chunk,
                offset,
                reason,
            }) => {
                let blank = i + 1 == n
                    && r.header.is_none()
                    && matches!(reason, CorruptionKind::ShortFile { .. })
                    && all_zero(&dir.join(chunkwal::inspect::chunk_file_name(r.seq)));
                if blank {
                    out.push(Problem::BlankNewest { chunk: r.seq });
                } else {
                    out.push(Problem::Corrupt {
                        chunk: *chunk,
                        offset: *offset,
                        reason: reason.clone(),
                    });
                }
            }
            Some(e) => out.push(Problem::Other(describe(e))),
        }
        if let Some(Tail::Torn {
            end,
            at,
            reason,
            garbage_end,
        }) = &r.tail
        {
            out.push(Problem::Torn {
                chunk: r.seq,
                end: *end as u64,
                at: *at as u64,
                reason: reason.clone(),
                garbage_end: *garbage_end as u64,
            });
        }
    }
    out
}

/// Bytes of a chunk holding records (header included), or garbage up to its end.
pub fn used_bytes(r: &ChunkReport) -> u64 {
    match &r.tail {
        Some(Tail::Sealed { end }) | Some(Tail::Clean { end }) => *end as u64,
        Some(Tail::Torn { garbage_end, .. }) => *garbage_end as u64,
        // A verdict this tool does not know yet, or none: the whole file.
        Some(_) | None => r.file_len,
    }
}

/// Print each problem to stderr and pick the exit: corruption is 3, other errors 1, a torn
/// tail or blank newest chunk 3 only when `strict` (verify), else fine.
pub fn fail_on(probs: &[Problem], strict: bool) -> CmdResult {
    let mut code = 0;
    for p in probs {
        eprintln!("chunkwal: {}", p.line());
        let c = match p {
            Problem::Corrupt { .. } => EXIT_DAMAGED,
            Problem::Other(_) => EXIT_ERROR,
            _ if strict => EXIT_DAMAGED,
            _ => 0,
        };
        // Damage (3) outranks other errors (1).
        code = code.max(c);
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Fail::quiet(code))
    }
}

/// Run `verify`.
pub fn run(a: Args) -> CmdResult {
    crate::check_log_dir(&a.dir)?;
    let files = std::fs::read_dir(&a.dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.ends_with(".chunk"))
                })
                .count()
        })
        .unwrap_or(0);
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(files as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("verify {bar:30} {pos}/{len} chunks {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut replay = Replay::default();
    let mut records = 0u64;
    let mut entries = 0u64;
    let mut gaps: Vec<Problem> = Vec::new();
    let mut on_rec = |r: &DumpRecord| {
        records += 1;
        let first = match &r.record {
            OwnedRecord::Entry { id, .. } => Some((*id, 1)),
            OwnedRecord::Batch { first, count, .. } => Some((*first, u64::from(*count))),
            _ => None,
        };
        if let Some((id, n)) = first {
            entries += n;
            if let Some(last) = replay.state.last {
                if id.index != last.index.wrapping_add(1) && gaps.len() < 100 {
                    gaps.push(Problem::Corrupt {
                        chunk: r.chunk,
                        offset: r.offset,
                        reason: CorruptionKind::NonContiguous {
                            expected: last.index.wrapping_add(1),
                            got: id.index,
                        },
                    });
                }
            }
        }
        replay.apply(&r.record);
    };
    let mut on_chunk = |r: &ChunkReport| {
        bar.set_message(format!("(chunk {})", r.seq));
        bar.inc(1);
    };
    let reports = crate::inspect(&a.dir, &mut on_rec, &mut on_chunk)?;
    bar.finish_and_clear();
    let mut probs = problems_in(&a.dir, &reports);
    probs.extend(gaps);
    let bytes: u64 = reports.iter().map(used_bytes).sum();
    let mut out = crate::stdout();
    if a.json {
        let v = json!({
            "ok": probs.is_empty(),
            "chunks": reports.len(),
            "records": records,
            "entries": entries,
            "bytes": bytes,
            "problems": probs.iter().map(Problem::json).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "checked {} chunks, {} records ({} entries), {}: {}",
            reports.len(),
            records,
            entries,
            fmt::bytes(bytes),
            if probs.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", probs.len())
            }
        )?;
    }
    out.flush()?;
    drop(out);
    fail_on(&probs, true)
}
