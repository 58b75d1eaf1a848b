//! Host side of `shaders/softmax.wgsl`: per-position cross-entropy over the class axis with its
//! gradient, and Gumbel-max sampling of one position of a class grid on the GPU.

use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, Kernel, Shader};
use crate::tensor::{Shape, Tensor};

/// The most classes a softmax may have: every thread loops over the classes, and software
/// Vulkan drivers bound a thread's loop iterations.
pub const MAX_CLASSES: usize = 16384;

/// `shaders/softmax.wgsl`.
pub static SHADER: Shader = crate::shader!(
    "softmax",
    Params,
    [
        LOGITS,
        TARGETS,
        UPSTREAM,
        SAVED_LSE,
        OUT,
        LSE_OUT,
        LOGITS_TEX,
        TARGETS_TEX,
        UPSTREAM_TEX,
        LSE_TEX
    ]
)
.reading_copies(crate::ops::texel::SOURCE);
const LOGITS: Binding = Binding::read(1, "logits");
const TARGETS: Binding = Binding::read(2, "targets");
const UPSTREAM: Binding = Binding::read(3, "upstream");
const SAVED_LSE: Binding = Binding::read(4, "saved_lse");
const OUT: Binding = Binding::read_write(5, "out");
const LSE_OUT: Binding = Binding::read_write(6, "lse_out");
const LOGITS_TEX: Binding = Binding::texture(7, "logits_tex");
const TARGETS_TEX: Binding = Binding::texture(8, "targets_tex");
const UPSTREAM_TEX: Binding = Binding::texture(9, "upstream_tex");
const LSE_TEX: Binding = Binding::texture(10, "lse_tex");

crate::uniform_params! {
    struct Params {
        rows: u32,
        classes: u32,
        positions: u32,
        position: u32,
        seed: u32,
        temperature: f32,
        grid_positions: u32,
        grid_position: u32,
        first_item: u32,
    }
}

/// (items B, classes K, positions S) of logits [B, K, ...] with S the product of the trailing dims.
fn layout(logits: &Tensor, op: &str) -> (usize, usize, usize) {
    let shape = logits.shape();
    assert!(
        shape.len() >= 2 && (1..=MAX_CLASSES).contains(&shape[1]),
        "{op}: logits must be [B, K, ...] with 1 <= K <= {MAX_CLASSES}, got {shape:?}"
    );
    (shape[0], shape[1], shape[2..].iter().product())
}

fn params(items: usize, classes: usize, positions: usize) -> Params {
    Params {
        rows: (items * positions) as u32,
        classes: classes as u32,
        positions: positions as u32,
        position: 0,
        seed: 0,
        temperature: 1.0,
        grid_positions: 0,
        grid_position: 0,
        first_item: 0,
    }
}

/// The negative log-likelihood `logsumexp_k logits[b, k, s] - logits[b, target[b, s], s]` at every
/// position: logits [B, K, ...] and targets [B, ...] (class indices stored as f32) give [B, ...].
/// The gradient reaches the logits: `g * (softmax - onehot)`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    let (items, classes, positions) = layout(logits, "cross_entropy");
    let mut target_shape = Shape::from_elem(items, 1);
    target_shape.extend_from_slice(&logits.shape()[2..]);
    assert_eq!(
        targets.shape(),
        &target_shape[..],
        "cross_entropy: targets must be {target_shape:?} for logits {:?}",
        logits.shape()
    );
    let gpu = logits.gpu();
    let p = params(items, classes, positions);
    let rg = autograd::needs_grad(&[logits]);
    let loss = Tensor::output(gpu, &target_shape, rg);
    let lse = Tensor::uninit(gpu, &target_shape);
    gpu.run(
        &SHADER,
        "cross_entropy",
        &p,
        &[
            logits.bind(LOGITS),
            targets.bind(TARGETS),
            loss.bind(OUT),
            lse.bind(LSE_OUT),
        ],
        gpu.grid_for(items * positions),
    );
    if rg {
        let (saved, targets) = (logits.detach(), targets.clone());
        autograd::record(&[logits], &loss, move |g| {
            let gpu = g.gpu();
            let grad = Tensor::uninit(gpu, saved.shape());
            cross_entropy_backward(&p, [&saved, &targets, g, &lse], &grad);
            smallvec![Some(grad)]
        });
    }
    loss
}

/// Writes into `grad` the gradient of the logits of [`cross_entropy`] from its `logits`,
/// `targets`, the `upstream` gradient of its per-position loss and the saved log-sum-exps.
fn cross_entropy_backward(
    p: &Params,
    [logits, targets, upstream, lse]: [&Tensor; 4],
    grad: &Tensor,
) {
    let gpu = grad.gpu();
    let args = [
        logits.bind(LOGITS),
        targets.bind(TARGETS),
        upstream.bind(UPSTREAM),
        lse.bind(SAVED_LSE),
        grad.bind(OUT),
    ];
    // where the device makes texture copies and four logits of neighbouring positions share
    // their class, a thread takes four, reading the copies
    let reads = [
        (LOGITS, LOGITS_TEX),
        (TARGETS, TARGETS_TEX),
        (UPSTREAM, UPSTREAM_TEX),
        (SAVED_LSE, LSE_TEX),
    ];
    let n = grad.numel();
    gpu.dispatch_reading_copies(
        (Kernel::new(&SHADER, "cross_entropy_backward"), p),
        &args,
        (reads, p.positions.is_multiple_of(4)),
        [gpu.grid_for(n), gpu.grid_for(n / 4)],
        0.0,
    );
}

/// Draws the class at flat `position` of every item of `grid` [B, ...] from `softmax(logits / T)`
/// by the Gumbel-max trick with a counter-based RNG keyed by (`seed`, item, position, class),
/// writing it into `grid` in place; `temperature <= 0` takes the most likely class. Item b of
/// `grid` is item `first_item + b` of the whole draw, so a draw made in parts (`first_item` the
/// number of items before each part) equals the same draw made at once. The logits [B, K, ...]
/// cover either every position of the grid or only the one drawn (a single position); both give
/// the same draw from the same logits. Nothing is read back. No autograd.
pub fn sample_position(
    logits: &Tensor,
    grid: &Tensor,
    position: usize,
    seed: u32,
    first_item: usize,
    temperature: f32,
) {
    let (items, classes, positions) = layout(logits, "sample_position");
    let grid_positions = grid.numel() / items.max(1);
    assert!(
        grid.dim(0) == items
            && position < grid_positions
            && (positions == grid_positions || positions == 1)
            && first_item.checked_add(items).is_some_and(|end| end <= u32::MAX as usize),
        "sample_position: grid {:?}, position {position} or first item {first_item} does not match logits {:?}",
        grid.shape(),
        logits.shape()
    );
    let gpu = logits.gpu();
    let mut p = params(items, classes, positions);
    p.position = if positions == 1 { 0 } else { position as u32 };
    p.seed = seed;
    p.temperature = temperature;
    p.grid_positions = grid_positions as u32;
    p.grid_position = position as u32;
    p.first_item = first_item as u32;
    gpu.run(
        &SHADER,
        "sample",
        &p,
        &[logits.bind(LOGITS), grid.bind(OUT)],
        gpu.grid_for(items),
    );
}
