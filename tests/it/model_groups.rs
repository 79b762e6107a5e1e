//! Model-based test over many groups: random per-group operations, batches mixing groups,
//! group removal, flushes, crashes and reopens (full and lazy), checked against one
//! in-memory model per group after every step. Runs with and without rewrite-forward.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use chunkwal::{Config, GroupId, LogId, LogState, VerifyOnOpen, Wal, WriteBatch};
use proptest::prelude::*;

use crate::common::*;

/// Groups the test uses: 0 (the default group) and 1..GROUPS.
const GROUPS: u8 = 6;

/// What one group should hold.
#[derive(Debug, Clone, Default)]
pub struct GModel {
    pub entries: BTreeMap<u64, (u64, Bytes)>,
    pub state: LogState,
    /// The group was written since it was last removed (it is listed by `groups()`).
    pub exists: bool,
    pub term: u64,
}

/// Payload of entry `(index, term)` of group `g`: distinct per group.
pub fn gpay(g: u64, index: u64, term: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 8);
    v.extend_from_slice(&g.to_le_bytes());
    fill(
        &mut v,
        (index ^ term.rotate_left(32) ^ g.rotate_left(50)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        len,
    );
    Bytes::from(v)
}

impl GModel {
    fn new(g: u64) -> Self {
        GModel {
            term: 1 + g * 1000,
            ..GModel::default()
        }
    }
    pub fn next(&self) -> u64 {
        self.state.last.map_or(1, |l| l.index + 1)
    }
    pub fn first(&self) -> u64 {
        self.state.purged.map_or(1, |p| p.index + 1)
    }
    fn make(&self, g: u64, from: u64, n: u64, len: usize) -> Vec<(LogId, Bytes)> {
        (from..from + n)
            .map(|i| (LogId::new(self.term, i), gpay(g, i, self.term, len)))
            .collect()
    }
    /// Truncate from `since` (a no-op past the end).
    fn truncate(&mut self, since: u64) {
        if self.state.last.is_none_or(|l| since > l.index) {
            return;
        }
        self.entries.split_off(&since);
        self.state.last = match self.entries.iter().next_back() {
            Some((i, (t, _))) => Some(LogId::new(*t, *i)),
            None => self.state.purged.filter(|p| p.index < since),
        };
        self.exists = true;
    }
    fn put(&mut self, es: &[(LogId, Bytes)]) {
        for (id, p) in es {
            self.entries.insert(id.index, (id.term, p.clone()));
            self.state.last = Some(*id);
            self.exists = true;
        }
    }
    /// The purge id for `first() + ahead` (the entry's term if held).
    fn purge_id(&self, ahead: u8) -> LogId {
        let upto = self.first() + u64::from(ahead);
        let term = self.entries.get(&upto).map_or(self.term, |e| e.0);
        LogId::new(term, upto)
    }
    fn purge(&mut self, id: LogId) {
        if self.state.purged.is_some_and(|p| p.index >= id.index) {
            return;
        }
        self.entries = self.entries.split_off(&(id.index + 1));
        self.state.purged = Some(id);
        if self.state.last.is_none_or(|l| l.index < id.index) {
            self.state.last = Some(id);
        }
        self.exists = true;
    }
}

/// One group's part of a batch (applied in the batch order: remove, truncate, entries,
/// purge, commit, vote, user data).
#[derive(Debug, Clone)]
pub struct Plan {
    remove: bool,
    /// Replace from `next - back` (`None`: plain append).
    replace: Option<u8>,
    n: u8,
    len: u16,
    purge: Option<u8>,
    commit: bool,
    vote: Option<u8>,
    user_data: Option<Option<u8>>,
}

#[derive(Debug, Clone)]
pub enum Op {
    Append { g: u8, n: u8, len: u16 },
    Truncate { g: u8, back: u8 },
    Replace { g: u8, back: u8, n: u8 },
    Purge { g: u8, ahead: u8 },
    Commit { g: u8 },
    Vote { g: u8, v: u8 },
    UserData { g: u8, u: Option<u8> },
    Remove { g: u8 },
    Batch(Vec<(u8, Plan)>),
    Flush,
    Reopen { lazy: bool },
    Crash { lazy: bool },
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.2, 0u8..10),
        0u8..12,
        0u16..1000,
        proptest::option::weighted(0.2, 0u8..20),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.15, any::<u8>()),
        proptest::option::weighted(0.15, proptest::option::of(any::<u8>())),
    )
        .prop_map(
            |(remove, replace, n, len, purge, commit, vote, user_data)| Plan {
                remove,
                replace,
                n,
                len,
                purge,
                commit,
                vote,
                user_data,
            },
        )
}

