//! Adapter choice, device creation with the adapter's real limits, feature detection.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::kernel_set::KernelSet;
use crate::error::{Error, Result};

/// A graphics API wgpu can run compute shaders on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Vulkan (Linux, Windows, Android; lavapipe without a GPU).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES.
    Gl,
}

impl Backend {
    /// Parses `vulkan|metal|dx12|gl` (case-insensitive).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(Self::Vulkan),
            "metal" | "mtl" => Ok(Self::Metal),
            "dx12" | "d3d12" => Ok(Self::Dx12),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            _ => Err(Error::UnknownBackend(name.to_string())),
        }
    }

    fn backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

/// How to choose the adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name; falls back to env `VQGPU_ADAPTER`.
    pub adapter: Option<String>,
    /// Restrict the search to one backend; default: Vulkan, Metal and DX12.
    pub backend: Option<Backend>,
    /// The kernel variants to run; default: env `VQGPU_KERNELS`, else chosen by the adapter's type.
    pub kernels: Option<KernelSet>,
    /// How the collective operations of a workgroup (the reductions' sums) are compiled; default:
    /// over the adapter's smallest subgroup where it has subgroups. Every way gives the same
    /// results bit for bit.
    pub collectives: Option<Collectives>,
    /// Whether the CPU kernel set reads its large operands from texture copies (see
    /// [`crate::gpu::Gpu::texture_copy`]); default: yes. Both ways give the same results bit for
    /// bit. The GPU set never does.
    pub texture_copies: Option<bool>,
}

/// The most subgroup lanes a collective operation spans: the largest subgroup Vulkan allows.
pub const MAX_COLLECTIVE_LANES: u32 = 128;

/// How the collective operations of a workgroup (`shaders/collective*.wgsl`) are compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collectives {
    /// Through workgroup memory only: for every adapter.
    Plain,
    /// Their last levels by subgroup operations spanning this many lanes: a power of two, at most
    /// the adapter's smallest subgroup and [`MAX_COLLECTIVE_LANES`].
    Subgroups(u32),
}

impl fmt::Display for Collectives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain => f.write_str("workgroup memory"),
            Self::Subgroups(lanes) => write!(f, "subgroups of {lanes} lanes"),
        }
    }
}

impl GpuOptions {
    /// The adapter filter in force: the option, else `VQGPU_ADAPTER`, else none.
    fn adapter_filter(&self) -> Option<String> {
        self.adapter
            .clone()
            .or_else(|| std::env::var("VQGPU_ADAPTER").ok())
            .filter(|s| !s.trim().is_empty())
    }

    fn backends(&self) -> wgpu::Backends {
        self.backend
            .map(Backend::backends)
            .unwrap_or(wgpu::Backends::PRIMARY)
    }
}

/// Optional features that kernels may use, each with a fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuFeatures {
    /// Subgroup (wave/warp) operations in shaders.
    pub subgroups: bool,
    /// 16-bit floats in shaders.
    pub shader_f16: bool,
    /// GPU timestamp queries at compute-pass boundaries.
    pub timestamp_query: bool,
}

impl GpuFeatures {
    fn from_wgpu(f: wgpu::Features) -> Self {
        Self {
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }

    fn to_wgpu(self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        if self.subgroups {
            f |= wgpu::Features::SUBGROUP;
        }
        if self.shader_f16 {
            f |= wgpu::Features::SHADER_F16;
        }
        if self.timestamp_query {
            f |= wgpu::Features::TIMESTAMP_QUERY;
        }
        f
    }
}

impl fmt::Display for GpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "subgroups: {}, shader-f16: {}, timestamp queries: {}",
            yes_no(self.subgroups),
            yes_no(self.shader_f16),
            yes_no(self.timestamp_query)
        )
    }
}

/// What `vqgpu info` prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// Name, backend, device type and driver.
    pub info: wgpu::AdapterInfo,
    /// The adapter's real limits.
    pub limits: wgpu::Limits,
    /// The optional features vqgpu cares about.
    pub features: GpuFeatures,
    /// Whether the adapter offers cooperative matrices (tensor cores) to shaders.
    pub cooperative_matrix: bool,
    /// The cooperative-matrix shapes and types the adapter reports (empty without the feature).
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
}

