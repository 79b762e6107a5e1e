//! Flush bookkeeping: numbered flush requests, what they cover, and who waits for them.
//!
//! Every write and every flush request happens under the adapter's order lock, so a write
//! made before request `n` is covered by request `n` (the core syncs everything written
//! before a request). The core answers requests in order, so "request `n` completed" means
//! every request up to `n` completed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::error::AdapterError;
use super::oneshot::{self, Receiver, Sender};

/// What a waiter receives.
pub(crate) type Outcome = Result<(), AdapterError>;

/// Flush accounting; lives behind [`lock`]. Never held while calling into the core.
#[derive(Debug)]
pub(crate) struct Book {
    /// Requests issued so far (request numbers start at 1).
    pub requested: u64,
    /// Highest request answered.
    pub completed: u64,
    /// The first failed request and its error: it and every later one failed.
    failed: Option<(u64, Arc<crate::Error>)>,
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

    /// The outcome of request `seq`, if it is answered.
    fn outcome(&self, seq: u64) -> Option<Outcome> {
        if seq > self.completed {
            return None;
        }
        match &self.failed {
            Some((f, e)) if seq >= *f => Some(Err(AdapterError::SyncFailed(Arc::clone(e)))),
            _ => Some(Ok(())),
        }
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
        if let Err(e) = result {
            if self.failed.is_none() {
                self.failed = Some((seq, Arc::new(e)));
            }
        }
        self.completed = self.completed.max(seq);
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
            if self.waiters[i].0 <= self.completed {
                let (s, tx) = self.waiters.swap_remove(i);
                if let Some(o) = self.outcome(s) {
                    done.push((tx, o));
                }
            } else {
                i += 1;
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
}
