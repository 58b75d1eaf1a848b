//! Host side of `shaders/window.wgsl`: a stride-1 convolution evaluated only at the output
//! positions of a window (with its weight in a layout of its own), and copies of a window out of
//! and into a full map, with a second operand added or not. A single position of N maps may be
//! held side by side, [1, C, 1, N], so that a pointwise convolution of it is one product over N
//! positions. They let a causal network be evaluated a few positions at a time (incremental
//! sampling). No autograd.

use crate::gpu::{Binding, Kernel, KernelSet, Shader};
use crate::ops::conv::{self, dims4, Conv2dOptions};
use crate::tensor::Tensor;

/// `shaders/window.wgsl`.
pub static SHADER: Shader = crate::shader!("window", Params, [X, WEIGHT, BIAS, OUT]);
const X: Binding = Binding::read(1, "x");
const WEIGHT: Binding = Binding::read(2, "weight");
const BIAS: Binding = Binding::read(3, "bias");
const OUT: Binding = Binding::read_write(4, "out");

crate::uniform_params! {
    #[derive(Default)]
    struct Params {
        batch: u32,
        cin: u32,
        cout: u32,
        height: u32,
        width: u32,
        row0: u32,
        col0: u32,
        rows: u32,
        cols: u32,
        k_h: u32,
        k_w: u32,
        pad_h: u32,
        pad_w: u32,
        mask_lo: u32,
        mask_hi: u32,
        k_chunk: u32,
        chunk_taps: u32,
        _pad: [u32; 3],
    }
}

/// The most input channels a windowed convolution takes: every thread loops over them, and the
/// software Vulkan driver (llvmpipe) silently cuts a loop after 65535 iterations.
pub const MAX_CHANNELS: usize = 65535;

/// Rows `[row, row + rows)` x columns `[col, col + cols)` of a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub row: usize,
    /// First column.
    pub col: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Window {
    /// The single position (row, col).
    pub fn at(row: usize, col: usize) -> Self {
        Self {
            row,
            col,
            rows: 1,
            cols: 1,
        }
    }

    /// All of row `row` of a map `width` wide.
    pub fn row(row: usize, width: usize) -> Self {
        Self {
            row,
            col: 0,
            rows: 1,
            cols: width,
        }
    }

    /// The whole of a `height x width` map.
    pub fn whole(height: usize, width: usize) -> Self {
        Self {
            row: 0,
            col: 0,
            rows: height,
            cols: width,
        }
    }

    /// Whether the window is non-empty and lies inside a `height x width` map.
    fn fits(&self, height: usize, width: usize) -> bool {
        self.rows > 0
            && self.cols > 0
            && self.row + self.rows <= height
            && self.col + self.cols <= width
    }

    fn params(&self, map: [usize; 4]) -> Params {
        let u = |v: usize| v as u32;
        Params {
            batch: u(map[0]),
            cin: u(map[1]),
            height: u(map[2]),
            width: u(map[3]),
            row0: u(self.row),
            col0: u(self.col),
            rows: u(self.rows),
            cols: u(self.cols),
            ..Params::default()
        }
    }
}

/// A convolution weight and its options laid out for [`conv_window`]: the OIHW weight [Cout, Cin,
/// kH, kW] transposed to [Cin * kH * kW, Cout rounded up to 4], so that the threads of
/// neighbouring output channels read neighbouring weights; on the CPU kernel set also its kernel
/// window's positions [Cout, Cin, window, 1], which the products of the CPU set's convolutions
/// read (see [`conv::conv2d_window`]).
pub struct WindowWeight {
    transposed: Tensor,
    /// The CPU set's layout.
    rows: Option<Tensor>,
    /// The OIHW dims.
    dims: [usize; 4],
    options: Conv2dOptions,
}

impl WindowWeight {
    /// Lays out the OIHW weight `w` of a convolution with `options` (copies: later changes to `w`
    /// are not seen).
    pub fn new(w: &Tensor, options: Conv2dOptions) -> Self {
        let dims = dims4(w, "window weight");
        let cpu_set = w.gpu().kernel_set() == KernelSet::Cpu;
        Self {
            transposed: transposed_weight(w),
            rows: cpu_set.then(|| conv::window_rows(w, &options)),
            dims,
            options,
        }
    }

    /// The OIHW dims [Cout, Cin, kH, kW].
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }
}

