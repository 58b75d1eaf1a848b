//! Kernels (an entry point of a [`Shader`] specialised by override constants) and the pipeline
//! cache keyed by (shader, entry point, override constants, binding signature).

use std::rc::Rc;

use arrayvec::ArrayVec;
use foldhash::HashMap;

use super::context::Collectives;
use super::shader::{Access, Shader};

/// Override constants a kernel sets at most.
pub const MAX_CONSTANTS: usize = 10;
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
    pipelines: HashMap<PipelineKey, Rc<wgpu::ComputePipeline>>,
}

impl KernelCache {
    /// An empty cache that compiles the shaders' libraries as `collectives` says.
    pub fn new(collectives: Collectives) -> Self {
        Self {
            collectives,
            modules: HashMap::default(),
            layouts: HashMap::default(),
            pipelines: HashMap::default(),
        }
    }

    /// Number of pipelines compiled so far.
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

    /// The pipeline and bind-group layout for a kernel with the given bindings, compiled on first use.
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        kernel: &Kernel,
        signature: &Signature,
    ) -> (Rc<wgpu::ComputePipeline>, Rc<wgpu::BindGroupLayout>) {
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
        if let Some(p) = self.pipelines.get(&key) {
            return (p.clone(), layout);
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
        let pipeline = Rc::new(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            }),
        );
        self.pipelines.insert(key, pipeline.clone());
        (pipeline, layout)
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
