//! `info`: every adapter with its backend, limits and features, and the one vqgpu would use.

use crate::error::Result;
use crate::gpu::{list_adapters, Gpu, GpuOptions};

/// Prints every adapter, then opens the one `options` selects; returns its name.
pub fn run(options: &GpuOptions) -> Result<String> {
    let adapters = list_adapters(options);
    if adapters.is_empty() {
        println!("no adapters found");
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {a}");
    }
    let gpu = Gpu::new(options)?;
    println!(
        "selected: {} (kernel set: {}; VQGPU_KERNELS=gpu|cpu chooses; workgroup sums: {})",
        gpu.adapter_name(),
        gpu.kernel_set(),
        gpu.collectives()
    );
    Ok(gpu.adapter_name().to_string())
}
