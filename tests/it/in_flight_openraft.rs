//! Failures in flight through the openraft store: appends whose `LogFlushed` callbacks wait
//! on a sync that fails, and a `save_vote` behind them (see `in_flight` for the tools and
//! the promises checked).

use std::fmt::Debug;
use std::future::Future;
use std::io::Cursor; // the default `SnapshotData` of `declare_raft_types!`
use std::ops::RangeBounds;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::Context;
use std::thread::Scope;

use chunkwal::integrations::openraft::ChunkwalLogStore;
use futures::executor::block_on;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftLogStorageExt};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    StorageError, Vote,
};

use crate::common::cfg;
use crate::in_flight::{Acks, Clock, Fault};

openraft::declare_raft_types!(pub Tc:);

pub type Store = ChunkwalLogStore<Tc>;

pub fn entry(index: u64) -> Entry<Tc> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(format!("e{index}")),
    }
}

/// openraft builds `LogFlushed` itself only; this store hands the one `blocking_append`
/// builds to the test, which passes it on to the real store.
pub struct Catch(pub mpsc::Sender<LogFlushed<Tc>>);

impl RaftLogReader<Tc> for Catch {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        _range: RB,
    ) -> Result<Vec<Entry<Tc>>, StorageError<u64>> {
        unreachable!("Catch only appends")
    }
}

impl RaftLogStorage<Tc> for Catch {
    type LogReader = Catch;

    async fn get_log_state(&mut self) -> Result<LogState<Tc>, StorageError<u64>> {
        unreachable!("Catch only appends")
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        unreachable!("Catch only appends")
    }

    async fn save_vote(&mut self, _vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        unreachable!("Catch only appends")
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        unreachable!("Catch only appends")
    }

    async fn append<I>(&mut self, _entries: I, cb: LogFlushed<Tc>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Tc>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.0.send(cb).expect("test waits for the callback");
        Ok(())
    }

    async fn truncate(&mut self, _log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        unreachable!("Catch only appends")
    }

    async fn purge(&mut self, _log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        unreachable!("Catch only appends")
    }
}

/// A `LogFlushed` whose report is recorded as `what`, issued now, when it is delivered.
fn callback<'s>(sc: &'s Scope<'s, '_>, acks: &Acks, what: &'static str) -> (u64, LogFlushed<Tc>) {
    let (tx, rx) = mpsc::channel();
    let issued = acks.issue();
    let acks = acks.clone();
    sc.spawn(move || {
        let r = block_on(Catch(tx).blocking_append(Vec::new()));
        acks.record(what, issued, &r);
    });
    (issued, rx.recv().expect("LogFlushed"))
}

/// Append `from..to` with a recorded callback; the append itself must be accepted.
fn append<'s>(
    sc: &'s Scope<'s, '_>,
    store: &mut Store,
    acks: &Acks,
    what: &'static str,
    from: u64,
    to: u64,
) {
    let (_, cb) = callback(sc, acks, what);
    block_on(store.append((from..to).map(entry), cb)).expect("append accepted");
}

type VoteFut<'a> = Pin<Box<dyn Future<Output = Result<(), StorageError<u64>>> + Send + 'a>>;

#[test]
fn openraft_sync_failure_fails_every_append_and_vote_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::default();
    let (fault, acks) = (Fault::new(&clock), Acks::new(&clock));
    let mut store = Store::open(fault.install(cfg(dir.path()))).expect("open");
    std::thread::scope(|sc| {
        append(sc, &mut store, &acks, "baseline append", 0, 3);
        acks.wait_for(1);
        fault.arm();
        append(sc, &mut store, &acks, "append 3..5", 3, 5);
        // The flush thread is in the failing sync; pile appends and a vote up behind it.
        fault.wait_entered(1);
        append(sc, &mut store, &acks, "append 5..7", 5, 7);
        append(sc, &mut store, &acks, "append 7", 7, 8);
        let vote = Vote::new(2, 1);
        let issued = acks.issue();
        let mut save: VoteFut<'_> = Box::pin(store.save_vote(&vote));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(
            save.as_mut().poll(&mut cx).is_pending(),
            "the vote waits for its sync"
        );
        fault.release();
        let r = block_on(save);
        acks.record("save_vote", issued, &r);
    });
    // Everything later fails: appends are refused (their callbacks never report success),
    // and so are votes, truncates and purges.
    std::thread::scope(|sc| {
        let (issued, cb) = callback(sc, &acks, "append after: callback");
        let r = block_on(store.append([entry(8)], cb));
        acks.record("append after", issued, &r);
    });
    let issued = acks.issue();
    let r = block_on(store.save_vote(&Vote::new(3, 1)));
    acks.record("save_vote after", issued, &r);
    let issued = acks.issue();
    let r = block_on(store.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4)));
    acks.record("truncate after", issued, &r);
    let got = acks.check(&fault, 9);
    assert_eq!(
        got.iter().filter(|a| a.err.is_none()).count(),
        1,
        "{got:#?}"
    );
    assert!(
        store.wal().durable_index() <= Some(2),
        "unsynced entries reported durable"
    );
}
