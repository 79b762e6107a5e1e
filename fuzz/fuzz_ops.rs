//! The ops_model target body (see `fuzz_logic.rs`): operations decoded from bytes, run
//! against the log and one `BTreeMap` model per group.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chunkwal::{Config, Error, GroupId, LogId, LogState, RecoveryMode, Wal, WriteBatch};

use super::{temp_dir, Input, CHUNK};

/// Groups of the multi-group mode: the default group and `1..GROUPS`.
const GROUPS: u64 = 5;

/// What the log should hold, kept in a `BTreeMap`: the ops_model target and the proptest
/// model test (`tests/it/model.rs`) both drive it.
#[derive(Default, Debug)]
pub struct Model {
    pub entries: BTreeMap<u64, (u64, Bytes)>,
    pub last: Option<LogId>,
    pub purged: Option<LogId>,
    pub committed: Option<LogId>,
    pub vote: Option<Bytes>,
    pub user_data: Option<Bytes>,
    pub term: u64,
    /// Make JSON-like (compressible) payloads instead of random bytes, for logs written with
    /// compression on.
    pub compressible: bool,
}

/// A JSON-like payload of `len` bytes (compressible), distinct per index and term.
fn fill_text(index: u64, term: u64, len: usize) -> Bytes {
    let mut s = format!("{{\"index\":{index},\"term\":{term},\"op\":\"set\",\"value\":\"");
    let mut k = index;
    while s.len() < len {
        s.push_str(["alpha ", "beta ", "gamma ", "delta "][(k % 4) as usize]);
        k = k.wrapping_add(term | 1);
    }
    s.truncate(len);
    Bytes::from(s)
}

