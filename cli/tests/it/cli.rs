//! The `chunkwal` command-line tool, run as a real process.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkwal::inspect::{chunk_file_name, inspect_dir, OwnedRecord};
use chunkwal::{LogId, Wal};
use serde_json::Value;

use crate::common::*;

const VOTE: &[u8] = b"vote-bytes";

/// Entries 11..=700 (1..=600 term 1, then term 2), purged through 1-10, committed 1-500,
/// a vote; several 64 KiB chunks.
fn good_log() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    for i in (1..=600).step_by(50) {
        wal.append(entries(i, i + 50, 1, 200)).unwrap();
    }
    wal.commit(LogId::new(1, 500)).unwrap();
    wal.save_vote(Bytes::from_static(VOTE)).unwrap();
    wal.purge(LogId::new(1, 10)).unwrap();
    wal.append(entries(601, 701, 2, 200)).unwrap();
    wal.flush_blocking().unwrap();
    assert_eq!(wal.stat().entries, 690);
    assert!(wal.stat().chunks.len() >= 3);
    wal.close().unwrap();
    d
}

/// A log whose newest chunk ends in a cut-off record, as after a crash mid-write.
fn torn_log() -> (tempfile::TempDir, PathBuf, u64) {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    for i in 1..=10 {
        wal.append(entries(i, i + 1, 1, 50)).unwrap();
    }
    wal.flush_blocking().unwrap();
    wal.simulate_crash();
    let (chunk, off) = last_entry(d.path());
    let p = d.path().join(chunk_file_name(chunk));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(off + 20)
        .unwrap();
    (d, p, off)
}

/// (chunk, offset) of the last entry record.
fn last_entry(dir: &Path) -> (u64, u64) {
    let mut last = None;
    inspect_dir(
        dir,
        &mut |r| {
            if let OwnedRecord::Entry { .. } = r.record {
                last = Some((r.chunk, r.offset));
            }
        },
        &mut |_| {},
    )
    .unwrap();
    last.unwrap()
}

#[test]
fn stat_reports_state_and_works_while_the_log_is_open() {
    let d = good_log();
    let o = run_in(&["stat", "--json"], d.path());
    expect_code(&o, 0);
    let v = json_line(&o);
    assert_eq!(v["entries"], 690);
    assert_eq!(v["first"]["index"], 11);
    assert_eq!(v["first"]["term"], 1);
    assert_eq!(v["last"]["index"], 700);
    assert_eq!(v["last"]["term"], 2);
    assert_eq!(v["committed"]["index"], 500);
    assert_eq!(v["purged"]["index"], 10);
    assert_eq!(v["vote_hex"], "766f74652d6279746573");
    assert!(v["chunks"].as_u64().unwrap() >= 3);
    assert!(v["used_bytes"].as_u64().unwrap() > 690 * 200);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    // Another holder of the lock does not stop a read-only stat.
    let wal = open(d.path());
    let o = run_in(&["stat"], d.path());
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("690"), "{text}");
    assert!(text.contains("2-700"), "{text}");
    assert!(text.contains("766f74652d6279746573"), "{text}");
    drop(wal);
}

#[test]
fn dump_prints_every_record_as_text_and_json() {
    let d = good_log();
    let o = run_in(&["dump"], d.path());
    expect_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("entry 1-1 "), "first entry is still on disk");
    assert!(text.contains("entry 2-700 "));
    assert!(text.contains("state "));
    assert!(text.contains("purge upto 1-10"));
    assert!(text.contains("commit 1-500"));
    assert!(text.contains("seal"));

    let o = run_in(&["dump", "--format", "json"], d.path());
    expect_code(&o, 0);
    let recs: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entries: Vec<&Value> = recs.iter().filter(|r| r["kind"] == "entry").collect();
    assert_eq!(entries.len(), 700, "purged entries stay in their chunk");
    assert_eq!(entries[0]["payload_hex"], hex(&payload(1, 200)));
    assert!(recs.iter().any(|r| r["kind"] == "state"));
    let vote = recs.iter().find(|r| r["kind"] == "vote").unwrap();
    assert_eq!(vote["vote_hex"], "766f74652d6279746573");

    let o = run_in(
        &["dump", "--format", "json", "--from", "100", "--to", "110"],
        d.path(),
    );
    expect_code(&o, 0);
    let idx: Vec<u64> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "entry")
        .map(|r| r["id"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, (100..110).collect::<Vec<_>>());
}

