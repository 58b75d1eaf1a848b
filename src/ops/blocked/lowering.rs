//! The lowering of a convolution onto the blocked GEMM (kernels of `shaders/blocked.wgsl`): its
//! columns (`im2col`), their adjoint (`col2im`), and the flipped weight of a stride-1 input
//! gradient.

use super::{
    dispatch_with_copies, Layout, Params, Taps, A, B, BIAS, C, COLS, GATE, RESIDUAL, SHADER,
    TALL_ROWS,
};
use crate::gpu::{Gpu, Kernel, CPU_LOOP_LIMIT};
use crate::ops::conv::dims4;
use crate::ops::Epilogue;
use crate::tensor::Tensor;

/// The geometry of a convolution for [`im2col`] and [`col2im`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lowering {
    /// batch, cin, in_h, in_w of the input.
    pub x: [u32; 4],
    /// out_h, out_w of the output.
    pub out: [u32; 2],
    /// k_h, k_w.
    pub kernel: [u32; 2],
    /// Vertical and horizontal stride.
    pub stride: [u32; 2],
    /// Vertical and horizontal padding: how far before the input the first output's kernel
    /// starts. Negative for the flipped input gradient of a kernel window that ends before the
    /// kernel does, whose first output reads from inside the input (`col2im` takes none).
    pub pad: [i32; 2],
    /// Kept kernel positions (bit per position, all set for an unmasked convolution).
    pub mask: u64,
}

impl Lowering {
    fn params(&self, ld: usize) -> Params {
        Params {
            ld: ld as u32,
            batch: self.x[0],
            cin: self.x[1],
            in_h: self.x[2],
            in_w: self.x[3],
            out_h: self.out[0],
            out_w: self.out[1],
            k_h: self.kernel[0],
            k_w: self.kernel[1],
            stride_h: self.stride[0],
            stride_w: self.stride[1],
            // two's complement: the shaders read the padding as i32
            pad_h: self.pad[0] as u32,
            pad_w: self.pad[1] as u32,
            mask_lo: self.mask as u32,
            mask_hi: (self.mask >> 32) as u32,
            ..Params::default()
        }
    }

    fn masked(&self) -> bool {
        self.mask != u64::MAX
    }

    /// Rows of the column matrix: cin x k_h x k_w.
    pub fn rows(&self) -> usize {
        (self.x[1] * self.kernel[0] * self.kernel[1]) as usize
    }

    /// Columns of the column matrix: batch x out_h x out_w.
    pub fn columns(&self) -> usize {
        (self.x[0] * self.out[0] * self.out[1]) as usize
    }

    /// Where a product can read the columns from x shifted per kernel column ([`Taps`]) instead
    /// of the column matrix: at stride 1, unmasked, over more than one kernel row, with output rows
    /// of whole vec4 and M (the product's rows) enough for `gemm_tall`. Then the taps, the
    /// lowering that writes them with `im2col` (as a 1 x kW kernel over out_h + kH - 1 rows, laid
    /// out as [`Taps::written`]) and their elements; `None` otherwise or on overflow.
    pub fn shifted_rows(&self, m: usize) -> Option<(Taps, Lowering, usize)> {
        let [batch, cin, ..] = self.x.map(|v| v as usize);
        let [out_h, out_w] = self.out.map(|v| v as usize);
        let [k_h, k_w] = self.kernel.map(|v| v as usize);
        let suits = self.stride == [1, 1]
            && !self.masked()
            && k_h > 1
            && out_w.is_multiple_of(4)
            && m >= TALL_ROWS;
        if !suits {
            return None;
        }
        let rows = out_h.checked_add(k_h - 1)?;
        let column = rows.checked_mul(out_w)?;
        let channel = column.checked_mul(k_w)?;
        let image = channel.checked_mul(cin)?;
        let elements = image.checked_mul(batch)?;
        let narrow = |v: usize| u32::try_from(v).ok();
        let taps = Taps {
            k_h: self.kernel[0],
            k_w: self.kernel[1],
            plane: narrow(out_h * out_w)?,
            row: self.out[1],
            column: narrow(column)?,
            channel: narrow(channel)?,
            image: narrow(image)?,
        };
        let written = Lowering {
            out: [narrow(rows)?, self.out[1]],
            kernel: [1, self.kernel[1]],
            ..*self
        };
        // the kernels find an image's place (b * image) in u32
        narrow(elements)?;
        Some((taps, written, elements))
    }

