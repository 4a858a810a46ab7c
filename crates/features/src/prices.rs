//! The validated, adjusted price panel ([`PriceFrame`]) and the pipeline that produces it:
//! read → row checks → sort → adjust → series checks.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::load::{Bars, PriceField, ReadOptions, Security, read_bars, read_securities};
use crate::quality::{QualityConfig, QualityReport, QualityRun};

/// Days from 0001-01-01 (CE) to 1970-01-01, for Polars' `Date` (days since the Unix epoch).
const UNIX_EPOCH_DAYS_CE: i32 = 719_163;

/// Converts a date to Polars' physical `Date` value.
pub fn date_to_days(d: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_CE
}

/// Converts Polars' physical `Date` value to a date.
pub fn days_to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_CE)
}

/// True when a `--prices` value is a Postgres URL (`postgres://…` or `postgresql://…`) rather than a file: the
/// `prices` table is read instead.
pub fn is_database_url(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// How to load prices.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// File-level options (symbol for single-symbol files).
    pub read: ReadOptions,
    /// Quality policies, checked.
    pub quality: crate::Checked<QualityConfig>,
    /// Optional securities file (`symbol,name,sector`).
    pub securities: Option<PathBuf>,
}

/// Validated daily prices: one row per (symbol, date), sorted by symbol then date, OHLC adjusted for splits and
/// dividends when the input had `adj_close`.
///
/// Columns: `symbol` (str), `date` (date), `close` (f64), and when present in the input `open`, `high`, `low`,
/// `volume` (f64), `raw_close` (the unadjusted close, when adjusted), `sector` (str, from a securities file).
#[derive(Debug, Clone)]
pub struct PriceFrame {
    df: DataFrame,
    fields: Vec<PriceField>,
    adjusted: bool,
    data_hash: DataHash,
    securities: Vec<Security>,
}

/// The content hash of a frame, computed the first time it is asked for (a feature build never asks: hashing
/// 5 M rows is a quarter of a second on the loading thread). Clones and row slices share it: a slice's hash is
/// that of the frame it was cut from.
#[derive(Debug, Clone)]
struct DataHash(std::sync::Arc<(DataFrame, std::sync::OnceLock<String>)>);

impl DataHash {
    fn of(df: &DataFrame) -> Self {
        Self(std::sync::Arc::new((df.clone(), std::sync::OnceLock::new())))
    }

    fn get(&self) -> &str {
        let (df, hash) = &*self.0;
        hash.get_or_init(|| hash_frame(df))
    }
}

/// One symbol's validated bars as typed columns ([`PriceFrame::series`]); optional columns are `None` when the
/// input did not have them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SymbolSeries {
    /// The symbol.
    pub symbol: String,
    /// Trading dates, strictly increasing.
    pub dates: Vec<NaiveDate>,
    /// Adjusted opens.
    pub open: Option<Vec<f64>>,
    /// Adjusted highs.
    pub high: Option<Vec<f64>>,
    /// Adjusted lows.
    pub low: Option<Vec<f64>>,
    /// Adjusted closes.
    pub close: Vec<f64>,
    /// Volume (divided by the adjustment factor).
    pub volume: Option<Vec<f64>>,
    /// The unadjusted close, when the prices were adjusted.
    pub raw_close: Option<Vec<f64>>,
    /// Sector from the securities file, if known.
    pub sector: Option<String>,
}

/// Which optional columns [`PriceFrame::series_with`] copies (symbol, dates and close always).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(clippy::struct_excessive_bools)]
pub struct SeriesColumns {
    /// Opens.
    pub open: bool,
    /// Highs.
    pub high: bool,
    /// Lows.
    pub low: bool,
    /// Volumes.
    pub volume: bool,
    /// Unadjusted closes.
    pub raw_close: bool,
    /// Sectors.
    pub sector: bool,
}

impl SeriesColumns {
    /// Every column.
    pub const ALL: Self = Self { open: true, high: true, low: true, volume: true, raw_close: true, sector: true };
    /// Closes only.
    pub const CLOSE: Self =
        Self { open: false, high: false, low: false, volume: false, raw_close: false, sector: false };
}

impl SymbolSeries {
    /// Number of bars.
    pub fn len(&self) -> usize {
        self.dates.len()
    }

