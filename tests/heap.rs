//! The counting allocator counts the allocations of the calling thread only (needs no GPU), and
//! making a tensor from the pool after warm-up allocates only its handle.

mod common;
use common::gpu;
use vqgpu::heap::{thread_allocations, CountingAllocator};
use vqgpu::Tensor;

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

#[test]
fn a_tensor_from_the_pool_allocates_only_its_handle() {
    let gpu = gpu();
    let make = || {
        let nchw = Tensor::uninit(&gpu, &[2, 3, 4, 5]);
        let reshaped = nchw.reshape(&[6, 20]);
        let split = Tensor::uninit(&gpu, &[2, 2, 3, 4, 5]); // five dimensions, as split sums have
        let detached = split.detach();
        (nchw, reshaped, split, detached)
    };
    drop(make()); // warm-up: creates the two buffers, which go back to the pool
    let before = thread_allocations().expect("the counting allocator is installed");
    let tensors = make();
    let made = thread_allocations().unwrap() - before;
    drop(tensors);
    // the shape is kept inline and the pool's loan is recycled with its buffer
    assert_eq!(made, 4, "four tensor handles made {made} heap allocations");
}
