//! The fuzz seed corpus: how each seed is built (real logs, hand-built chunks and records,
//! op scripts for single and many groups), and `write_seeds`, which regenerates the files:
//! `CHUNKWAL_WRITE_SEEDS=1 cargo test --test it fuzz_seeds::write_seeds -- --ignored`.

use std::path::Path;

use bytes::Bytes;
use chunkwal::format::{encoded_len, write_frame, Record, StateImage, HEADER_LEN, TRAILER_LEN};
use chunkwal::inspect::chunk_file_name;
use chunkwal::{Config, LogId, Wal};

use crate::crash_util::Rng;
use crate::fuzz_corpus::{corpus_dir, logic};

fn trimmed(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    &b[..end.max(HEADER_LEN.min(b.len()))]
}

/// A small real log: `entries` single-entry groups, optionally other records, flushed.
fn real_log(entries: u64, extras: bool, crash: bool) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let wal = Wal::open(Config::new(d.path()).chunk_size(logic::CHUNK)).unwrap();
    for i in 1..=entries {
        let p = Bytes::from(vec![i as u8; (i % 7 * 5) as usize]);
        wal.append([(LogId::new(1 + i / 10, i), p)]).unwrap();
    }
    if extras {
        wal.save_vote(Bytes::from_static(b"vote:2")).unwrap();
        wal.commit(LogId::new(1, entries / 2)).unwrap();
        wal.truncate(entries - 1).unwrap();
        wal.purge(LogId::new(1, 2)).unwrap();
        wal.save_user_data(Some(Bytes::from_static(b"ud"))).unwrap();
    }
    wal.flush_blocking().unwrap();
    if crash {
        wal.simulate_crash();
    } else {
        wal.close().unwrap();
    }
    d
}

fn chunk_bytes(d: &Path, seq: u64) -> Vec<u8> {
    std::fs::read(d.join(chunk_file_name(seq))).unwrap()
}

fn epoch_tag(chunk: &[u8]) -> [u8; 4] {
    chunk[24..28].try_into().unwrap()
}

fn frame(rec: &Record<'_>, flags: u8, hint: u32) -> Vec<u8> {
    let mut b = vec![0u8; encoded_len(rec.body_len())];
    write_frame(
        &mut b,
        rec.kind(),
        flags,
        logic::FIXED_EPOCH as u32,
        hint,
        rec.body_len(),
        |x| rec.write_body(x),
    );
    b
}

