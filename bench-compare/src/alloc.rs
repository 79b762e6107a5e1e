//! A counting global allocator: live and peak heap bytes, for the reopen probe's
//! "index memory per entry".
//!
//! Counting is off until [`start`] is called (only the `reopen-probe` child does), so the
//! other workloads pay one relaxed load per allocation and nothing else. Blocks allocated
//! before [`start`] and freed after it make `live` slightly low; the probe calls [`start`]
//! before it touches the engine, and nothing allocated earlier is freed inside the window
//! it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

/// The system allocator with byte counters.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

#[global_allocator]
static GLOBAL: Counting = Counting;

fn grew(by: usize) {
    let now = LIVE.fetch_add(by as i64, Relaxed) + by as i64;
    PEAK.fetch_max(now, Relaxed);
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by as i64, Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments unchanged; the
// counters only observe sizes and never touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && ON.load(Relaxed) {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && ON.load(Relaxed) {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        if ON.load(Relaxed) {
            shrank(layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && ON.load(Relaxed) {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Heap bytes live now and the peak since the last [`reset_peak`] (both counted from
/// [`start`]).
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    pub live: i64,
    pub peak: i64,
}

/// Turn counting on (for the rest of the process).
pub fn start() {
    ON.store(true, Relaxed);
}

/// Forget the peak: the next [`now`]'s peak is the highest live count from here on.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// The counters.
pub fn now() -> Heap {
    Heap {
        live: LIVE.load(Relaxed),
        peak: PEAK.load(Relaxed),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_a_live_block() {
        super::start();
        super::reset_peak();
        let before = super::now();
        let v = vec![1u8; 1 << 20];
        let held = super::now();
        assert!(held.live - before.live >= 1 << 20, "{before:?} -> {held:?}");
        assert!(held.peak - before.live >= 1 << 20, "{before:?} -> {held:?}");
        drop(v);
    }
}
