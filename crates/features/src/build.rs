//! Feature and label computation with Polars lazy window expressions.
//!
//! Every time-series feature is an expression evaluated `over(symbol)` on rows sorted by date, using only
//! shifts by positive lags, trailing rolling windows and forward-recursive EWMs: the value at date t is a
//! function of the symbol's rows ≤ t. Cross-sectional features are evaluated `over(date)`, so they use other
//! symbols' values of the same date only. The label is the only expression that looks forward.

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::io::write_frame;
use crate::load::PriceField;
use crate::prices::PriceFrame;
use crate::spec::{Family, FeatureDef, FeatureSpec, LabelPrice, LabelSpec, ReturnKind, SpecHash};

/// Name of the label column.
pub const LABEL: &str = "label";

/// A feature family (or part of one) that was not computed, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The family.
    pub family: Family,
    /// The features not produced.
    pub features: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Features and label per (symbol, date), sorted by symbol then date.
///
/// Columns: `symbol`, `date`, optional `sector`, the features in spec order (f64, null where the window is not
/// yet full or the value is undefined), and `label` (f64, null for the last `horizon` dates of each symbol).
#[derive(Debug, Clone)]
pub struct FeatureFrame {
    df: DataFrame,
    features: Vec<String>,
    skipped: Vec<Skipped>,
    spec_hash: SpecHash,
    label: LabelSpec,
}

impl FeatureFrame {
    /// The frame.
    pub fn df(&self) -> &DataFrame {
        &self.df
    }

    /// Feature column names, in order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Families skipped for missing columns.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Hash of the spec used.
    pub fn spec_hash(&self) -> &SpecHash {
        &self.spec_hash
    }

    /// The label definition used.
    pub fn label_spec(&self) -> &LabelSpec {
        &self.label
    }

    /// Writes the frame (Parquet or CSV by extension) atomically.
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let mut df = self.df.clone();
        write_frame(&mut df, path)
    }

    /// Human-readable notes about skipped families, one per line.
    pub fn notes(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|s| {
                format!(
                    "skipped `{}` ({} features: {}): {}",
                    s.family.name(),
                    s.features.len(),
                    s.features.join(", "),
                    s.reason
                )
            })
            .collect()
    }
}

const SYMBOL: &str = "symbol";
const DATE: &str = "date";

fn per_symbol(e: Expr) -> Result<Expr> {
    Ok(e.over([col(SYMBOL)])?)
}

fn per_date(e: Expr) -> Result<Expr> {
    Ok(e.over([col(DATE)])?)
}

/// A trailing window of exactly `w` rows (null until the window is full).
fn window(w: usize) -> RollingOptionsFixedWindow {
    RollingOptionsFixedWindow { window_size: w, min_periods: w, ..Default::default() }
}

/// A recursive EWM `y[t] = (1-α) y[t-1] + α x[t]`, seeded with the first value, null for the first
/// `min_periods - 1` observations.
fn ewm(alpha: f64, min_periods: usize) -> EWMOptions {
    EWMOptions { alpha, adjust: false, bias: false, min_periods, ignore_nulls: true }
}

fn span_alpha(span: usize) -> f64 {
    2.0 / (span as f64 + 1.0)
}

fn f(name: &str) -> Expr {
    col(name)
}

/// Intermediate column names (dropped from the output).
const PREV_CLOSE: &str = "__prev_close";
const R1: &str = "__r1";
const LR1: &str = "__lr1";
const GAIN: &str = "__gain";
const LOSS: &str = "__loss";
const TR: &str = "__tr";
const LOG_VOL: &str = "__log_volume";
const RAW_LABEL: &str = "__raw_label";

