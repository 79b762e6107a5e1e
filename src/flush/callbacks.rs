//! The callback thread: runs flush callbacks (and answers barriers) in the order the flush
//! worker hands them over, so the flush thread never runs user code and a slow callback
//! delays only the callbacks after it, never a sync.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::worker::Callback;
use crate::error::{Error, Result};

/// An answer the flush worker has decided and the callback thread delivers.
pub enum Reply {
    /// Call the callback with the outcome of the sync that covered its request.
    Done(Callback, Result<()>),
    /// Reply once every answer handed over before it was delivered.
    Barrier(Sender<()>),
}

/// The flush worker's end: hands answers over in order.
#[derive(Debug)]
pub struct Replies {
    tx: Sender<Reply>,
}

impl Replies {
    /// Hand `reply` to the callback thread; if that thread is gone, deliver it here (on
    /// the caller's thread), so no answer is ever lost.
    pub fn send(&self, reply: Reply) {
        if let Err(crossbeam_channel::SendError(reply)) = self.tx.send(reply) {
            deliver(reply);
        }
    }
}

/// Start the callback thread. It runs until every [`Replies`] handle is dropped and it has
/// delivered everything handed to it.
pub fn spawn() -> Result<(Replies, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("chunkwal-callbacks".into())
        .spawn(move || run(&rx))
        .map_err(|e| Error::io("spawn callback thread", "", e))?;
    Ok((Replies { tx }, thread))
}

fn run(rx: &Receiver<Reply>) {
    while let Ok(reply) = rx.recv() {
        deliver(reply);
    }
}

/// Run one answer. A panicking callback is caught and logged: it cannot have touched the
/// log's state, so it poisons nothing, and the callbacks after it still run.
fn deliver(reply: Reply) {
    match reply {
        Reply::Done(cb, result) => {
            if catch_unwind(AssertUnwindSafe(|| cb(result))).is_err() {
                tracing::error!("a flush callback panicked; later callbacks still run");
            }
        }
        Reply::Barrier(tx) => {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_run_in_order_and_a_panic_stops_nothing() {
        let (replies, thread) = spawn().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..5u32 {
            let tx = tx.clone();
            replies.send(Reply::Done(
                Box::new(move |r| {
                    assert!(r.is_ok());
                    if i == 2 {
                        panic!("injected callback panic");
                    }
                    tx.send(i).unwrap();
                }),
                Ok(()),
            ));
        }
        let (btx, brx) = crossbeam_channel::bounded(1);
        replies.send(Reply::Barrier(btx));
        brx.recv().unwrap();
        // Everything before the barrier ran, in order, the panicking one skipped.
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 3, 4]);
        drop(replies);
        thread.join().unwrap();
    }
}
