//! The seal-time footer (format v2): a lazy open replays sealed chunks from their footers
//! and must rebuild exactly what a full open (every record scanned) rebuilds; a damaged,
//! stale or forged footer falls back to a scan or gives a structured error, never wrong
//! data; a v1 log keeps working and its new chunks get footers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chunkwal::format::{
    decode_frame, read_footer, write_frame, ChunkHeader, FooterError, Item, Trailer,
    FLAG_CONTINUES, TRAILER_LEN,
};
use chunkwal::inspect::LOCK_FILE;
use chunkwal::{Config, Error, LogId, LogState, VerifyOnOpen, Wal};

use crate::common::{payload, SMALL_CHUNK};
use crate::crash_util::{copy_dir, Rng};

thread_local! {
    /// Whether this test's logs are written with LZ4 batches and compressible payloads
    /// (each test runs on its own thread).
    static COMPRESSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn cfg(dir: &Path, verify: VerifyOnOpen) -> Config {
    let c = Config::new(dir)
        .chunk_size(SMALL_CHUNK)
        .verify_on_open(verify);
    #[cfg(feature = "compression")]
    if COMPRESSED.get() {
        return c.compression(chunkwal::Compression::lz4(512));
    }
    c
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
        .collect();
    v.sort();
    v
}

/// The entries a log should hold, by index.
type Model = BTreeMap<u64, (LogId, Bytes)>;

fn entry(index: u64, term: u64, rng: &mut Rng) -> (LogId, Bytes) {
    let len = match rng.below(10) {
        0 => 0,
        1 => 3000 + rng.below(6000) as usize,
        _ => rng.below(700) as usize,
    };
    if COMPRESSED.get() {
        let text = format!("{{\"index\":{index},\"term\":{term},\"op\":\"set\",\"value\":\"");
        // Half text, half noise: batches save about half, and the log spans chunks.
        let mut p = text.repeat(1 + len / text.len().max(1)).into_bytes();
        p.truncate(len / 2);
        p.extend_from_slice(&payload(index ^ (term << 40), len - len / 2));
        return (LogId::new(term, index), Bytes::from(p));
    }
    (LogId::new(term, index), payload(index ^ (term << 40), len))
}

/// A random workload over many 64 KiB chunks: appends, truncations (replace_range),
/// purges, votes, commits, user data, and reopens (so that chunks are sealed by a writer
/// that resumed in them). Returns the entries it should hold.
fn workload(dir: &Path, rng: &mut Rng, ops: usize) -> Model {
    let mut model = Model::new();
    let mut wal = Wal::open(cfg(dir, VerifyOnOpen::Lazy)).unwrap();
    let mut term = 1;
    for op in 0..ops {
        let s = wal.log_state();
        let next = s.next_index().unwrap_or(1);
        match rng.below(100) {
            0..=59 => {
                let n = 1 + rng.below(24);
                let batch: Vec<_> = (next..next + n).map(|i| entry(i, term, rng)).collect();
                wal.append(batch.clone()).unwrap();
                model.extend(batch.into_iter().map(|e| (e.0.index, e)));
            }
            60..=69 if !model.is_empty() => {
                let first = *model.keys().next().unwrap();
                let since = first + rng.below(next - first);
                term += 1;
                let batch: Vec<_> = (since..since + 1 + rng.below(6))
                    .map(|i| entry(i, term, rng))
                    .collect();
                wal.replace_range(since, batch.clone()).unwrap();
                model.retain(|&i, _| i < since);
                model.extend(batch.into_iter().map(|e| (e.0.index, e)));
            }
            70..=72 if model.len() > 10 => {
                // Purge at most a third: the log keeps spanning several chunks.
                let keys: Vec<u64> = model.keys().copied().collect();
                let upto = keys[rng.below(keys.len() as u64 / 3) as usize];
                wal.purge(model[&upto].0).unwrap();
                model.retain(|&i, _| i > upto);
            }
            75..=79 => wal
                .save_vote(Bytes::from(format!("vote {op} {}", rng.below(1000))))
                .unwrap(),
            80..=84 => {
                if let Some(l) = s.last {
                    wal.commit(l).unwrap();
                }
            }
            85..=89 => {
                let d = (rng.below(3) != 0).then(|| Bytes::from(format!("ud {op}")));
                wal.save_user_data(d).unwrap();
            }
            90..=93 => wal.flush_blocking().unwrap(),
            94..=95 => {
                wal.close().unwrap();
                wal = Wal::open(cfg(dir, VerifyOnOpen::Lazy)).unwrap();
            }
            _ => {}
        }
    }
    wal.close().unwrap();
    model
}

/// Everything observable about an opened log's contents.
fn observe(wal: &Wal) -> (LogState, usize, Vec<(LogId, Bytes)>) {
    let s = wal.log_state();
    let all = match (wal.first_index(), wal.last_index()) {
        (Some(f), Some(l)) if f <= l && wal.stat().entries > 0 => wal.read(f..=l).unwrap(),
        _ => Vec::new(),
    };
    (s, wal.stat().entries, all)
}

/// Every sealed chunk (all but the newest) of `dir` has a footer that validates, and whose
/// Record items name intact records: a lazy open replays all of them from their footers.
fn assert_sealed_footers(dir: &Path) -> usize {
    let files = chunk_files(dir);
    for f in &files[..files.len().saturating_sub(1)] {
        let b = std::fs::read(f).unwrap();
        let h = ChunkHeader::decode(&b).unwrap();
        assert_eq!(
            h.version,
            chunkwal::format::FORMAT_VERSION,
            "{}",
            f.display()
        );
        let footer = match read_footer(&b, h.chunk_size, h.epoch_tag()) {
            Ok(footer) => footer,
            Err(e) => panic!("{}: footer refused: {e}", f.display()),
        };
        for item in footer.items {
            if let Item::Record { offset } = item {
                decode_frame(&b[offset as usize..], h.epoch_tag()).unwrap();
            }
        }
    }
    println!(
        "{} sealed chunks with footers",
        files.len().saturating_sub(1)
    );
    files.len().saturating_sub(1)
}

/// Open copies of `dir` Full and Lazy: the same state, entries and reads (and the model's
/// entries); then purge both to the same point: the same chunk files go (so the chunks'
/// highest indexes were rebuilt the same).
fn assert_equivalent(dir: &Path, model: &Model) {
    let (full_dir, lazy_dir) = (copy_dir(dir), copy_dir(dir));
    let full = Wal::open(cfg(full_dir.path(), VerifyOnOpen::Full)).unwrap();
    let lazy = Wal::open(cfg(lazy_dir.path(), VerifyOnOpen::Lazy)).unwrap();
    let (a, b) = (observe(&full), observe(&lazy));
    assert_eq!(a.0, b.0, "log state");
    assert_eq!(a.1, b.1, "entry count");
    assert_eq!(a.2, b.2, "entries");
    let want: Vec<_> = model.values().cloned().collect();
    assert_eq!(b.2, want, "entries against the model");
    for i in model.keys() {
        assert_eq!(full.term(*i), lazy.term(*i));
        assert_eq!(full.entry(*i).unwrap(), lazy.entry(*i).unwrap());
    }
    if let Some(&mid) = model.keys().nth(model.len() / 2) {
        let id = model[&mid].0;
        for w in [&full, &lazy] {
            w.purge(id).unwrap();
            w.flush_blocking().unwrap();
            w.wait_worker_idle();
        }
        let names = |d: &Path| -> Vec<_> {
            chunk_files(d)
                .iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(full_dir.path()),
            names(lazy_dir.path()),
            "purged chunks"
        );
    }
}

#[test]
fn lazy_open_rebuilds_what_a_full_open_rebuilds() {
    let seed = crate::crash_util::seed_from_env("footer equivalence");
    for k in 0..3 {
        let mut rng = Rng::new(seed.wrapping_add(k));
        let d = tempfile::tempdir().unwrap();
        let model = workload(d.path(), &mut rng, 1000);
        let sealed = assert_sealed_footers(d.path());
        assert!(
            sealed >= 4,
            "the workload should span many chunks ({sealed})"
        );
        assert_equivalent(d.path(), &model);
    }
}

/// The same with LZ4 batches: a batch's members are one footer run at the batch's offset.
#[cfg(feature = "compression")]
#[test]
fn lazy_open_rebuilds_what_a_full_open_rebuilds_with_compression() {
    COMPRESSED.set(true);
    let seed = crate::crash_util::seed_from_env("footer equivalence, compressed");
    for k in 0..3 {
        let mut rng = Rng::new(seed.wrapping_add(k));
        let d = tempfile::tempdir().unwrap();
        let model = workload(d.path(), &mut rng, 2000);
        let sealed = assert_sealed_footers(d.path());
        assert!(sealed >= 3, "the workload should span chunks ({sealed})");
        let mut batches = 0;
        chunkwal::inspect::inspect_dir(
            d.path(),
            &mut |r| {
                if matches!(r.record, chunkwal::inspect::OwnedRecord::Batch { .. }) {
                    batches += 1;
                }
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(
            batches > 10,
            "the workload should write batches ({batches})"
        );
        assert_equivalent(d.path(), &model);
    }
}

/// A log of a few sealed chunks with entries, votes, commits and user data.
fn small_log() -> (tempfile::TempDir, Model) {
    let d = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(7);
    let model = workload(d.path(), &mut rng, 150);
    assert!(assert_sealed_footers(d.path()) >= 3);
    (d, model)
}

/// Damage `dir`'s chunk file number `k` with `f`, then open it Lazy (and Full): the same
/// state and entries as the undamaged log, or a structured error from both.
fn damaged_opens_right(dir: &Path, model: &Model, k: usize, f: impl FnOnce(&mut Vec<u8>)) {
    let d = copy_dir(dir);
    let path = chunk_files(d.path())[k].clone();
    let mut b = std::fs::read(&path).unwrap();
    f(&mut b);
    std::fs::write(&path, &b).unwrap();
    let full_dir = copy_dir(d.path());
    let lazy = Wal::open(cfg(d.path(), VerifyOnOpen::Lazy));
    let full = Wal::open(cfg(full_dir.path(), VerifyOnOpen::Full));
    match (lazy, full) {
        (Ok(lazy), Ok(full)) => {
            let (a, b) = (observe(&full), observe(&lazy));
            assert_eq!(a, b, "chunk {k}: lazy and full opens differ");
            let want: Vec<_> = model.values().cloned().collect();
            assert_eq!(b.2, want, "chunk {k}: entries");
        }
        (Err(Error::Corruption { .. }), Err(Error::Corruption { .. })) => {}
        (l, f) => panic!("chunk {k}: lazy {:?}, full {:?}", l.err(), f.err()),
    }
}

fn trailer_of(b: &[u8]) -> Trailer {
    Trailer::decode(&b[b.len() - TRAILER_LEN..]).unwrap()
}

fn set_trailer(b: &mut [u8], t: Trailer) {
    let n = b.len();
    b[n - TRAILER_LEN..].copy_from_slice(&t.encode());
}

/// Rewrite the Index record of chunk image `b` with body `body` (and a valid CRC), and the
/// trailer to match.
fn forge_index(b: &mut [u8], body: &[u8]) {
    let t = trailer_of(b);
    let h = ChunkHeader::decode(b).unwrap();
    let at = t.index_off as usize;
    let mut rec = vec![0u8; chunkwal::format::encoded_len(body.len())];
    let kind = chunkwal::format::Record::Index { body: &[] }.kind();
    write_frame(
        &mut rec,
        kind,
        FLAG_CONTINUES,
        h.epoch_tag(),
        0,
        body.len(),
        |d| d.copy_from_slice(body),
    );
    let seal = b[t.seal_off as usize..t.seal_off as usize + 24].to_vec();
    let seal_off = at + rec.len();
    b[at..seal_off].copy_from_slice(&rec);
    b[seal_off..seal_off + 24].copy_from_slice(&seal);
    set_trailer(
        b,
        Trailer {
            seal_off: seal_off as u32,
            ..t
        },
    );
}

fn index_body(b: &[u8]) -> Vec<u8> {
    let t = trailer_of(b);
    let h = ChunkHeader::decode(b).unwrap();
    decode_frame(&b[t.index_off as usize..], h.epoch_tag())
        .unwrap()
        .body
        .to_vec()
}

#[test]
fn damaged_or_stale_footers_fall_back_to_a_scan() {
    let (d, model) = small_log();
    let n = chunk_files(d.path()).len();
    let tail = SMALL_CHUNK as usize - TRAILER_LEN;
    for k in 0..n - 1 {
        // The trailer: zeroed, each byte flipped, a stale tag, offsets that name other
        // records, an entry count off by one.
        damaged_opens_right(d.path(), &model, k, |b| b[tail..].fill(0));
        for i in 0..TRAILER_LEN {
            damaged_opens_right(d.path(), &model, k, |b| b[tail + i] ^= 0x41);
        }
        damaged_opens_right(d.path(), &model, k, |b| {
            let t = trailer_of(b);
            set_trailer(b, Trailer { tag: !t.tag, ..t });
        });
        damaged_opens_right(d.path(), &model, k, |b| {
            let t = trailer_of(b);
            set_trailer(b, Trailer { index_off: 64, ..t });
        });
        damaged_opens_right(d.path(), &model, k, |b| {
            let t = trailer_of(b);
            let n_entries = t.n_entries + 1;
            set_trailer(b, Trailer { n_entries, ..t });
        });
        // The file cut short: no trailer (the records are whole).
        damaged_opens_right(d.path(), &model, k, |b| b.truncate(tail));
        // The Index record: a flipped byte (its CRC fails: a scan names it), and forged
        // bodies with valid CRCs whose counts lie about the bytes.
        damaged_opens_right(d.path(), &model, k, |b| {
            let at = trailer_of(b).index_off as usize + 30;
            b[at] ^= 1;
        });
        damaged_opens_right(d.path(), &model, k, |b| {
            let mut body = index_body(b);
            body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            forge_index(b, &body);
        });
        damaged_opens_right(d.path(), &model, k, |b| {
            let mut body = index_body(b);
            body.truncate(body.len() - 8);
            forge_index(b, &body);
        });
        damaged_opens_right(d.path(), &model, k, |b| {
            let mut body = index_body(b);
            // The first run's count (the first item is the chunk's State image).
            if let Some(at) = (8..body.len()).step_by(8).find(|&i| body[i] == 1) {
                body[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            forge_index(b, &body);
        });
    }
}

/// A footer whose CRCs are valid but whose offsets are wrong (here shifted to other
/// records) cannot make a read return the wrong data: every read checks the record's CRC
/// and identity, so it is a `Corruption` error.
#[test]
fn wrong_footer_offsets_give_corruption_never_wrong_data() {
    let (d, model) = small_log();
    let d = copy_dir(d.path());
    let files = chunk_files(d.path());
    // Two live entries i, i + 1 in one sealed chunk, and where their records are.
    let (i, path, at) = {
        let wal = Wal::open(cfg(d.path(), VerifyOnOpen::Full)).unwrap();
        let sealed = &files[..files.len() - 1];
        let found = model.keys().find_map(|&i| {
            let (p, at, _) = wal.locate(i)?;
            let (q, _, _) = wal.locate(i + 1)?;
            (p == q && sealed.contains(&p)).then_some((i, p, at))
        });
        found.expect("two entries in one sealed chunk")
    };
    let mut b = std::fs::read(&path).unwrap();
    let mut body = index_body(&b);
    // In the last run holding both, point entry i + 1 at entry i's record (entries that
    // share a record is what a Batch record's members look like, so this validates).
    let mut pos = 8;
    let mut slot = None;
    while pos < body.len() {
        if body[pos] == 2 {
            pos += 8;
            continue;
        }
        let count = u32::from_le_bytes(body[pos + 4..pos + 8].try_into().unwrap()) as u64;
        let first = u64::from_le_bytes(body[pos + 8..pos + 16].try_into().unwrap());
        if first <= i && i + 1 < first + count {
            slot = Some(pos + 24 + 4 * (i + 1 - first) as usize);
        }
        pos += (24 + 4 * count as usize).next_multiple_of(8);
    }
    let slot = slot.expect("a run holding both entries");
    body[slot..slot + 4].copy_from_slice(&(at as u32).to_le_bytes());
    forge_index(&mut b, &body);
    std::fs::write(&path, &b).unwrap();
    let h = ChunkHeader::decode(&b).unwrap();
    read_footer(&b, h.chunk_size, h.epoch_tag()).expect("the forged footer validates");
    let lazy = Wal::open(cfg(d.path(), VerifyOnOpen::Lazy)).unwrap();
    lazy.evict_durable_from_cache();
    let mut named = Vec::new();
    for (k, want) in &model {
        match lazy.entry(*k) {
            Ok(Some(got)) => assert_eq!(&got, want, "entry {k}"),
            Err(Error::Corruption { .. }) => named.push(*k),
            other => panic!("entry {k}: {other:?}"),
        }
    }
    assert_eq!(named, [i + 1], "exactly the misplaced entry is refused");
    // Verification compares each footer with what the chunk's records make.
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let chunk: u64 = stem.parse().unwrap();
    match lazy.verify(|_| {}) {
        Err(Error::Corruption {
            chunk: c, offset, ..
        }) => assert_eq!((c, offset), (chunk, u64::from(trailer_of(&b).index_off))),
        other => panic!("verify of a forged footer: {other:?}"),
    }
}

/// Copy the v1 fixture (see `fixtures`) to a scratch directory.
fn v1_copy() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1");
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    d
}

fn version_of(p: &Path) -> u32 {
    ChunkHeader::decode(&std::fs::read(p).unwrap())
        .unwrap()
        .version
}

#[test]
fn a_v1_log_takes_appends_and_its_new_chunks_get_footers() {
    let d = v1_copy();
    let old = chunk_files(d.path()).len();
    assert!(chunk_files(d.path()).iter().all(|p| version_of(p) == 1));
    let mut model = Model::new();
    {
        let wal = Wal::open(cfg(d.path(), VerifyOnOpen::Lazy)).unwrap();
        let s = wal.log_state();
        for i in s.purged.unwrap().index + 1..=s.last.unwrap().index {
            model.insert(i, wal.entry(i).unwrap().unwrap());
        }
        let mut rng = Rng::new(11);
        let next = s.last.unwrap().index + 1;
        for from in (next..next + 400).step_by(20) {
            let batch: Vec<_> = (from..from + 20).map(|i| entry(i, 3, &mut rng)).collect();
            wal.append(batch.clone()).unwrap();
            model.extend(batch.into_iter().map(|e| (e.0.index, e)));
        }
        wal.close().unwrap();
    }
    let files = chunk_files(d.path());
    assert!(files.len() >= old + 3, "appends rotated several times");
    for (k, p) in files.iter().enumerate() {
        let b = std::fs::read(p).unwrap();
        let h = ChunkHeader::decode(&b).unwrap();
        let footer = read_footer(&b, h.chunk_size, h.epoch_tag());
        if k < old {
            // The v1 chunks stay v1; the one that was active was sealed without a footer.
            assert_eq!(h.version, 1);
            assert!(matches!(footer, Err(FooterError::NoMagic)), "{footer:?}");
        } else {
            assert_eq!(h.version, chunkwal::format::FORMAT_VERSION);
            if k + 1 < files.len() {
                footer.expect("a sealed v2 chunk has a footer");
            }
        }
    }
    assert_equivalent(d.path(), &model);
}

/// A recycled chunk holds its earlier life's bytes, the trailer included. If its new life
/// ends sealed but without a trailer of its own (a crash after the Seal's write, before the
/// trailer's reached the disk), the old trailer is there: its tag is the old life's, so it
/// is refused and the chunk is scanned.
#[test]
fn a_recycled_chunks_stale_trailer_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let mut model = Model::new();
    // Trailers of every life of every file, by inode.
    let mut trailers: BTreeMap<u64, Vec<[u8; TRAILER_LEN]>> = BTreeMap::new();
    let mut record = |dir: &Path| {
        for p in chunk_files(dir) {
            let b = std::fs::read(&p).unwrap();
            let t: [u8; TRAILER_LEN] = b[b.len() - TRAILER_LEN..].try_into().unwrap();
            let v = trailers
                .entry(std::fs::metadata(&p).unwrap().ino())
                .or_default();
            if t != [0; TRAILER_LEN] && !v.contains(&t) {
                v.push(t);
            }
        }
    };
    let config = || cfg(d.path(), VerifyOnOpen::Lazy).recycle_chunks(4);
    let mut next = 1;
    for round in 0..4 {
        let wal = Wal::open(config()).unwrap();
        for _ in 0..12 {
            let batch: Vec<_> = (next..next + 20).map(|i| entry(i, 1, &mut rng)).collect();
            next += 20;
            wal.append(batch.clone()).unwrap();
            model.extend(batch.into_iter().map(|e| (e.0.index, e)));
        }
        wal.flush_blocking().unwrap();
        record(d.path());
        if round == 3 {
            // The last round's chunks are recycled ones: keep them.
            wal.close().unwrap();
            break;
        }
        // Purge most of it: the old chunks become spares, reused by the next round.
        let upto = next - 30;
        wal.purge(model[&upto].0).unwrap();
        model.retain(|&i, _| i > upto);
        wal.flush_blocking().unwrap();
        wal.wait_worker_idle();
        wal.close().unwrap();
    }
    // Put the earlier life's trailer back on every sealed chunk that has one.
    let files = chunk_files(d.path());
    let mut stale = 0;
    for p in &files[..files.len() - 1] {
        let ino = std::fs::metadata(p).unwrap().ino();
        let mut b = std::fs::read(p).unwrap();
        let now: [u8; TRAILER_LEN] = b[b.len() - TRAILER_LEN..].try_into().unwrap();
        let Some(old) = trailers
            .get(&ino)
            .and_then(|v| v.iter().find(|t| **t != now))
        else {
            continue;
        };
        let n = b.len();
        b[n - TRAILER_LEN..].copy_from_slice(old);
        let h = ChunkHeader::decode(&b).unwrap();
        assert!(matches!(
            read_footer(&b, h.chunk_size, h.epoch_tag()),
            Err(FooterError::StaleTrailer { .. })
        ));
        std::fs::write(p, &b).unwrap();
        stale += 1;
    }
    assert!(stale > 0, "no sealed chunk was a recycled one");
    let _ = std::fs::remove_file(d.path().join(LOCK_FILE));
    assert_equivalent(d.path(), &model);
}

/// Open time of 1M × 256 B entries in 64 MiB chunks, Full against Lazy (in-process
/// reopens, page cache warm, interleaved rounds). Prints the figures; asserts only that
/// both opens see every entry. `CHUNKWAL_BENCH_DIR` picks the directory (default: a
/// temporary one).
#[test]
#[ignore = "timing figures; run by hand: cargo test --release --test it open_time -- --ignored --nocapture"]
fn open_time_full_vs_lazy() {
    use std::time::{Duration, Instant};
    const N: u64 = 1_000_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir =
        std::env::var_os("CHUNKWAL_BENCH_DIR").map_or(tmp.path().to_path_buf(), PathBuf::from);
    let big = |v| Config::new(&dir).chunk_size(64 << 20).verify_on_open(v);
    {
        let wal = Wal::open(big(VerifyOnOpen::Lazy)).unwrap();
        let p = Bytes::from(vec![0x5a; 256]);
        let t = Instant::now();
        // Per call: its time, and whether it rotated (sealed a chunk).
        let (mut plain, mut sealing) = (Vec::new(), Vec::new());
        for from in (1..=N).step_by(1000) {
            let before = wal.stat().chunks.len();
            let c = Instant::now();
            wal.append((from..from + 1000).map(|i| (LogId::new(1, i), p.clone())))
                .unwrap();
            let e = c.elapsed();
            if wal.stat().chunks.len() > before {
                sealing.push(e);
            } else {
                plain.push(e);
            }
        }
        println!("appended {N} x 256 B in {:?}", t.elapsed());
        plain.sort();
        println!(
            "append calls of 1000: median {:?}; the {} that sealed a chunk: {:?}",
            plain[plain.len() / 2],
            sealing.len(),
            sealing
        );
        wal.close().unwrap();
    }
    println!("{} chunk files", chunk_files(&dir).len());
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for _ in 0..7 {
        for (name, v) in [("full", VerifyOnOpen::Full), ("lazy", VerifyOnOpen::Lazy)] {
            let t = Instant::now();
            let wal = Wal::open(big(v)).unwrap();
            let e = t.elapsed();
            assert_eq!(wal.stat().entries as u64, N);
            times.entry(name).or_default().push(e);
            wal.close().unwrap();
        }
    }
    for (name, mut v) in times {
        v.sort();
        println!("open {name}: min {:?}, median {:?}", v[0], v[v.len() / 2]);
    }
}
