//! The counting allocator counts the allocations of the calling thread only. Needs no GPU.

use vqgpu::heap::{thread_allocations, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn allocations_are_counted_per_thread() {
    let before = thread_allocations().expect("the counting allocator is installed");
    let mut v: Vec<u64> = Vec::with_capacity(4);
    let after_one = thread_allocations().unwrap();
    v.reserve(1000); // grows: one reallocation
    let after_two = thread_allocations().unwrap();
    // another thread's allocations are its own (starting it allocates a few here)
    std::thread::spawn(|| {
        let start = thread_allocations().unwrap();
        let boxes: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
        assert_eq!(thread_allocations().unwrap(), start + 1001);
        drop(boxes);
    })
    .join()
    .unwrap();
    let after_thread = thread_allocations().unwrap();
    drop(v);
    assert_eq!(after_one, before + 1);
    assert_eq!(after_two, before + 2);
    assert!(
        after_thread - after_two < 100,
        "another thread's allocations were counted here: {}",
        after_thread - after_two
    );
}
