//! openraft integration on a shared log: openraft's storage `Suite` against a store that is
//! one non-default group of a `Wal` whose other groups hold data the suite must not touch,
//! restart checks of several group stores on one log, and the multi-group cluster scenario
//! of the `openraft_multigroup` example.

#[path = "../../examples/support/openraft_multigroup.rs"]
mod multigroup;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chunkwal::integrations::openraft::ChunkwalGroupStore;
use chunkwal::{GroupId, LogState, Wal};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use tempfile::TempDir;

use crate::openraft_suite::kv;
use kv::{KvStateMachine, Request, TypeConfig};

type Store = ChunkwalGroupStore<TypeConfig>;

/// The group the suite's store uses.
const SUITE_GROUP: GroupId = GroupId(2);
/// Groups that share the log with it, written before the suite starts (the default group
/// among them).
const OTHER_GROUPS: [GroupId; 3] = [GroupId::DEFAULT, GroupId(1), GroupId(3)];

fn small_config(dir: &std::path::Path) -> chunkwal::Config {
    let mut c = chunkwal::Config::new(dir);
    c.chunk_size = chunkwal::MIN_CHUNK_SIZE;
    c
}

fn io_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// What a neighbour group holds: its state and every entry.
type Snapshot = (LogState, Vec<(chunkwal::LogId, Bytes)>);

fn snapshot(wal: &Wal, group: GroupId) -> Snapshot {
    let g = wal.group(group);
    (g.log_state(), g.read(..).expect("read a neighbour group"))
}

/// Give `group` entries 1..=40 (some 2 KiB, so the log spans several chunks), then a purge,
/// a truncate, a commit, a vote and user data, all distinct per group.
fn fill_neighbour(wal: &Wal, group: GroupId) -> chunkwal::Result<()> {
    let g = wal.group(group);
    let tag = group.0 as u8;
    g.append((1..=40).map(|i| {
        let len = if i % 4 == 0 { 2048 } else { 16 };
        (
            chunkwal::LogId::new(1 + i / 20, i),
            Bytes::from(vec![tag ^ i as u8; len]),
        )
    }))?;
    g.purge(chunkwal::LogId::new(1, 5))?;
    g.truncate(38)?;
    g.commit(chunkwal::LogId::new(2, 30))?;
    g.save_vote(Bytes::from(vec![tag, 0xee]))?;
    g.save_user_data(Some(Bytes::from(vec![tag, 0x55])))?;
    wal.flush_blocking()
}

/// One log built for one suite case: kept until the end so its neighbours can be checked.
struct Built {
    dir: TempDir,
    wal: Arc<Wal>,
    before: Vec<Snapshot>,
}

/// Builds, per suite case, a fresh log with [`OTHER_GROUPS`] filled and a store on
/// [`SUITE_GROUP`], and keeps every log it built.
#[derive(Default)]
struct Builder {
    built: Mutex<Vec<Built>>,
}

impl StoreBuilder<TypeConfig, Store, KvStateMachine, ()> for &Builder {
    async fn build(&self) -> Result<((), Store, KvStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let wal = Arc::new(Wal::open(small_config(dir.path())).map_err(io_err)?);
        for g in OTHER_GROUPS {
            fill_neighbour(&wal, g).map_err(io_err)?;
        }
        let before = OTHER_GROUPS.iter().map(|g| snapshot(&wal, *g)).collect();
        let store = Store::open_group(Arc::clone(&wal), SUITE_GROUP).map_err(io_err)?;
        self.built.lock().unwrap().push(Built { dir, wal, before });
        Ok(((), store, KvStateMachine::in_memory()))
    }
}

/// Suite cases `test_all` runs in openraft 0.9.25; `transfer_snapshot` builds two stores.
const SUITE_CASES: usize = 35;

