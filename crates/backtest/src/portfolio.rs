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

/// How scores become target weights (the `kind` of the strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Long the `k` best scores, equal weight; with `n_drop`, at most that many holdings are replaced per
    /// rebalance (qlib's TopkDropout).
    #[default]
    TopK,
    /// Long the `k` best (+0.5/k each), short the `k` worst (−0.5/k each): gross exposure 1, net 0.
    LongShort,
    /// Long every symbol whose score exceeds `threshold`, equal weight (all-in for a single symbol); flat
    /// otherwise.
    Threshold,
}

/// The weighting rule with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Top-k long.
    TopK {
        /// Names held.
        k: usize,
        /// Most names swapped per rebalance.
        n_drop: Option<usize>,
    },
    /// Long-short k per side.
    LongShort {
        /// Names per side.
        k: usize,
    },
    /// Long above a threshold.
    Threshold {
        /// The threshold.
        threshold: f64,
    },
}

/// Where orders fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// Open of the next trading date.
    #[default]
    NextOpen,
    /// Close of the signal date.
    Close,
}

/// Strategy parameters: the weighting [`Rule`] with only the parameters of its kind, then how it trades. In TOML the
/// rule is flat (`kind = "top_k"`, `k = 10`, `n_drop = 2`); a parameter of another kind (`threshold` with
/// `top_k`, `n_drop` with `long_short`, …) is refused instead of ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StrategyToml", into = "StrategyToml")]
pub struct StrategyConfig {
    /// How scores become target weights.
    pub rule: Rule,
    /// Rebalance every n trading dates (1: daily).
    pub rebalance_days: usize,
    /// Fill price.
    pub fill: Fill,
    /// Commission per side, in basis points of the traded value.
    pub commission_bps: f64,
    /// Slippage per side, in basis points of the price (buys pay more, sells get less).
    pub slippage_bps: f64,
    /// Re-weight names that stay in the book back to their target weight at every rebalance (default: they keep
    /// their shares, only exits, flips and new names trade).
    pub reweight: bool,
    /// Starting capital.
    pub capital: f64,
    /// Annual risk-free rate for Sharpe and Sortino.
    pub risk_free: f64,
    /// Return realised on a held position when its symbol's prices end, applied to its last close (default 0:
    /// cashed out at the last close; e.g. -0.3 for delistings for cause).
    pub delisting_return: f64,
}

/// The TOML/JSON shape of [`StrategyConfig`]: the rule's parameters flat beside `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyToml {
    #[serde(default)]
    kind: StrategyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n_drop: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(default = "default_rebalance")]
    rebalance_days: usize,
    #[serde(default)]
    fill: Fill,
    #[serde(default)]
    commission_bps: f64,
    #[serde(default)]
    slippage_bps: f64,
    #[serde(default)]
    reweight: bool,
    #[serde(default = "default_capital")]
    capital: f64,
    #[serde(default)]
    risk_free: f64,
    #[serde(default)]
    delisting_return: f64,
}

fn default_k() -> usize {
    10
}
fn default_rebalance() -> usize {
    1
}
fn default_capital() -> f64 {
    1_000_000.0
}

impl TryFrom<StrategyToml> for StrategyConfig {
    type Error = String;

