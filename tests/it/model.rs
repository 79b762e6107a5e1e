//! Model-based test: random operations plus reopen, checked against a `BTreeMap` model.

use std::ops::Bound;

use bytes::Bytes;
use chunkwal::{Error, LogId, Wal};
use proptest::prelude::*;

use crate::common::*;
use crate::fuzz_corpus::logic::Model;

#[derive(Debug, Clone)]
enum Op {
    Append {
        n: u8,
        len: u16,
    },
    Truncate {
        back: u8,
    },
    Replace {
        back: u8,
        n: u8,
    },
    Purge {
        ahead: u8,
    },
    Commit,
    Vote(u8),
    UserData(Option<u8>),
    Flush,
    Reopen,
    Crash,
    Read {
        a: u8,
        b: u8,
    },
    /// A range read with any kind of bounds (`kinds`: start kind, end kind).
    Range {
        a: u8,
        b: u8,
        kinds: (u8, u8),
    },
    Bounded {
        a: u8,
        b: u8,
        max: u16,
    },
    Iter {
        a: u8,
        b: u8,
        kinds: (u8, u8),
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..40, 0u16..3000).prop_map(|(n, len)| Op::Append { n, len }),
        2 => (0u8..30).prop_map(|back| Op::Truncate { back }),
        2 => (0u8..30, 1u8..20).prop_map(|(back, n)| Op::Replace { back, n }),
        2 => (0u8..60).prop_map(|ahead| Op::Purge { ahead }),
        1 => Just(Op::Commit),
        1 => any::<u8>().prop_map(Op::Vote),
        1 => proptest::option::of(any::<u8>()).prop_map(Op::UserData),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Read { a, b }),
        3 => (any::<u8>(), any::<u8>(), (0u8..3, 0u8..3))
            .prop_map(|(a, b, kinds)| Op::Range { a, b, kinds }),
        2 => (any::<u8>(), any::<u8>(), 0u16..8000)
            .prop_map(|(a, b, max)| Op::Bounded { a, b, max }),
        2 => (any::<u8>(), any::<u8>(), (0u8..3, 0u8..3))
            .prop_map(|(a, b, kinds)| Op::Iter { a, b, kinds }),
    ]
}

fn run(ops: Vec<Op>) {
    run_with(ops, cfg)
}

/// [`run`] on logs opened with `config` (compressible payloads if it compresses).
fn run_with(ops: Vec<Op>, config: fn(&std::path::Path) -> chunkwal::Config) {
    let d = tempfile::tempdir().unwrap();
    let open = |p: &std::path::Path| Wal::open(config(p)).expect("open");
    let mut wal = Some(open(d.path()));
    let mut m = Model {
        term: 1,
        compressible: config(d.path()).compression != chunkwal::Compression::None,
        ..Model::default()
    };
    for op in ops {
        let w = wal.as_ref().unwrap();
        match op {
            Op::Append { n, len } => {
                let es = m.make(m.next(), u64::from(n), len as usize);
                w.append(es.clone()).unwrap();
                m.put(&es);
            }
            Op::Truncate { back } => {
                let since = m.next().saturating_sub(u64::from(back)).max(m.first());
                w.truncate(since).unwrap();
                if since < m.next() {
                    m.truncate(since);
                }
            }
            Op::Replace { back, n } => {
                m.term += 1;
                let since = m.next().saturating_sub(u64::from(back)).max(m.first());
                let es = m.make(since, u64::from(n), 100);
                w.replace_range(since, es.clone()).unwrap();
                m.truncate(since);
                m.put(&es);
            }
            Op::Purge { ahead } => {
                let upto = m.first() + u64::from(ahead);
                let term = m.entries.get(&upto).map_or(m.term, |e| e.0);
                let id = LogId::new(term, upto);
                w.purge(id).unwrap();
                m.entries = m.entries.split_off(&(upto + 1));
                m.purged = Some(id);
                if m.last.is_none_or(|l| l.index < upto) {
                    m.last = Some(id);
                }
            }
            Op::Commit => {
                if let Some(l) = m.last {
                    w.commit(l).unwrap();
                    m.committed = Some(l);
                }
            }
            Op::Vote(v) => {
                let b = Bytes::from(vec![v; usize::from(v % 7)]);
                w.save_vote(b.clone()).unwrap();
                m.vote = Some(b);
            }
            Op::UserData(u) => {
                let b = u.map(|u| Bytes::from(vec![u; 3]));
                w.save_user_data(b.clone()).unwrap();
                m.user_data = b;
            }
            Op::Flush => {
                w.flush_blocking().unwrap();
                assert_eq!(w.durable_index(), m.last.map(|l| l.index));
            }
            Op::Reopen => {
                drop(wal.take());
                wal = Some(open(d.path()));
            }
            Op::Crash => {
                wal.take().unwrap().simulate_crash();
                wal = Some(open(d.path()));
            }
            Op::Read { a, b } => {
                let (f, t) = (m.first(), m.next());
                let from = f + u64::from(a) % (t - f + 1);
                let to = (from + u64::from(b) % 50).min(t);
                let got = w.read(from..to).unwrap();
                assert_eq!(got.len() as u64, to - from);
                for (id, p) in got {
                    assert_eq!(m.entries[&id.index], (id.term, p));
                }
            }
            Op::Range { a, b, kinds } => {
                let r = bounds(&m, a, b, kinds);
                assert_eq!(ok_or_span(w.read(r)), model_read(&m, r), "read({r:?})");
            }
            Op::Bounded { a, b, max } => {
                let r = (
                    Bound::Included(m.first() + u64::from(a) % 40),
                    span_end(&m, b),
                );
                let want = model_read(&m, r).map(|v| bounded_prefix(v, u64::from(max)));
                let got = ok_or_span(w.read_bounded(r, u64::from(max)));
                assert_eq!(got, want, "read_bounded({r:?}, {max})");
            }
            Op::Iter { a, b, kinds } => {
                let r = bounds(&m, a, b, kinds);
                let got = w.iter(r).and_then(|it| it.collect::<Result<Vec<_>, _>>());
                assert_eq!(ok_or_span(got), model_read(&m, r), "iter({r:?})");
            }
        }
        m.check(wal.as_ref().unwrap());
        check_reads(&m, wal.as_ref().unwrap());
    }
    drop(wal.take());
    let wal = open(d.path());
    m.check(&wal);
    check_reads(&m, &wal);
}