pub fn op() -> impl Strategy<Value = Op> {
    let g = || 0u8..GROUPS;
    prop_oneof![
        5 => (g(), 1u8..20, 0u16..1500).prop_map(|(g, n, len)| Op::Append { g, n, len }),
        2 => (g(), 0u8..20).prop_map(|(g, back)| Op::Truncate { g, back }),
        2 => (g(), 0u8..20, 1u8..12).prop_map(|(g, back, n)| Op::Replace { g, back, n }),
        2 => (g(), 0u8..40).prop_map(|(g, ahead)| Op::Purge { g, ahead }),
        1 => g().prop_map(|g| Op::Commit { g }),
        1 => (g(), any::<u8>()).prop_map(|(g, v)| Op::Vote { g, v }),
        1 => (g(), proptest::option::of(any::<u8>())).prop_map(|(g, u)| Op::UserData { g, u }),
        1 => (1u8..GROUPS).prop_map(|g| Op::Remove { g }),
        6 => proptest::collection::vec((g(), plan()), 1..5).prop_map(Op::Batch),
        2 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|lazy| Op::Reopen { lazy }),
        1 => any::<bool>().prop_map(|lazy| Op::Crash { lazy }),
    ]
}

/// The test's state: the log, its config and the models.
pub struct Run {
    config: fn(&Path) -> Config,
    dir: tempfile::TempDir,
    wal: Option<Wal>,
    pub models: Vec<GModel>,
}

impl Run {
    pub fn new(config: fn(&Path) -> Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wal = Some(Wal::open(config(dir.path())).expect("open"));
        let models = (0..u64::from(GROUPS)).map(GModel::new).collect();
        Run {
            config,
            dir,
            wal,
            models,
        }
    }