    fn try_from(t: StrategyToml) -> std::result::Result<Self, String> {
        let kind = match t.kind {
            StrategyKind::TopK => "top_k",
            StrategyKind::LongShort => "long_short",
            StrategyKind::Threshold => "threshold",
        };
        let not_for = |field: &str| format!("strategy: `{field}` does not apply to kind = \"{kind}\"");
        // The parameters each kind takes; any other one given is an error.
        let (takes_k, takes_n_drop, takes_threshold) = match t.kind {
            StrategyKind::TopK => (true, true, false),
            StrategyKind::LongShort => (true, false, false),
            StrategyKind::Threshold => (false, false, true),
        };
        for (field, given, takes) in [
            ("k", t.k.is_some(), takes_k),
            ("n_drop", t.n_drop.is_some(), takes_n_drop),
            ("threshold", t.threshold.is_some(), takes_threshold),
        ] {
            if given && !takes {
                return Err(not_for(field));
            }
        }
        let k = t.k.unwrap_or_else(default_k);
        let rule = match t.kind {
            StrategyKind::TopK => Rule::TopK { k, n_drop: t.n_drop },
            StrategyKind::LongShort => Rule::LongShort { k },
            StrategyKind::Threshold => Rule::Threshold { threshold: t.threshold.unwrap_or(0.0) },
        };
        Ok(Self {
            rule,
            rebalance_days: t.rebalance_days,
            fill: t.fill,
            commission_bps: t.commission_bps,
            slippage_bps: t.slippage_bps,
            reweight: t.reweight,
            capital: t.capital,
            risk_free: t.risk_free,
            delisting_return: t.delisting_return,
        })
    }
}

impl From<StrategyConfig> for StrategyToml {
    fn from(c: StrategyConfig) -> Self {
        let (kind, k, n_drop, threshold) = match c.rule {
            Rule::TopK { k, n_drop } => (StrategyKind::TopK, Some(k), n_drop, None),
            Rule::LongShort { k } => (StrategyKind::LongShort, Some(k), None, None),
            Rule::Threshold { threshold } => (StrategyKind::Threshold, None, None, Some(threshold)),
        };
        Self {
            kind,
            k,
            n_drop,
            threshold,
            rebalance_days: c.rebalance_days,
            fill: c.fill,
            commission_bps: c.commission_bps,
            slippage_bps: c.slippage_bps,
            reweight: c.reweight,
            capital: c.capital,
            risk_free: c.risk_free,
            delisting_return: c.delisting_return,
        }
    }
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            rule: Rule::TopK { k: default_k(), n_drop: None },
            rebalance_days: default_rebalance(),
            fill: Fill::NextOpen,
            commission_bps: 0.0,
            slippage_bps: 0.0,
            reweight: false,
            capital: default_capital(),
            risk_free: 0.0,
            delisting_return: 0.0,
        }
    }
}

/// The strategy's parameters, checked where the configuration is read; [`simulate`] takes them checked.
impl Params for StrategyConfig {
    type Error = Error;
    fn check(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(format!("strategy: {m}")));
        match self.rule {
            Rule::TopK { k: 0, .. } | Rule::LongShort { k: 0 } => return err("k must be at least 1".into()),
            Rule::TopK { k, n_drop: Some(n) } if n > k => return err(format!("n_drop = {n} exceeds k = {k}")),
            Rule::Threshold { threshold } if !threshold.is_finite() => return err("threshold must be finite".into()),
            _ => {}
        }
        if self.rebalance_days == 0 {
            return err("rebalance_days must be at least 1".into());
        }
        for (name, v) in [("commission_bps", self.commission_bps), ("slippage_bps", self.slippage_bps)] {
            if !(0.0..1000.0).contains(&v) {
                return err(format!("{name} must be in [0, 1000), got {v}"));
            }
        }
        if !(self.capital > 0.0 && self.capital.is_finite()) {
            return err(format!("capital must be positive, got {}", self.capital));
        }
        if !(self.risk_free > -1.0 && self.risk_free < 1.0) {
            return err(format!("risk_free is an annual fraction, got {}", self.risk_free));
        }
        if !(self.delisting_return >= -1.0 && self.delisting_return.is_finite()) {
            return err(format!("delisting_return must be a return ≥ -1, got {}", self.delisting_return));
        }
        Ok(())
    }
}

