//! Regression tests for acknowledgements given too early under concurrency, for writes that
//! fail half-way, and for opens that fail: each failed on 2a80528.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chunkwal::{Config, Error, RecoveryMode, Wal};

use crate::common::*;

/// A sync hook that, once closed, holds every sync until reopened, and counts the syncs
/// that entered it.
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<(Mutex<bool>, Condvar)>,
    entered: Arc<AtomicUsize>,
}

impl Gate {
    fn install(&self, mut c: Config) -> Config {
        let g = self.clone();
        c.sync_hook = Some(Arc::new(move |_p: &Path| {
            g.entered.fetch_add(1, Ordering::SeqCst);
            let (m, cv) = &*g.closed;
            let mut closed = m.lock().unwrap();
            while *closed {
                closed = cv.wait(closed).unwrap();
            }
            Ok(())
        }));
        c
    }

    fn set(&self, closed: bool) {
        *self.closed.0.lock().unwrap() = closed;
        self.closed.1.notify_all();
    }

    fn wait_entered(&self, n: usize) {
        while self.entered.load(Ordering::SeqCst) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// D1: thread A's `flush_blocking` msync of entries 11..=20 is held; thread B's `flush(cb)`
/// must not be answered `Ok`, nor may `durable_index()` report 20, until a sync covering
/// those bytes completed.
#[test]
fn flush_callback_waits_for_a_running_flush_blocking_sync() {
    let d = tempfile::tempdir().unwrap();
    let gate = Gate::default();
    let synced = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&synced);
    let mut c = gate.install(cfg(d.path()));
    c.sync_recorder = Some(Arc::new(move |_p: &Path, _s, _e| {
        s2.store(true, Ordering::SeqCst);
    }));
    let wal = Arc::new(Wal::open(c).unwrap());
    wal.append(entries(1, 11, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    assert_eq!(wal.durable_index(), Some(10));
    synced.store(false, Ordering::SeqCst);
    gate.set(true);
    wal.append(entries(11, 21, 1, 100)).unwrap();
    let entered = gate.entered.load(Ordering::SeqCst);
    let a = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || wal.flush_blocking())
    };
    gate.wait_entered(entered + 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let s3 = Arc::clone(&synced);
    wal.flush(move |r| {
        // The moment of the acknowledgement: a completed sync must have covered it.
        tx.send((r.is_ok(), s3.load(Ordering::SeqCst))).unwrap();
    })
    .unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "flush(cb) answered while the only sync of its bytes was still running"
    );
    assert_eq!(
        wal.durable_index(),
        Some(10),
        "durable_index ahead of msync"
    );
    gate.set(false);
    a.join().unwrap().unwrap();
    let (ok, covered) = rx.recv().unwrap();
    assert!(ok && covered, "ack Ok={ok} with a completed sync={covered}");
    assert_eq!(wal.durable_index(), Some(20));
}

/// D1's variant: while A's sync of 11..=20 is held (only that one sync), B appends 21..=30
/// and flushes through the worker, and more records follow. Their durable hints must claim
/// only completed syncs: a power-loss image built from completed syncs must open (on
/// 2a80528 the worker synced only B's range, moved the durable point past A's unsynced
/// bytes, and the image failed with a damaged durable record).
#[test]
fn hints_written_during_a_held_sync_claim_only_completed_syncs() {
    let d = tempfile::tempdir().unwrap();
    type Ranges = Arc<Mutex<Vec<(PathBuf, u64, u64)>>>;
    let ranges: Ranges = Arc::default();
    let r2 = Arc::clone(&ranges);
    // Holds exactly one sync: the one that enters while `hold` is set.
    let hold = Arc::new((Mutex::new(false), Condvar::new()));
    let held = Arc::new(AtomicBool::new(false));
    let (h2, held2) = (Arc::clone(&hold), Arc::clone(&held));
    let mut c = cfg(d.path());
    c.sync_hook = Some(Arc::new(move |_p: &Path| {
        let (m, cv) = &*h2;
        let mut on = m.lock().unwrap();
        if *on && !held2.swap(true, Ordering::SeqCst) {
            while *on {
                on = cv.wait(on).unwrap();
            }
        }
        Ok(())
    }));
    c.sync_recorder = Some(Arc::new(move |p: &Path, s, e| {
        r2.lock().unwrap().push((p.to_path_buf(), s, e));
    }));
    let wal = Arc::new(Wal::open(c).unwrap());
    wal.append(entries(1, 11, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    *hold.0.lock().unwrap() = true;
    wal.append(entries(11, 21, 1, 100)).unwrap();
    let a = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || wal.flush_blocking())
    };
    while !held.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    wal.append(entries(21, 31, 1, 100)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    wal.flush(move |r| tx.send(r.is_ok()).unwrap()).unwrap();
    let early = rx.recv_timeout(Duration::from_millis(300)).is_ok();
    // Written while A's sync is held: their hints must not claim 11..=20 synced.
    wal.append(entries(31, 41, 1, 100)).unwrap();
    wal.commit(chunkwal::LogId::new(1, 35)).unwrap();
    let image = tempfile::tempdir().unwrap();
    build_image(d.path(), image.path(), &ranges.lock().unwrap());
    *hold.0.lock().unwrap() = false;
    hold.1.notify_all();
    a.join().unwrap().unwrap();
    assert!(!early, "B was acknowledged while A's range was unsynced");
    let w2 = Wal::open(cfg(image.path())).expect("a power-loss image of completed syncs opens");
    assert!(w2.log_state().last.is_some_and(|l| l.index >= 10));
    assert_holds(&w2, 1, 11, 1, 100);
}

/// Copy the chunk files, keeping headers and recorded ranges, zeroing the rest.
fn build_image(src: &Path, dst: &Path, ranges: &[(PathBuf, u64, u64)]) {
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        if !name.to_string_lossy().ends_with(".chunk") {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let mut keep = vec![false; bytes.len()];
        keep[..chunkwal::format::HEADER_LEN].fill(true);
        for (rp, s, e) in ranges {
            if rp.file_name() == Some(name.as_os_str()) {
                let e = (*e as usize).min(keep.len());
                keep[(*s as usize).min(e)..e].fill(true);
            }
        }
        for (b, k) in bytes.iter_mut().zip(&keep) {
            if !k {
                *b = 0;
            }
        }
        std::fs::write(dst.join(name), bytes).unwrap();
    }
}

/// Every file of `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap_or_default())
        })
        .collect()
}