    pub fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("open log")
    }

    fn reopen(&mut self, lazy: bool, crash: bool) {
        let w = self.wal.take().expect("open log");
        if crash {
            w.simulate_crash();
        } else {
            drop(w);
        }
        let v = if lazy {
            VerifyOnOpen::Lazy
        } else {
            VerifyOnOpen::Full
        };
        let c = (self.config)(self.dir.path()).verify_on_open(v);
        self.wal = Some(Wal::open(c).expect("reopen"));
    }

    pub fn step(&mut self, op: Op) {
        let id = |g: u8| GroupId(u64::from(g));
        match op {
            Op::Append { g, n, len } => {
                let m = &mut self.models[usize::from(g)];
                let es = m.make(u64::from(g), m.next(), u64::from(n), usize::from(len));
                self.wal().group(id(g)).append(es.clone()).expect("append");
                self.models[usize::from(g)].put(&es);
            }
            Op::Truncate { g, back } => {
                let m = &self.models[usize::from(g)];
                let since = match back {
                    // Past the end: a no-op.
                    17.. => m.next() + u64::from(back - 16),
                    _ => m.next().saturating_sub(u64::from(back)).max(m.first()),
                };
                self.wal().group(id(g)).truncate(since).expect("truncate");
                self.models[usize::from(g)].truncate(since);
            }
            Op::Replace { g, back, n } => {
                let m = &mut self.models[usize::from(g)];
                m.term += 1;
                let since = m.next().saturating_sub(u64::from(back)).max(m.first());
                let es = m.make(u64::from(g), since, u64::from(n), 200);
                let w = self.wal.as_ref().expect("open log");
                w.group(id(g))
                    .replace_range(since, es.clone())
                    .expect("replace");
                m.truncate(since);
                m.put(&es);
            }
            Op::Purge { g, ahead } => {
                let pid = self.models[usize::from(g)].purge_id(ahead);
                self.wal().group(id(g)).purge(pid).expect("purge");
                self.models[usize::from(g)].purge(pid);
            }
            Op::Commit { g } => {
                let m = &mut self.models[usize::from(g)];
                if let Some(l) = m.state.last {
                    let w = self.wal.as_ref().expect("open log");
                    w.group(id(g)).commit(l).expect("commit");
                    m.state.committed = Some(l);
                    m.exists = true;
                }
            }
            Op::Vote { g, v } => {
                let b = Bytes::from(vec![v; usize::from(v % 7)]);
                self.wal().group(id(g)).save_vote(b.clone()).expect("vote");
                let m = &mut self.models[usize::from(g)];
                m.state.vote = Some(b);
                m.exists = true;
            }
            Op::UserData { g, u } => {
                let b = u.map(|u| Bytes::from(vec![u; 3]));
                let w = self.wal.as_ref().expect("open log");
                w.group(id(g)).save_user_data(b.clone()).expect("user data");
                let m = &mut self.models[usize::from(g)];
                m.state.user_data = b;
                m.exists = true;
            }
            Op::Remove { g } => {
                self.wal().remove_group(id(g)).expect("remove_group");
                let term = self.models[usize::from(g)].term;
                self.models[usize::from(g)] = GModel {
                    term: term + 1,
                    ..GModel::default()
                };
            }
            Op::Batch(plans) => self.batch(plans),
            Op::Flush => self.wal().flush_blocking().expect("flush"),
            Op::Reopen { lazy } => self.reopen(lazy, false),
            Op::Crash { lazy } => self.reopen(lazy, true),
        }
    }

    /// Build one batch from `plans` (one plan per group: later plans of a group already in
    /// the batch are dropped) and the models it leads to; write it; adopt the models.
    fn batch(&mut self, plans: Vec<(u8, Plan)>) {
        let mut b = WriteBatch::new();
        let mut after = self.models.clone();
        let mut seen = [false; GROUPS as usize];
        for (g, p) in plans {
            if std::mem::replace(&mut seen[usize::from(g)], true) {
                continue;
            }
            let gid = GroupId(u64::from(g));
            let m = &mut after[usize::from(g)];
            if p.remove && g != 0 {
                b.remove_group(gid);
                *m = GModel {
                    term: m.term + 1,
                    ..GModel::default()
                };
            }
            let from = match p.replace {
                Some(back) => {
                    m.term += 1;
                    let since = m.next().saturating_sub(u64::from(back)).max(m.first());
                    b.truncate(gid, since);
                    m.truncate(since);
                    since
                }
                None => m.next(),
            };
            let es = m.make(u64::from(g), from, u64::from(p.n), usize::from(p.len));
            if !es.is_empty() {
                b.append(gid, es.clone());
                m.put(&es);
            }
            if let Some(ahead) = p.purge {
                let pid = m.purge_id(ahead);
                b.purge(gid, pid);
                m.purge(pid);
            }
            if p.commit {
                if let Some(l) = m.state.last {
                    b.commit(gid, l);
                    m.state.committed = Some(l);
                    m.exists = true;
                }
            }
            if let Some(v) = p.vote {
                let v = Bytes::from(vec![v; usize::from(v % 5)]);
                b.save_vote(gid, v.clone());
                m.state.vote = Some(v);
                m.exists = true;
            }
            if let Some(u) = p.user_data {
                let u = u.map(|u| Bytes::from(vec![u; 2]));
                b.save_user_data(gid, u.clone());
                m.state.user_data = u;
                m.exists = true;
            }
        }
        self.wal().write(&b).expect("write batch");
        self.models = after;
    }

    /// Every group of the log against its model.
    pub fn check(&self) {
        let w = self.wal();
        for (g, m) in self.models.iter().enumerate() {
            check_group(w, GroupId(g as u64), m);
        }
        let want: Vec<GroupId> = self
            .models
            .iter()
            .enumerate()
            .filter(|(g, m)| {
                if *g == 0 {
                    m.state != LogState::default()
                } else {
                    m.exists
                }
            })
            .map(|(g, _)| GroupId(g as u64))
            .collect();
        assert_eq!(w.groups(), want, "groups()");
    }
}

