//! The format v3 fixture (groups), written by the code that first wrote format v3: the
//! standard content in the default group (see `fixtures.rs`), plus groups written on top of
//! it, so the fixture holds group entries, state images, footer group runs and a removal.

use bytes::Bytes;
use chunkwal::format::{read_footer, ChunkHeader, Item, FORMAT_VERSION};
use chunkwal::{Config, GroupId, LogId, VerifyOnOpen, Wal, WriteBatch};

use crate::common::{payload, SMALL_CHUNK};
use crate::fixtures::{check_standard_dir, copy, fixture, write_standard_dir};

/// The fixture's directory under `tests/fixtures/`.
const NAME: &str = "format-v3-groups";

/// Entry payload of group `g` (deterministic, 50..549 bytes).
fn gpayload(g: u64, id: LogId) -> Bytes {
    let len = 50 + ((id.index * 31 + g * 7 + id.term) % 500) as usize;
    payload((g << 32) ^ (id.index * 8 + id.term), len)
}

/// Groups 1..=5 over several chunks: group 2 truncated and rewritten (term 2 from 31),
/// group 3 purged to 20, group 4 removed, group 5 with vote, commit and user data only.
fn write_groups(wal: &Wal) {
    for round in 0..10u64 {
        let mut b = WriteBatch::new();
        for g in 1..=4u64 {
            let from = round * 5 + 1;
            b.append(
                GroupId(g),
                (from..from + 5).map(|i| (LogId::new(1, i), gpayload(g, LogId::new(1, i)))),
            );
        }
        wal.write(&b).unwrap();
    }
    let two = wal.group(GroupId(2));
    two.replace_range(
        31,
        (31..=40).map(|i| (LogId::new(2, i), gpayload(2, LogId::new(2, i)))),
    )
    .unwrap();
    wal.group(GroupId(3)).purge(LogId::new(1, 20)).unwrap();
    wal.remove_group(GroupId(4)).unwrap();
    let mut b = WriteBatch::new();
    b.save_vote(GroupId(5), Bytes::from_static(b"vote-5"))
        .commit(GroupId(5), LogId::new(4, 9))
        .save_user_data(GroupId(5), Some(Bytes::from_static(b"ud-5")));
    b.commit(GroupId(1), LogId::new(1, 45));
    wal.write(&b).unwrap();
    wal.flush_blocking().unwrap();
}

fn group_id(g: u64, index: u64) -> LogId {
    let term = if g == 2 && index >= 31 { 2 } else { 1 };
    LogId::new(term, index)
}

/// What [`write_groups`] left, checked entry by entry.
fn check_groups(wal: &Wal) {
    let ids: Vec<u64> = wal.groups().iter().map(|g| g.0).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 5]);
    for (g, first, last) in [(1, 1, 50), (2, 1, 40), (3, 21, 50)] {
        let h = wal.group(GroupId(g));
        let got = h.read(first..=last).unwrap();
        assert_eq!(got.len() as u64, last - first + 1, "group {g}");
        for (id, p) in got {
            assert_eq!(id, group_id(g, id.index), "group {g}");
            assert_eq!(p, gpayload(g, id), "group {g} entry {}", id.index);
        }
        assert_eq!(h.first_index(), Some(first));
        assert_eq!(h.last_index(), Some(last));
    }
    assert_eq!(
        wal.group(GroupId(1)).log_state().committed,
        Some(LogId::new(1, 45))
    );
    assert_eq!(
        wal.group(GroupId(3)).log_state().purged,
        Some(LogId::new(1, 20))
    );
    assert_eq!(wal.group(GroupId(4)).log_state(), Default::default());
    let five = wal.group(GroupId(5)).log_state();
    assert_eq!(five.vote.as_deref(), Some(&b"vote-5"[..]));
    assert_eq!(five.committed, Some(LogId::new(4, 9)));
    assert_eq!(five.user_data.as_deref(), Some(&b"ud-5"[..]));
    assert_eq!(five.last, None);
}

#[test]
#[ignore = "writes the format v3 fixture; run once, by the code that first writes v3"]
fn write_format_v3_fixture() {
    assert_eq!(FORMAT_VERSION, 3);
    let dir = fixture(NAME);
    assert!(!dir.exists(), "fixtures are never rewritten");
    std::fs::create_dir_all(&dir).unwrap();
    write_standard_dir(&dir);
    let wal = Wal::open(Config::new(&dir).chunk_size(SMALL_CHUNK)).unwrap();
    write_groups(&wal);
    wal.close().unwrap();
}

#[test]
fn format_v3_fixture_opens_reads_and_takes_writes() {
    for verify in [VerifyOnOpen::Full, VerifyOnOpen::Lazy] {
        let d = copy(&fixture(NAME));
        {
            let cfg = Config::new(d.path()).chunk_size(SMALL_CHUNK);
            let wal = Wal::open(cfg.verify_on_open(verify)).unwrap();
            check_groups(&wal);
            let next = LogId::new(1, 51);
            wal.group(GroupId(1))
                .append([(next, gpayload(1, next))])
                .unwrap();
            wal.flush_blocking().unwrap();
            assert_eq!(wal.group(GroupId(1)).last_index(), Some(51));
        }
        // The default group is the standard content with the standard writes on top.
        let d = copy(&fixture(NAME));
        check_standard_dir(d.path(), 3);
    }
}

/// Some sealed chunk of the fixture has a footer with group runs.
#[test]
fn format_v3_fixture_has_group_runs_in_footers() {
    let mut chunks: Vec<_> = std::fs::read_dir(fixture(NAME))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
        .collect();
    chunks.sort();
    let mut group_runs = 0;
    for c in &chunks[..chunks.len() - 1] {
        let b = std::fs::read(c).unwrap();
        let h = ChunkHeader::decode(&b).unwrap();
        if h.version < 3 {
            continue;
        }
        let f = read_footer(&b, h.chunk_size, h.epoch_tag()).unwrap();
        group_runs += f
            .items
            .iter()
            .filter(|i| matches!(i, Item::Run(r) if r.group != 0))
            .count();
    }
    assert!(group_runs > 0);
}
