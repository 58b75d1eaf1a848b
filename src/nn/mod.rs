//! Layers built from `ops`, with parameters in a flat [`ParamStore`] under scoped names, the
//! vector quantizer with its EMA state, and the Adam optimizer.

mod adam;
mod attention;
mod embedding;
mod gated;
mod layers;
mod params;
mod quantizer;
mod residual;

pub use adam::{Adam, LrSchedule};
pub use attention::{AttentionCache, CausalSelfAttention};
pub use embedding::Embedding;
pub use gated::{horizontal_mask, vertical_mask, GatedResidualBlock, LayerCache, MaskType, Stacks};
pub use layers::{Conv2d, ConvTranspose2d, Linear, WindowedConv2d};
pub use params::{FlatBuffer, Param, ParamStore, Scope};
pub use quantizer::{
    CodebookUpdate, EmaConfig, EmaState, Quantized, VectorQuantizer, MAX_CODES, MAX_CODE_DIM,
};
pub use residual::{ResidualLayout, ResidualStack};
