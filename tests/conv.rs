//! conv2d.wgsl (forward, input gradient, weight gradient; masked) and conv_transpose2d against plain
//! f64 references at shapes that are and are not multiples of the 64 x 64 x 16 tile, with batch 1,
//! 1x1 spatial, stride 1 and 2, padding 0/1/2; backwards against finite differences.

// the reference loops and case table name every convolution dimension explicitly
#![allow(clippy::too_many_arguments)]

mod common;
use common::*;
use vqgpu::ops::conv::{self, Conv2dOptions, ConvTranspose2dOptions, SpatialMask};

/// One convolution case: batch, in channels, out channels, height, width, kernel (h, w), stride, padding.
#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    stride: usize,
    /// Vertical and horizontal padding.
    pad: (usize, usize),
}

const fn case(
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    stride: usize,
    pad: usize,
) -> Case {
    Case {
        n,
        cin,
        cout,
        h,
        w,
        k,
        stride,
        pad: (pad, pad),
    }
}

impl Case {
    /// The same case with padding `pad` (vertical, horizontal).
    const fn padded(self, pad: (usize, usize)) -> Case {
        Case { pad, ..self }
    }
}

const CASES: [Case; 29] = [
    case(1, 1, 1, 1, 1, (1, 1), 1, 0),   // everything 1, 1x1 spatial
    case(2, 3, 5, 7, 9, (3, 3), 1, 1),   // odd sizes
    case(2, 4, 6, 8, 8, (4, 4), 2, 1),   // the VQ-VAE downsampling shape
    case(1, 3, 70, 5, 6, (3, 3), 2, 2),  // cout above one tile, padding 2
    case(3, 17, 9, 6, 5, (1, 1), 1, 0),  // 1x1 conv
    case(1, 2, 3, 11, 11, (5, 5), 2, 0), // padding 0, large kernel
    case(2, 65, 3, 4, 4, (3, 3), 1, 1),  // K = 585, not a multiple of 16: forward split in 4 chunks
    case(1, 2, 4, 1, 1, (3, 3), 1, 1),   // 1x1 spatial with padding
    case(2, 3, 4, 5, 7, (2, 3), 1, 1),   // non-square kernel
    case(4, 3, 5, 20, 20, (3, 3), 1, 1), // long K: the weight gradient is split into 25 chunks
    case(2, 40, 24, 9, 7, (4, 4), 2, 1), // stride-2 phases of unequal size, 32-row and 64-row tiles
    case(2, 20, 70, 5, 6, (3, 3), 2, 1), // input gradient K = 280: 4 stride phases x 2 K chunks
    case(1, 2, 3, 10, 8, (5, 5), 3, 2), // stride 3: nine phases, padding not a multiple of the stride
    // the cpu set's lowering: a weight gradient over 16 x 256 positions split in 2 chunks, and
    // 8x8 planes whose output gradient is read as vec4
    case(16, 3, 5, 16, 16, (3, 3), 1, 1),
    case(3, 9, 12, 8, 8, (3, 3), 1, 1),
    case(2, 6, 5, 4, 4, (1, 1), 1, 0), // pointwise on 4x4 planes: the cpu set reads x in place
    // 36 rows in all three products (32-row blocks of the cpu set's tall GEMM, the last one
    // partial), A read as vec4: the weight, the transposed weight, the output gradient
    case(2, 4, 36, 6, 8, (3, 3), 1, 1),
    // 2 output channels over 1275 pixels: the narrow kernel of the gpu set (every row of 1024
    // columns per workgroup) with a partial second tile and its forward split in 2 K chunks
    case(5, 40, 2, 15, 17, (3, 3), 1, 1),
    // stride 1 with output rows of whole vec4 (the cpu set's columns take each kernel row of
    // four outputs from three texels of x): input rows that are not (x's rows start at every
    // texel offset), padding 2 (the first taps before the input), and an input gradient whose dy
    // rows are not while dx's are
    case(2, 3, 4, 5, 10, (3, 3), 1, 0),
    case(1, 2, 3, 5, 6, (3, 3), 1, 2),
    case(2, 3, 4, 6, 8, (3, 3), 1, 0),
    // stride 2 with output rows of whole vec4 (the cpu set's columns take each kernel row of four
    // outputs from one window of four texels): input rows of 7 (rows start at every texel
    // offset), the last outputs' taps past the right edge
    case(2, 3, 4, 5, 7, (3, 3), 2, 1),
    // stride 1 and a kernel 7 wide (the cpu set's columns take each kernel position of four
    // outputs from two texels, as kernels of up to 5 take each kernel row from three)
    case(2, 3, 4, 5, 8, (3, 7), 1, 1).padded((1, 3)),
    // the cpu set's weight gradient from the forward's columns (kept in slabs of 64 columns)
    // split along its 4 500 columns into 2 chunks, the second starting inside a slab
    case(5, 2, 32, 30, 30, (3, 3), 1, 1),
    // a pointwise convolution on planes of 20 (whole groups of 4): the cpu set's weight gradient
    // reads x in place along its 4 100 positions, split into 2 chunks, the second starting
    // inside an image
    case(205, 3, 40, 4, 5, (1, 1), 1, 0),
    // a pointwise convolution on planes of 9 (not whole groups of 4) with 33 output channels:
    // the cpu set's weight gradient made alone lowers x into columns in slabs for the tall GEMM
    // (its second 32-row block holds one row)
    case(2, 3, 33, 3, 3, (1, 1), 1, 0),
    // stride 1, output rows of whole vec4 and at least 32 output (or input) channels: the cpu
    // set's products read x (or dy) shifted per kernel column instead of its columns. A
    // non-square kernel with padding 2 (the first taps before the input); a forward split in 2
    // K chunks, the second starting inside a kernel, beside a 460-channel input gradient; a
    // weight gradient split along its 4 704 positions, the second chunk starting inside an image
    case(2, 6, 40, 5, 6, (2, 3), 1, 2),
    case(1, 460, 32, 4, 4, (3, 3), 1, 1),
    case(7, 2, 32, 28, 24, (3, 3), 1, 1),
];

