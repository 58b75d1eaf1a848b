//! Timing of recorded GPU work: timestamp queries where the adapter has them, wall clock otherwise.

use std::time::Instant;

use super::Gpu;
use crate::error::Result;

/// Where a measured time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamp queries written at compute-pass boundaries.
    GpuTimestamps,
    /// Host wall clock around submit and wait (each mark is a sync point).
    WallClock,
}

/// Timestamps at up to `marks` points of recorded work; the differences between consecutive
/// marks are the times of the work recorded between them.
pub struct GpuTimer {
    marks: u32,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    wall: Vec<Instant>,
    next: u32,
}

impl GpuTimer {
    /// A timer with a start and a stop mark.
    pub fn new(gpu: &Gpu) -> Self {
        Self::with_marks(gpu, 2)
    }

    /// A timer with `marks` marks (at least 2), using timestamp queries if the device has them.
    pub fn with_marks(gpu: &Gpu, marks: u32) -> Self {
        let marks = marks.max(2);
        let queries = gpu.features().timestamp_query.then(|| {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timer"),
                ty: wgpu::QueryType::Timestamp,
                count: marks,
            });
            let resolve = gpu.create_buffer(
                8 * marks as u64,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            (set, resolve)
        });
        Self {
            marks,
            queries,
            wall: Vec::new(),
            next: 0,
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

    /// Records the next mark after the work recorded so far. The first mark waits for earlier work.
    pub fn mark(&mut self, gpu: &Gpu) -> Result<()> {
        assert!(
            self.next < self.marks,
            "GpuTimer: more marks than it was made for"
        );
        if self.next == 0 {
            gpu.sync()?;
            self.wall.clear();
        }
        match &self.queries {
            Some((set, _)) => gpu.with_encoder(|e| {
                e.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("timestamp"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(self.next),
                        end_of_pass_write_index: None,
                    }),
                });
            }),
            None => {
                if self.next > 0 {
                    gpu.sync()?;
                }
                self.wall.push(Instant::now());
            }
        }
        self.next += 1;
        Ok(())
    }

    /// Waits for the GPU and returns the seconds between consecutive marks (marks - 1 values).
    pub fn read(&mut self, gpu: &Gpu) -> Result<Vec<f64>> {
        let used = self.next;
        self.next = 0;
        let seconds: Vec<f64> = match &self.queries {
            Some((set, resolve)) => {
                gpu.with_encoder(|e| e.resolve_query_set(set, 0..used, resolve, 0));
                let bytes = gpu.read(resolve, 0, 8 * used as u64)?;
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
                let period = gpu.timestamp_period_ns() / 1e9;
                ticks
                    .windows(2)
                    .map(|w| w[1].saturating_sub(w[0]) as f64 * period)
                    .collect()
            }
            None => self
                .wall
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64())
                .collect(),
        };
        Ok(seconds)
    }

    /// Marks the start of the measured work (waits for earlier work first).
    pub fn start(&mut self, gpu: &Gpu) -> Result<()> {
        self.next = 0;
        self.mark(gpu)
    }

    /// Marks the end, waits for the GPU, and returns the seconds since [`GpuTimer::start`].
    pub fn stop(&mut self, gpu: &Gpu) -> Result<f64> {
        self.mark(gpu)?;
        Ok(self.read(gpu)?.iter().sum())
    }
}
