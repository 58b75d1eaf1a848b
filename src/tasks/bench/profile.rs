//! `--profile` of `bench vqvae` and `bench prior`: every launch of one training step with its GPU
//! time, grouped by kernel and by layer, and the host-side cost of recording a step.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::Result;
use crate::gpu::profile::{DispatchRecord, Profile};
use crate::gpu::{Gpu, HostStats};
use crate::heap;

/// One group of launches in a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    /// What the launches share: a kernel, or a layer, direction and kernel.
    pub name: String,
    /// Launches.
    pub calls: usize,
    /// Their summed time in seconds.
    pub seconds: f64,
    /// Their summed floating-point operations (0 where not counted).
    pub flops: f64,
    /// Their summed bytes of bound buffers.
    pub bytes: u64,
}

/// The host side of recording one step.
#[derive(Clone, Copy, Debug)]
pub struct HostFigures {
    /// Median wall-clock seconds from the start of a step to the return of its submit, the GPU
    /// idle before the step.
    pub record_seconds: f64,
    /// Median CPU seconds the recording thread spent in the same interval (not counting time it
    /// waited, e.g. in a driver's submit); `None` where the platform has no thread CPU clock.
    pub record_cpu_seconds: Option<f64>,
    /// What one step recorded.
    pub per_step: HostStats,
    /// Heap allocations of the recording thread in one step (the last run); `None` where they
    /// are not counted (see [`crate::heap`]).
    pub allocations: Option<u64>,
}

/// A profiled step.
#[derive(Clone, Debug)]
pub struct StepProfile {
    /// Every launch.
    pub profile: Profile,
    /// Grouped by kernel, slowest first.
    pub by_kernel: Vec<ProfileRow>,
    /// Grouped by layer, direction (with the part of a convolution's backward) and kernel, slowest
    /// first.
    pub by_layer: Vec<ProfileRow>,
    /// The host figures.
    pub host: HostFigures,
}

impl StepProfile {
    /// Sum of every launch's time in seconds.
    pub fn total(&self) -> f64 {
        self.profile.records.iter().map(|r| r.seconds).sum()
    }
}

/// Groups `records` by `key`, slowest group first.
pub fn group(
    records: &[DispatchRecord],
    key: impl Fn(&DispatchRecord) -> String,
) -> Vec<ProfileRow> {
    let mut groups: BTreeMap<String, ProfileRow> = BTreeMap::new();
    for r in records {
        let name = key(r);
        let row = groups.entry(name.clone()).or_insert(ProfileRow {
            name,
            calls: 0,
            seconds: 0.0,
            flops: 0.0,
            bytes: 0,
        });
        row.calls += 1;
        row.seconds += r.seconds;
        row.flops += r.flops;
        row.bytes += r.bytes;
    }
    let mut rows: Vec<ProfileRow> = groups.into_values().collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    rows
}

/// `encoder.0 bwd dw conv:conv2d`: the layer (or `-`), the direction and the part of a backward
/// pass where one is named, and the kernel.
fn layer_key(r: &DispatchRecord) -> String {
    let direction = match (r.backward, r.part) {
        (false, _) => "fwd".to_string(),
        (true, None) => "bwd".to_string(),
        (true, Some(part)) => format!("bwd {part}"),
    };
    format!(
        "{} {direction} {}",
        r.layer.as_deref().unwrap_or("-"),
        r.kernel
    )
}

/// Runs of a step whose host figures are measured (the median is reported).
const HOST_REPEATS: usize = 9;

