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
    /// Each symbol's sector over time (the prices' `sector` column: a securities file's, or a point-in-time
    /// classification's): `(first date index, sector)` where it changes, increasing; none before the first.
    /// See [`Market::sector_at`].
    pub sector: Vec<Vec<(usize, Option<String>)>>,
    /// `member[symbol][date]`: whether the symbol is in the point-in-time universe on the date (the prices'
    /// membership column); `None` without a universe (every symbol counts on every date it trades).
    pub member: Option<Vec<Vec<bool>>>,
    /// `volume[symbol][date]` in shares (adjusted like the prices), NaN where there is none; empty when the
    /// prices have no volume column.
    pub volume: Vec<Vec<f64>>,
    /// Each symbol's bars ([`Market::bars`]), worked out once on first use.
    bars: std::sync::OnceLock<Vec<Vec<usize>>>,
}

/// Equal when the prices and sectors are (the bars are derived from them, computed or not).
impl PartialEq for Market {
    fn eq(&self, other: &Self) -> bool {
        (&self.dates, &self.symbols, &self.open, &self.close, &self.sector, &self.member, &self.volume)
            == (&other.dates, &other.symbols, &other.open, &other.close, &other.sector, &other.member, &other.volume)
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
        Self::with_prices(dates, symbols, open, close, Vec::new())
    }

    /// A market of these prices, without sectors or a universe.
    fn with_prices(
        dates: Vec<NaiveDate>,
        symbols: Vec<String>,
        open: Vec<Vec<f64>>,
        close: Vec<Vec<f64>>,
        volume: Vec<Vec<f64>>,
    ) -> Self {
        let sector = vec![Vec::new(); symbols.len()];
        Self { dates, symbols, open, close, sector, member: None, volume, bars: std::sync::OnceLock::new() }
    }

    /// Symbol `s`'s close-to-close return from date index `from` to `to`, when both closes exist (and the first
    /// is positive).
    pub fn close_return(&self, s: usize, from: usize, to: usize) -> Option<f64> {
        let (a, b) = (self.close[s][from], self.close[s][to]);
        (a.is_finite() && b.is_finite() && a > 0.0).then(|| b / a - 1.0)
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

    /// The index of `symbol`, trying `*hint` and the one after it before a binary search (rows sorted by symbol,
    /// or by date then symbol, hit one of them nearly always); `*hint` becomes the index found.
    pub fn symbol_index(&self, symbol: &str, hint: &mut usize) -> Option<usize> {
        let found = [*hint, *hint + 1]
            .into_iter()
            .find(|&i| self.symbols.get(i).is_some_and(|x| x == symbol))
            .or_else(|| self.symbols.binary_search_by(|x| x.as_str().cmp(symbol)).ok())?;
        *hint = found;
        Some(found)
    }

    /// A [`Locator`] of `(date, symbol)` rows in this market.
    pub fn locator(&self) -> Locator<'_> {
        Locator { market: self, hint: 0, last: None }
    }

    /// The sector of symbol `s` on date index `d` (`None` when unknown).
    pub fn sector_at(&self, s: usize, d: usize) -> Option<&str> {
        let v = &self.sector[s];
        let k = v.partition_point(|x| x.0 <= d);
        v.get(k.checked_sub(1)?)?.1.as_deref()
    }

    /// Fills [`Market::sector`] and [`Market::member`] from the price frame's rows (sorted by symbol, then date)
    /// and its `sector` and membership columns, where it has them.
    fn groups_from(
        &mut self,
        df: &stockcast_features::polars::prelude::DataFrame,
    ) -> stockcast_features::polars::prelude::PolarsResult<()> {
        let sector = df.column("sector").ok().map(|c| c.str().cloned()).transpose()?;
        let member = df.column(stockcast_features::universe::MEMBER).ok().map(|c| c.bool().cloned()).transpose()?;
        if sector.is_none() && member.is_none() {
            return Ok(());
        }
        if member.is_some() {
            self.member = Some(vec![vec![false; self.dates.len()]; self.symbols.len()]);
        }
        let (symbols, dates) = (df.column("symbol")?.str()?, df.column("date")?.date()?);
        let mut at: Option<(&str, usize)> = None;
        for (row, (s, d)) in symbols.iter().zip(dates.physical().iter()).enumerate() {
            let (Some(s), Some(d)) = (s, d.and_then(stockcast_features::prices::days_to_date)) else { continue };
            let si = match at {
                Some((name, i)) if name == s => i,
                _ => match self.symbols.binary_search_by(|x| x.as_str().cmp(s)) {
                    Ok(i) => i,
                    Err(_) => continue,
                },
            };
            at = Some((s, si));
            let Ok(di) = self.dates.binary_search(&d) else { continue };
            if let Some(g) = &sector {
                self.set_sector(si, di, g.get(row));
            }
            if let (Some(m), Some(out)) = (&member, self.member.as_mut()) {
                out[si][di] = m.get(row).unwrap_or(false);
            }
        }
        Ok(())
    }

