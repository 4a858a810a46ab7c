//! Open and close prices on a common calendar, from the price frame.

use super::{Fill, NaiveDate, Result};

/// Open and close prices on a common calendar (NaN where a symbol has no bar).
#[derive(Debug, Clone)]
pub struct Market {
    /// Trading dates, increasing.
    pub dates: Vec<NaiveDate>,
    /// Symbols, sorted.
    pub symbols: Vec<String>,
    /// `open[symbol][date]`.
    pub open: Vec<Vec<f64>>,
    /// `close[symbol][date]`.
    pub close: Vec<Vec<f64>>,
    /// Each symbol's sector (from a securities file), when known.
    pub sector: Vec<Option<String>>,
    /// Each symbol's bars ([`Market::bars`]), worked out once on first use.
    bars: std::sync::OnceLock<Vec<Vec<usize>>>,
}

/// Equal when the prices and sectors are (the bars are derived from them, computed or not).
impl PartialEq for Market {
    fn eq(&self, other: &Self) -> bool {
        (&self.dates, &self.symbols, &self.open, &self.close, &self.sector)
            == (&other.dates, &other.symbols, &other.open, &other.close, &other.sector)
    }
}

impl Market {
    /// Builds a market from `(symbol, date, open, close)` rows (open may be NaN for close-only data: fills at the
    /// open then use the close of the fill date).
    pub fn from_rows(rows: impl IntoIterator<Item = (String, NaiveDate, f64, f64)>) -> Self {
        let rows: Vec<_> = rows.into_iter().collect();
        let dates = crate::split::calendar(rows.iter().map(|r| r.1));
        let mut symbols: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        symbols.sort_unstable();
        symbols.dedup();
        let mut open = vec![vec![f64::NAN; dates.len()]; symbols.len()];
        let mut close = open.clone();
        for (s, d, o, c) in rows {
            let (Ok(si), Ok(di)) = (symbols.binary_search(&s), dates.binary_search(&d)) else { continue };
            open[si][di] = o;
            close[si][di] = c;
        }
        let sector = vec![None; symbols.len()];
        Self { dates, symbols, open, close, sector, bars: std::sync::OnceLock::new() }
    }

    /// Date indices of each symbol's own bars (dates with an open or a close), increasing: what "the k-th bar
    /// after t" counts.
    pub fn bars(&self) -> &[Vec<usize>] {
        self.bars.get_or_init(|| {
            (0..self.symbols.len())
                .map(|s| {
                    (0..self.dates.len())
                        .filter(|&d| self.open[s][d].is_finite() || self.close[s][d].is_finite())
                        .collect()
                })
                .collect()
        })
    }

    pub(super) fn fill_price(&self, s: usize, d: usize, fill: Fill) -> f64 {
        match fill {
            Fill::Close => self.close[s][d],
            // Close-only data: the fill date's close stands in for its open (later, never earlier).
            Fill::NextOpen => {
                let o = self.open[s][d];
                if o.is_finite() { o } else { self.close[s][d] }
            }
        }
    }
}

impl Market {
    /// The adjusted open and close of every bar of `prices` (close-only data: opens are NaN).
    ///
    /// # Errors
    /// Only if the frame's columns are not as the loader builds them.
    pub fn from_prices(prices: &stockcast_features::PriceFrame) -> Result<Self> {
        let opens = stockcast_features::SeriesColumns {
            open: true,
            sector: prices.df().column("sector").is_ok(),
            ..stockcast_features::SeriesColumns::CLOSE
        };
        let series = prices.series_with(opens)?;
        let sectors: std::collections::BTreeMap<&str, Option<String>> =
            series.iter().map(|s| (s.symbol.as_str(), s.sector.clone())).collect();
        let rows = series.iter().flat_map(|s| {
            (0..s.len())
                .map(move |i| (s.symbol.clone(), s.dates[i], s.open.as_ref().map_or(f64::NAN, |o| o[i]), s.close[i]))
        });
        let mut market = Self::from_rows(rows);
        market.sector = market.symbols.iter().map(|s| sectors.get(s.as_str()).cloned().flatten()).collect();
        Ok(market)
    }
}
