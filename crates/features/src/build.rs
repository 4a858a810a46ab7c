//! Feature and label computation with Polars lazy window expressions.
//!
//! Every time-series feature is an expression evaluated per symbol on rows sorted by date, using only
//! shifts by positive lags, trailing rolling windows and forward-recursive EWMs: the value at date t is a
//! function of the symbol's rows ≤ t. Rolling statistics and EWMs call Polars' own Series functions on each
//! symbol's rows ([`crate::kernels`]), which is what `over(symbol)` evaluates, without its group lists.
//! Cross-sectional features are evaluated `over(date)`, so they use other symbols' values of the same date
//! only. The label is the only expression that looks forward.

use polars::prelude::*;

use crate::checked::Checked;
use crate::error::{Error, Result};
use crate::io::write_frame;
use crate::kernels::{self, Runs, Shared, Stat};
use crate::load::PriceField;
use crate::prices::{PriceFrame, date_to_days};
use crate::spec::{Family, FeatureDef, FeatureSpec, LabelPrice, LabelSpec, ReturnKind, SpecHash};
use crate::stats;

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
    /// The same features over other rows (same columns), e.g. cached rows joined with fresh ones.
    #[must_use]
    pub(crate) fn with_df(&self, df: DataFrame) -> Self {
        Self { df, ..self.clone() }
    }

    /// The rows dated `date` (every symbol's row of that day), the same columns and values: what scoring one
    /// day reads, without converting every other date's row.
    ///
    /// # Errors
    /// Polars errors only.
    pub fn on(&self, date: chrono::NaiveDate) -> Result<Self> {
        Ok(self.with_df(rows_on(&self.df, date)?))
    }

    /// The frame.
    pub fn df(&self) -> &DataFrame {
        &self.df
    }

    /// Rows (one per symbol and date).
    pub fn height(&self) -> usize {
        self.df.height()
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
        notes(&self.skipped)
    }
}

fn notes(skipped: &[Skipped]) -> Vec<String> {
    skipped
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

/// What [`write_features`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFeatures {
    /// Rows written.
    pub rows: usize,
    /// Feature columns, in order.
    pub features: Vec<String>,
    /// Families skipped for missing columns.
    pub skipped: Vec<Skipped>,
    /// Hash of the spec.
    pub spec_hash: SpecHash,
}

impl WrittenFeatures {
    /// Human-readable notes about skipped families, one per line.
    pub fn notes(&self) -> Vec<String> {
        notes(&self.skipped)
    }

    fn of(frame: &FeatureFrame) -> Self {
        Self {
            rows: frame.height(),
            features: frame.features.clone(),
            skipped: frame.skipped.clone(),
            spec_hash: frame.spec_hash.clone(),
        }
    }
}

/// `def` cut down to the outputs `keep` accepts (`None` when it produces none of them); MACD's three outputs come
/// together.
fn restricted(def: &FeatureDef, keep: impl Fn(&str) -> bool) -> Option<FeatureDef> {
    if def.family == Family::Macd {
        return def.output_names().iter().any(|n| keep(n)).then(|| def.clone());
    }
    let windows: Vec<usize> =
        def.windows.iter().zip(def.output_names()).filter(|(_, n)| keep(n)).map(|(w, _)| *w).collect();
    (!windows.is_empty()).then(|| FeatureDef { windows, ..def.clone() })
}

