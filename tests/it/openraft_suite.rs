//! openraft integration: openraft's own storage `Suite` against `ChunkwalLogStore`, restart
//! checks, and the in-process 3-node cluster scenario of the `openraft_cluster` example.

#[path = "../../examples/support/openraft_cluster.rs"]
mod cluster;
// Also used by openraft_group_suite (one copy of the module in the binary).
#[path = "../../examples/support/openraft_kv.rs"]
pub(crate) mod kv;

use std::sync::atomic::{AtomicUsize, Ordering};

use chunkwal::integrations::openraft::ChunkwalLogStore;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use tempfile::TempDir;

use kv::{KvStateMachine, Request, TypeConfig};

type Store = ChunkwalLogStore<TypeConfig>;

fn small_config(dir: &std::path::Path) -> chunkwal::Config {
    let mut c = chunkwal::Config::new(dir);
    c.chunk_size = chunkwal::MIN_CHUNK_SIZE;
    c
}

fn io_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// Builds a fresh store in a temp dir per case and counts how often it was asked to.
#[derive(Default)]
struct Builder {
    builds: AtomicUsize,
}

impl StoreBuilder<TypeConfig, Store, KvStateMachine, TempDir> for &Builder {
    async fn build(&self) -> Result<(TempDir, Store, KvStateMachine), StorageError<u64>> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::tempdir().map_err(io_err)?;
        let store = Store::open(small_config(dir.path())).map_err(io_err)?;
        Ok((dir, store, KvStateMachine::in_memory()))
    }
}

/// Suite cases `test_all` runs in openraft 0.9.25; `transfer_snapshot` builds two stores.
const SUITE_CASES: usize = 35;

#[test]
fn openraft_suite_passes() {
    let builder = Builder::default();
    Suite::test_all(&builder).expect("openraft storage suite");
    // Every case builds its own store: this proves the whole suite ran, not a prefix.
    assert_eq!(builder.builds.load(Ordering::SeqCst), SUITE_CASES + 1);
}

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 2, index),
        payload: EntryPayload::Normal(Request {
            key: format!("k{index}"),
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

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = Store::open(small_config(dir.path())).unwrap();
        store
            .blocking_append((0..30).map(|i| entry(1 + i / 10, i)))
            .await
            .unwrap();
        // The flush callback only fires once the entries are durable.
        assert_eq!(store.wal().durable_index(), Some(29));
        store.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
        store.save_committed(Some(log_id(3, 2, 25))).await.unwrap();
        store.purge(log_id(1, 2, 9)).await.unwrap();
        store.truncate(log_id(3, 2, 28)).await.unwrap();
        store.into_wal().close().unwrap();

        let mut store = Store::open(small_config(dir.path())).unwrap();
        assert_eq!(
            store.read_vote().await.unwrap(),
            Some(Vote::new_committed(3, 2))
        );
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(log_id(3, 2, 25))
        );
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 2, 9)));
        assert_eq!(st.last_log_id, Some(log_id(3, 2, 27)));
        let got = store.try_get_log_entries(0..100).await.unwrap();
        let want: Vec<_> = (10..28).map(|i| entry(1 + i / 10, i)).collect();
        assert_eq!(got, want);
        // The reader handle sees the same.
        let mut reader = store.get_log_reader().await;
        assert_eq!(
            reader.try_get_log_entries(12..=13).await.unwrap(),
            want[2..4]
        );
        // The core mirrors {term, index} of the purge and commit points.
        let core = store.wal().log_state();
        assert_eq!(core.purged, Some(chunkwal::LogId::new(1, 9)));
        assert_eq!(core.committed, Some(chunkwal::LogId::new(3, 25)));
    });
}

#[test]
fn purge_past_the_end_then_append() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = Store::open(small_config(dir.path())).unwrap();
        store
            .blocking_append((0..5).map(|i| entry(1, i)))
            .await
            .unwrap();
        // A snapshot install purges past the last entry; the log continues after it.
        store.purge(log_id(2, 2, 100)).await.unwrap();
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(2, 2, 100)));
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
        store.blocking_append([entry(2, 101)]).await.unwrap();
        store.into_wal().close().unwrap();

        let mut store = Store::open(small_config(dir.path())).unwrap();
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(2, 2, 100)));
        assert_eq!(st.last_log_id, Some(log_id(2, 2, 101)));
        // A gap is refused, not silently accepted.
        assert!(store.blocking_append([entry(2, 103)]).await.is_err());
    });
}

#[test]
fn overlapping_append_replaces_the_suffix() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = Store::open(small_config(dir.path())).unwrap();
        store
            .blocking_append((0..10).map(|i| entry(1, i)))
            .await
            .unwrap();
        store.purge(log_id(1, 2, 2)).await.unwrap();
        // Entries at or below the purge point are skipped; 5.. replaced by term 2.
        store
            .blocking_append([entry(1, 2), entry(2, 5), entry(2, 6)])
            .await
            .unwrap();
        let got = store.try_get_log_entries(..).await.unwrap();
        let want: Vec<_> = [entry(1, 3), entry(1, 4), entry(2, 5), entry(2, 6)].into();
        assert_eq!(got, want);
        let st = store.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(2, 2, 6)));
    });
}

#[test]
fn cluster_scenario_restarts_a_follower_that_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(cluster::run_cluster(dir.path(), 3000, 16))
        .expect("cluster scenario");
    println!("{report}");
    assert!(report.entries_per_sec > 0.0);
    assert!(
        report.recovered_last_log_index >= Some(3000),
        "the restarted follower lost its log: {report}"
    );
    assert!(report.restarted_applied >= report.leader_applied);
    assert!(report.same_state, "state machines differ: {report}");
    // 16 writers cycle through 128 keys each.
    assert_eq!(report.leader_keys, 16 * 128, "{report}");
    assert!(
        report.leader_purged.is_some(),
        "snapshots never purged: {report}"
    );
}

#[test]
fn limited_get_log_entries_respects_the_read_limit() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let store = Store::open(small_config(dir.path())).unwrap();
        // Each encoded entry is a few dozen bytes: a 100-byte budget holds a few of them.
        let mut store = store.with_read_limit(100);
        store
            .blocking_append((1..=50).map(|i| entry(1, i)))
            .await
            .unwrap();
        let mut reader = store.get_log_reader().await;
        let some = reader.limited_get_log_entries(10, 50).await.unwrap();
        assert!(some.len() > 1 && some.len() < 40, "{} entries", some.len());
        let want: Vec<_> = (10..10 + some.len() as u64).map(|i| entry(1, i)).collect();
        assert_eq!(some, want);
        // At least one entry, whatever the budget.
        let mut tiny = store.with_read_limit(0);
        assert_eq!(
            tiny.limited_get_log_entries(20, 50).await.unwrap(),
            vec![entry(1, 20)]
        );
        assert!(tiny.limited_get_log_entries(7, 7).await.unwrap().is_empty());
        // try_get_log_entries is never limited, and clamps to what is held.
        assert_eq!(tiny.try_get_log_entries(0..100).await.unwrap().len(), 50);
        // Replication loops on the limited read: it covers the range.
        let mut store = tiny.with_read_limit(100);
        let mut next = 1;
        while next <= 50 {
            let got = store.limited_get_log_entries(next, 51).await.unwrap();
            assert_eq!(got[0], entry(1, next));
            next += got.len() as u64;
        }
    });
}
