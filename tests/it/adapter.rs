//! The async adapter's promises, under tokio and under `futures::executor::block_on`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chunkwal::adapter::{
    AdapterError, AdapterOptions, FlushPolicy, HardState, LogStore, PersistenceStrategy,
};
use chunkwal::{Config, LogId, Wal};
use futures::poll;

use crate::common::{entries, payload};

const BIG_CHUNK: u64 = 4 << 20;
const HOUR: Duration = Duration::from_secs(3600);

/// Run one scenario under `futures::executor::block_on`, then under a multi-thread tokio
/// runtime, each in a fresh directory.
fn on_both<F, Fut>(scenario: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    futures::executor::block_on(scenario(dir.path().join("block_on")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(scenario(dir.path().join("tokio")));
}

fn cfg(dir: &Path) -> Config {
    Config::new(dir).chunk_size(BIG_CHUNK)
}

fn batch(threshold: usize, interval: Duration) -> FlushPolicy {
    FlushPolicy::Batch {
        threshold,
        interval,
    }
}

fn open(dir: &Path, strategy: PersistenceStrategy, policy: FlushPolicy) -> LogStore {
    LogStore::open(cfg(dir), AdapterOptions::new(strategy, policy)).expect("open adapter")
}

/// Poll until `cond` holds; the deadline only turns a hang into a failure.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A sync hook that blocks every sync while closed.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn set(&self, closed: bool) {
        let (m, cv) = &*self.0;
        *m.lock().expect("gate") = closed;
        cv.notify_all();
    }

    fn install(&self, config: Config) -> Config {
        let g = self.clone();
        let mut config = config;
        config.sync_hook = Some(Arc::new(move |_p: &Path| {
            let (m, cv) = &*g.0;
            let mut closed = m.lock().expect("gate");
            while *closed {
                closed = cv.wait(closed).expect("gate");
            }
            Ok(())
        }));
        config
    }
}

type Synced = Arc<Mutex<Vec<(PathBuf, u64, u64)>>>;

fn record_syncs(config: Config) -> (Config, Synced) {
    let synced: Synced = Arc::default();
    let s = Arc::clone(&synced);
    let mut config = config;
    config.sync_recorder = Some(Arc::new(move |p: &Path, start, end| {
        s.lock()
            .expect("recorder")
            .push((p.to_path_buf(), start, end));
    }));
    (config, synced)
}

/// Copy the chunk files of `src` into `dst`, zeroing every byte after the header that no
/// recorded sync covered: what a power loss would leave.
fn crash_image(src: &Path, dst: &Path, synced: &[(PathBuf, u64, u64)]) {
    std::fs::create_dir_all(dst).expect("image dir");
    for e in std::fs::read_dir(src).expect("read dir") {
        let path = e.expect("dir entry").path();
        let name = path.file_name().expect("file name").to_owned();
        if name == chunkwal::inspect::LOCK_FILE {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read chunk");
        let mut keep = vec![false; bytes.len()];
        let header = chunkwal::format::HEADER_LEN.min(keep.len());
        keep[..header].fill(true);
        for (p, s, e) in synced {
            if p.file_name() == Some(name.as_os_str()) {
                let end = (*e as usize).min(keep.len());
                keep[(*s as usize).min(end)..end].fill(true);
            }
        }
        for (b, k) in bytes.iter_mut().zip(&keep) {
            if !k {
                *b = 0;
            }
        }
        std::fs::write(dst.join(&name), bytes).expect("write image");
    }
}

#[test]
fn options_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    for policy in [batch(0, HOUR), batch(4, Duration::ZERO)] {
        let r = LogStore::open(
            cfg(dir.path()),
            AdapterOptions::new(PersistenceStrategy::DiskFirst, policy),
        );
        assert!(matches!(r, Err(AdapterError::InvalidOptions { .. })));
    }
    let opts = AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate)
        .max_unflushed_bytes(0);
    assert!(matches!(
        LogStore::open(cfg(dir.path()), opts),
        Err(AdapterError::InvalidOptions { .. })
    ));
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), PersistenceStrategy::MemFirst, batch(2, HOUR));
    assert_send(&s.persist_entries(Vec::new()));
    assert_send(&s.replace_range(1, Vec::new()));
    assert_send(&s.truncate(1));
    assert_send(&s.purge(LogId::new(0, 0)));
    assert_send(&s.reset());
    assert_send(&s.flush_async());
    assert_send(&s.entry(1));
}

