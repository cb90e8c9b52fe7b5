//! Line plots into PNGs (rate–distortion, loss curves) with plotters: labelled axes with ticks,
//! a light grid, one line with point markers per series and a legend. Text is set in a subset of
//! DejaVu Sans compiled into the binary (assets/fonts/, with its licence), so a plot renders the
//! same on every machine, offline, with no system fonts.
use anyhow::{anyhow, Result};
use image::RgbImage;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::ops::Range;
use std::sync::OnceLock;

/// The bundled font (printable ASCII and a few symbols).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// The font family name the bundled font is registered under.
const FAMILY: &str = "sans-serif";

pub const COLOURS: [[u8; 3]; 6] =
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];

/// One named line of (x, y) points; points with a non-finite coordinate are left out.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line plot: axis labels (with units) and its series.
#[derive(Clone, Debug)]
pub struct LinePlot {
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

impl LinePlot {
    /// An empty plot with these axis labels.
    pub fn new(x_label: &str, y_label: &str) -> Self {
        Self { x_label: x_label.into(), y_label: y_label.into(), series: vec![] }
    }

    /// Adds a series.
    pub fn with(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.series.push(Series { name: name.into(), points });
        self
    }

    /// Draws the plot into a `width`×`height` image (white background).
    pub fn render(&self, width: u32, height: u32) -> Result<RgbImage> {
        register_bundled_font()?;
        let mut buf = vec![255u8; 3 * width as usize * height as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            self.draw(&root).map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
            root.present().map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
        }
        RgbImage::from_raw(width, height, buf).ok_or_else(|| anyhow!("plot buffer has the wrong size"))
    }

    /// The finite points of every series.
    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite())
    }

    /// Axes, grid, series and legend.
    fn draw(&self, root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()> {
        let (xs, ys): (Vec<f64>, Vec<f64>) = self.finite().unzip();
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(span(&xs, 0.05, 0.05), span(&ys, 0.08, 0.3))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let [r, g, b] = COLOURS[i % COLOURS.len()];
            let colour = RGBColor(r, g, b);
            let pts: Vec<(f64, f64)> =
                s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            if pts.len() <= 64 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font((FAMILY, 13))
            .draw()?;
        Ok(())
    }
}

/// An axis range covering `v` with margins of `below` and `above` of its width (the top one
/// leaves room for the legend); a unit range around the value when all are equal, 0..1 when
/// there are none.
fn span(v: &[f64], below: f64, above: f64) -> Range<f64> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if hi <= lo {
        return lo - 0.5..hi + 0.5;
    }
    let w = hi - lo;
    lo - w * below..hi + w * above
}

/// A tick label: up to three decimals, without trailing zeros (16, 17.5, 0.125).
fn tick(v: &f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Registers the bundled font once per process.
fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(anyhow!("the bundled plot font is unreadable"))
    }
}
