//! Per-dispatch profiling: while a [`Profile`] is active every kernel launch is recorded with its
//! kernel, the layer that launched it (see [`layer`]), whether it belongs to a backward pass, its
//! floating-point work and the bytes of the buffers it binds, and is timed on its own: with GPU
//! timestamps written at the boundaries of its compute pass where the adapter has them, else by
//! the wall clock around a submit and a wait.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Instant;

use super::Gpu;
use crate::error::Result;

thread_local! {
    static LAYER: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
    static BACKWARD: Cell<bool> = const { Cell::new(false) };
    static PART: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Every layer name seen so far, made once each (a training step names the same layers).
    static NAMES: RefCell<HashSet<Rc<str>>> = RefCell::new(HashSet::new());
}

/// Names the layer whose kernels are launched until the guard is dropped (profile rows are
/// grouped by it). Nested guards restore the outer name.
pub fn layer(name: &str) -> LayerGuard {
    let name = NAMES.with(|names| {
        let mut names = names.borrow_mut();
        match names.get(name) {
            Some(known) => Rc::clone(known),
            None => {
                let new: Rc<str> = Rc::from(name);
                names.insert(Rc::clone(&new));
                new
            }
        }
    });
    LayerGuard {
        previous: LAYER.with(|l| l.replace(Some(name))),
        was_backward: BACKWARD.with(Cell::get),
        was_part: PART.with(|p| p.replace(None)),
    }
}

/// The layer named by the innermost live [`layer`] guard.
pub(crate) fn current_layer() -> Option<Rc<str>> {
    LAYER.with(|l| l.borrow().clone())
}

/// Restores `layer` (a name recorded with a forward op) and marks launches as backward work until
/// the guard is dropped: autograd wraps each backward closure in one.
pub(crate) fn backward_of(layer: Option<Rc<str>>) -> LayerGuard {
    LayerGuard {
        previous: LAYER.with(|l| l.replace(layer)),
        was_backward: BACKWARD.with(|b| b.replace(true)),
        was_part: PART.with(|p| p.replace(None)),
    }
}

/// Names the part of a layer's backward pass that the launches compute until the guard is
/// dropped: `dx` (the input gradient), `dw` (the weight gradient) or `db` (the bias gradient).
pub(crate) fn part(name: &'static str) -> PartGuard {
    PartGuard {
        previous: PART.with(|p| p.replace(Some(name))),
    }
}

/// Restores the previous layer name (and backward marking and part) when dropped.
pub struct LayerGuard {
    previous: Option<Rc<str>>,
    was_backward: bool,
    was_part: Option<&'static str>,
}

impl Drop for LayerGuard {
    fn drop(&mut self) {
        LAYER.with(|l| *l.borrow_mut() = self.previous.take());
        BACKWARD.with(|b| b.set(self.was_backward));
        PART.with(|p| p.set(self.was_part));
    }
}

/// Restores the previous part (see [`part`]) when dropped.
pub(crate) struct PartGuard {
    previous: Option<&'static str>,
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        PART.with(|p| p.set(self.previous));
    }
}

/// One profiled kernel launch.
#[derive(Clone, Debug)]
pub struct DispatchRecord {
    /// `shader stem:entry point`, e.g. `conv:conv2d`.
    pub kernel: String,
    /// The layer that launched it (`None` outside any named layer).
    pub layer: Option<Rc<str>>,
    /// Whether it ran inside a backward pass.
    pub backward: bool,
    /// The part of its layer's backward pass it computes: `dx` (the input gradient), `dw` (the
    /// weight gradient) or `db` (the bias gradient) for a convolution; `None` elsewhere.
    pub part: Option<&'static str>,
    /// Floating-point operations (0 where the kernel does not count them).
    pub flops: f64,
    /// Bytes of every storage buffer range it binds (each counted once).
    pub bytes: u64,
    /// Seconds it took on the GPU (or by the wall clock, see [`Profile::timestamps`]).
    pub seconds: f64,
}

/// Timestamp queries per query set (wgpu's maximum).
const QUERIES_PER_SET: u32 = 4096;

