//! `cargo bench --bench kernels`: the same kernel microbenchmarks as `vqgpu bench kernels`, with the
//! default shapes (GEMM 512/1024/2048, the VQ-VAE convolutions at batch 32).

use vqgpu::bench::{self, BenchConfig};
use vqgpu::{Gpu, GpuOptions};

fn main() -> vqgpu::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    println!(
        "adapter: {} (clock: {:?})",
        gpu.adapter_name(),
        bench::clock(&gpu)
    );
    bench::kernels(&gpu, &BenchConfig::default(), &mut |row| {
        println!(
            "{:<44} {:>10.4} ms {:>9.1} GFLOP/s",
            row.name,
            row.seconds * 1e3,
            row.gflops()
        )
    })?;
    Ok(())
}
