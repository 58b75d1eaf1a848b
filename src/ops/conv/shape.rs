//! The shapes of one convolution, laid out as the uniform block of `conv.wgsl`.

use super::{conv_out_size, Conv2dOptions};
use crate::tensor::Tensor;

crate::uniform_params! {
    /// Shapes of one convolution `x [batch, cin, in_h, in_w] -> y [batch, cout, out_h, out_w]`,
    /// laid out as the kernel's uniform block.
    #[derive(Debug)]
    pub(super) struct ConvShape {
        pub(super) batch: u32,
        pub(super) cin: u32,
        pub(super) cout: u32,
        /// Workgroups along z per row of N tiles: phases x K chunks; set per launch.
        pub(super) z_groups: u32,
        pub(super) in_h: u32,
        pub(super) in_w: u32,
        pub(super) out_h: u32,
        pub(super) out_w: u32,
        pub(super) k_h: u32,
        pub(super) k_w: u32,
        pub(super) stride_h: u32,
        pub(super) stride_w: u32,
        pub(super) pad_h: u32,
        pub(super) pad_w: u32,
        pub(super) mask_lo: u32,
        pub(super) mask_hi: u32,
        /// K elements per chunk of a product split along K; set per launch.
        pub(super) k_chunk: u32,
        /// Stride phases of an input gradient (1 for the other products); set per launch.
        pub(super) phases: u32,
        /// 1: the output is max(result, 0); set per launch.
        pub(super) relu: u32,
        /// The kernel window the products run over: see [`kept_window`].
        pub(super) win_h: u32,
        pub(super) win_w: u32,
        _pad: [u32; 3],
    }
}

impl ConvShape {
    /// The convolution of `x` by weight dims `w` (OIHW: [cout, cin, k_h, k_w]) under `options`.
    pub(super) fn of(x: [usize; 4], w: [usize; 4], options: &Conv2dOptions) -> Self {
        let out_h = conv_out_size(x[2], w[2], options.stride.0, options.padding.0);
        let out_w = conv_out_size(x[3], w[3], options.stride.1, options.padding.1);
        let (Some(out_h), Some(out_w)) = (out_h, out_w) else {
            panic!(
                "conv2d: kernel {}x{} larger than padded input {x:?}",
                w[2], w[3]
            );
        };
        let bits = options.mask.map_or(u64::MAX, |m| m.bits());
        let (win_h, win_w) = kept_window(w[2], w[3], bits);
        let u = |v: usize| v as u32;
        Self {
            batch: u(x[0]),
            cin: u(x[1]),
            cout: u(w[0]),
            z_groups: 1,
            in_h: u(x[2]),
            in_w: u(x[3]),
            out_h: u(out_h),
            out_w: u(out_w),
            k_h: u(w[2]),
            k_w: u(w[3]),
            stride_h: u(options.stride.0),
            stride_w: u(options.stride.1),
            pad_h: u(options.padding.0),
            pad_w: u(options.padding.1),
            mask_lo: bits as u32,
            mask_hi: (bits >> 32) as u32,
            k_chunk: 0,
            phases: 1,
            relu: 0,
            win_h: u(win_h),
            win_w: u(win_w),
            _pad: [0; 3],
        }
    }

    pub(super) fn x_shape(&self) -> [usize; 4] {
        [self.batch, self.cin, self.in_h, self.in_w].map(|v| v as usize)
    }

    pub(super) fn y_shape(&self) -> [usize; 4] {
        [self.batch, self.cout, self.out_h, self.out_w].map(|v| v as usize)
    }