/// The last non-zero byte of a file, plus one.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// D6: a tolerant open that finds a torn tail in the newest chunk (it would cut it) and a
/// checksum failure in a sealed chunk must fail and leave every byte of every file as it was;
/// so must a strict open, and one whose newest chunk is blank.
#[test]
fn a_failed_open_changes_no_file() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 301, 1, 500)).unwrap();
    wal.close().unwrap();
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 2, "needs a sealed chunk");
    // A torn tail behind the newest chunk's last record.
    let newest = chunks.last().unwrap();
    let mut b = std::fs::read(newest).unwrap();
    let end = data_end(&b);
    b[end + 8..end + 40].fill(0xA5);
    std::fs::write(newest, &b).unwrap();
    // A flipped byte inside a sealed chunk's first record.
    let mut s = std::fs::read(&chunks[0]).unwrap();
    s[chunkwal::format::HEADER_LEN + 40] ^= 0x10;
    std::fs::write(&chunks[0], &s).unwrap();
    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict] {
        let before = snapshot(d.path());
        // A lazy open would not read the damaged entry (see `footer`).
        let full = chunkwal::VerifyOnOpen::Full;
        let r = Wal::open(cfg(d.path()).recovery_mode(mode).verify_on_open(full));
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "{mode:?}: {r:?}"
        );
        assert!(
            before == snapshot(d.path()),
            "{mode:?}: a failed open changed a file"
        );
    }
    // A blank newest chunk is removed by a tolerant open, but not by one that fails.
    let blank = d
        .path()
        .join(chunkwal::inspect::chunk_file_name(chunks.len() as u64));
    std::fs::write(&blank, vec![0u8; SMALL_CHUNK as usize]).unwrap();
    let before = snapshot(d.path());
    let full = chunkwal::VerifyOnOpen::Full;
    assert!(Wal::open(cfg(d.path()).verify_on_open(full)).is_err());
    assert!(
        before == snapshot(d.path()),
        "a failed open removed the blank chunk"
    );
}

/// D5: a panic on the write path (injected after a record is published, before it is
/// applied) poisons the log: disk, index and cache may disagree, so nothing more is written
/// or acknowledged; a reopen recovers what was durable.
#[test]
fn a_panic_in_the_write_path_poisons_the_log() {
    let d = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&armed);
    let mut c = cfg(d.path());
    c.fail_point = Some(Arc::new(move |name| {
        if name == "write.after_put" && a.load(Ordering::SeqCst) {
            panic!("injected panic in the write path");
        }
    }));
    let wal = Wal::open(c).unwrap();
    wal.append(entries(1, 11, 1, 100)).unwrap();
    wal.flush_blocking().unwrap();
    armed.store(true, Ordering::SeqCst);
    let r = wal.append(entries(11, 21, 1, 100));
    assert!(r.as_ref().is_err_and(Error::is_poisoned), "{r:?}");
    armed.store(false, Ordering::SeqCst);
    assert!(wal
        .append(entries(11, 12, 1, 100))
        .unwrap_err()
        .is_poisoned());
    assert!(wal.flush_blocking().unwrap_err().is_poisoned());
    assert!(wal.flush(|_| {}).unwrap_err().is_poisoned());
    assert!(wal
        .commit(chunkwal::LogId::new(1, 5))
        .unwrap_err()
        .is_poisoned());
    assert_eq!(wal.durable_index(), Some(10));
    drop(wal);
    let wal = open(d.path());
    assert_holds(&wal, 1, 11, 1, 100);
}

/// D4's second half: a `Reader` that outlives its `Wal` keeps the directory locked, so no
/// new opener can cut a torn tail under its index; once it is dropped, the log opens.
#[test]
fn a_reader_outliving_its_wal_keeps_other_openers_out() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 11, 1, 100)).unwrap();
    let reader = wal.reader();
    drop(wal);
    assert!(matches!(
        Wal::open(cfg(d.path())),
        Err(Error::Locked { .. })
    ));
    assert_eq!(reader.read(1..11).unwrap().len(), 10);
    drop(reader);
    let wal = open(d.path());
    assert_holds(&wal, 1, 11, 1, 100);
}
