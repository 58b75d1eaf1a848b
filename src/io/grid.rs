//! PNG grids of images: model outputs in [-0.5, 0.5] laid out in rows.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::atomic;

/// Pixels between the images of a grid and around them.
const GAP: usize = 2;
/// The colour of the gaps (and of the empty places after the last image).
const BACKGROUND: image::Rgb<u8> = image::Rgb([40, 40, 40]);

/// The integer factor images of H x W are enlarged by in a grid.
fn scale_of(h: usize, w: usize) -> usize {
    (64 / h.max(w)).max(1)
}

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
    let (gap, scale) = (GAP, scale_of(h, w));
    let (sh, sw) = (h * scale, w * scale);
    let (width, height) = (columns * (sw + gap) + gap, rows * (sh + gap) + gap);
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, BACKGROUND);
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

/// Reads the images of a grid that [`save_grid`] wrote for images of shape [C, H, W], in
/// [-0.5, 0.5] (8-bit steps; grey images take the red channel). Places left empty after the last
/// image (all gap colour) are skipped. A file whose size is not that of such a grid is refused.
pub fn load_grid(path: &Path, [c, h, w]: [usize; 3]) -> Result<Vec<f32>> {
    let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let canvas = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .map_err(|e| bad(format!("not a readable PNG ({e})")))?
        .to_rgb8();
    let (width, height) = (canvas.width() as usize, canvas.height() as usize);
    let scale = scale_of(h, w);
    let (sh, sw) = (h * scale, w * scale);
    let fits = |total: usize, side: usize| total > GAP && (total - GAP).is_multiple_of(side + GAP);
    if !(c == 1 || c == 3) || !fits(width, sw) || !fits(height, sh) {
        return Err(bad(format!(
            "{width}x{height} pixels is not a grid of {c}x{h}x{w} images (each drawn {sw}x{sh} with {GAP}-pixel gaps)"
        )));
    }
    let (columns, rows) = ((width - GAP) / (sw + GAP), (height - GAP) / (sh + GAP));
    let mut images = Vec::with_capacity(columns * rows * c * h * w);
    for i in 0..columns * rows {
        let (x0, y0) = (
            GAP + (i % columns) * (sw + GAP),
            GAP + (i / columns) * (sh + GAP),
        );
        let pixel = |y: usize, x: usize| canvas.get_pixel((x0 + x) as u32, (y0 + y) as u32);
        let empty = (0..sh).all(|y| (0..sw).all(|x| *pixel(y, x) == BACKGROUND));
        if empty {
            continue;
        }
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v = pixel(y * scale, x * scale)[ch];
                    images.push(v as f32 / 255.0 - 0.5);
                }
            }
        }
    }
    Ok(images)
}

/// Refuses an output path that does not name a `.png` file (vqgpu writes its images as PNG, and
/// a `.jpg` holding PNG data, or a directory, is not what was asked for), or that
/// [`atomic::check_output_file`] refuses.
pub fn check_png_path(path: &Path) -> Result<()> {
    let png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if png
        && !path
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR)
    {
        atomic::check_output_file(path)
    } else {
        Err(Error::InvalidArgument(format!(
            "{} does not name a .png file: vqgpu writes its images as PNG, give --out a name ending in .png",
            path.display()
        )))
    }
}

/// Writes `image` to `path` as a PNG, atomically (see [`atomic`]).
pub fn save_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    check_png_path(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_written_only_to_png_names() {
        for ok in ["samples.png", "runs/x/Grid.PNG", "a.b.png"] {
            check_png_path(Path::new(ok)).unwrap();
        }
        for bad in ["samples.jpg", "samples", "out/", "a.png/", "metrics.csv"] {
            let err = check_png_path(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("does not name a .png file"), "{bad}: {err}");
        }
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vqgpu-grid-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("grid.png")
    }

    #[test]
    fn a_saved_grid_reads_back_to_8_bits_without_its_empty_places() {
        for (shape, count, columns) in [
            ([3, 32, 32], 5, 3),
            ([1, 28, 28], 4, 4),
            ([3, 80, 64], 2, 2),
        ] {
            let n = shape.iter().product::<usize>() * count;
            let images: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 / 100.0) - 0.5)
                .collect();
            let path = temp(&format!("{}x{}", shape[1], count));
            save_grid(&path, &images, shape, columns).unwrap();
            let back = load_grid(&path, shape).unwrap();
            assert_eq!(back.len(), n, "{shape:?}: every image and no empty place");
            let worst = images
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 0.5 / 255.0 + 1e-6, "{shape:?}: off by {worst}");
            std::fs::remove_dir_all(path.parent().unwrap()).ok();
        }
    }

    #[test]
    fn a_file_that_is_no_grid_of_the_shape_is_refused() {
        let path = temp("wrong");
        let images = vec![0.0f32; 3 * 32 * 32 * 4];
        save_grid(&path, &images, [3, 32, 32], 2).unwrap();
        let err = load_grid(&path, [3, 28, 28]).unwrap_err().to_string();
        assert!(err.contains("not a grid of 3x28x28 images"), "{err}");
        std::fs::write(&path, b"not a png").unwrap();
        let err = load_grid(&path, [3, 32, 32]).unwrap_err().to_string();
        assert!(err.contains("not a readable PNG"), "{err}");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }
}
