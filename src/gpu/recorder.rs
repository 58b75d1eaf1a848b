//! The command recorder: launches go into one shared command encoder, consecutive launches share
//! one compute pass (wgpu orders them and inserts the barriers), their uniform parameters are
//! staged in chunk buffers written at submit, and bind groups are cached: a repeated computation
//! binds the same pooled buffers, so after its first run it creates none. Counters of this work
//! are kept in [`HostStats`].

use std::rc::Rc;

use arrayvec::ArrayVec;

use super::deferred::Deferred;
use super::kernels::{Kernel, Signature, MAX_STORAGE_BINDINGS, MAX_TEXTURE_BINDINGS};
use super::shader::{Access, Binding, Shader, UniformParams};
use super::Gpu;

/// Bytes reserved per kernel launch for its uniform parameters.
const UNIFORM_SLOT: u64 = 256;
/// Launches per uniform chunk buffer.
const SLOTS_PER_CHUNK: u64 = 256;
/// Cached bind groups kept at most; the cache starts over when it is full.
const MAX_CACHED_BIND_GROUPS: usize = 16384;
/// One uniform buffer holding the parameters of up to [`SLOTS_PER_CHUNK`] launches, plus its CPU copy.
struct UniformChunk {
    buffer: wgpu::Buffer,
    staged: Vec<u8>,
}

/// The open command encoder, its open compute pass, and the uniform parameters of the launches
/// recorded into it.
#[derive(Default)]
pub(super) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    /// The compute pass launches are recorded into; it locks `encoder` until it is dropped.
    pub(super) pass: Option<wgpu::ComputePass<'static>>,
    chunks: Vec<UniformChunk>,
    /// Launches recorded since the last submit.
    launches: u64,
    /// Commands kept back until their pipelines are made (`deferred.rs`).
    pub(super) deferred: Vec<Deferred>,
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

/// A texture bound to one binding of a kernel.
pub struct TextureArg<'a> {
    /// The binding in the WGSL file.
    pub binding: Binding,
    /// The texture's view.
    pub view: &'a wgpu::TextureView,
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
    /// Copies of storage buffers into textures recorded ([`Gpu::texture_copy`]).
    pub texture_copies: u64,
    /// Bytes those copies moved.
    pub bytes_copied: u64,
    /// Copies not recorded because a texture slot still held them (the same range of a buffer
    /// that no launch has written since).
    pub copies_reused: u64,
    /// Compute passes those copies ended (a copy is recorded outside any pass; the next launch
    /// begins a new one).
    pub passes_ended_by_copies: u64,
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
            texture_copies: self.texture_copies - o.texture_copies,
            bytes_copied: self.bytes_copied - o.bytes_copied,
            copies_reused: self.copies_reused - o.copies_reused,
            passes_ended_by_copies: self.passes_ended_by_copies - o.passes_ended_by_copies,
        }
    }
}

/// What identifies a bind group: the layout, the uniform slot, every bound buffer range and every
/// bound texture. Held inline, so that looking a launch's group up does not allocate.
pub(super) type BindKey = (
    usize,
    usize,
    u64,
    ArrayVec<(u32, wgpu::Buffer, u64, u64), MAX_STORAGE_BINDINGS>,
    ArrayVec<(u32, wgpu::TextureView), MAX_TEXTURE_BINDINGS>,
);

impl Recorder {
    /// Whether work has been recorded, or kept to record, since the last submit.
    pub(super) fn has_work(&self) -> bool {
        self.encoder.is_some() || !self.deferred.is_empty()
    }

    /// Whether a compute pass is open (launches recorded since the last copy or submit), counting
    /// the commands kept back as recorded.
    pub(super) fn has_open_pass(&self) -> bool {
        match self.deferred.last() {
            Some(command) => matches!(command, Deferred::Launch { .. }),
            None => self.pass.is_some(),
        }
    }
}

impl Gpu {
    /// The host-side recording counters so far.
    pub fn host_stats(&self) -> HostStats {
        self.0.stats.get()
    }

    pub(super) fn count(&self, f: impl FnOnce(&mut HostStats)) {
        let mut stats = self.0.stats.get();
        f(&mut stats);
        self.0.stats.set(stats);
    }

