//! A hand-written, runtime-agnostic oneshot channel: a `std` mutex, a waker and a condvar.
//!
//! The receiver is a [`Future`] (for async callers under any executor: tokio, async-std,
//! smol, `futures::executor`) and can also be waited on synchronously with
//! [`Receiver::wait`] or [`Receiver::wait_timeout`]. A flush callback completes it, on the
//! callback thread. Used by [`super::FlushTicket`] and by the async adapter.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Canceled;

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender is gone (after sending or not).
    closed: bool,
}

struct Chan<T> {
    slot: Mutex<Slot<T>>,
    cv: Condvar,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // A panic while holding this lock cannot leave the slot inconsistent.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half; sending consumes it, dropping it unsent cancels the receiver.
pub(crate) struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half: a future, or [`Receiver::wait`] for blocking callers.
pub(crate) struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

/// A connected pair.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        slot: Mutex::new(Slot {
            value: None,
            waker: None,
            closed: false,
        }),
        cv: Condvar::new(),
    });
    (
        Sender {
            chan: Arc::clone(&chan),
        },
        Receiver { chan },
    )
}

/// A receiver that is already complete.
pub(crate) fn ready<T>(value: T) -> Receiver<T> {
    let (tx, rx) = channel();
    tx.send(value);
    rx
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Receiver")
    }
}

impl<T> Sender<T> {
    /// Deliver the value and wake the receiver.
    pub(crate) fn send(self, value: T) {
        self.chan.lock().value = Some(value);
        // Drop closes the slot and wakes.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.chan.lock();
            s.closed = true;
            s.waker.take()
        };
        self.chan.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// Block the calling thread until the value arrives.
    pub(crate) fn wait(self) -> Result<T, Canceled> {
        let mut s = self.chan.lock();
        loop {
            if let Some(v) = s.value.take() {
                return Ok(v);
            }
            if s.closed {
                return Err(Canceled);
            }
            s = self.chan.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Block until the value arrives or the sender is dropped, at most `timeout`; true if
    /// it did (then [`Receiver::wait`] returns at once).
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.chan.lock();
        loop {
            if s.value.is_some() || s.closed {
                return true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return false;
            }
            s = match self.chan.cv.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Whether the value arrived or the sender is gone (waiting would not block).
    pub(crate) fn is_ready(&self) -> bool {
        let s = self.chan.lock();
        s.value.is_some() || s.closed
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.chan.lock();
        if let Some(v) = s.value.take() {
            return Poll::Ready(Ok(v));
        }
        if s.closed {
            return Poll::Ready(Err(Canceled));
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_gets_value_sent_from_another_thread() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || tx.send(7u32));
        assert_eq!(rx.wait(), Ok(7));
        t.join().expect("sender thread");
    }

    #[test]
    fn dropped_sender_cancels() {
        let (tx, rx) = channel::<u32>();
        drop(tx);
        assert_eq!(rx.wait(), Err(Canceled));
    }

    #[test]
    fn ready_is_ready() {
        assert_eq!(ready(3u8).wait(), Ok(3));
    }

    #[test]
    fn wait_timeout_reports_whether_the_value_is_in() {
        let (tx, rx) = channel::<u32>();
        assert!(!rx.is_ready());
        assert!(!rx.wait_timeout(Duration::from_millis(1)));
        tx.send(5);
        assert!(rx.is_ready());
        assert!(rx.wait_timeout(Duration::ZERO));
        assert_eq!(rx.wait(), Ok(5));
        let (tx, rx) = channel::<u32>();
        drop(tx);
        assert!(rx.wait_timeout(Duration::MAX));
    }
}
