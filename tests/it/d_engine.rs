//! The d-engine integration: d-engine's own storage conformance suite, codec round trips
//! through the real traits, and an embedded single-node d-engine running on chunkwal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunkwal::adapter::{AdapterOptions, FlushPolicy, PersistenceStrategy};
use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::Config;
use d_engine::common::{entry_payload::Payload, Entry, EntryPayload, LogId};
use d_engine::{EmbeddedEngine, FileStateMachine, LogStore, MetaStore, StorageEngine};

pub(crate) fn combos() -> [(&'static str, AdapterOptions); 4] {
    let batch = FlushPolicy::Batch {
        threshold: 8,
        interval: Duration::from_millis(1),
    };
    [
        (
            "DiskFirst+Immediate",
            AdapterOptions::new(PersistenceStrategy::DiskFirst, FlushPolicy::Immediate),
        ),
        (
            "DiskFirst+Batch",
            AdapterOptions::new(PersistenceStrategy::DiskFirst, batch),
        ),
        (
            "MemFirst+Immediate",
            AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate),
        ),
        (
            "MemFirst+Batch",
            AdapterOptions::new(PersistenceStrategy::MemFirst, batch),
        ),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[cfg(feature = "d-engine-conformance")]
mod conformance {
    use super::*;
    use d_engine::storage_engine_test::{StorageEngineBuilder, StorageEngineTestSuite};

    /// Every build reopens the same directory, as d-engine's own builders do: the suite's
    /// durability cases drop an engine and build it again to check what survived.
    struct Builder {
        dir: tempfile::TempDir,
        opts: AdapterOptions,
    }

    #[async_trait::async_trait]
    impl StorageEngineBuilder for Builder {
        type Engine = ChunkwalStorageEngine;

        async fn build(&self) -> Result<Arc<Self::Engine>, d_engine::Error> {
            let config = Config::new(self.dir.path().join("storage_engine"));
            let engine = ChunkwalStorageEngine::open(config, self.opts)
                .map_err(|e| d_engine::StorageError::LogStorage(e.to_string()))?;
            Ok(Arc::new(engine))
        }

        async fn cleanup(&self) -> Result<(), d_engine::Error> {
            Ok(())
        }
    }

    #[test]
    fn d_engine_storage_engine_suite_passes_for_every_strategy_and_policy() {
        let rt = runtime();
        for (name, opts) in combos() {
            let builder = Builder {
                dir: tempfile::tempdir().expect("tempdir"),
                opts,
            };
            rt.block_on(StorageEngineTestSuite::run_all_tests(builder))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: Some(EntryPayload {
            payload: Some(Payload::Command(Bytes::from(format!("cmd-{index}-{term}")))),
        }),
    }
}

#[test]
fn traits_round_trip_entries_and_hard_state_across_reopen() {
    let rt = runtime();
    for (name, opts) in combos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || ChunkwalStorageEngine::open(Config::new(dir.path()), opts).expect("open");
        let engine = open();
        let (log, meta) = (engine.log_store(), engine.meta_store());
        assert_eq!(
            log.is_write_durable(),
            opts.strategy == PersistenceStrategy::DiskFirst
        );
        rt.block_on(async {
            let es: Vec<Entry> = (1..=20).map(|i| entry(i, 1)).collect();
            log.persist_entries(es.clone()).await.expect("persist");
            log.replace_range(15, (15..=18).map(|i| entry(i, 2)).collect())
                .await
                .expect("replace");
            log.purge(LogId { term: 1, index: 4 }).await.expect("purge");
        });
        assert_eq!(log.last_index(), 18, "{name}");
        let mut hs = d_engine::HardState {
            current_term: 9,
            voted_for: None,
        };
        let v = hs.voted_for.insert(Default::default());
        v.voted_for_id = 3;
        v.voted_for_term = 9;
        v.committed = true;
        meta.save_hard_state(&hs).expect("save");
        log.flush().expect("flush");
        drop((log, meta, engine));

        let engine = open();
        let (log, meta) = (engine.log_store(), engine.meta_store());
        let got = log.get_entries(1..=100).expect("get");
        let want: Vec<Entry> = (5..=14)
            .map(|i| entry(i, 1))
            .chain((15..=18).map(|i| entry(i, 2)))
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(
            log.load_purge_boundary().expect("boundary"),
            Some(LogId { term: 1, index: 4 })
        );
        let back = meta.load_hard_state().expect("load").expect("saved");
        assert_eq!(
            (back.current_term, back.voted_for),
            (9, hs.voted_for),
            "{name}"
        );
        assert_eq!(rt.block_on(log.entry(4)).expect("entry"), None);
    }
}

#[test]
fn embedded_d_engine_runs_on_chunkwal_and_restarts() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let start = || async {
        let storage =
            Arc::new(ChunkwalStorageEngine::new(dir.path().join("raft-log")).expect("storage"));
        let log = storage.log_store();
        let sm = Arc::new(
            FileStateMachine::new(dir.path().join("sm"))
                .await
                .expect("state machine"),
        );
        let engine = EmbeddedEngine::start_custom(storage, sm, None)
            .await
            .expect("start");
        engine
            .wait_ready(Duration::from_secs(60))
            .await
            .expect("leader");
        (engine, log)
    };
    rt.block_on(async {
        let (engine, log) = start().await;
        let client = engine.client();
        for i in 0..50 {
            client
                .put(format!("k{i}"), format!("v{i}"))
                .await
                .expect("put");
        }
        for i in 0..50 {
            let got = client.get_linearizable(format!("k{i}")).await.expect("get");
            assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()));
        }
        // Every committed put went through chunkwal and was made durable.
        assert!(log.last_index() >= 50);
        assert!(log.adapter().durable_index() >= Some(50));
        let last = log.last_index();
        engine.stop().await.expect("stop");
        drop((engine, log));

        let (engine, log) = start().await;
        assert!(log.last_index() >= last, "log replayed from chunkwal");
        let got = engine
            .client()
            .get_linearizable("k49")
            .await
            .expect("get after restart");
        assert_eq!(got.as_deref(), Some(&b"v49"[..]));
        engine.stop().await.expect("stop");
    });
}
