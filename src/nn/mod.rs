//! Layers built from `ops`, with parameters in a flat [`ParamStore`].

mod adam;
mod gated;
mod layers;
mod params;
mod residual;

pub use adam::Adam;
pub use gated::{horizontal_mask, vertical_mask, GatedResidualBlock, MaskType, Stacks};
pub use layers::{Conv2d, ConvTranspose2d, Linear};
pub use params::{FlatBuffer, Param, ParamStore};
pub use residual::ResidualStack;
