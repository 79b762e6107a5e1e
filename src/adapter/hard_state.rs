//! The Raft hard state and its fixed little-endian encoding, stored as the core's vote.

use super::error::AdapterError;

/// Encoded length of a [`HardState`].
pub const HARD_STATE_LEN: usize = 17;

/// The Raft hard state: the current term and the vote cast in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen.
    pub current_term: u64,
    /// The candidate voted for in `current_term`, if any.
    pub voted_for: Option<u64>,
}

impl HardState {
    /// `current_term` (u64 LE) | tag (u8: 0 none, 1 some) | `voted_for` (u64 LE, 0 if none).
    pub fn encode(&self) -> [u8; HARD_STATE_LEN] {
        let mut b = [0u8; HARD_STATE_LEN];
        b[..8].copy_from_slice(&self.current_term.to_le_bytes());
        if let Some(v) = self.voted_for {
            b[8] = 1;
            b[9..].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decode [`HardState::encode`]'s output; anything else is [`AdapterError::BadHardState`].
    pub fn decode(bytes: &[u8]) -> Result<HardState, AdapterError> {
        let bad = |reason| AdapterError::BadHardState {
            len: bytes.len(),
            reason,
        };
        let b: &[u8; HARD_STATE_LEN] = bytes.try_into().map_err(|_| bad("wrong length"))?;
        let mut term = [0u8; 8];
        term.copy_from_slice(&b[..8]);
        let mut vote = [0u8; 8];
        vote.copy_from_slice(&b[9..]);
        let voted_for = match b[8] {
            0 if vote == [0; 8] => None,
            0 => return Err(bad("vote bytes set without a vote")),
            1 => Some(u64::from_le_bytes(vote)),
            _ => return Err(bad("unknown vote tag")),
        };
        Ok(HardState {
            current_term: u64::from_le_bytes(term),
            voted_for,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        for hs in [
            HardState::default(),
            HardState {
                current_term: 9,
                voted_for: Some(u64::MAX),
            },
        ] {
            assert_eq!(HardState::decode(&hs.encode()).ok(), Some(hs));
        }
        assert!(HardState::decode(&[0; 16]).is_err());
        let mut b = HardState::default().encode();
        b[8] = 2;
        assert!(HardState::decode(&b).is_err());
        b[8] = 0;
        b[16] = 1;
        assert!(HardState::decode(&b).is_err());
    }
}
