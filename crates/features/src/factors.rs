//! Factor columns joined point in time: a desk's own data (fundamentals, estimates, sentiment…) enters as files
//! of `symbol, date, <columns…>` rows and is joined to each price row as of the date it became known.
//!
//! A row's availability is its `available_date` column, or `date + lag_days` calendar days (e.g. quarterly book
//! value published 45 days after the quarter). Each price row (symbol, t) takes, per symbol, the row with the
//! latest availability ≤ t (a backward as-of join; among rows available the same day, the latest `date`); a value
//! older than `max_age_days` calendar days at t is missing. So a feature at t never reads a value published after
//! t. Factor features are the `factor*` families of the spec ([`crate::Family::Factor`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fields::{DATE_ALIASES, SYMBOL_ALIASES};

/// One factor file of a job config (`[[data.factors]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorSource {
    /// CSV or Parquet file with `symbol`, `date` and the factor columns (and `available_date` unless `lag_days`).
    pub file: PathBuf,
    /// Calendar days from `date` until a row is known (when the file has no `available_date` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_days: Option<i64>,
    /// A value older than this many calendar days (since its availability) is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<i64>,
    /// The columns to join (default: every column other than symbol, date and available_date).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// A factor file's rows: per symbol, (available, date, values) sorted by availability then date.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorTable {
    /// The file.
    pub source: PathBuf,
    /// Column names, in the order of each row's values.
    pub columns: Vec<String>,
    /// The staleness limit.
    pub max_age_days: Option<i64>,
    rows: BTreeMap<String, Vec<(NaiveDate, NaiveDate, Vec<f64>)>>,
}

impl FactorSource {
    /// Reads and checks the file.
    ///
    /// # Errors
    /// [`Error::Read`] for an unreadable file; [`Error::BadInput`] naming the file and line of a bad date or
    /// number, an `available_date` before its `date`, a duplicated (symbol, date), a missing column, or neither
    /// (or both) of `available_date` and `lag_days`.
    pub fn load(&self) -> Result<FactorTable> {
        let path = &self.file;
        let df = read_strings(path)?;
        let names: Vec<String> = df.get_column_names().iter().map(ToString::to_string).collect();
        let find = |aliases: &[&str]| names.iter().find(|n| aliases.contains(&crate::load::norm(n).as_str())).cloned();
        let symbol = find(SYMBOL_ALIASES).ok_or_else(|| Error::bad_input(path, "no symbol column"))?;
        let date = find(DATE_ALIASES).ok_or_else(|| Error::bad_input(path, "no date column"))?;
        let available = find(&["availabledate", "available", "publishdate", "knowndate"]);
        match (&available, self.lag_days) {
            (None, None) => {
                return Err(Error::bad_input(
                    path,
                    "needs an `available_date` column or `lag_days` in its [[data.factors]] entry: without one the \
                     values would be used on the day they describe, before anyone knew them",
                ));
            }
            (Some(a), Some(_)) => {
                return Err(Error::bad_input(path, format!("has an `{a}` column and `lag_days`: give one")));
            }
            (_, Some(l)) if l < 0 => return Err(Error::bad_input(path, format!("lag_days = {l} is negative"))),
            _ => {}
        }
        let keys = [Some(&symbol), Some(&date), available.as_ref()];
        let columns: Vec<String> = if self.columns.is_empty() {
            names.iter().filter(|n| !keys.contains(&Some(*n))).cloned().collect()
        } else {
            for c in &self.columns {
                if !names.contains(c) {
                    return Err(Error::bad_input(path, format!("no column `{c}`; columns are: {}", names.join(", "))));
                }
            }
            self.columns.clone()
        };
        if columns.is_empty() {
            return Err(Error::bad_input(path, "no factor columns"));
        }
        let text = |c: &str| -> Result<StringChunked> { Ok(df.column(c)?.str()?.clone()) };
        let (sym, day) = (text(&symbol)?, text(&date)?);
        let avail = available.as_deref().map(text).transpose()?;
        let values: Vec<StringChunked> = columns.iter().map(|c| text(c)).collect::<Result<_>>()?;
        let mut rows: BTreeMap<String, Vec<(NaiveDate, NaiveDate, Vec<f64>)>> = BTreeMap::new();
        let mut seen: HashMap<(String, NaiveDate), usize> = HashMap::new();
        for i in 0..df.height() {
            let line = i + 2;
            let bad = |m: String| Error::bad_input(path, format!("line {line}: {m}"));
            let s = sym.get(i).unwrap_or("").trim();
            if s.is_empty() {
                return Err(bad("empty symbol".into()));
            }
            let parse = |v: Option<&str>, what: &str| {
                let v = v.unwrap_or("").trim();
                crate::load::parse_date(v).ok_or_else(|| bad(format!("{what} {v:?} is not YYYY-MM-DD")))
            };
            let d = parse(day.get(i), &date)?;
            let a = match (&avail, self.lag_days) {
                (Some(col), _) => parse(col.get(i), "available_date")?,
                (None, lag) => d + chrono::Duration::days(lag.unwrap_or(0)),
            };
            if a < d {
                return Err(bad(format!("{s}: available_date {a} is before the date {d} it describes")));
            }
            if let Some(first) = seen.insert((s.to_owned(), d), line) {
                return Err(bad(format!("{s} {d} appears twice (first on line {first})")));
            }
            let v = values
                .iter()
                .zip(&columns)
                .map(|(ca, c)| {
                    let t = ca.get(i).unwrap_or("").trim();
                    if t.is_empty() {
                        Ok(f64::NAN)
                    } else {
                        t.parse::<f64>().map_err(|_| bad(format!("column `{c}`: {t:?} is not a number")))
                    }
                })
                .collect::<Result<Vec<f64>>>()?;
            rows.entry(s.to_owned()).or_default().push((a, d, v));
        }
        for v in rows.values_mut() {
            v.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
        }
        Ok(FactorTable { source: path.clone(), columns, max_age_days: self.max_age_days, rows })
    }
}

/// The file as a frame of text columns (CSV as read; Parquet and IPC columns cast).
fn read_strings(path: &Path) -> Result<DataFrame> {
    let (df, _) = crate::load::read_frame(path)?;
    let cols: Vec<Column> = df.columns().iter().map(|c| c.cast(&DataType::String)).collect::<PolarsResult<_>>()?;
    Ok(DataFrame::new_infer_height(cols)?)
}

impl FactorTable {
    /// The values of every column as known at (`symbol`, `t`): the latest row available on or before `t`, or
    /// none when there is no such row or it is older than `max_age_days`.
    pub fn as_of(&self, symbol: &str, t: NaiveDate) -> Option<&[f64]> {
        let rows = self.rows.get(symbol)?;
        let k = rows.partition_point(|r| r.0 <= t);
        let (a, _, v) = rows.get(k.checked_sub(1)?)?;
        if self.max_age_days.is_some_and(|m| (t - *a).num_days() > m) {
            return None;
        }
        Some(v)
    }
}
