//! Line plots of training curves as PNG: one panel per series, stacked, with a title, axis ranges
//! and tick labels (drawn with an 8x8 bitmap font, so no system fonts are needed).

use std::path::Path;

use font8x8::{UnicodeFonts, BASIC_FONTS};
use image::{Rgb, RgbImage};

use crate::error::Result;
use crate::io::grid::save_png;

const WIDTH: u32 = 720;
const PANEL_HEIGHT: u32 = 240;
const MARGIN_LEFT: i64 = 80;
const MARGIN_RIGHT: i64 = 20;
const MARGIN_TOP: i64 = 24;
const MARGIN_BOTTOM: i64 = 28;
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const LINE: Rgb<u8> = Rgb([200, 60, 40]);

/// One panel: a title and its (x, y) points.
pub struct Series<'a> {
    /// Panel title.
    pub title: &'a str,
    /// Points in x order.
    pub points: &'a [(f64, f64)],
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn text(img: &mut RgbImage, x: i64, y: i64, s: &str) {
    for (i, ch) in s.chars().enumerate() {
        if let Some(glyph) = BASIC_FONTS.get(ch) {
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        put(img, x + i as i64 * 8 + col, y + row as i64, INK);
                    }
                }
            }
        }
    }
}

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for s in 0..=steps {
        put(
            img,
            x0 + (x1 - x0) * s / steps,
            y0 + (y1 - y0) * s / steps,
            c,
        );
    }
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn panel(img: &mut RgbImage, top: i64, series: &Series) {
    let (left, right) = (MARGIN_LEFT, WIDTH as i64 - MARGIN_RIGHT);
    let (y_top, y_bottom) = (top + MARGIN_TOP, top + PANEL_HEIGHT as i64 - MARGIN_BOTTOM);
    text(img, left, top + 6, series.title);
    let finite: Vec<(f64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x_min, mut x_max) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y_min, mut y_max) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if finite.is_empty() {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, 0.0, 1.0);
    }
    // one step, or one value: the range centred on it, so its points are in the middle
    if x_max <= x_min {
        (x_min, x_max) = (x_min - 1.0, x_max + 1.0);
    }
    if y_max <= y_min {
        let pad = if y_min == 0.0 { 1.0 } else { y_min.abs() * 0.1 };
        (y_min, y_max) = (y_min - pad, y_max + pad);
    }
    for i in 0..=4 {
        let y = y_bottom - (y_bottom - y_top) * i / 4;
        line(img, (left, y), (right, y), GRID);
        let v = y_min + (y_max - y_min) * i as f64 / 4.0;
        let s = label(v);
        text(img, left - 6 - 8 * s.len() as i64, y - 4, &s);
    }
    line(img, (left, y_top), (left, y_bottom), INK);
    line(img, (left, y_bottom), (right, y_bottom), INK);
    for (i, v) in [x_min, (x_min + x_max) / 2.0, x_max].iter().enumerate() {
        let x = left + (right - left) * i as i64 / 2;
        // steps are whole; the middle of an odd range is not
        let s = if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        text(img, x - 4 * s.len() as i64, y_bottom + 8, &s);
    }
    let to_px = |(x, y): (f64, f64)| {
        (
            left + ((x - x_min) / (x_max - x_min) * (right - left) as f64).round() as i64,
            y_bottom - ((y - y_min) / (y_max - y_min) * (y_bottom - y_top) as f64).round() as i64,
        )
    };
    for pair in finite.windows(2) {
        line(img, to_px(pair[0]), to_px(pair[1]), LINE);
    }
    // a few points (a short run) are marked, so that a lone one shows
    if finite.len() <= MARKED_POINTS {
        for &p in &finite {
            let (x, y) = to_px(p);
            for dy in -2..=2 {
                line(img, (x - 2, y + dy), (x + 2, y + dy), LINE);
            }
        }
    }
}

/// Up to this many points a curve marks each one with a dot.
const MARKED_POINTS: usize = 20;

/// Writes one stacked panel per series (x: step) as a PNG.
pub fn save_curves(path: &Path, series: &[Series]) -> Result<()> {
    let height = PANEL_HEIGHT * series.len().max(1) as u32;
    let mut img = RgbImage::from_pixel(WIDTH, height, Rgb([255, 255, 255]));
    for (i, s) in series.iter().enumerate() {
        panel(&mut img, i as i64 * PANEL_HEIGHT as i64, s);
    }
    save_png(path, &img)
}

/// Ten well-separated colours for class labels (label mod 10).
const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

