//! Corruption matrix over a log of many groups (targets and flips from `corruption.rs`):
//! flip bytes in headers, trailers, state images of every group, group entries, removals.
//! Open and read must name the damage (`Error::Corruption` with chunk and offset) or, in
//! the tail under the tolerant mode, cut the log cleanly: every group ends where it did
//! after one same batch. Never wrong data, never a panic.

use std::path::Path;

use bytes::Bytes;
use chunkwal::inspect::chunk_file_name;
use chunkwal::{Config, Error, GroupId, LogId, RecoveryMode, VerifyOnOpen, Wal, WriteBatch};

use crate::common::SMALL_CHUNK;
use crate::corruption::{flip, targets, Target};
use crate::crash_util::*;

const GROUPS: [GroupId; 4] = [GroupId(0), GroupId(1), GroupId(2), GroupId(3)];
/// Written, removed at batch 6, written again from batch 10.
const SCRATCH: GroupId = GroupId(7);

type Ends = [u64; 5];

fn ends(wal: &Wal) -> Ends {
    let mut e = [0; 5];
    for (x, g) in e.iter_mut().zip(GROUPS.iter().chain([&SCRATCH])) {
        *x = wal.group(*g).log_state().last.map_or(0, |l| l.index);
    }
    e
}

/// 16 flushed batches over four groups and the scratch group, with votes, commits, user
/// data and a purge in between, over several chunks. Returns the groups' ends after each
/// batch (the first: nothing written).
fn base_log(crash: bool) -> (tempfile::TempDir, Vec<Ends>) {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).unwrap();
    let mut history = vec![[0; 5]];
    let mut scratch_next = 1;
    for b in 0..16u64 {
        let mut batch = WriteBatch::new();
        let term = 1 + b / 6;
        for g in GROUPS {
            batch.append(g, derived_entries_in(g, b * 3 + 1, b * 3 + 4, term));
        }
        let g = GROUPS[(b % 4) as usize];
        if b % 3 == 1 {
            batch.save_vote(g, Bytes::from(format!("vote-{b}")));
            batch.commit(g, LogId::new(term, b * 3 + 2));
            batch.save_user_data(g, Some(Bytes::from_static(b"ud")));
        }
        if b == 8 {
            batch.purge(GroupId(2), LogId::new(1, 5));
        }
        if b == 6 {
            batch.remove_group(SCRATCH);
            scratch_next = 1;
        } else if !(7..10).contains(&b) {
            let es = derived_entries_in(SCRATCH, scratch_next, scratch_next + 2, 1 + b);
            batch.append(SCRATCH, es);
            scratch_next += 2;
        }
        wal.write(&batch).unwrap();
        wal.flush_blocking().unwrap();
        history.push(ends(&wal));
    }
    if crash {
        wal.simulate_crash();
    } else {
        wal.close().unwrap();
    }
    (d, history)
}

#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    named: u64,
    full: u64,
    cut: u64,
    named_on_read: u64,
}

/// Read every entry of group `g` one at a time: each is what was written, or a
/// `Corruption` naming the damaged chunk. Returns 1 if one was named.
fn verify_by_entry(wal: &Wal, g: GroupId, t: Target) -> u64 {
    let h = wal.group(g);
    let s = h.log_state();
    let Some(last) = s.last else { return 0 };
    let first = s.purged.map_or(1, |p| p.index + 1);
    let mut named = 0;
    for i in first..=last.index {
        match h.entry(i) {
            Ok(Some((id, p))) => {
                assert_eq!(id.index, i, "{t:?} {g}: wrong entry");
                assert_eq!(
                    p,
                    derived_in(g, id.index, id.term),
                    "{t:?} {g}: {id} altered"
                );
            }
            Err(Error::Corruption { chunk, .. }) => {
                assert_eq!(chunk, t.chunk, "{t:?} {g}: read named the wrong chunk");
                named = 1;
            }
            other => panic!("{t:?} {g}: entry {i}: {other:?}"),
        }
    }
    named
}

