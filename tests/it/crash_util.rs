//! Helpers for the crash and fault tests: a seeded RNG, self re-execution as a child
//! process, deterministic payloads and whole-log verification.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use chunkwal::{CorruptionKind, Error, GroupId, LogId, Wal};

/// A small xorshift64* generator: reproducible from a printed seed, no extra crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Seed from `CHUNKWAL_SEED` or the clock; printed so a failure can be replayed.
    pub fn from_env(what: &str) -> Self {
        Rng::new(seed_from_env(what))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The seed [`Rng::from_env`] uses: `CHUNKWAL_SEED` or the clock, printed so a failure can
/// be replayed.
pub fn seed_from_env(what: &str) -> u64 {
    let seed = std::env::var("CHUNKWAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{what}: seed {seed} (replay with CHUNKWAL_SEED={seed})");
    seed
}

/// Payload of entry `(index, term)`: length and bytes both derived from the id, so any
/// process can check any entry without knowing who wrote it.
pub fn derived(index: u64, term: u64) -> Bytes {
    let x = (index ^ term.rotate_left(40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = (x >> 7) % 2000;
    let mut v = Vec::with_capacity(len as usize + 16);
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&term.to_le_bytes());
    crate::common::fill(&mut v, x, len as usize);
    Bytes::from(v)
}

pub fn derived_entries(from: u64, to: u64, term: u64) -> Vec<(LogId, Bytes)> {
    (from..to)
        .map(|i| (LogId::new(term, i), derived(i, term)))
        .collect()
}

/// Spawn this test binary again, running only the (ignored) test `name`, with `envs`.
/// Its stdout and stderr go to `log` so a failing child can be diagnosed.
pub fn spawn_self(name: &str, envs: &[(&str, String)], log: &Path) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::fs::File::create(log).expect("child log");
    let err = out.try_clone().expect("child log");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// Every file of a directory but the lock file (open creates it), by name, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_type().unwrap().is_file() && e.file_name() != chunkwal::inspect::LOCK_FILE
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Copy the regular files of `from` into a fresh temporary directory.
pub fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
        }
    }
    to
}

/// Keep a failing case around for a post-mortem and return its path.
pub fn keep_for_debug(dir: &Path, what: &str) -> PathBuf {
    let keep = std::env::temp_dir().join(format!(
        "chunkwal-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&keep).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
        }
    }
    keep
}

/// True for the only error Strict may give on a crash image: a torn tail it refuses to cut.
pub fn is_torn_tail(e: &Error) -> bool {
    matches!(
        e,
        Error::Corruption {
            reason: CorruptionKind::TornTail,
            ..
        }
    )
}

/// Check a reopened log after a crash: it holds every entry up to `acked` (unless purged),
/// its entries are contiguous and each payload is the one derived from its id, terms never
/// go down, and the purge point never passes `acked`. Returns the number of entries checked.
pub fn verify_log(wal: &Wal, acked: Option<u64>) -> u64 {
    verify_group(wal, GroupId::DEFAULT, acked)
}

/// Payload of entry `(index, term)` of group `g`: [`derived`] for the default group,
/// distinct per group for the others.
pub fn derived_in(g: GroupId, index: u64, term: u64) -> Bytes {
    derived(index ^ g.0.rotate_right(8), term)
}

/// Entries `[from, to)` of group `g` with term `term`, payloads from [`derived_in`].
pub fn derived_entries_in(g: GroupId, from: u64, to: u64, term: u64) -> Vec<(LogId, Bytes)> {
    (from..to)
        .map(|i| (LogId::new(term, i), derived_in(g, i, term)))
        .collect()
}

/// [`verify_log`] for group `g` (payloads from [`derived_in`]).
pub fn verify_group(wal: &Wal, g: GroupId, acked: Option<u64>) -> u64 {
    let h = wal.group(g);
    let s = h.log_state();
    let Some(last) = s.last else {
        assert!(
            acked.is_none(),
            "{g}: log is empty but {acked:?} was acknowledged"
        );
        return 0;
    };
    if let Some(a) = acked {
        assert!(
            last.index >= a,
            "{g}: acknowledged entry {a} lost: log ends at {}",
            last.index
        );
        if let Some(p) = s.purged {
            assert!(p.index < a, "{g}: purge point {p} passes acknowledged {a}");
        }
    }
    // Every log in these tests starts at index 1. (`LogState::first_index` says 0 for a
    // never-purged log, whatever its first index is, so it is not used here.)
    let first = s.purged.map_or(1, |p| p.index + 1);
    if first > last.index {
        return 0;
    }
    let got = h.read(first..=last.index).expect("read whole log");
    assert_eq!(
        got.len() as u64,
        last.index + 1 - first,
        "{g}: gap in the log"
    );
    let mut prev_term = 0;
    for (i, (id, p)) in got.iter().enumerate() {
        assert_eq!(id.index, first + i as u64, "{g}: index out of order");
        assert!(id.term >= prev_term, "{g}: term went down at {}", id.index);
        prev_term = id.term;
        assert_eq!(
            p,
            &derived_in(g, id.index, id.term),
            "{g}: payload of {id} altered"
        );
    }
    assert_eq!(got.last().map(|e| e.0), Some(last), "{g}: last id mismatch");
    got.len() as u64
}

/// Names of the files that differ between two snapshots.
pub fn changed_files(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut names: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    names.sort();
    names.dedup();
    names.retain(|n| a.get(n) != b.get(n));
    names
}
