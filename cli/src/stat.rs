//! `chunkwal stat DIR`: the shape and Raft state of a log, read-only and without the lock.

use std::io::Write;
use std::path::PathBuf;

use chunkwal::inspect::{DumpRecord, OwnedRecord};
use chunkwal::{LogId, LogState};
use serde_json::json;

use crate::fmt;
use crate::verify::{problems_in, Problem};
use crate::{CmdResult, Fail};

/// Arguments of `stat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The log state rebuilt from records, plus the range of live entries.
#[derive(Debug, Default, Clone)]
pub struct Replay {
    /// Vote, last, committed, purged, user data, as the engine would rebuild them.
    pub state: LogState,
    /// Lowest live entry index (entries are always contiguous up to `state.last`).
    pub first: Option<u64>,
    /// Runs of entries with one term: (first index of the run, term). Raft logs change term
    /// rarely, so this stays tiny and gives the term of any live index.
    terms: Vec<(u64, u64)>,
}

impl Replay {
    /// Apply one record, with the same meaning the engine gives it on open.
    pub fn apply(&mut self, rec: &OwnedRecord) {
        if let OwnedRecord::Batch { first, count, .. } = rec {
            // Members of one term, as if each were an entry record: the first may start a
            // term run, the last is the last id.
            self.apply(&OwnedRecord::Entry {
                id: *first,
                payload: bytes::Bytes::new(),
            });
            let last = first
                .index
                .saturating_add(u64::from(*count).saturating_sub(1));
            self.state.last = Some(LogId::new(first.term, last));
            return;
        }
        let s = &mut self.state;
        match rec {
            OwnedRecord::Entry { id, .. } => {
                if self.first.is_none() {
                    self.first = Some(id.index);
                }
                let continues = s.last.is_some_and(|l| l.index.wrapping_add(1) == id.index);
                if !continues || self.terms.last().is_none_or(|r| r.1 != id.term) {
                    self.terms.retain(|r| r.0 < id.index);
                    self.terms.push((id.index, id.term));
                }
                s.last = Some(*id);
            }
            OwnedRecord::Truncate { since, last } => {
                if self.first.is_some_and(|f| *since <= f) {
                    self.first = None;
                }
                self.terms.retain(|r| r.0 < *since);
                s.last = *last;
            }
            // A purge behind the purge point changes nothing.
            OwnedRecord::Purge { upto } if s.purged.is_none_or(|p| p.index < upto.index) => {
                s.purged = Some(*upto);
                if s.last.is_none_or(|l| l.index < upto.index) {
                    s.last = Some(*upto);
                }
                self.cut_below(upto.index);
            }
            OwnedRecord::Commit { id } => s.committed = Some(*id),
            OwnedRecord::Vote { vote } => s.vote = Some(vote.clone()),
            OwnedRecord::UserData { data } => s.user_data = data.clone(),
            OwnedRecord::State(img) => {
                *s = img.clone();
                let keep_below = img.last.map_or(0, |l| l.index.saturating_add(1));
                self.terms.retain(|r| r.0 < keep_below);
                match img.last {
                    None => self.first = None,
                    Some(l) if self.first.is_some_and(|f| f > l.index) => self.first = None,
                    Some(_) => {}
                }
                if let Some(p) = img.purged {
                    self.cut_below(p.index);
                }
            }
            // Seals, stale purges, and kinds a newer library may add change no state.
            _ => {}
        }
    }

    /// Entries with index <= `upto` are gone.
    fn cut_below(&mut self, upto: u64) {
        if let Some(f) = self.first {
            if f <= upto {
                let last = self.state.last.map_or(0, |l| l.index);
                self.first = (upto < last).then_some(upto + 1);
            }
        }
    }

    /// Number of live entries.
    pub fn entries(&self) -> u64 {
        match (self.first, self.state.last) {
            (Some(f), Some(l)) if l.index >= f => l.index - f + 1,
            _ => 0,
        }
    }