/// One file in the open_recovery layout.
fn file(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(body.len() as u16).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A built-records file: (kind, flags, hint, body) tuples.
fn built(recs: &[(u8, u8, u16, Vec<u8>)], pad: bool) -> Vec<u8> {
    let mut v = vec![4 | if pad { 2 } else { 0 }, recs.len() as u8];
    for (k, f, h, body) in recs {
        v.extend_from_slice(&[*k, *f]);
        v.extend_from_slice(&h.to_le_bytes());
        v.push(body.len() as u8);
        v.extend_from_slice(body);
    }
    v
}

fn entry_body(term: u64, index: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&term.to_le_bytes());
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn state_body(last: Option<LogId>, purged: Option<LogId>) -> Vec<u8> {
    let img = StateImage {
        last,
        purged,
        ..StateImage::default()
    };
    let r = Record::State(img);
    let mut b = vec![0u8; r.body_len()];
    r.write_body(&mut b);
    b
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut put = |t: &'static str, name: &str, b: Vec<u8>| out.push((t, name.to_string(), b));

    // Real logs: clean, with every record kind, crashed, and a multi-chunk one.
    let clean = real_log(20, false, false);
    let mixed = real_log(30, true, false);
    let crashed = real_log(12, false, true);
    let big = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(Config::new(big.path()).chunk_size(logic::CHUNK)).unwrap();
        for i in 1..=40u64 {
            wal.append([(LogId::new(1, i), Bytes::from(vec![7u8; 3000]))])
                .unwrap();
        }
        wal.flush_blocking().unwrap();
        wal.simulate_crash();
    }
    let c_clean = chunk_bytes(clean.path(), 0);
    let c_mixed = chunk_bytes(mixed.path(), 0);
    let c_crash = chunk_bytes(crashed.path(), 0);
    let c_big0 = chunk_bytes(big.path(), 0);
    let c_big1 = chunk_bytes(big.path(), 1);

    for (name, c, last) in [
        ("clean", &c_clean, 1u8),
        ("mixed", &c_mixed, 1),
        ("crashed", &c_crash, 1),
        ("sealed", &c_big0, 0),
        ("tail", &c_big1, 1),
    ] {
        let t = trimmed(c);
        let mut rp = epoch_tag(c).to_vec();
        rp.push(last);
        rp.extend_from_slice(&t[..t.len().min(12_000)]);
        put("record_parser", &format!("seed-chunk-{name}"), rp);
    }
    // A whole sealed v2 chunk, footer and trailer included, scanned as v2 (ctl bit 1).
    let mut rp = epoch_tag(&c_big0).to_vec();
    rp.push(2);
    rp.extend_from_slice(&c_big0);
    put("record_parser", "seed-chunk-footer", rp);
    // Lone frames under the fixed tag.
    let tag = (logic::FIXED_EPOCH as u32).to_le_bytes();
    let lone: Vec<(&str, Vec<u8>)> = vec![
        (
            "entry",
            frame(
                &Record::Entry {
                    id: LogId::new(3, 9),
                    payload: b"abc",
                },
                0,
                0,
            ),
        ),
        (
            "truncate",
            frame(
                &Record::Truncate {
                    since: 5,
                    last: Some(LogId::new(1, 4)),
                },
                1,
                64,
            ),
        ),
        (
            "purge",
            frame(
                &Record::Purge {
                    upto: LogId::new(2, 7),
                },
                0,
                0,
            ),
        ),
        ("vote", frame(&Record::Vote { vote: b"v" }, 0, 0)),
        ("userdata", frame(&Record::UserData { data: None }, 0, 0)),
        ("seal", frame(&Record::Seal, 0, 0)),
    ];
    for (name, f) in lone {
        let mut v = tag.to_vec();
        v.push(1);
        v.extend_from_slice(&f);
        put("record_parser", &format!("seed-frame-{name}"), v);
    }
    let mut hdr = tag.to_vec();
    hdr.push(0);
    hdr.extend_from_slice(&c_clean[..HEADER_LEN]);
    put("record_parser", "seed-header", hdr);

    // open_recovery: raw real chunks (ctl: bit1-2 = files-1), padded to the chunk size.
    for (name, files) in [
        ("clean", vec![&c_clean]),
        ("mixed", vec![&c_mixed]),
        ("crashed", vec![&c_crash]),
        ("two-chunks", vec![&c_big0, &c_big1]),
    ] {
        for write_after in [0u8, 0x10] {
            let mut v = vec![(((files.len() - 1) as u8) << 1) | write_after];
            for c in &files {
                // Without a sealed chunk's trailer (at the very end, past a u16 length).
                let n = c.len().min(logic::CHUNK as usize - TRAILER_LEN);
                v.extend(file(2, trimmed(&c[..n])));
            }
            put(
                "open_recovery",
                &format!("seed-real-{name}-{write_after}"),
                v,
            );
        }
    }
    // A sealed v2 chunk with its footer (the Index record among its bytes, the trailer after
    // them), then the tail: a lazy open replays the first chunk from its footer.
    let body = trimmed(&c_big0[..c_big0.len() - TRAILER_LEN]);
    for write_after in [0u8, 0x10] {
        let mut v = vec![(1 << 1) | write_after];
        v.extend(file(2 | 8, body));
        v.extend_from_slice(&c_big0[c_big0.len() - TRAILER_LEN..]);
        v.extend(file(2, trimmed(&c_big1)));
        put(
            "open_recovery",
            &format!("seed-real-footer-{write_after}"),
            v,
        );
    }
    // Crash inputs: the crashed chunk cut inside its last record, and with garbage after it.
    let t = trimmed(&c_crash);
    put(
        "open_recovery",
        "seed-torn-cut",
        [vec![0x10], file(2, &t[..t.len() - 9])].concat(),
    );
    let mut garbage = t.to_vec();
    garbage.extend_from_slice(&[0xAB; 40]);
    put(
        "open_recovery",
        "seed-torn-garbage",
        [vec![0x10], file(2, &garbage)].concat(),
    );
    // Strict: a record cut after its epoch tag is a torn tail, refused. (Untagged bytes
    // after the end, like the garbage above, can never decode and are not damage: a
    // recycled chunk holds its earlier lives' records there.)
    put(
        "open_recovery",
        "seed-torn-strict",
        [vec![0x11], file(2, &t[..t.len() - 9])].concat(),
    );
    put("open_recovery", "seed-blank", vec![0x00, 0x00, 0, 0]);
    put(
        "open_recovery",
        "seed-header-only",
        vec![0x12, 0x01, 0, 0, 0x03, 0, 0],
    );
    // Built records (valid header, fixed epoch, correct CRCs).
    let st = state_body(None, None);
    let recs = vec![
        (7u8, 0u8, 0u16, st.clone()),
        (1, 0, 0, entry_body(1, 1, b"one")),
        (1, 1, 0, entry_body(1, 2, b"two")),
        (1, 0, 0, entry_body(1, 3, b"three")),
        (2, 0, 0, {
            let mut b = 3u64.to_le_bytes().to_vec();
            b.push(1);
            b.extend(entry_body(1, 2, b""));
            b.truncate(9 + 16);
            b
        }),
        (4, 0, 0, entry_body(1, 1, b"")),
    ];
    put(
        "open_recovery",
        "seed-built",
        [vec![0x10], built(&recs, true)].concat(),
    );
    let mut sealed = recs.clone();
    sealed.push((8, 0, 0, Vec::new()));
    put(
        "open_recovery",
        "seed-built-two",
        [
            vec![0x12],
            built(&sealed, true),
            built(&[(7, 0, 0, state_body(Some(LogId::new(1, 2)), None))], true),
        ]
        .concat(),
    );
    put(
        "open_recovery",
        "seed-built-purged-past-end",
        [
            vec![0x10],
            built(
                &[(
                    7,
                    0,
                    0,
                    state_body(Some(LogId::new(4, 90)), Some(LogId::new(4, 90))),
                )],
                true,
            ),
        ]
        .concat(),
    );
    put(
        "open_recovery",
        "seed-built-unterminated",
        [
            vec![0x10],
            built(
                &[
                    (7, 0, 0, st.clone()),
                    (1, 1, 0, entry_body(1, 1, b"x")),
                    (1, 1, 0, entry_body(1, 2, b"y")),
                ],
                true,
            ),
        ]
        .concat(),
    );

    // ops_model: hand-written op sequences and seeded random ones.
    // op byte % 14: 0-2 append, 3 truncate, 4 replace, 5 purge, 6 commit, 7 vote,
    // 8 user data, 9 flush, 10 reopen, 11 crash, 12 read, 13 reset.
    let scripted: Vec<(&str, Vec<u8>)> = vec![
        ("append-crash", vec![0, 0, 5, 9, 0, 0, 20, 40, 11, 0, 0]),
        (
            "truncate-replace-reopen",
            vec![0, 0, 20, 10, 3, 5, 0, 4, 3, 7, 10, 0, 0, 12, 0, 30],
        ),
        (
            "purge-flush-crash",
            vec![2, 0, 23, 200, 9, 0, 0, 5, 10, 0, 11, 0, 0, 0, 3, 9],
        ),
        (
            "meta",
            vec![
                0, 7, 1, 3, 8, 3, 9, 0, 0, 4, 6, 0, 0, 11, 0, 0, 8, 0, 0, 10, 0, 0,
            ],
        ),
        (
            "reset",
            vec![
                0, 0, 10, 30, 5, 3, 0, 13, 0, 0, 0, 0, 2, 2, 11, 0, 0, 12, 0, 9,
            ],
        ),
        (
            "rotate-crash",
            [
                vec![3],
                [0u8, 23, 255].repeat(12),
                vec![11, 0, 0, 5, 100, 0, 9, 0, 0],
            ]
            .concat(),
        ),
        (
            "below-purge",
            vec![0, 0, 20, 10, 5, 3, 0, 3, 0x81, 0, 11, 0, 0],
        ),
    ];
    put(
        "open_recovery",
        "regress-purged-past-last",
        [
            vec![0x10],
            built(
                &[(
                    7,
                    0,
                    0,
                    state_body(Some(LogId::new(1, 5)), Some(LogId::new(1, 100))),
                )],
                true,
            ),
        ]
        .concat(),
    );
    let trunc = |since: u64, last: LogId| {
        let mut b = since.to_le_bytes().to_vec();
        b.push(1);
        b.extend(entry_body(last.term, last.index, b""));
        b
    };
    put(
        "open_recovery",
        "regress-truncate-since-past-entries",
        [
            vec![0x10],
            built(
                &[
                    (7, 0, 0, st.clone()),
                    (1, 0, 0, entry_body(1, 1, b"a")),
                    (1, 0, 0, entry_body(1, 2, b"b")),
                    (1, 0, 0, entry_body(1, 3, b"c")),
                    (2, 0, 0, trunc(100, LogId::new(1, 2))),
                ],
                true,
            ),
        ]
        .concat(),
    );
    put(
        "open_recovery",
        "regress-truncate-last-term",
        [
            vec![0x10],
            built(
                &[
                    (7, 0, 0, st.clone()),
                    (1, 0, 0, entry_body(1, 1, b"a")),
                    (1, 0, 0, entry_body(7, 2, b"b")),
                    (2, 0, 0, trunc(3, LogId::new(1, 2))),
                ],
                true,
            ),
        ]
        .concat(),
    );
    put(
        "ops_model",
        "regress-reset-near-chunk-end",
        vec![0, 0, 23, 0, 0, 23, 0, 0, 22, 209, 13, 0, 0],
    );
    for (name, b) in scripted {
        put("ops_model", &format!("seed-{name}"), b);
    }
    let mut rng = Rng::new(42);
    for i in 0..6 {
        let n = 30 + rng.below(150) as usize;
        let b: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        put("ops_model", &format!("seed-random-{i}"), b);
    }
    for (name, b) in group_scripts() {
        put("ops_model", &format!("seed-groups-{name}"), b);
    }
    for i in 0..4 {
        // Control byte: many groups (bit 3), sometimes strict or a tiny cache.
        let ctl = 8 | (rng.below(4) as u8);
        let n = 40 + rng.below(200) as usize;
        let b: Vec<u8> = std::iter::once(ctl)
            .chain((0..n).map(|_| rng.next_u64() as u8))
            .collect();
        put("ops_model", &format!("seed-groups-random-{i}"), b);
    }
    out
}

