//! Which set of kernel variants a device runs: the GPU set (workgroup-memory tiles, barriers) or
//! the CPU set, made for software drivers such as Mesa's lavapipe, which run a workgroup's
//! invocations as the SIMD lanes of one CPU thread, load each lane's operand separately and pay
//! for every barrier. The choice is made once per device, from the adapter's type and features
//! (or `VQGPU_KERNELS`), so a run computes the same way every time.

use std::fmt;

use crate::error::{Error, Result};

/// Subgroup lanes the CPU set's register-blocked GEMM shares its left operand across.
pub const CPU_SET_LANES: u32 = 8;

/// The most iterations one invocation of a CPU-set kernel may loop, all its loops together: the
/// software driver (llvmpipe) silently cuts a loop nest after 65535 iterations.
pub(crate) const CPU_LOOP_LIMIT: usize = 60_000;

/// A set of kernel variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSet {
    /// Tiles through workgroup memory: what real GPUs run.
    Gpu,
    /// Register blocks, vec4 loads and subgroup broadcasts, no workgroup memory or barriers: for
    /// adapters of type CPU.
    Cpu,
}

impl KernelSet {
    /// Parses `gpu` or `cpu` (case-insensitive).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(Error::InvalidArgument(format!(
                "kernel set must be gpu or cpu, got {other:?} (VQGPU_KERNELS)"
            ))),
        }
    }

    /// The set named by `VQGPU_KERNELS`, if it is set and not empty.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var("VQGPU_KERNELS") {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// The set for an adapter: `wanted` if given, else the CPU set on CPU adapters that can run it.
    /// Asking for the CPU set on an adapter without subgroups of at least [`CPU_SET_LANES`] lanes
    /// is an error.
    pub(crate) fn choose(
        wanted: Option<Self>,
        info: &wgpu::AdapterInfo,
        subgroups: bool,
    ) -> Result<Self> {
        let can_run_cpu = subgroups && info.subgroup_min_size >= CPU_SET_LANES;
        match wanted {
            Some(Self::Cpu) if !can_run_cpu => Err(Error::InvalidArgument(format!(
                "the cpu kernel set needs subgroups of at least {CPU_SET_LANES} lanes; {} has {}",
                info.name,
                if subgroups {
                    format!("{} to {}", info.subgroup_min_size, info.subgroup_max_size)
                } else {
                    "none".to_string()
                }
            ))),
            Some(set) => Ok(set),
            None if info.device_type == wgpu::DeviceType::Cpu && can_run_cpu => Ok(Self::Cpu),
            None => Ok(Self::Gpu),
        }
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_and_others_are_refused() {
        assert_eq!(KernelSet::parse("GPU").unwrap(), KernelSet::Gpu);
        assert_eq!(KernelSet::parse(" cpu ").unwrap(), KernelSet::Cpu);
        let err = KernelSet::parse("tpu").unwrap_err().to_string();
        assert!(err.contains("gpu or cpu") && err.contains("tpu"), "{err}");
        assert_eq!(KernelSet::Cpu.to_string(), "cpu");
    }
}
