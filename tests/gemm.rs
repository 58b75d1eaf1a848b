//! gemm.wgsl against a plain f64 reference for every transpose combination and sizes that are and
//! are not multiples of its 64 x 64 x 16 and 128 x 128 x 8 tiles; backwards against finite
//! differences.

mod common;
use common::*;
use vqgpu::ops::gemm;

/// (M, N, K): single element, below / at / above the tile, long K.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 5, 7),
    (64, 64, 16),
    (65, 130, 17),
    (100, 37, 129),
    (1, 70, 300),
];

/// Shapes for the cpu set's blocked GEMM beyond the tile cases: rows not a multiple of its 8-row
/// block, a K split in chunks (few blocks, long K), columns that fill several workgroups; for its
/// tall GEMM (M of 32 or more) 32-row blocks with rows left over and A read as vec4, and 64-row
/// blocks with a K split in chunks.
const BLOCKED_SHAPES: [(usize, usize, usize); 5] = [
    (9, 12, 4100),
    (17, 600, 33),
    (8, 8, 8),
    (40, 44, 36),
    (70, 24, 5000),
];

/// Random operands of an M x N x K product: a stored [M, K] (or [K, M] transposed) and b [K, N]
/// (or [N, K]), with their values.
fn operands(
    gpu: &vqgpu::Gpu,
    rng: &mut rand_chacha::ChaCha8Rng,
    (m, n, k): (usize, usize, usize),
    ta: bool,
    tb: bool,
) -> (vqgpu::Tensor, Vec<f32>, vqgpu::Tensor, Vec<f32>) {
    let (a, av) = random_tensor(gpu, rng, &if ta { [k, m] } else { [m, k] });
    let (b, bv) = random_tensor(gpu, rng, &if tb { [n, k] } else { [k, n] });
    (a, av, b, bv)
}

/// `op(a) op(b)` where a is stored [M, K] (or [K, M] transposed) and b [K, N] (or [N, K]).
fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                s += av as f64 * bv as f64;
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// Shapes for the 128 x 128 tile: one partial tile, one tile and a row and column more, K not a
/// multiple of its 8-deep slice, a tall and a wide product.
const WIDE_SHAPES: [(usize, usize, usize); 5] = [
    (3, 5, 7),
    (129, 129, 9),
    (128, 128, 8),
    (300, 20, 33),
    (17, 260, 100),
];

/// Both tiles of `gemm.wgsl`, forced, against the reference; and each other, bit for bit.
#[test]
fn both_tiles_match_reference_and_agree_bit_for_bit() {
    use gemm::GemmTile;
    let gpu = gpu();
    let mut rng = rng(23);
    for (m, n, k) in WIDE_SHAPES.into_iter().chain(SHAPES) {
        for ta in [false, true] {
            for tb in [false, true] {
                let (a, av, b, bv) = operands(&gpu, &mut rng, (m, n, k), ta, tb);
                let want = reference(&av, &bv, m, n, k, ta, tb);
                let [small, wide] = [GemmTile::Square64, GemmTile::Square128].map(|tile| {
                    let c = download(&gemm::matmul_on_tile(&a, &b, ta, tb, tile));
                    let what = format!("gemm {m}x{n}x{k} ta={ta} tb={tb} {tile}");
                    assert_close(&c, &want, 1e-4, 1e-4 * (k as f64).sqrt(), &what);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                });
                assert_eq!(
                    small, wide,
                    "gemm {m}x{n}x{k} ta={ta} tb={tb}: tiles differ"
                );
            }
        }
    }
}

#[test]
fn matmul_matches_reference_for_all_transposes() {
    for gpu in kernel_set_gpus() {
        matmul_cases(&gpu);
    }
}

