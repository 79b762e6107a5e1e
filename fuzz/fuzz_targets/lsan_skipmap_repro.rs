//! Minimal LeakSanitizer reproduction for the `ops_model` leak, using only crossbeam-skiplist.
//!
//! crossbeam-skiplist 0.1.3's `SkipMap::range` iterator (`base::RefRange::next`) replaces its
//! head entry with a clone (one more reference on the node) without releasing the previous
//! one, so every node a range scan walks past keeps one reference forever. A node that is
//! later removed is unlinked but never freed, and nothing points to it any more: LSan
//! reports it (and what its value owns) at exit. Flushing the epoch collector does not help:
//! the node was never handed to it. `iter()` releases correctly.
//!
//! Input byte 0, bit 0: walk with `range(..)` (leaks) instead of `iter()` (clean).
//! Run: `cargo +nightly fuzz run lsan_skipmap_repro -- -detect_leaks=1 -runs=100`, or
//! replay one input: `printf '\x01' > in; .../lsan_skipmap_repro -detect_leaks=1 in`.
#![no_main]

use crossbeam_skiplist::SkipMap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let use_range = data.first().is_some_and(|b| b & 1 == 1);
    let m: SkipMap<u64, Vec<u64>> = SkipMap::new();
    for k in 0..4u64 {
        m.insert(k, vec![k; 512]);
    }
    let mut seen = 0;
    if use_range {
        for e in m.range(0..4) {
            seen += e.value().len();
        }
    } else {
        for e in m.iter() {
            seen += e.value().len();
        }
    }
    assert_eq!(seen, 4 * 512);
    // Remove what was walked; dropping the map frees only nodes still linked.
    for k in 0..4u64 {
        m.remove(&k);
    }
});