async fn disk_first_immediate(dir: PathBuf) {
    let s = open(&dir, PersistenceStrategy::DiskFirst, FlushPolicy::Immediate);
    assert!(s.is_write_durable());
    for k in 0..20u64 {
        let from = 1 + k * 5;
        s.persist_entries(entries(from, from + 5, 1, 100))
            .await
            .expect("persist");
        assert_eq!(
            s.durable_index(),
            Some(from + 4),
            "durable when persist returns"
        );
        assert_eq!(s.unflushed_bytes(), 0);
    }
    s.truncate(90).await.expect("truncate");
    assert_eq!(s.durable_index(), Some(89));
    s.purge(LogId::new(1, 10)).await.expect("purge");
    assert_eq!(
        s.load_purge_boundary().expect("boundary"),
        Some(LogId::new(1, 10))
    );
    assert_eq!(s.get_entries(1..=20).expect("get").len(), 10);
}

#[test]
fn disk_first_immediate_is_durable_on_return() {
    on_both(disk_first_immediate);
}

async fn disk_first_batch_threshold(dir: PathBuf) {
    let s = open(&dir, PersistenceStrategy::DiskFirst, batch(4, HOUR));
    assert!(s.is_write_durable());
    let mut first = Box::pin(s.persist_entries(entries(1, 4, 1, 64)));
    assert!(
        poll!(&mut first).is_pending(),
        "3 < threshold: not flushed yet"
    );
    assert_eq!(s.last_index(), 3, "written, readable");
    assert_eq!(s.durable_index(), None, "but not durable");
    // The fourth entry reaches the threshold: one sync covers all four.
    s.persist_entries(entries(4, 5, 1, 64))
        .await
        .expect("persist 4");
    assert_eq!(s.durable_index(), Some(4));
    first.await.expect("first batch");
    // An explicit flush also releases a waiting batch.
    let mut w = Box::pin(s.persist_entries(entries(5, 6, 1, 64)));
    assert!(poll!(&mut w).is_pending());
    s.flush_async().await.expect("flush");
    w.await.expect("released by flush");
    assert_eq!(s.durable_index(), Some(5));
}

#[test]
fn disk_first_batch_waits_for_threshold() {
    on_both(disk_first_batch_threshold);
}

async fn disk_first_batch_interval(dir: PathBuf) {
    let s = open(
        &dir,
        PersistenceStrategy::DiskFirst,
        batch(usize::MAX, Duration::from_millis(5)),
    );
    for k in 0..3u64 {
        s.persist_entries(entries(1 + k, 2 + k, 1, 64))
            .await
            .expect("persist");
        // Far below the threshold: only the interval timer can have flushed it.
        assert_eq!(s.durable_index(), Some(1 + k));
    }
}

#[test]
fn disk_first_batch_flushes_on_interval() {
    on_both(disk_first_batch_interval);
}

async fn mem_first_early_return(dir: PathBuf) {
    let gate = Gate::default();
    let config = gate.install(cfg(&dir));
    let s = LogStore::open(
        config,
        AdapterOptions::new(PersistenceStrategy::MemFirst, FlushPolicy::Immediate),
    )
    .expect("open");
    assert!(!s.is_write_durable());
    gate.set(true);
    s.persist_entries(entries(1, 11, 1, 64))
        .await
        .expect("persist");
    assert_eq!(s.last_index(), 10);
    assert_eq!(s.get_entries(1..=10).expect("readable").len(), 10);
    assert_eq!(s.durable_index(), None, "returned before any sync");
    gate.set(false);
    s.flush_async().await.expect("flush");
    assert_eq!(s.durable_index(), Some(10));
}

#[test]
fn mem_first_returns_before_durable() {
    on_both(mem_first_early_return);
}

