//! The GPU context: adapter and device, pipeline cache, buffer pool, and the command recorder.
//!
//! Kernels are recorded into one shared command encoder and submitted only at sync points
//! (a download, an upload after recorded work, or [`Gpu::sync`]). Consecutive launches share one
//! compute pass (wgpu orders them and inserts the barriers), and bind groups are cached: a repeated
//! computation binds the same pooled buffers, so after its first run it creates none.

mod context;
mod kernels;
mod pool;
pub mod profile;
mod shader;
pub mod timing;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::rc::Rc;

pub use context::{list_adapters, AdapterReport, Backend, GpuFeatures, GpuOptions};
pub use kernels::Kernel;
pub use pool::PooledBuffer;
pub use shader::{
    Access, Binding, Field, OverrideAxis, ParamsLayout, Shader, UniformParams, WgslScalar,
};

use crate::error::{Error, Result};
use context::DeviceContext;
use kernels::{KernelCache, Signature};
use pool::SharedPool;

/// Bytes reserved per kernel launch for its uniform parameters.
const UNIFORM_SLOT: u64 = 256;
/// Launches per uniform chunk buffer.
const SLOTS_PER_CHUNK: u64 = 256;
/// Cached bind groups kept at most; the cache starts over when it is full.
const MAX_CACHED_BIND_GROUPS: usize = 16384;
/// Threads per workgroup of every 1-D kernel.
pub const WORKGROUP_1D: u32 = 256;

/// Storage usage of every tensor buffer.
const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// One uniform buffer holding the parameters of up to [`SLOTS_PER_CHUNK`] launches, plus its CPU copy.
struct UniformChunk {
    buffer: wgpu::Buffer,
    staged: Vec<u8>,
}

/// The open command encoder, its open compute pass, and the uniform parameters of the launches
/// recorded into it.
#[derive(Default)]
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    /// The compute pass launches are recorded into; it locks `encoder` until it is dropped.
    pass: Option<wgpu::ComputePass<'static>>,
    chunks: Vec<UniformChunk>,
    /// Launches recorded since the last submit.
    launches: u64,
}

/// A storage buffer range bound to one binding of a kernel.
pub struct BufferArg<'a> {
    /// The binding in the WGSL file.
    pub binding: Binding,
    /// The buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset (a multiple of the adapter's storage offset alignment).
    pub offset: u64,
    /// Byte size of the range.
    pub size: u64,
}

/// Counters of the host-side work of recording GPU commands since the device was opened; the
/// difference of two snapshots is the work in between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Kernel launches recorded.
    pub dispatches: u64,
    /// Compute passes begun (including timing passes).
    pub passes: u64,
    /// Bind groups created (cache misses).
    pub bind_groups: u64,
    /// Bytes of data written to GPU buffers (tensor uploads).
    pub bytes_uploaded: u64,
    /// Bytes of kernel parameters written to uniform buffers.
    pub uniform_bytes: u64,
    /// Command buffers submitted.
    pub submissions: u64,
}

impl std::ops::Sub for HostStats {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            dispatches: self.dispatches - o.dispatches,
            passes: self.passes - o.passes,
            bind_groups: self.bind_groups - o.bind_groups,
            bytes_uploaded: self.bytes_uploaded - o.bytes_uploaded,
            uniform_bytes: self.uniform_bytes - o.uniform_bytes,
            submissions: self.submissions - o.submissions,
        }
    }
}

/// What identifies a bind group: the layout, the uniform slot and every bound buffer range.
type BindKey = (usize, usize, u64, Vec<(u32, wgpu::Buffer, u64, u64)>);