/// Expressions of one time-series family entry: `(output name, expression)`. `stage` 0 = needs only the base
/// columns, 1 = needs the stage-0 outputs (MACD signal), 2 = needs stage 1 (MACD histogram).
fn family_exprs(def: &FeatureDef) -> Result<Vec<(usize, String, Expr)>> {
    let close = || f("close");
    let mut out = Vec::new();
    let names = def.output_names();
    match def.family {
        Family::Macd => {
            let [fast, slow, signal] = def.macd_spans();
            let ema = |span: usize| per_symbol(close().ewm_mean(ewm(span_alpha(span), span)));
            let line = (ema(fast)? - ema(slow)?) / close();
            out.push((0, names[0].clone(), line));
            out.push((1, names[1].clone(), per_symbol(f(&names[0]).ewm_mean(ewm(span_alpha(signal), signal)))?));
            out.push((2, names[2].clone(), f(&names[0]) - f(&names[1])));
        }
        Family::CsRank | Family::CsZscore => unreachable!("cross-sectional families are built separately"),
        fam => {
            for (w, name) in def.windows.iter().copied().zip(names) {
                let e = match fam {
                    Family::Returns => close() / per_symbol(close().shift(lit(w as i64)))? - lit(1.0),
                    Family::LogReturns => {
                        (close() / per_symbol(close().shift(lit(w as i64)))?).log(lit(std::f64::consts::E))
                    }
                    Family::MaRatio => close() / per_symbol(close().rolling_mean(window(w)))? - lit(1.0),
                    Family::EmaRatio => close() / per_symbol(close().ewm_mean(ewm(span_alpha(w), w)))? - lit(1.0),
                    Family::Volatility => per_symbol(f(LR1).rolling_std(window(w)))?,
                    Family::Rsi => {
                        let g = per_symbol(f(GAIN).ewm_mean(ewm(1.0 / w as f64, w)))?;
                        let l = per_symbol(f(LOSS).ewm_mean(ewm(1.0 / w as f64, w)))?;
                        lit(100.0) * g.clone() / (g + l)
                    }
                    Family::Bollinger => {
                        let k = def.bollinger_k();
                        let mean = per_symbol(close().rolling_mean(window(w)))?;
                        let sd = per_symbol(close().rolling_std(window(w)))?;
                        (close() - (mean - lit(k) * sd.clone())) / (lit(2.0 * k) * sd)
                    }
                    Family::Atr => per_symbol(f(TR).ewm_mean(ewm(1.0 / w as f64, w)))? / close(),
                    Family::Stochastic => {
                        let lo = per_symbol(f("low").rolling_min(window(w)))?;
                        let hi = per_symbol(f("high").rolling_max(window(w)))?;
                        lit(100.0) * (close() - lo.clone()) / (hi - lo)
                    }
                    Family::VolumeZ => {
                        let mean = per_symbol(f(LOG_VOL).rolling_mean(window(w)))?;
                        let sd = per_symbol(f(LOG_VOL).rolling_std(window(w)))?;
                        (f(LOG_VOL) - mean) / sd
                    }
                    Family::PriceVolumeCorr => per_symbol(rolling_corr(
                        close(),
                        f(LOG_VOL),
                        RollingCovOptions { window_size: w as IdxSize, min_periods: w as IdxSize, ddof: 1 },
                    ))?,
                    Family::DistMax => close() / per_symbol(close().rolling_max(window(w)))? - lit(1.0),
                    Family::DistMin => close() / per_symbol(close().rolling_min(window(w)))? - lit(1.0),
                    Family::Skew => per_symbol(f(R1).rolling_skew(RollingOptionsFixedWindow {
                        fn_params: Some(RollingFnParams::Skew { bias: true }),
                        ..window(w)
                    }))?,
                    Family::Kurtosis => per_symbol(f(R1).rolling_kurtosis(RollingOptionsFixedWindow {
                        fn_params: Some(RollingFnParams::Kurtosis { fisher: true, bias: true }),
                        ..window(w)
                    }))?,
                    Family::HlRange => {
                        let x = (f("high") - f("low")) / close();
                        if w == 1 { x } else { per_symbol(x.rolling_mean(window(w)))? }
                    }
                    Family::OpenGap => {
                        let x = f("open") / f(PREV_CLOSE) - lit(1.0);
                        if w == 1 { x } else { per_symbol(x.rolling_mean(window(w)))? }
                    }
                    Family::Macd | Family::CsRank | Family::CsZscore => unreachable!(),
                };
                out.push((0, name, e));
            }
        }
    }
    Ok(out)
}

fn label_expr(label: &LabelSpec, prices: &PriceFrame) -> Result<Expr> {
    let h = label.horizon as i64;
    let ratio = match label.price {
        LabelPrice::Close => per_symbol(f("close").shift(lit(-h)))? / f("close"),
        LabelPrice::Open => {
            if !prices.has(PriceField::Open) {
                return Err(Error::MissingRequired { family: "label (price = \"open\")".into(), column: "open" });
            }
            per_symbol(f("open").shift(lit(-(h + 1))))? / per_symbol(f("open").shift(lit(-1)))?
        }
    };
    Ok(match label.kind {
        ReturnKind::Simple => ratio - lit(1.0),
        ReturnKind::Log => ratio.log(lit(std::f64::consts::E)),
    })
}

/// Replaces NaN and ±inf by null.
fn finite(name: &str) -> Expr {
    when(f(name).is_finite()).then(f(name)).otherwise(lit(NULL).cast(DataType::Float64)).alias(name)
}

