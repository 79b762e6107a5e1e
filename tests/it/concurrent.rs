//! Readers on other threads during appends, truncations and purges.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chunkwal::{Error, LogId};

use crate::common::*;

fn tagged(term: u64, index: u64) -> bytes::Bytes {
    payload(index ^ (term << 32), 64 + (index % 200) as usize)
}

#[test]
fn readers_never_see_torn_or_mismatched_entries() {
    let d = tempfile::tempdir().unwrap();
    let wal = Arc::new(open(d.path()));
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..3u64 {
        let reader = wal.reader();
        let stop = Arc::clone(&stop);
        let checked = Arc::clone(&checked);
        readers.push(std::thread::spawn(move || {
            let mut x = r + 1;
            while !stop.load(Ordering::Relaxed) {
                let s = reader.log_state();
                let (Some(first), Some(last)) = (reader.first_index(), s.last) else {
                    continue;
                };
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = first + (x >> 33) % (last.index - first + 1);
                let to = (from + 1 + (x >> 50) % 64).min(last.index + 1);
                match reader.read(from..to) {
                    Ok(es) => {
                        for (id, p) in es {
                            assert_eq!(p, tagged(id.term, id.index), "entry {id}");
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // The range moved under us (purge or truncate): allowed, never wrong data.
                    Err(Error::OutOfRange { .. }) => {}
                    Err(e) => panic!("reader error: {e}"),
                }
            }
        }));
    }
    let mut next = 1u64;
    let mut term = 1u64;
    for round in 0..300u64 {
        let batch: Vec<_> = (next..next + 20)
            .map(|i| (LogId::new(term, i), tagged(term, i)))
            .collect();
        wal.append(batch).unwrap();
        next += 20;
        if round % 7 == 3 {
            term += 1;
            let since = next - 10;
            let batch: Vec<_> = (since..since + 5)
                .map(|i| (LogId::new(term, i), tagged(term, i)))
                .collect();
            wal.replace_range(since, batch).unwrap();
            next = since + 5;
        }
        if round % 11 == 5 {
            wal.truncate(next - 3).unwrap();
            next -= 3;
        }
        if round % 13 == 0 && next > 200 {
            let upto = next - 150;
            let t = wal.entry(upto).unwrap().unwrap().0.term;
            wal.purge(LogId::new(t, upto)).unwrap();
        }
        if round % 5 == 0 {
            wal.flush(|r| r.unwrap()).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        checked.load(Ordering::Relaxed) > 0,
        "readers checked nothing"
    );
    assert!(wal.stat().chunks.len() < 40, "purged chunks were retired");
}
