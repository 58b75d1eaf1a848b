//! Host side of `shaders/latent.wgsl`: counter-based Gaussian noise, input corruption for the
//! denoising AE, and the VAE's reparameterization, KL term and Bernoulli cross-entropy, with
//! their backward passes.
//!
//! The VAE's encoder output is one "halves" tensor [B, 2L, ...]: the means in the first L channels,
//! the log-variances in the last L.

use smallvec::smallvec;

use crate::autograd;
use crate::gpu::{Binding, BufferArg, Gpu, Shader};
use crate::tensor::Tensor;

/// `shaders/latent.wgsl`.
pub static SHADER: Shader = crate::shader!("latent", Params, [A, B, C, OUT]);
const A: Binding = Binding::read(1, "a");
const B: Binding = Binding::read(2, "b");
const C: Binding = Binding::read(3, "c");
const OUT: Binding = Binding::read_write(4, "out");

crate::uniform_params! {
    struct Params {
        n: u32,
        inner: u32,
        channels: u32,
        seed: u32,
        alpha: f32,
        beta: f32,
        _pad: [f32; 2],
    }
}

impl Params {
    fn new(n: usize, seed: u32, alpha: f32, beta: f32) -> Self {
        Self {
            n: n as u32,
            inner: 1,
            channels: 1,
            seed,
            alpha,
            beta,
            _pad: [0.0; 2],
        }
    }

    /// For kernels over the output [B, L, S] of a halves tensor of `halves_shape`.
    fn halves(halves_shape: &[usize]) -> Self {
        let mut p = Self::new(halves_shape.iter().product::<usize>() / 2, 0, 0.0, 0.0);
        p.channels = (halves_shape[1] / 2) as u32;
        p.inner = halves_shape[2..].iter().product::<usize>() as u32;
        p
    }
}

fn launch(gpu: &Gpu, entry: &'static str, params: Params, args: &[BufferArg]) {
    gpu.run(
        &SHADER,
        entry,
        &params,
        args,
        gpu.grid_for(params.n as usize),
    );
}

/// Folds a 64-bit seed into the kernels' 32-bit RNG key.
pub fn rng_key(seed: u64) -> u32 {
    (seed ^ (seed >> 32)) as u32
}

/// A tensor of `shape` with elements `mean + std * N(0, 1)`, a pure function of (`seed`, index).
pub fn normal(gpu: &Gpu, shape: &[usize], seed: u64, mean: f32, std: f32) -> Tensor {
    let out = Tensor::uninit(gpu, shape);
    let p = Params::new(out.numel(), rng_key(seed), std, mean);
    launch(gpu, "normal_fill", p, &[out.bind(OUT)]);
    out
}

/// `x` with each element replaced by `fill` with probability `prob` (seeded; no autograd).
pub fn mask_noise(x: &Tensor, prob: f32, fill: f32, seed: u64) -> Tensor {
    let out = Tensor::uninit(x.gpu(), x.shape());
    let p = Params::new(x.numel(), rng_key(seed), prob, fill);
    launch(x.gpu(), "mask_noise", p, &[x.bind(A), out.bind(OUT)]);
    out
}

/// `x + std * N(0, 1)` (seeded; no autograd).
pub fn gaussian_noise(x: &Tensor, std: f32, seed: u64) -> Tensor {
    let out = Tensor::uninit(x.gpu(), x.shape());
    let p = Params::new(x.numel(), rng_key(seed), std, 0.0);
    launch(x.gpu(), "gaussian_noise", p, &[x.bind(A), out.bind(OUT)]);
    out
}

fn halves_shape(halves: &Tensor, op: &str) -> Vec<usize> {
    let s = halves.shape();
    assert!(
        s.len() >= 2 && s[1] >= 2 && s[1].is_multiple_of(2),
        "{op}: expected [B, 2L, ...] (means, then log-variances), got {s:?}"
    );
    let mut out = s.to_vec();
    out[1] /= 2;
    out
}

/// The reparameterization `z = mu + exp(logvar / 2) * eps` of `halves` [B, 2L, ...] with the
/// noise `eps` [B, L, ...]; the gradient reaches the means and log-variances.
pub fn reparameterize(halves: &Tensor, eps: &Tensor) -> Tensor {
    let shape = halves_shape(halves, "reparameterize");
    assert_eq!(eps.shape(), shape, "reparameterize: eps must be {shape:?}");
    let gpu = halves.gpu();
    let rg = autograd::needs_grad(&[halves]);
    let z = Tensor::output(gpu, &shape, rg);
    let p = Params::halves(halves.shape());
    launch(
        gpu,
        "reparameterize",
        p,
        &[halves.bind(A), eps.bind(B), z.bind(OUT)],
    );
    if rg {
        let (saved, eps) = (halves.detach(), eps.detach());
        autograd::record(&[halves], &z, move |g| {
            let dx = Tensor::uninit(g.gpu(), saved.shape());
            launch(
                g.gpu(),
                "reparameterize_backward",
                p,
                &[saved.bind(A), g.bind(B), eps.bind(C), dx.bind(OUT)],
            );
            smallvec![Some(dx)]
        });
    }
    z
}

/// The KL divergence of `N(mu, exp(logvar))` from `N(0, 1)` per latent element,
/// `-(1 + logvar - mu^2 - exp(logvar)) / 2`, for `halves` [B, 2L, ...]; returns [B, L, ...].
pub fn kl(halves: &Tensor) -> Tensor {
    let shape = halves_shape(halves, "kl");
    let gpu = halves.gpu();
    let rg = autograd::needs_grad(&[halves]);
    let out = Tensor::output(gpu, &shape, rg);
    let p = Params::halves(halves.shape());
    launch(gpu, "kl", p, &[halves.bind(A), out.bind(OUT)]);
    if rg {
        let saved = halves.detach();
        autograd::record(&[halves], &out, move |g| {
            let dx = Tensor::uninit(g.gpu(), saved.shape());
            launch(
                g.gpu(),
                "kl_backward",
                p,
                &[saved.bind(A), g.bind(B), dx.bind(OUT)],
            );
            smallvec![Some(dx)]
        });
    }
    out
}

/// Bernoulli cross-entropy of `logits` against `targets` in [0, 1], per element (same shapes);
/// the gradient reaches the logits.
pub fn bce_logits(logits: &Tensor, targets: &Tensor) -> Tensor {
    assert_eq!(
        logits.shape(),
        targets.shape(),
        "bce_logits: logits and targets differ in shape"
    );
    let gpu = logits.gpu();
    let rg = autograd::needs_grad(&[logits]);
    let out = Tensor::output(gpu, logits.shape(), rg);
    let p = Params::new(logits.numel(), 0, 0.0, 0.0);
    launch(
        gpu,
        "bce_logits",
        p,
        &[logits.bind(A), targets.bind(B), out.bind(OUT)],
    );
    if rg {
        let (saved, targets) = (logits.detach(), targets.detach());
        autograd::record(&[logits], &out, move |g| {
            let dx = Tensor::uninit(g.gpu(), saved.shape());
            launch(
                g.gpu(),
                "bce_logits_backward",
                p,
                &[saved.bind(A), targets.bind(B), g.bind(C), dx.bind(OUT)],
            );
            smallvec![Some(dx)]
        });
    }
    out
}