/// Computes the features of `prices` by `spec` and writes them to `path` (Parquet or CSV by extension, atomically):
/// the same rows and values as [`build_features`] followed by [`FeatureFrame::write`] (row groups may be cut
/// differently), without the whole output frame in memory: the frames of [`for_each_shard`] are appended to a
/// batched Parquet writer. CSV output, a demeaned label or data no larger than one shard take the unsharded path.
///
/// # Errors
/// As [`build_features`], and [`Error::Io`] naming the file.
pub fn write_features(
    prices: &PriceFrame,
    spec: &Checked<FeatureSpec>,
    path: &std::path::Path,
    shard_rows: usize,
) -> Result<WrittenFeatures> {
    if crate::io::FrameFormat::from_path(path) != crate::io::FrameFormat::Parquet {
        let frame = build_checked(prices, spec, None)?;
        frame.write(path)?;
        return Ok(WrittenFeatures::of(&frame));
    }
    let mut summary = None;
    crate::io::write_atomic_with(path, |file| {
        // A second handle on the same open file (shared offset) that the writer thread can own.
        let out = file.try_clone().map_err(|e| Error::io(path, e))?;
        // Computing shard k+1 overlaps with encoding and writing shard k: one shard in flight between them.
        let (tx, rx) = std::sync::mpsc::sync_channel::<DataFrame>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<()> {
                let (mut out, mut writer) = (Some(out), None);
                let level = None;
                let compression = ParquetCompression::Zstd(level);
                for mut df in rx {
                    // Aligned chunks of at most 512² rows, as `ParquetWriter::finish` cuts its row groups.
                    let df = polars::frame::chunk_df_for_writing(&mut df, 512 * 512)?;
                    if let Some(f) = out.take() {
                        writer = Some(ParquetWriter::new(f).with_compression(compression).batched(df.schema())?);
                    }
                    if let Some(w) = writer.as_mut() {
                        for (rows, columns) in
                            crate::encode::encode_row_groups(&df, w.parquet_schema().fields(), level)?
                        {
                            w.write_row_group(rows, &columns)?;
                        }
                    }
                }
                if let Some(w) = writer {
                    w.finish()?;
                }
                Ok(())
            });
            let computed = for_each_shard(prices, spec, shard_rows, |df, _| {
                tx.send(df).map_err(|_| Error::io(path, std::io::Error::other("the Parquet writer stopped")))
            });
            drop(tx);
            // The writer's own error explains a stopped writer better than the failed send does.
            writer.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
            summary = Some(computed?);
            Ok(())
        })
    })?;
    summary.ok_or_else(|| Error::Config { what: "features", message: "no rows to write".into() })
}

/// The output of [`build_features`] in consecutive pieces of about `shard_rows` rows (whole symbols), in row order,
/// each with the columns the whole frame has: time-series features are computed per shard (they read only their
/// own symbol's rows); cross-sectional families, which need every symbol of a date, are computed first over all
/// rows from a spec cut down to their source features, and those sources are taken from that pass rather than
/// computed again per shard. A demeaned label (a per-date mean) or data no larger than one shard come as one
/// piece. `each` gets the piece and its feature columns; returns what the pieces hold.
///
/// # Errors
/// As [`build_features`], and whatever `each` returns.
pub fn for_each_shard(
    prices: &PriceFrame,
    spec: &Checked<FeatureSpec>,
    shard_rows: usize,
    mut each: impl FnMut(DataFrame, &[String]) -> Result<()>,
) -> Result<WrittenFeatures> {
    // Whole-frame work: a demeaned label (a per-date mean) and formulas that compare symbols.
    let cross_formula = spec.features.iter().filter(|d| d.family == Family::Expr).any(|d| {
        d.expr.as_deref().and_then(|e| crate::expr::parse(e, &|_| true).ok()).is_some_and(|a| a.is_cross_sectional())
    });
    if spec.label.demean.is_on() || cross_formula || prices.height() <= shard_rows.max(1) {
        let frame = build_checked(prices, spec, None)?;
        let summary = WrittenFeatures::of(&frame);
        each(frame.df, &summary.features)?;
        return Ok(summary);
    }
    let ts_spec = FeatureSpec {
        features: spec.features.iter().filter(|d| !is_cs_family(d.family)).cloned().collect(),
        ..(**spec).clone()
    };
    let cs_defs: Vec<&FeatureDef> = spec.features.iter().filter(|d| is_cs_family(d.family)).collect();
    let sources: std::collections::BTreeSet<&str> =
        cs_defs.iter().flat_map(|d| d.of.iter().map(String::as_str)).collect();
    let cs = if cs_defs.is_empty() {
        None
    } else {
        let features = ts_spec
            .features
            .iter()
            .filter_map(|d| restricted(d, |n| sources.contains(n)))
            .chain(cs_defs.iter().map(|d| (*d).clone()))
            .collect();
        Some(build_checked(prices, &FeatureSpec { features, ..(**spec).clone() }, None)?)
    };
    let cs_outputs: Vec<String> = cs_defs.iter().flat_map(|d| d.output_names()).collect();
    let cs_names: Vec<String> = cs
        .as_ref()
        .map(|f| f.features.iter().filter(|n| cs_outputs.contains(n)).cloned().collect())
        .unwrap_or_default();
    // The sources the cross-sectional pass computed (over whole symbols, as a shard does) are sliced from its frame
    // rather than computed again per shard; MACD, whose outputs come together, is recomputed whole.
    let computed: std::collections::BTreeSet<&str> = cs
        .as_ref()
        .map(|f| f.features.iter().map(String::as_str).filter(|n| sources.contains(n)).collect())
        .unwrap_or_default();
    let shard_spec = FeatureSpec {
        features: ts_spec.features.iter().filter_map(|d| restricted(d, |n| !computed.contains(n))).collect(),
        ..(**spec).clone()
    };
    let in_shards = shard_spec.output_names();
    let taken: Vec<&str> = computed.iter().copied().filter(|n| !in_shards.iter().any(|s| s == n)).collect();
    let mut summary: Option<WrittenFeatures> = None;
    for (offset, len) in prices.symbol_shards(shard_rows.max(1))? {
        let part = build_checked(&prices.slice_rows(offset, len), &shard_spec, None)?;
        // Every shard has the same columns: what the first one says holds for all.
        let s = summary.get_or_insert_with(|| {
            let features = spec
                .output_names()
                .into_iter()
                .filter(|n| part.features.contains(n) || cs_names.contains(n) || taken.contains(&n.as_str()))
                .collect();
            let mut skipped = part.skipped.clone();
            skipped.extend(cs.iter().flat_map(|f| f.skipped.iter().filter(|s| is_cs_family(s.family)).cloned()));
            WrittenFeatures { rows: 0, features, skipped, spec_hash: spec.hash() }
        });
        let mut df = part.df;
        if let Some(cs) = &cs {
            for name in cs_names.iter().map(String::as_str).chain(taken.iter().copied()) {
                df.with_column(cs.df.column(name)?.slice(offset as i64, len))?;
            }
        }
        let df = output_columns(&df, &s.features)?;
        s.rows += df.height();
        each(df, &s.features)?;
    }
    summary.ok_or_else(|| Error::Config { what: "features", message: "no rows".into() })
}

