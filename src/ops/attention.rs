//! Host side of `shaders/attention.wgsl`: causal multi-head attention over the positions of
//! feature maps, with its backward, and the same attention for one query position at a time
//! against keys and values kept from earlier positions (incremental sampling).

use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, Shader};
use crate::tensor::Tensor;

/// `shaders/attention.wgsl`.
pub static SHADER: Shader = crate::shader!("attention", Params, [A, B, OUT]);
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const OUT: Binding = Binding::read_write(3, "out");

crate::uniform_params! {
    struct Params {
        groups: u32,
        dim: u32,
        queries: u32,
        keys: u32,
        q0: u32,
        scale: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// The most positions (and the most channels per head) attention takes: a thread loops over
/// them, and the software Vulkan driver (llvmpipe) silently cuts a loop after 65535 iterations.
pub const MAX_POSITIONS: usize = 65535;

/// The sizes of one call: `groups` = items x heads sequences of `dim` features per head.
#[derive(Clone, Copy)]
struct Problem {
    groups: usize,
    dim: usize,
    queries: usize,
    keys: usize,
    q0: usize,
}

impl Problem {
    /// `items` maps of `channels` channels in `heads` heads: `queries` positions from `q0` on
    /// against `keys` positions.
    fn new(
        items: usize,
        channels: usize,
        heads: usize,
        queries: usize,
        keys: usize,
        q0: usize,
    ) -> Self {
        Self {
            groups: items * heads,
            dim: channels / heads,
            queries,
            keys,
            q0,
        }
    }

    /// The scores' scale `1 / sqrt(channels per head)`.
    fn scale(&self) -> f32 {
        1.0 / (self.dim as f32).sqrt()
    }

    /// The attention probabilities [G, Lq, Lk] and the output [G, D, Lq].
    fn attend(&self, queries: &Tensor, keys: &Tensor, values: &Tensor) -> (Tensor, Tensor) {
        let probs = self.softmax(&self.scores(queries, keys, self.scale()));
        let out = self.mix(&probs, values, 1.0);
        (probs, out)
    }

    fn params(&self, scale: f32) -> Params {
        let u = |v: usize| v as u32;
        Params {
            groups: u(self.groups),
            dim: u(self.dim),
            queries: u(self.queries),
            keys: u(self.keys),
            q0: u(self.q0),
            scale,
            _pad0: 0,
            _pad1: 0,
        }
    }

    /// Records `entry` writing a new tensor of `shape` from `a` and `b`, on `threads` threads.
    fn launch(
        &self,
        entry: &'static str,
        a: &Tensor,
        b: &Tensor,
        shape: &[usize],
        scale: f32,
        threads: usize,
    ) -> Tensor {
        let gpu = a.gpu();
        let out = Tensor::uninit(gpu, shape);
        gpu.run(
            &SHADER,
            entry,
            &self.params(scale),
            &[a.bind(A), b.bind(B), out.bind(OUT)],
            gpu.grid_for(threads),
        );
        out
    }

    fn score_shape(&self) -> [usize; 3] {
        [self.groups, self.queries, self.keys]
    }

    /// `scale * a^T b` under the causal mask: [G, Lq, Lk] from a [G, D, Lq] and b [G, D, Lk].
    fn scores(&self, a: &Tensor, b: &Tensor, scale: f32) -> Tensor {
        let shape = self.score_shape();
        let blocks = self.groups * blocks_of(self.queries) * blocks_of(self.keys);
        self.launch("scores", a, b, &shape, scale, blocks)
    }

    /// Row softmax of scores over the visible keys.
    fn softmax(&self, scores: &Tensor) -> Tensor {
        let shape = self.score_shape();
        let rows = self.groups * self.queries;
        self.launch("softmax", scores, scores, &shape, 1.0, rows)
    }

    /// The gradient of the scores from the probabilities and their gradient.
    fn softmax_backward(&self, probs: &Tensor, grad: &Tensor) -> Tensor {
        let shape = self.score_shape();
        let rows = self.groups * self.queries;
        self.launch("softmax_backward", probs, grad, &shape, 1.0, rows)
    }

    /// `scale * b a^T`: [G, D, Lq] from a [G, Lq, Lk] and b [G, D, Lk].
    fn mix(&self, a: &Tensor, b: &Tensor, scale: f32) -> Tensor {
        let shape = [self.groups, self.dim, self.queries];
        let blocks = self.groups * blocks_of(self.dim) * blocks_of(self.queries);
        self.launch("mix", a, b, &shape, scale, blocks)
    }

    /// `scale * b a`: [G, D, Lk] from a [G, Lq, Lk] and b [G, D, Lq].
    fn mix_transposed(&self, a: &Tensor, b: &Tensor, scale: f32) -> Tensor {
        let shape = [self.groups, self.dim, self.keys];
        let blocks = self.groups * blocks_of(self.dim) * blocks_of(self.keys);
        self.launch("mix_transposed", a, b, &shape, scale, blocks)
    }
}

/// The 4-wide blocks that cover `n` (each product thread computes 4 x 4 outputs).
fn blocks_of(n: usize) -> usize {
    n.div_ceil(4)
}

/// (items, channels, positions) of a map [B, C, ...] split into `heads`, checked against the limits.
fn layout(x: &Tensor, heads: usize, op: &str) -> (usize, usize, usize) {
    let shape = x.shape();
    assert!(
        shape.len() >= 2 && heads > 0 && shape[1].is_multiple_of(heads),
        "{op}: a map [B, C, ...] with C a multiple of the {heads} heads, got {shape:?}"
    );
    let positions: usize = shape[2..].iter().product();
    assert!(
        (1..=MAX_POSITIONS).contains(&positions) && shape[1] / heads <= MAX_POSITIONS,
        "{op}: at most {MAX_POSITIONS} positions and channels per head, got {shape:?}"
    );
    (shape[0], shape[1], positions)
}

/// Causal multi-head self-attention over the positions of maps [B, C, ...] (flattened in
/// row-major order): `queries`, `keys` and `values` of one shape, their C channels split into
/// `heads` heads of C / heads channels. The output at a position is, per head, the average of
/// the values at it and the positions before it, weighted by `softmax(q . k / sqrt(C / heads))`.
/// Gradients flow to all three inputs.
pub fn causal_attention(queries: &Tensor, keys: &Tensor, values: &Tensor, heads: usize) -> Tensor {
    let (items, channels, positions) = layout(queries, heads, "causal_attention");
    assert!(
        keys.shape() == queries.shape() && values.shape() == queries.shape(),
        "causal_attention: queries {:?}, keys {:?} and values {:?} must have one shape",
        queries.shape(),
        keys.shape(),
        values.shape()
    );
    let problem = Problem::new(items, channels, heads, positions, positions, 0);
    let (probs, out) = problem.attend(queries, keys, values);
    let out = out
        .reshape(queries.shape())
        .requiring_grad_if(autograd::needs_grad(&[queries, keys, values]));
    if out.requires_grad() {
        let (q, k, v) = (queries.detach(), keys.detach(), values.detach());
        let wants = [
            queries.requires_grad(),
            keys.requires_grad(),
            values.requires_grad(),
        ];
        let shape = queries.shape().to_vec();
        let scale = problem.scale();
        autograd::record(&[queries, keys, values], &out, move |g| {
            let grad_probs = problem.scores(g, &v, 1.0);
            let grad_scores = problem.softmax_backward(&probs, &grad_probs);
            smallvec![
                wants[0].then(|| problem.mix(&grad_scores, &k, scale).reshape(&shape)),
                wants[1].then(|| {
                    problem
                        .mix_transposed(&grad_scores, &q, scale)
                        .reshape(&shape)
                }),
                wants[2].then(|| problem.mix_transposed(&probs, g, 1.0).reshape(&shape)),
            ]
        });
    }
    out
}

/// The attention output at flat position `position` only: `query` [B, C, 1, 1] is that position's
/// query, `keys` and `values` [B, C, ...] hold the keys and values of every position up to it
/// (later ones are not read). Equal, bit for bit on one adapter, to [`causal_attention`] of the
/// whole maps at that position. No autograd.
pub fn attend_at(
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    heads: usize,
    position: usize,
) -> Tensor {
    let (items, channels, positions) = layout(keys, heads, "attend_at");
    assert!(
        values.shape() == keys.shape()
            && query.shape()[..2] == [items, channels]
            && query.numel() == items * channels
            && position < positions,
        "attend_at: query {:?} at position {position} does not match keys {:?} and values {:?}",
        query.shape(),
        keys.shape(),
        values.shape()
    );
    let problem = Problem::new(items, channels, heads, 1, positions, position);
    problem.attend(query, keys, values).1.reshape(query.shape())
}
