//! The store's metadata record: the full openraft purge point and committed log id.
//!
//! The core keeps purge and commit points as `{term, index}` only, while an openraft
//! `LogId` may also carry the leader's node id. The store therefore keeps both full ids in
//! one small record saved as the group's user data (the openraft store owns that slot of its
//! group).
//! A purge writes this record *before* the core's purge record, so after a crash the core is
//! never ahead of it; [`Meta::reconcile`] rolls an interrupted purge forward on open.

use ::openraft::{LogId, NodeId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::{core_id, decode, encode};
use super::error::StoreError;
use crate::Group;

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
    /// Load the record from the group's user data (absent on a new log).
    pub fn load(group: &Group<'_>) -> Result<Self, StoreError> {
        let Some(bytes) = group.log_state().user_data else {
            return Ok(Meta::default());
        };
        match bytes.split_first() {
            Some((&META_VERSION, rest)) => decode(rest, "openraft metadata"),
            Some((&version, _)) => Err(StoreError::MetaVersion { version }),
            None => Err(StoreError::MetaVersion { version: 0 }),
        }
    }

    /// Save the record as the group's user data (durable with the next flush).
    pub fn save(&self, group: &Group<'_>) -> Result<(), StoreError> {
        let body = encode(self, "openraft metadata")?;
        let mut bytes = Vec::with_capacity(body.len() + 1);
        bytes.push(META_VERSION);
        bytes.extend_from_slice(&body);
        group.save_user_data(Some(Bytes::from(bytes)))?;
        Ok(())
    }

    /// Bring the core in line with the record after a crash: finish a purge whose metadata
    /// was written but whose core purge record was lost.
    pub fn reconcile(&self, group: &Group<'_>) -> Result<(), StoreError> {
        let core = group.log_state().purged.map(|p| p.index);
        let recorded = self.purged.as_ref().map(|p| p.index);
        match (recorded, core) {
            (Some(r), c) if c.is_none_or(|c| c < r) => {
                if let Some(p) = &self.purged {
                    tracing::info!(upto = %p, group = %group.id(), "finishing an interrupted purge");
                    group.purge(core_id(p))?;
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
    use crate::{GroupId, Wal};

    /// The groups the tests run on: the default one and one that shares the log with it.
    const GROUPS: [GroupId; 2] = [GroupId::DEFAULT, GroupId(7)];

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// A log whose groups in [`GROUPS`] each hold entries 0..10.
    fn wal_with_entries(dir: &std::path::Path) -> Wal {
        let mut config = crate::Config::new(dir);
        config.chunk_size = crate::MIN_CHUNK_SIZE;
        let wal = Wal::open(config).unwrap();
        for g in GROUPS {
            let entries = (0..10).map(|i| (crate::LogId::new(1, i), Bytes::from_static(b"x")));
            wal.group(g).append(entries).unwrap();
        }
        wal
    }

    /// The other group of [`GROUPS`] is untouched: no user data, no purge, all entries.
    fn assert_other_untouched(wal: &Wal, group: GroupId) {
        for other in GROUPS.into_iter().filter(|g| *g != group) {
            let other = wal.group(other);
            assert_eq!(other.log_state().user_data, None);
            assert_eq!(other.log_state().purged, None);
            assert_eq!(other.first_index(), Some(0));
            assert_eq!(other.last_index(), Some(9));
        }
    }

    #[test]
    fn roundtrip_and_unknown_version() {
        for group in GROUPS {
            let dir = tempfile::tempdir().unwrap();
            let wal = wal_with_entries(dir.path());
            let g = wal.group(group);
            assert_eq!(Meta::<u64>::load(&g).unwrap(), Meta::default());
            let meta = Meta {
                purged: Some(id(1, 3)),
                committed: Some(id(1, 8)),
            };
            meta.save(&g).unwrap();
            assert_eq!(Meta::<u64>::load(&g).unwrap(), meta);
            assert_other_untouched(&wal, group);
            g.save_user_data(Some(Bytes::from_static(&[9, 0]))).unwrap();
            assert!(matches!(
                Meta::<u64>::load(&g),
                Err(StoreError::MetaVersion { version: 9 })
            ));
            g.save_user_data(Some(Bytes::from_static(&[META_VERSION, 0xff])))
                .unwrap();
            assert!(matches!(
                Meta::<u64>::load(&g),
                Err(StoreError::Decode { .. })
            ));
        }
    }

    #[test]
    fn reconcile_finishes_an_interrupted_purge() {
        for group in GROUPS {
            let dir = tempfile::tempdir().unwrap();
            let wal = wal_with_entries(dir.path());
            let g = wal.group(group);
            // As after a crash between the metadata record and the core purge record.
            let meta = Meta {
                purged: Some(id(1, 4)),
                committed: None,
            };
            meta.save(&g).unwrap();
            assert_eq!(g.log_state().purged, None);
            meta.reconcile(&g).unwrap();
            assert_eq!(g.log_state().purged, Some(crate::LogId::new(1, 4)));
            assert_eq!(g.first_index(), Some(5));
            // Idempotent.
            meta.reconcile(&g).unwrap();
            assert_eq!(g.first_index(), Some(5));
            // The purge was the group's own.
            g.save_user_data(None).unwrap();
            assert_other_untouched(&wal, group);
        }
    }

    #[test]
    fn reconcile_refuses_a_core_purged_further() {
        for group in GROUPS {
            let dir = tempfile::tempdir().unwrap();
            let wal = wal_with_entries(dir.path());
            let g = wal.group(group);
            g.purge(crate::LogId::new(1, 6)).unwrap();
            let meta = Meta {
                purged: Some(id(1, 4)),
                committed: None,
            };
            assert!(matches!(
                meta.reconcile(&g),
                Err(StoreError::PurgeAhead {
                    core: 6,
                    recorded: Some(4)
                })
            ));
            assert!(matches!(
                Meta::<u64>::default().reconcile(&g),
                Err(StoreError::PurgeAhead {
                    core: 6,
                    recorded: None
                })
            ));
        }
    }
}