    /// True when the symbol has no bars.
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty()
    }
}

/// The result of loading: prices plus the quality report.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The prices.
    pub prices: PriceFrame,
    /// What the quality stage found and did.
    pub report: QualityReport,
}

/// Loads, checks and adjusts a price file.
///
/// # Errors
/// Bad files ([`Error::BadInput`]) and failed checks ([`Error::Quality`], which carries
/// the report so far) are user errors.
pub fn load_prices(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let bars = read_bars(path, &opts.read)?;
    let securities = match &opts.securities {
        Some(p) => read_securities(p)?,
        None => Vec::new(),
    };
    check_bars(bars, &opts.quality, securities, false)
}

/// Runs the quality checks on rows read from anywhere (a file, a database) and builds the frame.
///
/// With `stored = false` the rows are as a file gives them: an `adj_close` field adjusts OHLCV. With
/// `stored = true` they were adjusted before they were stored: OHLCV are used as they are and the
/// [`PriceField::AdjClose`] slot, when present, holds the stored unadjusted close (kept as `raw_close`).
///
/// # Errors
/// As [`load_prices`]; the source named in messages is `bars.source`.
pub fn check_bars(
    mut bars: Bars,
    quality: &crate::Checked<QualityConfig>,
    securities: Vec<Security>,
    stored: bool,
) -> Result<Loaded> {
    let path = bars.source.clone();
    let mut run = QualityRun::new(quality, &bars);
    let with_report = |e: Error, run: &QualityRun<'_>| match e {
        Error::Quality { check, count, first, hint, .. } => {
            Error::Quality { check, count, first, hint, report: Some(Box::new(run.report.clone())) }
        }
        other => other,
    };
    run.row_checks(&mut bars).map_err(|e| with_report(e, &run))?;
    let adjusted = if stored { bars.field(PriceField::AdjClose).is_some() } else { adjust(&mut bars) };
    run.declared_splits(&mut bars);
    run.series_checks(&mut bars).map_err(|e| with_report(e, &run))?;
    let raw_close = match (adjusted, stored) {
        (false, _) => None,
        (true, false) => Some(raw_close_of(&bars)),
        (true, true) => bars.field(PriceField::AdjClose).map(<[f64]>::to_vec),
    };
    // Stored rows were adjusted before they were stored: the report says whether this load adjusted anything.
    let report = run.finish(&bars, adjusted && !stored);
    if bars.is_empty() {
        return Err(Error::bad_input(&path, "no rows left after the quality checks"));
    }
    let prices = PriceFrame::from_bars(&bars, raw_close, adjusted, securities)?;
    Ok(Loaded { prices, report })
}

/// Applies the factor `adj_close / close` to open, high, low and close (volume is divided by it) and keeps the
/// factor in the `AdjClose` slot; returns whether anything was adjusted. When there is no raw close at all,
/// `adj_close` simply becomes the close.
fn adjust(bars: &mut Bars) -> bool {
    let Some(adj_pos) = bars.fields.iter().position(|(f, _)| *f == PriceField::AdjClose) else {
        return false;
    };
    let (_, adj) = bars.fields.remove(adj_pos);
    let Some(close) = bars.field(PriceField::Close).map(<[f64]>::to_vec) else {
        bars.fields.push((PriceField::Close, adj));
        bars.fields.sort_by_key(|(f, _)| *f);
        return false;
    };
    let factor: Vec<f64> = adj.iter().zip(&close).map(|(a, c)| a / c).collect();
    for (f, values) in &mut bars.fields {
        match f {
            PriceField::Open | PriceField::High | PriceField::Low | PriceField::Close => {
                values.iter_mut().zip(&factor).for_each(|(v, k)| *v *= k);
            }
            PriceField::Volume => values.iter_mut().zip(&factor).for_each(|(v, k)| *v /= k),
            PriceField::AdjClose => {}
        }
    }
    bars.fields.push((PriceField::AdjClose, factor));
    true
}

/// Raw close = adjusted close / factor (the factor is kept in the `AdjClose` slot after [`adjust`]).
fn raw_close_of(bars: &Bars) -> Vec<f64> {
    let close = bars.field(PriceField::Close).expect("close present");
    let factor = bars.field(PriceField::AdjClose).expect("factor present after adjust");
    close.iter().zip(factor).map(|(c, k)| c / k).collect()
}