/// The state of an active profile.
pub(crate) struct Profiler {
    records: Vec<DispatchRecord>,
    /// Timestamp query sets, two queries per dispatch; empty on the wall clock.
    sets: Vec<wgpu::QuerySet>,
    timestamps: bool,
    wall_start: Option<Instant>,
}

impl Profiler {
    pub(crate) fn new(timestamps: bool) -> Self {
        Self {
            records: Vec::new(),
            sets: Vec::new(),
            timestamps,
            wall_start: None,
        }
    }

    /// Registers the next launch; returns its timestamp writes (query set, begin index) when
    /// timestamps are used.
    pub(crate) fn begin(
        &mut self,
        device: &wgpu::Device,
        kernel: String,
        flops: f64,
        bytes: u64,
    ) -> Option<(wgpu::QuerySet, u32)> {
        let index = self.records.len() as u32 * 2;
        self.records.push(DispatchRecord {
            kernel,
            layer: current_layer(),
            backward: BACKWARD.with(Cell::get),
            part: PART.with(Cell::get),
            flops,
            bytes,
            seconds: 0.0,
        });
        if !self.timestamps {
            return None;
        }
        let set = (index / QUERIES_PER_SET) as usize;
        if set == self.sets.len() {
            self.sets
                .push(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: QUERIES_PER_SET,
                }));
        }
        Some((self.sets[set].clone(), index % QUERIES_PER_SET))
    }

    /// Whether launches are timed by the wall clock (each one synced on its own).
    pub(crate) fn wall_clock(&self) -> bool {
        !self.timestamps
    }

    /// Starts the wall clock of the launch just registered (its earlier work is already done).
    pub(crate) fn start_wall(&mut self) {
        self.wall_start = Some(Instant::now());
    }

    /// Stops the wall clock of the launch just registered (after its sync).
    pub(crate) fn stop_wall(&mut self) {
        if let (Some(t0), Some(last)) = (self.wall_start.take(), self.records.last_mut()) {
            last.seconds = t0.elapsed().as_secs_f64();
        }
    }
}

/// What an active profile returns when it ends.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Every launch in order.
    pub records: Vec<DispatchRecord>,
    /// Whether the times are GPU timestamps (else wall clock with a sync per launch).
    pub timestamps: bool,
    /// Seconds from the start of the first launch to the end of the last one.
    pub span: f64,
}

impl Gpu {
    /// Starts profiling every launch (see [`Profile`]); waits for earlier work first.
    pub fn start_profile(&self) -> Result<()> {
        self.sync()?;
        *self.0.profiler.borrow_mut() = Some(Profiler::new(self.features().timestamp_query));
        Ok(())
    }

    /// Ends the profile started by [`Gpu::start_profile`], waits for the GPU and returns every
    /// launch with its time.
    pub fn finish_profile(&self) -> Result<Profile> {
        self.sync()?;
        let Some(mut profiler) = self.0.profiler.borrow_mut().take() else {
            return Ok(Profile::default());
        };
        let n = profiler.records.len();
        let span = if profiler.timestamps && n > 0 {
            let period = self.timestamp_period_ns() / 1e9;
            let mut ticks: Vec<u64> = Vec::with_capacity(2 * n);
            let resolve = self.create_buffer(
                QUERIES_PER_SET as u64 * 8,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            for (i, set) in profiler.sets.iter().enumerate() {
                let used = (2 * n as u32 - i as u32 * QUERIES_PER_SET).min(QUERIES_PER_SET);
                self.with_encoder(|e| e.resolve_query_set(set, 0..used, &resolve, 0));
                let bytes = self.read(&resolve, 0, used as u64 * 8)?;
                ticks.extend(bytemuck::pod_collect_to_vec::<u8, u64>(&bytes));
            }
            for (record, t) in profiler.records.iter_mut().zip(ticks.chunks_exact(2)) {
                record.seconds = t[1].saturating_sub(t[0]) as f64 * period;
            }
            ticks[2 * n - 1].saturating_sub(ticks[0]) as f64 * period
        } else {
            // on the wall clock each launch ran alone: the span is their sum
            profiler.records.iter().map(|r| r.seconds).sum()
        };
        Ok(Profile {
            records: profiler.records,
            timestamps: profiler.timestamps,
            span,
        })
    }
}
