//! The d-engine entry encoding on disk: every version keeps a fixture in `tests/fixtures/`,
//! written by that version's code, and a test here opens it with the current code and reads
//! it back exactly through d-engine's traits.
//!
//! - `d-engine-entries-v1/`: entries as their whole prost `Entry` message (the encoding up to
//!   and including commit 664bb38), written by `write_d_engine_entries_fixture` at that code.
//! - `d-engine-entries-v2/`: a tag byte and the entry's body (issue #13), written by
//!   `write_d_engine_entries_fixture` as it is now. A new encoding renames the directory it
//!   writes and keeps the older fixtures.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkwal::adapter::AdapterOptions;
use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::Config;
use d_engine::common::{entry_payload::Payload, Entry, EntryPayload, LogId};
use d_engine::{HardState, LogStore, MetaStore, StorageEngine};

use crate::common::SMALL_CHUNK;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copy a fixture to a scratch directory (opening may write).
fn copy(src: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(src).expect("fixture dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, d.path().join(p.file_name().expect("name"))).expect("copy");
    }
    d
}

fn open(dir: &Path) -> ChunkwalStorageEngine {
    ChunkwalStorageEngine::open(
        Config::new(dir).chunk_size(SMALL_CHUNK),
        AdapterOptions::default(),
    )
    .expect("open d-engine store")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Every shape of d-engine entry: commands (empty, short, larger), noops, membership
/// changes, an entry without a payload and a payload without a body.
pub(crate) fn shaped_entry(index: u64, term: u64) -> Entry {
    let payload = match index % 6 {
        0 => EntryPayload::noop().payload,
        1 => Some(Payload::Command(Bytes::new())),
        2 => Some(membership_change(index)),
        3 => None,
        4 => {
            return Entry {
                index,
                term,
                payload: None,
            }
        }
        _ => Some(Payload::Command(Bytes::from(
            format!("cmd-{index}-{term}-").repeat(index as usize % 40 + 1),
        ))),
    };
    Entry {
        index,
        term,
        payload: Some(EntryPayload { payload }),
    }
}

/// A membership change (d-engine does not re-export its types; they are serde types).
fn membership_change(index: u64) -> Payload {
    let v = serde_json::json!({ "Config": { "change": { "AddNode": {
        "node_id": index, "address": format!("127.0.0.1:{}", 9000 + index), "status": 1,
    } } } });
    serde_json::from_value(v).expect("membership change")
}

fn hard_state() -> HardState {
    let mut hs = HardState {
        current_term: 2,
        voted_for: None,
    };
    let v = hs.voted_for.insert(Default::default());
    v.voted_for_id = 3;
    v.voted_for_term = 2;
    v.committed = true;
    hs
}

/// What every entries fixture holds: entries 1..=30 in term 1, purged through 5, and
/// 25..=30 replaced by term-2 entries; the hard state of [`hard_state`].
fn write_entries(dir: &Path) {
    let engine = open(dir);
    let (log, meta) = (engine.log_store(), engine.meta_store());
    block_on(async {
        let es = (1..=30).map(|i| shaped_entry(i, 1)).collect();
        log.persist_entries(es).await.expect("persist");
        log.purge(LogId { term: 1, index: 5 }).await.expect("purge");
        let es = (25..=30).map(|i| shaped_entry(i, 2)).collect();
        log.replace_range(25, es).await.expect("replace");
    });
    meta.save_hard_state(&hard_state()).expect("hard state");
    log.flush().expect("flush");
}

/// The entries [`write_entries`] leaves.
fn written() -> Vec<Entry> {
    (6..=24)
        .map(|i| shaped_entry(i, 1))
        .chain((25..=30).map(|i| shaped_entry(i, 2)))
        .collect()
}

#[test]
#[ignore = "writes an entries fixture with the current code; run by hand only for a new encoding"]
fn write_d_engine_entries_fixture() {
    let dir = fixture("d-engine-entries-v2");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    write_entries(&dir);
    let _ = std::fs::remove_file(dir.join(chunkwal::inspect::LOCK_FILE));
}

/// Open a fixture, read it back, then write, truncate and rewrite on top of it.
fn check_fixture(name: &str) {
    let d = copy(&fixture(name));
    let engine = open(d.path());
    let (log, meta) = (engine.log_store(), engine.meta_store());
    assert_eq!(log.get_entries(1..=100).expect("get"), written(), "{name}");
    assert_eq!(log.last_index(), 30);
    assert_eq!(
        log.load_purge_boundary().expect("boundary"),
        Some(LogId { term: 1, index: 5 })
    );
    let hs = meta.load_hard_state().expect("load").expect("saved");
    assert_eq!((hs.current_term, hs.voted_for), (2, hard_state().voted_for));
    assert_eq!(
        block_on(log.entry(7)).expect("entry"),
        Some(shaped_entry(7, 1))
    );
    // Old and new entries side by side.
    block_on(async {
        let es = (31..=40).map(|i| shaped_entry(i, 2)).collect();
        log.persist_entries(es).await.expect("persist on fixture");
        log.truncate(38).await.expect("truncate");
        let es = (20..=26).map(|i| shaped_entry(i, 3)).collect();
        log.replace_range(20, es).await.expect("replace");
    });
    let want: Vec<Entry> = (6..=19)
        .map(|i| shaped_entry(i, 1))
        .chain((20..=26).map(|i| shaped_entry(i, 3)))
        .collect();
    assert_eq!(log.get_entries(1..=100).expect("get"), want, "{name}");
}

#[test]
fn d_engine_entries_v1_fixture_reads_back() {
    check_fixture("d-engine-entries-v1");
}

#[test]
fn d_engine_entries_v2_fixture_reads_back() {
    check_fixture("d-engine-entries-v2");
}
