// Latent-variable kernels of the AE / VAE / denoising AE: counter-based Gaussian and uniform
// random numbers, input corruption, the VAE's reparameterization and KL term, and Bernoulli
// cross-entropy on logits, each with its backward. One thread per output element.
//
// "Halves" tensors hold the VAE's encoder output as [B, 2L, S]: mu in channels 0..L, log-variance
// in channels L..2L (S spatial positions, 1 for a flat latent); `channels` = L, `inner` = S.

struct Params {
    n: u32,        // output elements
    inner: u32,    // S
    channels: u32, // L
    seed: u32,     // RNG key
    alpha: f32,
    beta: f32,
    _pad0: f32,
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// A uniform number in (0, 1) from the counter (seed, i, stream).
fn unit_uniform(i: u32, stream: u32) -> f32 {
    let h = pcg(pcg(i ^ pcg(p.seed)) ^ stream);
    return (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// A standard normal number from the counter (seed, i), by Box-Muller.
fn normal(i: u32) -> f32 {
    let r = sqrt(-2.0 * log(unit_uniform(i, 0x9E3779B9u)));
    return r * cos(6.283185307 * unit_uniform(i, 0x85EBCA6Bu));
}

// out = beta + alpha * N(0, 1)
@compute @workgroup_size(256)
fn normal_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = p.beta + p.alpha * normal(i); }
}

// Masking noise: out = a, except each element is replaced by beta with probability alpha.
@compute @workgroup_size(256)
fn mask_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = select(a[i], p.beta, unit_uniform(i, 0x27D4EB2Fu) < p.alpha); }
}

// Additive Gaussian noise: out = a + alpha * N(0, 1)
@compute @workgroup_size(256)
fn gaussian_noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) { out[i] = a[i] + p.alpha * normal(i); }
}

// Index of mu for output element i of a [B, L, S] tensor; log-variance is L * S further on.
fn mu_index(i: u32) -> u32 {
    let plane = p.channels * p.inner;
    return (i / plane) * 2u * plane + i % plane;
}

// z = mu + exp(logvar / 2) * eps;  a = halves [B, 2L, S], b = eps [B, L, S], out = z [B, L, S]
@compute @workgroup_size(256)
fn reparameterize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let m = mu_index(i);
        out[i] = a[m] + exp(0.5 * a[m + p.channels * p.inner]) * b[i];
    }
}

// a = halves, b = dz, c = eps; out = d halves: dmu = dz, dlogvar = dz * eps * exp(logvar / 2) / 2
@compute @workgroup_size(256)
fn reparameterize_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let m = mu_index(i);
        let v = m + p.channels * p.inner;
        out[m] = b[i];
        out[v] = b[i] * c[i] * 0.5 * exp(0.5 * a[v]);
    }
}

// KL(N(mu, exp(logvar)) || N(0, 1)) per element: -(1 + logvar - mu^2 - exp(logvar)) / 2;
// a = halves, out [B, L, S]
@compute @workgroup_size(256)
fn kl(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let m = mu_index(i);
        let mu = a[m];
        let lv = a[m + p.channels * p.inner];
        out[i] = -0.5 * (1.0 + lv - mu * mu - exp(lv));
    }
}

// a = halves, b = upstream gradient [B, L, S]; out = d halves: dmu = g mu, dlogvar = g (exp(logvar) - 1) / 2
@compute @workgroup_size(256)
fn kl_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let m = mu_index(i);
        let v = m + p.channels * p.inner;
        out[m] = b[i] * a[m];
        out[v] = b[i] * 0.5 * (exp(a[v]) - 1.0);
    }
}

// Bernoulli cross-entropy of logits a against targets b in [0, 1], stable for any logit:
// max(x, 0) - x t + log(1 + exp(-|x|))
@compute @workgroup_size(256)
fn bce_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let x = a[i];
        out[i] = max(x, 0.0) - x * b[i] + log(1.0 + exp(-abs(x)));
    }
}

// a = logits, b = targets, c = upstream gradient; out = c (sigmoid(x) - t)
@compute @workgroup_size(256)
fn bce_logits_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(gid, nwg);
    if (i < p.n) {
        let x = a[i];
        let e = exp(-abs(x));
        let s = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
        out[i] = c[i] * (s - b[i]);
    }
}