/// Group `g` of `w` against `m`: state, entries (read, iter, entry, term), first and last,
/// through the handle and through an owned `GroupReader`.
pub fn check_group(w: &Wal, g: GroupId, m: &GModel) {
    let h = w.group(g);
    let s = h.log_state();
    assert_eq!(s.last, m.state.last, "{g}: last");
    assert_eq!(s.purged, m.state.purged, "{g}: purged");
    assert_eq!(s.committed, m.state.committed, "{g}: committed");
    assert_eq!(s.vote, m.state.vote, "{g}: vote");
    assert_eq!(s.user_data, m.state.user_data, "{g}: user data");
    let whole: Vec<(LogId, Bytes)> = m
        .entries
        .iter()
        .map(|(i, (t, p))| (LogId::new(*t, *i), p.clone()))
        .collect();
    assert_eq!(h.read(..).expect("read(..)"), whole, "{g}: read(..)");
    let it: Vec<_> = h.iter(..).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(it, whole, "{g}: iter(..)");
    if !whole.is_empty() {
        let got = h.read(m.first()..m.next()).expect("read");
        assert_eq!(got, whole, "{g}: read(first..next)");
    }
    assert_eq!(
        h.first_index(),
        m.entries.keys().next().copied(),
        "{g}: first"
    );
    assert_eq!(
        h.last_index(),
        m.entries.keys().next_back().copied(),
        "{g}: last"
    );
    for i in m.first().saturating_sub(2)..m.next() + 2 {
        assert_eq!(h.term(i), m.entries.get(&i).map(|e| e.0), "{g}: term({i})");
    }
    let r = w.reader().group(g);
    assert_eq!(r.log_state(), s, "{g}: reader state");
    assert_eq!(r.read(..).unwrap(), whole, "{g}: reader read(..)");
    if let Some((&i, (t, p))) = m.entries.iter().next_back() {
        assert_eq!(r.entry(i).unwrap(), Some((LogId::new(*t, i), p.clone())));
    }
}

fn run(ops: Vec<Op>, config: fn(&Path) -> Config) {
    let mut r = Run::new(config);
    r.check();
    for op in ops {
        r.step(op);
        r.check();
    }
    for lazy in [false, true] {
        r.reopen(lazy, false);
        r.check();
    }
}

/// Rewrite-forward on once the chunk files pass two chunks.
pub fn rewrite_cfg(dir: &Path) -> Config {
    cfg(dir).rewrite_threshold(Some(2 * SMALL_CHUNK))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn groups_match_their_models(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, cfg);
    }

    #[test]
    fn groups_match_their_models_with_rewrite(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops, rewrite_cfg);
    }
}

/// A long fixed workload: many rotations with one lagging group, so retirement (and,
/// with rewrite on, rewriting forward) happens for sure, checked after each reopen.
#[test]
fn lagging_group_over_many_chunks_matches_model() {
    for (config, rewrite) in [(cfg as fn(&Path) -> Config, false), (rewrite_cfg, true)] {
        let mut r = Run::new(config);
        r.step(Op::Append {
            g: 5,
            n: 3,
            len: 100,
        });
        for round in 0..80u8 {
            let plan = |purge| Plan {
                remove: false,
                replace: None,
                n: 6,
                len: 900,
                purge,
                commit: round % 3 == 0,
                vote: None,
                user_data: None,
            };
            r.step(Op::Batch(vec![
                (1, plan(Some(5))),
                (2, plan(Some(4))),
                (0, plan(Some(5))),
            ]));
            if round % 10 == 9 {
                r.step(Op::Flush);
                r.step(Op::Reopen {
                    lazy: round % 20 == 9,
                });
                r.check();
            }
        }
        r.check();
        let chunks = r.wal().stat().chunks;
        let pins = r.wal().pinning_groups(10);
        let lag = pins.iter().find(|p| p.group == GroupId(5));
        if rewrite {
            // Group 5 was moved to the head: chunk 0 is gone and the disk stays bounded.
            assert!(chunks[0].seq > 0, "{chunks:?}");
            assert!(lag.is_none_or(|p| p.oldest_chunk > 0), "{pins:?}");
            // (The threshold's two chunks, plus slack for retirement after the last sync.)
            assert!(chunks.len() <= 6, "{} chunks", chunks.len());
        } else {
            // Group 5 pins chunk 0 and every chunk after it.
            assert_eq!(chunks[0].seq, 0);
            assert_eq!(lag.map(|p| p.oldest_chunk), Some(0), "{pins:?}");
            assert!(chunks.len() > 10, "{} chunks", chunks.len());
        }
        r.step(Op::Remove { g: 2 });
        r.step(Op::Crash { lazy: true });
        r.check();
    }
}

/// `Group::truncate` past the group's end is a no-op, as `Wal::truncate` is.
#[test]
fn group_truncate_past_the_end_is_a_no_op_like_the_default_group() {
    let d = tempfile::tempdir().unwrap();
    let wal = open(d.path());
    for g in [GroupId::DEFAULT, GroupId(1)] {
        let h = wal.group(g);
        h.append((1..=3).map(|i| (LogId::new(1, i), gpay(g.0, i, 1, 8))))
            .unwrap();
        let before = h.log_state();
        h.truncate(4).expect("truncate at the end");
        h.truncate(9).expect("truncate past the end");
        assert_eq!(h.log_state(), before, "{g}");
    }
}
