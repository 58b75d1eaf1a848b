//! Buffer pool: buffers are recycled by (size class, usage), so a repeated computation allocates
//! nothing after its first run. Every buffer vqgpu creates goes through [`BufferPool::create`],
//! which counts them. A request takes the oldest free buffer of its class, so a computation
//! repeated from the same free set gets the same buffers (and the bind-group cache hits).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};

/// Byte granularity of pooled sizes: requests are rounded up to a multiple of this.
const SIZE_GRANULE: u64 = 256;

type PoolKey = (u64, u32);

/// Free buffers by size class and usage (each by its creation number), plus a count of every
/// buffer ever created.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<PoolKey, BTreeMap<usize, wgpu::Buffer>>,
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
    let recycled = pool
        .borrow_mut()
        .free
        .get_mut(&key)
        .and_then(BTreeMap::pop_first);
    let (serial, buffer) = recycled.unwrap_or_else(|| {
        let mut p = pool.borrow_mut();
        let buffer = p.create(device, size, usage);
        (p.created, buffer)
    });
    PooledBuffer {
        buffer: Some(buffer),
        key,
        serial,
        pool: Rc::downgrade(pool),
    }
}

/// A buffer on loan from the pool; it goes back when dropped.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    key: PoolKey,
    /// Creation number: the pool hands out its oldest free buffer first.
    serial: usize,
    pool: Weak<RefCell<BufferPool>>,
}

impl PooledBuffer {
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("pooled buffer used after release")
    }

    /// Allocated size in bytes (the size class, at least the requested size).
    pub fn size(&self) -> u64 {
        self.key.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buffer), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            pool.borrow_mut()
                .free
                .entry(self.key)
                .or_default()
                .insert(self.serial, buffer);
        }
    }
}