#[test]
fn openraft_suite_passes_on_one_group_of_a_shared_log() {
    let builder = Builder::default();
    Suite::test_all(&builder).expect("openraft storage suite on a shared log");
    let built = std::mem::take(&mut *builder.built.lock().unwrap());
    // Every case builds its own store: this proves the whole suite ran, not a prefix.
    assert_eq!(built.len(), SUITE_CASES + 1);
    let mut used = 0;
    for Built { dir, wal, before } in built {
        if wal.groups().contains(&SUITE_GROUP) {
            used += 1;
        }
        // The suite's store wrote only its own group, in memory and on disk.
        let now: Vec<_> = OTHER_GROUPS.iter().map(|g| snapshot(&wal, *g)).collect();
        assert_eq!(now, before, "the suite changed a neighbour group");
        let wal = Arc::try_unwrap(wal).expect("the suite dropped its store");
        wal.close().unwrap();
        let wal = Wal::open(small_config(dir.path())).unwrap();
        let reopened: Vec<_> = OTHER_GROUPS.iter().map(|g| snapshot(&wal, *g)).collect();
        assert_eq!(reopened, before, "a neighbour group changed across reopen");
        wal.close().unwrap();
    }
    // Most cases write to the store's group (the rest only read an empty one).
    assert!(
        used > SUITE_CASES / 2,
        "only {used} cases wrote their group"
    );
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn entry(term: u64, index: u64, group: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 2, index),
        payload: EntryPayload::Normal(Request {
            key: format!("g{group}-k{index}"),
            value: index,
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Four stores on one log, each doing the same operations on its own group with its own
/// numbers; every one of them comes back as it was after a reopen, and purging or
/// truncating one group leaves the others whole.
#[test]
fn group_stores_share_a_log_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let groups = [1u64, 2, 5, 1 << 40];
    runtime().block_on(async {
        let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
        let mut stores: Vec<Store> = groups
            .iter()
            .map(|g| Store::open_group(Arc::clone(&wal), GroupId(*g)).unwrap())
            .collect();
        for (k, (store, g)) in stores.iter_mut().zip(groups).enumerate() {
            let k = k as u64;
            assert_eq!(store.group_id(), GroupId(g));
            let n = 30 + 10 * k;
            store
                .blocking_append((0..n).map(|i| entry(1 + i / 10, i, g)))
                .await
                .unwrap();
            store
                .save_vote(&Vote::new_committed(3 + k, 2))
                .await
                .unwrap();
            store.save_committed(Some(log_id(3, 2, 25))).await.unwrap();
            store.purge(log_id(1, 2, 5 + k)).await.unwrap();
            store.truncate(log_id(3, 2, n - 2)).await.unwrap();
        }
        drop(stores);
        Arc::try_unwrap(wal).unwrap().close().unwrap();

        let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
        let mut found = wal.groups();
        found.retain(|g| *g != GroupId::DEFAULT);
        assert_eq!(found, groups.map(GroupId));
        // The default group was never written.
        assert_eq!(wal.log_state(), LogState::default());
        for (k, g) in groups.into_iter().enumerate() {
            check_reopened(&wal, k as u64, g).await;
        }
        // Purge one group past its end: only that group changes.
        let before: Vec<_> = groups[1..]
            .iter()
            .map(|g| snapshot(&wal, GroupId(*g)))
            .collect();
        let mut first = Store::open_group(Arc::clone(&wal), GroupId(groups[0])).unwrap();
        first.purge(log_id(9, 2, 500)).await.unwrap();
        first
            .blocking_append([entry(9, 501, groups[0])])
            .await
            .unwrap();
        let st = first.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(9, 2, 501)));
        let after: Vec<_> = groups[1..]
            .iter()
            .map(|g| snapshot(&wal, GroupId(*g)))
            .collect();
        assert_eq!(after, before);
    });
}

/// Group `g`, the `k`th of `group_stores_share_a_log_and_survive_reopen`, holds after reopen
/// what that test wrote to it.
async fn check_reopened(wal: &Arc<Wal>, k: u64, g: u64) {
    let n = 30 + 10 * k;
    let mut store = Store::open_group(Arc::clone(wal), GroupId(g)).unwrap();
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(3 + k, 2))
    );
    assert_eq!(
        store.read_committed().await.unwrap(),
        Some(log_id(3, 2, 25))
    );
    let st = store.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 2, 5 + k)));
    assert_eq!(st.last_log_id, Some(log_id(1 + (n - 3) / 10, 2, n - 3)));
    let want: Vec<_> = (6 + k..n - 2).map(|i| entry(1 + i / 10, i, g)).collect();
    assert_eq!(store.try_get_log_entries(0..1000).await.unwrap(), want);
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.limited_get_log_entries(0, 1000).await.unwrap(),
        want,
        "the default read limit holds these entries"
    );
    // The core mirrors {term, index} of the purge and commit points in the group.
    let core = wal.group(GroupId(g)).log_state();
    assert_eq!(core.purged, Some(chunkwal::LogId::new(1, 5 + k)));
    assert_eq!(core.committed, Some(chunkwal::LogId::new(3, 25)));
}

/// `limited_get_log_entries` of a group store respects the read limit (at least one entry).
#[test]
fn group_reader_respects_the_read_limit() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
        fill_neighbour(&wal, GroupId(1)).unwrap();
        let store = Store::open_group(Arc::clone(&wal), GroupId(9)).unwrap();
        let mut store = store.with_read_limit(100);
        store
            .blocking_append((1..=50).map(|i| entry(1, i, 9)))
            .await
            .unwrap();
        let mut reader = store.get_log_reader().await;
        let some = reader.limited_get_log_entries(10, 50).await.unwrap();
        assert!(some.len() > 1 && some.len() < 40, "{} entries", some.len());
        let want: Vec<_> = (10..10 + some.len() as u64)
            .map(|i| entry(1, i, 9))
            .collect();
        assert_eq!(some, want);
        let mut tiny = store.with_read_limit(0);
        assert_eq!(
            tiny.limited_get_log_entries(20, 50).await.unwrap(),
            vec![entry(1, 20, 9)]
        );
        assert_eq!(tiny.try_get_log_entries(0..100).await.unwrap().len(), 50);
    });
}

/// 3 nodes x 8 groups, one log per node: a node is stopped (its log closed), reopened, and
/// every one of its groups catches up to its leader's last applied log id.
#[test]
fn multigroup_scenario_every_group_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // 150 entries per group before the stop: past the snapshot policy (100), so groups purge.
    let entries = [150, 40, 40];
    let report = rt
        .block_on(multigroup::run_multigroup(dir.path(), 8, entries, 2))
        .expect("multi-group scenario");
    println!("{report}");
    assert_eq!(report.rows.len(), 8);
    for row in &report.rows {
        // The node found its own entries of every group in its reopened log.
        assert!(
            row.recovered_last_index >= Some(entries[0]),
            "group {} lost its log: {report}",
            row.group
        );
        assert!(row
            .leader_applied
            .is_some_and(|l| l.index > entries.iter().sum::<u64>()));
        assert_eq!(row.restarted_applied, row.leader_applied, "{report}");
        assert!(row.same_state, "{report}");
    }
    assert!(report.all_caught_up());
    // Every node kept its groups (and nothing else) in its one log.
    assert_eq!(report.logs.len(), 3);
    for log in &report.logs {
        assert_eq!(log.groups, 8, "node {}: {report}", log.node);
        assert!(log.held_entries > 0 && log.syncs > 0, "{report}");
    }
}