/// Open and close prices on a common calendar (NaN where a symbol has no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct Market {
    /// Trading dates, increasing.
    pub dates: Vec<NaiveDate>,
    /// Symbols, sorted.
    pub symbols: Vec<String>,
    /// `open[symbol][date]`.
    pub open: Vec<Vec<f64>>,
    /// `close[symbol][date]`.
    pub close: Vec<Vec<f64>>,
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
        Self { dates, symbols, open, close }
    }

    fn fill_price(&self, s: usize, d: usize, fill: Fill) -> f64 {
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

/// Summary statistics of a simulation (fractions; annualised where named so).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioStats {
    /// Trading days simulated (returns).
    pub days: usize,
    /// Final equity / capital − 1.
    pub total_return: f64,
    /// Compound annual growth rate.
    pub cagr: f64,
    /// Annualised volatility of daily returns.
    pub volatility: f64,
    /// Annualised Sharpe ratio.
    pub sharpe: f64,
    /// Annualised Sortino ratio.
    pub sortino: f64,
    /// CAGR / |max drawdown|.
    pub calmar: f64,
    /// Largest peak-to-trough loss (≤ 0).
    pub max_drawdown: f64,
    /// Longest time below a previous peak, in trading days.
    pub max_drawdown_days: usize,
    /// Mean daily one-way turnover: ½ · (bought + sold) / equity before trading.
    pub turnover: f64,
    /// Mean daily two-way turnover: (bought + sold) / equity before trading.
    pub turnover_two_way: f64,
    /// Positions closed because the symbol's prices ended.
    pub delisted: usize,
    /// Mean gross exposure: Σ|position value| / equity at the close.
    pub exposure: f64,
    /// Closed round trips.
    pub trades: usize,
    /// Fills (orders executed).
    pub fills: usize,
    /// Share of closed round trips with a positive P&L.
    pub win_rate: f64,
    /// Commissions and slippage paid, as a fraction of the starting capital.
    pub costs: f64,
    /// Benchmark (equal-weight universe) total return and CAGR.
    pub benchmark_total_return: f64,
    /// Benchmark CAGR.
    pub benchmark_cagr: f64,
    /// CAGR − benchmark CAGR.
    pub excess_return: f64,
    /// Annualised mean / std of daily active returns (strategy − benchmark).
    pub information_ratio: f64,
    /// Index (if given): total return, excess CAGR and information ratio against it.
    pub index_total_return: Option<f64>,
    /// CAGR − index CAGR.
    pub index_excess_return: Option<f64>,
    /// Information ratio against the index.
    pub index_information_ratio: Option<f64>,
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
    /// Gross exposure at each close.
    pub exposure: Vec<f64>,
    /// One-way turnover of each date (½ · traded value / equity before trading).
    pub turnover: Vec<f64>,
    /// Round trips.
    pub trades: Vec<Trade>,
    /// Statistics.
    pub stats: PortfolioStats,
}

struct OpenTrade {
    side: i8,
    entry_date: NaiveDate,
    entry_price: f64,
    flow: f64,
    max_value: f64,
}