/// Profiles `step` (which records one whole training step): its host figures over
/// [`HOST_REPEATS`] runs, then one run with every launch timed.
pub fn profile_step(gpu: &Gpu, step: &mut dyn FnMut() -> Result<()>) -> Result<StepProfile> {
    let mut times = Vec::with_capacity(HOST_REPEATS);
    let mut cpu_times = Vec::with_capacity(HOST_REPEATS);
    let mut per_step = HostStats::default();
    let mut allocations = None;
    for _ in 0..HOST_REPEATS {
        gpu.sync()?;
        let before = gpu.host_stats();
        let allocations0 = heap::thread_allocations();
        let cpu0 = thread_cpu_seconds();
        let t0 = Instant::now();
        step()?;
        gpu.flush();
        times.push(t0.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu0, thread_cpu_seconds()) {
            cpu_times.push(b - a);
        }
        per_step = gpu.host_stats() - before;
        allocations = allocations0
            .zip(heap::thread_allocations())
            .map(|(a, b)| b - a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    gpu.start_profile()?;
    let recorded = step();
    let profile = gpu.finish_profile()?;
    recorded?;
    Ok(StepProfile {
        by_kernel: group(&profile.records, |r| r.kernel.clone()),
        by_layer: group(&profile.records, layer_key),
        profile,
        host: HostFigures {
            record_seconds: median(&mut times).unwrap_or(0.0),
            record_cpu_seconds: median(&mut cpu_times),
            per_step,
            allocations,
        },
    })
}

/// CPU time of the calling thread in seconds.
#[cfg(unix)]
fn thread_cpu_seconds() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `t`.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    ok.then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// CPU time of the calling thread: not measured on this platform.
#[cfg(not(unix))]
fn thread_cpu_seconds() -> Option<f64> {
    None
}

fn print_rows(title: &str, rows: &[ProfileRow], total: f64, limit: usize) {
    // the names column fits the longest name shown (at least 50 characters)
    let width = rows
        .iter()
        .take(limit)
        .map(|r| r.name.chars().count())
        .fold(50, usize::max);
    println!(
        "{title:<w$} {:>5} {:>9} {:>6} {:>9} {:>8}",
        "calls",
        "ms",
        "share",
        "GFLOP/s",
        "GB/s",
        w = width + 2
    );
    for r in rows.iter().take(limit) {
        let rate = |x: f64| {
            if r.seconds > 0.0 && x > 0.0 {
                format!("{:.1}", x / r.seconds / 1e9)
            } else {
                "-".into()
            }
        };
        println!(
            "  {:<width$} {:>5} {:>9.4} {:>5.1}% {:>9} {:>8}",
            r.name,
            r.calls,
            r.seconds * 1e3,
            if total > 0.0 {
                r.seconds / total * 100.0
            } else {
                0.0
            },
            rate(r.flops),
            rate(r.bytes as f64)
        );
    }
    if rows.len() > limit {
        let rest: f64 = rows[limit..].iter().map(|r| r.seconds).sum();
        println!("  ({} more rows: {:.4} ms)", rows.len() - limit, rest * 1e3);
    }
}

/// Prints a profile: the host figures, then the kernel and layer tables.
pub fn print(p: &StepProfile) {
    let h = &p.host;
    let s = &h.per_step;
    let cpu = h
        .record_cpu_seconds
        .map_or("not measured".into(), |c| format!("{:.3} ms", c * 1e3));
    let allocations = h
        .allocations
        .map_or("not counted".into(), |n| n.to_string());
    println!(
        "host: recording a step (its start to the return of submit, median): {:.3} ms wall clock, CPU time {cpu}; per step {} dispatches, {} compute passes, {} bind groups created, {} bytes uploaded + {} bytes of kernel parameters, {} submits, {} copies into textures ({} bytes; they end {} passes; {} more not needed, a slot still held them), {allocations} heap allocations",
        h.record_seconds * 1e3,
        s.dispatches,
        s.passes,
        s.bind_groups,
        s.bytes_uploaded,
        s.uniform_bytes,
        s.submissions,
        s.texture_copies,
        s.bytes_copied,
        s.passes_ended_by_copies,
        s.copies_reused
    );
    let total = p.total();
    println!(
        "profile of one step ({}): {} launches, {:.3} ms summed, {:.3} ms from the first start to the last end; GB/s counts the bound buffers once",
        if p.profile.timestamps {
            "GPU timestamps around each launch"
        } else {
            "wall clock around each launch"
        },
        p.profile.records.len(),
        total * 1e3,
        p.profile.span * 1e3
    );
    print_rows("by kernel", &p.by_kernel, total, 40);
    print_rows(
        "by layer (direction and part, kernel)",
        &p.by_layer,
        total,
        40,
    );
}