fn check_case(
    base: &Path,
    t: Target,
    last_chunk: u64,
    history: &[Ends],
    rng: &mut Rng,
    n: &mut Tally,
) {
    let mode = [RecoveryMode::TolerateTornTail, RecoveryMode::Strict][rng.below(2) as usize];
    let verify = [VerifyOnOpen::Full, VerifyOnOpen::Lazy][rng.below(2) as usize];
    let d = copy_dir(base);
    let mask = 1 + rng.below(255) as u8;
    flip(&d.path().join(chunk_file_name(t.chunk)), t.offset, mask);
    n.cases += 1;
    let cfg = Config::new(d.path())
        .chunk_size(SMALL_CHUNK)
        .recovery_mode(mode)
        .verify_on_open(verify);
    let wal = match Wal::open(cfg) {
        Err(Error::Corruption { chunk, offset, .. }) => {
            assert_eq!(chunk, t.chunk, "{t:?} mask {mask:#x}: wrong chunk named");
            assert!(
                offset <= t.offset,
                "{t:?}: damage reported at {offset}, after the flip"
            );
            n.named += 1;
            return;
        }
        Err(e) => panic!("{t:?} {mode:?}: unstructured error {e:?}"),
        Ok(wal) => wal,
    };
    let e = ends(&wal);
    let full = *history.last().unwrap();
    if e == full {
        n.full += 1;
    } else {
        assert!(
            mode == RecoveryMode::TolerateTornTail && t.chunk == last_chunk,
            "{t:?} {mode:?} {verify:?}: groups silently cut to {e:?} (written {full:?})"
        );
        assert!(
            history.contains(&e),
            "{t:?}: ends {e:?} are not a batch boundary"
        );
        n.cut += 1;
    }
    for g in GROUPS.iter().chain([&SCRATCH]) {
        if verify == VerifyOnOpen::Lazy && t.chunk != last_chunk {
            n.named_on_read += verify_by_entry(&wal, *g, t);
        } else {
            verify_group(&wal, *g, None);
        }
        let s = wal.group(*g).log_state();
        if let Some(v) = &s.vote {
            assert!(v.starts_with(b"vote-"), "{t:?} {g}: vote altered");
        }
        if let Some(u) = &s.user_data {
            assert_eq!(&u[..], b"ud", "{t:?} {g}: user data altered");
        }
    }
    let listed = wal.groups();
    assert!(
        listed.iter().all(|g| GROUPS.contains(g) || *g == SCRATCH),
        "{t:?}: unknown groups {listed:?}"
    );
    // A repaired log takes a new batch.
    let mut b = WriteBatch::new();
    for g in GROUPS {
        let s = wal.group(g).log_state();
        let next = s.next_index().unwrap_or(1);
        b.append(
            g,
            derived_entries_in(g, next, next + 1, s.last.map_or(1, |l| l.term)),
        );
    }
    wal.write(&b).unwrap();
    wal.flush_blocking().unwrap();
}

#[test]
fn group_byte_flips_are_named_or_cut_cleanly_never_misread() {
    let mut rng = Rng::from_env("corruption matrix, groups");
    let mut n = Tally::default();
    for crash in [false, true] {
        let (base, history) = base_log(crash);
        let (ts, last_chunk) = targets(base.path(), &mut rng);
        assert!(last_chunk >= 2, "the log should span several chunks");
        for t in ts {
            // A sample (one mode and verify level per target): the single-group matrix
            // covers the same record layout exhaustively.
            if t.what == "entry" && !rng.chance(30) {
                continue;
            }
            check_case(base.path(), t, last_chunk, &history, &mut rng, &mut n);
        }
    }
    println!("corruption matrix, groups: {n:?}");
    assert!(
        n.named > 0 && n.full > 0 && n.cut > 0 && n.named_on_read > 0,
        "{n:?}"
    );
}
