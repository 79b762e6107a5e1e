//! Append, read, reopen, truncate, purge and rotation through the public API.

use bytes::Bytes;
use chunkwal::{Error, LogId, Wal};

use crate::common::*;

#[test]
fn append_flush_reopen_read() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 101, 1, 100)).unwrap();
        assert_holds(&wal, 1, 101, 1, 100);
        wal.flush_blocking().unwrap();
        assert_eq!(wal.durable_index(), Some(100));
    }
    let wal = open(d.path());
    assert_eq!(wal.log_state().last, Some(LogId::new(1, 100)));
    assert_holds(&wal, 1, 101, 1, 100);
    wal.append(entries(101, 111, 2, 10)).unwrap();
    assert_eq!(wal.read(101..111).unwrap().len(), 10);
}

#[test]
fn rotation_across_many_chunks_then_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        for b in 0..50u64 {
            wal.append(entries(b * 100 + 1, b * 100 + 101, 3, 300))
                .unwrap();
        }
        wal.flush_blocking().unwrap();
        assert!(
            wal.stat().chunks.len() > 20,
            "{:?}",
            wal.stat().chunks.len()
        );
    }
    let wal = open(d.path());
    assert_holds(&wal, 1, 5001, 3, 300);
}

#[test]
fn truncate_and_purge_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 2001, 1, 200)).unwrap();
        wal.truncate(1500).unwrap();
        wal.append(entries(1500, 1600, 2, 200)).unwrap();
        wal.purge(LogId::new(1, 1000)).unwrap();
        wal.commit(LogId::new(2, 1550)).unwrap();
        wal.save_vote(Bytes::from_static(b"vote:2")).unwrap();
        wal.save_user_data(Some(Bytes::from_static(b"ud"))).unwrap();
        wal.flush_blocking().unwrap();
        wal.wait_worker_idle();
    }
    let wal = open(d.path());
    let s = wal.log_state();
    assert_eq!(s.last, Some(LogId::new(2, 1599)));
    assert_eq!(s.purged, Some(LogId::new(1, 1000)));
    assert_eq!(s.committed, Some(LogId::new(2, 1550)));
    assert_eq!(s.vote.as_deref(), Some(&b"vote:2"[..]));
    assert_eq!(s.user_data.as_deref(), Some(&b"ud"[..]));
    assert_holds(&wal, 1001, 1500, 1, 200);
    assert_holds(&wal, 1500, 1600, 2, 200);
    assert!(matches!(wal.read(999..1002), Err(Error::OutOfRange { .. })));
    assert!(matches!(
        wal.read(1599..1601),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn second_open_is_locked() {
    let d = tempfile::tempdir().unwrap();
    let _wal = open(d.path());
    assert!(matches!(
        Wal::open(cfg(d.path())),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn reset_empties_the_log_and_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let wal = open(d.path());
        wal.append(entries(1, 3001, 1, 100)).unwrap();
        wal.save_vote(Bytes::from_static(b"v")).unwrap();
        wal.purge(LogId::new(1, 10)).unwrap();
        wal.reset().unwrap();
        assert_eq!(wal.log_state().last, None);
        assert!(wal.read(11..12).is_err());
        wal.append(entries(7, 9, 2, 10)).unwrap();
        wal.wait_worker_idle();
    }
    let wal = open(d.path());
    let s = wal.log_state();
    assert_eq!((s.last, s.purged), (Some(LogId::new(2, 8)), None));
    assert_eq!(s.vote.as_deref(), Some(&b"v"[..]));
    assert_holds(&wal, 7, 9, 2, 10);
    assert!(wal.stat().chunks.len() <= 2);
}

#[test]
fn a_panicking_sync_poisons_instead_of_hanging() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = armed.clone();
    c.sync_hook = Some(std::sync::Arc::new(move |_| {
        if a.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the flush worker");
        }
        Ok(())
    }));
    let wal = Wal::open(c).unwrap();
    wal.append(entries(1, 11, 1, 10)).unwrap();
    wal.flush_blocking().unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    wal.append(entries(11, 21, 1, 10)).unwrap();
    // Through the worker: the callback gets the error instead of never being called.
    let (tx, rx) = std::sync::mpsc::channel();
    wal.flush(move |r| tx.send(r).unwrap()).unwrap();
    let err = rx.recv().unwrap().unwrap_err();
    assert!(err.is_poisoned(), "{err}");
    assert!(wal
        .append(entries(21, 22, 1, 10))
        .unwrap_err()
        .is_poisoned());
    assert!(wal.flush_blocking().unwrap_err().is_poisoned());
    drop(wal);
    // The same on the calling thread (flush_blocking syncs inline).
    let d2 = tempfile::tempdir().unwrap();
    let mut c = cfg(d2.path());
    let armed2 = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a2 = armed2.clone();
    c.sync_hook = Some(std::sync::Arc::new(move |_| {
        if a2.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic inline");
        }
        Ok(())
    }));
    let w2 = Wal::open(c).unwrap();
    w2.append(entries(1, 2, 1, 10)).unwrap();
    armed2.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(w2.flush_blocking().unwrap_err().is_poisoned());
    assert!(w2.append(entries(2, 3, 1, 10)).unwrap_err().is_poisoned());
    // Reopen without the hook: what was written is there (the page cache kept it).
    let wal = open(d.path());
    assert_holds(&wal, 1, 21, 1, 10);
}