/// The OIHW weight `w` [Cout, Cin, kH, kW] transposed to [Cin * kH * kW, Cout rounded up to 4]
/// (the rounding filled with zeros), a copy.
pub(crate) fn transposed_weight(w: &Tensor) -> Tensor {
    let [cout, cin, kh, kw] = dims4(w, "weight");
    let gpu = w.gpu();
    let transposed = Tensor::uninit(gpu, &[cin * kh * kw, cout.div_ceil(4) * 4]);
    let params = Params {
        cin: cin as u32,
        cout: cout as u32,
        k_h: kh as u32,
        k_w: kw as u32,
        ..Params::default()
    };
    gpu.run(
        &SHADER,
        "transpose_weight",
        &params,
        &[w.bind(WEIGHT), transposed.bind(OUT)],
        gpu.grid_for(transposed.numel()),
    );
    transposed
}

/// The convolution of x [N, Cin, H, W] with `w` (OIHW [Cout, Cin, kH, kW] and its options, stride
/// 1, laid out by [`WindowWeight::new`]) and bias [Cout], at the output positions of `window`
/// only: [N, Cout, rows, cols]. Its sums run in the order [`conv::conv2d`] uses for an input of
/// dims `full` (x itself, or the map x is a window of), so on one adapter the result equals the
/// window of that convolution's output bit for bit. On the CPU kernel set it runs as that
/// convolution's products do there, over the window's columns only, where those launches fit and
/// run the kernel variants the whole map's do (see [`conv::conv2d_window`]). Kernel positions
/// the mask drops are never read, so inputs there may hold anything.
pub fn conv_window(
    x: &Tensor,
    w: &WindowWeight,
    bias: Option<&Tensor>,
    window: Window,
    full: [usize; 4],
) -> Tensor {
    conv(x, w, bias, (window, false), full)
}

/// [`conv_window`] at the single position `at` of each of x's N maps, side by side: [1, Cout, 1,
/// N]. A convolution of such a row ([`conv_window`] of all of it, `full` the dims of the maps it
/// was read from) is then a product over one map of N positions: on the CPU set, one launch that
/// runs the variant the whole maps' convolution runs.
pub fn conv_position(
    x: &Tensor,
    w: &WindowWeight,
    bias: Option<&Tensor>,
    at: Window,
    full: [usize; 4],
) -> Tensor {
    conv(x, w, bias, (at, true), full)
}

/// The dims of `window` of maps [n, c, H, W]: [n, c, rows, cols], or with `side` (a window of one
/// position) [1, c, 1, n], the maps' values side by side.
fn window_dims(n: usize, c: usize, (window, side): (Window, bool)) -> [usize; 4] {
    assert!(
        !side || window.rows * window.cols == 1,
        "{window:?} is not one position, to lay out side by side"
    );
    if side {
        [1, c, 1, n]
    } else {
        [n, c, window.rows, window.cols]
    }
}

fn conv(
    x: &Tensor,
    w: &WindowWeight,
    bias: Option<&Tensor>,
    (window, side): (Window, bool),
    full: [usize; 4],
) -> Tensor {
    let (x4, w4, options) = (dims4(x, "conv_window input"), w.dims, w.options);
    let shape = window_dims(x4[0], w4[0], (window, side));
    assert!(
        x4[1] == w4[1] && full[1] == w4[1],
        "conv_window: input has {} channels (full map {}), weight expects {}",
        x4[1],
        full[1],
        w4[1]
    );
    assert!(
        options.stride == (1, 1) && w4[2] * w4[3] <= 64 && x4[1] <= MAX_CHANNELS,
        "conv_window: stride 1, at most 64 kernel positions and {MAX_CHANNELS} input channels"
    );
    let out_h = (x4[2] + 2 * options.padding.0).checked_sub(w4[2] - 1);
    let out_w = (x4[3] + 2 * options.padding.1).checked_sub(w4[3] - 1);
    assert!(
        matches!((out_h, out_w), (Some(h), Some(w)) if window.fits(h, w)),
        "conv_window: {window:?} outside the output of a {}x{} kernel on {x4:?}",
        w4[2],
        w4[3]
    );
    let (k_chunk, chunk_taps) = conv::forward_sum_order(x.gpu(), full, w4, &options);
    let corner = [window.row, window.col, window.rows, window.cols];
    let lowered = w.rows.as_ref().and_then(|rows| {
        let operands = (x, rows, bias);
        conv::conv2d_window(operands, (w4, &options), (corner, side), (full, k_chunk))
    });
    if let Some(out) = lowered {
        return out;
    }
    let bits = options.mask.map_or(u64::MAX, |m| m.bits());
    let mut params = window.params(x4);
    params.cout = w4[0] as u32;
    params.k_h = w4[2] as u32;
    params.k_w = w4[3] as u32;
    params.pad_h = options.padding.0 as u32;
    params.pad_w = options.padding.1 as u32;
    params.mask_lo = bits as u32;
    params.mask_hi = (bits >> 32) as u32;
    params.k_chunk = k_chunk as u32;
    params.chunk_taps = chunk_taps as u32;
    let gpu = x.gpu();
    let out = Tensor::uninit(gpu, &shape);
    let kernel = Kernel::new(&SHADER, "conv_window")
        .flag("HAS_BIAS", bias.is_some())
        .flag("SIDE", side);
    let flops = 2.0 * (out.numel() * x4[1] * w4[2] * w4[3]) as f64;
    let w = &w.transposed;
    // without a bias the binding still needs a buffer: bind the weight again (read-only)
    gpu.dispatch_counted(
        &kernel,
        &params,
        &[
            x.bind(X),
            w.bind(WEIGHT),
            bias.unwrap_or(w).bind(BIAS),
            out.bind(OUT),
        ],
        gpu.grid_for(x4[0] * w4[0].div_ceil(4) * window.rows * window.cols),
        flops,
    );
    out
}

