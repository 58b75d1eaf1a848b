//! The GPU context: adapter and device, pipeline cache, buffer pool, and the command recorder.
//!
//! Kernels are recorded into one shared command encoder (see `recorder.rs`) and submitted only at
//! sync points (a download, an upload after recorded work, or [`Gpu::sync`]).

mod context;
mod deferred;
mod kernel_set;
mod kernels;
mod pool;
pub mod profile;
mod recorder;
mod shader;
mod textures;
pub mod timing;

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::rc::Rc;

use foldhash::HashMap;

pub use context::{
    list_adapters, AdapterReport, Backend, Collectives, GpuFeatures, GpuOptions,
    MAX_COLLECTIVE_LANES,
};
pub(crate) use kernel_set::CPU_LOOP_LIMIT;
pub use kernel_set::{KernelSet, CPU_SET_LANES};
pub use kernels::Kernel;
pub use pool::PooledBuffer;
pub use recorder::{BufferArg, HostStats, TextureArg};
pub use shader::{
    Access, Binding, Field, Library, OverrideAxis, ParamsLayout, Shader, UniformParams, WgslScalar,
};
use textures::TEXTURE_SLOTS;
pub use textures::{TEXELS_PER_ROW, TEXEL_ROW_SHIFT};
pub use wgpu::DeviceType;

use crate::error::{Error, Result};
use context::DeviceContext;
use kernels::KernelCache;
use pool::SharedPool;
use recorder::{BindKey, Recorder};

/// Threads per workgroup of every 1-D kernel.
pub const WORKGROUP_1D: u32 = 256;

/// Storage usage of every tensor buffer.
const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

struct Inner {
    ctx: DeviceContext,
    pool: SharedPool,
    kernels: RefCell<KernelCache>,
    recorder: RefCell<Recorder>,
    bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    stats: Cell<HostStats>,
    profiler: RefCell<Option<profile::Profiler>>,
    /// The latest submission, for [`Gpu::end_step`].
    last_submission: RefCell<Option<wgpu::SubmissionIndex>>,
    /// The texture slots of [`Gpu::texture_copy`].
    textures: RefCell<[Option<textures::SlotTexture>; TEXTURE_SLOTS]>,
    /// The texture a kernel binds where it reads no copy.
    placeholder_texture: std::cell::OnceCell<wgpu::TextureView>,
}

/// A handle to the GPU; cheap to clone, not shared across threads. The device and everything made
/// on it are released under a process-wide lock when the last handle goes (see
/// `context::lifecycle_lock`), so threads with a GPU each may come and go at will.
#[derive(Clone)]
pub struct Gpu(ManuallyDrop<Rc<Inner>>);

impl Drop for Gpu {
    fn drop(&mut self) {
        let _lifecycle = (Rc::strong_count(&self.0) == 1).then(context::lifecycle_lock);
        // SAFETY: `self.0` is dropped exactly once, here, and never used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.0) };
    }
}

impl Gpu {
    /// Opens the adapter chosen by `options` (or `VQGPU_ADAPTER`), with its real limits.
    pub fn new(options: &GpuOptions) -> Result<Self> {
        let ctx = DeviceContext::open(options)?;
        let kernels = RefCell::new(KernelCache::new(ctx.collectives));
        Ok(Self(ManuallyDrop::new(Rc::new(Inner {
            ctx,
            pool: SharedPool::default(),
            kernels,
            recorder: RefCell::default(),
            bind_groups: RefCell::default(),
            stats: Cell::default(),
            profiler: RefCell::default(),
            last_submission: RefCell::default(),
            textures: RefCell::default(),
            placeholder_texture: std::cell::OnceCell::new(),
        }))))
    }

    /// Name, backend, limits and features of the adapter in use.
    pub fn report(&self) -> &AdapterReport {
        &self.0.ctx.report
    }

    /// The adapter name.
    pub fn adapter_name(&self) -> &str {
        &self.0.ctx.report.info.name
    }

    /// The kernel variants this device runs.
    pub fn kernel_set(&self) -> KernelSet {
        self.0.ctx.kernel_set
    }

    /// How the collective operations of a workgroup (the reductions' sums) are compiled.
    pub fn collectives(&self) -> Collectives {
        self.0.ctx.collectives
    }

    /// Whether kernels read their large operands from texture copies: the CPU kernel set's, unless
    /// turned off ([`crate::GpuOptions::texture_copies`]).
    pub fn texture_copies(&self) -> bool {
        self.0.ctx.texture_copies
    }

    /// Optional features available on this device.
    pub fn features(&self) -> GpuFeatures {
        self.0.ctx.report.features
    }

