//! Seeded synthetic OHLCV panels for scale tests and benchmarks.
//!
//! Each symbol follows a geometric random walk driven by a shared market factor plus idiosyncratic noise, with an
//! overnight gap, intraday range and volume that rises with the size of the move. The bars always satisfy
//! `low ≤ min(open, close) ≤ max(open, close) ≤ high`, prices are positive, and the same seed gives the same panel.

use chrono::{Datelike, NaiveDate, Weekday};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::prices::date_to_days;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of symbols (`S0000`, `S0001`, ...).
    pub symbols: usize,
    /// Number of trading days (weekdays from `start`).
    pub days: usize,
    /// Seed.
    pub seed: u64,
    /// First date.
    pub start: NaiveDate,
}

impl SynthConfig {
    /// A config with the default start date 2010-01-04.
    ///
    /// # Panics
    /// Never: the start date is a valid constant.
    pub fn new(symbols: usize, days: usize, seed: u64) -> Self {
        Self { symbols, days, seed, start: NaiveDate::from_ymd_opt(2010, 1, 4).expect("valid date") }
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The first `n` weekdays from `start`.
pub fn weekdays(start: NaiveDate, n: usize) -> Vec<NaiveDate> {
    start.iter_days().filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)).take(n).collect()
}

/// Generates a long-layout panel `date, symbol, open, high, low, close, volume`, sorted by symbol and date.
///
/// # Errors
/// [`Error::Config`] when `symbols` or `days` is zero.
pub fn synth_prices(cfg: &SynthConfig) -> Result<DataFrame> {
    if cfg.symbols == 0 || cfg.days < 2 {
        return Err(Error::config("synthetic data", "need at least 1 symbol and 2 days"));
    }
    let dates = weekdays(cfg.start, cfg.days);
    let mut market_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let market: Vec<f64> = (0..cfg.days).map(|_| 0.0002 + 0.01 * normal(&mut market_rng)).collect();
    let n = cfg.symbols * cfg.days;
    let (mut date, mut symbol) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut open, mut high, mut low, mut close, mut volume) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let width = cfg.symbols.saturating_sub(1).to_string().len().max(4);
    for s in 0..cfg.symbols {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(s as u64 + 1)));
        let name = format!("S{s:0width$}");
        let sigma = 0.01 + 0.02 * rng.random::<f64>();
        let beta = 0.5 + rng.random::<f64>();
        let mu = 0.0001 + 0.0003 * normal(&mut rng);
        let base_volume = 1e5 * (1.0 + 99.0 * rng.random::<f64>());
        let mut prev = 10.0 + 190.0 * rng.random::<f64>();
        for (t, d) in dates.iter().enumerate() {
            let r = mu + beta * market[t] + sigma * normal(&mut rng);
            let gap = 0.3 * sigma * normal(&mut rng);
            let o = prev * gap.exp();
            let c = prev * r.exp();
            let h = o.max(c) * (0.5 * sigma * normal(&mut rng).abs()).exp();
            let l = o.min(c) * (-0.5 * sigma * normal(&mut rng).abs()).exp();
            let (o, c) = (round4(o).max(1e-4), round4(c).max(1e-4));
            let (h, l) = (round4(h).max(o.max(c)), round4(l).min(o.min(c)).max(1e-4));
            let v = (base_volume * (0.3 * normal(&mut rng) + 3.0 * (r - mu).abs() / sigma * 0.1).exp()).round();
            date.push(date_to_days(*d));
            symbol.push(name.clone());
            open.push(o);
            high.push(h);
            low.push(l);
            close.push(c);
            volume.push(v);
            prev = c;
        }
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("date".into(), date).cast(&DataType::Date)?,
        Column::new("symbol".into(), symbol),
        Column::new("open".into(), open),
        Column::new("high".into(), high),
        Column::new("low".into(), low),
        Column::new("close".into(), close),
        Column::new("volume".into(), volume),
    ])?;
    Ok(df)
}
