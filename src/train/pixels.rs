//! A batch of u8 images on its way to the GPU: uploaded as bytes (a quarter of the f32 bytes)
//! into a reused buffer, then turned into model inputs by one kernel that looks every byte up in
//! a table of `x / 255 - 0.5`, so the GPU's inputs have exactly the host's values.

use crate::data::to_input;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::elementwise;
use crate::tensor::{numel, ByteBuffer, Tensor};

/// The upload buffer, the byte-to-input table and the model-input tensor of one batch shape.
pub struct PixelInput {
    bytes: ByteBuffer,
    table: Tensor,
    values: Tensor,
}

impl PixelInput {
    /// Buffers for batches of `shape` ([B, C, H, W]); the inputs start at zero.
    pub fn new(gpu: &Gpu, shape: &[usize]) -> Result<Self> {
        let all_bytes: Vec<u8> = (0..=u8::MAX).collect();
        let mut table = [0.0f32; 256];
        to_input(&all_bytes, &mut table);
        Ok(Self {
            bytes: ByteBuffer::new(gpu, numel(shape)),
            table: Tensor::from_slice(gpu, &[256], &table)?,
            values: Tensor::zeros(gpu, shape),
        })
    }

    /// Uploads `bytes` (the batch, CHW per image) and records their conversion into the inputs.
    pub fn upload(&self, bytes: &[u8]) -> Result<&Tensor> {
        self.bytes.write(bytes)?;
        elementwise::lookup_bytes(&self.bytes, &self.table, &self.values);
        Ok(&self.values)
    }

    /// The model inputs of the last uploaded batch.
    pub fn values(&self) -> &Tensor {
        &self.values
    }
}
