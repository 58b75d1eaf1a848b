// Adam with bias correction, one thread per parameter over the flat parameter buffer.

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

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let grad = grads[i] + p.weight_decay * params[i];
    let m_new = p.beta1 * m[i] + (1.0 - p.beta1) * grad;
    let v_new = p.beta2 * v[i] + (1.0 - p.beta2) * grad * grad;
    m[i] = m_new;
    v[i] = v_new;
    let denom = sqrt(v_new / p.bias_correction2) + p.eps;
    params[i] = params[i] - p.lr * (m_new / p.bias_correction1) / denom;
}
