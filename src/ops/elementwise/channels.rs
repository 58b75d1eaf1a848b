//! Channel concatenation and its backward, a slice of channels, on the kernels of
//! `shaders/elementwise.wgsl`; the same slice copies a masked kernel's window of a weight.

use smallvec::smallvec;

use super::{launch, launch_units, Params};
use crate::autograd;
use crate::tensor::Tensor;

/// `a` [N, Ca, ...] and `b` [N, Cb, ...] joined along channels: [N, Ca + Cb, ...]. Gradients flow
/// to both parts.
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Tensor {
    let (sa, sb) = (a.shape(), b.shape());
    assert!(
        sa.len() >= 2 && sa.len() == sb.len() && sa[0] == sb[0] && sa[2..] == sb[2..],
        "concat_channels: shapes {sa:?} and {sb:?} differ outside the channels"
    );
    let (ca, cb) = (sa[1], sb[1]);
    let mut shape = sa.to_vec();
    shape[1] = ca + cb;
    let rg = autograd::needs_grad(&[a, b]);
    let out = Tensor::output(a.gpu(), &shape, rg);
    let mut params = Params::new(out.numel(), 1.0, 0.0);
    params.inner = sa[2..].iter().product::<usize>() as u32;
    params.channels = ca as u32;
    params.total = (ca + cb) as u32;
    launch("concat_channels", &out, Some(a), Some(b), params);
    if rg {
        let (ga, gb) = (a.requires_grad(), b.requires_grad());
        autograd::record(&[a, b], &out, move |g| {
            smallvec![
                ga.then(|| channel_slice(g, 0, ca)),
                gb.then(|| channel_slice(g, ca, cb)),
            ]
        });
    }
    out
}

/// Channels `offset .. offset + count` of x [N, C, ...] (no autograd: the backward of
/// [`concat_channels`]).
fn channel_slice(x: &Tensor, offset: usize, count: usize) -> Tensor {
    let mut shape = x.shape().to_vec();
    shape[1] = count;
    let inner = x.shape()[2..].iter().product::<usize>();
    slice_channels(x, [x.dim(1), inner], offset..offset + count, &shape)
}

/// The first `taps` kernel positions (row-major) of each kernel of the OIHW weight `w` [Cout,
/// Cin, kH, kW], a copy: [Cout, Cin, taps, 1] (no autograd; the CPU set reads a masked kernel's
/// window so).
pub(crate) fn kernel_window(w: &Tensor, taps: usize) -> Tensor {
    let &[cout, cin, k_h, k_w] = w.shape() else {
        panic!("kernel_window: a weight of shape {:?}", w.shape());
    };
    assert!(
        taps <= k_h * k_w,
        "kernel_window: {taps} of {k_h}x{k_w} positions"
    );
    slice_channels(w, [k_h * k_w, 1], 0..taps, &[cout, cin, taps, 1])
}

/// A new tensor of `shape` holding `channels` of x seen as [N, total, inner].
fn slice_channels(
    x: &Tensor,
    [total, inner]: [usize; 2],
    channels: std::ops::Range<usize>,
    shape: &[usize],
) -> Tensor {
    let out = Tensor::output(x.gpu(), shape, false);
    let mut params = Params::new(out.numel(), 1.0, 0.0);
    params.inner = inner as u32;
    params.channels = channels.len() as u32;
    params.total = total as u32;
    params.offset = channels.start as u32;
    // a unit's four elements lie side by side in x too when its planes have whole units
    launch_units(
        ("channel_slice", inner.is_multiple_of(4)),
        &out,
        Some(x),
        None,
        params,
    );
    out
}
