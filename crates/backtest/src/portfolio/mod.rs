//! Portfolio simulation from scores: top-k long (optional n-drop turnover limit, like qlib's TopkDropout),
//! long-short top/bottom-k, or threshold long/flat; rebalancing every n trading days; fills at the next open
//! (default) or at the close of the signal date; commission per side and slippage in bps; cash accounting with
//! fractional shares and compounding; an equal-weight benchmark of the universe and an optional index.
//!
//! Conventions: the signal of date t uses scores known at the close of t. With `fill = "next_open"` the orders
//! execute at the open of the next trading date, with `fill = "close"` at the close of t. Target values are
//! sized on the equity at the fill prices divided by (1 + commission + slippage), so a fully invested long book
//! keeps non-negative cash; buys are scaled down to the cash available after the sells. Names that stay in the
//! book keep their shares (no re-weighting churn) unless `reweight = true`. Equity is marked at each close (a
//! symbol without a close keeps its last one).
//!
//! Missing bars and delistings: an order for a symbol with no bar at the fill waits and fills at the next bar the
//! symbol trades (at that bar's fill price, sized on the equity then), unless a later rebalance replaces it. A
//! held symbol whose prices end (its last bar is before the date simulated) is sold on the next date at its last
//! close × (1 + `delisting_return`), without commission or slippage (a cash-out, not a trade), and leaves the
//! equity; it is never marked at a stale price again.
//!
//! Turnover: `turnover` is one-way, ½ · (value bought + value sold) / equity before trading, per date, averaged
//! over every simulated date (a full rotation from one name to another is 1.0); `turnover_two_way` is twice that.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use stockcast_features::{Checked, Params};

use crate::error::{Error, Result};
use crate::metrics;

mod book;
mod config;
mod index;
mod liquidity;
mod market;
mod sectors;
mod stats;

use book::{Book, targets};
pub use config::{CostModel, Fill, Rule, StrategyConfig, StrategyKind, Weighting};
pub use index::{Index, IndexKind, load_index};
pub use liquidity::Liquidity;
pub use market::{Locator, Market};
pub use stats::PortfolioStats;
use stats::{empty_stats, stats};
/// One round trip in a symbol: from a flat position to a position and back to flat (or still open).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trade {
    /// Symbol.
    pub symbol: String,
    /// +1 long, −1 short.
    pub side: i8,
    /// Date of the opening fill.
    pub entry_date: NaiveDate,
    /// Execution price of the opening fill (after slippage).
    pub entry_price: f64,
    /// Date of the closing fill (None: still open at the end, marked at the last close).
    pub exit_date: Option<NaiveDate>,
    /// Execution price of the closing fill, or the last close while open.
    pub exit_price: f64,
    /// Profit and loss including commissions and slippage.
    pub pnl: f64,
    /// P&L over the largest absolute value held.
    pub return_pct: f64,
}

/// A simulation's curves, trades and statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// Dates of the curves.
    pub dates: Vec<NaiveDate>,
    /// Equity at each close (the first value is after any fills at the first close).
    pub equity: Vec<f64>,
    /// Equal-weight universe benchmark, starting at the capital.
    pub benchmark: Vec<f64>,
    /// The index rebased to the capital, when given.
    pub index: Option<Vec<f64>>,
    /// Whether that index is a price or a total-return index.
    pub index_kind: Option<IndexKind>,
    /// Gross exposure at each close.
    pub exposure: Vec<f64>,
    /// Net exposure at each close: Σ position value / equity (long positive, short negative).
    pub net_exposure: Vec<f64>,
    /// The weights held at each close (symbol index into the market, position value / equity), held names only.
    #[serde(skip)]
    pub holdings: Vec<Vec<(u32, f64)>>,
    /// One-way turnover of each date (½ · traded value / equity before trading).
    pub turnover: Vec<f64>,
    /// Round trips.
    pub trades: Vec<Trade>,
    /// Statistics.
    pub stats: PortfolioStats,
    /// With `target_vol`: the book's predicted annualised volatility after the scaling (√(wᵀΣw · 252), Σ the
    /// Ledoit–Wolf covariance over `cov_days` at the last rebalance), carried forward to each date; NaN before
    /// the first estimate. Empty without a target.
    #[serde(skip)]
    pub predicted_vol: Vec<f64>,
    /// The volatility target the book was scaled to.
    #[serde(skip)]
    pub target_vol: Option<f64>,
    /// Seconds spent weighting (covariance estimates and solves); not part of a simulation's equality.
    #[serde(skip)]
    pub weigh_seconds: Seconds,
}

/// A duration that two otherwise equal simulations may differ in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seconds(pub f64);

