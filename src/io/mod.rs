//! Files: checkpoints (safetensors), PNG grids of images, plots and the metrics CSV.

pub mod checkpoint;
pub mod csv;
pub mod grid;
pub mod plot;