impl PriceFrame {
    fn from_bars(bars: &Bars, raw_close: Option<Vec<f64>>, adjusted: bool, securities: Vec<Security>) -> Result<Self> {
        let symbols: Vec<&str> = bars.symbol.iter().map(|&s| bars.symbol_names[s as usize].as_str()).collect();
        let days: Vec<i32> =
            bars.date.iter().map(|d| date_to_days(d.expect("rows without a date were removed"))).collect();
        let mut cols: Vec<Column> =
            vec![Column::new("symbol".into(), symbols), Column::new("date".into(), days).cast(&DataType::Date)?];
        let mut fields = Vec::new();
        for f in [PriceField::Open, PriceField::High, PriceField::Low, PriceField::Close, PriceField::Volume] {
            if let Some(v) = bars.field(f) {
                cols.push(Column::new(f.name().into(), v));
                fields.push(f);
            }
        }
        if let Some(raw) = raw_close {
            cols.push(Column::new("raw_close".into(), raw));
        }
        if securities.iter().any(|s| s.sector.is_some()) {
            let of: std::collections::HashMap<&str, &str> =
                securities.iter().filter_map(|x| Some((x.symbol.as_str(), x.sector.as_deref()?))).collect();
            let by_index: Vec<Option<&str>> = bars.symbol_names.iter().map(|n| of.get(n.as_str()).copied()).collect();
            let sector: Vec<Option<&str>> = bars.symbol.iter().map(|&s| by_index[s as usize]).collect();
            cols.push(Column::new("sector".into(), sector));
        }
        let df = DataFrame::new_infer_height(cols)?;
        let data_hash = DataHash::of(&df);
        Ok(Self { df, fields, adjusted, data_hash, securities })
    }

    /// Builds a frame from an existing, already validated and sorted `DataFrame` (e.g. read back from storage).
    ///
    /// # Errors
    /// [`Error::BadInput`] when required columns are missing or rows are not sorted and unique by (symbol, date).
    pub fn from_df(df: DataFrame) -> Result<Self> {
        for c in ["symbol", "date", "close"] {
            if df.column(c).is_err() {
                return Err(Error::bad_input("<frame>", format!("missing column `{c}`")));
            }
        }
        let fields = [PriceField::Open, PriceField::High, PriceField::Low, PriceField::Close, PriceField::Volume]
            .into_iter()
            .filter(|f| df.column(f.name()).is_ok())
            .collect();
        let adjusted = df.column("raw_close").is_ok();
        check_sorted_unique(&df)?;
        let data_hash = DataHash::of(&df);
        Ok(Self { df, fields, adjusted, data_hash, securities: Vec::new() })
    }

    /// Rows `offset..offset + len` (the caller keeps whole symbols together), for a sharded feature build; the data
    /// hash stays the whole frame's.
    /// A frame of no rows and no columns that holds no data: what a caller that moved the real frame out (to
    /// free it as soon as it is no longer needed) leaves in its place.
    pub fn empty() -> Self {
        let df = DataFrame::empty();
        let data_hash = DataHash::of(&df);
        Self { df, fields: Vec::new(), adjusted: false, data_hash, securities: Vec::new() }
    }

    pub(crate) fn slice_rows(&self, offset: usize, len: usize) -> Self {
        Self { df: self.df.slice(offset as i64, len), ..self.clone() }
    }

    /// Row ranges `(offset, len)` of about `rows` rows each that never split a symbol (rows are sorted by symbol).
    ///
    /// # Errors
    /// Polars errors only.
    pub(crate) fn symbol_shards(&self, rows: usize) -> Result<Vec<(usize, usize)>> {
        let sym = self.df.column("symbol")?.str()?;
        let mut out = Vec::new();
        let (mut start, mut prev): (usize, Option<&str>) = (0, None);
        for (i, s) in sym.iter().enumerate() {
            if prev.is_some() && s != prev && i - start >= rows {
                out.push((start, i - start));
                start = i;
            }
            prev = s;
        }
        if self.df.height() > start {
            out.push((start, self.df.height() - start));
        }
        Ok(out)
    }

