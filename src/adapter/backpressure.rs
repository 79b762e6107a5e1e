//! MemFirst backpressure: how many unflushed bytes a writer may find before it must wait.
//!
//! A writer is admitted while at most `max_unflushed_bytes` are written but not yet durable,
//! so the dirty, unsynced part of the log stays below that bound plus the batches of the
//! writers admitted at that moment. A writer that is not admitted asks for a flush if the
//! waiting bytes are not yet requested, then awaits the request covering them.

use super::batcher::Book;

/// What a writer must do before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Write now.
    Admit,
    /// Wait for request `seq` (already issued) to complete, then check again.
    WaitFor(u64),
    /// Issue a flush request, wait for it, then check again.
    FlushAndWait,
}

/// Decide admission for a writer given the current accounting.
pub(crate) fn admit(book: &Book, max_unflushed_bytes: u64) -> Admission {
    if book.unflushed_bytes <= max_unflushed_bytes {
        Admission::Admit
    } else if book.pending_bytes > 0 || book.requested == book.completed {
        Admission::FlushAndWait
    } else {
        Admission::WaitFor(book.requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_follows_the_bound() {
        let mut b = Book::default();
        b.note_write(1, 100);
        assert_eq!(admit(&b, 100), Admission::Admit);
        b.note_write(1, 1);
        assert_eq!(admit(&b, 100), Admission::FlushAndWait);
        let seq = b.start_request();
        assert_eq!(admit(&b, 100), Admission::WaitFor(seq));
        let _ = b.complete(seq, Ok(()));
        assert_eq!(admit(&b, 100), Admission::Admit);
    }
}
