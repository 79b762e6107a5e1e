//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same target
//! bodies the cargo-fuzz targets use, on stable, plus a short seeded mutation run.
//! `CHUNKWAL_WRITE_SEEDS=1 cargo test --test it fuzz_seeds::write_seeds -- --ignored`
//! regenerates the seed files.

use std::path::{Path, PathBuf};

use chunkwal::{Config, Wal};

use crate::crash_util::Rng;
use crate::fuzz_seeds::group_scripts;

#[path = "../../fuzz/fuzz_logic.rs"]
pub(crate) mod logic;

fn record_parser(b: &[u8]) {
    logic::record_parser(b);
}
fn open_recovery(b: &[u8]) {
    logic::open_recovery(b);
}
fn ops_model(b: &[u8]) {
    logic::ops_model(b);
}

/// A target name and its body.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 3] = [
    ("record_parser", record_parser),
    ("open_recovery", open_recovery),
    ("ops_model", ops_model),
];

pub(crate) fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Inputs that once showed an engine bug (minimized from fuzzer findings), kept as
/// regressions with the outcome the fixed engine must give.
const REGRESSIONS: [(&str, &str, Option<bool>); 5] = [
    // One entry at index u64::MAX: the next append must be refused, not wrap to index 0.
    ("open_recovery", "regress-append-after-u64-max", Some(true)),
    // A state image whose purge point is past its last id: corruption, refused at open.
    ("open_recovery", "regress-purged-past-last", Some(false)),
    // Entries 1..=3, then truncate{since: 100, last: (1, 2)}: corruption.
    (
        "open_recovery",
        "regress-truncate-since-past-entries",
        Some(false),
    ),
    // Entries (1,1), (7,2), then truncate{since: 3, last: (1, 2)}: wrong term, corruption.
    ("open_recovery", "regress-truncate-last-term", Some(false)),
    // reset() near the end of a chunk must rotate instead of failing.
    ("ops_model", "regress-reset-near-chunk-end", None),
];

#[test]
fn former_bug_inputs_now_behave() {
    for (target, name, opens) in REGRESSIONS {
        let b = seed(target, name);
        match opens {
            Some(expect_open) => {
                let got = logic::open_recovery(&b);
                assert_eq!(got.is_some(), expect_open, "{target}/{name}: {got:?}");
            }
            None => {
                assert!(logic::ops_model(&b) > 0, "{target}/{name} ran no operation");
            }
        }
    }
}

#[test]
fn corpus_replays_cleanly() {
    for (target, f) in TARGETS {
        let files = corpus(target);
        assert!(files.len() >= 8, "{target}: only {} seeds", files.len());
        for (path, bytes) in files {
            let r = std::panic::catch_unwind(|| f(&bytes));
            assert!(r.is_ok(), "{target} failed on {}", path.display());
        }
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir(target).join(name)).unwrap()
}

/// The seeds reach deep: real chunks scan to many records, real logs recover every entry,
/// op scripts run to the end. Guards against a harness that silently rejects everything.
#[test]
fn seeds_exercise_the_engine() {
    assert!(logic::record_parser(&seed("record_parser", "seed-chunk-clean")) >= 20);
    assert!(logic::record_parser(&seed("record_parser", "seed-chunk-sealed")) >= 3);
    // Every entry of the sealed chunk, its State image, the Index and the Seal.
    assert!(logic::record_parser(&seed("record_parser", "seed-chunk-footer")) >= 20);
    for w in ["0", "16"] {
        let n = logic::open_recovery(&seed("open_recovery", &format!("seed-real-clean-{w}")));
        assert_eq!(n, Some(20));
        let n = logic::open_recovery(&seed("open_recovery", &format!("seed-real-two-chunks-{w}")));
        assert_eq!(n, Some(40));
        let n = logic::open_recovery(&seed("open_recovery", &format!("seed-real-mixed-{w}")));
        assert_eq!(n, Some(26)); // 30, truncated to 28, purged up to 2
        let n = logic::open_recovery(&seed("open_recovery", &format!("seed-real-footer-{w}")));
        assert_eq!(n, Some(40));
    }
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-torn-cut")),
        Some(11)
    );
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-torn-garbage")),
        Some(12)
    );
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-torn-strict")),
        None
    );
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-built")),
        Some(2)
    );
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-built-two")),
        Some(2)
    );
    assert_eq!(
        logic::open_recovery(&seed("open_recovery", "seed-built-unterminated")),
        Some(0)
    );
    let script = seed("ops_model", "seed-rotate-crash");
    assert_eq!(logic::ops_model(&script), (script.len() - 1) / 3);
    for (name, _) in group_scripts() {
        let script = seed("ops_model", &format!("seed-groups-{name}"));
        assert_eq!(logic::ops_model(&script), (script.len() - 1) / 4, "{name}");
    }
}

/// A few hundred byte-level mutations of the seeds: a tiny fuzzer that runs on stable.
#[test]
fn seeded_mutations_never_break_a_promise() {
    let mut rng = Rng::from_env("fuzz_corpus mutations");
    for (target, f) in TARGETS {
        let seeds = corpus(target);
        let rounds = if target == "record_parser" { 2000 } else { 150 };
        for _ in 0..rounds {
            let (path, seed) = &seeds[rng.below(seeds.len() as u64) as usize];
            let mut b = seed.clone();
            for _ in 0..1 + rng.below(4) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len() as u64) as usize;
                match rng.below(3) {
                    0 => b[i] ^= 1 << rng.below(8),
                    1 => b[i] = rng.next_u64() as u8,
                    _ => b.truncate(i),
                }
            }
            let r = std::panic::catch_unwind(|| f(&b));
            if r.is_err() {
                let keep = std::env::temp_dir()
                    .join(format!("chunkwal-{target}-failure-{}", std::process::id()));
                std::fs::write(&keep, &b).unwrap();
                panic!(
                    "{target}: mutation of {} failed; input kept in {}",
                    path.display(),
                    keep.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seed generation
// ---------------------------------------------------------------------------------------

/// Post-mortem of one open_recovery input: `CHUNKWAL_FUZZ_INPUT=<file> cargo test --test it
/// fuzz_corpus::explain_open_recovery -- --ignored --nocapture` prints every record and
/// what open makes of them.
#[test]
#[ignore = "debugging aid; needs CHUNKWAL_FUZZ_INPUT"]
fn explain_open_recovery() {
    let Some(input) = std::env::var_os("CHUNKWAL_FUZZ_INPUT") else {
        return;
    };
    let data = std::fs::read(input).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (ctl, mode) = logic::write_chunk_files(&data, d.path()).unwrap();
    println!("ctl {ctl:#x}, {mode:?}");
    let _ = chunkwal::inspect::inspect_dir(d.path(), &mut |r| println!("  {r:?}"), &mut |c| {
        println!("chunk {} tail {:?} error {:?}", c.seq, c.tail, c.error)
    });
    match Wal::open(
        Config::new(d.path())
            .chunk_size(logic::CHUNK)
            .recovery_mode(mode),
    ) {
        Ok(w) => println!(
            "opened: {:?}, {} entries indexed",
            w.log_state(),
            w.stat().entries
        ),
        Err(e) => println!("open failed: {e}"),
    }
}
