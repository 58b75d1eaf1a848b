//! Buffer pool: buffers are recycled by (size class, usage), so a repeated computation allocates
//! nothing after its first run. Every buffer vqgpu creates goes through [`BufferPool::create`],
//! which counts them. A request takes the oldest free buffer of its class, so a computation
//! repeated from the same free set gets the same buffers (and the bind-group cache hits).
//!
//! A loan ([`PooledBuffer`]) is shared by cloning it (a tensor and its views and reshapes share
//! one) and goes back to the pool when its last clone is dropped. The shared part is made once per
//! buffer and recycled with it, so taking a buffer from the pool does not touch the heap.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

/// Byte granularity of pooled sizes: requests are rounded up to a multiple of this.
const SIZE_GRANULE: u64 = 256;

type PoolKey = (u64, u32);

/// Free buffers by size class and usage (each by its creation number), plus a count of every
/// buffer ever created.
#[derive(Default)]
pub(crate) struct BufferPool {
    /// Per class, newest first: the oldest is popped from the end, and a class's list keeps its
    /// capacity, so returning and taking buffers does not allocate after the first step.
    free: HashMap<PoolKey, Vec<Rc<Loan>>>,
    created: usize,
    bytes: u64,
}

/// Shared handle to the pool; pooled buffers keep a weak one to return themselves.
pub(crate) type SharedPool = Rc<RefCell<BufferPool>>;

impl BufferPool {
    /// Number of `create_buffer` calls made so far.
    pub fn created(&self) -> usize {
        self.created
    }

    /// Bytes of every buffer created so far (none is ever freed before the device: the peak).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Creates a buffer (and counts it); bypasses recycling.
    pub fn create(
        &mut self,
        device: &wgpu::Device,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        self.created += 1;
        self.bytes += size;
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    }
}

/// Rounds a byte size up to its pool size class.
pub(crate) fn size_class(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(SIZE_GRANULE) * SIZE_GRANULE
}

/// Takes a buffer of at least `bytes` from the pool, creating one if none is free.
pub(crate) fn acquire(
    pool: &SharedPool,
    device: &wgpu::Device,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> PooledBuffer {
    let size = size_class(bytes);
    let key = (size, usage.bits());
    let recycled = pool.borrow_mut().free.get_mut(&key).and_then(Vec::pop);
    let loan = match recycled {
        Some(loan) => loan,
        None => {
            let mut p = pool.borrow_mut();
            let buffer = p.create(device, size, usage);
            Rc::new(Loan {
                buffer,
                key,
                serial: p.created,
                pool: Rc::downgrade(pool),
            })
        }
    };
    PooledBuffer(loan)
}

/// A pooled buffer and where it goes back to.
struct Loan {
    buffer: wgpu::Buffer,
    key: PoolKey,
    /// Creation number: the pool hands out its oldest free buffer first.
    serial: usize,
    pool: Weak<RefCell<BufferPool>>,
}

/// A buffer on loan from the pool; clones share it, and it goes back when the last is dropped.
#[derive(Clone)]
pub struct PooledBuffer(Rc<Loan>);

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.0.buffer
    }

    /// Allocated size in bytes (the size class, at least the requested size).
    pub fn size(&self) -> u64 {
        self.0.key.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        // the last clone hands the shared part back to the pool, which keeps it for the next loan
        if Rc::strong_count(&self.0) == 1 {
            if let Some(pool) = self.0.pool.upgrade() {
                let mut pool = pool.borrow_mut();
                let free = pool.free.entry(self.0.key).or_default();
                let at = free.partition_point(|l| l.serial > self.0.serial);
                free.insert(at, Rc::clone(&self.0));
            }
        }
    }
}
