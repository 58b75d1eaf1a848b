//! window.wgsl: the windowed convolution against a plain f64 reference (masked and not, padded and
//! not, non-square kernels, windows of one position, one row and a whole map, channel counts that
//! are not multiples of anything), and window copies out of and into a full map. Masked-out inputs
//! must never be read: they are filled with NaN.

mod common;
use common::*;
use vqgpu::ops::conv::{Conv2dOptions, SpatialMask};
use vqgpu::ops::window::{self, Window};

/// Reference: the stride-1 convolution of x [n, cin, h, w] at the output positions of `win`, as
/// [n, cout, rows, cols], in f64.
fn reference(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    [cout, kh, kw]: [usize; 3],
    bias: Option<&[f32]>,
    (ph, pw): (usize, usize),
    mask: Option<SpatialMask>,
    win: Window,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * cout * win.rows * win.cols);
    for b in 0..n {
        for o in 0..cout {
            for i in 0..win.rows {
                for j in 0..win.cols {
                    let mut acc = bias.map_or(0.0, |bias| bias[o] as f64);
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let keep = mask.is_none_or(|m| m.keeps(ky * kw + kx));
                                let y = (win.row + i + ky) as isize - ph as isize;
                                let xx = (win.col + j + kx) as isize - pw as isize;
                                if !keep || y < 0 || xx < 0 || y >= h as isize || xx >= w as isize
                                {
                                    continue;
                                }
                                let wv = weight[((o * cin + ci) * kh + ky) * kw + kx] as f64;
                                let xv = x[((b * cin + ci) * h + y as usize) * w + xx as usize];
                                acc += wv * xv as f64;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

#[test]
fn windowed_convolution_matches_the_reference() {
    let gpu = gpu();
    let mut rng = rng(51);
    let causal = |kh: usize, kw: usize| {
        SpatialMask::from_fn(kh, kw, |ky, kx| ky < kh / 2 || (ky == kh / 2 && kx < kw / 2))
    };
    // (x dims, cout, kernel, padding, mask, window, bias)
    let cases: Vec<([usize; 4], usize, (usize, usize), (usize, usize), bool, Window, bool)> = vec![
        ([1, 1, 1, 1], 1, (1, 1), (0, 0), false, Window::at(0, 0), false),
        ([2, 3, 5, 6], 4, (3, 3), (1, 1), false, Window::at(2, 3), true),
        ([2, 3, 5, 6], 4, (3, 3), (1, 1), true, Window::row(0, 6), true),
        ([3, 5, 7, 4], 6, (5, 5), (2, 2), true, Window::row(6, 4), true),
        ([2, 7, 4, 9], 10, (1, 7), (0, 3), true, Window::at(1, 0), false),
        ([2, 7, 4, 9], 10, (1, 7), (0, 3), true, Window::at(3, 8), true),
        ([1, 17, 6, 6], 33, (1, 1), (0, 0), false, Window::whole(6, 6), true),
        ([2, 4, 6, 5], 3, (7, 7), (3, 3), true, Window::whole(6, 5), true),
        ([1, 3, 6, 7], 2, (2, 3), (0, 1), false, Window { row: 1, col: 2, rows: 3, cols: 4 }, true),
        ([2, 65, 3, 3], 3, (3, 3), (1, 1), false, Window::at(1, 1), true),
    ];
    for (x4, cout, (kh, kw), pad, masked, win, has_bias) in cases {
        let what = format!("x {x4:?}, {cout} out, kernel {kh}x{kw}, pad {pad:?}, masked {masked}, {win:?}");
        let mask = masked.then(|| causal(kh, kw));
        let mut x = random(&mut rng, x4.iter().product());
        if let Some(m) = mask {
            // positions no kept tap of the window reaches are poisoned: they must never be read
            let [_, _, h, w] = x4;
            for (idx, v) in x.iter_mut().enumerate() {
                let (y, xx) = ((idx / w) % h, idx % w);
                let read = (0..win.rows).any(|i| {
                    (0..win.cols).any(|j| {
                        (0..kh * kw).any(|tap| {
                            m.keeps(tap)
                                && win.row + i + tap / kw == y + pad.0
                                && win.col + j + tap % kw == xx + pad.1
                        })
                    })
                });
                if !read {
                    *v = f32::NAN;
                }
            }
        }
        let weight = random(&mut rng, cout * x4[1] * kh * kw);
        let bias = random(&mut rng, cout);
        let options = Conv2dOptions {
            stride: (1, 1),
            padding: pad,
            mask,
        };
        let got = window::conv_window(
            &upload(&gpu, &x4, &x),
            &upload(&gpu, &[cout, x4[1], kh, kw], &weight),
            has_bias.then(|| upload(&gpu, &[cout], &bias)).as_ref(),
            options,
            win,
        );
        assert_eq!(got.shape(), [x4[0], cout, win.rows, win.cols], "{what}: shape");
        let want = reference(
            &x,
            x4,
            &weight,
            [cout, kh, kw],
            has_bias.then_some(&bias[..]),
            pad,
            mask,
            win,
        );
        assert_close(&download(&got), &want, 1e-5, 1e-5, &what);
    }
}

#[test]
fn window_copies_read_and_write_exactly_the_window() {
    let gpu = gpu();
    let mut rng = rng(52);
    for (dims, win) in [
        ([1, 1, 1, 1], Window::at(0, 0)),
        ([2, 3, 5, 7], Window::at(4, 6)),
        ([3, 2, 4, 9], Window::row(2, 9)),
        ([2, 5, 6, 6], Window { row: 1, col: 2, rows: 4, cols: 3 }),
    ] {
        let [n, c, h, w] = dims;
        let map = random(&mut rng, n * c * h * w);
        let inside = |i: usize| {
            let (y, x) = ((i / w) % h, i % w);
            (win.row..win.row + win.rows).contains(&y) && (win.col..win.col + win.cols).contains(&x)
        };
        let expected_window: Vec<f32> =
            map.iter().enumerate().filter(|&(i, _)| inside(i)).map(|(_, &v)| v).collect();
        let full = upload(&gpu, &dims, &map);
        let read = window::read_window(&full, win);
        assert_eq!(read.shape(), [n, c, win.rows, win.cols]);
        assert_eq!(download(&read), expected_window, "read {dims:?} {win:?}");
        let patch = random(&mut rng, n * c * win.rows * win.cols);
        window::write_window(&full, &upload(&gpu, read.shape(), &patch), win);
        let mut patched = patch.iter();
        let expected: Vec<f32> = map
            .iter()
            .enumerate()
            .map(|(i, &v)| if inside(i) { *patched.next().unwrap() } else { v })
            .collect();
        assert_eq!(download(&full), expected, "write {dims:?} {win:?}");
    }
}
