//! Timing of recorded GPU work: timestamp queries where the adapter has them, wall clock otherwise.

use std::time::Instant;

use super::Gpu;
use crate::error::Result;

/// Where a measured time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamp queries written at compute-pass boundaries.
    GpuTimestamps,
    /// Host wall clock around submit and wait.
    WallClock,
}

/// Measures the GPU time of the work recorded between [`GpuTimer::start`] and [`GpuTimer::stop`].
pub struct GpuTimer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    started: Option<Instant>,
}

impl GpuTimer {
    /// A timer using timestamp queries if the device has them.
    pub fn new(gpu: &Gpu) -> Self {
        let queries = gpu.features().timestamp_query.then(|| {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.create_buffer(
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            let read = gpu.create_buffer(
                16,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            );
            (set, resolve, read)
        });
        Self {
            queries,
            started: None,
        }
    }

    /// Which clock this timer uses.
    pub fn clock(&self) -> Clock {
        if self.queries.is_some() {
            Clock::GpuTimestamps
        } else {
            Clock::WallClock
        }
    }

    fn mark(gpu: &Gpu, set: &wgpu::QuerySet, index: u32) {
        let (begin, end) = if index == 0 {
            (Some(0), None)
        } else {
            (None, Some(1))
        };
        gpu.with_encoder(|e| {
            e.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timestamp"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: begin,
                    end_of_pass_write_index: end,
                }),
            });
        });
    }

    /// Marks the start of the measured work (waits for earlier work first).
    pub fn start(&mut self, gpu: &Gpu) -> Result<()> {
        gpu.sync()?;
        if let Some((set, _, _)) = &self.queries {
            Self::mark(gpu, set, 0);
        }
        self.started = Some(Instant::now());
        Ok(())
    }

    /// Marks the end, waits for the GPU, and returns the elapsed seconds.
    pub fn stop(&mut self, gpu: &Gpu) -> Result<f64> {
        let Some((set, resolve, read)) = &self.queries else {
            gpu.sync()?;
            return Ok(self
                .started
                .take()
                .map_or(0.0, |t| t.elapsed().as_secs_f64()));
        };
        Self::mark(gpu, set, 1);
        gpu.with_encoder(|e| {
            e.resolve_query_set(set, 0..2, resolve, 0);
            e.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        });
        let bytes = gpu.read(read, 0, 16)?;
        self.started = None;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period_ns = gpu.timestamp_period_ns();
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * period_ns / 1e9)
    }
}