    /// The device limits in force (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.ctx.report.limits
    }

    /// The wgpu device, for code that needs raw access (timing queries).
    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.0.ctx.device
    }

    /// Nanoseconds per GPU timestamp tick.
    pub(crate) fn timestamp_period_ns(&self) -> f64 {
        self.0.ctx.queue.get_timestamp_period() as f64
    }

    /// How many GPU buffers have been created so far (pool misses plus internal buffers).
    pub fn buffers_created(&self) -> usize {
        self.0.pool.borrow().created()
    }

    /// Bytes of GPU buffers vqgpu has created so far: buffers are pooled and kept until the device
    /// closes, so this is also the peak of vqgpu's own GPU memory.
    pub fn buffer_bytes(&self) -> u64 {
        self.0.pool.borrow().bytes()
    }

    /// How many command buffers have been submitted so far (ops record; only sync points submit).
    pub fn submissions(&self) -> usize {
        self.0.stats.get().submissions as usize
    }

    /// How many compute pipelines have been made so far, or planned: a planned one is made before
    /// the next submit.
    pub fn pipelines_compiled(&self) -> usize {
        self.0.kernels.borrow().pipeline_count()
    }

    /// Largest storage buffer a kernel may bind, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        let l = self.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// Takes a storage buffer of at least `bytes` from the pool. An oversized request is recorded as
    /// an error reported at the next sync, and a small buffer is returned in its place.
    pub(crate) fn alloc(&self, bytes: u64) -> PooledBuffer {
        let limit = self.max_binding_bytes();
        let bytes = if bytes > limit {
            self.0.ctx.errors.record_error(Error::BufferTooLarge {
                requested: bytes,
                limit,
                which: "max_storage_buffer_binding_size",
            });
            4
        } else {
            bytes
        };
        pool::acquire(&self.0.pool, self.device(), bytes, STORAGE_USAGE)
    }

    /// Creates a buffer outside the pool (counted like pooled ones).
    pub(crate) fn create_buffer(&self, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.0.pool.borrow_mut().create(self.device(), bytes, usage)
    }

    /// Writes bytes into a buffer, after all work recorded so far.
    pub(crate) fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        // recorded work (launches or copies) always lives in the encoder; submitting it also
        // empties the texture slots, so no copy of `buffer` is read after this write
        if self.0.recorder.borrow().has_work() {
            self.flush();
        }
        self.count(|s| s.bytes_uploaded += data.len() as u64);
        self.0.ctx.queue.write_buffer(buffer, offset, data);
    }

    /// Workgroup counts covering `groups` workgroups in a 2-D grid within the per-dimension limit.
    /// Kernels linearise the id as `gid.x + gid.y * num_workgroups.x * size`.
    pub(crate) fn grid(&self, groups: u32) -> [u32; 3] {
        let max = self.limits().max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            [groups, 1, 1]
        } else {
            [max, groups.div_ceil(max), 1]
        }
    }

    /// Workgroups for one thread per element, `WORKGROUP_1D` threads each.
    pub(crate) fn grid_for(&self, elements: usize) -> [u32; 3] {
        self.grid((elements as u64).div_ceil(WORKGROUP_1D as u64) as u32)
    }

    /// Submits all recorded work, waits for it, and reports any GPU error since the last sync.
    pub fn sync(&self) -> Result<()> {
        self.wait();
        self.check_errors()
    }

    /// Submits all recorded work and waits for it; errors (a failed wait too) are kept for the
    /// next [`Gpu::sync`].
    pub(crate) fn wait(&self) {
        self.flush();
        self.poll(wgpu::PollType::wait_indefinitely());
    }

    /// Waits as `wait` says; a failed wait is kept for the next [`Gpu::sync`].
    fn poll(&self, wait: wgpu::PollType) {
        if let Err(e) = self.0.ctx.device.poll(wait) {
            self.0.ctx.errors.record_error(Error::Gpu(e.to_string()));
        }
    }

    fn check_errors(&self) -> Result<()> {
        match self.0.ctx.errors.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Copies `bytes` bytes at `offset` of `buffer` back to the CPU (a sync point).
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let staging = pool::acquire(
            &self.0.pool,
            self.device(),
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        self.with_encoder(|e| e.copy_buffer_to_buffer(buffer, offset, staging.buffer(), 0, bytes));
        self.flush();
        let slice = staging.buffer().slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.sync()?;
        rx.recv()
            .map_err(|e| Error::Readback(e.to_string()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Readback(e.to_string()))?
            .to_vec();
        staging.buffer().unmap();
        Ok(data)
    }
}
