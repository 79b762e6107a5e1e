//! The d-engine entry encoding: a prost `Entry` ⇄ chunkwal's `(LogId, Bytes)`.
//!
//! The record's `LogId` carries the index and term, so the payload holds only the entry's
//! body, behind one tag byte (layout 2, written since issue #13):
//!
//! | tag | body after the tag | decodes to `Entry::payload` |
//! |---|---|---|
//! | `0x01` | the command bytes | `Some(EntryPayload { payload: Some(Command(..)) })` |
//! | `0x02` | nothing | `Some(EntryPayload { payload: Some(Noop) })` |
//! | `0x03` | the prost encoding of the `MembershipChange` | `Some(EntryPayload { payload: Some(Config(..)) })` |
//! | `0x04` | nothing | `None` |
//! | `0x05` | nothing | `Some(EntryPayload { payload: None })` |
//!
//! A command decodes by slicing the stored `Bytes` (no copy, no varint parsing), which is
//! what makes `get_entries` cheap. Layout 1 (the code before issue #13) stored the whole
//! prost `Entry` message. A protobuf message starts with a field key, `field << 3 | wire`, and
//! field numbers start at 1, so its first byte is at least `0x08` (or the message is empty):
//! tags below `0x08` can never begin a layout-1 record. Layout-1 records are still read, so
//! logs written before keep working; `tests/fixtures/d-engine-entries-v1/` holds one.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use d_engine::common::entry_payload::Payload;
use d_engine::common::{Entry, EntryPayload};
use d_engine::StorageError;
use prost::Message;

use crate::LogId;

const COMMAND: u8 = 0x01;
const NOOP: u8 = 0x02;
const CONFIG: u8 = 0x03;
const NO_PAYLOAD: u8 = 0x04;
const EMPTY_PAYLOAD: u8 = 0x05;
/// The lowest first byte of a layout-1 (prost `Entry`) record.
const PROST_KEY_MIN: u8 = 0x08;

/// Entries as log entries: each id, and each tagged body as the payload. The bodies of one
/// call share one buffer, so a read walks them in address order (and their reference count
/// is one cache line) rather than hopping between allocations; the buffer lives while any of
/// its entries is held, in the payload cache or by a reader.
pub(crate) fn entries_to_log(es: &[Entry]) -> Vec<(LogId, Bytes)> {
    let mut buf = BytesMut::with_capacity(es.iter().map(body_len).sum());
    es.iter()
        .map(|e| {
            put_body(e, &mut buf);
            (LogId::new(e.term, e.index), buf.split().freeze())
        })
        .collect()
}

fn body_len(e: &Entry) -> usize {
    1 + match &e.payload {
        Some(EntryPayload {
            payload: Some(Payload::Command(c)),
        }) => c.len(),
        Some(EntryPayload {
            payload: Some(Payload::Config(m)),
        }) => m.encoded_len(),
        _ => 0,
    }
}

fn put_body(e: &Entry, buf: &mut BytesMut) {
    match &e.payload {
        None => buf.put_u8(NO_PAYLOAD),
        Some(EntryPayload { payload: None }) => buf.put_u8(EMPTY_PAYLOAD),
        Some(EntryPayload {
            payload: Some(Payload::Noop(_)),
        }) => buf.put_u8(NOOP),
        Some(EntryPayload {
            payload: Some(Payload::Command(c)),
        }) => {
            buf.put_u8(COMMAND);
            buf.put_slice(c);
        }
        Some(EntryPayload {
            payload: Some(Payload::Config(m)),
        }) => {
            buf.put_u8(CONFIG);
            m.encode_raw(buf);
        }
    }
}

/// A stored d-engine entry that does not decode. Kept small (the hot loop moves a
/// `Result<Entry, _>` per entry); it becomes d-engine's `DataCorruption` at the trait edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryDecodeError {
    /// A layout-1 record, or a layout-2 membership change, that prost rejects.
    #[error("chunkwal entry {id}: {source}")]
    Prost {
        /// The record's id.
        id: LogId,
        /// What prost said.
        source: prost::DecodeError,
    },
    /// A layout-1 record whose message holds another entry than its record's id.
    #[error("chunkwal entry {id}: payload holds entry {term}-{index}")]
    OtherId {
        /// The record's id.
        id: LogId,
        /// The term in the message.
        term: u64,
        /// The index in the message.
        index: u64,
    },
    /// A tag below `0x08` that no layout defines.
    #[error("chunkwal entry {id}: unknown tag {tag:#04x}")]
    UnknownTag {
        /// The record's id.
        id: LogId,
        /// The tag byte.
        tag: u8,
    },
    /// Bytes after a tag whose body is empty.
    #[error("chunkwal entry {id}: {len} bytes after tag {tag:#04x}")]
    Trailing {
        /// The record's id.
        id: LogId,
        /// The tag byte.
        tag: u8,
        /// How many bytes follow it.
        len: usize,
    },
}

impl From<EntryDecodeError> for d_engine::Error {
    fn from(e: EntryDecodeError) -> Self {
        StorageError::DataCorruption {
            location: e.to_string(),
        }
        .into()
    }
}

