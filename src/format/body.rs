//! Record bodies: what each record kind means and how it is laid out.

use super::batch::{BatchHead, BATCH_HEAD_LEN, BATCH_MIN_VERSION};
use crate::error::CorruptionKind;
use crate::types::LogId;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_COMMIT: u8 = 4;
const KIND_VOTE: u8 = 5;
const KIND_USER_DATA: u8 = 6;
const KIND_STATE: u8 = 7;
const KIND_SEAL: u8 = 8;
const KIND_BATCH: u8 = 10;
/// A group is removed (format v2; always with `FLAG_GROUP`, empty kind body).
const KIND_REMOVE_GROUP: u8 = 11;
/// The seal-time footer (format v2; see `footer`).
const KIND_INDEX: u8 = 9;
/// Kinds from this one on are new in format v2: in a v1 chunk they are unknown.
const FIRST_V2_KIND: u8 = KIND_INDEX;
/// Kinds from this one on are new in format v3 (groups): unknown in older chunks.
const FIRST_V3_KIND: u8 = KIND_REMOVE_GROUP;
// Batch records are one of them: `decode_in` gates them with the v2 kinds.
const _: () = assert!(KIND_BATCH >= FIRST_V2_KIND && BATCH_MIN_VERSION == 2);

/// A full image of the non-entry state; the first record of every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateImage<'a> {
    /// Saved vote.
    pub vote: Option<&'a [u8]>,
    /// Last log id.
    pub last: Option<LogId>,
    /// Committed log id.
    pub committed: Option<LogId>,
    /// Purged log id.
    pub purged: Option<LogId>,
    /// Application data.
    pub user_data: Option<&'a [u8]>,
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A log entry.
    Entry {
        /// Its log id.
        id: LogId,
        /// Opaque payload.
        payload: &'a [u8],
    },
    /// Remove every entry with index >= `since`.
    Truncate {
        /// First index removed.
        since: u64,
        /// The log's last id once the truncation is applied (stored, so replay never has
        /// to derive it from entries that may live in deleted chunks).
        last: Option<LogId>,
    },
    /// Remove every entry up to and including `upto`.
    Purge {
        /// Last id removed.
        upto: LogId,
    },
    /// Record the committed log id.
    Commit {
        /// The committed id.
        id: LogId,
    },
    /// Save a vote.
    Vote {
        /// Opaque vote bytes.
        vote: &'a [u8],
    },
    /// Save (or clear) application data.
    UserData {
        /// Opaque bytes, or none.
        data: Option<&'a [u8]>,
    },
    /// A full state image.
    State(StateImage<'a>),
    /// The chunk is complete; nothing follows.
    Seal,
    /// Entries `head.first..=head.last()` of term `head.term`, compressed into one block
    /// (format v2; see `batch.rs`).
    Batch {
        /// What replay needs: the members' indexes and term, the codec, the raw length.
        head: BatchHead,
        /// The compressed raw block.
        data: &'a [u8],
    },
    /// The record's group (from its frame's group prefix) is removed: its entries and state
    /// are gone (format v2).
    RemoveGroup,
    /// The seal-time footer of a v2 chunk (its body is decoded by
    /// [`decode_body`](super::decode_body), not here); replay ignores it.
    Index {
        /// The raw Index body.
        body: &'a [u8],
    },
}

fn put_id(dst: &mut [u8], at: usize, id: LogId) -> usize {
    dst[at..at + 8].copy_from_slice(&id.term.to_le_bytes());
    dst[at + 8..at + 16].copy_from_slice(&id.index.to_le_bytes());
    at + 16
}

fn put_bytes(dst: &mut [u8], at: usize, b: &[u8]) -> usize {
    dst[at..at + 4].copy_from_slice(&(b.len() as u32).to_le_bytes());
    dst[at + 4..at + 4 + b.len()].copy_from_slice(b);
    at + 4 + b.len()
}