fn fill(index: u64, term: u64, len: usize) -> Bytes {
    let mut x = (index ^ term.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

impl Model {
    pub fn next(&self) -> u64 {
        self.last.map_or(1, |l| l.index + 1)
    }
    pub fn first(&self) -> u64 {
        self.purged.map_or(1, |p| p.index + 1)
    }
    pub fn make(&self, from: u64, n: u64, len: usize) -> Vec<(LogId, Bytes)> {
        (from..from + n)
            .map(|i| {
                let p = if self.compressible {
                    fill_text(i, self.term, len)
                } else {
                    fill(i, self.term, len)
                };
                (LogId::new(self.term, i), p)
            })
            .collect()
    }
    pub fn truncate(&mut self, since: u64) {
        self.entries.split_off(&since);
        self.last = match self.entries.iter().next_back() {
            Some((i, (t, _))) => Some(LogId::new(*t, *i)),
            None => self.purged.filter(|p| p.index < since),
        };
    }
    pub fn put(&mut self, es: &[(LogId, Bytes)]) {
        for (id, p) in es {
            self.entries.insert(id.index, (id.term, p.clone()));
            self.last = Some(*id);
        }
    }
    pub fn check(&self, wal: &Wal) {
        self.check_in(wal, GroupId::DEFAULT);
    }
    /// Check group `g` of `wal` against the model.
    pub fn check_in(&self, wal: &Wal, g: GroupId) {
        let wal = wal.group(g);
        let s = wal.log_state();
        assert_eq!(s.last, self.last, "{g}: last");
        assert_eq!(s.purged, self.purged, "purged");
        assert_eq!(s.committed, self.committed, "committed");
        assert_eq!(s.vote, self.vote, "vote");
        assert_eq!(s.user_data, self.user_data, "user data");
        let got = wal
            .read(self.first()..self.next())
            .expect("read the whole log");
        assert_eq!(got.len(), self.entries.len());
        for ((id, p), (i, (t, mp))) in got.iter().zip(&self.entries) {
            assert_eq!((id.index, id.term), (*i, *t));
            assert_eq!(p, mp);
            assert_eq!(wal.term(*i), Some(*t), "term from the index");
        }
    }
}

/// Operations decoded from bytes, run against the log and a `BTreeMap` model per group,
/// with clean reopens and crashes (`simulate_crash`: the page cache survives, so nothing
/// written may be lost). Layout: control byte (bit 0 strict, bit 1 tiny cache, bit 2 LZ4
/// batch compression with compressible payloads, when built with feature `compression`,
/// bit 3 many groups), then ops of three bytes (op, a, b), or with bit 3 of four bytes
/// (group, op, a, b: the op applies to group `group % 5`, 0 the default one).
/// Returns the number of operations run.
pub fn ops_model(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    let Some(ctl) = inp.u8() else { return 0 };
    let mode = if ctl & 1 == 1 {
        RecoveryMode::Strict
    } else {
        RecoveryMode::TolerateTornTail
    };
    let d = temp_dir();
    let compressed = ctl & 4 == 4 && cfg!(feature = "compression");
    let multi = ctl & 8 == 8;
    let cfg = || {
        let mut c = Config::new(d.path()).chunk_size(CHUNK).recovery_mode(mode);
        if compressed {
            c = c.compression(chunkwal::Compression::lz4(128));
        }
        if multi {
            // Rewrite-forward of lagging groups once the files pass two chunks.
            c = c.rewrite_threshold(Some(2 * CHUNK));
        }
        if ctl & 2 == 2 {
            c.cache(4, 4096)
        } else {
            c
        }
    };
    let mut wal = Some(Wal::open(cfg()).expect("open"));
    let groups = if multi { GROUPS } else { 1 };
    let fresh = |g: u64| Model {
        term: 1 + g * 1_000_000,
        compressible: compressed,
        ..Model::default()
    };
    let mut ms: Vec<Model> = (0..groups).map(fresh).collect();
    // Groups written to since their last removal (a superset of what `groups()` lists).
    let mut touched = BTreeSet::new();
    let mut ran = 0;
    for _ in 0..256 {
        let g = if multi {
            match inp.u8() {
                Some(g) => u64::from(g) % GROUPS,
                None => break,
            }
        } else {
            0
        };
        let (Some(op), Some(a), Some(b)) = (inp.u8(), inp.u8(), inp.u8()) else {
            break;
        };
        ran += 1;
        let w = wal.as_ref().expect("open log");
        let code = if multi { op % 16 } else { op % 14 };
        let m = &mut ms[g as usize];
        match code {
            9 => {
                w.flush_blocking().expect("flush");
                let l = ms[0].last.map(|l| l.index);
                assert_eq!(w.durable_index(), l, "durable index");
            }
            10 => {
                drop(wal.take());
                wal = Some(Wal::open(cfg()).expect("reopen"));
            }
            11 => {
                wal.take().expect("open log").simulate_crash();
                wal = Some(Wal::open(cfg()).expect("open after crash"));
            }
            13 if g == 0 => {
                w.reset().expect("reset");
                m.entries.clear();
                m.last = None;
                m.purged = None;
                m.committed = None;
            }
            13 => {
                w.remove_group(GroupId(g)).expect("remove_group");
                *m = Model {
                    term: m.term + 1,
                    ..fresh(g)
                };
                touched.remove(&g);
            }
            14 => {
                let t = batch(w, &mut ms, a, b);
                touched.extend(t);
            }
            15 => check_reader(w, GroupId(g), m, a),
            _ => {
                if group_op(w, GroupId(g), m, code, a, b) {
                    touched.insert(g);
                }
            }
        }
        check_all(wal.as_ref().expect("open log"), &ms, &touched);
    }
    drop(wal.take());
    check_all(&Wal::open(cfg()).expect("final reopen"), &ms, &touched);
    ran
}

/// Every group against its model, and `groups()` against what was written.
fn check_all(w: &Wal, ms: &[Model], touched: &BTreeSet<u64>) {
    for (g, m) in ms.iter().enumerate() {
        m.check_in(w, GroupId(g as u64));
    }
    let listed = w.groups();
    for g in 0..ms.len() {
        let id = GroupId(g as u64);
        let empty = w.group(id).log_state() == LogState::default();
        if !empty {
            assert!(listed.contains(&id), "{id} holds state but is not listed");
        }
        if g == 0 {
            assert_eq!(listed.contains(&id), !empty, "the default group's listing");
        } else if listed.contains(&id) {
            assert!(touched.contains(&(g as u64)), "{id} listed, never written");
        }
    }
    assert!(listed.iter().all(|g| g.0 < ms.len() as u64), "{listed:?}");
}

/// A read of group `g` through an owned `GroupReader` from another thread.
fn check_reader(w: &Wal, g: GroupId, m: &Model, a: u8) {
    let r = w.reader().group(g);
    let from = m.first() + u64::from(a) % (m.next() - m.first() + 1);
    let to = m.next();
    let got = std::thread::scope(|s| s.spawn(|| r.read(from..to)).join())
        .expect("reader thread")
        .expect("group read");
    assert_eq!(got.len() as u64, to - from);
    for (id, p) in got {
        assert_eq!(m.entries[&id.index], (id.term, p));
    }
    assert_eq!(r.log_state().last, m.last, "{g}: reader's last");
}

/// One single-group operation (codes 0-8 and 12, as in the single-group layout) on group
/// `g`. Returns whether it wrote to the group.
fn group_op(w: &Wal, g: GroupId, m: &mut Model, code: u8, a: u8, b: u8) -> bool {
    let h = w.group(g);
    let span = m.next() - m.first();
    // A non-default group's write is one atomic group: it must fit a chunk.
    let unit = if g == GroupId::DEFAULT { 13 } else { 3 };
    match code {
        0..=2 => {
            let es = m.make(m.next(), 1 + u64::from(a % 24), usize::from(b) * unit);
            h.append(es.clone()).expect("append");
            m.put(&es);
        }
        3 => {
            if a & 0x80 != 0 && m.first() > 1 {
                // At or below the purge point: refused, nothing changes.
                let since = u64::from(a & 0x7f) % m.first();
                let r = h.truncate(since);
                assert!(
                    matches!(r, Err(Error::TruncatePurged { .. })),
                    "{g}: truncate({since}) below purge point {:?}: {r:?}",
                    m.purged
                );
                return false;
            }
            let since = m.first() + u64::from(a) % (span + 2);
            h.truncate(since).expect("truncate");
            if since < m.next() {
                m.truncate(since);
            }
        }
        4 => {
            m.term += 1;
            let since = m.first() + u64::from(a) % (span + 1);
            let es = m.make(since, 1 + u64::from(b % 20), usize::from(b) * 3);
            h.replace_range(since, es.clone()).expect("replace_range");
            m.truncate(since);
            m.put(&es);
        }
        5 => {
            let upto = m.first() + u64::from(a) % (span + 4);
            let term = m.entries.get(&upto).map_or(m.term, |e| e.0);
            let id = LogId::new(term, upto);
            h.purge(id).expect("purge");
            m.entries = m.entries.split_off(&(upto + 1));
            m.purged = Some(id);
            if m.last.is_none_or(|l| l.index < upto) {
                m.last = Some(id);
            }
        }
        6 => {
            let Some(l) = m.last else { return false };
            h.commit(l).expect("commit");
            m.committed = Some(l);
        }
        7 => {
            let v = Bytes::from(vec![a; usize::from(b % 64)]);
            h.save_vote(v.clone()).expect("vote");
            m.vote = Some(v);
        }
        8 => {
            let u = (a & 1 == 1).then(|| Bytes::from(vec![b; usize::from(a >> 1)]));
            h.save_user_data(u.clone()).expect("user data");
            m.user_data = u;
        }
        _ => {
            let from = m.first() + u64::from(a) % (span + 1);
            let to = (from + u64::from(b % 40)).min(m.next());
            let got = h.read(from..to).expect("read");
            assert_eq!(got.len() as u64, to - from);
            for (id, p) in got {
                assert_eq!(m.entries[&id.index], (id.term, p));
            }
            return false;
        }
    }
    true
}

/// One batch over the groups of mask `a & 0x1f`: each gets `1 + b % 6` entries (bit 7 of
/// `a`: replacing its last `b % 3` under a new term), then with bit 5 a purge of its first
/// `b % 4` entries, with bit 6 a commit of its last entry. Returns the groups written.
fn batch(w: &Wal, ms: &mut [Model], a: u8, b: u8) -> Vec<u64> {
    let mut batch = WriteBatch::new();
    let mut written = Vec::new();
    for (g, m) in ms.iter_mut().enumerate() {
        if a & (1 << g) == 0 {
            continue;
        }
        let id = GroupId(g as u64);
        let mut from = m.next();
        if a & 0x80 != 0 {
            m.term += 1;
            from = m.next().saturating_sub(u64::from(b % 3)).max(m.first());
            batch.truncate(id, from);
            if from < m.next() {
                m.truncate(from);
            }
        }
        let es = m.make(from, 1 + u64::from(b % 6), usize::from(b) * 4);
        batch.append(id, es.clone());
        m.put(&es);
        if a & 0x20 != 0 {
            let upto = m.first() + u64::from(b % 4);
            let term = m.entries.get(&upto).map_or(m.term, |e| e.0);
            let pid = LogId::new(term, upto);
            batch.purge(id, pid);
            m.entries = m.entries.split_off(&(upto + 1));
            m.purged = Some(pid);
            if m.last.is_none_or(|l| l.index < upto) {
                m.last = Some(pid);
            }
        }
        if a & 0x40 != 0 {
            let l = m.last.expect("entries were just appended");
            batch.commit(id, l);
            m.committed = Some(l);
        }
        written.push(g as u64);
    }
    w.write(&batch).expect("write batch");
    written
}