/// The CPU set's products give the same bits whether they read their operands from texture
/// copies or from the buffers.
#[test]
fn texture_copies_and_buffer_reads_give_the_same_bits() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    let mut rng = rng(29);
    for (m, n, k) in [(3, 5, 7)].into_iter().chain(BLOCKED_SHAPES) {
        for (ta, tb) in [(false, false), (true, true)] {
            let av = random(&mut rng, m * k);
            let bv = random(&mut rng, k * n);
            let product = |gpu: &vqgpu::Gpu| {
                let a = upload(gpu, &if ta { [k, m] } else { [m, k] }, &av);
                let b = upload(gpu, &if tb { [n, k] } else { [k, n] }, &bv);
                bits(&gemm::matmul(&a, &b, ta, tb))
            };
            assert_eq!(
                product(&copies),
                product(&buffers),
                "gemm {m}x{n}x{k} ta={ta} tb={tb}: texture copies and buffer reads differ"
            );
        }
    }
}

/// `a b`, and the texture copies it made and those it did not need to make (a slot held them).
fn product_counting_copies(
    gpu: &vqgpu::Gpu,
    a: &vqgpu::Tensor,
    b: &vqgpu::Tensor,
) -> (vqgpu::Tensor, [u64; 2]) {
    let before = gpu.host_stats();
    let c = gemm::matmul(a, b, false, false);
    let s = gpu.host_stats() - before;
    (c, [s.texture_copies, s.copies_reused])
}

/// The CPU set reads an operand copied for an earlier launch of the same submission from the
/// texture slot that still holds it, and copies it again once its buffer has changed (a launch
/// wrote it: here a fill, into the buffer of a tensor just dropped) or work was submitted.
#[test]
fn a_copy_still_held_is_read_again_until_its_buffer_changes() {
    let Some([gpu, _]) = copies_and_buffer_reads() else {
        return;
    };
    let (m, n, k) = (40, 44, 36);
    let mut rng = rng(31);
    let (a, av) = random_tensor(&gpu, &mut rng, &[m, k]);
    let (b, bv) = random_tensor(&gpu, &mut rng, &[k, n]);
    gpu.sync().unwrap();
    let product = |a: &vqgpu::Tensor, b: &vqgpu::Tensor| product_counting_copies(&gpu, a, b);
    let (first, copies) = product(&a, &b);
    assert_eq!(
        copies,
        [2, 0],
        "the first product's copies and reused copies"
    );
    let (again, copies) = product(&a, &b);
    assert_eq!(
        copies,
        [0, 2],
        "the same product's copies and reused copies"
    );
    // b's buffer goes back to the pool, and a launch writes it as a new tensor
    drop(b);
    let created = gpu.buffers_created();
    let halves = vqgpu::Tensor::full(&gpu, &[k, n], 0.5);
    assert_eq!(
        gpu.buffers_created(),
        created,
        "the new tensor is not in a pooled buffer"
    );
    let (with_halves, copies) = product(&a, &halves);
    assert_eq!(
        copies,
        [1, 1],
        "copies and reused copies with the new tensor"
    );
    let check = |c: &vqgpu::Tensor, bv: &[f32], what: &str| {
        let want = reference(&av, bv, m, n, k, false, false);
        assert_close(&download(c), &want, 1e-4, 1e-4 * (k as f64).sqrt(), what);
    };
    check(&first, &bv, "the first product");
    check(&again, &bv, "the same product again");
    check(
        &with_halves,
        &vec![0.5; k * n],
        "the product with the new tensor in b's buffer",
    );
    // the downloads submitted the work: nothing is held any more
    let (_, copies) = product(&a, &halves);
    assert_eq!(
        copies,
        [2, 0],
        "copies and reused copies after a submission"
    );
}

