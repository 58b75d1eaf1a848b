//! Kernel families (one WGSL file each) and the pipeline cache keyed by
//! (family, entry point, override constants, binding signature).

use std::collections::HashMap;
use std::rc::Rc;

/// A WGSL file in `shaders/`, embedded in the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `elementwise.wgsl`: fill, copy, add, mul, scale, bias, activations and their backward.
    Elementwise,
    /// `gemm.wgsl`: tiled matrix multiply with optional transposes.
    Gemm,
    /// `conv2d.wgsl`: implicit-GEMM convolution forward, input gradient, weight gradient.
    Conv2d,
    /// `reduce.wgsl`: sums, means, MSE.
    Reduce,
    /// `adam.wgsl`: the optimizer step over a flat parameter buffer.
    Adam,
    /// `vq.wgsl`: nearest-code search, gather of code vectors, code-usage statistics.
    Vq,
    /// `ema.wgsl`: per-code sums, EMA codebook update, dead-code restarts.
    Ema,
    /// `softmax.wgsl`: log-softmax cross-entropy over classes, its gradient, Gumbel-max sampling.
    Softmax,
    /// `latent.wgsl`: Gaussian noise, input corruption, reparameterization, KL, Bernoulli cross-entropy.
    Latent,
}

impl Family {
    /// Every family, for tests and pre-compilation.
    pub const ALL: [Family; 9] = [
        Family::Elementwise,
        Family::Gemm,
        Family::Conv2d,
        Family::Reduce,
        Family::Adam,
        Family::Vq,
        Family::Ema,
        Family::Softmax,
        Family::Latent,
    ];

    /// The WGSL source.
    pub fn source(self) -> &'static str {
        match self {
            Family::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Family::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Family::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Family::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Family::Adam => include_str!("../../shaders/adam.wgsl"),
            Family::Vq => include_str!("../../shaders/vq.wgsl"),
            Family::Ema => include_str!("../../shaders/ema.wgsl"),
            Family::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Family::Latent => include_str!("../../shaders/latent.wgsl"),
        }
    }

    /// The file name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise.wgsl",
            Family::Gemm => "gemm.wgsl",
            Family::Conv2d => "conv2d.wgsl",
            Family::Reduce => "reduce.wgsl",
            Family::Adam => "adam.wgsl",
            Family::Vq => "vq.wgsl",
            Family::Ema => "ema.wgsl",
            Family::Softmax => "softmax.wgsl",
            Family::Latent => "latent.wgsl",
        }
    }
}

/// One entry point of a family, specialised by override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// The WGSL file.
    pub family: Family,
    /// The `@compute` entry point.
    pub entry: &'static str,
    /// Values for the file's `override` constants (booleans as 0/1).
    pub constants: Vec<(&'static str, f64)>,
}

impl Kernel {
    /// An entry point with default override constants.
    pub fn new(family: Family, entry: &'static str) -> Self {
        Self {
            family,
            entry,
            constants: Vec::new(),
        }
    }

    /// Sets one override constant.
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }

    /// Sets a boolean override constant.
    pub fn flag(self, name: &'static str, on: bool) -> Self {
        self.with(name, if on { 1.0 } else { 0.0 })
    }
}

/// How a kernel sees one buffer binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// Binding 0 is always the uniform parameter block; the rest are (binding, access) pairs.
pub(crate) type Signature = Vec<(u32, Access)>;

type PipelineKey = (Family, &'static str, Vec<(&'static str, u64)>, Signature);

/// Compiled shader modules, layouts and pipelines, each made once.
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: HashMap<Family, wgpu::ShaderModule>,
    layouts: HashMap<Signature, Rc<wgpu::BindGroupLayout>>,
    pipelines: HashMap<PipelineKey, Rc<wgpu::ComputePipeline>>,
}

impl KernelCache {
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
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: access == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
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
            kernel.family,
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
        let module = self.modules.entry(kernel.family).or_insert_with(|| {
            let descriptor = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.family.file_name()),
                source: wgpu::ShaderSource::Wgsl(kernel.family.source().into()),
            };
            // SAFETY: only the checks below are dropped, and vqgpu's own shaders uphold them:
            // every loop runs to a bound taken from the uniform block or a constant, and every
            // divisor is a tile constant or a shape the host has validated as non-zero.
            // Buffer bounds checks stay on.
            unsafe { device.create_shader_module_trusted(descriptor, trusted_checks()) }
        });
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
                    constants: &kernel.constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            }),
        );
        self.pipelines.insert(key, pipeline.clone());
        (pipeline, layout)
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