/// Entries 1..=60 with a commit record after entry 20, a vote record after entry 40, and the
/// closing state record after entry 60, all in one chunk.
fn interleaved_log() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    wal.append(entries(1, 21, 1, 100)).unwrap();
    wal.commit(LogId::new(1, 5)).unwrap();
    wal.append(entries(21, 41, 1, 100)).unwrap();
    wal.save_vote(Bytes::from_static(VOTE)).unwrap();
    wal.append(entries(41, 61, 1, 100)).unwrap();
    wal.close().unwrap();
    d
}

/// `dump --format json ARGS` as (kind, entry index or 0) per line.
fn dump_kinds(dir: &Path, args: &[&str]) -> Vec<(String, u64)> {
    let mut v = vec!["dump", "--format", "json"];
    v.extend_from_slice(args);
    let o = run_in(&v, dir);
    expect_code(&o, 0);
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            let kind = r["kind"].as_str().unwrap().to_string();
            (kind, r["id"]["index"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[test]
fn dump_range_limits_state_records_to_the_entries_shown() {
    let d = interleaved_log();
    // 21..=50: the vote (after 40) lies between the first and last entry shown; the commit
    // (after 20) lies before the first, the closing state after the last.
    let got = dump_kinds(d.path(), &["--from", "21", "--to", "51"]);
    let mut want: Vec<(String, u64)> = (21..=40).map(|i| ("entry".into(), i)).collect();
    want.push(("vote".into(), 0));
    want.extend((41..=50).map(|i| ("entry".into(), i)));
    assert_eq!(got, want);

    // A range that ends before the vote: entries only.
    let got = dump_kinds(d.path(), &["--from", "21", "--to", "41"]);
    assert!(got.iter().all(|(k, _)| k == "entry"), "{got:?}");
    assert_eq!(got.len(), 20);

    // --all-state: the old behaviour, every non-entry record of the log, in place.
    let all = dump_kinds(d.path(), &[]);
    let got = dump_kinds(d.path(), &["--from", "21", "--to", "41", "--all-state"]);
    let want: Vec<(String, u64)> = all
        .iter()
        .filter(|(k, i)| k != "entry" || (21..41).contains(i))
        .cloned()
        .collect();
    assert_eq!(got, want);
    for kind in ["commit", "vote", "state"] {
        assert!(
            got.iter().any(|(k, _)| k == kind),
            "{kind} missing: {got:?}"
        );
    }
    // Only --from: the closing state lies after entry 60, the last one shown.
    let got = dump_kinds(d.path(), &["--from", "41"]);
    assert_eq!(
        got,
        (41..=60).map(|i| ("entry".into(), i)).collect::<Vec<_>>()
    );

    // Text output selects the same records.
    let o = run_in(&["dump", "--from", "21", "--to", "51"], d.path());
    expect_code(&o, 0);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 31, "{text}");
    assert!(
        text.contains(" vote ") && !text.contains(" commit "),
        "{text}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn verify_passes_a_good_log() {
    let d = good_log();
    let o = run_in(&["verify"], d.path());
    expect_code(&o, 0);
    assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    let o = run_in(&["verify", "--json"], d.path());
    expect_code(&o, 0);
    let v = json_line(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 700);
}

#[test]
fn verify_names_chunk_and_offset_of_corruption_and_changes_nothing() {
    let d = good_log();
    // An entry in the oldest chunk, which is sealed.
    let mut target = None;
    inspect_dir(
        d.path(),
        &mut |r| {
            if r.chunk == 0 && matches!(r.record, OwnedRecord::Entry { id, .. } if id.index == 20) {
                target = Some(r.offset);
            }
        },
        &mut |_| {},
    )
    .unwrap();
    let off = target.unwrap();
    let p = d.path().join(chunk_file_name(0));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[off as usize + 60] ^= 0x40; // inside the payload
    std::fs::write(&p, &bytes).unwrap();

    let o = run_in(&["verify"], d.path());
    expect_code(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("chunk 0"), "{err}");
    assert!(err.contains(&format!("offset {off}")), "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "verify must not write");

    // stat and repair refuse too, with the same location.
    let o = run_in(&["stat"], d.path());
    expect_code(&o, 3);
    assert!(stderr(&o).contains(&format!("offset {off}")));
    let o = run_in(&["repair", "--yes"], d.path());
    expect_code(&o, 3);
    assert!(stderr(&o).contains("Nothing was changed"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&p).unwrap(), bytes, "repair must not write");
}

/// A damaged record in a sealed chunk in the middle of the log (which a lazy open replays
/// from its seal-time index without checking) is found by the offline check too.
#[test]
fn verify_json_names_damage_in_a_middle_sealed_chunk() {
    let d = good_log();
    let mut target = None;
    inspect_dir(
        d.path(),
        &mut |r| {
            if r.chunk == 1 && target.is_none() && matches!(r.record, OwnedRecord::Entry { .. }) {
                target = Some(r.offset);
            }
        },
        &mut |_| {},
    )
    .unwrap();
    let off = target.expect("an entry in chunk 1");
    let p = d.path().join(chunk_file_name(1));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[off as usize + 100] ^= 0x01; // inside the payload
    std::fs::write(&p, &bytes).unwrap();

    let o = run_in(&["verify", "--json"], d.path());
    expect_code(&o, 3);
    let v = json_line(&o);
    assert_eq!(v["ok"], false);
    let probs = v["problems"].as_array().unwrap();
    assert_eq!(probs.len(), 1, "{v}");
    assert_eq!(probs[0]["kind"], "corruption");
    assert_eq!(probs[0]["chunk"], 1);
    assert_eq!(probs[0]["offset"], off);
    assert!(
        probs[0]["message"].as_str().unwrap().contains("checksum"),
        "{v}"
    );
}

#[test]
fn verify_reports_a_torn_tail() {
    let (d, p, off) = torn_log();
    let before = std::fs::read(&p).unwrap();
    let o = run_in(&["verify"], d.path());
    expect_code(&o, 3);
    let err = stderr(&o);
    assert!(err.contains("torn tail"), "{err}");
    assert!(err.contains(&format!("offset {off}")), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), before, "verify must not write");
}

#[test]
fn repair_cuts_a_torn_tail_after_a_backup() {
    let (d, p, _) = torn_log();
    let before = std::fs::read(&p).unwrap();

    // Without --yes and with no answer on stdin, nothing happens.
    let o = run_in(&["repair"], d.path());
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("aborted"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&p).unwrap(), before);

    let o = run_in(&["repair", "--yes"], d.path());
    expect_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("cut "), "{out}");
    assert!(out.contains("last log id 1-9"), "{out}");
    let backups: Vec<PathBuf> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    let saved = backups[0].join(p.file_name().unwrap());
    assert_eq!(
        std::fs::read(saved).unwrap(),
        before,
        "backup is the old file"
    );

    let o = run_in(&["verify"], d.path());
    expect_code(&o, 0);
    let wal = open(d.path());
    assert_eq!(wal.log_state().last, Some(LogId::new(1, 9)));
    assert_holds(&wal, 1, 10, 1, 50);
}

#[test]
fn repair_refuses_a_locked_directory() {
    use fs2::FileExt;
    let (d, p, _) = torn_log();
    let before = std::fs::read(&p).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(d.path().join(chunkwal::inspect::LOCK_FILE))
        .unwrap();
    lock.try_lock_exclusive().unwrap();
    let o = run_in(&["repair", "--yes"], d.path());
    expect_code(&o, 1);
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    FileExt::unlock(&lock).unwrap();
}

#[test]
fn bench_with_tiny_arguments_reports_every_field() {
    let o = run(&[
        "bench",
        "--entries",
        "2000",
        "--durable-batches",
        "5",
        "--single-appends",
        "5",
        "--json",
    ]);
    expect_code(&o, 0);
    let v = json_line(&o);
    // Buffered entries, durable batches synced one by one and then 8 in flight, singles.
    let total = 2000 + 2 * 5 * 64 + 5;
    assert_eq!(v["config"]["entries"], 2000);
    assert_eq!(v["buffered_append"]["entries"], 2000);
    assert!(v["buffered_append"]["entries_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["buffered_append"]["mib_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["durable_append"]["batches"], 5);
    assert!(v["durable_append"]["p99_us"].as_f64().unwrap() >= 0.0);
    assert!(
        v["durable_append"]["p99_us"].as_f64().unwrap()
            >= v["durable_append"]["p50_us"].as_f64().unwrap()
    );
    assert_eq!(v["pipelined_append"]["batches"], 5);
    assert!(v["pipelined_append"]["syncs"].as_u64().unwrap() >= 1);
    assert_eq!(v["single_append"]["count"], 5);
    // Everything fits in the default cache: warm reads are all hits, cold ones all misses.
    assert_eq!(v["warm_read"]["entries"], v["warm_read"]["cache_hits"]);
    assert_eq!(v["cold_read"]["entries"], total);
    assert_eq!(v["cold_read"]["cache_misses"], total);
    assert_eq!(v["range_read"]["entries"], total);
    assert_eq!(v["reopen"]["entries"], total);
    assert_eq!(v["index_memory"]["estimate"], true);
    assert_eq!(v["index_memory"]["entries"], total);
    assert!(v["log"]["chunks"].as_u64().unwrap() >= 1);
}

#[test]
fn bad_directories_give_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    for cmd in ["stat", "dump", "verify", "repair"] {
        let o = run_in(&[cmd], &missing);
        expect_code(&o, 1);
        assert!(stderr(&o).contains("no such directory"), "{}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    }
    let o = run_in(&["verify"], d.path());
    expect_code(&o, 1);
    assert!(stderr(&o).contains("not a chunkwal log"), "{}", stderr(&o));
    let file = d.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let o = run_in(&["stat"], &file);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    // Nothing was created by looking.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}

#[test]
fn newer_format_version_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    write_newer_version_chunk(d.path());
    for cmd in ["stat", "verify"] {
        let o = run_in(&[cmd], d.path());
        expect_code(&o, 1);
        assert!(stderr(&o).contains("newer chunkwal"), "{}", stderr(&o));
    }
    let _ = Wal::open(cfg(d.path())).unwrap_err();
}

/// The format v1 fixture written by the code at 2a80528 (see its README.md): the tool reads
/// it as it is, and verify changes nothing.
#[test]
fn verify_stat_and_dump_read_the_v1_2a80528_fixture() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/format-v1-2a80528");
    let d = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "chunk") {
            let to = d.path().join(p.file_name().unwrap());
            std::fs::copy(&p, &to).unwrap();
            files.push((to, std::fs::read(&p).unwrap()));
        }
    }
    assert_eq!(files.len(), 5);
    let o = run_in(&["verify"], d.path());
    expect_code(&o, 0);
    assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    let o = run_in(&["verify", "--json"], d.path());
    expect_code(&o, 0);
    let v = json_line(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["entries"], 406,
        "entry records, the purged and truncated ones included"
    );
    for (p, bytes) in &files {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "verify must not write");
    }

    let o = run_in(&["stat", "--json"], d.path());
    expect_code(&o, 0);
    let v = json_line(&o);
    assert_eq!(v["entries"], 360);
    assert_eq!(v["first"]["index"], 111);
    assert_eq!(v["last"]["term"], 4);
    assert_eq!(v["last"]["index"], 470);
    assert_eq!(v["committed"]["index"], 410);
    assert_eq!(v["purged"]["index"], 110);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    let o = run_in(&["dump", "--format", "json"], d.path());
    expect_code(&o, 0);
    let recs: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |kind: &str| recs.iter().filter(|r| r["kind"] == kind).count();
    assert_eq!(count("entry"), 406);
    for kind in [
        "truncate",
        "purge",
        "commit",
        "vote",
        "user_data",
        "seal",
        "state",
    ] {
        assert!(count(kind) > 0, "{kind} missing");
    }
}