async fn mem_first_crash_keeps_flushed(dir: PathBuf) {
    let gate = Gate::default();
    let (config, synced) = record_syncs(gate.install(cfg(&dir.join("log"))));
    let s = LogStore::open(
        config,
        AdapterOptions::new(PersistenceStrategy::MemFirst, batch(16, HOUR)),
    )
    .expect("open");
    let wrote = |from, to| entries(from, to, 2, 300);
    for k in 0..5u64 {
        s.persist_entries(wrote(1 + 8 * k, 9 + 8 * k))
            .await
            .expect("persist A");
    }
    s.flush_async().await.expect("flush A");
    assert_eq!(s.durable_index(), Some(40));
    // Syncs now hang before msync: nothing more becomes durable.
    gate.set(true);
    for k in 0..4u64 {
        s.persist_entries(wrote(41 + 5 * k, 46 + 5 * k))
            .await
            .expect("persist B");
    }
    assert_eq!(s.last_index(), 60);
    let durable = s.durable_index().expect("durable");
    assert_eq!(durable, 40, "MemFirst returned before B was durable");
    let image = dir.join("image");
    crash_image(&dir.join("log"), &image, &synced.lock().expect("synced"));
    gate.set(false);
    s.simulate_crash();

    let wal = Wal::open(cfg(&image)).expect("reopen image");
    assert_eq!(
        wal.log_state().last.map(|l| l.index),
        Some(durable),
        "unflushed entries are lost, flushed ones kept"
    );
    let got = wal.read(1..=durable).expect("durable entries");
    assert_eq!(got, wrote(1, durable + 1), "byte-identical");
}

#[test]
fn mem_first_crash_loses_only_unflushed() {
    on_both(mem_first_crash_keeps_flushed);
}

async fn mem_first_crash_at_random_points(dir: PathBuf) {
    let (config, synced) = record_syncs(cfg(&dir.join("log")));
    let s = LogStore::open(
        config,
        AdapterOptions::new(
            PersistenceStrategy::MemFirst,
            batch(7, Duration::from_millis(1)),
        ),
    )
    .expect("open");
    let mut next = 1u64;
    for round in 0..6u64 {
        for _ in 0..10 {
            let n = 1 + (next % 5);
            s.persist_entries(entries(next, next + n, 3, 200))
                .await
                .expect("persist");
            next += n;
        }
        // Snapshot durable_index before the sync record: every sync behind it is recorded.
        let durable = s.durable_index().unwrap_or(0);
        let image = dir.join(format!("image{round}"));
        crash_image(&dir.join("log"), &image, &synced.lock().expect("synced"));
        let wal = Wal::open(cfg(&image)).expect("reopen image");
        let last = wal.log_state().last.map_or(0, |l| l.index);
        assert!(
            last >= durable,
            "durable {durable} lost: image ends at {last}"
        );
        if durable > 0 {
            assert_eq!(
                wal.read(1..=durable).expect("read"),
                entries(1, durable + 1, 3, 200)
            );
        }
    }
}

#[test]
fn mem_first_crash_never_loses_durable_entries() {
    on_both(mem_first_crash_at_random_points);
}

async fn backpressure(dir: PathBuf) {
    let gate = Gate::default();
    let config = gate.install(cfg(&dir));
    let one = chunkwal::format::encoded_len(16 + 1000) as u64;
    let s = LogStore::open(
        config,
        AdapterOptions::new(PersistenceStrategy::MemFirst, batch(usize::MAX, HOUR))
            .max_unflushed_bytes(8 * one),
    )
    .expect("open");
    gate.set(true);
    // Admitted while at most 8 entries' bytes are unflushed: 9 writes go through.
    for i in 1..=9u64 {
        let mut w = Box::pin(s.persist_entries(entries(i, i + 1, 1, 1000)));
        assert!(poll!(&mut w).is_ready(), "write {i} admitted");
    }
    assert_eq!(s.unflushed_bytes(), 9 * one);
    let mut blocked = Box::pin(s.persist_entries(entries(10, 11, 1, 1000)));
    assert!(poll!(&mut blocked).is_pending(), "bound hit: writer waits");
    assert!(
        poll!(&mut blocked).is_pending(),
        "still waiting for the flush"
    );
    assert_eq!(s.last_index(), 9, "the blocked write did not happen");
    gate.set(false);
    blocked.await.expect("proceeds after the flush");
    assert_eq!(s.last_index(), 10);
    assert!(s.durable_index() >= Some(9));
    assert_eq!(s.unflushed_bytes(), one, "only the new write is unflushed");
}

#[test]
fn mem_first_backpressure_blocks_then_proceeds() {
    on_both(backpressure);
}

