//! Simulated power loss over many groups (images built as in `power_loss.rs`: synced bytes
//! only, plus a torn prefix or random sectors of the rest). The workload writes batches
//! mixing four groups and a scratch group that it removes and recreates, with purges and
//! flushes. Every image must open (tolerant mode) with each group's acknowledged entries,
//! no acknowledged removal undone, and the groups' ends at one batch boundary: a batch is
//! one atomic group, so a power loss keeps all of it or none of it.
//!
//! Images per run: `CHUNKWAL_POWER_IMAGES` (default 60, shared with `power_loss.rs`).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use chunkwal::{Config, GroupId, RecoveryMode, Wal, WriteBatch};
use parking_lot::Mutex;

use crate::common::SMALL_CHUNK;
use crate::crash_util::*;
use crate::power_loss::{capture, keep_image, Image, Ranges};

const GROUPS: [GroupId; 4] = [GroupId(0), GroupId(1), GroupId(2), GroupId(3)];
/// Removed and recreated now and then; its entries carry its incarnation as their term.
const SCRATCH: GroupId = GroupId(9);
/// Two entries written first and never purged: a small lagging group that rewrite-forward
/// moves to the head again and again.
const LAGGING: GroupId = GroupId(5);

/// The ends of the groups (`GROUPS`, then `SCRATCH`; 0: no entry) after a batch.
type Ends = [u64; 5];

/// What flushes acknowledged: per group the last index, and the last scratch incarnation
/// whose removal was made durable.
#[derive(Debug, Clone, Copy, Default)]
struct Acked {
    lasts: [u64; 4],
    removed: u64,
}

fn ends(wal: &Wal) -> Ends {
    let mut e = [0; 5];
    for (x, g) in e.iter_mut().zip(GROUPS.iter().chain([&SCRATCH])) {
        *x = wal.group(*g).log_state().last.map_or(0, |l| l.index);
    }
    e
}

/// Small chunks, and rewrite-forward past two of them.
fn config(dir: &Path) -> Config {
    Config::new(dir)
        .chunk_size(SMALL_CHUNK)
        .rewrite_threshold(Some(2 * SMALL_CHUNK))
}

/// Open a copy of `img` under `mode` and check it. Returns entries verified, `None` for a
/// strict refusal of a torn tail.
fn check_image(img: &Image, acked: Acked, history: &[Ends], mode: RecoveryMode) -> Option<u64> {
    let d = copy_dir(img.dir.path());
    let wal = match Wal::open(config(d.path()).recovery_mode(mode)) {
        Ok(w) => w,
        Err(e) if mode == RecoveryMode::Strict && is_torn_tail(&e) => return None,
        Err(e) => {
            let kept = keep_image(img);
            panic!(
                "{mode:?} open of a {:?} image failed: {e}; kept in {}",
                img.loss,
                kept.display()
            );
        }
    };
    let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut n = 0;
        for (g, a) in GROUPS.iter().zip(acked.lasts) {
            n += verify_group(&wal, *g, (a > 0).then_some(a));
        }
        n += verify_group(&wal, SCRATCH, None);
        n += verify_group(&wal, LAGGING, Some(2));
        assert_eq!(wal.group(LAGGING).first_index(), Some(1), "lagging group");
        for (id, _) in wal.group(SCRATCH).read(..).unwrap() {
            assert!(
                id.term > acked.removed,
                "scratch {id} outlived its acknowledged removal"
            );
        }
        let e = ends(&wal);
        assert!(
            history.contains(&e),
            "group ends {e:?} are not a batch boundary"
        );
        n
    }));
    let n = match v {
        Ok(n) => n,
        Err(p) => {
            let kept = keep_image(img);
            eprintln!(
                "{mode:?}: bad recovery of a {:?} image kept in {}",
                img.loss,
                kept.display()
            );
            std::panic::resume_unwind(p);
        }
    };
    // The recovered log takes a batch over every group, durably.
    let mut b = WriteBatch::new();
    let mut want = [0; 4];
    for (k, g) in GROUPS.iter().enumerate() {
        let s = wal.group(*g).log_state();
        let next = s.next_index().unwrap_or(1);
        b.append(
            *g,
            derived_entries_in(*g, next, next + 2, s.last.map_or(1, |l| l.term)),
        );
        want[k] = next + 1;
    }
    wal.write(&b).unwrap();
    wal.flush_blocking().unwrap();
    wal.close().unwrap();
    let wal = Wal::open(config(d.path())).unwrap();
    for (g, a) in GROUPS.iter().zip(want) {
        verify_group(&wal, *g, Some(a));
    }
    Some(n)
}

