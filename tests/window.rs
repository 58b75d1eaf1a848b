//! window.wgsl: the windowed convolution against a plain f64 reference (masked and not, padded and
//! not, non-square kernels, windows of one position, one row and a whole map, channel counts that
//! are not multiples of anything), and window copies out of and into a full map, with a second
//! operand added or not. Masked-out inputs must never be read: they are filled with NaN.

mod common;
use common::*;
use vqgpu::ops::conv::{self, Conv2dOptions, SpatialMask};
use vqgpu::ops::window::{self, Window, WindowWeight};

/// One windowed convolution: input dims, output channels, kernel (h, w), padding (h, w), whether
/// the kernel has a causal mask, the window, whether there is a bias.
#[derive(Clone, Copy, Debug)]
struct Case {
    x4: [usize; 4],
    cout: usize,
    k: (usize, usize),
    pad: (usize, usize),
    masked: bool,
    win: Window,
    bias: bool,
}

impl Case {
    fn mask(&self) -> Option<SpatialMask> {
        let (kh, kw) = self.k;
        self.masked.then(|| {
            SpatialMask::from_fn(kh, kw, |ky, kx| {
                ky < kh / 2 || (ky == kh / 2 && kx < kw / 2)
            })
        })
    }

    /// Whether the kept kernel positions of some output in the window read input (y, x).
    fn reads(&self, y: usize, x: usize) -> bool {
        let (kh, kw) = self.k;
        let w = self.win;
        (0..w.rows).any(|i| {
            (0..w.cols).any(|j| {
                (0..kh * kw).any(|tap| {
                    self.mask().is_none_or(|m| m.keeps(tap))
                        && w.row + i + tap / kw == y + self.pad.0
                        && w.col + j + tap % kw == x + self.pad.1
                })
            })
        })
    }
}