/// Decode one stored entry, with the fast path for commands (nearly every entry): built in
/// place, without a `Result` between.
#[inline]
pub(crate) fn decode_stored((id, mut payload): (LogId, Bytes)) -> Result<Entry, EntryDecodeError> {
    if payload.first() == Some(&COMMAND) {
        payload.advance(1);
        return Ok(entry(id, Some(EntryPayload::command(payload))));
    }
    log_to_entry((id, payload))
}

/// Decode a stored entry back to a d-engine `Entry` (either layout).
#[inline]
pub(crate) fn log_to_entry((id, mut payload): (LogId, Bytes)) -> Result<Entry, EntryDecodeError> {
    let tag = match payload.first() {
        Some(&t) if t < PROST_KEY_MIN => t,
        _ => return decode_prost(id, payload),
    };
    payload.advance(1);
    let body = match tag {
        COMMAND => Some(Payload::Command(payload)),
        CONFIG => Some(Payload::Config(decode_config(id, payload)?)),
        _ if !payload.is_empty() => {
            let len = payload.len();
            return Err(EntryDecodeError::Trailing { id, tag, len });
        }
        NOOP => Some(Payload::Noop(Default::default())),
        EMPTY_PAYLOAD => None,
        NO_PAYLOAD => return Ok(entry(id, None)),
        _ => return Err(EntryDecodeError::UnknownTag { id, tag }),
    };
    Ok(entry(id, Some(EntryPayload { payload: body })))
}

#[inline]
fn entry(id: LogId, payload: Option<EntryPayload>) -> Entry {
    Entry {
        index: id.index,
        term: id.term,
        payload,
    }
}

#[cold]
#[inline(never)]
fn decode_config<M: Message + Default>(id: LogId, body: Bytes) -> Result<M, EntryDecodeError> {
    M::decode(body).map_err(|source| EntryDecodeError::Prost { id, source })
}

/// Layout 1: the whole prost `Entry`, which must carry the record's id.
#[cold]
#[inline(never)]
fn decode_prost(id: LogId, payload: Bytes) -> Result<Entry, EntryDecodeError> {
    let e = Entry::decode(payload).map_err(|source| EntryDecodeError::Prost { id, source })?;
    if e.index != id.index || e.term != id.term {
        let (term, index) = (e.term, e.index);
        return Err(EntryDecodeError::OtherId { id, term, index });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(payload: Option<EntryPayload>) -> Entry {
        Entry {
            index: 3,
            term: 2,
            payload,
        }
    }

    fn shapes() -> Vec<Entry> {
        let config = Payload::Config(Message::decode(&[0x0a, 0x02, 0x08, 0x07][..]).unwrap());
        [
            None,
            Some(EntryPayload { payload: None }),
            Some(EntryPayload::noop()),
            Some(EntryPayload::command(Bytes::new())),
            Some(EntryPayload::command(Bytes::from_static(
                b"\x00\x08put k v",
            ))),
            Some(EntryPayload {
                payload: Some(config),
            }),
        ]
        .into_iter()
        .map(with)
        .collect()
    }

    #[test]
    fn every_shape_round_trips_and_starts_below_any_prost_key() {
        let es = shapes();
        let logged = entries_to_log(&es);
        assert_eq!(logged.len(), es.len());
        for (e, (id, p)) in es.iter().zip(logged) {
            assert_eq!(id, LogId::new(2, 3));
            assert_eq!(p.len(), body_len(e));
            assert!(p[0] < PROST_KEY_MIN, "{e:?}");
            assert_eq!(&log_to_entry((id, p)).expect("decode"), e);
        }
    }

    #[test]
    fn layout_one_still_decodes_and_checks_its_id() {
        for e in shapes() {
            let p = Bytes::from(e.encode_to_vec());
            assert!(p[0] >= PROST_KEY_MIN);
            assert_eq!(log_to_entry((LogId::new(2, 3), p.clone())).expect("v1"), e);
            assert!(log_to_entry((LogId::new(2, 4), p)).is_err());
        }
    }

    #[test]
    fn a_command_is_a_slice_of_the_stored_bytes() {
        let e = with(Some(EntryPayload::command(Bytes::from(vec![7u8; 256]))));
        let (id, p) = entries_to_log(&[e]).remove(0);
        let at = p.as_ptr();
        let Some(EntryPayload {
            payload: Some(Payload::Command(c)),
        }) = log_to_entry((id, p)).expect("decode").payload
        else {
            panic!("not a command");
        };
        assert_eq!(c.as_ptr(), at.wrapping_add(1));
    }

    #[test]
    fn damaged_bodies_are_corruption() {
        let id = LogId::new(2, 3);
        for bad in [
            &[0x00][..],
            &[0x06],
            &[0x07, 1],
            &[NOOP, 0],
            &[NO_PAYLOAD, 1, 2],
            &[EMPTY_PAYLOAD, 0],
            &[CONFIG, 0xff],
            &[0xff, 0xff],
        ] {
            let err = log_to_entry((id, Bytes::copy_from_slice(bad))).expect_err("corrupt");
            // d-engine does not re-export `SystemError`, so match on the debug form.
            let err = d_engine::Error::from(err);
            assert!(
                format!("{err:?}").contains("DataCorruption"),
                "{bad:?}: {err:?}"
            );
        }
    }
}