    /// Whether the lowering kernels' launches fit the adapter's workgroup-count limit and their
    /// loops the software driver's loop limit.
    pub fn fits(&self, gpu: &Gpu) -> bool {
        let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
        let [batch, _, in_h, in_w] = self.x.map(|v| v as usize);
        let positions = self.columns().max(batch * in_h * in_w);
        positions.div_ceil(64) <= max
            && self.rows().div_ceil(IM2COL_ROWS) <= max
            && self.rows() <= CPU_LOOP_LIMIT
    }
}

/// Rows of the column matrix one `im2col` invocation writes.
const IM2COL_ROWS: usize = 16;

/// How [`im2col`] lays out the column matrix.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ColumnOrder {
    /// cols[j, n] as a product reads B(k = j, n) by rows (see [`super::BLayout::ByRows`]): k
    /// stride, blocks and their offsets on whole vec4, no blocks along k.
    AsB(Layout),
    /// cols[n, j]: rows `ld` apart (a multiple of 4), zeros past the last j.
    Transposed(usize),
}

/// Records the columns of x into `out`, laid out as `order` says.
pub(crate) fn im2col(x: &Tensor, g: &Lowering, order: ColumnOrder, out: &Tensor) {
    let (transposed, params) = match order {
        ColumnOrder::AsB(b) => {
            assert!(
                b.minor == 1 && b.vec4_ready(),
                "im2col: columns must lie on whole vec4: {b:?}"
            );
            let params = Params {
                b_k: b.major,
                b_inner: b.inner,
                b_outer: b.outer,
                ..g.params(0)
            };
            (false, params)
        }
        ColumnOrder::Transposed(ld) => {
            assert!(
                ld.is_multiple_of(4),
                "im2col: rows must be whole vec4 apart"
            );
            (true, g.params(ld))
        }
    };
    // four columns of one output row read x by rows (where it is read from a texture copy): at
    // stride 1 three texels per kernel row (two per kernel position for kernels wider than 5),
    // at stride 2 a window of 13 elements per kernel row
    let row_texels = !transposed
        && g.out[1].is_multiple_of(4)
        && (g.stride[1] == 1 || (g.stride[1] == 2 && g.kernel[1] + 5 <= 12));
    let kernel = Kernel::new(&SHADER, "im2col")
        .flag("TRANSPOSED", transposed)
        .flag("MASKED", g.masked())
        .flag("ROW_TEXELS", row_texels);
    // an invocation takes one column (transposed) or four
    let per_invocation = if transposed { 1 } else { 4 };
    let workgroups = [
        g.columns().div_ceil(per_invocation).div_ceil(64) as u32,
        g.rows().div_ceil(IM2COL_ROWS) as u32,
        1,
    ];
    // x is copied to a texture (a pass over all of it) only where the columns are at least as
    // large: not for a few output positions of a large map, such as a sampler's windows
    let copy = g.rows().saturating_mul(g.columns()) >= x.numel();
    dispatch_with_copies(
        x.gpu(),
        (kernel, &params),
        (&[x.bind(A), out.bind_vec4(COLS)], copy),
        workgroups,
        0.0,
    );
}