fn out_size(c: &Case) -> (usize, usize) {
    (
        (c.h + 2 * c.pad.0 - c.k.0) / c.stride + 1,
        (c.w + 2 * c.pad.1 - c.k.1) / c.stride + 1,
    )
}

fn options(c: &Case, mask: Option<SpatialMask>) -> Conv2dOptions {
    Conv2dOptions {
        stride: (c.stride, c.stride),
        padding: c.pad,
        mask,
    }
}

/// Calls `f(b, co, oy, ox, ci, iy, ix, tap)` for every term of the convolution sum that lands inside x.
fn for_each_term(
    c: &Case,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize),
) {
    let (oh, ow) = out_size(c);
    for b in 0..c.n {
        for co in 0..c.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ci in 0..c.cin {
                        for ky in 0..c.k.0 {
                            for kx in 0..c.k.1 {
                                let iy = (oy * c.stride + ky) as isize - c.pad.0 as isize;
                                let ix = (ox * c.stride + kx) as isize - c.pad.1 as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < c.h && (ix as usize) < c.w
                                {
                                    f(b, co, oy, ox, ci, iy as usize, ix as usize, ky * c.k.1 + kx);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reference forward, input gradient and weight gradient of a (masked) convolution.
fn reference(
    c: &Case,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    dy: &[f32],
    keep: &dyn Fn(usize) -> bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (oh, ow) = out_size(c);
    let taps = c.k.0 * c.k.1;
    let mut y = vec![0.0; c.n * c.cout * oh * ow];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for (i, v) in y.iter_mut().enumerate() {
        *v = bias[(i / (oh * ow)) % c.cout] as f64;
    }
    for_each_term(c, |b, co, oy, ox, ci, iy, ix, tap| {
        if !keep(tap) {
            return;
        }
        let yi = ((b * c.cout + co) * oh + oy) * ow + ox;
        let xi = ((b * c.cin + ci) * c.h + iy) * c.w + ix;
        let wi = (co * c.cin + ci) * taps + tap;
        y[yi] += w[wi] as f64 * x[xi] as f64;
        dx[xi] += w[wi] as f64 * dy[yi] as f64;
        dw[wi] += x[xi] as f64 * dy[yi] as f64;
    });
    (y, dx, dw)
}

fn check_case(gpu: &vqgpu::Gpu, c: &Case, mask: Option<SpatialMask>, seed: u64) {
    let gpu = gpu.clone();
    let mut rng = rng(seed);
    let (oh, ow) = out_size(c);
    let (x, xv) = random_tensor(&gpu, &mut rng, &[c.n, c.cin, c.h, c.w]);
    let (w, wv) = random_tensor(&gpu, &mut rng, &[c.cout, c.cin, c.k.0, c.k.1]);
    let (b, bv) = random_tensor(&gpu, &mut rng, &[c.cout]);
    let (dy, dyv) = random_tensor(&gpu, &mut rng, &[c.n, c.cout, oh, ow]);
    let keep = |tap: usize| mask.is_none_or(|m| m.keeps(tap));
    let (y_ref, dx_ref, dw_ref) = reference(c, &xv, &wv, &bv, &dyv, &keep);
    let opts = options(c, mask);
    let k_terms = (c.cin * c.k.0 * c.k.1) as f64;
    let tol = 1e-4 * k_terms.sqrt();
    let what = format!(
        "{c:?} masked={} kernels={}",
        mask.is_some(),
        gpu.kernel_set()
    );
    let y = conv::conv2d(&x, &w, Some(&b), opts);
    assert_eq!(y.shape(), [c.n, c.cout, oh, ow], "{what}: output shape");
    assert_close(&download(&y), &y_ref, 1e-4, tol, &format!("forward {what}"));
    let dx = conv::conv2d_input_grad(&dy, &w, (c.h, c.w), opts);
    assert_close(
        &download(&dx),
        &dx_ref,
        1e-4,
        1e-4 * ((c.cout * c.k.0 * c.k.1) as f64).sqrt(),
        &format!("input grad {what}"),
    );
    let dw = conv::conv2d_weight_grad(&dy, &x, c.k, opts);
    let taps = c.k.0 * c.k.1;
    let dropped_are_zero = |dw: &[f32], how: &str| {
        for (i, v) in dw.iter().enumerate() {
            if !keep(i % taps) {
                assert_eq!(*v, 0.0, "{how} at dropped position {i}, {what}");
            }
        }
    };
    dropped_are_zero(&download(&dw), "weight grad");
    assert_close(
        &download(&dw),
        &dw_ref,
        1e-4,
        1e-4 * ((c.n * oh * ow) as f64).sqrt(),
        &format!("weight grad {what}"),
    );
    // through autograd: on the cpu set the weight gradient reads the columns the forward made
    let (xg, wg) = (x.with_requires_grad(true), w.with_requires_grad(true));
    let grads = conv::conv2d(&xg, &wg, Some(&b), opts)
        .mul(&dy)
        .sum()
        .backward();
    let grad = |t: &vqgpu::Tensor| download(&grads.get(t).expect("a gradient"));
    dropped_are_zero(&grad(&wg), "weight grad by autograd");
    assert_close(
        &grad(&wg),
        &dw_ref,
        1e-4,
        1e-4 * ((c.n * oh * ow) as f64).sqrt(),
        &format!("weight grad by autograd {what}"),
    );
    // made alone or from the columns the forward kept (cpu set), the same product: the same bits
    assert_eq!(
        bits(&dw),
        bits(&grads.get(&wg).expect("a gradient")),
        "weight grad alone and by autograd, {what}"
    );
    assert_close(
        &grad(&xg),
        &dx_ref,
        1e-4,
        1e-4 * ((c.cout * c.k.0 * c.k.1) as f64).sqrt(),
        &format!("input grad by autograd {what}"),
    );
    // the fused ReLU: the ReLU of the same sums, and the same gradients as a ReLU after it
    let relu = conv::Fused::RELU;
    let fused =
        |x: &vqgpu::Tensor, w: &vqgpu::Tensor| conv::conv2d_fused(x, w, Some(&b), opts, relu);
    let plain = |x: &vqgpu::Tensor, w: &vqgpu::Tensor| conv::conv2d(x, w, Some(&b), opts).relu();
    let y = check_fused(
        &[&x, &w],
        &dy,
        &|t| fused(t[0], t[1]),
        &|t| plain(t[0], t[1]),
        &what,
    );
    assert_relu_cuts(&y, &what);
    // without a bias the output is the same minus the bias
    let y_nobias = conv::conv2d(&x, &w, None, opts);
    let no_bias_ref: Vec<f64> = y_ref
        .iter()
        .enumerate()
        .map(|(i, v)| v - bv[(i / (oh * ow)) % c.cout] as f64)
        .collect();
    assert_close(
        &download(&y_nobias),
        &no_bias_ref,
        1e-4,
        tol,
        &format!("forward without bias {what}"),
    );
}

/// A ReLU's output of 16 values or more has some cut to zero and some kept.
fn assert_relu_cuts(y: &[f32], what: &str) {
    assert!(
        y.len() < 16 || (y.contains(&0.0) && y.iter().any(|&v| v > 0.0)),
        "the ReLU cuts some outputs and keeps others: {what}"
    );
}

/// `fused(inputs)` must equal `plain(inputs)` (the same convolution, then a separate ReLU or
/// addition) value for value, and so must the gradients of `sum(out * dy)` with respect to every
/// input. Returns the fused output.
fn check_fused(
    inputs: &[&vqgpu::Tensor],
    dy: &vqgpu::Tensor,
    fused: &dyn Fn(&[&vqgpu::Tensor]) -> vqgpu::Tensor,
    plain: &dyn Fn(&[&vqgpu::Tensor]) -> vqgpu::Tensor,
    what: &str,
) -> Vec<f32> {
    let y = download(&fused(inputs));
    assert_eq!(y, download(&plain(inputs)), "fused epilogue {what}");
    let leaves: Vec<vqgpu::Tensor> = inputs.iter().map(|t| t.with_requires_grad(true)).collect();
    let refs: Vec<&vqgpu::Tensor> = leaves.iter().collect();
    let fused_grads = fused(&refs).mul(dy).sum().backward();
    let plain_grads = plain(&refs).mul(dy).sum().backward();
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(
            download(&fused_grads.get(leaf).unwrap()),
            download(&plain_grads.get(leaf).unwrap()),
            "gradient {i} through the fused epilogue {what}"
        );
    }
    y
}

/// The fused residual: the same sums plus the residual, and the same gradients (the residual's is
/// the output gradient), on cases that reach every kernel that can store the sum: the GPU set's
/// convolution with and without a K split, the CPU set's 8x8 GEMM, its tall GEMM (36 rows) and
/// its pointwise product, which reads x in place.
#[test]
fn conv2d_with_a_residual_equals_conv2d_then_add() {
    for gpu in kernel_set_gpus() {
        for i in [1, 4, 6, 15, 16] {
            let c = &CASES[i];
            let mut rng = rng(90 + i as u64);
            let (oh, ow) = out_size(c);
            let (x, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cin, c.h, c.w]);
            let (w, _) = random_tensor(&gpu, &mut rng, &[c.cout, c.cin, c.k.0, c.k.1]);
            let (b, _) = random_tensor(&gpu, &mut rng, &[c.cout]);
            let (r, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cout, oh, ow]);
            let (dy, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cout, oh, ow]);
            let opts = options(c, None);
            check_fused(
                &[&x, &w, &r],
                &dy,
                &|t| {
                    let fused = conv::Fused {
                        residual: Some(t[2]),
                        relu: false,
                    };
                    conv::conv2d_fused(t[0], t[1], Some(&b), opts, fused)
                },
                &|t| t[2].add(&conv::conv2d(t[0], t[1], Some(&b), opts)),
                &format!("{c:?} with a residual, kernels={}", gpu.kernel_set()),
            );
        }
    }
}

#[test]
fn conv2d_forward_and_gradients_match_reference() {
    for gpu in kernel_set_gpus() {
        for (i, c) in CASES.iter().enumerate() {
            check_case(&gpu, c, None, 30 + i as u64);
        }
    }
}

#[test]
fn masked_conv2d_ignores_masked_positions() {
    // PixelCNN-style type-A mask on a 5x5 kernel and a 3x3 one: rows above, and left of centre
    let type_a = |kh: usize, kw: usize| {
        SpatialMask::from_fn(kh, kw, move |y, x| {
            y < kh / 2 || (y == kh / 2 && x < kw / 2)
        })
    };
    for gpu in kernel_set_gpus() {
        for (i, c) in [
            case(2, 3, 4, 6, 7, (5, 5), 1, 2),
            case(1, 70, 5, 4, 4, (3, 3), 1, 1),
            case(2, 2, 3, 5, 5, (8, 8), 1, 4),
            case(2, 5, 6, 8, 8, (7, 7), 1, 3), // the prior's first layer on an 8x8 grid
        ]
        .iter()
        .enumerate()
        {
            check_case(&gpu, c, Some(type_a(c.k.0, c.k.1)), 50 + i as u64);
        }
        masked_weights_are_never_read(&gpu, type_a(3, 3), None);
    }
}

/// Masks that keep a kernel's first rows (Gated PixelCNN's vertical stack) or a one-row kernel's
/// first columns (its horizontal stack): the products run over the positions kept only (on the
/// gpu set always; on the cpu set where `conv.wgsl` computes them), and every product matches the
/// reference, split along K or not, with its weight gradient exactly zero at dropped positions.
#[test]
fn masks_that_keep_leading_rows_shrink_the_sums() {
    let rows =
        |kh: usize, kw: usize, kept: usize| SpatialMask::from_fn(kh, kw, move |y, _| y < kept);
    let columns = |kw: usize, kept: usize| SpatialMask::from_fn(1, kw, move |_, x| x < kept);
    // (case, mask, positions kept)
    let cases = [
        (case(2, 3, 4, 6, 7, (3, 3), 1, 1), rows(3, 3, 2), 6), // vertical stack, type B
        (case(2, 3, 4, 6, 7, (3, 3), 1, 1), rows(3, 3, 1), 3), // vertical stack, type A
        (case(1, 70, 5, 4, 4, (5, 5), 1, 2), rows(5, 5, 3), 15), // forward K = 1050 split
        (case(4, 3, 5, 20, 20, (3, 3), 1, 1), rows(3, 3, 2), 6), // weight gradient split
        (case(2, 4, 6, 8, 8, (4, 4), 2, 1), rows(4, 4, 2), 8), // stride 2: 4 phases, 2 tap rows
        (case(5, 40, 2, 15, 17, (3, 3), 1, 1), rows(3, 3, 2), 6), // the narrow kernel
        (case(2, 9, 12, 5, 9, (1, 3), 1, 1), columns(3, 2), 2), // horizontal stack, type B
        (case(2, 9, 36, 5, 9, (1, 5), 1, 2), columns(5, 2), 2), // horizontal stack, type A
        // the horizontal stacks' own padding (a stride-1 input gradient by the flipped window;
        // type A's starts inside dy)
        (
            case(2, 9, 12, 5, 9, (1, 3), 1, 0).padded((0, 1)),
            columns(3, 2),
            2,
        ),
        (
            case(3, 5, 36, 4, 7, (1, 5), 1, 0).padded((0, 2)),
            columns(5, 2),
            2,
        ),
        // the same on rows of whole vec4: the flipped window's columns read past dy's rows
        (
            case(2, 5, 12, 4, 8, (1, 5), 1, 0).padded((0, 2)),
            columns(5, 2),
            2,
        ),
        // stride 2 with few window rows (the cpu set's columns' gradient from the window copy
        // in place); a weight gradient long enough to split on the cpu set too; one from the
        // forward's columns on the cpu set (32 output channels or more), and one of them split
        (case(2, 2, 5, 9, 9, (3, 3), 2, 1), rows(3, 3, 2), 6),
        (case(11, 3, 5, 20, 20, (3, 3), 1, 1), rows(3, 3, 2), 6),
        (case(2, 8, 36, 6, 6, (3, 3), 1, 1), rows(3, 3, 1), 3),
        (case(5, 4, 36, 30, 30, (3, 3), 1, 1), rows(3, 3, 2), 6),
    ];
    for gpu in kernel_set_gpus() {
        for (i, (c, mask, kept)) in cases.into_iter().enumerate() {
            check_case(&gpu, &c, Some(mask), 70 + i as u64);
            let x4 = [c.n, c.cin, c.h, c.w];
            let w4 = [c.cout, c.cin, c.k.0, c.k.1];
            let (_, taps) = conv::forward_sum_order(&gpu, x4, w4, &options(&c, Some(mask)));
            let what = format!("{c:?}, kernels={}", gpu.kernel_set());
            assert_eq!(taps, kept, "forward sums, {what}");
        }
        // the positions dropped are never read: not even a NaN there shows
        masked_weights_are_never_read(&gpu, rows(3, 3, 2), Some(f32::NAN));
    }
}

/// The masked output and the input gradient do not depend on weights at masked positions: the
/// same with `poison` there (100 where `None`).
fn masked_weights_are_never_read(gpu: &vqgpu::Gpu, mask: SpatialMask, poison: Option<f32>) {
    let gpu = gpu.clone();
    let mut rng = rng(60);
    let c = case(1, 2, 2, 5, 5, (3, 3), 1, 1);
    let opts = options(&c, Some(mask));
    let (x, _) = random_tensor(&gpu, &mut rng, &[1, 2, 5, 5]);
    let (dy, _) = random_tensor(&gpu, &mut rng, &[1, 2, 5, 5]);
    let mut wv = random(&mut rng, 2 * 2 * 9);
    let outputs = |wv: &[f32]| {
        let w = upload(&gpu, &[2, 2, 3, 3], wv);
        let y = download(&conv::conv2d(&x, &w, None, opts));
        (y, download(&conv::conv2d_input_grad(&dy, &w, (5, 5), opts)))
    };
    let clean = outputs(&wv);
    for (i, v) in wv.iter_mut().enumerate() {
        if !mask.keeps(i % 9) {
            *v = poison.unwrap_or(100.0);
        }
    }
    assert_eq!(clean, outputs(&wv), "kernels={}", gpu.kernel_set());
}

/// Reference transposed convolution in scatter form (each input pixel spreads over the output).
fn conv_transpose_reference(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    out: (usize, usize),
) -> Vec<f64> {
    let [n, cin, h, wd] = xs;
    let mut y = vec![0.0; n * cout * out.0 * out.1];
    for b in 0..n {
        for ci in 0..cin {
            for iy in 0..h {
                for ix in 0..wd {
                    for co in 0..cout {
                        for ky in 0..k {
                            for kx in 0..k {
                                let oy = (iy * stride + ky) as isize - pad as isize;
                                let ox = (ix * stride + kx) as isize - pad as isize;
                                if oy < 0 || ox < 0 || oy as usize >= out.0 || ox as usize >= out.1
                                {
                                    continue;
                                }
                                let yi =
                                    ((b * cout + co) * out.0 + oy as usize) * out.1 + ox as usize;
                                let xv = x[((b * cin + ci) * h + iy) * wd + ix] as f64;
                                y[yi] += xv * w[((ci * cout + co) * k + ky) * k + kx] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[test]
fn conv_transpose2d_matches_reference() {
    for gpu in kernel_set_gpus() {
        conv_transpose2d_case(&gpu);
    }
}

fn conv_transpose2d_case(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(70);
    // (batch, cin, cout, h, w, k, stride, pad, output_padding)
    for (n, cin, cout, h, w, k, s, p, op) in [
        (1, 1, 1, 1, 1, 1, 1, 0, 0),
        (2, 3, 4, 5, 5, 4, 2, 1, 0),
        (2, 5, 3, 4, 3, 3, 1, 1, 0),
        (1, 4, 70, 3, 3, 3, 2, 0, 1),
        (2, 64, 3, 8, 8, 4, 2, 1, 0),
        (1, 2, 3, 4, 5, 5, 2, 2, 1),
        (3, 16, 8, 8, 8, 4, 2, 1, 0), // the decoder's upsampling on an 8x8 map
        (2, 5, 7, 4, 4, 1, 1, 0, 0),  // pointwise: the cpu set writes its output in place
        (2, 40, 6, 5, 5, 3, 1, 1, 0), // 40 input channels: the cpu set's gradients share columns
    ] {
        let (x, xv) = random_tensor(&gpu, &mut rng, &[n, cin, h, w]);
        let (wt, wv) = random_tensor(&gpu, &mut rng, &[cin, cout, k, k]);
        let (b, bv) = random_tensor(&gpu, &mut rng, &[cout]);
        let out = ((h - 1) * s + k + op - 2 * p, (w - 1) * s + k + op - 2 * p);
        let mut want = conv_transpose_reference(&xv, [n, cin, h, w], &wv, cout, k, s, p, out);
        let plane = out.0 * out.1;
        for (i, v) in want.iter_mut().enumerate() {
            *v += bv[(i / plane) % cout] as f64;
        }
        let y = conv::conv_transpose2d(&x, &wt, Some(&b), ConvTranspose2dOptions::new(s, p, op));
        assert_eq!(y.shape(), [n, cout, out.0, out.1]);
        let what = format!(
            "convT n={n} {cin}->{cout} {h}x{w} k{k} s{s} p{p} op{op} kernels={}",
            gpu.kernel_set()
        );
        assert_close(
            &download(&y),
            &want,
            1e-4,
            1e-4 * ((cin * k * k) as f64).sqrt(),
            &what,
        );
        // the gradients through autograd against the adjoint's functions (tested against f64
        // above): dx = conv2d(u, w), dw = conv2d's weight gradient with x and dy exchanged
        let (u, _) = random_tensor(&gpu, &mut rng, &[n, cout, out.0, out.1]);
        let (xg, wg) = (x.with_requires_grad(true), wt.with_requires_grad(true));
        let opts = ConvTranspose2dOptions::new(s, p, op);
        let grads = conv::conv_transpose2d(&xg, &wg, Some(&b), opts)
            .mul(&u)
            .sum()
            .backward();
        let adjoint = Conv2dOptions::new(s, p);
        let grad = |t: &vqgpu::Tensor| download(&grads.get(t).expect("a gradient"));
        let dx_want: Vec<f64> = download(&conv::conv2d(&u, &wt, None, adjoint))
            .into_iter()
            .map(f64::from)
            .collect();
        let dw_want: Vec<f64> = download(&conv::conv2d_weight_grad(&x, &u, (k, k), adjoint))
            .into_iter()
            .map(f64::from)
            .collect();
        let tol = 1e-4 * ((cout * k * k) as f64).sqrt();
        assert_close(&grad(&xg), &dx_want, 1e-4, tol, &format!("dx {what}"));
        let tol = 1e-4 * ((n * h * w) as f64).sqrt();
        assert_close(&grad(&wg), &dw_want, 1e-4, tol, &format!("dw {what}"));
        let relu = conv::Fused::RELU;
        let fused =
            |t: &[&vqgpu::Tensor]| conv::conv_transpose2d_fused(t[0], t[1], Some(&b), opts, relu);
        let plain =
            |t: &[&vqgpu::Tensor]| conv::conv_transpose2d(t[0], t[1], Some(&b), opts).relu();
        let y = check_fused(&[&x, &wt], &u, &fused, &plain, &what);
        assert_relu_cuts(&y, &what);
    }
}

#[test]
fn conv_backwards_match_finite_differences() {
    for gpu in kernel_set_gpus() {
        conv_backwards_case(&gpu);
    }
}

fn conv_backwards_case(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(80);
    let tol = 1e-2;
    for c in [
        case(2, 3, 4, 5, 5, (3, 3), 1, 1),
        case(1, 2, 3, 6, 6, (4, 4), 2, 1),
        case(1, 2, 2, 5, 4, (3, 2), 2, 2),
        case(1, 30, 2, 3, 3, (3, 3), 1, 1), // K = 270: the forward is split in 2 chunks
        case(1, 3, 64, 4, 4, (3, 3), 2, 1), // input gradient K = 256: 4 phases x 2 K chunks
        case(2, 3, 2, 4, 4, (3, 3), 1, 1),  // 4x4 planes: the cpu set's vec4 reads of dy
    ] {
        let (oh, _) = out_size(&c);
        assert!(oh > 0);
        let x = (
            vec![c.n, c.cin, c.h, c.w],
            random(&mut rng, c.n * c.cin * c.h * c.w),
        );
        let w = (
            vec![c.cout, c.cin, c.k.0, c.k.1],
            random(&mut rng, c.cout * c.cin * c.k.0 * c.k.1),
        );
        let b = (vec![c.cout], random(&mut rng, c.cout));
        let opts = options(&c, None);
        grad_check(
            &gpu,
            &[x.clone(), w.clone(), b],
            &|t| conv::conv2d(&t[0], &t[1], Some(&t[2]), opts),
            25,
            1e-2,
            tol,
            &format!("conv2d {c:?} kernels={}", gpu.kernel_set()),
        );
        let mask = SpatialMask::from_fn(c.k.0, c.k.1, |y, x| (y + x) % 2 == 0);
        let masked = Conv2dOptions {
            mask: Some(mask),
            ..opts
        };
        grad_check(
            &gpu,
            &[x.clone(), w.clone()],
            &|t| conv::conv2d(&t[0], &t[1], None, masked),
            25,
            1e-2,
            tol,
            &format!("masked conv2d {c:?} kernels={}", gpu.kernel_set()),
        );
        // the first rows kept: the products run over those rows only
        let rows = Conv2dOptions {
            mask: Some(SpatialMask::from_fn(c.k.0, c.k.1, |y, _| {
                y < c.k.0.div_ceil(2)
            })),
            ..opts
        };
        grad_check(
            &gpu,
            &[x, w],
            &|t| conv::conv2d(&t[0], &t[1], None, rows),
            25,
            1e-2,
            tol,
            &format!(
                "conv2d over the first rows {c:?} kernels={}",
                gpu.kernel_set()
            ),
        );
    }
    for (cin, cout, h, k, s, p, op) in [
        (3, 2, 4, 3, 1, 1, 0),
        (2, 3, 3, 4, 2, 1, 0),
        (2, 2, 3, 3, 2, 0, 1),
    ] {
        let x = (vec![2, cin, h, h], random(&mut rng, 2 * cin * h * h));
        let w = (vec![cin, cout, k, k], random(&mut rng, cin * cout * k * k));
        let b = (vec![cout], random(&mut rng, cout));
        let opts = ConvTranspose2dOptions::new(s, p, op);
        grad_check(
            &gpu,
            &[x, w, b],
            &|t| conv::conv_transpose2d(&t[0], &t[1], Some(&t[2]), opts),
            25,
            1e-2,
            tol,
            &format!("convT k{k} s{s} p{p} op{op} kernels={}", gpu.kernel_set()),
        );
    }
}

/// Gradients of `sum(f(x0) * dy)` with respect to `leaves`, and the launches the backward pass
/// recorded.
fn gradients_and_launches(
    gpu: &vqgpu::Gpu,
    leaves: &[vqgpu::Tensor],
    dy: &vqgpu::Tensor,
    f: &dyn Fn(&[vqgpu::Tensor]) -> vqgpu::Tensor,
) -> (Vec<Vec<f32>>, u64) {
    let loss = f(leaves).mul(dy).sum();
    let before = gpu.host_stats();
    let grads = loss.backward();
    let launches = (gpu.host_stats() - before).dispatches;
    let values = leaves
        .iter()
        .map(|t| download(&grads.get(t).expect("a gradient for every leaf")))
        .collect();
    (values, launches)
}

/// The cases of the input-gradient stores, as (index into [`CASES`], transposed): input gradients
/// with and without a K split and over stride phases (the GPU set's `conv.wgsl` and split sums;
/// the CPU set's flipped products and `col2im`), a 1x1 convolution (read in place by the CPU set),
/// and transposed convolutions, whose input gradient is a forward convolution (36 rows: the CPU
/// set's tall GEMM).
const INPUT_GRADIENT_CASES: [(usize, bool); 8] = [
    (1, false),
    (3, false),
    (4, false),
    (6, false),
    (11, false),
    (2, true),
    (14, true),
    (16, true),
];

/// A convolution of case `c` (or the transposed convolution that is its adjoint) as a function of
/// its input and weight, with the shapes of its input, weight and output.
fn input_gradient_case(
    c: &Case,
    transposed: bool,
) -> (
    impl Fn(&vqgpu::Tensor, &vqgpu::Tensor) -> vqgpu::Tensor,
    [[usize; 4]; 3],
) {
    let opts = options(c, None);
    let t_opts = ConvTranspose2dOptions {
        padding: c.pad,
        ..ConvTranspose2dOptions::new(c.stride, 0, 0)
    };
    let (oh, ow) = out_size(c);
    let w_shape = [c.cout, c.cin, c.k.0, c.k.1];
    let shapes = if transposed {
        let th = conv::conv_transpose_out_size(oh, c.k.0, c.stride, c.pad.0, 0).unwrap();
        let tw = conv::conv_transpose_out_size(ow, c.k.1, c.stride, c.pad.1, 0).unwrap();
        [[c.n, c.cout, oh, ow], w_shape, [c.n, c.cin, th, tw]]
    } else {
        [[c.n, c.cin, c.h, c.w], w_shape, [c.n, c.cout, oh, ow]]
    };
    let conv = move |x: &vqgpu::Tensor, w: &vqgpu::Tensor| match transposed {
        true => conv::conv_transpose2d(x, w, None, t_opts),
        false => conv::conv2d(x, w, None, opts),
    };
    (conv, shapes)
}

/// A ReLU (on its own, or fused into a convolution) whose output only a convolution takes: the
/// convolution's input gradient keeps its values only where that output is positive, as it stores
/// them, and the ReLU's backward launches nothing. Gradients equal those through a separate mask,
/// value for value; the separate mask is forced by a reshape between the ReLU and the
/// convolution. Cases: [`INPUT_GRADIENT_CASES`].
#[test]
fn a_relu_gradient_is_masked_by_the_convolution_that_takes_its_output() {
    for gpu in kernel_set_gpus() {
        for (i, transposed) in INPUT_GRADIENT_CASES {
            let c = &CASES[i];
            let mut rng = rng(120 + i as u64);
            // the convolution's input x = ReLU(x0), or for the transposed case its smaller side
            let (conv, [x_shape, w_shape, y_shape]) = input_gradient_case(c, transposed);
            let (x0, _) = random_tensor(&gpu, &mut rng, &x_shape);
            let (v, _) = random_tensor(&gpu, &mut rng, &[x_shape[1], 3, 1, 1]);
            let (x3, _) = random_tensor(&gpu, &mut rng, &[x_shape[0], 3, x_shape[2], x_shape[3]]);
            let (w, _) = random_tensor(&gpu, &mut rng, &w_shape);
            let (dy, _) = random_tensor(&gpu, &mut rng, &y_shape);
            let reshaped = |t: vqgpu::Tensor| t.reshape(&x_shape);
            let what = format!(
                "{c:?}, transposed {transposed}, kernels={}",
                gpu.kernel_set()
            );
            // a ReLU of its own, of a leaf
            let leaves = [x0.with_requires_grad(true), w.with_requires_grad(true)];
            let (masked, fused_launches) =
                gradients_and_launches(&gpu, &leaves, &dy, &|t| conv(&t[0].relu(), &t[1]));
            let (separate, plain_launches) = gradients_and_launches(&gpu, &leaves, &dy, &|t| {
                conv(&reshaped(t[0].relu()), &t[1])
            });
            assert_eq!(masked, separate, "gradients through a ReLU, {what}");
            assert_eq!(fused_launches + 1, plain_launches, "launches, {what}");
            assert!(
                masked[0].contains(&0.0),
                "the mask cuts some gradients, {what}"
            );
            // a ReLU fused into a 1x1 convolution of 3 channels before it
            let leaves = [
                x3.with_requires_grad(true),
                v.with_requires_grad(true),
                leaves[1].clone(),
            ];
            let relu_conv = |t: &[vqgpu::Tensor]| {
                let plain = Conv2dOptions::default();
                conv::conv2d_fused(&t[0], &t[1], None, plain, conv::Fused::RELU)
            };
            let (masked, fused_launches) =
                gradients_and_launches(&gpu, &leaves, &dy, &|t| conv(&relu_conv(t), &t[2]));
            let (separate, plain_launches) = gradients_and_launches(&gpu, &leaves, &dy, &|t| {
                conv(&reshaped(relu_conv(t)), &t[2])
            });
            assert_eq!(masked, separate, "gradients through a fused ReLU, {what}");
            assert_eq!(
                fused_launches + 1,
                plain_launches,
                "launches, fused ReLU, {what}"
            );
        }
    }
}

/// A ReLU output that a convolution and another op both take: its gradient is the sum of theirs,
/// masked once more by the ReLU (the same values either way).
#[test]
fn a_relu_output_taken_twice_gets_the_masked_sum_of_both_gradients() {
    for gpu in kernel_set_gpus() {
        let c = &CASES[1];
        let mut rng = rng(140);
        let (x0, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cin, c.h, c.w]);
        let (w, _) = random_tensor(&gpu, &mut rng, &[c.cout, c.cin, c.k.0, c.k.1]);
        let (x_dy, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cin, c.h, c.w]);
        let (oh, ow) = out_size(c);
        let (dy, _) = random_tensor(&gpu, &mut rng, &[c.n, c.cout, oh, ow]);
        let opts = options(c, None);
        let leaves = [x0.with_requires_grad(true), w.with_requires_grad(true)];
        let loss = |reshape: bool| {
            let r = leaves[0].relu();
            let taken = if reshape {
                r.reshape(&[c.n, c.cin, c.h, c.w])
            } else {
                r.clone()
            };
            let y = conv::conv2d(&taken, &leaves[1], None, opts);
            y.mul(&dy).sum().add(&r.mul(&x_dy).sum())
        };
        let grads = |reshape: bool| {
            let g = loss(reshape).backward();
            leaves
                .iter()
                .map(|t| download(&g.get(t).unwrap()))
                .collect::<Vec<_>>()
        };
        let (twice, separate) = (grads(false), grads(true));
        assert_eq!(twice, separate, "kernels={}", gpu.kernel_set());
        assert!(twice[0].contains(&0.0));
    }
}

/// A convolution whose input another op takes after it: the convolution's input gradient is added
/// to the gradient from that op as it is stored, with the values of a separate addition (forced
/// by a reshape between the input and the convolution) and one launch fewer. Cases:
/// [`INPUT_GRADIENT_CASES`].
#[test]
fn a_convolution_adds_its_input_gradient_to_the_one_so_far() {
    for gpu in kernel_set_gpus() {
        for (i, transposed) in INPUT_GRADIENT_CASES {
            let c = &CASES[i];
            let mut rng = rng(160 + i as u64);
            let (conv, [x_shape, w_shape, y_shape]) = input_gradient_case(c, transposed);
            let (x0, _) = random_tensor(&gpu, &mut rng, &x_shape);
            let (shift, _) = random_tensor(&gpu, &mut rng, &x_shape);
            let (x_dy, _) = random_tensor(&gpu, &mut rng, &x_shape);
            let (w, _) = random_tensor(&gpu, &mut rng, &w_shape);
            let (dy, _) = random_tensor(&gpu, &mut rng, &y_shape);
            let what = format!(
                "{c:?}, transposed {transposed}, kernels={}",
                gpu.kernel_set()
            );
            let leaves = [x0.with_requires_grad(true), w.with_requires_grad(true)];
            // x = x0 + shift goes to the convolution and, recorded after it, to a product with
            // x_dy, whose gradient reaches x first in the backward pass
            let (shift, x_dy, dy, conv) = (&shift, &x_dy, &dy, &conv);
            let graph = |reshape: bool| {
                move |t: &[vqgpu::Tensor]| {
                    let x = t[0].add(shift);
                    let taken = match reshape {
                        true => x.reshape(&x_shape),
                        false => x.clone(),
                    };
                    let y = conv(&taken, &t[1]);
                    let other = x.mul(x_dy).sum();
                    y.mul(dy).sum().add(&other)
                }
            };
            let ones = vqgpu::Tensor::from_slice(&gpu, &[1], &[1.0]).unwrap();
            let (fused, fused_launches) =
                gradients_and_launches(&gpu, &leaves, &ones, &graph(false));
            let (separate, plain_launches) =
                gradients_and_launches(&gpu, &leaves, &ones, &graph(true));
            assert_eq!(fused, separate, "gradients, {what}");
            assert_eq!(fused_launches + 1, plain_launches, "launches, {what}");
        }
    }
}

/// The CPU set's convolutions give the same bits whether their products read their operands from
/// texture copies or from the buffers: forward, both gradients and a transposed convolution, at
/// stride 1 and 2 (with four outputs of a row read by rows of a copy: at stride 1 three texels
/// per kernel row, or two per kernel position for a kernel 7 wide, at stride 2 four per kernel
/// row, also with padding 2), with split sums and a masked window.
#[test]
fn texture_copies_and_buffer_reads_give_the_same_bits() {
    let Some([copies, buffers]) = copies_and_buffer_reads() else {
        return;
    };
    for (i, c) in [2, 3, 6, 9, 10, 16, 18, 19, 20, 21, 22]
        .into_iter()
        .map(|i| (i, CASES[i]))
    {
        // a window of the kernel's first rows (a vertical stack's mask)
        let (kh, kw) = c.k;
        let rows = SpatialMask::from_fn(kh, kw, move |y, _| y <= kh / 2);
        for mask in [None, Some(rows)] {
            let results = |gpu: &vqgpu::Gpu| {
                let mut rng = rng(31 + i as u64);
                let (oh, ow) = out_size(&c);
                let (x, _) = random_tensor(gpu, &mut rng, &[c.n, c.cin, c.h, c.w]);
                let (w, _) = random_tensor(gpu, &mut rng, &[c.cout, c.cin, c.k.0, c.k.1]);
                let (b, _) = random_tensor(gpu, &mut rng, &[c.cout]);
                let (dy, _) = random_tensor(gpu, &mut rng, &[c.n, c.cout, oh, ow]);
                let opts = options(&c, mask);
                let t_opts = ConvTranspose2dOptions::new(c.stride, c.pad.0, 0);
                [
                    conv::conv2d(&x, &w, Some(&b), opts),
                    conv::conv2d_input_grad(&dy, &w, (c.h, c.w), opts),
                    conv::conv2d_weight_grad(&dy, &x, c.k, opts),
                    conv::conv_transpose2d(&dy, &w, None, t_opts),
                ]
                .map(|t| bits(&t))
            };
            assert_eq!(
                results(&copies),
                results(&buffers),
                "{c:?} masked={}: texture copies and buffer reads differ",
                mask.is_some()
            );
        }
    }
}