    /// Runs `f` with the shared command encoder (ending the open compute pass), creating it if
    /// needed, after the commands kept back are recorded.
    pub(crate) fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        self.settle();
        self.encoder_now(f)
    }

    /// [`Gpu::with_encoder`] without recording the commands kept back first.
    pub(super) fn encoder_now<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
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
    pub(super) fn begin_pass(
        &self,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
    ) -> wgpu::ComputePass<'static> {
        self.count(|s| s.passes += 1);
        self.encoder_now(|encoder| {
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
        textures: &[TextureArg],
    ) -> wgpu::BindGroup {
        let key: BindKey = (
            Rc::as_ptr(layout) as usize,
            uniform.0,
            uniform.1,
            args.iter()
                .map(|a| (a.binding.index, a.buffer.clone(), a.offset, a.size))
                .collect(),
            textures
                .iter()
                .map(|t| (t.binding.index, t.view.clone()))
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
        entries.extend(textures.iter().map(|t| wgpu::BindGroupEntry {
            binding: t.binding.index,
            resource: wgpu::BindingResource::TextureView(t.view),
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
        self.dispatch_with_textures(kernel, params, (args, &[]), workgroups, flops);
    }

    /// [`Gpu::dispatch_counted`] of a kernel that also binds textures.
    pub(crate) fn dispatch_with_textures<P: UniformParams>(
        &self,
        kernel: &Kernel,
        params: &P,
        (args, textures): (&[BufferArg], &[TextureArg]),
        workgroups: [u32; 3],
        flops: f64,
    ) {
        if workgroups.contains(&0) {
            return;
        }
        for a in args
            .iter()
            .filter(|a| a.binding.access == Access::ReadWrite)
        {
            self.forget_copies_of(a.buffer);
        }
        let params = bytemuck::bytes_of(params);
        let signature: Signature = args
            .iter()
            .map(|a| a.binding)
            .chain(textures.iter().map(|t| t.binding))
            .map(|b| (b.index, b.access))
            .collect();
        let profiling = self.0.profiler.borrow().is_some();
        if profiling {
            // a profiled launch is recorded at once, in a pass of its own
            self.settle();
        }
        let (pipeline, layout) =
            self.0
                .kernels
                .borrow_mut()
                .plan(self.device(), kernel, &signature);
        let uniform = self.push_uniform(params);
        let bind_group = self.bind_group(&layout, uniform, args, textures);
        self.count(|s| s.dispatches += 1);
        if !profiling {
            self.record_launch(pipeline, bind_group, workgroups);
            return;
        }
        let pipeline = self.made(pipeline);
        let (queries, wall) = {
            let mut profiler = self.0.profiler.borrow_mut();
            let p = profiler.as_mut().expect("the profiler was on above");
            let bytes = args.iter().map(|a| a.size).sum();
            let name = format!("{}:{}", kernel.shader.stem, kernel.entry);
            (p.begin(self.device(), name, flops, bytes), p.wall_clock())
        };
        if wall {
            // wall clock: time this launch alone
            self.wait();
            if let Some(p) = self.0.profiler.borrow_mut().as_mut() {
                p.start_wall();
            }
        }
        // a pass of its own, ended at once: its timestamps bracket this launch alone
        let mut pass = self.begin_pass(queries.as_ref().map(|(set, i)| (set, *i)));
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        drop(pass);
        if wall {
            self.wait();
            if let Some(p) = self.0.profiler.borrow_mut().as_mut() {
                p.stop_wall();
            }
        }
    }

    /// Submits all recorded work without waiting for it.
    pub fn flush(&self) {
        self.settle();
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
        self.forget_all_copies();
        if let Some(encoder) = rec.encoder.take() {
            let index = self.0.ctx.queue.submit([encoder.finish()]);
            *self.0.last_submission.borrow_mut() = Some(index);
            self.count(|s| s.submissions += 1);
        }
    }

    /// Submits a training step's recorded work and waits: on an adapter of type CPU (a software
    /// driver, whose threads already fill the host's cores) for this step, since recording the next
    /// step meanwhile made training slower there, not faster; elsewhere for the step before, so
    /// that the host records the next step while the GPU runs this one and stays at most one step
    /// ahead. A failed wait is kept for the next [`Gpu::sync`].
    pub fn end_step(&self) {
        if self.report().info.device_type == wgpu::DeviceType::Cpu {
            self.wait();
            return;
        }
        let previous = self.0.last_submission.borrow_mut().take();
        self.flush();
        if let Some(index) = previous {
            self.poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            });
        }
    }
}
