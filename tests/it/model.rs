//! Model-based test: random operations plus reopen, checked against a `BTreeMap` model.

use bytes::Bytes;
use chunkwal::LogId;
use proptest::prelude::*;

use crate::common::*;
use crate::fuzz_corpus::logic::Model;

#[derive(Debug, Clone)]
enum Op {
    Append { n: u8, len: u16 },
    Truncate { back: u8 },
    Replace { back: u8, n: u8 },
    Purge { ahead: u8 },
    Commit,
    Vote(u8),
    UserData(Option<u8>),
    Flush,
    Reopen,
    Crash,
    Read { a: u8, b: u8 },
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
    ]
}

fn run(ops: Vec<Op>) {
    let d = tempfile::tempdir().unwrap();
    let mut wal = Some(open(d.path()));
    let mut m = Model {
        term: 1,
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
                let got = w.read(from, to).unwrap();
                assert_eq!(got.len() as u64, to - from);
                for (id, p) in got {
                    assert_eq!(m.entries[&id.index], (id.term, p));
                }
            }
        }
        m.check(wal.as_ref().unwrap());
    }
    drop(wal.take());
    m.check(&open(d.path()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn wal_matches_btreemap_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