/// The OIHW weight `w` [Cout, Cin, kH, kW] at its first `kept` kernel positions (row-major, all
/// of them where `kept` = kH x kW), their order reversed and the channel axes exchanged: [Cin,
/// Cout, kept], a copy. With all positions this is the weight flipped along both kernel axes; with
/// a kernel's first rows (or a one-row kernel's first columns) it is that window flipped, the
/// window of the flipped kernel that ends where the kernel does.
pub(crate) fn flipped_weight(w: &Tensor, kept: usize) -> Tensor {
    let [cout, cin, k_h, k_w] = dims4(w, "weight");
    assert!(
        kept > 0 && kept <= k_h * k_w,
        "flipped_weight: {kept} of {k_h}x{k_w} kernel positions"
    );
    let gpu = w.gpu();
    let out = Tensor::uninit(gpu, &[cin, cout, kept]);
    let params = Params {
        m: cout as u32,
        k: kept as u32,
        cin: cin as u32,
        k_h: k_h as u32,
        k_w: k_w as u32,
        ..Params::default()
    };
    // one invocation per pair of channels (ci, co)
    gpu.dispatch(
        &Kernel::new(&SHADER, "flipped_weight"),
        &params,
        &[w.bind(A), out.bind(C)],
        gpu.grid_for(cin * cout),
    );
    out
}

/// Records dx = col2im(cols) (+ bias per channel) into `out.0` [batch, cin, in_h, in_w] (with the
/// residual, ReLU and gate of `out.1`), for columns [rows, ld].
pub(crate) fn col2im(
    cols: &Tensor,
    g: &Lowering,
    ld: usize,
    bias: Option<&Tensor>,
    (out, epilogue): (&Tensor, Epilogue),
) {
    assert!(
        g.pad.iter().all(|&p| p >= 0),
        "col2im: negative padding {:?}",
        g.pad
    );
    let kernel = Kernel::new(&SHADER, "col2im")
        .flag("MASKED", g.masked())
        .flag("RESIDUAL", epilogue.residual.is_some())
        .with("BIAS", if bias.is_some() { 1.0 } else { 0.0 });
    let params = Params {
        relu: epilogue.relu_flag(),
        gate: epilogue.gate_flag(),
        ..g.params(ld)
    };
    // without a bias, a residual or a gate their bindings read `cols` again
    dispatch_with_copies(
        cols.gpu(),
        (kernel, &params),
        (
            &[
                cols.bind_vec4(B),
                bias.unwrap_or(cols).bind(BIAS),
                out.bind(C),
                epilogue.residual.unwrap_or(cols).bind_vec4(RESIDUAL),
                epilogue.gate.unwrap_or(cols).bind_vec4(GATE),
            ],
            true,
        ),
        [(g.x[0] * g.x[2] * g.x[3]).div_ceil(64), 1, 1],
        0.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference VQ-VAE's 3x3 convolutions at 8x8, batch 32, 128 channels.
    fn reference_layer() -> Lowering {
        Lowering {
            x: [32, 128, 8, 8],
            out: [8, 8],
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            mask: u64::MAX,
        }
    }

    #[test]
    fn shifted_rows_hold_the_kernel_rows_of_each_column_once() {
        let g = reference_layer();
        let (taps, written, elements) = g.shifted_rows(128).unwrap();
        // 10 rows of 8 per kernel column, 3 columns per channel
        assert_eq!((taps.row, taps.column, taps.channel), (8, 80, 240));
        assert_eq!((taps.plane, taps.image), (64, 128 * 240));
        assert_eq!(elements, 32 * 128 * 240);
        assert_eq!((written.kernel, written.out), ([1, 3], [10, 8]));
        // 2.4x fewer than the column matrix's 1152 rows of 2048
        assert_eq!(g.rows() * g.columns() * 10, elements * 24);
    }

    #[test]
    fn shifted_rows_only_where_a_product_can_read_them() {
        let g = reference_layer();
        assert!(
            g.shifted_rows(TALL_ROWS - 1).is_none(),
            "too few rows for gemm_tall"
        );
        let strided = Lowering {
            stride: [2, 2],
            ..g
        };
        let masked = Lowering { mask: 0b1111, ..g };
        let narrow = Lowering { out: [8, 6], ..g };
        let one_row = Lowering {
            kernel: [1, 3],
            ..g
        };
        for other in [strided, masked, narrow, one_row] {
            assert!(other.shifted_rows(128).is_none(), "{other:?}");
        }
        let huge = Lowering {
            x: [1 << 20, 1 << 12, 8, 8],
            ..g
        };
        assert!(
            huge.shifted_rows(128).is_none(),
            "more elements than u32 holds"
        );
    }
}
