//! Simulated power loss. A process kill keeps the page cache, so these crash images are
//! built from synced bytes only: `Config::sync_recorder` logs every range a successful
//! sync covered; an image keeps chunk headers (fsynced at creation) and those ranges, and
//! zeroes everything else, optionally keeping a torn prefix or random sectors of the
//! unsynced bytes (write-back in any order). No acknowledged entry may be missing or altered.
//!
//! Images per run: `CHUNKWAL_POWER_IMAGES` (default 60). Seed: `CHUNKWAL_SEED`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chunkwal::format::HEADER_LEN;
use chunkwal::{Config, RecoveryMode, Wal};
use parking_lot::Mutex;

use crate::common::SMALL_CHUNK;
use crate::crash_util::*;

pub(crate) type Ranges = Arc<Mutex<HashMap<String, Vec<(u64, u64)>>>>;

/// How the bytes no sync covered end up on the platter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// None of them were written back.
    AllLost,
    /// A random prefix of them was (a torn write).
    TornPrefix,
    /// A random subset of 512-byte sectors was (write-back in any order).
    RandomSectors,
}

pub(crate) struct Image {
    pub dir: tempfile::TempDir,
    /// The synced ranges the image was built from, for a post-mortem.
    pub synced: HashMap<String, Vec<(u64, u64)>>,
    pub acked: Option<u64>,
    pub loss: Loss,
    pub unsynced_bytes: u64,
}

/// Read every file of `dir`; retried if a purge deletes a file in the middle.
fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    'retry: loop {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".chunk") && !name.ends_with(".chunk.tmp") {
                continue;
            }
            match std::fs::read(e.path()) {
                Ok(b) => out.push((name, b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'retry,
                Err(e) => panic!("read {name}: {e}"),
            }
        }
        return out;
    }
}

pub(crate) fn capture(dir: &Path, ranges: &Ranges, acked: &AtomicU64, rng: &mut Rng) -> Image {
    // The writer is idle (it is this thread). Holding the recorder's lock stops the flush
    // worker before its next recording, so the acknowledgments, the ranges and the files
    // (a purge deletes files only after the syncs before it) are one consistent cut.
    let (acked, synced, files) = {
        let guard = ranges.lock();
        let acked = match acked.load(Ordering::SeqCst) {
            0 => None,
            a => Some(a),
        };
        (acked, guard.clone(), read_all(dir))
    };
    let loss = match rng.below(3) {
        0 => Loss::AllLost,
        1 => Loss::TornPrefix,
        _ => Loss::RandomSectors,
    };
    let img = tempfile::tempdir().unwrap();
    let mut unsynced_bytes = 0;
    for (name, data) in files {
        let mut out = vec![0u8; data.len()];
        let h = HEADER_LEN.min(data.len());
        out[..h].copy_from_slice(&data[..h]);
        for &(s, e) in synced.get(&name).map_or(&[][..], |v| v) {
            let (s, e) = (s as usize, (e as usize).min(data.len()));
            out[s..e].copy_from_slice(&data[s..e]);
        }
        unsynced_bytes += data.iter().zip(&out).filter(|(a, b)| a != b).count() as u64;
        match loss {
            Loss::AllLost => {}
            Loss::TornPrefix => {
                if let Some(p) = data.iter().zip(&out).position(|(a, b)| a != b) {
                    let k = rng.below(8192) as usize;
                    let e = (p + k).min(data.len());
                    out[p..e].copy_from_slice(&data[p..e]);
                }
            }
            Loss::RandomSectors => {
                for (o, d) in out.chunks_mut(512).zip(data.chunks(512)) {
                    if o != d && rng.chance(50) {
                        o.copy_from_slice(d);
                    }
                }
            }
        }
        std::fs::write(img.path().join(&name), out).unwrap();
    }
    Image {
        dir: img,
        synced,
        acked,
        loss,
        unsynced_bytes,
    }
}

#[derive(Debug, Default)]
struct Outcome {
    images: u64,
    opened: u64,
    strict_refusals: u64,
    verified: u64,
    with_unsynced_bytes: u64,
}

/// Keep a failing image, with the ranges it was built from, for a post-mortem.
pub(crate) fn keep_image(img: &Image) -> std::path::PathBuf {
    let kept = keep_for_debug(img.dir.path(), "power-loss");
    let mut names: Vec<_> = img.synced.iter().collect();
    names.sort();
    std::fs::write(kept.join("synced-ranges.txt"), format!("{names:#?}")).unwrap();
    kept
}