    /// First live entry id, if any.
    pub fn first_id(&self) -> Option<LogId> {
        let f = self.first.filter(|_| self.entries() > 0)?;
        let term = self
            .terms
            .iter()
            .rev()
            .find(|r| r.0 <= f)
            .map_or(0, |r| r.1);
        Some(LogId::new(term, f))
    }
}

fn id_text(id: Option<LogId>) -> String {
    id.map_or("-".into(), |i| {
        format!("{} (term {}, index {})", i, i.term, i.index)
    })
}

fn id_json(id: Option<LogId>) -> serde_json::Value {
    id.map_or(
        serde_json::Value::Null,
        |i| json!({"term": i.term, "index": i.index}),
    )
}

/// Run `stat`.
pub fn run(a: Args) -> CmdResult {
    let mut replay = Replay::default();
    let mut on_rec = |r: &DumpRecord| replay.apply(&r.record);
    let reports = crate::inspect(&a.dir, &mut on_rec, &mut |_| {})?;
    let probs = problems_in(&a.dir, &reports);
    let file_bytes: u64 = reports.iter().map(|r| r.file_len).sum();
    let used_bytes: u64 = reports.iter().map(crate::verify::used_bytes).sum();
    let st = &replay.state;
    let last = st.last.filter(|_| replay.entries() > 0);
    let first = replay.first_id();
    let mut out = crate::stdout();
    if a.json {
        let v = json!({
            "dir": a.dir.display().to_string(),
            "chunks": reports.len(),
            "first_chunk": reports.first().map(|r| r.seq),
            "last_chunk": reports.last().map(|r| r.seq),
            "entries": replay.entries(),
            "first": id_json(first),
            "last": id_json(last),
            "last_state": id_json(st.last),
            "committed": id_json(st.committed),
            "purged": id_json(st.purged),
            "vote_hex": st.vote.as_ref().map(|v| fmt::hex(v)),
            "user_data_len": st.user_data.as_ref().map(|d| d.len()),
            "file_bytes": file_bytes,
            "used_bytes": used_bytes,
            "problems": probs.iter().map(Problem::line).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
    } else {
        let mut t = fmt::Table::new(&["field", "value"]).all_left();
        let mut row = |k: &str, v: String| t.row(vec![k.into(), v]);
        row("directory", a.dir.display().to_string());
        row(
            "chunks",
            format!(
                "{} (seq {}..={})",
                reports.len(),
                reports.first().map_or(0, |r| r.seq),
                reports.last().map_or(0, |r| r.seq)
            ),
        );
        row("entries", replay.entries().to_string());
        row("first log id", id_text(first));
        row("last log id", id_text(last));
        row("committed", id_text(st.committed));
        row("purged", id_text(st.purged));
        row(
            "vote",
            st.vote.as_ref().map_or("-".into(), |v| {
                format!("{} ({} bytes)", fmt::hex_preview(v, 16), v.len())
            }),
        );
        row(
            "user data",
            st.user_data
                .as_ref()
                .map_or("-".into(), |d| fmt::bytes(d.len() as u64)),
        );
        row(
            "on-disk size",
            format!(
                "{} in files, {} written",
                fmt::bytes(file_bytes),
                fmt::bytes(used_bytes)
            ),
        );
        row(
            "health",
            if probs.is_empty() {
                "ok".into()
            } else {
                format!("{} problem(s), run `chunkwal verify`", probs.len())
            },
        );
        t.print(&mut out)?;
    }
    out.flush()?;
    drop(out);
    crate::verify::fail_on(&probs, false)
}

/// Replay a whole directory (used by `repair` to report the state before and after).
pub fn replay_dir(
    dir: &std::path::Path,
) -> Result<(Replay, Vec<chunkwal::inspect::ChunkReport>), Fail> {
    let mut replay = Replay::default();
    let mut on_rec = |r: &DumpRecord| replay.apply(&r.record);
    let reports = crate::inspect(dir, &mut on_rec, &mut |_| {})?;
    Ok((replay, reports))
}