/// A launch that reads one operand from the slot that still holds it copies its other operand
/// into another slot, even where that slot's texture must grow and the held one is large enough.
#[test]
fn a_launch_never_copies_over_a_copy_it_reads() {
    let Some([gpu, _]) = copies_and_buffer_reads() else {
        return;
    };
    // over 1 MiB each: more than a slot's first texture holds
    let (m, n, k) = (260, 270, 1024);
    let mut rng = rng(32);
    let (s, _) = random_tensor(&gpu, &mut rng, &[4, m]);
    let (g, gv) = random_tensor(&gpu, &mut rng, &[m, k]);
    let (h, hv) = random_tensor(&gpu, &mut rng, &[k, n]);
    gpu.sync().unwrap();
    // g is copied into one slot, whose texture grows
    let _ = gemm::matmul(&s, &g, false, false);
    let (c, copies) = product_counting_copies(&gpu, &g, &h);
    assert_eq!(copies, [1, 1], "copies and reused copies of g h");
    let want = reference(&gv, &hv, m, n, k, false, false);
    assert_close(&download(&c), &want, 1e-4, 1e-4 * (k as f64).sqrt(), "g h");
}

fn matmul_cases(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(20);
    for (m, n, k) in SHAPES.into_iter().chain(BLOCKED_SHAPES) {
        for ta in [false, true] {
            for tb in [false, true] {
                let (a, av, b, bv) = operands(&gpu, &mut rng, (m, n, k), ta, tb);
                let c = gemm::matmul(&a, &b, ta, tb);
                assert_eq!(c.shape(), [m, n]);
                let want = reference(&av, &bv, m, n, k, ta, tb);
                assert_close(
                    &download(&c),
                    &want,
                    1e-4,
                    1e-4 * (k as f64).sqrt(),
                    &format!(
                        "gemm {m}x{n}x{k} ta={ta} tb={tb} kernels={}",
                        gpu.kernel_set()
                    ),
                );
            }
        }
    }
}

#[test]
fn linear_adds_the_bias_per_output_feature() {
    for gpu in kernel_set_gpus() {
        linear_cases(&gpu);
    }
}

fn linear_cases(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(21);
    // the last one splits K on the cpu set: the bias goes into the first chunk only
    for (batch, inf, outf) in [(1, 1, 1), (4, 9, 70), (65, 33, 3), (3, 5000, 7)] {
        let (x, xv) = random_tensor(&gpu, &mut rng, &[batch, inf]);
        let (w, wv) = random_tensor(&gpu, &mut rng, &[outf, inf]);
        let (b, bv) = random_tensor(&gpu, &mut rng, &[outf]);
        let mut want = reference(&xv, &wv, batch, outf, inf, false, true);
        for (i, v) in want.iter_mut().enumerate() {
            *v += bv[i % outf] as f64;
        }
        assert_close(
            &download(&gemm::linear(&x, &w, Some(&b))),
            &want,
            1e-4,
            1e-4 * (inf as f64).sqrt(),
            &format!("linear {batch}x{inf}->{outf} kernels={}", gpu.kernel_set()),
        );
    }
}

#[test]
fn gemm_backwards_match_finite_differences() {
    for gpu in kernel_set_gpus() {
        gemm_backward_cases(&gpu);
    }
}

fn gemm_backward_cases(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(22);
    let (m, n, k) = (5, 6, 7);
    for ta in [false, true] {
        for tb in [false, true] {
            let a_shape = if ta { vec![k, m] } else { vec![m, k] };
            let b_shape = if tb { vec![n, k] } else { vec![k, n] };
            let a = (a_shape, random(&mut rng, m * k));
            let b = (b_shape, random(&mut rng, k * n));
            grad_check(
                &gpu,
                &[a, b],
                &|t| gemm::matmul(&t[0], &t[1], ta, tb),
                20,
                1e-2,
                1e-2,
                &format!("matmul ta={ta} tb={tb} kernels={}", gpu.kernel_set()),
            );
        }
    }
    let x = (vec![3, 4], random(&mut rng, 12));
    let w = (vec![5, 4], random(&mut rng, 20));
    let b = (vec![5], random(&mut rng, 5));
    grad_check(
        &gpu,
        &[x, w, b],
        &|t| gemm::linear(&t[0], &t[1], Some(&t[2])),
        20,
        1e-2,
        1e-2,
        "linear",
    );
}
