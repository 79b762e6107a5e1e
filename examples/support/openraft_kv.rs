//! A small KV state machine for openraft (type config, apply, snapshots), shared by the
//! `openraft_cluster` example and the openraft tests through `#[path]`.
//!
//! Snapshots are kept in memory and, when the machine has a directory, also written to
//! `snapshot.bin` there, so a restarted node rebuilds its state from its last snapshot plus
//! the chunkwal log.
#![allow(dead_code)] // each includer uses a different part

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

/// A client request: set `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub key: String,
    pub value: u64,
}

/// The reply: the value `key` held before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub previous: Option<u64>,
}

openraft::declare_raft_types!(
    /// Type config of the example: u64 node ids, `BasicNode`, tokio.
    pub TypeConfig: D = Request, R = Response
);

type NodeId = u64;
type Error = StorageError<NodeId>;

/// Everything the state machine holds; also the snapshot body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvData {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub kv: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

fn sm_write(e: impl std::error::Error + 'static) -> Error {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_write(e: impl std::error::Error + 'static) -> Error {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

/// The snapshot slot and where it is persisted.
#[derive(Debug, Clone, Default)]
struct SnapshotSlot {
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    dir: Option<PathBuf>,
}

impl SnapshotSlot {
    fn file(dir: &Path) -> PathBuf {
        dir.join("snapshot.bin")
    }

    fn store(&self, snap: StoredSnapshot) -> io::Result<()> {
        if let Some(dir) = &self.dir {
            let bytes = postcard::to_stdvec(&snap).map_err(io::Error::other)?;
            let tmp = dir.join("snapshot.tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, Self::file(dir))?;
        }
        *self.current.lock().expect("snapshot slot poisoned") = Some(snap);
        Ok(())
    }

    fn get(&self) -> Option<StoredSnapshot> {
        self.current.lock().expect("snapshot slot poisoned").clone()
    }
}

/// The state machine. [`KvStateMachine::data`] gives a handle that stays valid after the
/// machine moves into `Raft`.
#[derive(Debug, Clone, Default)]
pub struct KvStateMachine {
    data: Arc<Mutex<KvData>>,
    slot: SnapshotSlot,
    snapshots_built: Arc<Mutex<u64>>,
}

impl KvStateMachine {
    /// A machine that keeps snapshots in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A machine persisting snapshots in `dir`, restored from the last one found there.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let sm = KvStateMachine {
            slot: SnapshotSlot {
                dir: Some(dir.to_path_buf()),
                ..SnapshotSlot::default()
            },
            ..Self::default()
        };
        match std::fs::read(SnapshotSlot::file(dir)) {
            Ok(bytes) => {
                let snap: StoredSnapshot =
                    postcard::from_bytes(&bytes).map_err(io::Error::other)?;
                *sm.data.lock().expect("poisoned") =
                    postcard::from_bytes(&snap.data).map_err(io::Error::other)?;
                *sm.slot.current.lock().expect("poisoned") = Some(snap);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(sm)
    }

    /// A shared handle on the machine's data.
    pub fn data(&self) -> Arc<Mutex<KvData>> {
        Arc::clone(&self.data)
    }

    fn snapshot_data(&self) -> KvData {
        self.data.lock().expect("poisoned").clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        let data = self.snapshot_data();
        let body = postcard::to_stdvec(&data).map_err(snap_write)?;
        let n = {
            let mut n = self.snapshots_built.lock().expect("poisoned");
            *n += 1;
            *n
        };
        let last = data.last_applied.map_or(0, |l| l.index);
        let snap = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: data.last_applied,
                last_membership: data.last_membership.clone(),
                snapshot_id: format!("{last}-{n}"),
            },
            data: body,
        };
        self.slot.store(snap.clone()).map_err(snap_write)?;
        Ok(snap.to_snapshot())
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Error> {
        let d = self.data.lock().expect("poisoned");
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, Error>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut d = self.data.lock().expect("poisoned");
        let mut replies = Vec::new();
        for entry in entries {
            d.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => Response {
                    previous: d.kv.insert(req.key, req.value),
                },
                EntryPayload::Membership(m) => {
                    d.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::default()
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let body = snapshot.into_inner();
        let mut data: KvData = postcard::from_bytes(&body).map_err(sm_write)?;
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: body,
        };
        self.slot.store(snap).map_err(snap_write)?;
        *self.data.lock().expect("poisoned") = data;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        Ok(self.slot.get().map(|s| s.to_snapshot()))
    }
}
