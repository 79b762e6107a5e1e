//! Tracing: the open event carries what recovery found, and a sync slower than
//! `Config::slow_sync_warn` logs a warning, also from the flush thread.
//!
//! The warning comes from whichever thread ran the sync, so a thread-local subscriber would
//! miss it: a small capturing subscriber is installed globally, once, for the whole test
//! binary. It keeps only events that name a `dir`, and each test looks only at the events
//! of its own directory, so tests running in parallel do not disturb each other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use chunkwal::Wal;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::common::{cfg, entries};

/// One captured event: its level and its fields as text (`message` included).
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    fields: HashMap<&'static str, String>,
}

static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

/// The directories of the tests here: only their events are kept (every other test's logs
/// are opened under this subscriber too).
static WATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps INFO and more severe events whose `dir` is watched.
struct Capture {
    next_id: AtomicU64,
}

struct Fields(HashMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(HashMap::new());
        event.record(&mut f);
        let watched =
            f.0.get("dir")
                .is_some_and(|d| WATCHED.lock().unwrap().contains(d));
        if watched {
            EVENTS.lock().unwrap().push(Captured {
                level: *event.metadata().level(),
                fields: f.0,
            });
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Install the subscriber (once) and a fresh directory whose events it keeps.
fn watched_dir() -> tempfile::TempDir {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let c = Capture {
            next_id: AtomicU64::new(1),
        };
        tracing::subscriber::set_global_default(c).expect("no other global subscriber");
    });
    let d = tempfile::tempdir().unwrap();
    WATCHED.lock().unwrap().push(d.path().display().to_string());
    d
}

/// The captured events of the log in `dir`.
fn events_of(dir: &Path) -> Vec<Captured> {
    let dir = dir.display().to_string();
    let all = EVENTS.lock().unwrap();
    all.iter()
        .filter(|e| e.fields.get("dir") == Some(&dir))
        .cloned()
        .collect()
}

fn slow_syncs(dir: &Path) -> Vec<Captured> {
    events_of(dir)
        .into_iter()
        .filter(|e| {
            e.level == Level::WARN
                && e.fields
                    .get("message")
                    .is_some_and(|m| m.contains("slow sync"))
        })
        .collect()
}

/// A config whose syncs sleep 30 ms once `slow` is set.
fn sleepy(dir: &Path, threshold: Option<Duration>, slow: &Arc<AtomicBool>) -> chunkwal::Config {
    let mut c = cfg(dir).slow_sync_warn(threshold);
    let s = Arc::clone(slow);
    c.sync_hook = Some(Arc::new(move |_| {
        if s.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(30));
        }
        Ok(())
    }));
    c
}

#[test]
fn a_slow_sync_on_the_flush_thread_warns() {
    let d = watched_dir();
    let slow = Arc::new(AtomicBool::new(false));
    let wal = Wal::open(sleepy(d.path(), Some(Duration::from_millis(10)), &slow)).unwrap();
    let before = slow_syncs(d.path()).len();
    wal.append(entries(1, 11, 1, 100)).unwrap();
    slow.store(true, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::channel();
    wal.flush(move |r| tx.send(r).unwrap()).unwrap();
    rx.recv().unwrap().unwrap();
    // The warning is logged before the callbacks run.
    let warned = slow_syncs(d.path());
    assert_eq!(warned.len(), before + 1, "{warned:?}");
    let w = warned.last().unwrap();
    let ms: u64 = w.fields["duration_ms"].parse().unwrap();
    assert!(ms >= 30, "{w:?}");
    assert_eq!(w.fields["threshold_ms"], "10");
    assert!(w.fields["bytes"].parse::<u64>().unwrap() > 0, "{w:?}");
    // And on the caller's thread.
    wal.append(entries(11, 12, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    assert_eq!(slow_syncs(d.path()).len(), before + 2);
}

#[test]
fn no_warning_when_the_threshold_is_off() {
    let d = watched_dir();
    let slow = Arc::new(AtomicBool::new(true));
    let wal = Wal::open(sleepy(d.path(), None, &slow)).unwrap();
    wal.append(entries(1, 11, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    drop(wal);
    assert!(slow_syncs(d.path()).is_empty());
    // The open itself was logged (so events of this directory are captured at all).
    assert!(!events_of(d.path()).is_empty());
}

#[test]
fn open_reports_chunks_and_recovery() {
    let d = watched_dir();
    let opened = |dir: &Path| -> Vec<(String, String)> {
        events_of(dir)
            .into_iter()
            .filter(|e| e.level == Level::INFO)
            .map(|e| (e.fields["chunks"].clone(), e.fields["recovery"].clone()))
            .collect()
    };
    let wal = Wal::open(cfg(d.path())).unwrap();
    wal.append(entries(1, 200, 1, 1000)).unwrap();
    let chunks = wal.stat().chunks.len();
    assert!(chunks > 1);
    wal.close().unwrap();
    drop(Wal::open(cfg(d.path())).unwrap());
    assert_eq!(
        opened(d.path()),
        [
            ("1".to_string(), "new".to_string()),
            (chunks.to_string(), "clean".to_string()),
        ]
    );
}

/// A span's name and fields.
type SpanSeen = (&'static str, HashMap<&'static str, String>);

/// Spans with their fields, as a thread's scoped subscriber sees them (debug and up).
#[derive(Clone, Default)]
struct SpanCapture {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

impl Subscriber for SpanCapture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::DEBUG
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields(HashMap::new());
        attrs.record(&mut f);
        let mut s = self.spans.lock().unwrap();
        s.push((attrs.metadata().name(), f.0));
        Id::from_u64(s.len() as u64)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut f = Fields(HashMap::new());
        values.record(&mut f);
        let mut s = self.spans.lock().unwrap();
        s[id.into_u64() as usize - 1].1.extend(f.0);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn rotations_and_syncs_have_debug_spans() {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(d.path())).unwrap();
    let cap = SpanCapture::default();
    // flush_blocking syncs on this thread, so a scoped subscriber sees its span.
    tracing::subscriber::with_default(cap.clone(), || {
        wal.append(entries(1, 100, 1, 1000)).unwrap();
        wal.flush_blocking().unwrap();
    });
    let spans = cap.spans.lock().unwrap().clone();
    let rotations: Vec<_> = spans.iter().filter(|s| s.0 == "chunkwal_rotate").collect();
    assert!(!rotations.is_empty(), "{spans:?}");
    assert_eq!(rotations[0].1["old"], "0");
    assert_eq!(rotations[0].1["new"], "1");
    let sync = spans
        .iter()
        .rfind(|s| s.0 == "chunkwal_sync")
        .unwrap_or_else(|| panic!("{spans:?}"));
    // 99 entries of 1000 bytes were synced by this pass (across the rotation).
    let bytes: u64 = sync.1["bytes"].parse().unwrap();
    assert!(bytes >= 99_000, "{sync:?}");
    assert!(sync.1.contains_key("duration_us"), "{sync:?}");
    assert_eq!(sync.1["dir"], d.path().display().to_string());
}
