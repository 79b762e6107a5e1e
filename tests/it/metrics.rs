//! Feature `metrics`: every `chunkwal_*` metric reports what the log did. Each test opens its
//! logs under its own recorder (`with_local_recorder`: a log takes its handles at open), so
//! tests running in parallel do not see each other's counts, while the flush thread still
//! reports to the recorder of the log it serves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ::metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use chunkwal::{Config, LogId, Wal};

use crate::common::{cfg, entries};

/// Samples of one histogram.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every metric by name (labels are not used by chunkwal).
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

fn slot<T: Default>(m: &Mutex<HashMap<String, Arc<T>>>, key: &Key) -> Arc<T> {
    let mut m = m.lock().unwrap();
    Arc::clone(m.entry(key.name().to_string()).or_default())
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(slot(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(slot(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(slot(&self.histograms, key))
    }
}

impl TestRecorder {
    fn open(&self, config: Config) -> Wal {
        ::metrics::with_local_recorder(self, || Wal::open(config)).expect("open")
    }

    fn counter(&self, name: &str) -> u64 {
        let m = self.counters.lock().unwrap();
        m.get(name)
            .unwrap_or_else(|| panic!("{name} not registered"))
            .load(Ordering::SeqCst)
    }

    fn gauge(&self, name: &str) -> f64 {
        let m = self.gauges.lock().unwrap();
        let bits = m
            .get(name)
            .unwrap_or_else(|| panic!("{name} not registered"))
            .load(Ordering::SeqCst);
        f64::from_bits(bits)
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        let m = self.histograms.lock().unwrap();
        let s = m
            .get(name)
            .unwrap_or_else(|| panic!("{name} not registered"));
        let v = s.0.lock().unwrap().clone();
        v
    }
}

#[test]
fn counters_follow_appends_syncs_reads_and_chunks() {
    let rec = TestRecorder::default();
    let d = tempfile::tempdir().unwrap();
    let wal = rec.open(cfg(d.path()).recycle_chunks(4));
    assert_eq!(rec.gauge("chunkwal_chunks"), 1.0);
    // Open syncs the fresh chunk's first state record.
    let open_syncs = rec.counter("chunkwal_syncs_total");

    // 3 calls of 10 entries of 100 bytes.
    for k in 0..3u64 {
        wal.append(entries(1 + 10 * k, 11 + 10 * k, 1, 100))
            .unwrap();
    }
    assert_eq!(rec.counter("chunkwal_appends_total"), 3);
    assert_eq!(rec.counter("chunkwal_append_entries_total"), 30);
    assert_eq!(rec.counter("chunkwal_append_bytes_total"), 3000);
    // Framing and the state records come on top of the payloads.
    assert!(rec.counter("chunkwal_write_bytes_total") > 3000);

    wal.flush_blocking().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    wal.append(entries(31, 32, 1, 100)).unwrap();
    wal.flush(move |r| tx.send(r).unwrap()).unwrap();
    rx.recv().unwrap().unwrap();
    assert_eq!(rec.counter("chunkwal_flush_requests_total"), 2);
    let syncs = rec.counter("chunkwal_syncs_total");
    assert_eq!(syncs, open_syncs + 2, "one sync per flush here");
    // One latency and one size sample per sync; the sizes add up to what the I/O counters
    // say was synced (the flush thread's sync included).
    let sizes = rec.samples("chunkwal_sync_bytes");
    assert_eq!(
        rec.samples("chunkwal_sync_duration_seconds").len() as u64,
        syncs
    );
    assert_eq!(sizes.len() as u64, syncs);
    let a = wal.access_stat();
    assert_eq!(sizes.iter().sum::<f64>() as u64, a.synced_bytes);
    assert_eq!(rec.counter("chunkwal_slow_syncs_total"), 0);

    // Fresh entries are cached: 31 hits.
    assert_eq!(wal.read(1..32).unwrap().len(), 31);
    assert_eq!(rec.counter("chunkwal_cache_hits_total"), 31);
    assert_eq!(rec.counter("chunkwal_cache_misses_total"), 0);
    assert_eq!(wal.access_stat().cache.hits, 31);

    // Rotate a few times (64 KiB chunks, ~1 KiB entries), then purge all but the last.
    let mut next = 32;
    for _ in 0..4 {
        wal.append(entries(next, next + 50, 1, 1000)).unwrap();
        next += 50;
    }
    wal.flush_blocking().unwrap();
    let chunks = wal.stat().chunks.len();
    assert!(chunks >= 3, "{chunks} chunks");
    assert_eq!(rec.gauge("chunkwal_chunks"), chunks as f64);
    // A spare may be prepared ahead of the rotation that takes it: compare with the log's
    // own counters.
    let a = wal.access_stat();
    assert!(a.chunks_created >= chunks as u64);
    assert_eq!(
        rec.counter("chunkwal_chunks_created_total"),
        a.chunks_created
    );
    wal.purge(LogId::new(1, next - 2)).unwrap();
    wal.flush_blocking().unwrap();
    wal.wait_worker_idle();
    assert_eq!(rec.gauge("chunkwal_chunks"), wal.stat().chunks.len() as f64);
    // Rotations after the purge reuse the retired chunks.
    for _ in 0..3 {
        wal.append(entries(next, next + 50, 1, 1000)).unwrap();
        next += 50;
    }
    wal.flush_blocking().unwrap();
    let a = wal.access_stat();
    assert!(a.chunks_recycled > 0);
    assert_eq!(
        rec.counter("chunkwal_chunks_recycled_total"),
        a.chunks_recycled
    );
    assert_eq!(
        rec.counter("chunkwal_chunks_created_total"),
        a.chunks_created
    );
    assert_eq!(rec.gauge("chunkwal_chunks"), wal.stat().chunks.len() as f64);
    assert_eq!(rec.counter("chunkwal_poisoned_total"), 0);
    wal.close().unwrap();
    // A closed log takes its chunks back off the gauge.
    assert_eq!(rec.gauge("chunkwal_chunks"), 0.0);

    // After a reopen the cache is empty: reads go to the map and miss.
    let wal = rec.open(cfg(d.path()));
    let hits = rec.counter("chunkwal_cache_hits_total");
    let got = wal.read(next - 10..next).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(rec.counter("chunkwal_cache_misses_total"), 10);
    assert_eq!(rec.counter("chunkwal_cache_hits_total"), hits);
    assert_eq!(rec.gauge("chunkwal_chunks"), wal.stat().chunks.len() as f64);
    drop(wal);
    assert_eq!(rec.gauge("chunkwal_chunks"), 0.0);
}

#[test]
fn a_failed_sync_counts_one_poisoning_and_no_sync() {
    let rec = TestRecorder::default();
    let d = tempfile::tempdir().unwrap();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut c = cfg(d.path());
    let a = Arc::clone(&armed);
    c.sync_hook = Some(Arc::new(move |_| {
        if a.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO"));
        }
        Ok(())
    }));
    let wal = rec.open(c);
    let syncs = rec.counter("chunkwal_syncs_total");
    assert_eq!(rec.counter("chunkwal_poisoned_total"), 0);
    wal.append(entries(1, 2, 1, 10)).unwrap();
    armed.store(true, Ordering::SeqCst);
    assert!(wal.flush_blocking().unwrap_err().is_poisoned());
    assert!(wal.flush_blocking().unwrap_err().is_poisoned());
    assert_eq!(rec.counter("chunkwal_poisoned_total"), 1);
    assert_eq!(
        rec.counter("chunkwal_syncs_total"),
        syncs,
        "a failed sync is not counted"
    );
}

#[test]
fn a_slow_sync_is_counted() {
    let rec = TestRecorder::default();
    let d = tempfile::tempdir().unwrap();
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut c = cfg(d.path()).slow_sync_warn(Some(std::time::Duration::from_millis(5)));
    let s = Arc::clone(&slow);
    c.sync_hook = Some(Arc::new(move |_| {
        if s.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }));
    let wal = rec.open(c);
    let before = rec.counter("chunkwal_slow_syncs_total");
    wal.append(entries(1, 2, 1, 10)).unwrap();
    slow.store(true, Ordering::SeqCst);
    wal.flush_blocking().unwrap();
    assert_eq!(rec.counter("chunkwal_slow_syncs_total"), before + 1);
    let took = rec.samples("chunkwal_sync_duration_seconds");
    assert!(*took.last().unwrap() >= 0.020, "{took:?}");
}