struct Inner {
    ctx: DeviceContext,
    pool: SharedPool,
    kernels: RefCell<KernelCache>,
    recorder: RefCell<Recorder>,
    bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    stats: Cell<HostStats>,
    profiler: RefCell<Option<profile::Profiler>>,
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
        Ok(Self(ManuallyDrop::new(Rc::new(Inner {
            ctx,
            pool: SharedPool::default(),
            kernels: RefCell::default(),
            recorder: RefCell::default(),
            bind_groups: RefCell::default(),
            stats: Cell::default(),
            profiler: RefCell::default(),
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

    /// The host-side recording counters so far.
    pub fn host_stats(&self) -> HostStats {
        self.0.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut HostStats)) {
        let mut stats = self.0.stats.get();
        f(&mut stats);
        self.0.stats.set(stats);
    }

    /// How many compute pipelines have been compiled so far.
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
        // recorded work (launches or copies) always lives in the encoder
        if self.0.recorder.borrow().encoder.is_some() {
            self.flush();
        }
        self.count(|s| s.bytes_uploaded += data.len() as u64);
        self.0.ctx.queue.write_buffer(buffer, offset, data);
    }

    /// Runs `f` with the shared command encoder (ending the open compute pass), creating it if
    /// needed.
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut rec = self.0.recorder.borrow_mut();
        rec.pass = None;
        let encoder = rec.encoder.get_or_insert_with(|| {
            self.device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(encoder)
    }

    /// Begins a compute pass on the shared encoder (ending the open one), with timestamp writes
    /// at its two ends when `timestamps` names a query set and the first of two indices.
    fn begin_pass(&self, timestamps: Option<(&wgpu::QuerySet, u32)>) -> wgpu::ComputePass<'static> {
        self.count(|s| s.passes += 1);
        self.with_encoder(|encoder| {
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: timestamps.map(|(set, index)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(index),
                            end_of_pass_write_index: Some(index + 1),
                        }
                    }),
                })
                .forget_lifetime()
        })
    }

    /// The bind group of one launch, from the cache or created (and cached).
    fn bind_group(
        &self,
        layout: &Rc<wgpu::BindGroupLayout>,
        uniform: (usize, u64),
        args: &[BufferArg],
    ) -> wgpu::BindGroup {
        let key: BindKey = (
            Rc::as_ptr(layout) as usize,
            uniform.0,
            uniform.1,
            args.iter()
                .map(|a| (a.binding.index, a.buffer.clone(), a.offset, a.size))
                .collect(),
        );
        if let Some(group) = self.0.bind_groups.borrow().get(&key) {
            return group.clone();
        }
        let rec = self.0.recorder.borrow();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.chunks[uniform.0].buffer,
                offset: uniform.1,
                size: wgpu::BufferSize::new(UNIFORM_SLOT),
            }),
        }];
        entries.extend(args.iter().map(|a| wgpu::BindGroupEntry {
            binding: a.binding.index,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: a.buffer,
                offset: a.offset,
                size: wgpu::BufferSize::new(a.size),
            }),
        }));
        let group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        });
        self.count(|s| s.bind_groups += 1);
        let mut cache = self.0.bind_groups.borrow_mut();
        if cache.len() >= MAX_CACHED_BIND_GROUPS {
            cache.clear();
        }
        cache.insert(key, group.clone());
        group
    }

    /// Reserves a uniform slot for `params` and returns (chunk index, byte offset).
    fn push_uniform(&self, params: &[u8]) -> (usize, u64) {
        assert!(
            params.len() as u64 <= UNIFORM_SLOT,
            "kernel parameters exceed a uniform slot"
        );
        let mut rec = self.0.recorder.borrow_mut();
        let chunk = (rec.launches / SLOTS_PER_CHUNK) as usize;
        let offset = (rec.launches % SLOTS_PER_CHUNK) * UNIFORM_SLOT;
        if chunk == rec.chunks.len() {
            let buffer = self.create_buffer(
                UNIFORM_SLOT * SLOTS_PER_CHUNK,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            rec.chunks.push(UniformChunk {
                buffer,
                staged: vec![0; (UNIFORM_SLOT * SLOTS_PER_CHUNK) as usize],
            });
        }
        let start = offset as usize;
        rec.chunks[chunk].staged[start..start + params.len()].copy_from_slice(params);
        rec.launches += 1;
        (chunk, offset)
    }

    /// Records one launch of `entry` of `shader` with default constants and uniform block `params`.
    pub(crate) fn run<P: UniformParams>(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        params: &P,
        args: &[BufferArg],
        workgroups: [u32; 3],
    ) {
        self.dispatch(&Kernel::new(shader, entry), params, args, workgroups);
    }

    /// Records one kernel launch into the shared encoder.
    pub(crate) fn dispatch<P: UniformParams>(
        &self,
        kernel: &Kernel,
        params: &P,
        args: &[BufferArg],
        workgroups: [u32; 3],
    ) {
        self.dispatch_counted(kernel, params, args, workgroups, 0.0);
    }

    /// [`Gpu::dispatch`] of a kernel that does `flops` floating-point operations (for profiles).
    pub(crate) fn dispatch_counted<P: UniformParams>(
        &self,
        kernel: &Kernel,
        params: &P,
        args: &[BufferArg],
        workgroups: [u32; 3],
        flops: f64,
    ) {
        if workgroups.contains(&0) {
            return;
        }
        let params = bytemuck::bytes_of(params);
        let signature: Signature = args
            .iter()
            .map(|a| (a.binding.index, a.binding.access))
            .collect();
        let (pipeline, layout) = self
            .0
            .kernels
            .borrow_mut()
            .get(self.device(), kernel, &signature);
        let uniform = self.push_uniform(params);
        let bind_group = self.bind_group(&layout, uniform, args);
        self.count(|s| s.dispatches += 1);
        let profiled = self.0.profiler.borrow_mut().as_mut().map(|p| {
            let bytes = args.iter().map(|a| a.size).sum();
            let name = format!("{}:{}", kernel.shader.stem, kernel.entry);
            (p.begin(self.device(), name, flops, bytes), p.wall_clock())
        });
        if let Some((_, true)) = profiled {
            // wall clock: time this launch alone
            let _ = self.sync();
            if let Some(p) = self.0.profiler.borrow_mut().as_mut() {
                p.start_wall();
            }
        }
        let record = |pass: &mut wgpu::ComputePass<'static>| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        };
        match profiled {
            Some((queries, wall)) => {
                // a pass of its own, ended at once: its timestamps bracket this launch alone
                let mut pass = self.begin_pass(queries.as_ref().map(|(set, i)| (set, *i)));
                record(&mut pass);
                drop(pass);
                if wall {
                    let _ = self.sync();
                    if let Some(p) = self.0.profiler.borrow_mut().as_mut() {
                        p.stop_wall();
                    }
                }
            }
            None => {
                let open = self.0.recorder.borrow_mut().pass.take();
                let mut pass = open.unwrap_or_else(|| self.begin_pass(None));
                record(&mut pass);
                self.0.recorder.borrow_mut().pass = Some(pass);
            }
        }
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

    /// Submits all recorded work without waiting for it.
    pub fn flush(&self) {
        let mut rec = self.0.recorder.borrow_mut();
        let used = rec.launches;
        for (i, chunk) in rec.chunks.iter().enumerate() {
            let first = i as u64 * SLOTS_PER_CHUNK;
            if first >= used {
                break;
            }
            let bytes = ((used - first).min(SLOTS_PER_CHUNK) * UNIFORM_SLOT) as usize;
            self.0
                .ctx
                .queue
                .write_buffer(&chunk.buffer, 0, &chunk.staged[..bytes]);
        }
        self.count(|s| s.uniform_bytes += used * UNIFORM_SLOT);
        rec.launches = 0;
        rec.pass = None;
        if let Some(encoder) = rec.encoder.take() {
            self.0.ctx.queue.submit([encoder.finish()]);
            self.count(|s| s.submissions += 1);
        }
    }

    /// Submits all recorded work, waits for it, and reports any GPU error since the last sync.
    pub fn sync(&self) -> Result<()> {
        self.flush();
        self.0
            .ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        self.check_errors()
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
