//! The Batch policy's interval timer: one small std thread per adapter, no async runtime.
//!
//! The thread sleeps (`park_timeout`) until the next deadline, then calls the adapter's tick,
//! which requests a flush when `interval` passed since the last request and unflushed writes
//! exist, and says how long to sleep next. It holds only a weak reference to the adapter and
//! stops when the adapter is dropped or closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::AdapterError;

/// Handle to the timer thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Timer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    /// Start the thread. `tick` returns how long to sleep, or `None` to stop.
    pub(crate) fn start(
        mut tick: impl FnMut() -> Option<Duration> + Send + 'static,
    ) -> Result<Timer, AdapterError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("chunkwal-batch-timer".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    let Some(sleep) = tick() else { break };
                    std::thread::park_timeout(sleep);
                }
            })
            .map_err(AdapterError::Timer)?;
        Ok(Timer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::warn!("chunkwal batch timer thread panicked");
            }
        }
    }
}
