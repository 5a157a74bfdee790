//! A global allocator that counts allocations, so `openvpc bench dataplane`
//! can report allocations per fast-path packet (STYLE.md: benchmarks report
//! allocations per packet).
//!
//! Defining it here installs nothing: a process counts only if its binary
//! names [`CountingAllocator`] as its `#[global_allocator]`, and the only one
//! that does is `openvpc` built with its `count-allocations` feature, off by
//! default. Production processes (`openvpc server`, `agent`, `up`) therefore
//! run on the system allocator untouched. It is a build feature rather than
//! always on because a global allocator cannot be chosen at run time, and a
//! measuring hook has no business in every allocation of the server and the
//! agent, however cheap. [`installed`] checks at run time whether the
//! counter is live, so a build without it says so instead of reporting 0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator plus one relaxed atomic add per allocation.
#[derive(Debug)]
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by the whole process; always 0 unless
/// [`CountingAllocator`] is the global allocator.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Whether [`CountingAllocator`] is this process's global allocator: one
/// probe allocation either moves the counter or it does not. Nothing else
/// moves it, so the answer cannot be a false yes.
pub fn installed() -> bool {
    let before = allocations();
    drop(black_box(Box::new(0u64)));
    allocations() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary runs on the system allocator, as production does:
    /// the counter must say it is not live rather than report 0.
    #[test]
    fn not_installed_without_global_allocator() {
        assert!(!installed());
    }
}