/// Open a copy of the image under `mode` and check it. Returns entries verified.
fn check_image(img: &Image, mode: RecoveryMode, out: &mut Outcome) {
    let d = copy_dir(img.dir.path());
    let before = snapshot(d.path());
    let cfg = Config::new(d.path())
        .chunk_size(SMALL_CHUNK)
        .recovery_mode(mode);
    let wal = match Wal::open(cfg) {
        Ok(w) => w,
        Err(e) if mode == RecoveryMode::Strict && is_torn_tail(&e) => {
            let after = snapshot(d.path());
            assert!(
                after == before,
                "strict open changed {:?}",
                changed_files(&before, &after)
            );
            out.strict_refusals += 1;
            return;
        }
        Err(e) => {
            let kept = keep_image(img);
            panic!(
                "{mode:?} open of a power-loss image ({:?}, acked {:?}) failed: {e}; image kept in {}",
                img.loss,
                img.acked,
                kept.display()
            );
        }
    };
    out.opened += 1;
    let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_log(&wal, img.acked)));
    match v {
        Ok(n) => out.verified += n,
        Err(p) => {
            let kept = keep_image(img);
            eprintln!(
                "{mode:?}: bad recovery of {:?} image kept in {}",
                img.loss,
                kept.display()
            );
            std::panic::resume_unwind(p);
        }
    }
    let s = wal.log_state();
    let next = s.next_index().unwrap_or(1);
    let term = s.last.map_or(1, |l| l.term);
    wal.append(derived_entries(next, next + 3, term)).unwrap();
    wal.flush_blocking().unwrap();
    wal.close().unwrap();
    let wal = Wal::open(Config::new(d.path()).chunk_size(SMALL_CHUNK)).unwrap();
    verify_log(&wal, Some(next + 2));
}

#[test]
fn power_loss_images_keep_every_acknowledged_entry() {
    let want: u64 = std::env::var("CHUNKWAL_POWER_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng::from_env("power_loss");
    let d = tempfile::tempdir().unwrap();
    let ranges: Ranges = Arc::default();
    let rec = Arc::clone(&ranges);
    let mut cfg = Config::new(d.path()).chunk_size(SMALL_CHUNK);
    cfg.sync_recorder = Some(Arc::new(move |p: &Path, s, e| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        rec.lock().entry(name).or_default().push((s, e));
    }));
    let wal = Wal::open(cfg).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let mut requested = 0;
    let mut next = 1;
    let mut term = 1;
    let mut out = Outcome::default();
    let mut ops = 0u64;
    while out.images < want {
        ops += 1;
        let n = 1 + rng.below(12);
        if rng.chance(5) && next > requested + 1 {
            let since = requested + 1 + rng.below(next - requested - 1);
            term += 1;
            wal.replace_range(since, derived_entries(since, since + n, term))
                .unwrap();
            next = since + n;
        } else {
            wal.append(derived_entries(next, next + n, term)).unwrap();
            next += n;
        }
        if rng.chance(50) {
            let (a, last) = (Arc::clone(&acked), next - 1);
            requested = last;
            wal.flush(move |r| {
                if r.is_ok() {
                    a.fetch_max(last, Ordering::SeqCst);
                }
            })
            .unwrap();
        }
        if rng.chance(3) {
            let a = acked.load(Ordering::SeqCst);
            if a > 200 {
                if let Some((id, _)) = wal.entry(a - 200).unwrap() {
                    wal.purge(id).unwrap();
                }
            }
        }
        if rng.chance(10) {
            let img = capture(d.path(), &ranges, &acked, &mut rng);
            out.images += 1;
            out.with_unsynced_bytes += u64::from(img.unsynced_bytes > 0);
            check_image(&img, RecoveryMode::TolerateTornTail, &mut out);
            check_image(&img, RecoveryMode::Strict, &mut out);
        }
    }
    wal.simulate_crash();
    println!(
        "power_loss: {ops} ops, {out:?}, last acknowledged {}",
        acked.load(Ordering::SeqCst)
    );
    assert!(
        out.with_unsynced_bytes > 0,
        "no image had unsynced bytes to lose"
    );
    assert!(
        out.opened >= out.images,
        "tolerant mode must open every image"
    );
}