type Range = (Bound<u64>, Bound<u64>);

/// Bounds around the model's entries (a few indexes either side), of the given kinds
/// (0 included, 1 excluded, 2 unbounded).
fn bounds(m: &Model, a: u8, b: u8, (ks, ke): (u8, u8)) -> Range {
    let lo = m.first().saturating_sub(3);
    let width = m.next() + 3 - lo;
    let pick = |x: u8, k: u8| {
        let v = lo + u64::from(x) % width;
        match k {
            0 => Bound::Included(v),
            1 => Bound::Excluded(v),
            _ => Bound::Unbounded,
        }
    };
    (pick(a, ks), pick(b, ke))
}

/// An end bound within a few entries past the model's end.
fn span_end(m: &Model, b: u8) -> Bound<u64> {
    Bound::Included(m.first() + u64::from(b) % (m.next() - m.first() + 3))
}

/// The documented rules, stated against the model: unbounded sides are the model's ends; an
/// empty span reads nothing; otherwise every index must be held, or the read fails with the
/// span asked for (`Err((from, through))`).
fn model_read(m: &Model, (s, e): Range) -> Result<Vec<(LogId, Bytes)>, (u64, u64)> {
    let held = m.entries.keys().next().zip(m.entries.keys().next_back());
    let from = match s {
        Bound::Included(v) => Some(v),
        Bound::Excluded(v) => v.checked_add(1),
        Bound::Unbounded => held.map(|h| *h.0),
    };
    let through = match e {
        Bound::Included(v) => Some(v),
        Bound::Excluded(v) => v.checked_sub(1),
        Bound::Unbounded => held.map(|h| *h.1),
    };
    let (Some(from), Some(through)) = (from, through) else {
        return Ok(Vec::new());
    };
    if from > through {
        return Ok(Vec::new());
    }
    if !(from..=through).all(|i| m.entries.contains_key(&i)) {
        return Err((from, through));
    }
    Ok(m.entries
        .range(from..=through)
        .map(|(i, (t, p))| (LogId::new(*t, *i), p.clone()))
        .collect())
}

/// The longest prefix within `max` payload bytes, but at least one entry (if any).
fn bounded_prefix(v: Vec<(LogId, Bytes)>, max: u64) -> Vec<(LogId, Bytes)> {
    let mut total = 0u64;
    let n = v
        .iter()
        .take_while(|(_, p)| {
            total += p.len() as u64;
            total <= max
        })
        .count();
    v.into_iter().take(n.max(1)).collect()
}

/// A read result with an `OutOfRange` reduced to its requested span (checking the held
/// bounds it reports against the log itself).
fn ok_or_span(r: chunkwal::Result<Vec<(LogId, Bytes)>>) -> Result<Vec<(LogId, Bytes)>, (u64, u64)> {
    match r {
        Ok(v) => Ok(v),
        Err(Error::OutOfRange {
            from,
            through,
            first,
            last,
        }) => Err((from, through)).inspect_err(|_| {
            assert!(first <= last, "held bounds {first:?}..={last:?}");
        }),
        Err(e) => panic!("read failed: {e}"),
    }
}

/// The new reads against the model: `term` of every index (and either side), the whole log
/// through `read(..)`, `iter(..)` and a bounded read.
fn check_reads(m: &Model, w: &Wal) {
    for i in m.first().saturating_sub(2)..m.next() + 2 {
        assert_eq!(w.term(i), m.entries.get(&i).map(|e| e.0), "term({i})");
    }
    let whole: Vec<_> = m
        .entries
        .iter()
        .map(|(i, (t, p))| (LogId::new(*t, *i), p.clone()))
        .collect();
    assert_eq!(w.read(..).unwrap(), whole, "read(..)");
    let it: Vec<_> = w.iter(..).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(it, whole, "iter(..)");
    let bounded = w.read_bounded(.., 4000).unwrap();
    assert_eq!(
        bounded,
        bounded_prefix(whole, 4000),
        "read_bounded(.., 4000)"
    );
    assert_eq!(
        w.first_index(),
        m.entries.keys().next().copied(),
        "first_index"
    );
    assert_eq!(
        w.last_index(),
        m.entries.keys().next_back().copied(),
        "last_index"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn wal_matches_btreemap_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

/// The same model with LZ4 batch compression on and compressible payloads (a low threshold,
/// so most appends write Batch records, and small chunks, so batches meet rotation).
#[cfg(feature = "compression")]
fn lz4_cfg(dir: &std::path::Path) -> chunkwal::Config {
    cfg(dir).compression(chunkwal::Compression::lz4(64))
}

#[cfg(feature = "compression")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn wal_matches_btreemap_model_compressed(ops in proptest::collection::vec(op(), 1..60)) {
        run_with(ops, lz4_cfg);
    }
}
