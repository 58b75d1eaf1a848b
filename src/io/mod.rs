//! Files: checkpoints (safetensors), PNG grids of images, plots and the metrics CSV, all written
//! through one atomic writer.

pub mod atomic;
pub mod checkpoint;
pub mod csv;
pub mod grid;
pub mod plot;
