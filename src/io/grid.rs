//! PNG grids of images: model outputs in [-0.5, 0.5] laid out in rows.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::atomic;

/// Writes `count` images of shape [C, H, W] (C = 1 or 3, values in [-0.5, 0.5], row-major CHW one
/// after another in `images`) as a PNG grid with `columns` images per row and 2-pixel gaps. Images
/// smaller than 64 pixels are enlarged by an integer factor (nearest neighbour) to be legible.
pub fn save_grid(path: &Path, images: &[f32], [c, h, w]: [usize; 3], columns: usize) -> Result<()> {
    let per_image = c * h * w;
    let count = images.len() / per_image.max(1);
    if count == 0 || !(c == 1 || c == 3) {
        return Err(Error::InvalidArgument(format!(
            "cannot draw {count} images with {c} channels"
        )));
    }
    let columns = columns.clamp(1, count);
    let rows = count.div_ceil(columns);
    let gap = 2;
    let scale = (64 / h.max(w)).max(1);
    let (sh, sw) = (h * scale, w * scale);
    let (width, height) = (columns * (sw + gap) + gap, rows * (sh + gap) + gap);
    let mut canvas =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([40, 40, 40]));
    let to_u8 = |v: f32| ((v + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
    for i in 0..count {
        let img = &images[i * per_image..(i + 1) * per_image];
        let (x0, y0) = (
            gap + (i % columns) * (sw + gap),
            gap + (i / columns) * (sh + gap),
        );
        for y in 0..sh {
            for x in 0..sw {
                let px =
                    |ch: usize| to_u8(img[ch.min(c - 1) * h * w + (y / scale) * w + x / scale]);
                canvas.put_pixel(
                    (x0 + x) as u32,
                    (y0 + y) as u32,
                    image::Rgb([px(0), px(1), px(2)]),
                );
            }
        }
    }
    save_png(path, &canvas)
}

/// Writes `image` to `path` as a PNG, atomically (see [`atomic`]).
pub fn save_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    atomic::write(path, png.get_ref())
}

/// Originals (top rows) above their reconstructions (bottom rows).
pub fn save_comparison(
    path: &Path,
    originals: &[f32],
    recons: &[f32],
    shape: [usize; 3],
    columns: usize,
) -> Result<()> {
    let mut both = originals.to_vec();
    both.extend_from_slice(recons);
    save_grid(path, &both, shape, columns)
}