#[test]
fn power_loss_images_keep_every_groups_acknowledged_entries() {
    let want: u64 = std::env::var("CHUNKWAL_POWER_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng::from_env("power_loss_groups");
    let d = tempfile::tempdir().unwrap();
    let ranges: Ranges = Arc::default();
    let rec = Arc::clone(&ranges);
    let mut cfg = config(d.path());
    cfg.sync_recorder = Some(Arc::new(move |p: &Path, s, e| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        rec.lock().entry(name).or_default().push((s, e));
    }));
    let wal = Wal::open(cfg).unwrap();
    wal.group(LAGGING)
        .append(derived_entries_in(LAGGING, 1, 3, 1))
        .unwrap();
    wal.flush_blocking().unwrap();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut next = [1u64; 4];
    let (mut scratch_term, mut scratch_next, mut removed) = (1u64, 1u64, 0u64);
    let mut history: Vec<Ends> = vec![[0; 5]];
    let (mut images, mut verified, mut refusals, mut unsynced) = (0u64, 0, 0, 0);
    while images < want {
        let mut b = WriteBatch::new();
        for (k, g) in GROUPS.iter().enumerate() {
            if rng.chance(70) {
                let n = 1 + rng.below(4);
                b.append(*g, derived_entries_in(*g, next[k], next[k] + n, 1));
                next[k] += n;
            }
        }
        if rng.chance(4) {
            b.remove_group(SCRATCH);
            removed = scratch_term;
            scratch_term += 1;
            scratch_next = 1;
        }
        if rng.chance(40) {
            let n = 1 + rng.below(3);
            let es = derived_entries_in(SCRATCH, scratch_next, scratch_next + n, scratch_term);
            b.append(SCRATCH, es);
            scratch_next += n;
        }
        wal.write(&b).unwrap();
        history.push(ends(&wal));
        if rng.chance(50) {
            let (a, lasts) = (Arc::clone(&acked), next.map(|n| n - 1));
            wal.flush(move |r| {
                if r.is_ok() {
                    let mut a = a.lock();
                    for (x, l) in a.lasts.iter_mut().zip(lasts) {
                        *x = (*x).max(l);
                    }
                    a.removed = a.removed.max(removed);
                }
            })
            .unwrap();
        }
        if rng.chance(4) {
            let a = *acked.lock();
            let mut b = WriteBatch::new();
            for (g, l) in GROUPS.iter().zip(a.lasts) {
                if l > 150 {
                    if let Some((id, _)) = wal.group(*g).entry(l - 150).unwrap() {
                        b.purge(*g, id);
                    }
                }
            }
            wal.write(&b).unwrap();
        }
        if rng.chance(8) {
            // Acknowledgments first, then the synced ranges and files: what was
            // acknowledged before the capture is in what it reads.
            let a = *acked.lock();
            let img = capture(d.path(), &ranges, &AtomicU64::new(0), &mut rng);
            images += 1;
            unsynced += u64::from(img.unsynced_bytes > 0);
            let tolerant = check_image(&img, a, &history, RecoveryMode::TolerateTornTail);
            verified += tolerant.expect("tolerant mode opens every image");
            match check_image(&img, a, &history, RecoveryMode::Strict) {
                Some(n) => verified += n,
                None => refusals += 1,
            }
        }
    }
    // The lagging group was rewritten forward: its entries left chunk 0.
    let pins = wal.pinning_groups(100);
    let lag = pins.iter().find(|p| p.group == LAGGING);
    assert!(wal.stat().chunks[0].seq > 0, "chunk 0 never retired");
    assert!(lag.is_none_or(|p| p.oldest_chunk > 0), "{pins:?}");
    wal.simulate_crash();
    println!(
        "power_loss_groups: {images} images ({unsynced} with unsynced bytes), {verified} \
         entries verified, {refusals} strict refusals, acked {:?}",
        *acked.lock()
    );
    assert!(unsynced > 0, "no image had unsynced bytes to lose");
    assert!(
        acked.lock().lasts.iter().all(|&l| l > 0),
        "some group never acknowledged"
    );
    assert!(acked.lock().removed > 0, "no removal was acknowledged");
}