/// ops_model scripts in the many-groups layout (control bit 3; ops of four bytes: group,
/// op, a, b). Op codes % 16 as in the single-group layout, plus 13 on a non-default group:
/// remove it, 14: a batch over the groups of mask `a`, 15: a read through a `GroupReader`.
pub(crate) fn group_scripts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "batch-crash",
            [
                vec![8],
                vec![0, 14, 0x1f, 10, 0, 14, 0x7f, 20, 1, 0, 5, 100, 2, 4, 3, 50],
                vec![0, 9, 0, 0, 3, 7, 4, 9, 4, 8, 3, 2, 0, 11, 0, 0, 1, 15, 0, 0],
                vec![0, 14, 0x93, 7, 2, 10, 0, 0, 4, 12, 0, 30, 2, 15, 3, 0],
            ]
            .concat(),
        ),
        (
            "remove",
            vec![
                8, 1, 0, 10, 40, 2, 0, 10, 40, 1, 6, 0, 0, 1, 13, 0, 0, 0, 11, 0, 0, 1, 0, 3, 9, 2,
                5, 4, 0, 2, 13, 0, 0, 0, 10, 0, 0, 1, 15, 0, 0, 0, 14, 0x06, 5,
            ],
        ),
        (
            "lagging-rotate",
            [
                vec![8, 4, 0, 5, 10],
                [0u8, 14, 0x2f, 255].repeat(40),
                vec![
                    0, 9, 0, 0, 0, 10, 0, 0, 4, 15, 0, 0, 0, 11, 0, 0, 4, 5, 2, 0, 0, 10, 0, 0,
                ],
            ]
            .concat(),
        ),
        (
            "reset-default",
            vec![
                8, 0, 0, 23, 200, 3, 0, 20, 100, 0, 13, 0, 0, 3, 15, 0, 0, 0, 11, 0, 0, 0, 0, 1, 1,
                3, 3, 0, 0,
            ],
        ),
    ]
}

#[test]
#[ignore = "writes the seed corpus; run with CHUNKWAL_WRITE_SEEDS=1"]
fn write_seeds() {
    if std::env::var_os("CHUNKWAL_WRITE_SEEDS").is_none() {
        return;
    }
    for (target, name, bytes) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