/// Computes features and label for every row of `prices`.
///
/// # Errors
/// [`Error::Config`] for an invalid spec; [`Error::MissingRequired`] when a `required` family (or an
/// open-price label) needs a column the data lacks.
pub fn build_features(prices: &PriceFrame, spec: &FeatureSpec) -> Result<FeatureFrame> {
    spec.validate()?;
    let has_volume = prices.has(PriceField::Volume);
    let has_hl = prices.has(PriceField::High) && prices.has(PriceField::Low);

    // Which families can be computed.
    let mut skipped = Vec::new();
    let mut ts_defs = Vec::new();
    let mut produced: Vec<String> = Vec::new();
    let mut cs_defs = Vec::new();
    for def in &spec.features {
        if def.family == Family::CsRank || def.family == Family::CsZscore {
            cs_defs.push(def);
            continue;
        }
        let missing: Vec<PriceField> = def.family.needs().iter().copied().filter(|c| !prices.has(*c)).collect();
        if let Some(first) = missing.first() {
            if def.required {
                return Err(Error::MissingRequired { family: def.family.name().into(), column: first.name() });
            }
            let cols: Vec<&str> = missing.iter().map(|c| c.name()).collect();
            skipped.push(Skipped {
                family: def.family,
                features: def.output_names(),
                reason: format!("the data has no {} column", cols.join("/")),
            });
            continue;
        }
        produced.extend(def.output_names());
        ts_defs.push(def);
    }

    let mut base0 = vec![per_symbol(f("close").shift(lit(1)))?.alias(PREV_CLOSE)];
    if has_volume {
        base0.push((f("volume") + lit(1.0)).log(lit(std::f64::consts::E)).alias(LOG_VOL));
    }
    let mut base1 = vec![
        (f("close") / f(PREV_CLOSE) - lit(1.0)).alias(R1),
        (f("close") / f(PREV_CLOSE)).log(lit(std::f64::consts::E)).alias(LR1),
        // max(d, 0) and max(-d, 0) as (|d| ± d) / 2, null where d is null.
        (((f("close") - f(PREV_CLOSE)).abs() + (f("close") - f(PREV_CLOSE))) * lit(0.5)).alias(GAIN),
        (((f("close") - f(PREV_CLOSE)).abs() - (f("close") - f(PREV_CLOSE))) * lit(0.5)).alias(LOSS),
    ];
    if has_hl {
        // True range = max(high - low, |high - prev close|, |low - prev close|); the first bar has no previous
        // close, so its gaps count as 0 (high - low ≥ 0 wins).
        let a = f("high") - f("low");
        let b = (f("high") - f(PREV_CLOSE)).abs().fill_null(lit(0.0));
        let c = (f("low") - f(PREV_CLOSE)).abs().fill_null(lit(0.0));
        let ab = when(a.clone().gt_eq(b.clone())).then(a).otherwise(b);
        base1.push(when(ab.clone().gt_eq(c.clone())).then(ab).otherwise(c).alias(TR));
    }

    let mut stages: [Vec<Expr>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for def in &ts_defs {
        for (stage, name, e) in family_exprs(def)? {
            stages[stage].push(e.alias(name));
        }
    }
    stages[0].push(label_expr(&spec.label, prices)?.alias(RAW_LABEL));

    let mut lf = prices.df().clone().lazy().with_columns(base0).with_columns(base1);
    for stage in stages {
        if !stage.is_empty() {
            lf = lf.with_columns(stage);
        }
    }
    let label = if spec.label.demean { f(RAW_LABEL) - per_date(f(RAW_LABEL).mean())? } else { f(RAW_LABEL) };
    lf = lf.with_columns([label.alias(LABEL)]);
    let mut cleaned: Vec<Expr> = produced.iter().map(|n| finite(n)).collect();
    cleaned.push(finite(LABEL));
    lf = lf.with_columns(cleaned);

    // Cross-sectional families over the features computed above.
    let mut cs_exprs = Vec::new();
    let mut cs_names = Vec::new();
    for def in cs_defs {
        let (avail, gone): (Vec<&String>, Vec<&String>) = def.of.iter().partition(|n| produced.contains(n));
        let outs = def.output_names();
        if !gone.is_empty() {
            let gone_out: Vec<String> =
                def.of.iter().zip(&outs).filter(|(n, _)| gone.contains(n)).map(|(_, o)| o.clone()).collect();
            if def.required {
                return Err(Error::Config {
                    what: "feature spec",
                    message: format!(
                        "`{}` is required but its source features {} were skipped",
                        def.family.name(),
                        gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            skipped.push(Skipped {
                family: def.family,
                features: gone_out,
                reason: format!(
                    "source feature(s) {} were skipped",
                    gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        for (src, out) in def.of.iter().zip(outs).filter(|(n, _)| avail.contains(n)) {
            let x = f(src);
            let e = if def.family == Family::CsRank {
                let rank =
                    per_date(x.clone().rank(RankOptions { method: RankMethod::Average, descending: false }, None))?;
                (rank.cast(DataType::Float64) - lit(0.5)) / per_date(x.count())?.cast(DataType::Float64)
            } else {
                (x.clone() - per_date(x.clone().mean())?) / per_date(x.std(1))?
            };
            cs_exprs.push(e.alias(out.as_str()));
            cs_names.push(out);
        }
    }
    if !cs_exprs.is_empty() {
        lf = lf.with_columns(cs_exprs).with_columns(cs_names.iter().map(|n| finite(n)).collect::<Vec<_>>());
    }
    // Output: keys, features in spec order, label.
    let features: Vec<String> =
        spec.output_names().into_iter().filter(|n| produced.contains(n) || cs_names.contains(n)).collect();
    let mut select = vec![col(SYMBOL), col(DATE)];
    if prices.df().column("sector").is_ok() {
        select.push(col("sector"));
    }
    select.extend(features.iter().map(|n| col(n.as_str())));
    select.push(col(LABEL));
    let df = lf.select(select).collect()?;
    Ok(FeatureFrame { df, features, skipped, spec_hash: spec.hash(), label: spec.label.clone() })
}
