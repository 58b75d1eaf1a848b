//! # vqgpu
//!
//! A small hand-written GPU compute engine: an f32 tensor + autograd core whose every op is a
//! hand-written WGSL compute shader run through wgpu (Vulkan, Metal, DX12, GL), with no ML framework.
//!
//! ```no_run
//! use vqgpu::nn::{Adam, Conv2d, ParamStore};
//! use vqgpu::ops::conv::Conv2dOptions;
//! use vqgpu::{Gpu, GpuOptions, Tensor};
//!
//! # fn main() -> vqgpu::Result<()> {
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! let mut ps = ParamStore::new(&gpu, 0);
//! let conv1 = Conv2d::new(&mut ps.scope("conv1"), 3, 16, (3, 3), Conv2dOptions::new(1, 1), true);
//! let conv2 = Conv2d::new(&mut ps.scope("conv2"), 16, 3, (3, 3), Conv2dOptions::new(1, 1), true);
//! ps.finalize()?;
//! let mut adam = Adam::new(1e-3);
//! let x = Tensor::from_slice(&gpu, &[1, 3, 8, 8], &[0.5; 192])?;
//! for _ in 0..100 {
//!     ps.zero_grad();
//!     let y = conv2.forward(&conv1.forward(&x).relu());
//!     let loss = vqgpu::ops::reduce::mse_loss(&y, &x);
//!     loss.backward();
//!     adam.step(&ps);
//! }
//! println!("loss {}", vqgpu::ops::reduce::mse_loss(&conv2.forward(&conv1.forward(&x).relu()), &x).item()?);
//! # Ok(())
//! # }
//! ```
//!
//! Work is recorded into one command encoder and submitted only at sync points (a download or
//! [`Gpu::sync`]); buffers come from a pool, so a repeated step allocates nothing.

pub mod autograd;
pub mod data;
pub mod error;
pub mod gpu;
pub mod heap;
pub mod io;
pub mod models;
pub mod nn;
pub mod ops;
pub mod tasks;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use tensor::Tensor;