async fn log_semantics(dir: PathBuf) {
    let s = open(&dir, PersistenceStrategy::DiskFirst, FlushPolicy::Immediate);
    assert_eq!(s.last_index(), 0);
    assert!(s.get_entries(1..=5).expect("empty").is_empty());
    s.persist_entries(Vec::new()).await.expect("empty persist");
    s.persist_entries(entries(1, 11, 1, 32))
        .await
        .expect("persist");
    // Same ids again: skipped; a partial overlap appends only the new tail.
    s.persist_entries(entries(1, 11, 1, 32))
        .await
        .expect("idempotent");
    s.persist_entries(entries(8, 13, 1, 32))
        .await
        .expect("overlap");
    assert_eq!(s.last_index(), 12);
    // A different term at 6 replaces the suffix from 6.
    s.persist_entries(entries(6, 8, 2, 32))
        .await
        .expect("conflict");
    assert_eq!(s.last_index(), 7);
    assert_eq!(
        s.entry(6).await.expect("entry").map(|e| e.0),
        Some(LogId::new(2, 6))
    );
    // Clipped ranges.
    assert_eq!(s.get_entries(5..=100).expect("clip").len(), 3);
    assert!(s.get_entries(50..=60).expect("outside").is_empty());
    // replace_range is the core's atomic replace.
    s.replace_range(7, entries(7, 9, 3, 32))
        .await
        .expect("replace");
    assert_eq!(s.get_entries(1..=8).expect("read")[7].0, LogId::new(3, 8));
    // Entries at or below the purge point are dropped.
    s.purge(LogId::new(1, 4)).await.expect("purge");
    s.persist_entries(entries(1, 5, 1, 32))
        .await
        .expect("below purge");
    assert_eq!(s.entry(3).await.expect("entry"), None);
    assert_eq!(s.get_entries(1..=8).expect("read").len(), 4);
    // Hard state survives reset and reopen.
    let hs = HardState {
        current_term: 7,
        voted_for: Some(3),
    };
    s.save_hard_state(&hs).expect("save");
    s.reset().await.expect("reset");
    assert_eq!(s.last_index(), 0);
    assert_eq!(s.load_purge_boundary().expect("boundary"), None);
    s.persist_entries(entries(100, 101, 4, 32))
        .await
        .expect("any start after reset");
    s.close().expect("close");
    let s = open(&dir, PersistenceStrategy::MemFirst, FlushPolicy::Immediate);
    assert_eq!(s.load_hard_state().expect("load"), Some(hs));
    assert_eq!(s.last_index(), 100);
    assert_eq!(
        s.entry(100).await.expect("entry").map(|e| e.1),
        Some(payload(100, 32))
    );
}

#[test]
fn log_store_semantics() {
    on_both(log_semantics);
}

#[test]
fn hard_state_is_durable_on_return_even_mem_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, synced) = record_syncs(cfg(&dir.path().join("log")));
    let s = LogStore::open(
        config,
        AdapterOptions::new(PersistenceStrategy::MemFirst, batch(usize::MAX, HOUR)),
    )
    .expect("open");
    let hs = HardState {
        current_term: 11,
        voted_for: None,
    };
    s.save_hard_state(&hs).expect("save");
    let image = dir.path().join("image");
    crash_image(
        &dir.path().join("log"),
        &image,
        &synced.lock().expect("synced"),
    );
    s.simulate_crash();
    let s = LogStore::open(cfg(&image), AdapterOptions::default()).expect("reopen");
    assert_eq!(s.load_hard_state().expect("load"), Some(hs));
}

#[test]
fn concurrent_writer_and_readers_under_tokio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s = Arc::new(open(
        dir.path(),
        PersistenceStrategy::DiskFirst,
        batch(8, Duration::from_millis(2)),
    ));
    rt.block_on(async {
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    // Each task owns every fourth block of 10 indexes, written in order.
                    for b in 0..25u64 {
                        let from = 1 + (b * 4 + w) * 10;
                        loop {
                            if s.last_index() + 1 == from {
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                        s.persist_entries(entries(from, from + 10, 1, 50))
                            .await
                            .expect("persist");
                        assert!(s.durable_index() >= Some(from + 9));
                    }
                })
            })
            .collect();
        let reader = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                while s.last_index() < 1000 {
                    let d = s.durable_index().unwrap_or(0);
                    assert!(d <= s.last_index(), "durable never ahead of the log");
                    let got = s.get_entries(1..=d).expect("read durable");
                    assert_eq!(got.len() as u64, d);
                    tokio::task::yield_now().await;
                }
            })
        };
        for w in writers {
            w.await.expect("writer");
        }
        reader.await.expect("reader");
    });
    assert_eq!(s.durable_index(), Some(1000));
    futures::executor::block_on(eventually("flushed bytes", || s.unflushed_bytes() == 0));
}