/// A bounds-checked cursor over a body; every read can fail, none panics.
struct Cursor<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, what: &'static str) -> CorruptionKind {
        CorruptionKind::BadBody {
            kind: self.kind,
            what,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptionKind> {
        if self.buf.len() < n {
            return Err(self.bad("too short"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CorruptionKind> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CorruptionKind> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, CorruptionKind> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn id(&mut self) -> Result<LogId, CorruptionKind> {
        Ok(LogId::new(self.u64()?, self.u64()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], CorruptionKind> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn finish<T>(self, v: T) -> Result<T, CorruptionKind> {
        if self.buf.is_empty() {
            Ok(v)
        } else {
            Err(self.bad("trailing bytes"))
        }
    }
}

const S_VOTE: u8 = 1;
const S_LAST: u8 = 2;
const S_COMMITTED: u8 = 4;
const S_PURGED: u8 = 8;
const S_USER: u8 = 16;

impl<'a> Record<'a> {
    /// The kind byte of this record.
    pub fn kind(&self) -> u8 {
        match self {
            Record::Entry { .. } => KIND_ENTRY,
            Record::Truncate { .. } => KIND_TRUNCATE,
            Record::Purge { .. } => KIND_PURGE,
            Record::Commit { .. } => KIND_COMMIT,
            Record::Vote { .. } => KIND_VOTE,
            Record::UserData { .. } => KIND_USER_DATA,
            Record::State(_) => KIND_STATE,
            Record::Seal => KIND_SEAL,
            Record::Batch { .. } => KIND_BATCH,
            Record::Index { .. } => KIND_INDEX,
            Record::RemoveGroup => KIND_REMOVE_GROUP,
        }
    }

    /// The highest entry index this record writes (an entry, or a batch's last member).
    pub fn last_entry_index(&self) -> Option<u64> {
        match self {
            Record::Entry { id, .. } => Some(id.index),
            Record::Batch { head, .. } => Some(head.last()),
            _ => None,
        }
    }

    /// A short name for the kind, for dumps and errors.
    pub fn kind_name(kind: u8) -> &'static str {
        match kind {
            KIND_ENTRY => "entry",
            KIND_TRUNCATE => "truncate",
            KIND_PURGE => "purge",
            KIND_COMMIT => "commit",
            KIND_VOTE => "vote",
            KIND_USER_DATA => "user_data",
            KIND_STATE => "state",
            KIND_SEAL => "seal",
            KIND_BATCH => "batch",
            KIND_INDEX => "index",
            KIND_REMOVE_GROUP => "remove_group",
            _ => "unknown",
        }
    }

    /// Length of the encoded body.
    pub fn body_len(&self) -> usize {
        match self {
            Record::Entry { payload, .. } => 16 + payload.len(),
            Record::Truncate { last, .. } => 9 + 16 * (last.is_some() as usize),
            Record::Purge { .. } | Record::Commit { .. } => 16,
            Record::Vote { vote } => vote.len(),
            Record::UserData { data } => 1 + data.map_or(0, |d| d.len()),
            Record::State(s) => {
                1 + 16 * (s.last.is_some() as usize)
                    + 16 * (s.committed.is_some() as usize)
                    + 16 * (s.purged.is_some() as usize)
                    + s.vote.map_or(0, |v| 4 + v.len())
                    + s.user_data.map_or(0, |u| 4 + u.len())
            }
            Record::Seal | Record::RemoveGroup => 0,
            Record::Batch { data, .. } => BATCH_HEAD_LEN + data.len(),
            Record::Index { body } => body.len(),
        }
    }

    /// Write the body into `dst`, which is exactly `body_len()` long.
    pub fn write_body(&self, dst: &mut [u8]) {
        match self {
            Record::Entry { id, payload } => {
                let at = put_id(dst, 0, *id);
                dst[at..].copy_from_slice(payload);
            }
            Record::Truncate { since, last } => {
                dst[..8].copy_from_slice(&since.to_le_bytes());
                dst[8] = last.is_some() as u8;
                if let Some(id) = last {
                    put_id(dst, 9, *id);
                }
            }
            Record::Purge { upto: id } | Record::Commit { id } => {
                put_id(dst, 0, *id);
            }
            Record::Vote { vote } => dst.copy_from_slice(vote),
            Record::UserData { data } => {
                dst[0] = data.is_some() as u8;
                if let Some(d) = data {
                    dst[1..].copy_from_slice(d);
                }
            }
            Record::State(s) => {
                let mut flags = 0;
                for (present, bit) in [
                    (s.vote.is_some(), S_VOTE),
                    (s.last.is_some(), S_LAST),
                    (s.committed.is_some(), S_COMMITTED),
                    (s.purged.is_some(), S_PURGED),
                    (s.user_data.is_some(), S_USER),
                ] {
                    if present {
                        flags |= bit;
                    }
                }
                dst[0] = flags;
                let mut at = 1;
                for id in [s.last, s.committed, s.purged].into_iter().flatten() {
                    at = put_id(dst, at, id);
                }
                for b in [s.vote, s.user_data].into_iter().flatten() {
                    at = put_bytes(dst, at, b);
                }
            }
            Record::Seal | Record::RemoveGroup => {}
            Record::Batch { head, data } => {
                head.write(&mut dst[..BATCH_HEAD_LEN]);
                dst[BATCH_HEAD_LEN..].copy_from_slice(data);
            }
            Record::Index { body } => dst.copy_from_slice(body),
        }
    }

    /// [`Record::decode`] for a record of a chunk whose header has format `version`: kinds
    /// new in v2 (9 and up: Index, Batch) are unknown in a v1 chunk, exactly as a build of
    /// that version would find them.
    pub fn decode_in(version: u32, kind: u8, body: &'a [u8]) -> Result<Record<'a>, CorruptionKind> {
        if version < 2 && kind >= FIRST_V2_KIND || version < 3 && kind >= FIRST_V3_KIND {
            return Err(CorruptionKind::UnknownKind { kind });
        }
        Self::decode(kind, body)
    }

    /// Decode a body of the given kind. Total: never panics.
    pub fn decode(kind: u8, body: &'a [u8]) -> Result<Record<'a>, CorruptionKind> {
        let mut c = Cursor {
            buf: body,
            kind: Self::kind_name(kind),
        };
        match kind {
            KIND_ENTRY => {
                let id = c.id()?;
                Ok(Record::Entry { id, payload: c.buf })
            }
            KIND_TRUNCATE => {
                let since = c.u64()?;
                let last = match c.u8()? {
                    0 => None,
                    1 => Some(c.id()?),
                    _ => return Err(c.bad("presence byte")),
                };
                c.finish(Record::Truncate { since, last })
            }
            KIND_PURGE => {
                let upto = c.id()?;
                c.finish(Record::Purge { upto })
            }
            KIND_COMMIT => {
                let id = c.id()?;
                c.finish(Record::Commit { id })
            }
            KIND_VOTE => Ok(Record::Vote { vote: body }),
            KIND_USER_DATA => match c.u8()? {
                0 => c.finish(Record::UserData { data: None }),
                1 => Ok(Record::UserData { data: Some(c.buf) }),
                _ => Err(c.bad("presence byte")),
            },
            KIND_STATE => {
                let flags = c.u8()?;
                if flags & !(S_VOTE | S_LAST | S_COMMITTED | S_PURGED | S_USER) != 0 {
                    return Err(c.bad("unknown flags"));
                }
                let mut s = StateImage::default();
                if flags & S_LAST != 0 {
                    s.last = Some(c.id()?);
                }
                if flags & S_COMMITTED != 0 {
                    s.committed = Some(c.id()?);
                }
                if flags & S_PURGED != 0 {
                    s.purged = Some(c.id()?);
                }
                if flags & S_VOTE != 0 {
                    s.vote = Some(c.bytes()?);
                }
                if flags & S_USER != 0 {
                    s.user_data = Some(c.bytes()?);
                }
                c.finish(Record::State(s))
            }
            KIND_SEAL => c.finish(Record::Seal),
            KIND_REMOVE_GROUP => c.finish(Record::RemoveGroup),
            KIND_BATCH => {
                let (head, data) = BatchHead::decode(body)?;
                Ok(Record::Batch { head, data })
            }
            KIND_INDEX => Ok(Record::Index { body }),
            other => Err(CorruptionKind::UnknownKind { kind: other }),
        }
    }
}