/// Target weights of `rule` from the scores of one date (`held`: current holdings, for n-drop).
fn targets(rule: &Rule, scores: &[(usize, f64)], held: &[usize]) -> BTreeMap<usize, f64> {
    // Best first; ties by symbol index for determinism.
    let mut ranked: Vec<(usize, f64)> = scores.to_vec();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut w = BTreeMap::new();
    match *rule {
        Rule::TopK { k, n_drop: None } => {
            for &(s, _) in ranked.iter().take(k) {
                w.insert(s, 1.0 / k as f64);
            }
        }
        Rule::TopK { k, n_drop: Some(n_drop) } => {
            let score_of = |s: usize| scores.iter().find(|x| x.0 == s).map_or(f64::NEG_INFINITY, |x| x.1);
            // Holdings by score, worst last; unscored holdings count as the worst.
            let mut last: Vec<(usize, f64)> = held.iter().map(|&s| (s, score_of(s))).collect();
            last.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want_new = (n_drop + k).saturating_sub(last.len());
            let today: Vec<(usize, f64)> =
                ranked.iter().filter(|(s, _)| !held.contains(s)).take(want_new).copied().collect();
            let mut comb: Vec<(usize, f64)> = last.iter().chain(&today).copied().collect();
            comb.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let bottom: Vec<usize> = comb.iter().rev().take(n_drop).map(|x| x.0).collect();
            let sell: Vec<usize> = last.iter().map(|x| x.0).filter(|s| bottom.contains(s)).collect();
            let n_buy = (sell.len() + k).saturating_sub(last.len());
            let keep = last.iter().map(|x| x.0).filter(|s| !sell.contains(s));
            let buy = today.iter().take(n_buy).map(|x| x.0);
            let names: Vec<usize> = keep.chain(buy).collect();
            for s in &names {
                w.insert(*s, 1.0 / names.len() as f64);
            }
        }
        Rule::LongShort { k } => {
            let k = k.min(ranked.len() / 2);
            for &(s, _) in ranked.iter().take(k) {
                w.insert(s, 0.5 / k as f64);
            }
            for &(s, _) in ranked.iter().rev().take(k) {
                w.insert(s, -0.5 / k as f64);
            }
        }
        Rule::Threshold { threshold } => {
            let chosen: Vec<usize> = ranked.iter().filter(|x| x.1 > threshold).map(|x| x.0).collect();
            for s in &chosen {
                w.insert(*s, 1.0 / chosen.len() as f64);
            }
        }
    }
    w
}

