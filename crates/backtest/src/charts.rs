//! The report's charts, each described once ([`Chart`]: title, x values, named series) and drawn by one renderer
//! (plotters with the vendored DejaVu Sans) as a PNG (`plots/<id>.png`) or an SVG (the run directory's four static
//! plots), plus the data behind it (`plots/<id>.parquet`: series, x, value), so the notebook and the page show the
//! same numbers. Interactivity (hover values, drag-to-zoom, legend toggles) is the page's own script, drawing the
//! same data; every drawing uses the one [`PALETTE`].

use std::sync::Once;

use chrono::NaiveDate;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::Serialize;
use stockcast_features::polars::prelude::*;

use crate::error::{Error, Result};

/// DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans.LICENSE`), so PNGs draw text without system fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Width and height of every PNG, pixels.
pub const PNG_SIZE: (u32, u32) = (960, 420);

/// The one palette of every chart: PNG, SVG and the page's script (which reads it from the page, see
/// [`palette_attr`]).
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0x1f, 0x77, 0xb4),
    (0xff, 0x7f, 0x0e),
    (0x2c, 0xa0, 0x2c),
    (0xd6, 0x27, 0x28),
    (0x94, 0x67, 0xbd),
    (0x8c, 0x56, 0x4b),
    (0xe3, 0x77, 0xc2),
    (0x7f, 0x7f, 0x7f),
];

/// The palette as the page's script reads it: `#rrggbb` colours, comma-separated.
pub fn palette_attr() -> String {
    PALETTE.iter().map(|(r, g, b)| format!("#{r:02x}{g:02x}{b:02x}")).collect::<Vec<_>>().join(",")
}

/// An axis tick: a percentage with `percent_decimals`, thousands as `12k`, values of 10 and more without
/// decimals, smaller ones with `decimals`.
pub(crate) fn tick_label(v: f64, percent: bool, percent_decimals: usize, decimals: usize) -> String {
    if percent {
        format!("{:.*}%", percent_decimals, v * 100.0)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.decimals$}")
    }
}

fn register_font() {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// How a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One line per series over the x values.
    Line,
    /// Grouped bars: one bar per series at each x label.
    Bar,
    /// A grid: one row per series, one column per x label, the value as colour (diverging around 0).
    Heatmap,
}

/// Which report section a chart belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// Performance tear sheet.
    Performance,
    /// Factor tear sheet.
    Signal,
    /// Per-fold results.
    Folds,
    /// Models: feature importance.
    Models,
}

/// One chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    /// File stem and HTML id (`[a-z0-9_-]`).
    pub id: String,
    /// Section of the page.
    pub section: Section,
    /// Title.
    pub title: String,
    /// Drawing.
    pub kind: Kind,
    /// x values (ISO dates when `dates`).
    pub x: Vec<String>,
    /// Whether `x` are dates.
    pub dates: bool,
    /// Values shown as percentages.
    pub percent: bool,
    /// (name, values aligned with `x`; NaN: no value).
    pub series: Vec<(String, Vec<f64>)>,
    /// The model a per-model chart shows (the page's model selector hides the other models' charts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Shaded x ranges (series name, first index, last index), drawn while that series is shown: the equity
    /// chart's worst drawdown periods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shades: Vec<(String, usize, usize)>,
    /// The page offers a log-scale toggle: the values are cumulative returns, drawn on a log scale of 1 + v.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub log_scale: bool,
}

impl Chart {
    /// A chart over dates.
    pub fn dated(id: &str, section: Section, title: &str, kind: Kind, dates: &[NaiveDate], percent: bool) -> Self {
        let x = dates.iter().map(ToString::to_string).collect();
        Self { dates: true, ..Self::labelled(id, section, title, kind, x, percent) }
    }

    /// A chart over labels.
    pub fn labelled(id: &str, section: Section, title: &str, kind: Kind, x: Vec<String>, percent: bool) -> Self {
        Self {
            id: sanitize(id),
            section,
            title: title.to_owned(),
            kind,
            x,
            dates: false,
            percent,
            series: Vec::new(),
            model: None,
            shades: Vec::new(),
            log_scale: false,
        }
    }

