//! What models consume and produce: [`Dataset`] (feature matrix + per-symbol price history) and [`Predictions`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use stockcast_features::{Checked, FeatureFrame, FeatureMatrix, FeatureSpec, MatrixOptions, PriceFrame};

use crate::error::{Error, Result};

/// One symbol's adjusted closes in date order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolHistory {
    /// Trading dates, increasing.
    pub dates: Vec<NaiveDate>,
    /// Adjusted closes.
    pub close: Vec<f64>,
    /// Adjusted opens (NaN where a bar has none); `None` for close-only data.
    pub open: Option<Vec<f64>>,
}

impl SymbolHistory {
    /// Index of the last date ≤ `d`.
    pub fn position(&self, d: NaiveDate) -> Option<usize> {
        match self.dates.binary_search(&d) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
    }

    /// Closes up to and including `d`.
    pub fn until(&self, d: NaiveDate) -> &[f64] {
        self.position(d).map_or(&[], |i| &self.close[..=i])
    }
}

/// Adjusted close (and open) histories per symbol, for models that work on prices (rules, forecasting).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Per symbol.
    pub symbols: BTreeMap<String, SymbolHistory>,
}

impl History {
    /// Extracts closes (and opens, when the data has them) from prices.
    pub fn from_prices(prices: &PriceFrame) -> Result<Self> {
        let columns = stockcast_features::SeriesColumns {
            open: prices.has(stockcast_features::PriceField::Open),
            ..stockcast_features::SeriesColumns::CLOSE
        };
        let symbols = prices
            .series_with(columns)?
            .into_iter()
            .map(|s| (s.symbol, SymbolHistory { dates: s.dates, close: s.close, open: s.open }))
            .collect();
        Ok(Self { symbols })
    }

    /// The history of `symbol`, if any.
    pub fn get(&self, symbol: &str) -> Option<&SymbolHistory> {
        self.symbols.get(symbol)
    }
}

/// Model input: features per (symbol, date) row and the price history behind them.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Features (and labels when training); shared, so that a dataset whose context is its own matrix holds it
    /// once (the 5,000-symbol matrix is 3.4 GB).
    pub matrix: Arc<FeatureMatrix>,
    /// Closes per symbol (shared between train/validation/test views).
    pub history: Arc<History>,
    /// Every feature row known (all dates, with or without label or missing features), where sequence models
    /// look up the rows preceding each row of `matrix`; `None`: `matrix` itself. Shared between views.
    pub context: Option<Arc<FeatureMatrix>>,
}

/// The feature rows a model reads beside those of the date it scores ([`Dataset::for_day`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayContext {
    /// None: the date's own rows (models without sequences).
    None,
    /// Each scored symbol's last `n` rows up to the date (a sequence model's look-back), with whole dates.
    Rows(usize),
    /// Every row (a reach the model does not state).
    All,
}

/// How [`Dataset::from_prices`] builds a dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatasetOptions {
    /// Which feature rows the matrix keeps.
    pub matrix: MatrixOptions,
    /// Also keep every known feature row as the [`Dataset::context`] that sequence models read.
    pub context: bool,
}

impl Dataset {
    /// The one way from prices to model input: features of `prices` by `spec` → matrix → closes per symbol (and
    /// the context of every known row when asked). Prices after the date of interest must already be cut off
    /// ([`PriceFrame::until`]): features use only rows up to each date, labels need the rows after it.
    ///
    /// # Errors
    /// Feature errors.
    pub fn from_prices(prices: &PriceFrame, spec: &Checked<FeatureSpec>, opts: DatasetOptions) -> Result<Self> {
        let frame = stockcast_features::build_features(prices, spec)?;
        Self::from_frame(&frame, prices, opts)
    }

