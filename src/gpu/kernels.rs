//! Kernels (an entry point of a [`Shader`] specialised by override constants) and the pipeline
//! cache keyed by (shader, entry point, override constants, binding signature).

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use foldhash::HashMap;

use super::context::Collectives;
use super::shader::{Access, Shader};

/// Override constants a kernel sets at most (the blocked product with texture copies sets 10).
pub const MAX_CONSTANTS: usize = 12;
/// Storage buffers a kernel binds at most: WebGPU's default limit per shader stage.
pub const MAX_STORAGE_BINDINGS: usize = 8;
/// Textures a kernel binds at most.
pub const MAX_TEXTURE_BINDINGS: usize = 4;

/// One entry point of a shader, specialised by override constants. Held inline, so that making
/// one for every launch does not allocate.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The WGSL file.
    pub shader: &'static Shader,
    /// The `@compute` entry point.
    pub entry: &'static str,
    /// Values for the file's `override` constants (booleans as 0/1).
    pub constants: ArrayVec<(&'static str, f64), MAX_CONSTANTS>,
}

impl Kernel {
    /// An entry point with default override constants.
    pub fn new(shader: &'static Shader, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            constants: ArrayVec::new(),
        }
    }

    /// Sets one override constant (at most [`MAX_CONSTANTS`]).
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }

    /// Sets a boolean override constant.
    pub fn flag(self, name: &'static str, on: bool) -> Self {
        self.with(name, if on { 1.0 } else { 0.0 })
    }
}

/// Binding 0 is always the uniform parameter block; the rest are (binding, access) pairs.
pub(crate) type Signature =
    ArrayVec<(u32, Access), { MAX_STORAGE_BINDINGS + MAX_TEXTURE_BINDINGS }>;