    /// The underlying frame.
    pub fn df(&self) -> &DataFrame {
        &self.df
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.df.height()
    }

    /// True when the input provided this field.
    pub fn has(&self, f: PriceField) -> bool {
        self.fields.contains(&f)
    }

    /// Fields present.
    pub fn fields(&self) -> &[PriceField] {
        &self.fields
    }

    /// True when OHLC were adjusted by `adj_close`.
    pub fn adjusted(&self) -> bool {
        self.adjusted
    }

    /// Securities (from `--securities`), possibly empty.
    pub fn securities(&self) -> &[Security] {
        &self.securities
    }

    /// Stable content hash of the prices (sha256, hex, first 16 bytes).
    pub fn data_hash(&self) -> &str {
        self.data_hash.get()
    }

    /// Distinct symbols in order.
    pub fn symbols(&self) -> Result<Vec<String>> {
        let s = self.df.column("symbol")?.str()?.clone();
        let mut out: Vec<String> = Vec::new();
        for v in s.iter().flatten() {
            if out.last().is_none_or(|l| l != v) {
                out.push(v.to_owned());
            }
        }
        Ok(out)
    }

    /// First and last date.
    pub fn date_range(&self) -> Result<Option<(NaiveDate, NaiveDate)>> {
        let d = self.df.column("date")?.date()?.physical().clone();
        Ok(d.min().zip(d.max()).and_then(|(a, b)| days_to_date(a).zip(days_to_date(b))))
    }

    /// The rows dated on or before `as_of`: what was known at the close of `as_of`.
    pub fn until(&self, as_of: NaiveDate) -> Result<Self> {
        let days = date_to_days(as_of);
        let mask = self.df.column("date")?.date()?.physical().lt_eq(days);
        let df = self.df.filter(&mask)?;
        let data_hash = DataHash::of(&df);
        Ok(Self { df, data_hash, ..self.clone() })
    }

    /// Rows dated on or after `from` (e.g. the warm-up window of an incremental feature build).
    ///
    /// # Errors
    /// Polars errors only.
    pub fn since(&self, from: NaiveDate) -> Result<Self> {
        let days = date_to_days(from);
        let mask = self.df.column("date")?.date()?.physical().gt_eq(days);
        let df = self.df.filter(&mask)?;
        let data_hash = DataHash::of(&df);
        Ok(Self { df, data_hash, ..self.clone() })
    }

    /// The trading calendar: every distinct date with a price, increasing.
    ///
    /// # Errors
    /// Polars errors only.
    pub fn calendar(&self) -> Result<Vec<NaiveDate>> {
        let days: Vec<i32> = self.df.column("date")?.date()?.physical().into_no_null_iter().collect();
        Ok(distinct_sorted(days).into_iter().filter_map(days_to_date).collect())
    }

    /// The date of every row, in row order (sorted by symbol, then date).
    ///
    /// # Errors
    /// Polars errors only.
    pub fn row_dates(&self) -> Result<Vec<NaiveDate>> {
        Ok(self.df.column("date")?.date()?.physical().into_no_null_iter().filter_map(days_to_date).collect())
    }

    /// Each symbol's bars as typed columns, in symbol order: the way every crate outside `features` reads prices.
    ///
    /// # Errors
    /// Polars errors only (the frame's columns are checked when it is built).
    pub fn series(&self) -> Result<Vec<SymbolSeries>> {
        self.series_with(SeriesColumns::ALL)
    }