    pub(super) fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.cin, self.k_h, self.k_w].map(|v| v as usize)
    }

    /// The mask bits, one per kernel position.
    pub(super) fn mask(&self) -> u64 {
        u64::from(self.mask_hi) << 32 | u64::from(self.mask_lo)
    }

    /// Whether the mask drops a position of the kernel window (see [`kept_window`]).
    pub(super) fn masked(&self) -> bool {
        let window = low_bits(self.window_taps() as usize);
        self.mask() & window != window
    }

    /// Kernel positions per input channel that the products run over (on either kernel set).
    pub(super) fn window_taps(&self) -> u32 {
        self.win_h * self.win_w
    }

    /// Whether the products run over fewer kernel positions than the kernel has.
    pub(super) fn window_shrunk(&self) -> bool {
        self.window_taps() < self.k_h * self.k_w
    }

    /// Multiply-adds of one product (the same for forward, input and weight gradient), over the
    /// kernel positions the mask keeps where it drops whole trailing rows.
    pub(super) fn flops(&self) -> f64 {
        let y: usize = self.y_shape().iter().product();
        2.0 * y as f64 * (self.cin * self.window_taps()) as f64
    }
}

/// The lowest `n` bits set (n <= 64).
fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

/// The window (rows, columns) of a `k_h x k_w` kernel with mask `bits` that a convolution's
/// products run over (`conv.wgsl`'s, and the CPU set's columns): the kept positions when they are
/// the kernel's first rows (or, in a one-row kernel, its first columns), as the causal masks of
/// PixelCNN's stacks keep them; otherwise the whole kernel, masked position by position. A
/// window's positions come first in the kernel's row-major order, so a tap has the same index in
/// both.
pub(super) fn kept_window(k_h: usize, k_w: usize, bits: u64) -> (usize, usize) {
    let taps = k_h * k_w;
    let kept = bits & low_bits(taps);
    let count = kept.count_ones() as usize;
    if count > 0 && count < taps && kept == low_bits(count) {
        if count.is_multiple_of(k_w) {
            return (count / k_w, k_w);
        }
        if k_h == 1 {
            return (1, count);
        }
    }
    (k_h, k_w)
}

pub(crate) fn dims4(t: &Tensor, what: &str) -> [usize; 4] {
    match *t.shape() {
        [a, b, c, d] => [a, b, c, d],
        _ => panic!("{what} must be 4-D (NCHW / OIHW), got {:?}", t.shape()),
    }
}

/// The convolution whose output is `dy` and whose input has spatial size `x_hw`.
pub(super) fn shape_from_output(
    dy: [usize; 4],
    w: [usize; 4],
    x_hw: (usize, usize),
    options: &Conv2dOptions,
) -> ConvShape {
    let s = ConvShape::of([dy[0], w[1], x_hw.0, x_hw.1], w, options);
    assert_eq!(
        s.y_shape(),
        dy,
        "conv2d gradient: output gradient {dy:?} does not match input size {x_hw:?}"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::kept_window;

    #[test]
    fn masks_keeping_leading_rows_shrink_the_window() {
        let rows = |k_w: u32, kept: u32| (1u64 << (kept * k_w)) - 1;
        // Gated PixelCNN's vertical stack, types B and A
        assert_eq!(kept_window(3, 3, rows(3, 2)), (2, 3));
        assert_eq!(kept_window(5, 5, rows(5, 2)), (2, 5));
        // its horizontal stack: a one-row kernel's first columns
        assert_eq!(kept_window(1, 3, 0b011), (1, 2));
        assert_eq!(kept_window(1, 5, 0b00011), (1, 2));
        // no mask, or every position kept: the whole kernel
        assert_eq!(kept_window(3, 3, u64::MAX), (3, 3));
        assert_eq!(kept_window(3, 3, 0b1_1111_1111), (3, 3));
        // PixelCNN's causal mask ends inside a row; a hole; nothing kept; a 64-position kernel
        assert_eq!(kept_window(3, 3, 0b1_1111), (3, 3));
        assert_eq!(kept_window(3, 3, 0b11_1011), (3, 3));
        assert_eq!(kept_window(3, 3, 0), (3, 3));
        assert_eq!(kept_window(8, 8, rows(8, 4)), (4, 8));
        assert_eq!(kept_window(8, 8, u64::MAX), (8, 8));
    }
}