impl PartialEq for Seconds {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// An index close series aligned to `dates` (forward-filled), rebased to `capital`.
pub(super) fn rebase_index(index: &BTreeMap<NaiveDate, f64>, dates: &[NaiveDate], capital: f64) -> Option<Vec<f64>> {
    let mut last = None;
    let aligned: Vec<Option<f64>> = dates
        .iter()
        .map(|d| {
            if let Some((_, v)) = index.range(..=*d).next_back() {
                last = Some(*v);
            }
            last
        })
        .collect();
    let first = aligned.iter().flatten().next().copied()?;
    Some(aligned.iter().map(|v| v.unwrap_or(first) / first * capital).collect())
}

/// Applies the weighting, the caps and the volatility target to a rule's target weights at date index `d` (the
/// signal date), then checks every constraint ([`sectors::check`]). Returns the weights and, with `target_vol`,
/// the book's predicted volatility after the scaling (when there is a covariance to predict it from).
///
/// # Errors
/// [`Error::Data`] when a side cannot meet `max_weight` or `max_sector_weight` (too few names or sectors), a
/// solve fails, or a weight breaks a constraint after the others.
fn weigh(
    cfg: &StrategyConfig,
    market: &Market,
    d: usize,
    scored: &[(usize, f64)],
    mut w: BTreeMap<usize, f64>,
) -> Result<(BTreeMap<usize, f64>, Option<f64>)> {
    // Each side to its exposure target (when one is set): the rule shares it among the side's names first.
    if cfg.gross.is_some() || cfg.net.is_some() {
        let (long, short) = cfg.side_totals();
        for (sign, target) in [(1.0, long), (-1.0, short)] {
            let total: f64 = w.values().filter(|v| **v * sign > 0.0).map(|v| v.abs()).sum();
            if total > 0.0 {
                for v in w.values_mut().filter(|v| **v * sign > 0.0) {
                    *v *= target / total;
                }
            }
        }
    }
    // Scores by symbol and each group's trailing returns and covariance, for the weightings that read them.
    let by_symbol: BTreeMap<usize, f64> = if matches!(cfg.weights, Weighting::Score | Weighting::MeanVariance) {
        scored.iter().copied().collect()
    } else {
        BTreeMap::new()
    };
    let score_of =
        |names: &[usize]| -> Vec<f64> { names.iter().map(|s| by_symbol.get(s).copied().unwrap_or(0.0)).collect() };
    let returns_of = |names: &[usize]| crate::risk_model::trailing_returns(market, names, d, cfg.cov_days);
    // Without three common dates of returns there is no covariance to weigh by: the group keeps its weights.
    let covariance_of = |names: &[usize]| {
        let rets = returns_of(names);
        crate::risk_model::ledoit_wolf(&rets).filter(|_| rets.len() >= 3)
    };
    // Each group (a side, or a sector's side when sector-neutral) of two names or more shares its total.
    for (sign, names) in sectors::groups(cfg, market, d, &w) {
        if cfg.weights == Weighting::Equal || names.len() < 2 {
            continue;
        }
        let total: f64 = names.iter().map(|s| w[s].abs()).sum();
        match cfg.weights {
            Weighting::Equal => {}
            Weighting::Score => {
                let mags: Vec<f64> = score_of(&names).iter().map(|v| v.abs()).collect();
                let sum: f64 = mags.iter().sum();
                // All scores zero: the group keeps equal weights.
                if sum > 0.0 {
                    for (s, m) in names.iter().zip(&mags) {
                        w.insert(*s, sign * total * m / sum);
                    }
                }
            }
            Weighting::InverseVol => {
                let rets = returns_of(&names);
                let vol: Vec<f64> =
                    (0..names.len()).map(|j| metrics::std(&rets.iter().map(|r| r[j]).collect::<Vec<_>>())).collect();
                // Without a volatility for every name (too little common history) the group keeps equal weights.
                if vol.iter().all(|v| v.is_finite() && *v > 0.0) {
                    let inv: f64 = vol.iter().map(|v| 1.0 / v).sum();
                    for (s, v) in names.iter().zip(&vol) {
                        w.insert(*s, sign * total / v / inv);
                    }
                }
            }
            Weighting::RiskParity => {
                let Some(cov) = covariance_of(&names) else { continue };
                let solved = crate::risk_model::risk_parity(&cov, total)
                    .map_err(|e| Error::Data(format!("{}: {e}", market.dates[d])))?;
                for (s, v) in names.iter().zip(solved) {
                    w.insert(*s, sign * v);
                }
            }
            Weighting::MeanVariance => {
                let Some(cov) = covariance_of(&names) else { continue };
                let mu: Vec<f64> = score_of(&names).iter().map(|v| sign * v).collect();
                let upper = cfg.max_weight.unwrap_or(total).min(total);
                let caps = sectors::solver_groups(cfg, market, d, &names);
                let solved = crate::risk_model::mean_variance(&mu, &cov, cfg.risk_aversion, total, upper, &caps)
                    .map_err(|e| Error::Data(format!("{}: mean-variance weights: {e}", market.dates[d])))?;
                for (s, v) in names.iter().zip(solved) {
                    // Within the solver's checked tolerance (1e-7) of the bounds: put on them.
                    w.insert(*s, sign * v.clamp(0.0, upper));
                }
            }
        }
    }
    sectors::cap(cfg, market, d, &mut w)?;
    sectors::check(cfg, market, d, &w)?;
    let mut after = None;
    if let Some(target) = cfg.target_vol {
        let names: Vec<usize> = w.iter().filter(|(_, v)| **v != 0.0).map(|(s, _)| *s).collect();
        if let Some(lw) = crate::risk_model::ledoit_wolf(&returns_of(&names)) {
            let weights: Vec<f64> = names.iter().map(|s| w[s]).collect();
            let predicted = (lw.variance(&weights) * metrics::YEAR).sqrt();
            after = Some(predicted.min(target));
            if predicted > target {
                for v in w.values_mut() {
                    *v *= target / predicted;
                }
            }
        }
    }
    Ok((w, after))
}

/// Simulates `cfg` on `scores` (`(symbol, date) → score`, out of sample) over the dates from the first to the
/// last scored date: each rebalance date's scores become target weights ([`Rule`]), filled at the close or the
/// next open by the [`Book`].
///
/// # Errors
/// [`Error::Config`] for invalid parameters, [`Error::Data`] when no score matches the market.
pub fn simulate(
    cfg: &Checked<StrategyConfig>,
    market: &Market,
    scores: &BTreeMap<(NaiveDate, String), f64>,
    index: Option<&Index>,
) -> Result<Simulation> {
    let liquidity = liquidity_for(cfg, market)?;
    let grid = ScoreGrid::new(market, scores.iter().map(|((d, s), v)| (*d, s.as_str(), *v)));
    simulate_with(cfg, market, &grid, index, liquidity)
}

/// Scores laid out on a market's dates and symbols: per date (index), the finite scores of the symbols the market
/// has, as (symbol index, score) in the order given. What [`simulate_with`] reads; built once per model and shared
/// by its simulations (the strategy, each capacity level), where a `(date, symbol)` map would be looked up again
/// by each (24 M rows on a 5,000 × 5,040 panel).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreGrid {
    by_date: BTreeMap<usize, Vec<(usize, f64)>>,
}