/// `df`'s output columns in their order: `symbol`, `date`, `sector` when present, `features`, `label`.
fn output_columns(df: &DataFrame, features: &[String]) -> Result<DataFrame> {
    let mut order: Vec<&str> = vec![SYMBOL, DATE];
    if df.column("sector").is_ok() {
        order.push("sector");
    }
    order.extend(features.iter().map(String::as_str));
    order.push(LABEL);
    Ok(df.select(order)?)
}

fn is_cs_family(f: Family) -> bool {
    matches!(f, Family::CsRank | Family::CsZscore)
}

const SYMBOL: &str = "symbol";
const DATE: &str = "date";

/// The rows of `df` dated `date`.
fn rows_on(df: &DataFrame, date: chrono::NaiveDate) -> Result<DataFrame> {
    rows_in(df, &[date_to_days(date)])
}

/// The rows of `df` dated one of `days` (day numbers, ascending).
fn rows_in(df: &DataFrame, days: &[i32]) -> Result<DataFrame> {
    let dates = df.column(DATE)?.date()?.physical();
    let mask = match days {
        [day] => dates.equal(*day),
        _ => dates.iter().map(|d| Some(d.is_some_and(|d| days.binary_search(&d).is_ok()))).collect(),
    };
    Ok(df.filter(&mask)?)
}

/// Row position within its symbol (a helper column, which formula features read).
const ROW: &str = "__row";

pub(crate) fn null_f64() -> Expr {
    lit(NULL).cast(DataType::Float64)
}

/// The row-in-symbol column of a frame sorted by symbol, and its symbols' runs.
fn row_positions(df: &DataFrame) -> Result<(Column, Runs)> {
    let sym = df.column(SYMBOL)?.str()?;
    let n = df.height();
    let mut row = vec![0i64; n];
    let mut starts = Vec::new();
    let mut start = 0;
    let values: Vec<Option<&str>> = sym.iter().collect();
    while start < n {
        starts.push(start);
        let mut end = start + 1;
        while end < n && values[end] == values[start] {
            end += 1;
        }
        for (k, r) in row[start..end].iter_mut().enumerate() {
            *r = k as i64;
        }
        start = end;
    }
    starts.push(n);
    Ok((Column::new(ROW.into(), row), Runs::new(starts)))
}

/// A trailing window of exactly `w` rows (null until the window is full).
pub(crate) fn window(w: usize) -> RollingOptionsFixedWindow {
    RollingOptionsFixedWindow { window_size: w, min_periods: w, ..Default::default() }
}

