//! Host side of `shaders/adam.wgsl`: one Adam step over flat parameter, gradient and moment buffers.

use crate::gpu::{Binding, Kernel, Shader};
use crate::tensor::Tensor;

/// `shaders/adam.wgsl`.
pub static SHADER: Shader = crate::shader!(
    "adam",
    Params,
    [GRADS, PARAMS, M, V, GRADS_TEX, PARAMS_TEX, M_TEX, V_TEX]
)
.reading_copies(crate::ops::texel::SOURCE);
const GRADS: Binding = Binding::read(1, "grads");
const PARAMS: Binding = Binding::read_write(2, "params");
const M: Binding = Binding::read_write(3, "m");
const V: Binding = Binding::read_write(4, "v");
const GRADS_TEX: Binding = Binding::texture(5, "grads_tex");
const PARAMS_TEX: Binding = Binding::texture(6, "params_tex");
const M_TEX: Binding = Binding::texture(7, "m_tex");
const V_TEX: Binding = Binding::texture(8, "v_tex");

/// Adam hyper-parameters for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

crate::uniform_params! {
    struct Params {
        n: u32,
        _pad: [u32; 3],
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bias_correction1: f32,
        bias_correction2: f32,
        weight_decay: f32,
        _pad1: f32,
    }
}

/// Step number `t` (1-based) of Adam, updating `params`, `m` and `v` in place from `grads`.
pub fn adam_step(
    params: &Tensor,
    grads: &Tensor,
    m: &Tensor,
    v: &Tensor,
    hyper: AdamHyper,
    t: u64,
) {
    let n = params.numel();
    for (name, other) in [("grads", grads), ("m", m), ("v", v)] {
        assert_eq!(
            other.numel(),
            n,
            "adam_step: {name} size differs from params"
        );
    }
    let t = t.max(1) as i32;
    let p = Params {
        n: n as u32,
        _pad: [0; 3],
        lr: hyper.lr,
        beta1: hyper.beta1,
        beta2: hyper.beta2,
        eps: hyper.eps,
        bias_correction1: 1.0 - hyper.beta1.powi(t),
        bias_correction2: 1.0 - hyper.beta2.powi(t),
        weight_decay: hyper.weight_decay,
        _pad1: 0.0,
    };
    let gpu = params.gpu();
    let args = [grads.bind(GRADS), params.bind(PARAMS), m.bind(M), v.bind(V)];
    // where the device makes texture copies, a thread takes four parameters and reads them
    let reads = [
        (GRADS, GRADS_TEX),
        (PARAMS, PARAMS_TEX),
        (M, M_TEX),
        (V, V_TEX),
    ];
    gpu.dispatch_reading_copies(
        (Kernel::new(&SHADER, "adam_step"), &p),
        &args,
        (reads, true),
        [gpu.grid_for(n), gpu.grid_for(n.div_ceil(4))],
        0.0,
    );
}
