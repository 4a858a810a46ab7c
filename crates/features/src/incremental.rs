//! Incremental feature builds for nightly runs: when the prices only gained new days since the cached build
//! (the cached prefix hashes the same), only the rows whose values can change are recomputed: every new day and,
//! for each symbol that gained rows, its last [`LabelSpec::span_rows`] cached rows (their labels read prices that
//! are new now: `h` rows for close labels, `h + 1` for next-open labels, counted in the symbol's own rows, so a
//! symbol that missed the last calendar days is covered too). Every symbol's rows from the earliest such date on
//! are recomputed (a demeaned label depends on every symbol of its date), from a slice that gives each of those
//! symbols [`FeatureSpec::warmup_days`] of its own rows before that date; every other row is reused from the
//! cache. Any other change (edited history, another spec, no cache) recomputes everything and says why.
//!
//! [`LabelSpec::span_rows`]: crate::spec::LabelSpec::span_rows

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::build::{FeatureFrame, build_features};
use crate::checked::Checked;
use crate::error::{Error, Result};
use crate::prices::{PriceFrame, date_to_days, days_to_date};
use crate::spec::FeatureSpec;

/// What the cache recorded about the build it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CacheMeta {
    spec_hash: String,
    last_date: NaiveDate,
    prefix_hash: String,
    rows: usize,
}

/// A feature frame and what was reused to build it.
#[derive(Debug, Clone)]
pub struct CachedBuild {
    /// The features (as [`build_features`] would give, up to the EWM truncation documented above).
    pub frame: FeatureFrame,
    /// Rows taken from the cache.
    pub reused_rows: usize,
    /// Rows computed in this run.
    pub computed_rows: usize,
    /// What happened, in words.
    pub message: String,
}

fn paths(dir: &Path, spec: &FeatureSpec) -> (PathBuf, PathBuf) {
    let h = spec.hash().0;
    let stem = format!("features-{}", &h[..h.len().min(16)]);
    (dir.join(format!("{stem}.parquet")), dir.join(format!("{stem}.json")))
}

fn trading_dates(prices: &PriceFrame) -> Result<Vec<NaiveDate>> {
    let mut d: Vec<i32> = prices.df().column("date")?.date()?.physical().into_no_null_iter().collect();
    d.sort_unstable();
    d.dedup();
    Ok(d.into_iter().filter_map(days_to_date).collect())
}

fn read_cache(dir: &Path, spec: &FeatureSpec) -> Option<(CacheMeta, DataFrame)> {
    let (pq, meta) = paths(dir, spec);
    let meta: CacheMeta = serde_json::from_str(&std::fs::read_to_string(meta).ok()?).ok()?;
    let df = ParquetReader::new(std::fs::File::open(pq).ok()?).finish().ok()?;
    (df.height() == meta.rows && meta.spec_hash == spec.hash().0).then_some((meta, df))
}

fn date_mask(df: &DataFrame, keep: impl Fn(i32) -> bool) -> Result<BooleanChunked> {
    Ok(df.column("date")?.date()?.physical().iter().map(|d| d.is_some_and(&keep)).collect())
}

/// The first date to recompute and the first date of the slice to compute it from, when `prices` extends a
/// cached build that ends on `cached_last` (see the module doc).
fn refresh_window(prices: &PriceFrame, spec: &FeatureSpec, cached_last: NaiveDate) -> Result<(NaiveDate, NaiveDate)> {
    let series = prices.series_with(crate::prices::SeriesColumns::CLOSE)?;
    let span = spec.label.span_rows();
    let mut refresh = NaiveDate::MAX;
    for s in &series {
        let cached = s.dates.partition_point(|d| *d <= cached_last);
        if cached < s.dates.len() {
            refresh = refresh.min(s.dates[cached.saturating_sub(span)]);
        }
    }
    let warmup = spec.warmup_days();
    let start = series
        .iter()
        .filter_map(|s| {
            let first = s.dates.partition_point(|d| *d < refresh);
            (first < s.dates.len()).then(|| s.dates[first.saturating_sub(warmup)])
        })
        .min()
        .unwrap_or(refresh);
    Ok((refresh, start))
}

/// Builds features for `prices`, reusing the cache in `dir` where only new days were appended, and refreshes the
/// cache (atomically).
///
/// # Errors
/// Feature build or I/O errors (an unreadable cache is not an error: everything is recomputed).
pub fn build_features_cached(prices: &PriceFrame, spec: &Checked<FeatureSpec>, dir: &Path) -> Result<CachedBuild> {
    let dates = trading_dates(prices)?;
    let Some(&last) = dates.last() else {
        return Err(Error::config("prices", "no rows"));
    };
    let cached = read_cache(dir, spec);
    let plan = match &cached {
        None => Err("no cached features for this spec".to_owned()),
        Some((m, _)) if m.last_date > last => {
            Err(format!("the cache reaches {} but the data ends {last}", m.last_date))
        }
        Some((m, _)) => {
            let prefix = prices.until(m.last_date)?;
            if prefix.data_hash() == m.prefix_hash {
                Ok(m.last_date)
            } else {
                Err(format!("prices up to {} changed", m.last_date))
            }
        }
    };
    let (frame, reused, computed, message) = match (plan, cached) {
        (Ok(cached_last), Some((_, cached_df))) if cached_last == last => {
            let ff = build_features(&prices.since(last)?, spec)?;
            let n = cached_df.height();
            (ff.with_df(cached_df), n, 0, format!("features: reused all {n} cached rows (no new days since {last})"))
        }
        (Ok(cached_last), Some((_, cached_df))) => {
            let pos = dates.partition_point(|d| *d <= cached_last);
            let (refresh_date, start_date) = refresh_window(prices, spec, cached_last)?;
            let refresh_idx = dates.partition_point(|d| *d < refresh_date);
            let start_idx = dates.partition_point(|d| *d < start_date);
            let refresh = date_to_days(refresh_date);
            let tail = build_features(&prices.since(start_date)?, spec)?;
            let keep_old = cached_df.filter(&date_mask(&cached_df, |d| d < refresh)?)?;
            let new_rows = tail.df().filter(&date_mask(tail.df(), |d| d >= refresh)?)?;
            let (reused, computed) = (keep_old.height(), new_rows.height());
            let mut df = keep_old.vstack(&new_rows)?;
            df.align_chunks_par();
            let df = df.sort(["symbol", "date"], SortMultipleOptions::default())?;
            let msg = format!(
                "features: reused {reused} cached rows up to {}, computed {computed} rows from {} ({} new dates, \
                 warm-up {} dates)",
                dates[refresh_idx.saturating_sub(1)],
                dates[refresh_idx],
                dates.len() - pos,
                refresh_idx - start_idx
            );
            (tail.with_df(df), reused, computed, msg)
        }
        (plan, _) => {
            let why = plan.err().unwrap_or_else(|| "no cached features for this spec".to_owned());
            let ff = build_features(prices, spec)?;
            let n = ff.df().height();
            (ff, 0, n, format!("features: computed all {n} rows ({why})"))
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let (pq, meta_path) = paths(dir, spec);
    let mut df = frame.df().clone();
    crate::io::write_frame(&mut df, &pq)?;
    let meta = CacheMeta {
        spec_hash: spec.hash().0,
        last_date: last,
        prefix_hash: prices.data_hash().to_owned(),
        rows: df.height(),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::config("feature cache", e.to_string()))?;
    crate::io::write_atomic(&meta_path, &json)?;
    Ok(CachedBuild { frame, reused_rows: reused, computed_rows: computed, message })
}