    /// As [`PriceFrame::series`], copying only the optional `columns` asked for (symbol, dates and close always);
    /// the others are `None`. Each value is copied once, straight from the frame.
    ///
    /// # Errors
    /// Polars errors only.
    pub fn series_with(&self, columns: SeriesColumns) -> Result<Vec<SymbolSeries>> {
        let df = &self.df;
        let sym = df.column("symbol")?.str()?;
        let date = df.column("date")?.date()?.physical();
        let close = df.column("close")?.f64()?;
        let optional = |name: &str, wanted: bool| -> Result<Option<&Float64Chunked>> {
            match df.column(name) {
                Ok(c) if wanted => Ok(Some(c.f64()?)),
                _ => Ok(None),
            }
        };
        let open = optional("open", columns.open)?;
        let high = optional("high", columns.high)?;
        let low = optional("low", columns.low)?;
        let volume = optional("volume", columns.volume)?;
        let raw_close = optional("raw_close", columns.raw_close)?;
        let sector = match df.column("sector") {
            Ok(c) if columns.sector => Some(c.str()?),
            _ => None,
        };
        let values = |c: &Float64Chunked, start: usize, len: usize| -> Vec<f64> {
            c.slice(start as i64, len).iter().map(|v| v.unwrap_or(f64::NAN)).collect()
        };
        let mut out: Vec<SymbolSeries> = Vec::new();
        let names: Vec<Option<&str>> = sym.iter().collect();
        let mut start = 0;
        while start < names.len() {
            let name = names[start].unwrap_or_default();
            let len = names[start..].iter().take_while(|s| s.unwrap_or_default() == name).count();
            let part = |c: Option<&Float64Chunked>| c.map(|c| values(c, start, len));
            out.push(SymbolSeries {
                symbol: name.to_owned(),
                dates: date.slice(start as i64, len).iter().filter_map(|d| d.and_then(days_to_date)).collect(),
                open: part(open),
                high: part(high),
                low: part(low),
                close: values(close, start, len),
                volume: part(volume),
                raw_close: part(raw_close),
                sector: sector.and_then(|s| s.get(start)).map(str::to_owned),
            });
            start += len;
        }
        Ok(out)
    }

    /// The frame with the columns of `tables` joined point in time ([`crate::factors`]): each row gets, per
    /// symbol, the values of the latest factor row available on or before its date (null when none is, or it is
    /// stale). The data hash covers them.
    ///
    /// # Errors
    /// [`Error::BadInput`] when a factor column's name is already a column of the prices (or of another table).
    pub fn with_factors(&self, tables: &[crate::factors::FactorTable]) -> Result<Self> {
        if tables.is_empty() {
            return Ok(self.clone());
        }
        let symbols = self.df.column("symbol")?.str()?.clone();
        let dates: Vec<Option<NaiveDate>> =
            self.df.column("date")?.date()?.physical().iter().map(|d| d.and_then(days_to_date)).collect();
        let mut df = self.df.clone();
        for table in tables {
            for (k, name) in table.columns.iter().enumerate() {
                if df.column(name).is_ok() {
                    return Err(Error::bad_input(
                        &table.source,
                        format!("factor column `{name}` is already a column of the prices or another factor file"),
                    ));
                }
                let values: Float64Chunked = symbols
                    .iter()
                    .zip(&dates)
                    .map(|(s, d)| {
                        let v = table.as_of(s?, (*d)?)?[k];
                        v.is_finite().then_some(v)
                    })
                    .collect();
                df.with_column(values.with_name(name.as_str().into()).into_column())?;
            }
        }
        Ok(Self { data_hash: DataHash::of(&df), df, ..self.clone() })
    }

    /// Rows marked as universe members (every row without a universe).
    pub fn member_rows(&self) -> usize {
        self.df
            .column(crate::universe::MEMBER)
            .ok()
            .and_then(|c| c.bool().ok().map(|b| b.sum().unwrap_or(0) as usize))
            .unwrap_or(self.df.height())
    }

    /// The frame with each row's membership of `universe` in the boolean [`crate::universe::MEMBER`] column
    /// (cross-sectional features and a demeaned label then use the members of each date only); the data hash
    /// covers it.
    ///
    /// # Errors
    /// Only if the frame's columns are not as the loader builds them.
    pub fn with_universe(&self, universe: &crate::universe::Universe) -> Result<Self> {
        let symbols = self.df.column("symbol")?.str()?.clone();
        let dates = self.df.column("date")?.date()?.physical().clone();
        let member: BooleanChunked = symbols
            .iter()
            .zip(dates.iter())
            .map(|(s, d)| {
                Some(match (s, d.and_then(days_to_date)) {
                    (Some(s), Some(d)) => universe.contains(s, d),
                    _ => false,
                })
            })
            .collect();
        let mut df = self.df.clone();
        df.with_column(member.with_name(crate::universe::MEMBER.into()).into_column())?;
        Ok(Self { data_hash: DataHash::of(&df), df, ..self.clone() })
    }