/// Writes a square scatter plot of 2-D `points` coloured by `labels` (a 3x3 dot each), with the
/// axis ranges and a legend of the label colours, as a PNG.
pub fn save_scatter(path: &Path, title: &str, points: &[(f64, f64)], labels: &[u32]) -> Result<()> {
    const SIDE: i64 = 560;
    let mut img = RgbImage::from_pixel(SIDE as u32 + 140, SIDE as u32, Rgb([255, 255, 255]));
    let finite = || {
        points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let range = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = finite()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        if lo < hi {
            (lo, hi)
        } else {
            (lo - 1.0, lo + 1.0)
        }
    };
    let ((x0, x1), (y0, y1)) = (range(|p| p.0), range(|p| p.1));
    let (left, top, plot) = (MARGIN_LEFT, MARGIN_TOP, SIDE - MARGIN_TOP - MARGIN_BOTTOM);
    let to_px = |(x, y): (f64, f64)| {
        (
            left + ((x - x0) / (x1 - x0) * (plot - 1) as f64) as i64,
            top + plot - 1 - ((y - y0) / (y1 - y0) * (plot - 1) as f64) as i64,
        )
    };
    for (&p, &label) in points.iter().zip(labels) {
        if !(p.0.is_finite() && p.1.is_finite()) {
            continue;
        }
        let (x, y) = to_px(p);
        for (dx, dy) in (-1..=1).flat_map(|dx| (-1..=1).map(move |dy| (dx, dy))) {
            put(&mut img, x + dx, y + dy, PALETTE[label as usize % 10]);
        }
    }
    line(&mut img, (left, top + plot), (left + plot, top + plot), INK);
    line(&mut img, (left, top), (left, top + plot), INK);
    text(&mut img, left, 6, title);
    text(
        &mut img,
        left,
        top + plot + 8,
        &format!("x {x0:.2} .. {x1:.2}"),
    );
    text(&mut img, 4, top, &format!("{y1:.2}"));
    text(&mut img, 4, top + plot - 8, &format!("{y0:.2}"));
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1).min(10);
    for (c, colour) in PALETTE.iter().enumerate().take(classes) {
        let y = top + 16 * c as i64;
        for dy in 0..8 {
            line(&mut img, (SIDE + 10, y + dy), (SIDE + 18, y + dy), *colour);
        }
        text(&mut img, SIDE + 24, y, &format!("class {c}"));
    }
    save_png(path, &img)
}

/// Draws the given columns of a metrics CSV against its step column (column 0), one panel per
/// (column, title); empty cells are skipped and panels without points are left out.
pub fn plot_columns(csv: &Path, png: &Path, columns: &[(usize, &str)]) -> Result<()> {
    let rows = crate::io::csv::read_rows(csv)?;
    let points: Vec<Vec<(f64, f64)>> = columns
        .iter()
        .map(|&(i, _)| {
            rows.iter()
                .filter(|r| r.len() > i && r[i].is_finite())
                .map(|r| (r[0], r[i]))
                .collect()
        })
        .collect();
    let series: Vec<Series> = columns
        .iter()
        .zip(&points)
        .filter(|(_, p)| !p.is_empty())
        .map(|(&(_, title), p)| Series { title, points: p })
        .collect();
    save_curves(png, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The panel's pixel at the middle of its plotting area.
    fn middle_of_panel(points: &[(f64, f64)]) -> Rgb<u8> {
        let mut img = RgbImage::from_pixel(WIDTH, PANEL_HEIGHT, Rgb([255, 255, 255]));
        panel(
            &mut img,
            0,
            &Series {
                title: "loss",
                points,
            },
        );
        let x = (MARGIN_LEFT + WIDTH as i64 - MARGIN_RIGHT) / 2;
        let y = (MARGIN_TOP + PANEL_HEIGHT as i64 - MARGIN_BOTTOM) / 2;
        *img.get_pixel(x as u32, y as u32)
    }

    #[test]
    fn a_lone_point_is_marked_in_the_middle_of_its_panel() {
        for value in [5.8, 0.0, -2.0] {
            assert_eq!(middle_of_panel(&[(30.0, value)]), LINE, "{value}");
        }
        // two steps of the same value: the line through the middle
        assert_eq!(middle_of_panel(&[(10.0, 1.0), (20.0, 1.0)]), LINE);
        // a curve that does not pass there leaves it blank
        assert_ne!(
            middle_of_panel(&[(10.0, 1.0), (20.0, 0.0), (30.0, 1.0)]),
            LINE
        );
    }
}
