//! [`FlushTicket`]: the outcome of one flush request, to wait on or to await, with no async
//! runtime behind it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::oneshot::{self, Receiver};
use super::worker::Callback;
use crate::error::{Error, Result};

/// The outcome of a flush request from [`crate::Wal::flush_ticket`]: `Ok(())` once a
/// completed sync covered every write made before the request, or the error that stopped it
/// (the poison error if a sync failed).
///
/// Wait on it with [`FlushTicket::wait`] (or [`FlushTicket::wait_timeout`]), or `.await` it
/// under any executor: it is a plain [`Future`] completed from chunkwal's callback thread,
/// with no async runtime dependency. Tickets complete in request order, with every
/// [`crate::Wal::flush`] callback. Dropping a ticket unused is harmless: the sync still
/// happens, and nobody is told.
///
/// ```
/// use chunkwal::{Config, LogId, Wal};
/// let dir = tempfile::tempdir()?;
/// let wal = Wal::open(Config::new(dir.path()))?;
/// wal.append([(LogId::new(1, 1), bytes::Bytes::from_static(b"a"))])?;
/// let ticket = wal.flush_ticket()?;
/// // Any executor will do; this one is `futures::executor`.
/// futures::executor::block_on(async { ticket.await })?;
/// assert_eq!(wal.durable_index(), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a flush ticket does nothing unless waited on or awaited"]
#[derive(Debug)]
pub struct FlushTicket {
    rx: Receiver<Result<()>>,
}

impl FlushTicket {
    /// A ticket and the flush callback that completes it.
    pub(crate) fn new() -> (FlushTicket, Callback) {
        let (tx, rx) = oneshot::channel();
        (FlushTicket { rx }, Box::new(move |r| tx.send(r)))
    }

    /// Block the calling thread until the outcome is known.
    pub fn wait(self) -> Result<()> {
        self.rx.wait().unwrap_or(Err(Error::WorkerStopped))
    }

    /// Block until the outcome is known, at most `timeout`; true if it is (then
    /// [`FlushTicket::wait`] returns at once).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.rx.wait_timeout(timeout)
    }

    /// Whether the outcome is known (so [`FlushTicket::wait`] would not block).
    pub fn is_ready(&self) -> bool {
        self.rx.is_ready()
    }
}

impl Future for FlushTicket {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::WorkerStopped)))
    }
}
