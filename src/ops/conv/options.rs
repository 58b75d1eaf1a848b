//! The settings of a convolution (stride, padding, spatial mask, output padding) and the output
//! sizes they give.

/// Which kernel positions of a masked convolution are kept (row-major over the kernel window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpatialMask {
    bits: u64,
}

impl SpatialMask {
    /// A mask from a predicate over kernel positions `(ky, kx)`; kernels up to 64 positions.
    pub fn from_fn(k_h: usize, k_w: usize, keep: impl Fn(usize, usize) -> bool) -> Self {
        assert!(
            k_h * k_w <= 64,
            "masked kernels may have at most 64 positions"
        );
        let mut bits = 0u64;
        for ky in 0..k_h {
            for kx in 0..k_w {
                if keep(ky, kx) {
                    bits |= 1 << (ky * k_w + kx);
                }
            }
        }
        Self { bits }
    }

    /// One bit per kernel position, row-major, set where the position is kept.
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Whether kernel position `ky * k_w + kx` is kept.
    pub fn keeps(&self, tap: usize) -> bool {
        (self.bits >> tap) & 1 == 1
    }
}

/// Stride, padding and optional mask of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// (vertical, horizontal) stride.
    pub stride: (usize, usize),
    /// (vertical, horizontal) zero padding on each side.
    pub padding: (usize, usize),
    /// Kernel positions to keep; `None` keeps all.
    pub mask: Option<SpatialMask>,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            mask: None,
        }
    }
}

impl Conv2dOptions {
    /// Square stride and padding, no mask.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            mask: None,
        }
    }
}

/// Stride, padding and output padding of a transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// (vertical, horizontal) stride.
    pub stride: (usize, usize),
    /// (vertical, horizontal) padding removed from each side of the full output.
    pub padding: (usize, usize),
    /// Extra rows/columns added at the bottom/right (must be smaller than the stride).
    pub output_padding: (usize, usize),
}

impl ConvTranspose2dOptions {
    /// Square stride, padding and output padding.
    pub fn new(stride: usize, padding: usize, output_padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            output_padding: (output_padding, output_padding),
        }
    }
}

/// Output size of a convolution along one axis (`None` if the kernel does not fit).
pub fn conv_out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    (input + 2 * padding)
        .checked_sub(kernel)
        .map(|r| r / stride + 1)
}

/// Output size of a transposed convolution along one axis (`None` if the padding eats it all).
pub fn conv_transpose_out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
) -> Option<usize> {
    ((input.max(1) - 1) * stride + kernel + output_padding)
        .checked_sub(2 * padding)
        .filter(|&s| s > 0)
}
