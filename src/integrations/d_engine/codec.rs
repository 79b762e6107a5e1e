//! Conversions between d-engine's types and chunkwal's: `HardState` ⇄ vote bytes,
//! `AdapterError` → d-engine `Error` (entries: see `entry`).

use d_engine::{HardState, StorageError};

use crate::adapter::AdapterError;

/// Encoded length of a d-engine hard state.
pub const D_HARD_STATE_LEN: usize = 22;

/// `current_term` (u64 LE) | tag (u8: 0 no vote, 1 vote) | `voted_for_id` (u32 LE) |
/// `voted_for_term` (u64 LE) | `committed` (u8). Fields of an absent vote are zero.
pub fn encode_hard_state(hs: &HardState) -> [u8; D_HARD_STATE_LEN] {
    let mut b = [0u8; D_HARD_STATE_LEN];
    b[..8].copy_from_slice(&hs.current_term.to_le_bytes());
    if let Some(v) = &hs.voted_for {
        b[8] = 1;
        b[9..13].copy_from_slice(&v.voted_for_id.to_le_bytes());
        b[13..21].copy_from_slice(&v.voted_for_term.to_le_bytes());
        b[21] = u8::from(v.committed);
    }
    b
}

/// Decode [`encode_hard_state`]'s output.
pub fn decode_hard_state(bytes: &[u8]) -> Result<HardState, AdapterError> {
    let bad = |reason| AdapterError::BadHardState {
        len: bytes.len(),
        reason,
    };
    let b: &[u8; D_HARD_STATE_LEN] = bytes.try_into().map_err(|_| bad("wrong length"))?;
    let u64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(x)
    };
    let mut id = [0u8; 4];
    id.copy_from_slice(&b[9..13]);
    let mut hs = HardState {
        current_term: u64_at(0),
        voted_for: None,
    };
    match (b[8], b[21]) {
        (0, _) if b[9..] == [0; 13] => {}
        (1, c @ (0 | 1)) => {
            // The vote type is not re-exported by d-engine: fill a default one in place.
            let v = hs.voted_for.insert(Default::default());
            v.voted_for_id = u32::from_le_bytes(id);
            v.voted_for_term = u64_at(13);
            v.committed = c == 1;
        }
        (0, _) => return Err(bad("vote fields set without a vote")),
        (1, _) => return Err(bad("bad committed flag")),
        _ => return Err(bad("unknown vote tag")),
    }
    Ok(hs)
}

/// Map an adapter error to d-engine's error: damage on disk is `DataCorruption` (fatal for
/// d-engine), everything else a log storage failure.
pub(crate) fn to_d_error(e: AdapterError) -> d_engine::Error {
    let corrupt = matches!(
        &e,
        AdapterError::Wal(crate::Error::Corruption { .. }) | AdapterError::BadHardState { .. }
    );
    let s = if corrupt {
        StorageError::DataCorruption {
            location: e.to_string(),
        }
    } else {
        StorageError::LogStorage(e.to_string())
    };
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_state_round_trip() {
        let mut hs = HardState {
            current_term: 5,
            voted_for: None,
        };
        let back = decode_hard_state(&encode_hard_state(&hs)).expect("decode");
        assert_eq!((back.current_term, back.voted_for), (5, None));
        let v = hs.voted_for.insert(Default::default());
        v.voted_for_id = 7;
        v.voted_for_term = 4;
        v.committed = true;
        let back = decode_hard_state(&encode_hard_state(&hs)).expect("decode");
        assert_eq!(back.voted_for, hs.voted_for);
        let mut b = encode_hard_state(&hs);
        b[21] = 2;
        assert!(decode_hard_state(&b).is_err());
        assert!(decode_hard_state(&b[..21]).is_err());
    }
}
