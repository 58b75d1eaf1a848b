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
        _pad: u32,
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
            _pad: 0,
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

    pub(super) fn masked(&self) -> bool {
        self.mask_lo != u32::MAX || self.mask_hi != u32::MAX
    }

    /// Multiply-adds of one product (the same for forward, input and weight gradient).
    pub(super) fn flops(&self) -> f64 {
        let y: usize = self.y_shape().iter().product();
        2.0 * y as f64 * (self.cin * self.k_h * self.k_w) as f64
    }
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