/// A recursive EWM `y[t] = (1-α) y[t-1] + α x[t]`, seeded with the first value, null for the first
/// `min_periods - 1` observations.
pub(crate) fn ewm(alpha: f64, min_periods: usize) -> EWMOptions {
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
/// `complete`: the close and the volume have no nulls (the price-volume correlation's shared form).
fn family_exprs(def: &FeatureDef, shared: &Shared, complete: bool) -> Vec<(usize, String, Expr)> {
    let runs = shared.runs();
    let close = || f("close");
    let mut out = Vec::new();
    let names = def.output_names();
    match def.family {
        Family::Macd => {
            let [fast, slow, signal] = def.macd_spans();
            let ema = |span: usize| shared.of("close", Stat::Ewm(span_alpha(span), span));
            let line = (ema(fast) - ema(slow)) / close();
            // Runs of some days compute the signal before the line is a column: from the whole line then.
            let of = if runs.keeps_days() {
                let whole = runs.whole();
                let ema = |span: usize| whole.each(close(), Stat::Ewm(span_alpha(span), span));
                (ema(fast) - ema(slow)) / close()
            } else {
                f(&names[0])
            };
            out.push((0, names[0].clone(), line));
            out.push((1, names[1].clone(), runs.each(of, Stat::Ewm(span_alpha(signal), signal))));
            out.push((2, names[2].clone(), f(&names[0]) - f(&names[1])));
        }
        Family::CsRank | Family::CsZscore => unreachable!("cross-sectional families are built separately"),
        Family::Expr => unreachable!("formula features are built after the others"),
        fam if fam.is_factor() => {
            let mut names = names.into_iter();
            for c in &def.of {
                let x = || f(c);
                if fam == Family::Factor {
                    out.push((0, names.next().unwrap_or_default(), x()));
                    continue;
                }
                for &w in &def.windows {
                    let name = names.next().unwrap_or_default();
                    let e = match fam {
                        Family::FactorMean => shared.of(c, Stat::Mean(w)),
                        Family::FactorStd => shared.of(c, Stat::Std(w)),
                        Family::FactorZscore => (x() - shared.of(c, Stat::Mean(w))) / shared.of(c, Stat::Std(w)),
                        _ => x() / runs.lag(x(), w) - lit(1.0),
                    };
                    out.push((0, name, e));
                }
            }
        }
        fam => {
            for (w, name) in def.windows.iter().copied().zip(names) {
                let e = match fam {
                    Family::Returns => close() / runs.lag(close(), w) - lit(1.0),
                    Family::LogReturns => (close() / runs.lag(close(), w)).log(lit(std::f64::consts::E)),
                    Family::MaRatio => close() / shared.of("close", Stat::Mean(w)) - lit(1.0),
                    Family::EmaRatio => close() / shared.of("close", Stat::Ewm(span_alpha(w), w)) - lit(1.0),
                    Family::Volatility => shared.of(LR1, Stat::Std(w)),
                    Family::Rsi => {
                        let g = shared.of(GAIN, Stat::Ewm(1.0 / w as f64, w));
                        let l = shared.of(LOSS, Stat::Ewm(1.0 / w as f64, w));
                        // 100·g/(g+l) written with each smoothed series used once (no common-subexpression
                        // elimination in this Polars build); l = 0 gives 100, g = l = 0 gives NaN → null.
                        lit(100.0) - lit(100.0) / (lit(1.0) + g / l)
                    }
                    Family::Bollinger => {
                        let k = def.bollinger_k();
                        let mean = shared.of("close", Stat::Mean(w));
                        let sd = shared.of("close", Stat::Std(w));
                        // (close - (mean - k·sd)) / (2k·sd) = 1/2 + (close - mean) / (2k·sd)
                        lit(0.5) + (close() - mean) / (lit(2.0 * k) * sd)
                    }
                    Family::Atr => shared.of(TR, Stat::Ewm(1.0 / w as f64, w)) / close(),
                    Family::Stochastic => {
                        // The window low is used twice: computed once as a helper column in stage 0.
                        let (lo, hi) = (format!("__stoch_lo_{w}"), format!("__stoch_hi_{w}"));
                        out.push((0, lo.clone(), runs.extreme(f("low"), w, false)));
                        out.push((0, hi.clone(), runs.extreme(f("high"), w, true)));
                        out.push((1, name, lit(100.0) * (close() - f(&lo)) / (f(&hi) - f(&lo))));
                        continue;
                    }
                    Family::VolumeZ => {
                        let mean = shared.of(LOG_VOL, Stat::Mean(w));
                        let sd = shared.of(LOG_VOL, Stat::Std(w));
                        (f(LOG_VOL) - mean) / sd
                    }
                    Family::PriceVolumeCorr if complete => shared.corr_complete("close", LOG_VOL, w),
                    Family::PriceVolumeCorr => runs.corr(close(), f(LOG_VOL), w),
                    Family::DistMax => close() / runs.extreme(close(), w, true) - lit(1.0),
                    Family::DistMin => close() / runs.extreme(close(), w, false) - lit(1.0),
                    Family::Skew => shared.of(R1, Stat::Skew(w)),
                    Family::Kurtosis => shared.of(R1, Stat::Kurtosis(w)),
                    Family::HlRange => {
                        let x = (f("high") - f("low")) / close();
                        if w == 1 { x } else { runs.each(x, Stat::Mean(w)) }
                    }
                    Family::OpenGap => {
                        let x = f("open") / f(PREV_CLOSE) - lit(1.0);
                        if w == 1 { x } else { runs.each(x, Stat::Mean(w)) }
                    }
                    Family::Macd
                    | Family::CsRank
                    | Family::CsZscore
                    | Family::Factor
                    | Family::FactorMean
                    | Family::FactorStd
                    | Family::FactorZscore
                    | Family::FactorChange
                    | Family::Expr => unreachable!(),
                };
                out.push((0, name, e));
            }
        }
    }
    out
}

fn label_expr(label: &LabelSpec, prices: &PriceFrame, runs: &Runs) -> Expr {
    let ratio = match label.price {
        LabelPrice::Close => runs.lead(f("close"), label.horizon) / f("close"),
        // Close-only data: the close of t+1 stands in for its open, as it does for next-open fills.
        LabelPrice::Open => {
            let p = if prices.has(PriceField::Open) { "open" } else { "close" };
            runs.lead(f(p), label.horizon + 1) / runs.lead(f(p), 1)
        }
    };
    match label.kind {
        ReturnKind::Simple => ratio - lit(1.0),
        ReturnKind::Log => ratio.log(lit(std::f64::consts::E)),
    }
}

/// A family whose input columns the data lacks: an error (`fail`'s message) when it is required, else recorded
/// as skipped with `reason`.
fn skip_or_fail(
    def: &FeatureDef,
    skipped: &mut Vec<Skipped>,
    fail: impl FnOnce() -> String,
    reason: String,
) -> Result<()> {
    if def.required {
        return Err(Error::Config { what: "feature spec", message: fail() });
    }
    skipped.push(Skipped { family: def.family, features: def.output_names(), reason });
    Ok(())
}

/// Replaces NaN and ±inf by null.
fn finite(name: &str) -> Expr {
    kernels::finite(f(name)).alias(name)
}

/// Cross-sectional transforms per date: `(family, source feature, output name)` jobs evaluated on the rows of
/// each date. A direct kernel over date groups: Polars' per-group `rank().over(date)` costs ~0.5 s per feature
/// on 5 M rows, this ~0.05 s. Ranks average ties (like Polars' `RankMethod::Average`); nulls stay null and are
/// not counted in `n`; a z-score needs two or more values and a non-zero sd (ddof 1).
fn cross_sectional(df: &DataFrame, jobs: &[(Family, String, String)]) -> Result<Vec<Column>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let (mut order, bounds) = date_groups(&df.column(DATE)?.date()?.physical().rechunk());
    // With a universe, each date's group holds its members only: the others get no cross-sectional value.
    let member: Option<Vec<bool>> = match df.column(crate::universe::MEMBER) {
        Ok(c) => Some(c.bool()?.iter().map(|m| m.unwrap_or(false)).collect()),
        Err(_) => None,
    };
    let mut kept = Vec::with_capacity(bounds.len());
    kept.push(0);
    if let Some(m) = &member {
        let mut n = 0;
        for w in bounds.windows(2) {
            for k in w[0]..w[1] {
                if m[order[k]] {
                    order[n] = order[k];
                    n += 1;
                }
            }
            kept.push(n);
        }
    }
    let bounds = if member.is_some() { kept } else { bounds };
    let groups: Vec<&[usize]> = bounds.windows(2).map(|w| &order[w[0]..w[1]]).collect();
    let inputs: Vec<Float64Chunked> =
        jobs.iter().map(|(_, src, _)| Ok(df.column(src)?.f64()?.rechunk().into_owned())).collect::<Result<_>>()?;
    let outputs: Vec<Float64Chunked> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .zip(&inputs)
            .map(|((family, _, name), x)| {
                let groups = &groups;
                scope.spawn(move || cs_kernel(*family, name, x, groups))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    Ok(outputs.into_iter().map(IntoColumn::into_column).collect())
}

/// The rows of each date, dates increasing (a null date first), rows in row order within a date: `order` and the
/// group bounds into it (`bounds[g]..bounds[g + 1]`). A counting sort over the distinct dates: two passes over the
/// rows, where sorting 5 M row indices by date took a second.
fn date_groups(dates: &Int32Chunked) -> (Vec<usize>, Vec<usize>) {
    let (Some(lo), Some(hi)) = (dates.min(), dates.max()) else {
        // Every date null (or no rows): one group.
        return ((0..dates.len()).collect(), vec![0, dates.len()]);
    };
    // Slot of each date: 0 for null, 1 + its offset from the first date when the span is small (days of a
    // calendar), else 1 + its rank among the distinct dates.
    let span = (i64::from(hi) - i64::from(lo) + 1) as usize;
    let slot: Vec<usize> = if span <= dates.len().max(1 << 16) {
        dates.iter().map(|d| d.map_or(0, |d| (d - lo) as usize + 1)).collect()
    } else {
        let mut distinct: Vec<i32> = dates.iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        dates.iter().map(|d| d.map_or(0, |d| distinct.partition_point(|&x| x < d) + 1)).collect()
    };
    let slots = slot.iter().max().map_or(1, |m| m + 1);
    let mut start = vec![0usize; slots + 1];
    for &k in &slot {
        start[k + 1] += 1;
    }
    for k in 0..slots {
        start[k + 1] += start[k];
    }
    let mut bounds: Vec<usize> = start.clone();
    bounds.dedup();
    let mut order = vec![0usize; slot.len()];
    for (row, &k) in slot.iter().enumerate() {
        order[start[k]] = row;
        start[k] += 1;
    }
    (order, bounds)
}

/// One cross-sectional output over the date `groups` of `x`'s rows: mid-rank percentiles or z-scores of the
/// non-null values of each date; null where `x` is null or the z-score is undefined.
fn cs_kernel(family: Family, name: &str, x: &Float64Chunked, groups: &[&[usize]]) -> Float64Chunked {
    let Some(arr) = x.downcast_iter().next() else { return Float64Chunked::full_null(name.into(), 0) };
    let mut out = vec![0.0; x.len()];
    let mut valid = vec![false; x.len()];
    let mut idx: Vec<(usize, f64)> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    for group in groups {
        idx.clear();
        idx.extend(group.iter().filter_map(|&i| arr.get(i).map(|v| (i, v))));
        let n = idx.len();
        if family == Family::CsRank {
            stats::mid_rank_percentiles(&mut idx, |i, pct| {
                out[i] = pct;
                valid[i] = true;
            });
        } else if n >= 2 {
            values.clear();
            values.extend(idx.iter().map(|&(_, v)| v));
            let (mean, sd) = (stats::mean(&values), stats::std(&values, 1));
            if sd > 0.0 && sd.is_finite() {
                for &(i, v) in &idx {
                    out[i] = (v - mean) / sd;
                    valid[i] = true;
                }
            }
        }
    }
    let validity: polars_arrow::bitmap::Bitmap = valid.into_iter().collect();
    Float64Chunked::from_vec_validity(name.into(), out, Some(validity))
}

/// Computes features and label for every row of `prices`.
///
/// # Errors
/// [`Error::Config`] for an invalid spec; [`Error::MissingRequired`] when a `required` family (or an
/// open-price label) needs a column the data lacks.
pub fn build_features(prices: &PriceFrame, spec: &Checked<FeatureSpec>) -> Result<FeatureFrame> {
    build_checked(prices, spec, None)
}

/// The rows of `prices` dated `date`, with the features the whole of `prices` gives them: what
/// `build_features(prices, spec)?.on(date)` returns, with the cross-sectional families computed for that date
/// only (a date's ranks and z-scores read that date's rows alone). For scoring one day.
///
/// # Errors
/// As [`build_features`].
pub fn build_features_on(
    prices: &PriceFrame,
    spec: &Checked<FeatureSpec>,
    date: chrono::NaiveDate,
) -> Result<FeatureFrame> {
    build_checked(prices, spec, Some((date, 1)))
}

/// The rows a sequence model reads to score `date`: every symbol with prices on `date` has its last `rows` rows up
/// to it (that one included), and every date among those rows is whole (each of its rows is there, so its
/// cross-sectional ranks are over the same rows as in the full build), each row with the features the whole of
/// `prices` gives it: what `build_features(prices, spec)?` filtered to those dates returns. `rows = 1` is
/// [`build_features_on`].
///
/// # Errors
/// As [`build_features`].
pub fn build_features_before(
    prices: &PriceFrame,
    spec: &Checked<FeatureSpec>,
    date: chrono::NaiveDate,
    rows: usize,
) -> Result<FeatureFrame> {
    build_checked(prices, spec, Some((date, rows.max(1))))
}

/// The label of `spec` for every row of `prices`, without any feature: the frame of a run whose models read
/// prices only (rules, forecasting), which would otherwise compute every feature for nothing. Its spec hash is
/// that of the label-only spec.
///
/// # Errors
/// As [`build_features`].
pub fn build_labels(prices: &PriceFrame, spec: &Checked<FeatureSpec>) -> Result<FeatureFrame> {
    build_checked(prices, &FeatureSpec { features: Vec::new(), ..(**spec).clone() }, None)
}

/// `on`: only the rows of [`build_features_before`]`(date, rows)`.
fn build_checked(
    prices: &PriceFrame,
    spec: &FeatureSpec,
    on: Option<(chrono::NaiveDate, usize)>,
) -> Result<FeatureFrame> {
    let has_volume = prices.has(PriceField::Volume);
    let has_hl = prices.has(PriceField::High) && prices.has(PriceField::Low);

    // Which families can be computed.
    let mut skipped = Vec::new();
    let mut ts_defs = Vec::new();
    let mut produced: Vec<String> = Vec::new();
    let mut cs_defs = Vec::new();
    let mut expr_defs: Vec<(String, crate::expr::Ast)> = Vec::new();
    for def in &spec.features {
        if is_cs_family(def.family) {
            cs_defs.push(def);
            continue;
        }
        if def.family == Family::Expr {
            let ast =
                crate::expr::parse(def.expr.as_deref().unwrap_or_default(), &|n: &str| produced.iter().any(|p| p == n))
                    .map_err(|e| Error::Config {
                        what: "feature spec",
                        message: format!(
                            "expr feature `{}`, column {}: {}",
                            def.name.as_deref().unwrap_or_default(),
                            e.column,
                            e.message
                        ),
                    })?;
            let absent: Vec<String> = ast.columns().into_iter().filter(|c| prices.df().column(c).is_err()).collect();
            if let Some(first) = absent.first() {
                let name = def.name.as_deref().unwrap_or_default();
                let fail = || format!("expr feature `{name}` is required but the data has no column `{first}`");
                skip_or_fail(def, &mut skipped, fail, format!("the data has no column(s) {}", absent.join(", ")))?;
                continue;
            }
            produced.extend(def.output_names());
            expr_defs.push((def.output_names().remove(0), ast));
            continue;
        }
        if def.family.is_factor() {
            let absent: Vec<&str> =
                def.of.iter().map(String::as_str).filter(|c| prices.df().column(c).is_err()).collect();
            if let Some(first) = absent.first() {
                let fail =
                    || format!("`{}` is required but the data has no factor column `{first}`", def.family.name());
                let reason = format!("the data has no factor column(s) {} ([[data.factors]])", absent.join(", "));
                skip_or_fail(def, &mut skipped, fail, reason)?;
                continue;
            }
            produced.extend(def.output_names());
            ts_defs.push(def);
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

    // Rows are sorted by symbol (a PriceFrame invariant). Flagging the column lets Polars form contiguous
    // slice groups for `over(symbol)` and put results back without a scatter: several times faster.
    let mut df = prices.df().clone();
    let mut sym = df.column(SYMBOL)?.clone();
    sym.set_sorted_flag(polars::series::IsSorted::Ascending);
    df.with_column(sym)?;
    let (row, runs) = row_positions(&df)?;
    df.with_column(row)?;

    let mut base0 = vec![runs.lag(f("close"), 1).alias(PREV_CLOSE)];
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

    // A one-day build (no formula features, which may read any row) computes each per-symbol result from every
    // row and keeps its value at the day's rows; everything element-wise after those is computed on the day's
    // rows only: the same values, element by element, for a fraction of the work (see `Runs::on_days`).
    let dates = df.column(DATE)?.date()?.physical().clone();
    let days = on.map(|(date, rows)| runs.dates_before(&dates, date_to_days(date), rows));
    let runs = match days.as_deref().filter(|_| expr_defs.is_empty()) {
        Some(days) => runs.on_days(&dates, days),
        None => runs,
    };
    let shared = Shared::new(&runs);
    let complete = [PriceField::Close, PriceField::Volume]
        .iter()
        .all(|c| prices.df().column(c.name()).is_ok_and(|c| c.null_count() == 0));
    let mut stages: [Vec<Expr>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for def in &ts_defs {
        for (stage, name, e) in family_exprs(def, &shared, complete) {
            stages[stage].push(e.alias(name));
        }
    }
    stages[0].push(label_expr(&spec.label, prices, &runs).alias(RAW_LABEL));
    let mut helpers = shared.into_helpers();
    let mut lf = df.lazy().with_columns(base0).with_columns(base1);
    if let Some(days) = days.as_deref().filter(|_| runs.keeps_days()) {
        // Every helper has one value per row of the day: computed from the whole frame, set on the day's rows.
        helpers.extend(runs.take_helpers());
        let full = lf.collect()?;
        let mut day = rows_in(&full, days)?;
        if !helpers.is_empty() {
            let columns = full.lazy().select(helpers).collect()?;
            if columns.height() != day.height() || runs.out_rows() != day.height() {
                return Err(Error::Config {
                    what: "features",
                    message: format!(
                        "a one-day build got {} helper rows for the {} rows of its {} dates",
                        columns.height(),
                        day.height(),
                        days.len()
                    ),
                });
            }
            for c in columns.columns() {
                day.with_column(c.clone())?;
            }
        }
        lf = day.lazy();
    } else if !helpers.is_empty() {
        lf = lf.with_columns(helpers);
    }
    for stage in stages {
        if !stage.is_empty() {
            lf = lf.with_columns(stage);
        }
    }
    // Formula features in spec order, each after the features it may read.
    let compiler = crate::expr::Compiler {
        lag: &|e, k| runs.lag(e, k),
        per_symbol: &|e| e.over([col(SYMBOL)]),
        row: f(ROW),
        date: DATE,
    };
    for (name, ast) in &expr_defs {
        lf = lf.with_columns([compiler.compile(ast)?.alias(name.as_str())]);
    }
    let member = prices.df().column(crate::universe::MEMBER).is_ok();
    let mut by = vec![col(DATE)];
    if spec.label.demean == crate::spec::Demean::Sector {
        if prices.df().column("sector").is_err() {
            return Err(Error::Config {
                what: "feature spec",
                message: "label.demean = \"sector\" needs sectors: give a securities file (symbol,name,sector)".into(),
            });
        }
        by.push(col("sector"));
    }
    let label = match (spec.label.demean.is_on(), member) {
        // Demeaned over the date's (and sector's) universe members.
        (true, true) => f(RAW_LABEL) - f(RAW_LABEL).filter(col(crate::universe::MEMBER)).mean().over(by)?,
        (true, false) => f(RAW_LABEL) - f(RAW_LABEL).mean().over(by)?,
        (false, _) => f(RAW_LABEL),
    };
    lf = lf.with_columns([label.alias(LABEL)]);
    let mut cleaned: Vec<Expr> = produced.iter().map(|n| finite(n)).collect();
    cleaned.push(finite(LABEL));
    lf = lf.with_columns(cleaned);

    // Cross-sectional families over the features computed above.
    let mut cs_jobs = Vec::new();
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
            cs_jobs.push((def.family, src.clone(), out.clone()));
            cs_names.push(out);
        }
    }
    // Output: keys, features in spec order, label.
    let features: Vec<String> =
        spec.output_names().into_iter().filter(|n| produced.contains(n) || cs_names.contains(n)).collect();
    let mut select = vec![col(SYMBOL), col(DATE)];
    if prices.df().column("sector").is_ok() {
        select.push(col("sector"));
    }
    select.extend(produced.iter().map(|n| col(n.as_str())));
    select.push(col(LABEL));
    if member {
        select.push(col(crate::universe::MEMBER));
    }
    let mut df = lf.select(select).collect()?;
    if let Some(days) = days.as_deref().filter(|_| !runs.keeps_days()) {
        df = rows_in(&df, days)?;
    }
    for c in cross_sectional(&df, &cs_jobs)? {
        df.with_column(c)?;
    }
    let df = output_columns(&df, &features)?;
    Ok(FeatureFrame { df, features, skipped, spec_hash: spec.hash(), label: spec.label.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The counting sort groups rows as a stable sort by date does (a null date first), over a calendar's
        /// span of days and over spans far wider than the rows (the distinct-dates path).
        #[test]
        fn date_groups_are_a_stable_sort_by_date(
            days in prop::collection::vec(prop::option::weighted(0.9, 0i32..40), 1..300),
            wide in any::<bool>(),
        ) {
            let days: Vec<Option<i32>> =
                days.into_iter().map(|d| d.map(|d| if wide { d * 10_000_000 - 200_000_000 } else { d })).collect();
            let (order, bounds) = date_groups(&Int32Chunked::new("date".into(), &days));
            let mut expected: Vec<usize> = (0..days.len()).collect();
            expected.sort_by_key(|&i| days[i]);
            prop_assert_eq!(&order, &expected);
            // One group per distinct date, each group one date.
            let mut distinct = days.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(bounds.len(), distinct.len() + 1);
            for w in bounds.windows(2) {
                prop_assert!(w[0] < w[1]);
                prop_assert!(order[w[0]..w[1]].iter().all(|&i| days[i] == days[order[w[0]]]));
            }
        }
    }
}