    /// The rows of date `as_of`, for scoring it: the features of all of `prices` (the history they need), the
    /// matrix of that date's rows only (the same values as filtering the whole matrix after); with a `context`
    /// (sequence models), the feature rows their sequences read beside it, as the whole build gives them.
    ///
    /// # Errors
    /// Feature errors.
    pub fn for_day(
        prices: &PriceFrame,
        spec: &Checked<FeatureSpec>,
        as_of: NaiveDate,
        context: DayContext,
    ) -> Result<Self> {
        let frame = match context {
            DayContext::None => {
                let frame = stockcast_features::build_features_on(prices, spec, as_of)?;
                return Self::from_frame(&frame, prices, DatasetOptions::default());
            }
            DayContext::Rows(rows) => stockcast_features::build_features_before(prices, spec, as_of, rows)?,
            DayContext::All => stockcast_features::build_features(prices, spec)?,
        };
        // The matrix keeps the date's rows; the context keeps every row built.
        let opts = DatasetOptions { matrix: MatrixOptions::default(), context: true };
        Ok(Self::from_frame(&frame, prices, opts)?.filter(|(_, d)| *d == as_of))
    }

    /// As [`Dataset::from_prices`], computing the features `shard_rows` rows (whole symbols) at a time
    /// ([`FeatureMatrix::from_shards`]): the same dataset without the f64 feature frame ever whole. A context
    /// other than the matrix itself (filtered matrix options) takes the unsharded path.
    ///
    /// # Errors
    /// Feature errors.
    pub fn from_prices_sharded(
        prices: &PriceFrame,
        spec: &Checked<FeatureSpec>,
        opts: DatasetOptions,
        shard_rows: usize,
    ) -> Result<Self> {
        if opts.context && opts.matrix != MatrixOptions::default() {
            return Self::from_prices(prices, spec, opts);
        }
        let matrix = Arc::new(FeatureMatrix::from_shards(prices, spec, opts.matrix, shard_rows)?);
        let context = opts.context.then(|| Arc::clone(&matrix));
        Ok(Self { matrix, history: Arc::new(History::from_prices(prices)?), context })
    }

    /// As [`Dataset::from_prices`], from features already built from `prices` (e.g. by the incremental cache).
    ///
    /// # Errors
    /// Feature errors.
    pub fn from_frame(frame: &FeatureFrame, prices: &PriceFrame, opts: DatasetOptions) -> Result<Self> {
        let matrix = Arc::new(FeatureMatrix::from_frame(frame, opts.matrix)?);
        let context = match (opts.context, opts.matrix == MatrixOptions::default()) {
            (false, _) => None,
            (true, true) => Some(Arc::clone(&matrix)),
            (true, false) => Some(Arc::new(FeatureMatrix::from_frame(frame, MatrixOptions::default())?)),
        };
        Ok(Self { matrix, history: Arc::new(History::from_prices(prices)?), context })
    }

    /// A dataset without a separate context.
    pub fn new(matrix: FeatureMatrix, history: Arc<History>) -> Self {
        Self { matrix: Arc::new(matrix), history, context: None }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.matrix.nrows()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.matrix.nrows() == 0
    }

    /// The labels, which training requires.
    pub fn labels(&self) -> Result<&ndarray::Array1<f32>> {
        self.matrix.y.as_ref().ok_or_else(|| Error::Data("the training data has no labels".into()))
    }

    /// Rows dated in `[from, to]` that can be trained on ([`Dataset::is_trainable`]).
    pub fn trainable_rows(&self, from: NaiveDate, to: NaiveDate) -> Vec<usize> {
        let m = &self.matrix;
        (0..m.nrows())
            .filter(|&i| {
                let d = m.index[i].1;
                d >= from && d <= to && self.is_trainable(i)
            })
            .collect()
    }

    /// Whether row `i` can be trained on: a finite label and every feature present.
    pub fn is_trainable(&self, i: usize) -> bool {
        let m = &self.matrix;
        m.y.as_ref().is_some_and(|y| y[i].is_finite()) && m.x.row(i).iter().all(|v| v.is_finite())
    }