    /// Adds a series (values aligned with `x`).
    #[must_use]
    pub fn with(mut self, name: &str, values: Vec<f64>) -> Self {
        self.series.push((name.to_owned(), values));
        self
    }

    /// The data behind the chart: one row per (series, x) with its value (null where there is none).
    ///
    /// # Errors
    /// Polars errors.
    pub fn frame(&self) -> Result<DataFrame> {
        let (mut s, mut x, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for (name, values) in &self.series {
            for (xi, val) in self.x.iter().zip(values) {
                s.push(name.as_str());
                x.push(xi.as_str());
                v.push(val.is_finite().then_some(*val));
            }
        }
        let cols = vec![Column::new("series".into(), s), Column::new("x".into(), x), Column::new("value".into(), v)];
        Ok(DataFrame::new_infer_height(cols).map_err(stockcast_features::Error::from)?)
    }

    /// The chart as a PNG of [`PNG_SIZE`].
    ///
    /// # Errors
    /// Drawing or encoding errors.
    pub fn png(&self) -> Result<Vec<u8>> {
        let (w, h) = PNG_SIZE;
        let mut buf = vec![0u8; (w * h * 3) as usize];
        self.draw(&BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area())?;
        encode_png(&buf, w, h)
    }

    /// The chart as an SVG document of [`PNG_SIZE`], drawn by the same code as [`Chart::png`].
    ///
    /// # Errors
    /// Drawing errors.
    pub fn svg(&self) -> Result<String> {
        let mut out = String::new();
        self.draw(&SVGBackend::with_string(&mut out, PNG_SIZE).into_drawing_area())?;
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        register_font();
        root.fill(&WHITE).map_err(draw_err)?;
        match self.kind {
            Kind::Line => self.draw_lines(root)?,
            Kind::Bar => self.draw_bars(root)?,
            Kind::Heatmap => self.draw_heatmap(root)?,
        }
        root.present().map_err(draw_err)
    }

    fn y_range(&self, include_zero: bool) -> std::ops::Range<f64> {
        let vals = self.series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
        let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if include_zero {
            (lo, hi) = (lo.min(0.0), hi.max(0.0));
        }
        let pad = ((hi - lo) * 0.05).max(1e-9);
        (lo - pad)..(hi + pad)
    }

    fn tick(&self, v: f64) -> String {
        let v = if v.abs() < 1e-12 { 0.0 } else { v };
        tick_label(v, self.percent, 1, 3)
    }

    /// The chart area with the title, `label_areas` (x, y) in pixels and the given x and y ranges.
    fn axes<'a, DB: DrawingBackend>(
        &self,
        root: &'a DrawingArea<DB, plotters::coord::Shift>,
        label_areas: (u32, u32),
        x: std::ops::Range<f64>,
        y: std::ops::Range<f64>,
    ) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
        ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(label_areas.0)
            .y_label_area_size(label_areas.1)
            .build_cartesian_2d(x, y)
            .map_err(draw_err)
    }

    fn x_label(&self, x: f64) -> String {
        let i = x.round();
        if i < 0.0 || (i - x).abs() > 0.01 {
            return String::new();
        }
        self.x.get(i as usize).cloned().unwrap_or_default()
    }

    fn draw_lines<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        let n = self.x.len().max(2);
        let mut chart = self.axes(root, (32, 70), 0f64..(n - 1) as f64, self.y_range(false))?;
        // Ticks where plotters puts them; each labelled with the x value nearest to it.
        let xl = |x: &f64| self.x.get(x.round().max(0.0) as usize).cloned().unwrap_or_default();
        let yl = |y: &f64| self.tick(*y);
        chart
            .configure_mesh()
            .x_labels(7)
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        for (k, (name, values)) in self.series.iter().enumerate() {
            let (r, g, b) = PALETTE[k % PALETTE.len()];
            let color = RGBColor(r, g, b);
            // A gap (NaN) splits the line.
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, v) in values.iter().enumerate() {
                if v.is_finite() {
                    segments.last_mut().into_iter().for_each(|s| s.push((i as f64, *v)));
                } else if segments.last().is_some_and(|s| !s.is_empty()) {
                    segments.push(Vec::new());
                }
            }
            let mut first = true;
            for seg in segments.into_iter().filter(|s| !s.is_empty()) {
                let drawn = chart.draw_series(LineSeries::new(seg, color.stroke_width(2))).map_err(draw_err)?;
                if std::mem::take(&mut first) {
                    drawn
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                }
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }

    fn draw_bars<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        let n = self.x.len().max(1);
        let mut chart = self.axes(root, (32, 70), -0.5f64..n as f64 - 0.5, self.y_range(true))?;
        let step = (n as f64 / 15.0).ceil().max(1.0);
        let xl = |x: &f64| if (x / step).fract().abs() < 1e-9 { self.x_label(*x) } else { String::new() };
        let yl = |y: &f64| self.tick(*y);
        chart
            .configure_mesh()
            .x_labels(2 * n + 1)
            .x_label_style(("sans-serif", 10))
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .light_line_style(WHITE)
            .draw()
            .map_err(draw_err)?;
        let k = self.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, (name, values)) in self.series.iter().enumerate() {
            let (r, g, b) = PALETTE[j % PALETTE.len()];
            let color = RGBColor(r, g, b);
            let bars = values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, v)| {
                let x0 = i as f64 - 0.4 + width * j as f64;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.95, *v)], color.filled())
            });
            chart
                .draw_series(bars)
                .map_err(draw_err)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        if self.series.len() > 1 {
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }

    fn draw_heatmap<DB: DrawingBackend>(&self, root: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()> {
        let (cols, rows) = (self.x.len().max(1), self.series.len().max(1));
        let mut chart = self.axes(root, (28, 60), 0f64..cols as f64, 0f64..rows as f64)?;
        let xl = |x: &f64| {
            let i = (x - 0.5).round();
            if (x - 0.5 - i).abs() < 1e-9 && i >= 0.0 {
                self.x.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let yl = |y: &f64| {
            let i = (y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-9 && i >= 0.0 {
                self.series.get(rows - 1 - i as usize).map(|s| s.0.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(cols * 2 + 1)
            .y_labels(rows * 2 + 1)
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .draw()
            .map_err(draw_err)?;
        let scale = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(1e-12f64, |a, v| a.max(v.abs()));
        for (r, (_, values)) in self.series.iter().enumerate() {
            let y = (rows - 1 - r) as f64;
            for (c, v) in values.iter().enumerate() {
                let (x0, y0) = (c as f64, y);
                let fill = if v.is_finite() { diverging(*v / scale) } else { RGBColor(245, 245, 245) };
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled())))
                    .map_err(draw_err)?;
                if v.is_finite() {
                    let text = if self.percent { format!("{:.1}", v * 100.0) } else { format!("{v:.2}") };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            text,
                            (x0 + 0.2, y0 + 0.65),
                            ("sans-serif", 12).into_font().color(&BLACK),
                        )))
                        .map_err(draw_err)?;
                }
            }
        }
        Ok(())
    }
}

/// Red (−1) – white (0) – green (+1).
fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, f: f64| (f64::from(a) + (f64::from(b) - f64::from(a)) * f) as u8;
    if t < 0.0 {
        RGBColor(mix(255, 214, -t), mix(255, 39, -t), mix(255, 40, -t))
    } else {
        RGBColor(mix(255, 44, t), mix(255, 160, t), mix(255, 44, t))
    }
}

/// A chart id from any text: ASCII letters and digits lower-cased, `-` and `_` kept, anything else `_`.
pub fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect()
}

/// The series legend of `chart` at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(draw_err)
}

fn draw_err(e: impl std::fmt::Display) -> Error {
    Error::Data(format!("drawing a chart: {e}"))
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| Error::Data(format!("PNG: {e}")))?;
        writer.write_image_data(rgb).map_err(|e| Error::Data(format!("PNG: {e}")))?;
    }
    Ok(out)
}