/// An index close series aligned to `dates` (forward-filled), rebased to `capital`.
fn rebase_index(index: &BTreeMap<NaiveDate, f64>, dates: &[NaiveDate], capital: f64) -> Option<Vec<f64>> {
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

/// The book of a simulation: cash, shares, the last close of each symbol, open and closed trades, fills and
/// costs. [`simulate`] decides when and what to trade; the book executes orders and keeps the accounts.
struct Book {
    cash: f64,
    shares: Vec<f64>,
    last_close: Vec<f64>,
    open_trades: Vec<Option<OpenTrade>>,
    trades: Vec<Trade>,
    fills: usize,
    costs: f64,
    /// Target weights of orders that found no bar at their fill, by symbol: they fill at the symbol's next bar.
    waiting: BTreeMap<usize, f64>,
    delisted: usize,
}

impl Book {
    fn new(capital: f64, nsym: usize) -> Self {
        Self {
            cash: capital,
            shares: vec![0.0; nsym],
            last_close: vec![f64::NAN; nsym],
            open_trades: (0..nsym).map(|_| None).collect(),
            trades: Vec::new(),
            fills: 0,
            costs: 0.0,
            waiting: BTreeMap::new(),
            delisted: 0,
        }
    }

    /// Symbols held (long or short).
    fn held(&self) -> Vec<usize> {
        (0..self.shares.len()).filter(|&s| self.shares[s] != 0.0).collect()
    }

    /// Remembers the closes of date `d` (a missing close keeps the previous one).
    fn mark_closes(&mut self, market: &Market, d: usize) {
        for (lc, close) in self.last_close.iter_mut().zip(&market.close) {
            if close[d].is_finite() {
                *lc = close[d];
            }
        }
    }

    /// Equity at the last closes and gross exposure (Σ|position value|).
    fn equity_and_gross(&self) -> (f64, f64) {
        let n = self.shares.len();
        let gross: f64 = (0..n).map(|s| (self.shares[s] * self.last_close[s]).abs()).filter(|v| v.is_finite()).sum();
        let equity = self.cash
            + (0..n).filter(|&s| self.shares[s] != 0.0).map(|s| self.shares[s] * self.last_close[s]).sum::<f64>();
        (equity, gross)
    }

    /// Trades to the target weights `w` at the `fill` prices of date `d` (a new rebalance: orders still waiting
    /// for a bar are replaced); returns the equity before trading (at those prices) and the value traded.
    fn rebalance(
        &mut self,
        cfg: &StrategyConfig,
        market: &Market,
        d: usize,
        w: &BTreeMap<usize, f64>,
        fill: Fill,
    ) -> (f64, f64) {
        self.waiting.clear();
        self.trade_to(cfg, market, d, w, fill, None)
    }

    /// Fills the waiting orders of symbols that have a bar at date `d`.
    fn fill_waiting(&mut self, cfg: &StrategyConfig, market: &Market, d: usize, fill: Fill) -> (f64, f64) {
        let ready: Vec<usize> =
            self.waiting.keys().copied().filter(|&s| market.fill_price(s, d, fill).is_finite()).collect();
        if ready.is_empty() {
            return (f64::NAN, 0.0);
        }
        let w: BTreeMap<usize, f64> = ready.iter().map(|s| (*s, self.waiting[s])).collect();
        for s in &ready {
            self.waiting.remove(s);
        }
        self.trade_to(cfg, market, d, &w, fill, Some(&ready))
    }

    /// Sells every held symbol whose prices ended before date `d` at its last close × (1 + `delisting_return`),
    /// without costs, and drops its waiting order.
    fn delist(&mut self, cfg: &StrategyConfig, market: &Market, d: usize, last_bar: &[usize]) {
        for (s, &last) in last_bar.iter().enumerate() {
            if last >= d {
                continue;
            }
            self.waiting.remove(&s);
            if self.shares[s] != 0.0 && self.last_close[s].is_finite() {
                let price = self.last_close[s] * (1.0 + cfg.delisting_return);
                self.fill((0.0, 0.0), market, s, -self.shares[s], price, market.dates[d]);
                self.delisted += 1;
            }
        }
    }

    /// Trades symbols (all, or `only`) to the weights `w` at the `fill` prices of date `d`. A symbol without a
    /// price there gets its target kept as a waiting order.
    fn trade_to(
        &mut self,
        cfg: &StrategyConfig,
        market: &Market,
        d: usize,
        w: &BTreeMap<usize, f64>,
        fill: Fill,
        only: Option<&[usize]>,
    ) -> (f64, f64) {
        let nsym = self.shares.len();
        let cost_rate = (cfg.commission_bps + cfg.slippage_bps) / 1e4;
        let price: Vec<f64> = (0..nsym)
            .map(|s| {
                let p = market.fill_price(s, d, fill);
                if p.is_finite() { p } else { f64::NAN }
            })
            .collect();
        let mark = |s: usize| if price[s].is_finite() { price[s] } else { self.last_close[s] };
        let equity: f64 =
            self.cash + (0..nsym).filter(|&s| self.shares[s] != 0.0).map(|s| self.shares[s] * mark(s)).sum::<f64>();
        let sizing = equity / (1.0 + cost_rate);
        // Names kept on the same side keep their shares unless `reweight`; exits and flips go to zero; new
        // names get their target weight of the equity. Sells first (they raise the cash the buys use).
        let mut orders: Vec<(usize, f64)> = Vec::new();
        for s in (0..nsym).filter(|s| only.is_none_or(|o| o.contains(s))) {
            let tw = w.get(&s).copied().unwrap_or(0.0);
            let cur = self.shares[s];
            let keep = !cfg.reweight && tw != 0.0 && cur != 0.0 && cur.signum() == tw.signum();
            if keep || (tw == 0.0 && cur == 0.0) {
                continue;
            }
            if !price[s].is_finite() {
                self.waiting.insert(s, tw);
                continue;
            }
            let dq = tw * sizing / price[s] - cur;
            if dq.abs() > 1e-9 {
                orders.push((s, dq));
            }
        }
        // Buys never spend more than the cash after the sells.
        let proceeds: f64 =
            orders.iter().filter(|o| o.1 < 0.0).map(|(s, dq)| -dq * price[*s] * (1.0 - cost_rate)).sum();
        let spend: f64 = orders.iter().filter(|o| o.1 > 0.0).map(|(s, dq)| dq * price[*s] * (1.0 + cost_rate)).sum();
        let available = (self.cash + proceeds).max(0.0);
        if spend > available && spend > 0.0 {
            let scale = available / spend;
            for o in orders.iter_mut().filter(|o| o.1 > 0.0) {
                o.1 *= scale;
            }
        }
        orders.sort_by(|a, b| (a.1 > 0.0).cmp(&(b.1 > 0.0)).then(a.0.cmp(&b.0)));
        let mut traded = 0.0;
        for (s, dq) in orders {
            traded += (dq * price[s]).abs();
            self.fill((cfg.commission_bps / 1e4, cfg.slippage_bps / 1e4), market, s, dq, price[s], market.dates[d]);
        }
        (equity, traded)
    }

    /// Executes `dq` shares of symbol `s` at `price` (plus slippage against the order, plus commission, both as
    /// fractions) and keeps the trade ledger: a position opened, grown, closed or flipped.
    fn fill(&mut self, (comm, slip): (f64, f64), market: &Market, s: usize, dq: f64, price: f64, date: NaiveDate) {
        let exec = price * (1.0 + slip * dq.signum());
        let value = dq * exec;
        let commission = value.abs() * comm;
        self.cash -= value + commission;
        self.costs += commission + (dq * price * slip).abs();
        self.fills += 1;
        let before = self.shares[s];
        let after = before + dq;
        self.shares[s] = if after.abs() < 1e-9 { 0.0 } else { after };
        let now = self.shares[s];
        let flow = -value - commission;
        let opened = |flow: f64| OpenTrade {
            side: now.signum() as i8,
            entry_date: date,
            entry_price: exec,
            flow,
            max_value: (now * exec).abs(),
        };
        // Close (or flip) an open trade.
        if before != 0.0 && (now == 0.0 || now.signum() != before.signum()) {
            if let Some(t) = self.open_trades[s].take() {
                // The part of the flow that closes the old position.
                let closing_share = if now == 0.0 { 1.0 } else { before.abs() / dq.abs() };
                let pnl = t.flow + flow * closing_share;
                self.trades.push(Trade {
                    symbol: market.symbols[s].clone(),
                    side: t.side,
                    entry_date: t.entry_date,
                    entry_price: t.entry_price,
                    exit_date: Some(date),
                    exit_price: exec,
                    pnl,
                    return_pct: pnl / t.max_value,
                });
                if now != 0.0 {
                    self.open_trades[s] = Some(opened(flow * (1.0 - closing_share)));
                }
            }
        } else if before == 0.0 {
            self.open_trades[s] = Some(opened(flow));
        } else if let Some(t) = self.open_trades[s].as_mut() {
            t.flow += flow;
            t.max_value = t.max_value.max((now * exec).abs());
        }
    }

    /// Closes the books: open trades are marked at the last close; returns every trade, fills, costs and
    /// delistings.
    fn finish(mut self, market: &Market) -> (Vec<Trade>, usize, f64, usize) {
        for (s, t) in std::mem::take(&mut self.open_trades).into_iter().enumerate() {
            if let Some(t) = t {
                let value = self.shares[s] * self.last_close[s];
                let pnl = t.flow + value;
                self.trades.push(Trade {
                    symbol: market.symbols[s].clone(),
                    side: t.side,
                    entry_date: t.entry_date,
                    entry_price: t.entry_price,
                    exit_date: None,
                    exit_price: self.last_close[s],
                    pnl,
                    return_pct: pnl / t.max_value,
                });
            }
        }
        (self.trades, self.fills, self.costs, self.delisted)
    }
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
    index: Option<&BTreeMap<NaiveDate, f64>>,
) -> Result<Simulation> {
    let nsym = market.symbols.len();
    let mut by_date: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
    for ((d, s), v) in scores {
        if let (Ok(di), Ok(si)) = (market.dates.binary_search(d), market.symbols.binary_search(s))
            && v.is_finite()
        {
            by_date.entry(di).or_default().push((si, *v));
        }
    }
    let (Some(&first), Some(&last)) = (by_date.keys().next(), by_date.keys().next_back()) else {
        return Err(Error::Data("no finite score matches a symbol and date of the prices".into()));
    };
    let mut book = Book::new(cfg.capital, nsym);
    let mut pending: Option<BTreeMap<usize, f64>> = None;
    let mut sim = Simulation {
        dates: Vec::new(),
        equity: Vec::new(),
        benchmark: Vec::new(),
        index: None,
        exposure: Vec::new(),
        turnover: Vec::new(),
        trades: Vec::new(),
        stats: empty_stats(),
    };
    let mut bench = cfg.capital;
    // Index of each symbol's last bar (a close): after it, the symbol is delisted.
    let last_bar: Vec<usize> =
        market.close.iter().map(|c| c.iter().rposition(|v| v.is_finite()).unwrap_or(0)).collect();
    for d in first..=last {
        let date = market.dates[d];
        // Equal-weight benchmark: mean close-to-close return of symbols with both closes.
        if d > first {
            let rets: Vec<f64> = (0..nsym)
                .filter_map(|s| {
                    let (a, b) = (market.close[s][d - 1], market.close[s][d]);
                    (a.is_finite() && b.is_finite() && a > 0.0).then(|| b / a - 1.0)
                })
                .collect();
            if !rets.is_empty() {
                bench *= 1.0 + rets.iter().sum::<f64>() / rets.len() as f64;
            }
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
        let rebalances = (d - first) % cfg.rebalance_days == 0;
        if cfg.fill == Fill::Close && !rebalances {
            add(book.fill_waiting(cfg, market, d, Fill::Close));
        }
        if rebalances {
            let scored: Vec<(usize, f64)> = by_date
                .get(&d)
                .map(|v| v.iter().copied().filter(|(s, _)| market.close[*s][d].is_finite()).collect())
                .unwrap_or_default();
            let w = targets(&cfg.rule, &scored, &book.held());
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
        let base = if equity_before.is_finite() && equity_before > 0.0 { equity_before } else { equity };
        sim.turnover.push(if base > 0.0 { 0.5 * traded / base } else { 0.0 });
    }
    let (trades, fills, costs, delisted) = book.finish(market);
    sim.index = index.and_then(|i| rebase_index(i, &sim.dates, cfg.capital));
    sim.stats = stats(cfg, &sim, &trades, fills, costs);
    sim.stats.delisted = delisted;
    sim.trades = trades;
    Ok(sim)
}

fn empty_stats() -> PortfolioStats {
    PortfolioStats {
        days: 0,
        total_return: f64::NAN,
        cagr: f64::NAN,
        volatility: f64::NAN,
        sharpe: f64::NAN,
        sortino: f64::NAN,
        calmar: f64::NAN,
        max_drawdown: f64::NAN,
        max_drawdown_days: 0,
        turnover: f64::NAN,
        turnover_two_way: f64::NAN,
        delisted: 0,
        exposure: f64::NAN,
        trades: 0,
        fills: 0,
        win_rate: f64::NAN,
        costs: f64::NAN,
        benchmark_total_return: f64::NAN,
        benchmark_cagr: f64::NAN,
        excess_return: f64::NAN,
        information_ratio: f64::NAN,
        index_total_return: None,
        index_excess_return: None,
        index_information_ratio: None,
    }
}

fn information_ratio(a: &[f64], b: &[f64]) -> f64 {
    let active: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = metrics::std(&active);
    if s > 0.0 { metrics::mean(&active) / s * metrics::YEAR.sqrt() } else { f64::NAN }
}

fn stats(cfg: &StrategyConfig, sim: &Simulation, trades: &[Trade], fills: usize, costs: f64) -> PortfolioStats {
    // The curve starts from the capital before the first date.
    let mut eq = vec![cfg.capital];
    eq.extend(&sim.equity);
    let mut bench = vec![cfg.capital];
    bench.extend(&sim.benchmark);
    let r = metrics::returns(&eq);
    let rb = metrics::returns(&bench);
    let (dd, dd_days) = metrics::max_drawdown(&eq);
    let closed: Vec<&Trade> = trades.iter().filter(|t| t.exit_date.is_some()).collect();
    let cagr = metrics::cagr(&eq);
    let index_eq = sim.index.as_ref().map(|i| {
        let mut e = vec![cfg.capital];
        e.extend(i);
        e
    });
    PortfolioStats {
        days: r.len(),
        total_return: eq[eq.len() - 1] / eq[0] - 1.0,
        cagr,
        volatility: metrics::volatility(&r),
        sharpe: metrics::sharpe(&r, cfg.risk_free),
        sortino: metrics::sortino(&r, cfg.risk_free),
        calmar: metrics::calmar(&eq),
        max_drawdown: dd,
        max_drawdown_days: dd_days,
        turnover: metrics::mean(&sim.turnover),
        turnover_two_way: 2.0 * metrics::mean(&sim.turnover),
        delisted: 0,
        exposure: metrics::mean(&sim.exposure),
        trades: closed.len(),
        fills,
        win_rate: if closed.is_empty() {
            f64::NAN
        } else {
            closed.iter().filter(|t| t.pnl > 0.0).count() as f64 / closed.len() as f64
        },
        costs: costs / cfg.capital,
        benchmark_total_return: bench[bench.len() - 1] / bench[0] - 1.0,
        benchmark_cagr: metrics::cagr(&bench),
        excess_return: cagr - metrics::cagr(&bench),
        information_ratio: information_ratio(&r, &rb),
        index_total_return: index_eq.as_ref().map(|e| e[e.len() - 1] / e[0] - 1.0),
        index_excess_return: index_eq.as_ref().map(|e| cagr - metrics::cagr(e)),
        index_information_ratio: index_eq.as_ref().map(|e| information_ratio(&r, &metrics::returns(e))),
    }
}

impl Market {
    /// The adjusted open and close of every bar of `prices` (close-only data: opens are NaN).
    ///
    /// # Errors
    /// Only if the frame's columns are not as the loader builds them.
    pub fn from_prices(prices: &stockcast_features::PriceFrame) -> Result<Self> {
        let opens = stockcast_features::SeriesColumns { open: true, ..stockcast_features::SeriesColumns::CLOSE };
        let series = prices.series_with(opens)?;
        let rows = series.iter().flat_map(|s| {
            (0..s.len())
                .map(move |i| (s.symbol.clone(), s.dates[i], s.open.as_ref().map_or(f64::NAN, |o| o[i]), s.close[i]))
        });
        Ok(Self::from_rows(rows))
    }
}

/// Reads an index close file: a header, then `date,value` rows (the first two columns; dates as in price files).
///
/// # Errors
/// An unreadable file (a user error, like every input file); [`Error::Data`] naming the file and line of a bad
/// date or value.
pub fn load_index(path: &std::path::Path) -> Result<BTreeMap<NaiveDate, f64>> {
    let text = stockcast_features::io::read_text(path)?;
    let bad = |m: String| Error::Data(format!("{}: {m}", path.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split(',');
        let (d, v) = (cells.next().unwrap_or("").trim(), cells.next().unwrap_or("").trim());
        // The price files' date parser: the same spellings are accepted in both.
        let date = stockcast_features::load::parse_date(d)
            .ok_or_else(|| bad(format!("line {}: date {d:?} is not YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD", i + 1)))?;
        let value: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x > 0.0)
            .ok_or_else(|| bad(format!("line {}: index value {v:?} is not a positive number", i + 1)))?;
        out.insert(date, value);
    }
    if out.is_empty() {
        return Err(bad("no index rows".into()));
    }
    Ok(out)
}
