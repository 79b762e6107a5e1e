//! The store's metadata record: the full openraft purge point and committed log id.
//!
//! The core keeps purge and commit points as `{term, index}` only, while an openraft
//! `LogId` may also carry the leader's node id. The store therefore keeps both full ids in
//! one small record saved as the core's user data (the openraft store owns that slot).
//! A purge writes this record *before* the core's purge record, so after a crash the core is
//! never ahead of it; [`Meta::reconcile`] rolls an interrupted purge forward on open.

use ::openraft::{LogId, NodeId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{core_id, decode, encode};
use super::error::StoreError;
use crate::Wal;

/// Version byte in front of the serialized record.
const META_VERSION: u8 = 1;

/// Full openraft log ids the core cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Meta<NID: NodeId> {
    /// The last purged log id, as openraft gave it.
    pub purged: Option<LogId<NID>>,
    /// The last saved committed log id.
    pub committed: Option<LogId<NID>>,
}

impl<NID: NodeId> Default for Meta<NID> {
    fn default() -> Self {
        Meta {
            purged: None,
            committed: None,
        }
    }
}

impl<NID: NodeId> Meta<NID> {
    /// Load the record from the log's user data (absent on a new log).
    pub fn load(wal: &Wal) -> Result<Self, StoreError> {
        let Some(bytes) = wal.log_state().user_data else {
            return Ok(Meta::default());
        };
        match bytes.split_first() {
            Some((&META_VERSION, rest)) => decode(rest, "openraft metadata"),
            Some((&version, _)) => Err(StoreError::MetaVersion { version }),
            None => Err(StoreError::MetaVersion { version: 0 }),
        }
    }

    /// Save the record as the log's user data (durable with the next flush).
    pub fn save(&self, wal: &Wal) -> Result<(), StoreError> {
        let body = encode(self, "openraft metadata")?;
        let mut bytes = Vec::with_capacity(body.len() + 1);
        bytes.push(META_VERSION);
        bytes.extend_from_slice(&body);
        wal.save_user_data(Some(Bytes::from(bytes)))?;
        Ok(())
    }

    /// Bring the core in line with the record after a crash: finish a purge whose metadata
    /// was written but whose core purge record was lost.
    pub fn reconcile(&self, wal: &Wal) -> Result<(), StoreError> {
        let core = wal.log_state().purged.map(|p| p.index);
        let recorded = self.purged.as_ref().map(|p| p.index);
        match (recorded, core) {
            (Some(r), c) if c.is_none_or(|c| c < r) => {
                if let Some(p) = &self.purged {
                    tracing::info!(upto = %p, "finishing an interrupted purge");
                    wal.purge(core_id(p))?;
                }
                Ok(())
            }
            (r, Some(c)) if r.is_none_or(|r| r < c) => Err(StoreError::PurgeAhead {
                core: c,
                recorded: r,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use ::openraft::CommittedLeaderId;

    use super::*;

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn wal_with_entries(dir: &std::path::Path) -> Wal {
        let mut config = crate::Config::new(dir);
        config.chunk_size = crate::MIN_CHUNK_SIZE;
        let wal = Wal::open(config).unwrap();
        wal.append((0..10).map(|i| (crate::LogId::new(1, i), Bytes::from_static(b"x"))))
            .unwrap();
        wal
    }

    #[test]
    fn roundtrip_and_unknown_version() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with_entries(dir.path());
        assert_eq!(Meta::<u64>::load(&wal).unwrap(), Meta::default());
        let meta = Meta {
            purged: Some(id(1, 3)),
            committed: Some(id(1, 8)),
        };
        meta.save(&wal).unwrap();
        assert_eq!(Meta::<u64>::load(&wal).unwrap(), meta);
        wal.save_user_data(Some(Bytes::from_static(&[9, 0])))
            .unwrap();
        assert!(matches!(
            Meta::<u64>::load(&wal),
            Err(StoreError::MetaVersion { version: 9 })
        ));
        wal.save_user_data(Some(Bytes::from_static(&[META_VERSION, 0xff])))
            .unwrap();
        assert!(matches!(
            Meta::<u64>::load(&wal),
            Err(StoreError::Decode { .. })
        ));
    }

    #[test]
    fn reconcile_finishes_an_interrupted_purge() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with_entries(dir.path());
        // As after a crash between the metadata record and the core purge record.
        let meta = Meta {
            purged: Some(id(1, 4)),
            committed: None,
        };
        meta.save(&wal).unwrap();
        assert_eq!(wal.log_state().purged, None);
        meta.reconcile(&wal).unwrap();
        assert_eq!(wal.log_state().purged, Some(crate::LogId::new(1, 4)));
        assert_eq!(wal.first_index(), Some(5));
        // Idempotent.
        meta.reconcile(&wal).unwrap();
        assert_eq!(wal.first_index(), Some(5));
    }

    #[test]
    fn reconcile_refuses_a_core_purged_further() {
        let dir = tempfile::tempdir().unwrap();
        let wal = wal_with_entries(dir.path());
        wal.purge(crate::LogId::new(1, 6)).unwrap();
        let meta = Meta {
            purged: Some(id(1, 4)),
            committed: None,
        };
        assert!(matches!(
            meta.reconcile(&wal),
            Err(StoreError::PurgeAhead {
                core: 6,
                recorded: Some(4)
            })
        ));
        assert!(matches!(
            Meta::<u64>::default().reconcile(&wal),
            Err(StoreError::PurgeAhead {
                core: 6,
                recorded: None
            })
        ));
    }
}