/// `16x16x16 f16*f16+f32`: one cooperative-matrix configuration (M x N x K, A/B type, C type).
fn matrix_config(c: &wgpu::CooperativeMatrixProperties) -> String {
    let name = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_ascii_lowercase();
    format!(
        "{}x{}x{} {}*{}+{}{}",
        c.m_size,
        c.n_size,
        c.k_size,
        name(c.ab_type),
        name(c.ab_type),
        name(c.cr_type),
        if c.saturating_accumulation {
            " (saturating)"
        } else {
            ""
        }
    )
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        let l = &self.limits;
        writeln!(f, "{} [{:?}, {:?}]", i.name, i.backend, i.device_type)?;
        writeln!(f, "  driver: {} {}", i.driver, i.driver_info)?;
        writeln!(
            f,
            "  max storage buffer binding: {} MiB, max buffer: {} MiB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        )?;
        writeln!(
            f,
            "  max workgroup: {} invocations, size {}x{}x{}, {} KiB shared storage, {} workgroups per dimension",
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_workgroups_per_dimension
        )?;
        writeln!(f, "  features: {}", self.features)?;
        if self.features.subgroups {
            writeln!(
                f,
                "  subgroups of {} to {} lanes",
                i.subgroup_min_size, i.subgroup_max_size
            )?;
        }
        let configs: Vec<String> = self
            .cooperative_matrices
            .iter()
            .map(matrix_config)
            .collect();
        match (self.cooperative_matrix, configs.is_empty()) {
            (false, _) => write!(f, "  cooperative matrices: no"),
            (true, true) => write!(
                f,
                "  cooperative matrices: yes (no configurations reported)"
            ),
            (true, false) => write!(f, "  cooperative matrices: yes: {}", configs.join(", ")),
        }
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn report(adapter: &wgpu::Adapter) -> AdapterReport {
    AdapterReport {
        info: adapter.get_info(),
        limits: adapter.limits(),
        features: GpuFeatures::from_wgpu(adapter.features()),
        cooperative_matrix: adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        cooperative_matrices: adapter.cooperative_matrix_properties(),
    }
}

fn device_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Lists every adapter the chosen backends expose.
pub fn list_adapters(options: &GpuOptions) -> Vec<AdapterReport> {
    let _lifecycle = lifecycle_lock();
    let instance = instance(options.backends());
    pollster::block_on(instance.enumerate_adapters(options.backends()))
        .iter()
        .map(report)
        .collect()
}

/// The graphics APIs among `backends`, by name ("Vulkan, Metal, DX12").
fn backend_names(backends: wgpu::Backends) -> String {
    [
        (wgpu::Backends::VULKAN, "Vulkan"),
        (wgpu::Backends::METAL, "Metal"),
        (wgpu::Backends::DX12, "DX12"),
        (wgpu::Backends::GL, "GL"),
    ]
    .iter()
    .filter(|(b, _)| backends.contains(*b))
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(", ")
}

/// Picks the adapter: by name filter if one is set, else the most capable device type.
fn choose_adapter(options: &GpuOptions) -> Result<wgpu::Adapter> {
    let backends = options.backends();
    let instance = instance(backends);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    if adapters.is_empty() {
        let hint = if backends.contains(wgpu::Backends::VULKAN) {
            "On Linux without a GPU install the software Vulkan driver: \
             `apt-get install mesa-vulkan-drivers`; otherwise install your GPU's Vulkan/Metal/DX12 driver"
        } else {
            "Metal runs on macOS, DX12 on Windows, GL where an OpenGL driver is installed: \
             leave --backend out to use whatever this system has"
        };
        return Err(Error::NoAdapter {
            backends: backend_names(backends),
            hint: hint.into(),
        });
    }
    let mut candidates: Vec<wgpu::Adapter> = match options.adapter_filter() {
        Some(wanted) => {
            let needle = wanted.to_lowercase();
            let (hit, miss): (Vec<_>, Vec<_>) = adapters
                .into_iter()
                .partition(|a| a.get_info().name.to_lowercase().contains(&needle));
            if hit.is_empty() {
                let available = miss
                    .iter()
                    .map(|a| a.get_info().name)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::AdapterNotFound { wanted, available });
            }
            hit
        }
        None => adapters,
    };
    candidates.sort_by_key(|a| device_rank(a.get_info().device_type));
    Ok(candidates.swap_remove(0))
}

/// GPU errors reported asynchronously by wgpu, kept until the next sync point.
#[derive(Clone, Default)]
pub(crate) struct ErrorSink(Arc<Mutex<Option<Error>>>);

impl ErrorSink {
    /// Keeps the first error until the next [`ErrorSink::take`].
    pub(crate) fn record_error(&self, error: Error) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
    }

    fn record(&self, message: String) {
        self.record_error(Error::Gpu(message));
    }

    /// The first error since the last call, if any.
    pub(crate) fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serialises creating and destroying Vulkan instances and devices across threads. NVIDIA's
/// Vulkan driver (580.159.04, on an H100) deadlocked when one thread destroyed its device while
/// others destroyed their instances: every thread waited inside the driver or the loader, the GPU
/// idle. Threads that each open their own [`crate::Gpu`] (tests, user programs) now take turns.
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Holds the lifecycle lock (a panic elsewhere while it was held does not poison it for good).
pub(crate) fn lifecycle_lock() -> MutexGuard<'static, ()> {
    LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// An open device with the adapter's limits and detected features.
pub(crate) struct DeviceContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
    pub errors: ErrorSink,
    pub kernel_set: KernelSet,
    /// How the collective operations are compiled.
    pub collectives: Collectives,
    /// Whether kernels read operands from texture copies where they can.
    pub texture_copies: bool,
}

