//! `chunkwal dump DIR`: every record as stored, state records included, as text or JSON
//! lines. `--from`/`--to` select entries by index and, by position, the other records
//! between the first and the last entry shown (`--all-state` shows every other record).

use std::io::Write;
use std::path::PathBuf;

use chunkwal::inspect::{DumpRecord, OwnedRecord};
use chunkwal::{LogId, LogState};
use serde_json::{json, Value};

use crate::fmt;
use crate::verify::{fail_on, problems_in};
use crate::CmdResult;

/// Output format of `dump`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per record, payloads shown as a short hex preview.
    Text,
    /// One JSON object per line, payloads in full hex.
    Json,
}

/// Arguments of `dump`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Show entry records with index >= N only, and the other (state) records that lie
    /// between the first and the last entry shown.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Show entry records with index < N only (half-open, like `Wal::read`), and the other
    /// (state) records that lie between the first and the last entry shown.
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// With --from/--to, still show every non-entry record of the whole log.
    #[arg(long)]
    pub all_state: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

fn id_json(id: Option<LogId>) -> Value {
    id.map_or(Value::Null, |i| json!({"term": i.term, "index": i.index}))
}

fn id_text(id: Option<LogId>) -> String {
    id.map_or("-".into(), |i| i.to_string())
}

fn state_json(s: &LogState) -> Value {
    json!({
        "vote_hex": s.vote.as_ref().map(|v| fmt::hex(v)),
        "last": id_json(s.last),
        "committed": id_json(s.committed),
        "purged": id_json(s.purged),
        "user_data_hex": s.user_data.as_ref().map(|d| fmt::hex(d)),
    })
}

/// One record as a JSON object.
pub fn record_json(r: &DumpRecord) -> Value {
    let mut v = json!({
        "chunk": r.chunk,
        "offset": r.offset,
        "len": r.encoded_len,
        "hint": r.hint,
        "group": r.group,
        "kind": r.record.kind(),
    });
    let extra = match &r.record {
        OwnedRecord::Entry { id, payload } => json!({
            "id": id_json(Some(*id)),
            "payload_len": payload.len(),
            "payload_hex": fmt::hex(payload),
        }),
        OwnedRecord::Truncate { since, last } => json!({"since": since, "last": id_json(*last)}),
        OwnedRecord::Purge { upto } => json!({"upto": id_json(Some(*upto))}),
        OwnedRecord::Commit { id } => json!({"id": id_json(Some(*id))}),
        OwnedRecord::Vote { vote } => json!({"vote_hex": fmt::hex(vote)}),
        OwnedRecord::UserData { data } => {
            json!({"data_hex": data.as_ref().map(|d| fmt::hex(d))})
        }
        OwnedRecord::State(s) => json!({"state": state_json(s)}),
        OwnedRecord::Batch {
            first,
            count,
            raw_len,
            compressed,
        } => json!({
            "first": id_json(Some(*first)),
            "count": count,
            "raw_len": raw_len,
            "compressed_len": compressed.len(),
        }),
        // Seal, and kinds this build of the tool does not know: the common fields only.
        _ => json!({}),
    };
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

/// One record as a line of text.
pub fn record_text(r: &DumpRecord) -> String {
    let what = match &r.record {
        OwnedRecord::Entry { id, payload } => format!(
            "entry {id} payload {} {}",
            fmt::bytes(payload.len() as u64),
            fmt::hex_preview(payload, 16)
        ),
        OwnedRecord::Truncate { since, last } => {
            format!("truncate since {since} (last {})", id_text(*last))
        }
        OwnedRecord::Purge { upto } => format!("purge upto {upto}"),
        OwnedRecord::Commit { id } => format!("commit {id}"),
        OwnedRecord::Vote { vote } => format!("vote {}", fmt::hex_preview(vote, 32)),
        OwnedRecord::UserData { data } => match data {
            Some(d) => format!("user_data {} {}", fmt::bytes(d.len() as u64), {
                fmt::hex_preview(d, 16)
            }),
            None => "user_data cleared".into(),
        },
        OwnedRecord::State(s) => format!(
            "state last {} committed {} purged {} vote {} user_data {}",
            id_text(s.last),
            id_text(s.committed),
            id_text(s.purged),
            s.vote
                .as_ref()
                .map_or("-".into(), |v| fmt::hex_preview(v, 16)),
            s.user_data
                .as_ref()
                .map_or("-".into(), |d| fmt::bytes(d.len() as u64)),
        ),
        OwnedRecord::Seal => "seal".into(),
        OwnedRecord::Batch {
            first,
            count,
            raw_len,
            compressed,
        } => format!(
            "batch {first} through index {} ({count} entries) raw {} compressed {}",
            first
                .index
                .saturating_add(u64::from(*count).saturating_sub(1)),
            fmt::bytes(u64::from(*raw_len)),
            fmt::bytes(compressed.len() as u64)
        ),
        other => other.kind().into(),
    };
    let group = match r.group {
        0 => String::new(),
        g => format!("group {g} "),
    };
    format!(
        "chunk {} @{:<9} len {:<6} hint {:<9} {group}{what}",
        r.chunk, r.offset, r.encoded_len, r.hint
    )
}

/// Which records `dump` prints, fed the records in their on-disk order.
struct Selection {
    from: u64,
    to: u64,
    /// Print every non-entry record (no range given, or `--all-state`).
    all_state: bool,
    /// Some entry in the range was printed already.
    seen_entry: bool,
    /// Non-entry records after the last printed entry: printed once another entry in the
    /// range follows them, dropped at the end.
    pending: Vec<DumpRecord>,
}

impl Selection {
    fn new(a: &Args) -> Self {
        Selection {
            from: a.from.unwrap_or(0),
            to: a.to.unwrap_or(u64::MAX),
            all_state: a.all_state || (a.from.is_none() && a.to.is_none()),
            seen_entry: false,
            pending: Vec::new(),
        }
    }

    /// The records to print now, given the next record `r`.
    fn feed(&mut self, r: &DumpRecord) -> Vec<DumpRecord> {
        match &r.record {
            OwnedRecord::Entry { .. } | OwnedRecord::Batch { .. } => {
                // A batch is selected when any of its members is.
                let (first, last) = match &r.record {
                    OwnedRecord::Batch { first, count, .. } => (
                        first.index,
                        first
                            .index
                            .saturating_add(u64::from(*count).saturating_sub(1)),
                    ),
                    OwnedRecord::Entry { id, .. } => (id.index, id.index),
                    _ => return Vec::new(),
                };
                if last < self.from || first >= self.to {
                    return Vec::new();
                }
                self.seen_entry = true;
                let mut out = std::mem::take(&mut self.pending);
                out.push(r.clone());
                out
            }
            _ if self.all_state => vec![r.clone()],
            _ => {
                if self.seen_entry {
                    self.pending.push(r.clone());
                }
                Vec::new()
            }
        }
    }
}

/// Run `dump`.
pub fn run(a: Args) -> CmdResult {
    let mut out = crate::stdout();
    let mut write_err: Option<std::io::Error> = None;
    let mut sel = Selection::new(&a);
    let mut on_rec = |r: &DumpRecord| {
        if write_err.is_some() {
            return;
        }
        for r in sel.feed(r) {
            let res = match a.format {
                Format::Text => writeln!(out, "{}", record_text(&r)),
                Format::Json => writeln!(out, "{}", record_json(&r)),
            };
            if let Err(e) = res {
                write_err = Some(e);
                return;
            }
        }
    };
    let reports = crate::inspect(&a.dir, &mut on_rec, &mut |_| {})?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    fail_on(&problems_in(&a.dir, &reports), false)
}
