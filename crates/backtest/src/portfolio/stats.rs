//! The simulation's statistics: returns, risk, drawdown, turnover, costs, benchmark- and index-relative.

use super::{Serialize, Simulation, StrategyConfig, Trade, metrics};

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
    /// Commissions, slippage (or market impact) and borrow fees paid, as a fraction of the starting capital.
    pub costs: f64,
    /// Commissions / capital.
    pub cost_commission: f64,
    /// Slippage (`bps`) or market impact (`sqrt_impact`) / capital.
    pub cost_slippage: f64,
    /// Borrow fees on short positions / capital.
    pub cost_borrow: f64,
    /// Interest earned on cash (negative: paid) / capital.
    pub cash_interest: f64,
    /// With `max_participation`: the value the limit cut (or could not cost) / the value the rule wanted to
    /// trade.
    pub participation_shortfall: Option<f64>,
    /// Orders cut by the participation limit (or not placed for want of a volume or volatility).
    pub capped_orders: usize,
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

pub(super) fn empty_stats() -> PortfolioStats {
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
        cost_commission: f64::NAN,
        cost_slippage: f64::NAN,
        cost_borrow: f64::NAN,
        cash_interest: f64::NAN,
        participation_shortfall: None,
        capped_orders: 0,
        benchmark_total_return: f64::NAN,
        benchmark_cagr: f64::NAN,
        excess_return: f64::NAN,
        information_ratio: f64::NAN,
        index_total_return: None,
        index_excess_return: None,
        index_information_ratio: None,
    }
}

pub(super) fn information_ratio(a: &[f64], b: &[f64]) -> f64 {
    let active: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = metrics::std(&active);
    if s > 0.0 { metrics::mean(&active) / s * metrics::YEAR.sqrt() } else { f64::NAN }
}

pub(super) fn stats(
    cfg: &StrategyConfig,
    sim: &Simulation,
    trades: &[Trade],
    fills: usize,
    costs: &super::book::Costs,
) -> PortfolioStats {
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
        costs: costs.total() / cfg.capital,
        cost_commission: costs.commission / cfg.capital,
        cost_slippage: costs.slippage / cfg.capital,
        cost_borrow: costs.borrow / cfg.capital,
        cash_interest: costs.interest / cfg.capital,
        participation_shortfall: cfg
            .max_participation
            .map(|_| if costs.wanted > 0.0 { costs.cut / costs.wanted } else { 0.0 }),
        capped_orders: costs.capped,
        benchmark_total_return: bench[bench.len() - 1] / bench[0] - 1.0,
        benchmark_cagr: metrics::cagr(&bench),
        excess_return: cagr - metrics::cagr(&bench),
        information_ratio: information_ratio(&r, &rb),
        index_total_return: index_eq.as_ref().map(|e| e[e.len() - 1] / e[0] - 1.0),
        index_excess_return: index_eq.as_ref().map(|e| cagr - metrics::cagr(e)),
        index_information_ratio: index_eq.as_ref().map(|e| information_ratio(&r, &metrics::returns(e))),
    }
}