impl DeviceContext {
    /// Opens the chosen adapter, requesting its real limits and every optional feature it has.
    pub fn open(options: &GpuOptions) -> Result<Self> {
        let wanted = match options.kernels {
            Some(set) => Some(set),
            None => KernelSet::from_env()?,
        };
        let _lifecycle = lifecycle_lock();
        let adapter = choose_adapter(options)?;
        let report = report(&adapter);
        let kernel_set = KernelSet::choose(wanted, &report.info, report.features.subgroups)?;
        let collectives = collectives(options.collectives, &report)?;
        let desc = wgpu::DeviceDescriptor {
            label: Some("vqgpu"),
            required_features: report.features.to_wgpu(),
            required_limits: report.limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::RequestDevice(e.to_string()))?;
        let errors = ErrorSink::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.record(e.to_string())));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            sink.record(format!("device lost ({reason:?}): {message}"))
        });
        Ok(Self {
            device,
            queue,
            report,
            errors,
            kernel_set,
            collectives,
            texture_copies: kernel_set == KernelSet::Cpu && options.texture_copies.unwrap_or(true),
        })
    }
}

/// The collective operations for an adapter: `wanted` if it can run them (an error if not), else
/// subgroups of its smallest subgroup size (at most [`MAX_COLLECTIVE_LANES`]) where that is a
/// power of two.
fn collectives(wanted: Option<Collectives>, report: &AdapterReport) -> Result<Collectives> {
    let info = &report.info;
    let smallest = if report.features.subgroups {
        info.subgroup_min_size.min(MAX_COLLECTIVE_LANES)
    } else {
        0
    };
    match wanted {
        Some(Collectives::Subgroups(lanes)) if !lanes.is_power_of_two() || lanes > smallest => {
            Err(Error::InvalidArgument(format!(
                "collectives over {lanes} subgroup lanes need a power of two no larger than the \
                 adapter's smallest subgroup (at most {MAX_COLLECTIVE_LANES}); {} has {}",
                info.name,
                if report.features.subgroups {
                    format!(
                        "subgroups of {} to {} lanes",
                        info.subgroup_min_size, info.subgroup_max_size
                    )
                } else {
                    "no subgroups".to_string()
                }
            )))
        }
        Some(chosen) => Ok(chosen),
        None if smallest.is_power_of_two() => Ok(Collectives::Subgroups(smallest)),
        None => Ok(Collectives::Plain),
    }
}
