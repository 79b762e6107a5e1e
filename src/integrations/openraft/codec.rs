//! Serialization of openraft values (entries, votes, log ids) into the bytes chunkwal stores.
//!
//! The codec is [postcard]: a serde format that writes integers as varints (a log id or a
//! small index costs one or two bytes, not eight), has a documented wire format frozen for
//! the 1.x series (these bytes live on disk for as long as the log does) and is fast for
//! both directions. bincode 1.x was the alternative; it is unmaintained and its default
//! fixed-width integers make small entries larger.
//!
//! Entries keep their *full* serialized form as the chunkwal payload, so the openraft
//! `LogId` (whose leader id may carry a node id) is always recoverable from the payload; the
//! core's own `LogId` only holds `{term: leader_id.term, index}` for indexing and tooling.

use ::openraft::{LogId, NodeId};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::StoreError;

/// Serialize `value`; `what` names it in the error.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    what: &'static str,
) -> Result<Bytes, StoreError> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|source| StoreError::Encode { what, source })
}

/// Deserialize bytes written by [`encode`]; never panics on bad input.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Decode { what, source })
}

/// The core's `{term, index}` view of an openraft log id.
pub(crate) fn core_id<NID: NodeId>(id: &LogId<NID>) -> crate::LogId {
    crate::LogId::new(id.leader_id.term, id.index)
}