type PipelineKey = (
    &'static str,
    &'static str,
    ArrayVec<(&'static str, u64), MAX_CONSTANTS>,
    Signature,
);

/// Compiled shader modules, layouts and pipelines, each made once.
pub(crate) struct KernelCache {
    /// Which version of the shaders' libraries to compile.
    collectives: Collectives,
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    layouts: HashMap<Signature, Rc<wgpu::BindGroupLayout>>,
    pipelines: HashMap<PipelineKey, PipelineSlot>,
    /// Pipelines planned and not made yet, in the order planned.
    planned: Vec<PipelinePlan>,
}

impl KernelCache {
    /// An empty cache that compiles the shaders' libraries as `collectives` says.
    pub fn new(collectives: Collectives) -> Self {
        Self {
            collectives,
            modules: HashMap::default(),
            layouts: HashMap::default(),
            pipelines: HashMap::default(),
            planned: Vec::new(),
        }
    }

    /// Number of pipelines made or planned so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    fn layout(
        &mut self,
        device: &wgpu::Device,
        signature: &Signature,
    ) -> Rc<wgpu::BindGroupLayout> {
        if let Some(l) = self.layouts.get(signature) {
            return l.clone();
        }
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        entries.extend(
            signature
                .iter()
                .map(|&(binding, access)| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: binding_type(access),
                    count: None,
                }),
        );
        let layout = Rc::new(
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            }),
        );
        self.layouts.insert(signature.clone(), layout.clone());
        layout
    }

    /// The pipeline and bind-group layout for a kernel with the given bindings. A pipeline not
    /// made yet is planned, not made: [`KernelCache::build_planned`] makes every planned one
    /// together, from several threads, and only then can launches that use it be recorded.
    pub fn plan(
        &mut self,
        device: &wgpu::Device,
        kernel: &Kernel,
        signature: &Signature,
    ) -> (PipelineSlot, Rc<wgpu::BindGroupLayout>) {
        let layout = self.layout(device, signature);
        let key: PipelineKey = (
            kernel.shader.stem,
            kernel.entry,
            kernel
                .constants
                .iter()
                .map(|&(n, v)| (n, v.to_bits()))
                .collect(),
            signature.clone(),
        );
        if let Some(slot) = self.pipelines.get(&key) {
            return (slot.clone(), layout);
        }
        let subgroup_library = self.collectives != Collectives::Plain;
        let module = self.modules.entry(kernel.shader.stem).or_insert_with(|| {
            let descriptor = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.shader.stem),
                source: wgpu::ShaderSource::Wgsl(kernel.shader.wgsl(subgroup_library)),
            };
            // SAFETY: only the checks below are dropped, and vqgpu's own shaders uphold them:
            // every loop runs to a bound taken from the uniform block or a constant, and every
            // divisor is a tile constant or a shape the host has validated as non-zero.
            // Buffer bounds checks stay on.
            unsafe { device.create_shader_module_trusted(descriptor, trusted_checks()) }
        });
        let mut constants = kernel.constants.to_vec();
        if let (Some(library), Collectives::Subgroups(lanes)) =
            (kernel.shader.library, self.collectives)
        {
            constants.push((library.lanes_override, f64::from(lanes)));
        }
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let slot = PipelineSlot::Planned(self.planned.len());
        self.planned.push(PipelinePlan {
            key: key.clone(),
            module: module.clone(),
            layout: pipeline_layout,
            entry: kernel.entry,
            constants,
        });
        self.pipelines.insert(key, slot.clone());
        (slot, layout)
    }

    /// Makes every planned pipeline, from as many threads as the machine runs at once (drivers
    /// compile as they make a pipeline, and a new variant can take a second), and returns them
    /// in the order planned: [`PipelineSlot::Planned`]'s index.
    pub fn build_planned(&mut self, device: &wgpu::Device) -> Vec<Rc<wgpu::ComputePipeline>> {
        let plans = std::mem::take(&mut self.planned);
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(plans.len());
        let made: Vec<wgpu::ComputePipeline> = if threads <= 1 {
            plans.iter().map(|plan| plan.make(device)).collect()
        } else {
            let next = AtomicUsize::new(0);
            let mut made: Vec<(usize, wgpu::ComputePipeline)> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut mine = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(plan) = plans.get(i) else {
                                    return mine;
                                };
                                mine.push((i, plan.make(device)));
                            }
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().expect("making a pipeline panicked"))
                    .collect()
            });
            made.sort_by_key(|&(i, _)| i);
            made.into_iter().map(|(_, p)| p).collect()
        };
        plans
            .into_iter()
            .zip(made)
            .map(|(plan, pipeline)| {
                let pipeline = Rc::new(pipeline);
                self.pipelines
                    .insert(plan.key, PipelineSlot::Ready(pipeline.clone()));
                pipeline
            })
            .collect()
    }
}

/// A pipeline of the cache: made, or planned ([`KernelCache::build_planned`]'s index).
#[derive(Clone)]
pub(crate) enum PipelineSlot {
    /// Made.
    Ready(Rc<wgpu::ComputePipeline>),
    /// Planned, to be made with the others planned.
    Planned(usize),
}

/// What making one pipeline takes.
struct PipelinePlan {
    key: PipelineKey,
    module: wgpu::ShaderModule,
    layout: wgpu::PipelineLayout,
    entry: &'static str,
    constants: Vec<(&'static str, f64)>,
}

impl PipelinePlan {
    fn make(&self, device: &wgpu::Device) -> wgpu::ComputePipeline {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(self.entry),
            layout: Some(&self.layout),
            module: &self.module,
            entry_point: Some(self.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &self.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    }
}

/// The layout entry type of a binding with `access`.
fn binding_type(access: Access) -> wgpu::BindingType {
    match access {
        Access::Texture => wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage {
                read_only: access == Access::Read,
            },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
    }
}

/// Runtime checks for vqgpu's own shaders: wgpu's defaults without the hidden counter in every
/// loop and the zero test before every integer division. With those two, the convolutions ran
/// 6-25x slower on an H100 (README, Benchmarks); why was not established.
fn trusted_checks() -> wgpu::ShaderRuntimeChecks {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks.int_div_checks = false;
    checks
}
