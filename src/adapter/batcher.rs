//! Flush bookkeeping: numbered flush requests, what they cover, and who waits for them.
//!
//! Every write and every flush request happens under the adapter's order lock, so a write
//! made before request `n` is covered by request `n` (the core syncs everything written
//! before a request). The core answers requests in order, so "request `n` succeeded" means
//! every request up to `n` succeeded.
//!
//! A failure is different: the core can refuse a request on the spot (a poisoned log) while
//! earlier ones are still queued on its flush thread. So a failure fails every request not
//! yet answered, whichever request it came from, and every later one: only requests already
//! answered `Ok` stay `Ok`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::error::AdapterError;
use crate::flush::oneshot::{self, Receiver, Sender};

/// What a waiter receives.
pub(crate) type Outcome = Result<(), AdapterError>;

/// Flush accounting; lives behind [`lock`]. Never held while calling into the core.
#[derive(Debug)]
pub(crate) struct Book {
    /// Requests issued so far (request numbers start at 1).
    pub requested: u64,
    /// Highest request answered (successfully or not).
    pub completed: u64,
    /// Every request up to this one was answered `Ok`.
    ok_through: u64,
    /// The first failure: every request after `ok_through` failed with it.
    failed: Option<Arc<crate::Error>>,
    /// Entries written since the last request.
    pub pending_entries: usize,
    /// Encoded bytes written since the last request.
    pub pending_bytes: u64,
    /// Any write (entries, truncate, purge, vote, ...) since the last request.
    pub dirty: bool,
    /// Bytes covered by each request still in flight, oldest first.
    inflight: VecDeque<(u64, u64)>,
    /// Bytes written and not yet covered by a completed sync.
    pub unflushed_bytes: u64,
    /// When the last request was issued.
    pub last_request: Instant,
    waiters: Vec<(u64, Sender<Outcome>)>,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            requested: 0,
            completed: 0,
            ok_through: 0,
            failed: None,
            pending_entries: 0,
            pending_bytes: 0,
            dirty: false,
            inflight: VecDeque::new(),
            unflushed_bytes: 0,
            last_request: Instant::now(),
            waiters: Vec::new(),
        }
    }
}

/// Lock a book; a panic elsewhere cannot leave it inconsistent enough to matter.
pub(crate) fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Book {
    /// Account for a write of `entries` entries and `bytes` encoded bytes.
    pub fn note_write(&mut self, entries: usize, bytes: u64) {
        self.pending_entries += entries;
        self.pending_bytes += bytes;
        self.unflushed_bytes += bytes;
        self.dirty = true;
    }

    /// The request that makes everything written so far durable: the next one if writes
    /// wait for a request, otherwise the latest one.
    pub fn covering(&self) -> u64 {
        if self.dirty {
            self.requested + 1
        } else {
            self.requested
        }
    }

    /// Number and account for a new request. The caller holds the order lock and hands
    /// the request to the core right after.
    pub fn start_request(&mut self) -> u64 {
        self.requested += 1;
        self.inflight
            .push_back((self.requested, std::mem::take(&mut self.pending_bytes)));
        self.pending_entries = 0;
        self.dirty = false;
        self.last_request = Instant::now();
        self.requested
    }

    /// The outcome of request `seq`, if it is answered. After a failure every request not
    /// answered `Ok` before it is answered: it failed.
    fn outcome(&self, seq: u64) -> Option<Outcome> {
        if seq <= self.ok_through {
            return Some(Ok(()));
        }
        self.failed
            .as_ref()
            .map(|e| Err(AdapterError::SyncFailed(Arc::clone(e))))
    }

    /// The failure every request after it gets, if one happened.
    pub fn failure(&self) -> Option<AdapterError> {
        self.failed
            .as_ref()
            .map(|e| AdapterError::SyncFailed(Arc::clone(e)))
    }

    /// A receiver completed when request `seq` is answered.
    pub fn wait_for(&mut self, seq: u64) -> Receiver<Outcome> {
        if let Some(o) = self.outcome(seq) {
            return oneshot::ready(o);
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push((seq, tx));
        rx
    }

    /// Request `seq` was answered with `result`. Returns the waiters to wake (outside the
    /// lock) with their outcomes.
    pub fn complete(
        &mut self,
        seq: u64,
        result: crate::Result<()>,
    ) -> Vec<(Sender<Outcome>, Outcome)> {
        match result {
            // Answers come in order, so `seq` succeeding means every request up to it did;
            // after a failure, a late success of a request the failure already answered
            // changes nothing.
            Ok(()) if self.failed.is_none() => {
                self.ok_through = self.ok_through.max(seq);
                self.completed = self.completed.max(seq);
            }
            Ok(()) => {}
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(Arc::new(e));
                }
                // Every request issued so far is answered now: it failed.
                self.completed = self.requested.max(seq);
            }
        }
        // A failed request's bytes are dropped from the count too: the log is poisoned and
        // refuses writes, so nobody may wait on them forever.
        while let Some(&(s, bytes)) = self.inflight.front() {
            if s > self.completed {
                break;
            }
            self.unflushed_bytes = self.unflushed_bytes.saturating_sub(bytes);
            self.inflight.pop_front();
        }
        if self.inflight.is_empty() {
            self.unflushed_bytes = self.pending_bytes;
        }
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.waiters.len() {
            match self.outcome(self.waiters[i].0) {
                Some(o) => {
                    let (_, tx) = self.waiters.swap_remove(i);
                    done.push((tx, o));
                }
                None => i += 1,
            }
        }
        done
    }
}

