//! Minimal line plots into PNGs (loss curves, rate–distortion): axes, grid lines and one
//! polyline per series, each in its own colour; the legend goes into the caller's text output.
use image::{Rgb, RgbImage};

pub const COLOURS: [[u8; 3]; 6] =
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// Plots series of (x, y) points on shared axes; returns the image.
pub fn line_plot(series: &[Vec<(f64, f64)>], width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let pts: Vec<&(f64, f64)> = series.iter().flatten().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if pts.is_empty() {
        return img;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &pts {
        x0 = x0.min(p.0);
        x1 = x1.max(p.0);
        y0 = y0.min(p.1);
        y1 = y1.max(p.1);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let m = 30.0;
    let (w, h) = (width as f64 - 2.0 * m, height as f64 - 2.0 * m);
    let to_px = |x: f64, y: f64| (m + (x - x0) / (x1 - x0) * w, m + (1.0 - (y - y0) / (y1 - y0)) * h);
    for i in 0..=4 {
        let gy = m + h * i as f64 / 4.0;
        let gx = m + w * i as f64 / 4.0;
        line(&mut img, (m, gy), (m + w, gy), [225, 225, 225]);
        line(&mut img, (gx, m), (gx, m + h), [225, 225, 225]);
    }
    line(&mut img, (m, m + h), (m + w, m + h), [0, 0, 0]);
    line(&mut img, (m, m), (m, m + h), [0, 0, 0]);
    for (k, s) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let p: Vec<(f64, f64)> =
            s.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|p| to_px(p.0, p.1)).collect();
        for pair in p.windows(2) {
            line(&mut img, pair[0], pair[1], c);
        }
        for &q in &p {
            for dx in -1..=1 {
                for dy in -1..=1 {
                    put(&mut img, q.0 + dx as f64, q.1 + dy as f64, c);
                }
            }
        }
    }
    img
}

fn put(img: &mut RgbImage, x: f64, y: f64, c: [u8; 3]) {
    let (x, y) = (x.round() as i64, y.round() as i64);
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, Rgb(c));
    }
}

fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), c: [u8; 3]) {
    let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        put(img, a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, c);
    }
}
