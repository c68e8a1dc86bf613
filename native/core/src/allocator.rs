//! A global allocator for the native library: the system allocator, counting the bytes in use.
//!
//! Native memory that nothing accounts for is what gets executors killed by their container;
//! counting every allocation of the library (DataFusion's, Arrow's, Parquet's, ours) shows
//! how much the JVM process holds beyond what Spark sees, and lets a task fail cleanly when
//! the count passes a limit. The `cdylib` installs it with `#[global_allocator]`; where it is
//! not installed (this crate's tests) the counters stay at zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_err};

/// [`System`] with counters of bytes in use and their peak.
pub struct CountingAllocator;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// 0: no limit.
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Sets the most native memory tasks may hold before they fail (0: no limit).
pub fn set_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// An error if the bytes in use pass the limit: checked between batches, so that a task
/// fails with a message (and Spark can retry it) before the process outgrows its container.
pub fn check_limit() -> Result<()> {
    within_limit(CountingAllocator::in_use(), LIMIT.load(Ordering::Relaxed))
}

fn within_limit(in_use: usize, limit: usize) -> Result<()> {
    if limit > 0 && in_use > limit {
        return resources_err!(
            "native memory in use ({in_use} bytes) exceeds spark.ballista.memory.nativeLimit \
             ({limit} bytes)"
        );
    }
    Ok(())
}

impl CountingAllocator {
    /// Bytes allocated and not yet freed.
    pub fn in_use() -> usize {
        IN_USE.load(Ordering::Relaxed)
    }

    /// The highest [`Self::in_use`] seen since the last [`Self::reset_peak`].
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    /// Starts a new peak from the bytes in use now (for measuring one query).
    pub fn reset_peak() {
        PEAK.store(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn added(size: usize) {
        let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
        // A plain load first: the read-modify-write only when a new peak is likely.
        if now > PEAK.load(Ordering::Relaxed) {
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }

    fn removed(size: usize) {
        IN_USE.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters do not affect the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::added(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        Self::removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Self::removed(layout.size());
            Self::added(new_size);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::CountingAllocator;

    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn counts_an_allocation_until_it_is_freed() {
        // Called directly: this test binary does not install it as its global allocator.
        let layout = Layout::from_size_align(64 << 20, 8).unwrap();
        let before = CountingAllocator::in_use();
        // SAFETY: a non-zero size, freed below with the same layout.
        let block = unsafe { CountingAllocator.alloc(layout) };
        assert!(!block.is_null());
        assert!(CountingAllocator::in_use() >= before + (64 << 20));
        assert!(CountingAllocator::peak() >= 64 << 20);
        // SAFETY: allocated above with `layout`.
        unsafe { CountingAllocator.dealloc(block, layout) };
        assert!(CountingAllocator::in_use() <= before);
    }

    #[test]
    fn the_limit_fails_tasks_only_when_passed() {
        assert!(super::within_limit(100, 100).is_ok());
        assert!(super::within_limit(1 << 40, 0).is_ok(), "0 is no limit");
        let error = super::within_limit(101, 100).unwrap_err().to_string();
        assert!(
            error.contains("spark.ballista.memory.nativeLimit"),
            "{error}"
        );
    }
}
