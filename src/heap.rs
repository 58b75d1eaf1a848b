//! The binary's heap allocator: mimalloc, counting the allocations of each thread for the host
//! figures of the step profiler (`bench vqvae --profile`). The `vqgpu` binary installs
//! [`CountingAllocator`] as its global allocator; a program that does not gets no count
//! ([`thread_allocations`] is `None`) and keeps its own allocator.
//!
//! mimalloc rather than the system allocator: recording a training step allocates and frees
//! about a thousand small blocks on the host (in this crate and in wgpu), and with glibc's
//! allocator that took about a third of the step's recording time. mimalloc also stands in for
//! `malloc` and `free` in the whole process (its `override` feature, in any program that links
//! this crate), so C libraries use it too: the software Vulkan driver allocates for every command
//! it records, and with glibc's allocator that took about a fifth of the CPU set's recording
//! time (docs/benchmarks.md). The count is of the Rust allocations only.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// mimalloc, counting every allocation and reallocation of the calling thread.
pub struct CountingAllocator;

static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // const-initialised and without a destructor, so reading it never allocates
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // a thread being torn down has no counter left; its allocations go uncounted
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to mimalloc; counting does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `alloc`'s contract, which is mimalloc's.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` and `layout` come from this allocator, which is mimalloc.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
}

/// Heap allocations (and reallocations) the calling thread has made so far, or `None` where
/// [`CountingAllocator`] is not the global allocator.
pub fn thread_allocations() -> Option<u64> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| ALLOCATIONS.try_with(Cell::get).unwrap_or(0))
}