/// A copy of `window` of x [N, C, H, W]: [N, C, rows, cols].
pub fn read_window(x: &Tensor, window: Window) -> Tensor {
    read(x, (window, false), None)
}

/// `window` of x [N, C, H, W] plus `addend` [N, C, rows, cols], in one launch: [N, C, rows, cols].
pub fn read_window_plus(x: &Tensor, window: Window, addend: &Tensor) -> Tensor {
    read(x, (window, false), Some(addend))
}

/// The single position `at` of each of x's N maps [N, C, H, W] side by side (see
/// [`conv_position`]), plus `addend` [1, C, 1, N] where given, in one launch: [1, C, 1, N].
pub fn read_position(x: &Tensor, at: Window, addend: Option<&Tensor>) -> Tensor {
    read(x, (at, true), addend)
}

fn read(x: &Tensor, (window, side): (Window, bool), addend: Option<&Tensor>) -> Tensor {
    let x4 = dims4(x, "read_window map");
    let shape = window_dims(x4[0], x4[1], (window, side));
    assert!(
        window.fits(x4[2], x4[3]) && addend.is_none_or(|a| a.shape() == shape),
        "read_window: {window:?} outside {x4:?}, or an addend of another shape"
    );
    let gpu = x.gpu();
    let out = Tensor::uninit(gpu, &shape);
    let kernel = Kernel::new(&SHADER, "read_window")
        .flag("ADD", addend.is_some())
        .flag("SIDE", side);
    // without an addend the binding still needs a buffer: bind x again (read-only)
    gpu.dispatch(
        &kernel,
        &window.params(x4),
        &[x.bind(X), addend.unwrap_or(x).bind(WEIGHT), out.bind(OUT)],
        gpu.grid_for(out.numel()),
    );
    out
}

/// Writes `src` [N, C, rows, cols] into `window` of `dst` [N, C, H, W] in place.
pub fn write_window(dst: &Tensor, src: &Tensor, window: Window) {
    write(dst, src, (window, false), None);
}

/// Writes `src` [1, C, 1, N] (a position of N maps side by side, see [`read_position`]) into
/// position `at` of each of `dst`'s maps [N, C, H, W] in place, plus the values there of `map`
/// (of `dst`'s dims, not `dst` itself) where given, in one launch.
pub fn write_position(dst: &Tensor, src: &Tensor, at: Window, map: Option<&Tensor>) {
    assert!(
        map.is_none_or(|m| m.shape() == dst.shape() && m.id() != dst.id()),
        "write_position: an addend map of another shape than {:?}, or the map itself",
        dst.shape()
    );
    write(dst, src, (at, true), map);
}

fn write(dst: &Tensor, src: &Tensor, (window, side): (Window, bool), map: Option<&Tensor>) {
    let d4 = dims4(dst, "write_window map");
    let shape = window_dims(d4[0], d4[1], (window, side));
    assert!(
        window.fits(d4[2], d4[3]) && src.shape() == shape,
        "write_window: {:?} does not fit {window:?} of {d4:?}",
        src.shape()
    );
    let gpu = dst.gpu();
    let kernel = Kernel::new(&SHADER, "write_window")
        .flag("ADD", map.is_some())
        .flag("SIDE", side);
    // without an addend the binding still needs a buffer: bind src again (read-only)
    gpu.dispatch(
        &kernel,
        &window.params(d4),
        &[src.bind(X), map.unwrap_or(src).bind(WEIGHT), dst.bind(OUT)],
        gpu.grid_for(src.numel()),
    );
}