/// Reference: the stride-1 convolution of x at the output positions of the window, as
/// [n, cout, rows, cols], in f64.
fn reference(c: &Case, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
    let [n, cin, h, w] = c.x4;
    let ((kh, kw), (ph, pw), win, mask) = (c.k, c.pad, c.win, c.mask());
    let mut out = Vec::with_capacity(n * c.cout * win.rows * win.cols);
    for b in 0..n {
        for o in 0..c.cout {
            for i in 0..win.rows {
                for j in 0..win.cols {
                    let mut acc = bias.map_or(0.0, |bias| bias[o] as f64);
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let keep = mask.is_none_or(|m| m.keeps(ky * kw + kx));
                                let y = (win.row + i + ky) as isize - ph as isize;
                                let xx = (win.col + j + kx) as isize - pw as isize;
                                if !keep || y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
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

const fn case(
    x4: [usize; 4],
    cout: usize,
    k: (usize, usize),
    pad: (usize, usize),
    masked: bool,
    win: Window,
    bias: bool,
) -> Case {
    Case {
        x4,
        cout,
        k,
        pad,
        masked,
        win,
        bias,
    }
}

const fn at(row: usize, col: usize, rows: usize, cols: usize) -> Window {
    Window {
        row,
        col,
        rows,
        cols,
    }
}

const CASES: [Case; 10] = [
    // everything 1
    case(
        [1, 1, 1, 1],
        1,
        (1, 1),
        (0, 0),
        false,
        at(0, 0, 1, 1),
        false,
    ),
    // one position
    case([2, 3, 5, 6], 4, (3, 3), (1, 1), false, at(2, 3, 1, 1), true),
    // first row, masked
    case([2, 3, 5, 6], 4, (3, 3), (1, 1), true, at(0, 0, 1, 6), true),
    // last row, 5x5
    case([3, 5, 7, 4], 6, (5, 5), (2, 2), true, at(6, 0, 1, 4), true),
    // 1x7 at the left edge, then at the right edge
    case(
        [2, 7, 4, 9],
        10,
        (1, 7),
        (0, 3),
        true,
        at(1, 0, 1, 1),
        false,
    ),
    case([2, 7, 4, 9], 10, (1, 7), (0, 3), true, at(3, 8, 1, 1), true),
    // 1x1, whole map
    case(
        [1, 17, 6, 6],
        33,
        (1, 1),
        (0, 0),
        false,
        at(0, 0, 6, 6),
        true,
    ),
    // 7x7 over everything
    case([2, 4, 6, 5], 3, (7, 7), (3, 3), true, at(0, 0, 6, 5), true),
    // even kernel, a block
    case([1, 3, 6, 7], 2, (2, 3), (0, 1), false, at(1, 2, 3, 4), true),
    // 65 channels
    case(
        [2, 65, 3, 3],
        3,
        (3, 3),
        (1, 1),
        false,
        at(1, 1, 1, 1),
        true,
    ),
];

#[test]
fn windowed_convolution_matches_the_reference() {
    let gpu = gpu();
    let mut rng = rng(51);
    for c in CASES {
        let what = format!("{c:?}");
        let [_, cin, h, w] = c.x4;
        let mut x = random(&mut rng, c.x4.iter().product());
        if c.masked {
            // inputs no kept kernel position of the window reaches must never be read
            for (idx, v) in x.iter_mut().enumerate() {
                if !c.reads((idx / w) % h, idx % w) {
                    *v = f32::NAN;
                }
            }
        }
        let weight = random(&mut rng, c.cout * cin * c.k.0 * c.k.1);
        let bias = random(&mut rng, c.cout);
        let options = Conv2dOptions {
            stride: (1, 1),
            padding: c.pad,
            mask: c.mask(),
        };
        let got = window::conv_window(
            &upload(&gpu, &c.x4, &x),
            &WindowWeight::new(
                &upload(&gpu, &[c.cout, cin, c.k.0, c.k.1], &weight),
                options,
            ),
            c.bias.then(|| upload(&gpu, &[c.cout], &bias)).as_ref(),
            c.win,
            c.x4,
        );
        assert_eq!(
            got.shape(),
            [c.x4[0], c.cout, c.win.rows, c.win.cols],
            "{what}: shape"
        );
        let want = reference(&c, &x, &weight, c.bias.then_some(&bias[..]));
        assert_close(&download(&got), &want, 1e-5, 1e-5, &what);
    }
}

/// Windows of a map, convolved with the sum order of the full map (split into chunks along the sum
/// or not), equal conv2d's output there bit for bit; a window convolved as a map of its own is
/// still the same convolution up to rounding.
#[test]
fn windowed_convolution_equals_conv2d_bitwise() {
    for gpu in kernel_set_gpus() {
        window_equals_conv2d(&gpu);
    }
}

/// The masks of [`window_equals_conv2d`]'s cases.
#[derive(Clone, Copy, Debug)]
enum WindowMask {
    None,
    /// PixelCNN's: the rows above the centre and the centre row up to the centre.
    Causal,
    /// The vertical stack's: the rows above the centre and the centre row.
    RowsAbove,
}

/// conv_window and conv_position sum as conv2d does on this device's kernel set.
fn window_equals_conv2d(gpu: &vqgpu::Gpu) {
    let gpu = gpu.clone();
    let mut rng = rng(53);
    // (x dims, cout, kernel, mask); cases 4-6 have sums long enough for conv.wgsl to split them.
    // A causal mask that keeps a 1 x k kernel's first columns or a k x k kernel's first rows
    // shrinks the sum on conv.wgsl to the positions kept.
    for (x4, cout, (kh, kw), mask) in [
        ([2, 8, 5, 6], 16, (3, 3), WindowMask::None),
        ([2, 8, 5, 6], 16, (1, 3), WindowMask::Causal),
        ([2, 16, 5, 6], 11, (1, 1), WindowMask::None),
        ([2, 64, 8, 8], 128, (3, 3), WindowMask::Causal),
        ([2, 64, 8, 8], 128, (3, 3), WindowMask::RowsAbove),
        ([1, 40, 6, 7], 9, (7, 7), WindowMask::Causal),
        // long sums over few blocks, which the CPU set splits too (the third with few output
        // channels, on its smaller GEMM); then a sum that the whole map's product does not split
        // (it has many blocks) but a window's few columns would
        ([1, 512, 4, 4], 32, (3, 3), WindowMask::None),
        ([1, 700, 4, 5], 40, (3, 3), WindowMask::RowsAbove),
        ([1, 600, 3, 4], 9, (3, 3), WindowMask::Causal),
        ([4, 512, 16, 16], 32, (3, 3), WindowMask::None),
        // four or more images: a position side by side, [1, cout, 1, n], is stored as vec4 as
        // the whole map is
        ([4, 64, 8, 8], 128, (1, 3), WindowMask::Causal),
        ([8, 256, 4, 4], 512, (1, 1), WindowMask::None),
        ([4, 700, 4, 5], 40, (3, 3), WindowMask::RowsAbove),
    ] {
        let what = format!(
            "x {x4:?}, {cout} out, kernel {kh}x{kw}, mask {mask:?}, kernels {}",
            gpu.kernel_set()
        );
        let mask = match mask {
            WindowMask::None => None,
            WindowMask::Causal => Some(SpatialMask::from_fn(kh, kw, |ky, kx| {
                ky < kh / 2 || (ky == kh / 2 && kx <= kw / 2)
            })),
            WindowMask::RowsAbove => Some(SpatialMask::from_fn(kh, kw, |ky, _| ky <= kh / 2)),
        };
        let options = Conv2dOptions {
            stride: (1, 1),
            padding: (kh / 2, kw / 2),
            mask,
        };
        let k = x4[1] * kh * kw;
        let (chunk, taps) = conv::forward_sum_order(&gpu, x4, [cout, x4[1], kh, kw], &options);
        println!(
            "{what}: sums of {} terms in chunks of {chunk}",
            x4[1] * taps
        );
        let x = upload(&gpu, &x4, &random(&mut rng, x4.iter().product()));
        let w = upload(&gpu, &[cout, x4[1], kh, kw], &random(&mut rng, cout * k));
        let bias = upload(&gpu, &[cout], &random(&mut rng, cout));
        let full = download(&conv::conv2d(&x, &w, Some(&bias), options));
        let [n, _, h, wd] = x4;
        let cpu_set = gpu.kernel_set() == vqgpu::gpu::KernelSet::Cpu;
        let whole = h * wd;
        let whole_vec4 = whole.is_multiple_of(4);
        let pointwise = kh * kw == 1;
        // the CPU set computes a window as its convolutions do, on the blocked products, where
        // they run the kernel variant the whole map's forward runs: B read as vec4 (a pointwise
        // convolution reads x in place, whole vec4 where its planes are; other products read
        // the columns, always whole vec4) and, on the tall product (32 output channels or
        // more), C stored as vec4 or not as the whole map's (one image's C is a plain matrix,
        // which may be stored element by element)
        let columns_as_whole = !pointwise || whole_vec4;
        let laid_out = WindowWeight::new(&w, options);
        let weighted = |x: &vqgpu::Tensor, win: Window, side: bool| {
            let f = if side {
                window::conv_position
            } else {
                window::conv_window
            };
            launched(&gpu, || f(x, &laid_out, Some(&bias), win, x4))
        };
        for win in [
            Window::whole(h, wd),
            Window::row(h - 1, wd),
            Window::at(h / 2, wd - 1),
        ] {
            let (got, lowered) = weighted(&x, win, false);
            let plane = win.rows * win.cols;
            let same_b = columns_as_whole || plane == whole;
            let same_c =
                cout < 32 || plane.is_multiple_of(4) == whole_vec4 || (n == 1 && !whole_vec4);
            assert_eq!(lowered, cpu_set && same_b && same_c, "{what}, {win:?}");
            let got = download(&got);
            let want: Vec<f32> = (0..n * cout)
                .flat_map(|plane| {
                    let full = &full;
                    (win.row..win.row + win.rows).flat_map(move |y| {
                        (win.col..win.col + win.cols).map(move |xx| full[(plane * h + y) * wd + xx])
                    })
                })
                .collect();
            assert_eq!(got, want, "{what}, {win:?}");
        }
        // one position of the n maps side by side, [1, cout, 1, n]; its C is a plain matrix
        let at = Window::at(h / 2, wd - 1);
        let before = gpu.host_stats();
        let (got, lowered) = weighted(&x, at, true);
        let reads = gpu.host_stats() - before;
        // its columns are made from the map itself, not from a texture copy of all of it, where
        // the map is the larger (a sum not split reads the product's two operands from textures)
        if lowered && chunk >= x4[1] * taps {
            let copied_map = x4[1] * taps * n >= x4.iter().product();
            let want = 2 + u64::from(copied_map);
            assert_eq!(
                reads.texture_copies + reads.copies_reused,
                want,
                "{what}: copies"
            );
        }
        let side_as_whole = !whole_vec4 || n.is_multiple_of(4);
        assert_eq!(
            lowered,
            cpu_set && columns_as_whole && side_as_whole,
            "{what}: side"
        );
        let want: Vec<f32> = (0..cout)
            .flat_map(|o| (0..n).map(move |b| (b * cout + o) * whole + at.row * wd + at.col))
            .map(|i| full[i])
            .collect();
        assert_eq!(download(&got), want, "{what}: at {at:?}, side by side");
        // a pointwise convolution of such a row: a product over one map of n positions
        if pointwise {
            let row = window::read_position(&x, at, None);
            let (got, lowered) = weighted(&row, Window::whole(1, n), false);
            assert_eq!(lowered, cpu_set && side_as_whole, "{what}: of a row");
            assert_eq!(download(&got), want, "{what}: of the row at {at:?}");
        }
    }
}

/// Runs `f`, returning its result and whether it launched a product of the blocked GEMM.
fn launched(gpu: &vqgpu::Gpu, f: impl FnOnce() -> vqgpu::Tensor) -> (vqgpu::Tensor, bool) {
    gpu.start_profile().unwrap();
    let out = f();
    let records = gpu.finish_profile().unwrap().records;
    let lowered = records.iter().any(|r| r.kernel.starts_with("blocked:gemm"));
    (out, lowered)
}

#[test]
fn window_copies_read_and_write_exactly_the_window() {
    let gpu = gpu();
    let mut rng = rng(52);
    for (dims, win) in [
        ([1, 1, 1, 1], Window::at(0, 0)),
        ([2, 3, 5, 7], Window::at(4, 6)),
        ([3, 2, 4, 9], Window::row(2, 9)),
        (
            [2, 5, 6, 6],
            Window {
                row: 1,
                col: 2,
                rows: 4,
                cols: 3,
            },
        ),
    ] {
        let [n, c, h, w] = dims;
        let map = random(&mut rng, n * c * h * w);
        let inside = |i: usize| {
            let (y, x) = ((i / w) % h, i % w);
            (win.row..win.row + win.rows).contains(&y) && (win.col..win.col + win.cols).contains(&x)
        };
        let expected_window: Vec<f32> = map
            .iter()
            .enumerate()
            .filter(|&(i, _)| inside(i))
            .map(|(_, &v)| v)
            .collect();
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
            .map(|(i, &v)| {
                if inside(i) {
                    *patched.next().unwrap()
                } else {
                    v
                }
            })
            .collect();
        assert_eq!(download(&full), expected, "write {dims:?} {win:?}");
        // the same copies with a second operand added, in one launch each
        let addend = random(&mut rng, patch.len());
        let sum = window::read_window_plus(&full, win, &upload(&gpu, read.shape(), &addend));
        let want: Vec<f32> = patch.iter().zip(&addend).map(|(p, a)| p + a).collect();
        assert_eq!(download(&sum), want, "read plus {dims:?} {win:?}");
        if win.rows * win.cols > 1 {
            continue;
        }
        // one position side by side, [1, c, 1, n], read and written back with an addend or not
        let side = |values: &[f32]| -> Vec<f32> {
            (0..c)
                .flat_map(|ch| (0..n).map(move |b| values[b * c + ch]))
                .collect()
        };
        let at_position = |values: &[f32]| -> Vec<f32> {
            (0..n * c)
                .map(|i| values[(i * h + win.row) * w + win.col])
                .collect()
        };
        let now = download(&full);
        let read = window::read_position(&full, win, None);
        assert_eq!(read.shape(), [1, c, 1, n]);
        assert_eq!(
            download(&read),
            side(&at_position(&now)),
            "position {dims:?}"
        );
        let addend = random(&mut rng, n * c);
        let plus = window::read_position(&full, win, Some(&upload(&gpu, &[1, c, 1, n], &addend)));
        let want: Vec<f32> = side(&at_position(&now))
            .iter()
            .zip(&addend)
            .map(|(v, a)| v + a)
            .collect();
        assert_eq!(download(&plus), want, "position plus {dims:?}");
        let other = random(&mut rng, map.len());
        let target = upload(&gpu, &dims, &map);
        let src = upload(&gpu, &[1, c, 1, n], &addend);
        window::write_position(&target, &src, win, None);
        let written = download(&target);
        assert_eq!(
            side(&at_position(&written)),
            addend,
            "write position {dims:?}"
        );
        window::write_position(&target, &src, win, Some(&upload(&gpu, &dims, &other)));
        let written_plus = download(&target);
        let want: Vec<f32> = side(&at_position(&other))
            .iter()
            .zip(&addend)
            .map(|(o, a)| a + o)
            .collect();
        assert_eq!(
            side(&at_position(&written_plus)),
            want,
            "write position plus {dims:?}"
        );
        let outside: Vec<usize> = (0..map.len()).filter(|&i| !inside(i)).collect();
        assert!(
            outside.iter().all(|&i| written_plus[i] == map[i]),
            "outside {dims:?}"
        );
    }
}