#[test]
fn handles_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
    assert_send_sync::<chunkwal::Reader>();
    assert_send_sync::<Error>();
    // Zero-copy reads outlive the log handle and keep their bytes.
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 3, 1, 1000)).unwrap();
    wal.flush_blocking().unwrap();
    wal.wait_worker_idle();
    wal.evict_durable_from_cache();
    assert_eq!(wal.access_stat().cache.items, 0);
    let got = wal.read(1..3).unwrap();
    assert_eq!(wal.access_stat().cache.misses, 2, "served from the map");
    drop(wal);
    assert_eq!(got[1].1, payload(2, 1000));
}

/// Sealed chunks let go of their file descriptors: a long log must not hold one per chunk.
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "counts descriptors through /proc/self/fd"
)]
fn sealed_chunks_hold_no_file_descriptors() {
    let d = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(d.path()).unwrap();
    let fds_into_dir = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| t.starts_with(&dir))
            .count()
    };
    let wal = open(d.path());
    for b in 0..50u64 {
        wal.append(entries(b * 100 + 1, b * 100 + 101, 3, 300))
            .unwrap();
        wal.flush_blocking().unwrap();
    }
    let chunks = wal.stat().chunks.len();
    assert!(chunks > 20, "{chunks} chunks");
    // The lock file, the active chunk and perhaps a spare.
    let held = fds_into_dir();
    assert!(
        held <= 3,
        "{held} descriptors open into a log of {chunks} chunks"
    );
    drop(wal);
    assert_eq!(fds_into_dir(), 0, "descriptors left open after close");
}

/// An entry at index u64::MAX survives a reopen (a state image naming it used to drop it)
/// and can be read in a range.
#[test]
fn entry_at_the_last_index_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let top = u64::MAX;
    {
        let wal = open(d.path());
        wal.append([(LogId::new(1, top - 1), Bytes::from_static(b"a"))])
            .unwrap();
        wal.append([(LogId::new(1, top), Bytes::from_static(b"b"))])
            .unwrap();
        wal.close().unwrap();
    }
    let wal = open(d.path());
    assert_eq!(wal.log_state().last, Some(LogId::new(1, top)));
    let got = wal.read(top - 1..=top).unwrap();
    assert_eq!(
        got,
        vec![
            (LogId::new(1, top - 1), Bytes::from_static(b"a")),
            (LogId::new(1, top), Bytes::from_static(b"b"))
        ]
    );
    assert_eq!(wal.dump_data().unwrap().entries, got);
    assert!(matches!(
        wal.append([(LogId::new(1, 0), Bytes::from_static(b"c"))]),
        Err(Error::IndexOverflow | Error::NonContiguous { .. })
    ));
}