/// Record the answer to request `seq` and wake its waiters.
pub(crate) fn finish(book: &Mutex<Book>, seq: u64, result: crate::Result<()>) {
    let done = lock(book).complete(seq, result);
    for (tx, o) in done {
        tx.send(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_complete_in_request_order() {
        let mut b = Book::default();
        b.note_write(3, 300);
        assert_eq!(b.covering(), 1);
        let s1 = b.start_request();
        let r1 = b.wait_for(s1);
        b.note_write(1, 100);
        let s2 = b.start_request();
        let r2 = b.wait_for(s2);
        assert_eq!(b.unflushed_bytes, 400);
        for (tx, o) in b.complete(s1, Ok(())) {
            tx.send(o);
        }
        assert_eq!(b.unflushed_bytes, 100);
        assert!(r1.wait().expect("sent").is_ok());
        let failure = crate::Error::WorkerStopped;
        for (tx, o) in b.complete(s2, Err(failure)) {
            tx.send(o);
        }
        assert!(matches!(r2.wait(), Ok(Err(AdapterError::SyncFailed(_)))));
        assert!(matches!(
            b.wait_for(s1).wait(),
            Ok(Ok(())) // requests before the failure stay successful
        ));
        assert_eq!(b.unflushed_bytes, 0);
    }

    fn wake(done: Vec<(Sender<Outcome>, Outcome)>) {
        for (tx, o) in done {
            tx.send(o);
        }
    }

    fn failed(rx: Receiver<Outcome>) -> bool {
        matches!(rx.wait(), Ok(Err(AdapterError::SyncFailed(_))))
    }

    #[test]
    fn a_failure_on_the_spot_fails_the_requests_still_in_flight() {
        let mut b = Book::default();
        b.note_write(1, 10);
        let s1 = b.start_request();
        let r1 = b.wait_for(s1);
        wake(b.complete(s1, Ok(())));
        assert!(matches!(r1.wait(), Ok(Ok(()))));
        // Requests 2 and 3 are queued on the flush thread when the log is poisoned; the
        // core refuses request 4 at once, before the flush thread answers 2 and 3.
        b.note_write(1, 10);
        let s2 = b.start_request();
        let r2 = b.wait_for(s2);
        b.note_write(1, 10);
        let s3 = b.start_request();
        let r3 = b.wait_for(s3);
        let s4 = b.start_request();
        let r4 = b.wait_for(s4);
        let poisoned = crate::Error::Poisoned {
            op: "msync",
            path: None,
            source: std::sync::Arc::new(std::io::ErrorKind::Other.into()),
        };
        wake(b.complete(s4, Err(poisoned)));
        assert!(failed(r2), "request 2 was never synced");
        assert!(failed(r3), "request 3 was never synced");
        assert!(failed(r4));
        assert_eq!(b.unflushed_bytes, 0, "nobody may wait on failed bytes");
        // A late answer from the flush thread changes nothing, whatever it says.
        wake(b.complete(s2, Ok(())));
        wake(b.complete(s3, Err(crate::Error::WorkerStopped)));
        assert!(failed(b.wait_for(s2)));
        assert!(failed(b.wait_for(s3)));
        assert!(
            matches!(b.wait_for(s1).wait(), Ok(Ok(()))),
            "answered Ok stays Ok"
        );
        // Writes waiting for the next request fail at once too, and so does that request.
        b.note_write(1, 10);
        let next = b.covering();
        assert_eq!(next, s4 + 1);
        assert!(failed(b.wait_for(next)));
        let s5 = b.start_request();
        let r5 = b.wait_for(s5);
        wake(b.complete(s5, Ok(())));
        assert!(failed(r5), "no success after a failure");
    }
}