    /// Whether symbol `s` counts on date index `d`: a member of the universe, or any symbol without one.
    pub fn is_member(&self, s: usize, d: usize) -> bool {
        self.member.as_ref().is_none_or(|m| m[s][d])
    }

    /// Records that symbol `s` is in `sector` from date index `d` on (dates fed in increasing order per symbol).
    fn set_sector(&mut self, s: usize, d: usize, sector: Option<&str>) {
        let v = &mut self.sector[s];
        if v.last().is_none_or(|x| x.1.as_deref() != sector) {
            v.push((d, sector.map(str::to_owned)));
        }
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
        use stockcast_features::polars::prelude::ChunkedArray;
        use stockcast_features::prices::{DayIndex, days_to_date, distinct_sorted};
        // Straight from the frame's columns, a row at a time (no per-symbol copy of the columns first: 0.7 GB at
        // 25 M rows).
        let df = prices.df();
        let polars = stockcast_features::Error::from;
        let f64s = |name: &str| -> Result<Option<&stockcast_features::polars::prelude::Float64Chunked>> {
            Ok(df.column(name).ok().map(|c| c.f64()).transpose().map_err(polars)?)
        };
        let sym = df.column("symbol").and_then(|c| c.str()).map_err(polars)?;
        let date = df.column("date").and_then(|c| c.date()).map_err(polars)?.physical();
        let closes = df.column("close").and_then(|c| c.f64()).map_err(polars)?;
        let (opens, volumes) = (f64s("open")?, f64s("volume")?);
        let days = DayIndex::new(distinct_sorted(date.iter().flatten().collect()));
        let dates: Vec<NaiveDate> = days.days().iter().filter_map(|&d| days_to_date(d)).collect();
        let mut symbols: Vec<String> = Vec::new();
        for s in sym.iter().map(Option::unwrap_or_default) {
            if symbols.last().is_none_or(|l| l != s) {
                symbols.push(s.to_owned());
            }
        }
        symbols.sort_unstable();
        symbols.dedup();
        let blank = vec![vec![f64::NAN; dates.len()]; symbols.len()];
        let (mut open, mut close) = (blank.clone(), blank.clone());
        let mut volume = if volumes.is_some() { blank } else { Vec::new() };
        let (mut open_values, mut volume_values) = (opens.map(ChunkedArray::iter), volumes.map(ChunkedArray::iter));
        let mut at: Option<(&str, Option<usize>)> = None;
        for ((s, d), c) in sym.iter().zip(date.iter()).zip(closes.iter()) {
            let o = open_values.as_mut().and_then(Iterator::next).flatten();
            let v = volume_values.as_mut().and_then(Iterator::next).flatten();
            let s = s.unwrap_or_default();
            let si = match at {
                Some((name, i)) if name == s => i,
                _ => symbols.binary_search_by(|x| x.as_str().cmp(s)).ok(),
            };
            at = Some((s, si));
            let (Some(si), Some(di)) = (si, d.and_then(|d| days.position(d))) else { continue };
            open[si][di] = o.unwrap_or(f64::NAN);
            close[si][di] = c.unwrap_or(f64::NAN);
            if volumes.is_some() {
                volume[si][di] = v.unwrap_or(f64::NAN);
            }
        }
        let mut market = Self::with_prices(dates, symbols, open, close, volume);
        market.groups_from(prices.df()).map_err(stockcast_features::Error::from)?;
        Ok(market)
    }
}

/// Finds rows `(date, symbol)` in a [`Market`] as (date index, symbol index), for rows that come in (date, symbol)
/// or (symbol, date) order: the last date's index is reused and the symbol found from the last one
/// ([`Market::symbol_index`]), so a walk-forward's predictions take almost no search.
#[derive(Debug)]
pub struct Locator<'a> {
    market: &'a Market,
    hint: usize,
    last: Option<(NaiveDate, Option<usize>)>,
}

impl Locator<'_> {
    /// The (date index, symbol index) of `(date, symbol)`, `None` when the market lacks either.
    pub fn find(&mut self, date: NaiveDate, symbol: &str) -> Option<(usize, usize)> {
        let di = match self.last {
            Some((d, di)) if d == date => di,
            _ => {
                let di = self.market.dates.binary_search(&date).ok();
                self.last = Some((date, di));
                di
            }
        }?;
        Some((di, self.market.symbol_index(symbol, &mut self.hint)?))
    }
}
