//! `cargo bench --bench kernels`: the same kernel microbenchmarks as `vqgpu bench kernels`, with the
//! default shapes (GEMM 512/1024/2048, the VQ-VAE convolutions at batch 32).

use vqgpu::tasks::bench::{run_kernels, BenchConfig};
use vqgpu::{Gpu, GpuOptions};

fn main() -> vqgpu::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    run_kernels(&gpu, &BenchConfig::default())?;
    Ok(())
}
