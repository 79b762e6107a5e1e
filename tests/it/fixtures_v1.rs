//! The format v1 fixtures (see `fixtures.rs` for the rule and the shared checks):
//! - `tests/fixtures/format-v1/`: 2 chunks written at d9eebb3 by that commit's
//!   `write_v1` (`git show d9eebb3:tests/it/fixtures.rs`);
//! - `tests/fixtures/format-v1-2a80528/`: the standard content (`write_standard_log`), 5
//!   chunk files, written by the code at 2a80528 with the program in its README.md. That
//!   code predates recycling's epoch tags: its chunks' epochs are fully random, so their
//!   tags are not the ones the current code derives from a chunk's sequence number.

use chunkwal::{Config, LogId, Wal};

use crate::common::{payload, SMALL_CHUNK};
use crate::fixtures::{check_format_fixture, copy, fixture};

/// Format v1, the standard content, written at 2a80528: opens by default and strict, every
/// entry and the state check out, reads cross chunk boundaries, and it takes writes across
/// rotations, a purge of one of its chunks and a `replace_range`, then reopens.
#[test]
fn format_v1_2a80528_fixture_opens_reads_and_takes_writes() {
    check_format_fixture("format-v1-2a80528", 1);
}

/// Format v1 as written at d9eebb3: entries 1..=150 of terms 1 and 2 (across rotations),
/// purged through 20, truncated at 141 and 141..=150 rewritten in term 3 (payloads
/// `payload(i ^ 3, 700)`), a vote, a commit and user data.
#[test]
fn format_v1_fixture_opens_and_reads() {
    let d = copy(&fixture("format-v1"));
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).expect("open v1");
    let s = wal.log_state();
    assert_eq!(s.last, Some(LogId::new(3, 150)));
    assert_eq!(s.purged, Some(LogId::new(1, 20)));
    assert_eq!(s.committed, Some(LogId::new(3, 145)));
    assert_eq!(s.vote.as_deref(), Some(&b"term=3,voted_for=2"[..]));
    assert_eq!(s.user_data.as_deref(), Some(&b"app-state"[..]));
    let got = wal.read(21..151).expect("read v1");
    assert_eq!(got.len(), 130);
    for (id, p) in got {
        let (term, want) = match id.index {
            i if i <= 80 => (1, payload(i, 700)),
            i if i <= 140 => (2, payload(i, 700)),
            i => (3, payload(i ^ 3, 700)),
        };
        assert_eq!(id.term, term, "term of {}", id.index);
        assert_eq!(p, want, "payload of {}", id.index);
    }
    // The fixture also takes new writes.
    wal.append([(LogId::new(3, 151), payload(151, 10))])
        .unwrap();
    wal.flush_blocking().unwrap();
}