    /// The frame with each row's sector (and industry, when the file has one) on the row's date from a point-in-time
    /// classification ([`crate::groups`]), in the `sector` (`industry`) column, replacing a securities file's
    /// static sector; rows no span covers have none. The data hash covers them.
    ///
    /// # Errors
    /// Only if the frame's columns are not as the loader builds them.
    pub fn with_classification(&self, classes: &crate::groups::Classification) -> Result<Self> {
        let symbols = self.df.column("symbol")?.str()?.clone();
        let dates = self.df.column("date")?.date()?.physical().clone();
        let at: Vec<Option<(&str, Option<&str>)>> =
            symbols.iter().zip(dates.iter()).map(|(s, d)| classes.at(s?, d.and_then(days_to_date)?)).collect();
        let sector: StringChunked = at.iter().map(|x| x.map(|x| x.0)).collect();
        let mut df = self.df.clone();
        df.with_column(sector.with_name("sector".into()).into_column())?;
        if classes.has_industry {
            let industry: StringChunked = at.iter().map(|x| x.and_then(|x| x.1)).collect();
            df.with_column(industry.with_name("industry".into()).into_column())?;
        }
        Ok(Self { data_hash: DataHash::of(&df), df, ..self.clone() })
    }

    /// Only the rows of `symbols` (all rows when empty).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first symbol that is not in the prices.
    pub fn filter_symbols(&self, symbols: &[String]) -> Result<Self> {
        if symbols.is_empty() {
            return Ok(self.clone());
        }
        let have = self.symbols()?;
        if let Some(missing) = symbols.iter().find(|s| !have.contains(s)) {
            return Err(Error::config(
                "symbol filter",
                format!("{missing} is not in the prices ({})", have.join(", ")),
            ));
        }
        let mask: BooleanChunked = self
            .df
            .column("symbol")?
            .str()?
            .iter()
            .map(|s| s.is_some_and(|s| symbols.iter().any(|x| x == s)))
            .collect();
        let df = self.df.filter(&mask)?;
        let data_hash = DataHash::of(&df);
        Ok(Self { df, data_hash, ..self.clone() })
    }

    /// The input's layout is wide (close only) or otherwise lacks OHLC: convenience for messages.
    pub fn is_close_only(&self) -> bool {
        !self.has(PriceField::High) && !self.has(PriceField::Low)
    }
}

/// Checks the frame invariant: rows sorted by symbol, then strictly increasing dates within a symbol.
fn check_sorted_unique(df: &DataFrame) -> Result<()> {
    let sym = df.column("symbol")?.str()?;
    let date = df.column("date")?.date()?.physical();
    let mut prev: Option<(&str, i32)> = None;
    for (row, (s, d)) in sym.iter().zip(date.iter()).enumerate() {
        let (Some(s), Some(d)) = (s, d) else {
            return Err(Error::bad_input("<frame>", format!("row {row}: missing symbol or date")));
        };
        if let Some((ps, pd)) = prev
            && (s < ps || (s == ps && d <= pd))
        {
            return Err(Error::bad_input(
                "<frame>",
                format!("row {row}: rows must be sorted by symbol, then strictly by date ({s} after {ps})"),
            ));
        }
        prev = Some((s, d));
    }
    Ok(())
}

/// Hash of symbol, date and every numeric column, in row order.
fn hash_frame(df: &DataFrame) -> String {
    let mut h = Sha256::new();
    for col in df.columns() {
        h.update(col.name().as_bytes());
        h.update([0]);
        if let Ok(s) = col.str() {
            for v in s.iter() {
                h.update(v.unwrap_or("\u{0}").as_bytes());
                h.update([0]);
            }
        } else if let Ok(d) = col.date() {
            for v in d.physical().iter() {
                h.update(v.unwrap_or(i32::MIN).to_le_bytes());
            }
        } else if let Ok(x) = col.f64() {
            for v in x.iter() {
                h.update(v.unwrap_or(f64::NAN).to_bits().to_le_bytes());
            }
        } else if let Ok(b) = col.bool() {
            for v in b.iter() {
                h.update([v.map_or(2, u8::from)]);
            }
        }
    }
    crate::spec::hex_prefix(&h.finalize())
}

