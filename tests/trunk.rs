//! Scoped parameter names and the conv trunk as a reusable part: two encoders with different
//! numbers of stride-2 stages live in one store under their own prefixes.

mod common;
use common::*;
use vqgpu::autograd;
use vqgpu::models::trunk::{ConvDecoder, ConvEncoder, TrunkSizes, TrunkStyle};
use vqgpu::nn::{Conv2d, ParamStore};
use vqgpu::ops::conv::Conv2dOptions;
use vqgpu::Tensor;

#[test]
fn scopes_nest_their_prefixes() {
    let gpu = gpu();
    let mut ps = ParamStore::new(&gpu, 0);
    let mut outer = ps.scope("outer");
    let mut inner = outer.scope(3);
    assert_eq!(inner.prefix(), "outer.3");
    let conv = Conv2d::new(&mut inner, 2, 4, (1, 1), Conv2dOptions::default(), true);
    ps.finalize().unwrap();
    assert_eq!(conv.weight.name(), "outer.3.weight");
    assert_eq!(conv.bias.unwrap().name(), "outer.3.bias");
}

#[test]
fn two_encoders_of_different_depth_share_a_store() {
    let gpu = gpu();
    let sizes = |stages| TrunkSizes {
        hidden: 8,
        res_hidden: 4,
        res_layers: 1,
        stages,
        style: TrunkStyle::Reference,
    };
    let mut ps = ParamStore::new(&gpu, 0);
    let bottom = ConvEncoder::new(&mut ps.scope("enc_b"), 3, sizes(2));
    let top = ConvEncoder::new(&mut ps.scope("enc_t"), 8, sizes(1));
    let decoder = ConvDecoder::new(&mut ps.scope("dec"), 8, sizes(3), 3);
    ps.finalize().unwrap();
    let names: Vec<&str> = ps.params().iter().map(|p| p.name()).collect();
    // the reference layout for two stages, and one stage less for the top encoder
    for name in [
        "enc_b.0.weight",
        "enc_b.2.weight",
        "enc_b.4.weight",
        "enc_b.5.layers.0.block.1.weight",
        "enc_t.0.weight",
        "enc_t.2.weight",
        "enc_t.3.layers.0.block.3.weight",
        "dec.0.weight",
        "dec.1.layers.0.block.1.weight",
        "dec.6.bias",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let unique: std::collections::HashSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "names clash: {names:?}");
    let shape_of = |t: &Tensor| t.shape().to_vec();
    let ps_shape = |p: &str| {
        ps.params()
            .iter()
            .find(|q| q.name() == p)
            .map(|q| q.shape().to_vec())
            .unwrap()
    };
    // the top encoder's stride-2 conv goes in -> h/2, its k3 conv h/2 -> h
    assert_eq!(ps_shape("enc_t.0.weight"), [4, 8, 4, 4]);
    assert_eq!(ps_shape("enc_t.2.weight"), [8, 4, 3, 3]);
    let _g = autograd::no_grad();
    let x = Tensor::zeros(&gpu, &[2, 3, 32, 32]);
    let b = bottom.forward(&x);
    assert_eq!(shape_of(&b), [2, 8, 8, 8]);
    let t = top.forward(&b);
    assert_eq!(shape_of(&t), [2, 8, 4, 4]);
    assert_eq!(shape_of(&decoder.forward(&t)), [2, 3, 32, 32]);
}
