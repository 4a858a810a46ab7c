//! Small self-contained SVG charts (line and bar), so reports need no plotting library or browser scripts.

use std::fmt::Write as _;

use chrono::NaiveDate;

const W: f64 = 860.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;
const COLORS: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= n as f64).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    (0..=n * 2).map(|i| start + i as f64 * step).take_while(|v| *v <= hi + 1e-12).collect()
}

fn fmt_tick(v: f64, percent: bool) -> String {
    tick_label(v, percent, 0, 2)
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

fn frame(title: &str) -> String {
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<rect width="{W}" height="{H}" fill="white"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    s
}

/// The legend entry of series `n`, along the bottom edge.
fn legend(s: &mut String, n: usize, name: &str, color: &str) {
    let lx = LEFT + 10.0 + 130.0 * n as f64;
    let _ = write!(
        s,
        r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
        H - 14.0,
        lx + 14.0,
        H - 5.0,
        esc(name)
    );
}

fn y_axis(s: &mut String, lo: f64, hi: f64, percent: bool) -> impl Fn(f64) -> f64 + use<> {
    let ph = H - TOP - BOTTOM;
    let y = move |v: f64| TOP + ph * (1.0 - (v - lo) / (hi - lo).max(1e-12));
    for t in nice_ticks(lo, hi, 5) {
        let yy = y(t);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            fmt_tick(t, percent)
        );
    }
    y
}

/// A line chart of named series over dates (NaN values break the line).
pub fn line_chart(title: &str, dates: &[NaiveDate], series: &[(&str, &[f64])], percent: bool) -> String {
    let mut s = frame(title);
    let vals = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if dates.len() < 2 || !lo.is_finite() {
        s.push_str(r#"<text x="300" y="150">no data</text></svg>"#);
        return s;
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let y = y_axis(&mut s, lo - pad, hi + pad, percent);
    let pw = W - LEFT - RIGHT;
    let x = |i: usize| LEFT + pw * i as f64 / (dates.len() - 1) as f64;
    for k in 0..=4 {
        let i = (dates.len() - 1) * k / 4;
        let _ =
            write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, x(i), H - BOTTOM + 16.0, dates[i]);
    }
    for (n, (name, v)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let mut path = String::new();
        let mut pen_up = true;
        for (i, val) in v.iter().enumerate().take(dates.len()) {
            if val.is_finite() {
                let _ = write!(path, "{}{:.1},{:.1} ", if pen_up { "M" } else { "L" }, x(i), y(*val));
                pen_up = false;
            } else {
                pen_up = true;
            }
        }
        let _ = write!(s, r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.4"/>"#);
        legend(&mut s, n, name, color);
    }
    s.push_str("</svg>");
    s
}

/// A bar chart of labelled values (one series per name, grouped per label).
pub fn bar_chart(title: &str, labels: &[String], series: &[(&str, &[f64])], percent: bool) -> String {
    let mut s = frame(title);
    let vals = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((0.0_f64, 0.0_f64), |(a, b), v| (a.min(v), b.max(v)));
    if labels.is_empty() || (lo == 0.0 && hi == 0.0) {
        s.push_str(r#"<text x="300" y="150">no data</text></svg>"#);
        return s;
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let y = y_axis(&mut s, lo - pad, hi + pad, percent);
    let pw = W - LEFT - RIGHT;
    let group = pw / labels.len() as f64;
    let bw = (group * 0.8 / series.len().max(1) as f64).max(1.0);
    let every = labels.len().div_ceil(12);
    for (i, l) in labels.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                LEFT + group * (i as f64 + 0.5),
                H - BOTTOM + 16.0,
                esc(l)
            );
        }
    }
    for (n, (name, v)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        for (i, val) in v.iter().enumerate().take(labels.len()) {
            if !val.is_finite() {
                continue;
            }
            let (y0, y1) = (y(0.0), y(*val));
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"/>"#,
                LEFT + group * i as f64 + group * 0.1 + bw * n as f64,
                y0.min(y1),
                (y1 - y0).abs()
            );
        }
        legend(&mut s, n, name, color);
    }
    s.push_str("</svg>");
    s
}