    /// Splits off the last `fraction` of dates as validation (early stopping), leaving a gap of `gap` trading
    /// dates before it so no training label overlaps the validation window. Too few dates (fewer than
    /// validation + gap + 10) or a zero fraction: everything trains, no validation set.
    pub fn split_validation(&self, fraction: f64, gap: usize) -> (Self, Option<Self>) {
        let dates: Vec<NaiveDate> =
            self.matrix.index.iter().map(|(_, d)| *d).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let n_valid = ((dates.len() as f64) * fraction).round() as usize;
        if fraction <= 0.0 || n_valid == 0 || dates.len() < n_valid + gap + 10 {
            return (self.clone(), None);
        }
        let valid_start = dates[dates.len() - n_valid];
        let train_end = dates[dates.len() - n_valid - gap - 1];
        (self.filter(|(_, d)| *d <= train_end), Some(self.filter(|(_, d)| *d >= valid_start)))
    }

    /// The rows whose index satisfies `keep`.
    #[must_use]
    pub fn filter(&self, keep: impl Fn(&stockcast_features::matrix::RowKey) -> bool) -> Self {
        let rows: Vec<usize> = (0..self.len()).filter(|&i| keep(&self.matrix.index[i])).collect();
        self.rows(&rows)
    }

    /// The given rows, in the given order.
    #[must_use]
    pub fn rows(&self, rows: &[usize]) -> Self {
        let m = &self.matrix;
        let x = m.x.select(ndarray::Axis(0), rows);
        let y = m.y.as_ref().map(|y| y.select(ndarray::Axis(0), rows));
        let index = rows.iter().map(|&i| m.index[i].clone()).collect();
        let matrix = FeatureMatrix {
            x,
            y,
            index,
            feature_names: m.feature_names.clone(),
            spec_hash: m.spec_hash.clone(),
            label: m.label.clone(),
        };
        Self { matrix: Arc::new(matrix), history: Arc::clone(&self.history), context: self.context.clone() }
    }
}

/// Rows of a [`Dataset`] by position, without copying them: what a fit reads ([`crate::fit_rows`]). A
/// walk-forward fold's training rows are most of a large matrix; [`Dataset::rows`] would copy them (1.2 GB of f32
/// per fit on a 2,000-symbol, 10-year panel) for kinds that can read them in place.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The dataset the positions index.
    pub data: &'a Dataset,
    /// Row positions, in order; `None`: every row.
    pub positions: Option<&'a [usize]>,
}

impl<'a> Rows<'a> {
    /// Every row of `data`.
    pub fn all(data: &'a Dataset) -> Self {
        Self { data, positions: None }
    }

    /// The rows of `data` at `positions`, in that order.
    pub fn of(data: &'a Dataset, positions: &'a [usize]) -> Self {
        Self { data, positions: Some(positions) }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.positions.map_or(self.data.len(), <[usize]>::len)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows' positions in [`Rows::data`], in row order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|k| self.positions.map_or(k, |p| p[k]))
    }

    /// The rows' dates, in row order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.iter().map(|i| self.data.matrix.index[i].1)
    }

    /// The rows as a dataset of their own (a copy, unless every row is taken).
    pub fn materialize(&self) -> Dataset {
        match self.positions {
            None => self.data.clone(),
            Some(p) => self.data.rows(p),
        }
    }
}

/// Scores per (symbol, date): the expected forward return over the label horizon (rules: a signal whose sign
/// and order carry the meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// `(symbol, date)` per row.
    pub index: Vec<stockcast_features::matrix::RowKey>,
    /// Score per row.
    pub score: Vec<f64>,
}

impl Predictions {
    /// CSV text `symbol,date,score`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("symbol,date,score\n");
        for ((s, d), v) in self.index.iter().zip(&self.score) {
            let _ = writeln!(out, "{s},{d},{v}");
        }
        out
    }

    /// Writes [`Predictions::to_csv`] atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        Ok(stockcast_features::io::write_atomic(path, self.to_csv().as_bytes())?)
    }
}
