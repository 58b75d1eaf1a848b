//! The built-in `shapes` dataset: RGB scenes of one to three anti-aliased shapes (disc, square,
//! triangle, ring) of random colours, sizes and positions on a plain background, 32x32 by default
//! and 64x64 or 128x128 on request (the same scenes drawn finer). Every image is a pure function of
//! (seed, split, index, side), so the dataset needs no files and no memory.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Split};
use crate::error::{Error, Result};

/// Side of the scenes' coordinate system, and of the images by default.
pub const SIZE: usize = 32;
/// The sides the dataset draws its images at.
pub const SIDES: [usize; 3] = [32, 64, 128];
/// Supersampling per axis for anti-aliased edges.
const SUPERSAMPLE: usize = 4;

/// The kind of a drawn shape; the label of an image is the kind of its largest shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Disc = 0,
    Square = 1,
    Triangle = 2,
    Ring = 3,
}

struct Shape {
    kind: Kind,
    cx: f32,
    cy: f32,
    r: f32,
    angle: f32,
    colour: [f32; 3],
}

impl Shape {
    fn covers(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        match self.kind {
            Kind::Disc => dx * dx + dy * dy <= self.r * self.r,
            Kind::Ring => {
                let d2 = dx * dx + dy * dy;
                d2 <= self.r * self.r && d2 >= (0.55 * self.r).powi(2)
            }
            Kind::Square => u.abs() <= 0.8 * self.r && v.abs() <= 0.8 * self.r,
            Kind::Triangle => {
                // equilateral with circumradius r: apex (0, -r), base at v = r/2 from -0.866r to 0.866r;
                // the half-width grows by tan(30 deg) per unit of v below the apex
                v >= -self.r && v <= 0.5 * self.r && u.abs() <= (v + self.r) * 0.577_35
            }
        }
    }
}

/// The procedural dataset: `len` images per split, drawn from `seed` at `side` x `side` pixels.
#[derive(Clone, Debug)]
pub struct Shapes {
    seed: u64,
    split: Split,
    len: usize,
    side: usize,
}

impl Shapes {
    /// 20000 train or 2000 test images of 32x32.
    pub fn new(seed: u64, split: Split) -> Self {
        let len = match split {
            Split::Train => 20_000,
            Split::Test => 2_000,
        };
        Self {
            seed,
            split,
            len,
            side: SIZE,
        }
    }

    /// The same scenes drawn at `side` x `side` pixels (one of [`SIDES`]).
    pub fn with_side(self, side: usize) -> Result<Self> {
        if !SIDES.contains(&side) {
            return Err(Error::InvalidArgument(format!(
                "--image-size {side}: the shapes dataset is drawn at 32, 64 or 128"
            )));
        }
        Ok(Self { side, ..self })
    }

    fn rng(&self, index: usize) -> ChaCha8Rng {
        let stream = match self.split {
            Split::Train => 0u64,
            Split::Test => 1u64 << 40,
        };
        ChaCha8Rng::seed_from_u64(
            self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (stream + index as u64),
        )
    }

    fn scene(&self, index: usize) -> ([f32; 3], Vec<Shape>) {
        let mut rng = self.rng(index);
        let light = rng.random_bool(0.5);
        let base: f32 = if light {
            rng.random_range(0.7..0.95)
        } else {
            rng.random_range(0.05..0.3)
        };
        let background = [0, 1, 2].map(|_| (base + rng.random_range(-0.05..0.05)).clamp(0.0, 1.0));
        let count = rng.random_range(1..=3);
        let shapes = (0..count)
            .map(|_| {
                let r = rng.random_range(4.0..11.0f32);
                let hue = rng.random_range(0.0..6.0f32);
                Shape {
                    kind: [Kind::Disc, Kind::Square, Kind::Triangle, Kind::Ring]
                        [rng.random_range(0..4)],
                    cx: rng.random_range(r..SIZE as f32 - r),
                    cy: rng.random_range(r..SIZE as f32 - r),
                    r,
                    angle: rng.random_range(0.0..std::f32::consts::TAU),
                    colour: hue_colour(hue, if light { 0.15 } else { 0.95 }),
                }
            })
            .collect();
        (background, shapes)
    }
}

/// A saturated colour of hue `h` in [0, 6), mixed towards `value` for contrast with the background.
fn hue_colour(h: f32, value: f32) -> [f32; 3] {
    let x = 1.0 - ((h % 2.0) - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [r, g, b].map(|c| 0.75 * c + 0.25 * value)
}

impl Dataset for Shapes {
    fn len(&self) -> usize {
        self.len
    }

    fn image_shape(&self) -> [usize; 3] {
        [3, self.side, self.side]
    }

    fn image(&self, index: usize, out: &mut [u8]) {
        let (background, shapes) = self.scene(index);
        let side = self.side;
        let plane = side * side;
        let step = 1.0 / SUPERSAMPLE as f32;
        // pixels to scene units (exactly 1 at the default side)
        let unit = SIZE as f32 / side as f32;
        for y in 0..side {
            for x in 0..side {
                let mut acc = [0.0f32; 3];
                for sy in 0..SUPERSAMPLE {
                    for sx in 0..SUPERSAMPLE {
                        let (px, py) = (
                            (x as f32 + (sx as f32 + 0.5) * step) * unit,
                            (y as f32 + (sy as f32 + 0.5) * step) * unit,
                        );
                        // later shapes are drawn on top
                        let colour = shapes
                            .iter()
                            .rev()
                            .find(|s| s.covers(px, py))
                            .map_or(background, |s| s.colour);
                        for c in 0..3 {
                            acc[c] += colour[c];
                        }
                    }
                }
                let samples = (SUPERSAMPLE * SUPERSAMPLE) as f32;
                for c in 0..3 {
                    out[c * plane + y * side + x] =
                        (acc[c] / samples * 255.0).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    fn label(&self, index: usize) -> Option<u32> {
        let (_, shapes) = self.scene(index);
        shapes
            .iter()
            .max_by(|a, b| a.r.total_cmp(&b.r))
            .map(|s| s.kind as u32)
    }

    fn classes(&self) -> Option<usize> {
        Some(4)
    }
}