/// The distinct values of `v`, increasing: marked in a table over their range when it is no more than a few
/// times their number (day numbers of a calendar: linear, where sorting the 25 M rows of a 5,000 × 5,040 panel
/// took over a second each time), else sorted.
pub fn distinct_sorted(mut v: Vec<i32>) -> Vec<i32> {
    let (Some(&lo), Some(&hi)) = (v.iter().min(), v.iter().max()) else { return Vec::new() };
    let Some(span) = dense_span(lo, hi, v.len()) else {
        v.sort_unstable();
        v.dedup();
        return v;
    };
    let mut seen = vec![false; span];
    for &x in &v {
        seen[(i64::from(x) - i64::from(lo)) as usize] = true;
    }
    drop(v);
    seen.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| (i64::from(lo) + i as i64) as i32).collect()
}

/// The length of `lo..=hi` when a table over it is worth building for `n` values: no more than four slots a value
/// (plus a fixed 1 M), as trading days are; `None` for a sparse range.
fn dense_span(lo: i32, hi: i32, n: usize) -> Option<usize> {
    let span = usize::try_from(i64::from(hi) - i64::from(lo)).unwrap_or(usize::MAX).saturating_add(1);
    (span <= n.saturating_mul(4).saturating_add(1 << 20)).then_some(span)
}

/// Where each day of a calendar (sorted distinct day numbers) is in it: a table over the calendar's span when the
/// days are dense enough (trading days are), else a binary search. The same positions as a search, in O(1).
#[derive(Debug, Clone)]
pub struct DayIndex {
    days: Vec<i32>,
    /// `table[day − days[0]]`: the day's position, `u32::MAX` for a day not in the calendar.
    table: Option<Vec<u32>>,
}

impl DayIndex {
    /// The index of `days` (sorted and distinct, as [`distinct_sorted`] returns them).
    pub fn new(days: Vec<i32>) -> Self {
        let table = match (days.first(), days.last()) {
            (Some(&lo), Some(&hi)) if u32::try_from(days.len()).is_ok() => dense_span(lo, hi, days.len()).map(|span| {
                let mut t = vec![u32::MAX; span];
                for (i, &d) in days.iter().enumerate() {
                    t[(i64::from(d) - i64::from(lo)) as usize] = i as u32;
                }
                t
            }),
            _ => None,
        };
        Self { days, table }
    }

    /// The calendar's days.
    pub fn days(&self) -> &[i32] {
        &self.days
    }

    /// The position of `day` in the calendar, `None` when it is not in it.
    pub fn position(&self, day: i32) -> Option<usize> {
        match &self.table {
            Some(t) => {
                let k = usize::try_from(i64::from(day) - i64::from(*self.days.first()?)).ok()?;
                t.get(k).copied().filter(|&p| p != u32::MAX).map(|p| p as usize)
            }
            None => self.days.binary_search(&day).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_days_round_trip() {
        let d = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(date_to_days(d), 0);
        let d = NaiveDate::from_ymd_opt(2000, 3, 1).unwrap();
        assert_eq!(date_to_days(d), 11_017);
        assert_eq!(days_to_date(11_017), Some(d));
    }
    /// Distinct sorted values and positions as sorting and searching give them: dense calendars (the table),
    /// sparse ones (the fallback), negatives, the extremes of `i32`, duplicates, nothing.
    #[test]
    fn distinct_days_and_their_positions_equal_a_sort_and_a_search() {
        let mut state = 11u64;
        let mut next = |m: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % m
        };
        let mut cases: Vec<Vec<i32>> = vec![Vec::new(), vec![5], vec![i32::MIN, i32::MAX, 0, 0], vec![-3, -3, -7]];
        for span in [10u64, 5_000, 3_000_000_000] {
            cases.push((0..2_000).map(|_| (next(span) as i64 - 1_000) as i32).collect());
        }
        for v in cases {
            let mut expected = v.clone();
            expected.sort_unstable();
            expected.dedup();
            let got = distinct_sorted(v.clone());
            assert_eq!(got, expected);
            let index = DayIndex::new(got);
            for probe in
                v.iter().flat_map(|&d| [d.saturating_sub(1), d, d.saturating_add(1)]).chain([i32::MIN, i32::MAX])
            {
                assert_eq!(index.position(probe), expected.binary_search(&probe).ok(), "{probe}");
            }
        }
    }
}