impl ScoreGrid {
    /// The grid of `scores`, given in (date, symbol) order (a `(date, symbol)` map's, or a walk-forward's
    /// predictions'); rows whose date or symbol the market lacks, and non-finite scores, are left out.
    pub fn new<'a>(market: &Market, scores: impl IntoIterator<Item = (NaiveDate, &'a str, f64)>) -> Self {
        let mut by_date: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
        let mut locate = market.locator();
        for (d, s, v) in scores {
            if let Some((di, si)) = locate.find(d, s).filter(|_| v.is_finite()) {
                by_date.entry(di).or_default().push((si, v));
            }
        }
        Self { by_date }
    }
}

/// The [`Liquidity`] `cfg` needs (none when its costs and limits read no volume), for [`simulate_with`].
///
/// # Errors
/// From [`Liquidity::new`]: the prices have no volume column.
pub fn liquidity_for(cfg: &StrategyConfig, market: &Market) -> Result<Option<std::sync::Arc<Liquidity>>> {
    Ok(if cfg.needs_liquidity() { Some(std::sync::Arc::new(Liquidity::new(market, cfg.adv_days)?)) } else { None })
}

/// [`simulate`] with the market's [`Liquidity`] already worked out ([`liquidity_for`], the same `adv_days`), so
/// several simulations on one market (models, capacity levels, CPCV paths) compute it once.
///
/// # Errors
/// As [`simulate`].
pub fn simulate_with(
    cfg: &Checked<StrategyConfig>,
    market: &Market,
    scores: &ScoreGrid,
    index: Option<&Index>,
    liquidity: Option<std::sync::Arc<Liquidity>>,
) -> Result<Simulation> {
    sectors::require(cfg, market)?;
    let nsym = market.symbols.len();
    let by_date = &scores.by_date;
    let (Some(&first), Some(&last)) = (by_date.keys().next(), by_date.keys().next_back()) else {
        return Err(Error::Data("no finite score matches a symbol and date of the prices".into()));
    };
    let mut book = Book::new(cfg.capital, nsym);
    book.liquidity = liquidity.filter(|_| cfg.needs_liquidity());
    let daily_cash_rate = metrics::daily_rf(cfg.cash_rate);
    let mut pending: Option<BTreeMap<usize, f64>> = None;
    let mut sim = Simulation {
        dates: Vec::new(),
        equity: Vec::new(),
        benchmark: Vec::new(),
        index: None,
        index_kind: index.map(|i| i.kind),
        exposure: Vec::new(),
        net_exposure: Vec::new(),
        holdings: Vec::new(),
        turnover: Vec::new(),
        trades: Vec::new(),
        stats: empty_stats(),
        predicted_vol: Vec::new(),
        target_vol: cfg.target_vol,
        weigh_seconds: Seconds::default(),
    };
    let mut predicted_vol: Option<f64> = None;
    let mut bench = cfg.capital;
    // Index of each symbol's last bar (a close): after it, the symbol is delisted.
    let last_bar: Vec<usize> =
        market.close.iter().map(|c| c.iter().rposition(|v| v.is_finite()).unwrap_or(0)).collect();
    for d in first..=last {
        let date = market.dates[d];
        // Equal-weight benchmark: mean close-to-close return of symbols with both closes (with a universe, of
        // the members on the day before, as an index holds its members through the day).
        if d > first {
            let rets: Vec<f64> = (0..nsym)
                .filter(|&s| market.is_member(s, d - 1))
                .filter_map(|s| market.close_return(s, d - 1, d))
                .collect();
            if !rets.is_empty() {
                bench *= 1.0 + rets.iter().sum::<f64>() / rets.len() as f64;
            }
        }
        // Interest on the cash held overnight (none on the first date: nothing was held before it).
        if d > first && cfg.cash_rate != 0.0 {
            book.accrue_interest(daily_cash_rate);
        }
        let (mut equity_before, mut traded) = (f64::NAN, 0.0);
        let mut add = |(e, t): (f64, f64)| {
            if equity_before.is_nan() {
                equity_before = e;
            }
            traded += t;
        };
        if let Some(w) = pending.take() {
            add(book.rebalance(cfg, market, d, &w, Fill::NextOpen));
        } else if cfg.fill == Fill::NextOpen {
            add(book.fill_waiting(cfg, market, d, Fill::NextOpen));
        }
        book.mark_closes(market, d);
        book.delist(cfg, market, d, &last_bar);
        if cfg.borrow_bps > 0.0 {
            book.charge_borrow(cfg.borrow_bps);
        }
        let rebalances = (d - first) % cfg.rebalance_days == 0;
        if cfg.fill == Fill::Close && !rebalances {
            add(book.fill_waiting(cfg, market, d, Fill::Close));
        }
        if rebalances {
            let scored: Vec<(usize, f64)> = by_date
                .get(&d)
                .map(|v| v.iter().copied().filter(|(s, _)| market.close[*s][d].is_finite()).collect())
                .unwrap_or_default();
            let started = std::time::Instant::now();
            let rule_targets = match cfg.rule {
                Rule::LongShort { k } if cfg.sector_neutral => sectors::neutral_targets(k, market, d, &scored),
                _ => targets(&cfg.rule, &scored, &book.held()),
            };
            let (w, predicted) = weigh(cfg, market, d, &scored, rule_targets)?;
            predicted_vol = predicted.or(predicted_vol);
            sim.weigh_seconds.0 += started.elapsed().as_secs_f64();
            match cfg.fill {
                Fill::Close => add(book.rebalance(cfg, market, d, &w, Fill::Close)),
                Fill::NextOpen if d < last => pending = Some(w),
                Fill::NextOpen => {}
            }
        }
        let (equity, gross) = book.equity_and_gross();
        sim.dates.push(date);
        sim.equity.push(equity);
        sim.benchmark.push(bench);
        sim.exposure.push(if equity > 0.0 { gross / equity } else { f64::NAN });
        let held = book.weights(equity);
        sim.net_exposure.push(if equity > 0.0 { held.iter().map(|h| h.1).sum() } else { f64::NAN });
        sim.holdings.push(held);
        if cfg.target_vol.is_some() {
            sim.predicted_vol.push(predicted_vol.unwrap_or(f64::NAN));
        }
        let base = if equity_before.is_finite() && equity_before > 0.0 { equity_before } else { equity };
        sim.turnover.push(if base > 0.0 { 0.5 * traded / base } else { 0.0 });
    }
    let (trades, fills, costs, delisted) = book.finish(market);
    sim.index = index.and_then(|i| rebase_index(&i.closes, &sim.dates, cfg.capital));
    sim.stats = stats(cfg, &sim, &trades, fills, &costs);
    sim.stats.delisted = delisted;
    sim.trades = trades;
    Ok(sim)
}
