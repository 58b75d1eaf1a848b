// Adam with bias correction, one thread per parameter over the flat parameter buffer. With TEX
// (the CPU kernel set), a thread takes four parameters and reads the four inputs from texture
// copies (see elementwise.wgsl); each parameter's update is the same operations either way.

override TEX: bool = false;

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32, // 1 - beta1^t
    bias_correction2: f32, // 1 - beta2^t
    weight_decay: f32,     // L2 penalty added to the gradient (PyTorch Adam's weight_decay)
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var grads_tex: texture_2d<f32>; // with TEX: the copies of the four
@group(0) @binding(6) var params_tex: texture_2d<f32>;
@group(0) @binding(7) var m_tex: texture_2d<f32>;
@group(0) @binding(8) var v_tex: texture_2d<f32>;

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // parameters first .. first + count - 1
    let q = gid.x + gid.y * nwg.x * 256u;
    let count = select(1u, 4u, TEX);
    let first = q * count;
    if (first >= p.n) { return; }
    var g: vec4<f32>;
    var w: vec4<f32>;
    var m_old: vec4<f32>;
    var v_old: vec4<f32>;
    if (TEX) {
        g = texel(grads_tex, q);
        w = texel(params_tex, q);
        m_old = texel(m_tex, q);
        v_old = texel(v_tex, q);
    } else {
        g = vec4<f32>(grads[q]);
        w = vec4<f32>(params[q]);
        m_old = vec4<f32>(m[q]);
        v_old = vec4<f32>(v[q]);
    }
    let grad = g + p.weight_decay * w;
    let m_new = p.beta1 * m_old + (1.0 - p.beta1) * grad;
    let v_new = p.beta2 * v_old + (1.0 - p.beta2) * grad * grad;
    let denom = sqrt(v_new / p.bias_correction2) + p.eps;
    let w_new = w - p.lr * (m_new / p.bias_correction1) / denom;
    for (var c = 0u; c < count; c++) {
        if (first + c < p.n) {
            m[first + c] = m_new[c];
            v[first + c] = v_new[c];
            params[first + c] = w_new[c];
        }
    }
}
