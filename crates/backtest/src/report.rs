//! Evaluation of out-of-sample predictions (signal, forecast, portfolio) and the run directory: `report.json`
//! (stable keys), `report.md`, a self-contained `report.html` with inline SVG plots, the plots as `.svg` files,
//! and `predictions.parquet`, `equity.parquet`, `folds.parquet`, `trades.csv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use serde_json::{Value, json};
use stockcast_features::Checked;
use stockcast_features::outputs::{Marker, Replace, check_output_dir};
use stockcast_features::polars::prelude::*;
use stockcast_features::prices::date_to_days;

use crate::attribution::{self, Attribution};
use crate::charts::{Chart, Kind, Section};
use crate::error::{Error, Result};
use crate::metrics::{self, DateIc, ForecastStats, SignalStats};
use crate::overfit::{self, ModelOverfit, RunOverfit};
use crate::portfolio::{self, Market, ScoreGrid, Simulation, StrategyConfig};
use crate::relative::{self, RiskStats};
use crate::runner::{FoldResult, WalkForward};
use crate::tearsheet::{self, ReportConfig, Tearsheet};

/// Everything evaluated for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    /// Name in the run.
    pub name: String,
    /// Model kind.
    pub kind: String,
    /// Signal metrics over all out-of-sample dates.
    pub signal: SignalStats,
    /// Forecast errors over all out-of-sample rows.
    pub forecast: ForecastStats,
    /// Per-date IC.
    pub daily_ic: Vec<DateIc>,
    /// The portfolio simulation.
    pub simulation: Simulation,
    /// Seconds spent fitting, over all folds.
    pub fit_seconds: f64,
    /// Seconds spent predicting.
    pub predict_seconds: f64,
    /// Seconds the portfolio simulation took (scores to target weights, fills, costs, equity).
    pub simulate_seconds: f64,
    /// Bootstrap intervals, PSR and DSR.
    pub overfit: ModelOverfit,
    /// CPCV runs: the strategy's Sharpe ratio and the mean Rank IC on every backtest path.
    pub cpcv: Option<CpcvPaths>,
    /// Benchmark-relative, tail and significance statistics ([`crate::relative`]).
    pub risk: RiskStats,
    /// The same signals simulated at each of `strategy.capacity`'s capital levels.
    pub capacity: Vec<CapacityPoint>,
    /// Market, sector and selection contributions ([`crate::attribution`]).
    pub attribution: Attribution,
    /// Weights over time of the most-held names and net exposure per sector (the page's position charts).
    #[serde(skip)]
    pub positions: Positions,
    /// Performance and factor tear sheet (plotted in the report; its data in `plots/*.parquet`).
    #[serde(skip)]
    pub sheet: Tearsheet,
    /// The model's resolved configuration (every parameter, defaults included).
    #[serde(skip)]
    pub params: Value,
}

/// Position series for the page, per simulation date.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Positions {
    /// The names with the largest mean |weight| over the run, and their weight at each close (0 when not held).
    pub top: Vec<(String, Vec<f64>)>,
    /// Net weight per sector at each close (the sector each name had that day; "unclassified" without one);
    /// empty without sectors.
    pub sectors: Vec<(String, Vec<f64>)>,
}

/// The [`Positions`] of a simulation: its `top` most-held names and its sector exposures.
fn positions(sim: &Simulation, market: &Market, top: usize) -> Positions {
    let n = sim.holdings.len();
    let mut mean_abs: BTreeMap<u32, f64> = BTreeMap::new();
    for day in &sim.holdings {
        for &(s, w) in day {
            *mean_abs.entry(s).or_default() += w.abs() / n as f64;
        }
    }
    let mut ranked: Vec<(u32, f64)> = mean_abs.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = ranked
        .iter()
        .take(top)
        .map(|&(s, _)| {
            let series = sim.holdings.iter().map(|day| day.iter().find(|h| h.0 == s).map_or(0.0, |h| h.1)).collect();
            (market.symbols[s as usize].clone(), series)
        })
        .collect();
    let has_sectors = market.sector.iter().any(|v| !v.is_empty());
    let mut sectors: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    if has_sectors {
        for (k, (day, date)) in sim.holdings.iter().zip(&sim.dates).enumerate() {
            let Ok(d) = market.dates.binary_search(date) else { continue };
            for &(s, w) in day {
                let g = market.sector_at(s as usize, d).unwrap_or("unclassified").to_owned();
                sectors.entry(g).or_insert_with(|| vec![0.0; n])[k] += w;
            }
        }
    }
    Positions { top, sectors: sectors.into_iter().collect() }
}

/// One point of the capacity curve: the strategy's results at a starting capital.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityPoint {
    /// Starting capital.
    pub capital: f64,
    /// Total return net of every cost.
    pub total_return: f64,
    /// CAGR.
    pub cagr: f64,
    /// Annualised Sharpe ratio.
    pub sharpe: f64,
    /// Costs / capital.
    pub costs: f64,
    /// The participation limit's shortfall, when set.
    pub participation_shortfall: Option<f64>,
}

/// What every simulation of an evaluation shares: the market, the strategy and the market's trailing liquidity
/// (worked out once for every model, CPCV path and capacity level).
struct Simulator<'a> {
    market: &'a Market,
    strategy: &'a Checked<StrategyConfig>,
    liquidity: Option<Arc<portfolio::Liquidity>>,
}

impl Simulator<'_> {
    /// [`portfolio::simulate`] of `scores` with `strategy` (the evaluation's, or a variant of it).
    fn run(
        &self,
        strategy: &Checked<StrategyConfig>,
        scores: &ScoreGrid,
        index: Option<&portfolio::Index>,
    ) -> Result<Simulation> {
        portfolio::simulate_with(strategy, self.market, scores, index, self.liquidity.clone())
    }

    /// The score grid of `preds` (ordered by date, then symbol, as a walk-forward's are).
    fn grid(&self, preds: &[crate::runner::OosPrediction]) -> ScoreGrid {
        ScoreGrid::new(self.market, preds.iter().map(|p| (p.date, &*p.symbol, p.score)))
    }
}

/// Runs `a` on a scoped thread and `b` on this one; a panic in either resumes here.
fn join<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|s| {
        let h = s.spawn(a);
        let b = b();
        (h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), b)
    })
}

/// The capacity curve of `scores` (see [`CapacityPoint`]).
fn capacity_curve(sim: &Simulator<'_>, scores: &ScoreGrid) -> Result<Vec<CapacityPoint>> {
    let strategy = sim.strategy;
    strategy
        .capacity
        .iter()
        .map(|&capital| {
            let cfg = Checked::new(StrategyConfig { capital, capacity: Vec::new(), ..(**strategy).clone() })?;
            let p = sim.run(&cfg, scores, None)?.stats;
            Ok(CapacityPoint {
                capital,
                total_return: p.total_return,
                cagr: p.cagr,
                sharpe: p.sharpe,
                costs: p.costs,
                participation_shortfall: p.participation_shortfall,
            })
        })
        .collect()
}

/// Per-path results of a CPCV run (path 0 is the one the rest of the report shows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpcvPaths {
    /// Paths.
    pub paths: usize,
    /// Annualised Sharpe ratio of the strategy on each path.
    pub sharpe: Vec<f64>,
    /// Mean daily Rank IC on each path.
    pub rank_ic: Vec<f64>,
    /// Mean and sample std of the paths' Sharpe ratios.
    pub sharpe_mean: f64,
    /// Sample std of the paths' Sharpe ratios.
    pub sharpe_std: f64,
    /// Share of paths with a positive Sharpe ratio.
    pub sharpe_positive: f64,
}

/// The evaluation of a run: per model, and the run-level overfitting statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Per model, in run order.
    pub models: Vec<ModelReport>,
    /// Trials, the DSR benchmark, PBO.
    pub overfitting: RunOverfit,
}

/// What an evaluation needs to know of the run besides its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    /// Seeds the bootstrap.
    pub seed: u64,
    /// The label horizon (trading days): consecutive labels overlap by `horizon − 1` days, the Newey–West lags.
    pub horizon: usize,
}

/// Evaluates every model's out-of-sample predictions, simulates the strategy on them, and computes the
/// overfitting statistics ([`crate::overfit`]; bootstrap seeded with `run.seed`).
///
/// # Errors
/// From [`portfolio::simulate`] (e.g. no score matches the prices).
pub fn evaluate(
    wf: &WalkForward,
    models: &[crate::runner::ModelSpec],
    market: &Market,
    strategy: &Checked<StrategyConfig>,
    index: Option<&portfolio::Index>,
    run: RunFacts,
    report: &Checked<ReportConfig>,
) -> Result<Evaluation> {
    let mut ev = Evaluator::new(models, market, strategy, index, run, report)?;
    ev.walk_forward(wf)?;
    Ok(ev.finish(wf.folds.len()))
}

/// An evaluation built one model at a time ([`Evaluator::model`]), so that a caller holding one model's
/// predictions at a time (a merge streaming them from shard files) evaluates exactly as [`evaluate`] does.
pub struct Evaluator<'a> {
    sim: Simulator<'a>,
    /// The forward-return prices every model's tear sheet reads, laid out once.
    fw: tearsheet::Forward<'a>,
    models: &'a [crate::runner::ModelSpec],
    index: Option<&'a portfolio::Index>,
    run: RunFacts,
    report: &'a Checked<ReportConfig>,
    /// Each evaluated model's report with its place in `models`.
    done: Vec<(usize, ModelReport)>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").field("models", &self.models.len()).field("evaluated", &self.done.len()).finish()
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluation of (some of) `models` on `market` with `strategy`.
    ///
    /// # Errors
    /// From [`portfolio::liquidity_for`].
    pub fn new(
        models: &'a [crate::runner::ModelSpec],
        market: &'a Market,
        strategy: &'a Checked<StrategyConfig>,
        index: Option<&'a portfolio::Index>,
        run: RunFacts,
        report: &'a Checked<ReportConfig>,
    ) -> Result<Self> {
        // Every simulation reads the same trailing volumes and volatilities, worked out once.
        let sim = Simulator { market, strategy, liquidity: portfolio::liquidity_for(strategy, market)? };
        let fw = tearsheet::Forward::new(market);
        Ok(Self { sim, fw, models, index, run, report, done: Vec::new() })
    }

    /// Evaluates every model of `wf` that has fold results.
    ///
    /// # Errors
    /// As [`Evaluator::model`].
    pub fn walk_forward(&mut self, wf: &WalkForward) -> Result<()> {
        for (name, preds) in &wf.predictions {
            let results: Vec<&FoldResult> = wf.results.iter().filter(|r| &r.model == name).collect();
            if !results.is_empty() {
                self.model(name, preds, wf.paths.get(name).map(Vec::as_slice), &results)?;
            }
        }
        Ok(())
    }

    /// Evaluates model `name`: its predictions (ordered by date, then symbol), its CPCV paths, when it has them,
    /// and its fold results. Any order of models gives the same [`Evaluation`].
    ///
    /// # Errors
    /// From [`portfolio::simulate`], naming the model.
    pub fn model(
        &mut self,
        name: &str,
        preds: &[crate::runner::OosPrediction],
        paths: Option<&[Vec<crate::runner::OosPrediction>]>,
        results: &[&FoldResult],
    ) -> Result<()> {
        let (sim, strategy, market) = (&self.sim, self.sim.strategy, self.sim.market);
        let place = self.models.iter().position(|m| m.name == name);
        let spec = place.map(|i| &self.models[i]);
        // Two independent halves at a time, on both cores (each part computes what it did alone, so the result
        // does not depend on the scheduling): the daily ICs beside the score grid and the simulation, then the
        // tear sheet beside the capacity curve, risk, attribution, positions and the CPCV paths.
        let (daily, (scores, simulated)) = join(
            || metrics::daily_ic(preds.iter().map(|p| (p.date, p.score, p.label))),
            || {
                let scores = sim.grid(preds);
                let started = std::time::Instant::now();
                let simulation = sim.run(strategy, &scores, self.index);
                (scores, simulation.map(|s| (s, started.elapsed().as_secs_f64())))
            },
        );
        let (simulation, simulate_seconds) = simulated.map_err(|e| Error::Data(format!("model {name}: {e}")))?;
        let (sheet, (risk, attribution, positions, capacity, cpcv)) = join(
            || {
                tearsheet::tearsheet(
                    &simulation,
                    strategy.capital,
                    strategy.risk_free,
                    preds,
                    &daily,
                    &self.fw,
                    self.report,
                )
            },
            || {
                let risk = risk_of(&simulation, strategy, &daily, self.run.horizon);
                let attribution = attribution::attribute(&simulation, market, risk.benchmark.beta);
                let positions = positions(&simulation, market, 8);
                let capacity = capacity_curve(sim, &scores);
                drop(scores);
                let cpcv = paths.map(|p| cpcv_paths(name, p, sim));
                (risk, attribution, positions, capacity, cpcv)
            },
        );
        let capacity = capacity.map_err(|e| Error::Data(format!("model {name}: {e}")))?;
        let cpcv = cpcv.transpose()?;
        let report = ModelReport {
            name: name.to_owned(),
            kind: spec.map(|m| m.config.kind().to_owned()).unwrap_or_default(),
            signal: metrics::signal_stats(&daily),
            forecast: if spec.is_some_and(|m| m.config.score_is_label()) {
                metrics::forecast_stats(preds.iter().map(|p| (p.score, p.label)))
            } else {
                ForecastStats::not_applicable()
            },
            daily_ic: daily,
            simulation,
            fit_seconds: results.iter().map(|r| r.fit_seconds).sum(),
            predict_seconds: results.iter().map(|r| r.predict_seconds).sum(),
            simulate_seconds,
            overfit: ModelOverfit { sharpe_ci: None, rank_ic_ci: None, psr: f64::NAN, dsr: f64::NAN, trials: 0 },
            cpcv,
            risk,
            capacity,
            attribution,
            positions,
            sheet,
            params: spec.map_or(Value::Null, |m| serde_json::to_value(&m.config).unwrap_or(Value::Null)),
        };
        self.done.push((place.unwrap_or(usize::MAX), report));
        Ok(())
    }

    /// The evaluation of the models evaluated so far, in the run's model order, with the overfitting statistics
    /// across them (`folds`: the run's folds).
    pub fn finish(mut self, folds: usize) -> Evaluation {
        self.done.sort_by_key(|(place, _)| *place);
        let mut reports: Vec<ModelReport> = self.done.into_iter().map(|(_, r)| r).collect();
        let strategy = self.sim.strategy;
        let returns: Vec<(Vec<NaiveDate>, Vec<f64>)> = reports
            .iter()
            .map(|m| (m.simulation.dates.clone(), metrics::curve_returns(strategy.capital, &m.simulation.equity)))
            .collect();
        let ics: Vec<Vec<f64>> =
            reports.iter().map(|m| m.daily_ic.iter().map(|d| d.rank_ic).filter(|v| v.is_finite()).collect()).collect();
        let (per_model, overfitting) =
            overfit::evaluate(&returns, &ics, strategy.risk_free, folds, overfit::Bootstrap::new(self.run.seed));
        for (r, o) in reports.iter_mut().zip(per_model) {
            r.overfit = o;
        }
        Evaluation { models: reports, overfitting }
    }
}

fn cpcv_paths(name: &str, paths: &[Vec<crate::runner::OosPrediction>], sim: &Simulator<'_>) -> Result<CpcvPaths> {
    let mut sharpe = Vec::new();
    let mut rank_ic = Vec::new();
    for (i, preds) in paths.iter().enumerate() {
        let scores = sim.grid(preds);
        let path = sim
            .run(sim.strategy, &scores, None)
            .map_err(|e| Error::Data(format!("model {name}, cpcv path {i}: {e}")))?;
        sharpe.push(path.stats.sharpe);
        rank_ic
            .push(metrics::signal_stats(&metrics::daily_ic(preds.iter().map(|p| (p.date, p.score, p.label)))).rank_ic);
    }
    let finite: Vec<f64> = sharpe.iter().copied().filter(|v| v.is_finite()).collect();
    Ok(CpcvPaths {
        paths: paths.len(),
        sharpe_mean: metrics::mean(&finite),
        sharpe_std: metrics::std(&finite),
        sharpe_positive: finite.iter().filter(|v| **v > 0.0).count() as f64 / finite.len().max(1) as f64,
        sharpe,
        rank_ic,
    })
}

/// [`RiskStats`] of a simulation: its daily returns against the benchmark's (and the index's).
fn risk_of(sim: &Simulation, strategy: &StrategyConfig, daily: &[DateIc], horizon: usize) -> RiskStats {
    let returns = |curve: &[f64]| metrics::curve_returns(strategy.capital, curve);
    let index = sim.index.as_deref().map(returns);
    let ics: Vec<f64> = daily.iter().map(|d| d.rank_ic).collect();
    relative::risk_stats(
        &sim.dates,
        &returns(&sim.equity),
        &returns(&sim.benchmark),
        index.as_deref(),
        metrics::daily_rf(strategy.risk_free),
        sim.stats.total_return > sim.stats.benchmark_total_return,
        &ics,
        horizon,
    )
}

/// What a report records besides the results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunMeta {
    /// stockcast version.
    pub version: String,
    /// The resolved configuration.
    pub config: Value,
    /// Data facts: file, data hash, symbols, rows, first and last date.
    pub data: Value,
    /// Feature spec hash.
    pub feature_spec_hash: String,
    /// Label horizon in trading days.
    pub horizon: usize,
    /// The label's definition and whether it matches the fills.
    pub label: crate::config::LabelAlignment,
    /// Base seed.
    pub seed: u64,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
}

impl RunMeta {
    /// The run's caveats in one sentence each: the label against the fills, the index against the prices, and
    /// the data's banner (findings kept, one-day moves beyond 25 %).
    pub fn warnings(&self) -> Vec<String> {
        let index = self.data.get("index").and_then(|i| i.get("warning")).and_then(Value::as_str);
        let banner = self.data.pointer("/quality/banner").and_then(Value::as_array).into_iter().flatten();
        self.label
            .warning
            .iter()
            .map(String::as_str)
            .chain(index)
            .chain(banner.filter_map(Value::as_str))
            .map(str::to_owned)
            .collect()
    }
}

/// The keys every model has in `report.json` → `models.<name>` (fractions; see docs/backtests.md).
pub const MODEL_KEYS: [&str; 13] = [
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "turnover",
    "trades",
    "win_rate",
    "ic",
    "rank_ic",
    "icir",
];

fn merge(into: &mut serde_json::Map<String, Value>, v: impl Serialize) -> Result<()> {
    match serde_json::to_value(v).map_err(|e| Error::Data(e.to_string()))? {
        Value::Object(m) => {
            into.extend(m);
            Ok(())
        }
        _ => Err(Error::Data("expected an object".into())),
    }
}

/// The formulas of `models.<m>.risk` ([`crate::relative`]), added to [`conventions`].
const RISK_CONVENTIONS: [(&str, &str); 21] = [
    (
        "gross_net",
        "strategy.gross and strategy.net: each side's weights are scaled to its total before the weighting: long (gross + net) / 2 and short (gross - net) / 2 for long_short (defaults 1 and 0: 0.5 each), the long side gross for long-only rules; gross <= 1 (no leverage), |net| <= gross; net applies to long_short only",
    ),
    (
        "weights",
        "strategy.weights (any but equal re-weights held names at every rebalance, as reweight = true does; orders for a held name smaller than strategy.min_trade of equity are skipped): equal (each side's weight shared equally), or score: in proportion to |score|, or inverse_vol: in proportion to 1 / sigma, sigma = sample std of each name's daily close-to-close returns over the last cov_days dates up to the signal date on which every name of the side has one (equal weights when a name has none); each side keeps the rule's total (top_k 1, long_short 0.5 each); or mean_variance: argmax mu'w - (risk_aversion / 2) w'Sw with sum(w) = the side's total and 0 <= w <= max_weight, mu the names' scores (negated for the short side), S their Ledoit-Wolf covariance over cov_days, solved as a QP by Clarabel (PyPortfolioOpt max_quadratic_utility); the solution is checked against every constraint to 1e-7, a violation is an error; or risk_parity: equal risk contributions w_i (S w)_i within each side, the minimiser of 1/2 y'Sy - (1/p) sum ln y_i (Spinu 2013) by Newton's method, rescaled to the side's total (skfolio RiskBudgeting with variance); weights_seconds = time spent in covariance estimates and solves",
    ),
    (
        "max_weight",
        "strategy.max_weight: a name above it is set to it and the excess shared among the side's other names in proportion to their weights, repeated until none is above; a side of n names holding T needs n * max_weight >= T (checked at the config for top_k and long_short, at each rebalance for threshold) and every weight is checked after: a violation is an error, never a silent clip",
    ),
    (
        "max_sector_weight",
        "strategy.max_sector_weight: each side's sum of |w| in one sector (the name's sector on the signal date; names without one count as one sector, '(no sector)') at most this: a sector above it is scaled down and the excess shared among the side's other sectors in proportion to their totals, alternating with max_weight until both hold; mean_variance takes the caps as constraints of its QP (PyPortfolioOpt add_sector_constraints); a side needs sum over its sectors of min(cap, names * max_weight) >= its total, else an error; every sector is checked after the weighting: a violation is an error",
    ),
    (
        "sector_neutral",
        "strategy.sector_neutral (long_short, net 0): the k places of a side go to the sectors one at a time, each to the sector with the largest n / (places + 1) (D'Hondt; n = its scored names, at most floor(n / 2) places; ties to the first sector by name); a sector with m places is long its m best and short its m worst names, 0.5 / (places given) each; names without a sector are left out; every weighting shares a sector's side total among that sector's names, so each sector's net weight is 0 at every rebalance (checked to 1e-9 of the gross; a violation is an error)",
    ),
    (
        "target_vol",
        "strategy.target_vol: the book's predicted volatility sqrt(w' S w * 252), S the Ledoit-Wolf covariance (sklearn LedoitWolf: centred returns, 1/n sample covariance shrunk towards trace/p * I) of the held names' daily returns over cov_days dates up to the signal date; the weights are multiplied by target / predicted when that is below 1 (never levered up); the rest stays in cash; the chart vol_target_<m> shows the realised rolling volatility (report.rolling_days) beside the predicted volatility after the scaling at the last rebalance",
    ),
    (
        "attribution",
        "models.<m>.attribution, per date from the weights w_i at the previous close: market = beta * r_b (beta = risk.benchmark.beta, r_b the equal-weight benchmark's return over the members at the previous close), sector = sum_g W_g (r_g - r_b) (W_g = sector weight, r_g = mean return of the sector's members; names without a sector form their own group), selection = sum_i w_i (r_i - r_g(i)), other = r_p - market - sector - selection (costs, cash, exposure away from beta); totals are sums of the daily contributions (not compounded)",
    ),
    (
        "net_exposure",
        "sum of position values / equity at each close (long positive, short negative); exposure (gross) sums their absolute values",
    ),
    (
        "capacity",
        "models.<m>.capacity: the same out-of-sample scores simulated with each of strategy.capacity's starting capitals (every other setting equal): total return, CAGR, Sharpe, costs / capital and the participation shortfall at each; costs and the participation limit scale with the orders' size against the volume, so this is how much capital the signal takes",
    ),
    (
        "risk",
        "models.<m>.risk: daily returns r_t = E_t / E_(t-1) - 1 (E_0 = capital) against the equal-weight benchmark's (risk.benchmark) and the index's (risk.index); recomputed with empyrical and quantstats by bench/risk_empyrical.py",
    ),
    (
        "alpha_beta",
        "OLS of r - rf on b - rf: beta = sum((b - mean b) r) / sum((b - mean b)^2); daily alpha = mean(r - rf - beta (b - rf)); alpha = (1 + daily alpha)^252 - 1 (empyrical alpha_beta); se(beta) = s / sqrt(sum((b - mean b)^2)), se(alpha) = s sqrt(1/n + mean(b)^2 / sum((b - mean b)^2)) for the daily alpha, s^2 = sum(residual^2) / (n - 2); alpha_t = daily alpha / se(alpha)",
    ),
    (
        "tracking_error",
        "sample std of r - b * sqrt(252); risk.*.information_ratio = mean(r - b) * 252 / tracking_error",
    ),
    (
        "capture",
        "up (down) capture: annual return of r over the days b > 0 (b < 0) / annual return of b over those days, annual return = prod(1 + x)^(252 / days) - 1 (empyrical up_capture, down_capture)",
    ),
    (
        "var_cvar",
        "var_95: 5th percentile of daily returns, linear interpolation (numpy); cvar_95: mean of the lowest floor((n - 1) * 0.05) + 1 daily returns (empyrical conditional_value_at_risk)",
    ),
    ("tail_ratio", "|95th percentile| / |5th percentile| of daily returns (empyrical)"),
    ("omega", "sum(max(r - rf, 0)) / sum(max(rf - r, 0)), threshold 0 (empyrical omega_ratio)"),
    ("profit_factor", "sum of positive daily returns / |sum of negative daily returns| (quantstats profit_factor)"),
    (
        "best_worst",
        "best_day/worst_day: extreme daily returns; best_month/worst_month: extreme calendar-month returns compounded from the month's trading days",
    ),
    (
        "min_track_record",
        "1 + (1 - skew * SR + (kurtosis - 1) / 4 * SR^2) * (PhiInv(0.95) / SR)^2 trading days, SR the daily Sharpe ratio, against SR* = 0 (Bailey & Lopez de Prado 2012); null when SR <= 0; min_track_record_years = days / 252",
    ),
    (
        "rank_ic_t",
        "plain: mean daily Rank IC / (sample std / sqrt(n)); rank_ic_t_newey_west: mean / sqrt((g0 + 2 sum_(l=1..L) (1 - l/(L+1)) g_l) / n), g_l = sum_t (x_t - mean)(x_(t-l) - mean) / n, L = newey_west_lags = label horizon - 1 (consecutive labels overlap by L days; statsmodels HAC, no small-sample correction)",
    ),
    (
        "beats_benchmark",
        "risk.beats_benchmark: the strategy's total return exceeds the equal-weight benchmark's; the summary lists the models that do not",
    ),
];

/// How the run's trading costs were charged (`conventions.costs`).
fn costs_convention(strategy: &StrategyConfig) -> String {
    let mut text = match strategy.cost_model {
        portfolio::CostModel::Bps => {
            format!("commission {} bps + slippage {} bps per side", strategy.commission_bps, strategy.slippage_bps)
        }
        portfolio::CostModel::SqrtImpact => format!(
            "commission {} bps per side + square-root market impact: an order of q shares fills at price * (1 +/- Y \
             sigma sqrt(q / ADV)), Y = impact_coefficient = {}, sigma = sample std of the close-to-close returns \
             and ADV = mean volume (shares) over the symbol's last adv_days = {} bars up to the signal date (the \
             fill date's previous trading date for next-open fills); a buy scaled down to the cash pays the impact \
             of its own size",
            strategy.commission_bps, strategy.impact_coefficient, strategy.adv_days
        ),
    };
    if let Some(p) = strategy.max_participation {
        let _ = write!(
            text,
            "; orders larger than max_participation = {p} of that ADV are cut to it, participation_shortfall = value \
             cut (or not placed for want of an ADV or sigma) / value the rule wanted"
        );
    }
    if strategy.borrow_bps > 0.0 {
        let _ = write!(
            text,
            "; borrow: {} bps a year on the value of the short positions at each close, for the night before \
             (value * bps / 10^4 / 252 per date held overnight)",
            strategy.borrow_bps
        );
    }
    if strategy.cash_rate != 0.0 {
        let _ = write!(
            text,
            "; cash earns (a negative balance pays) {} a year, compounded daily: cash * ((1 + rate)^(1/252) - 1) \
             per date on the balance held since the previous close",
            strategy.cash_rate
        );
    }
    text.push_str(
        "; cost_commission, cost_slippage (slippage or impact), cost_borrow and cash_interest are sums over the run \
         / capital; costs = commission + slippage + borrow",
    );
    text
}

/// The formula of every number in the report (report.json → conventions, the page's Conventions section).
pub fn conventions(meta: &RunMeta, strategy: &StrategyConfig) -> Value {
    let mut all = json!({
            "trading_days_per_year": metrics::YEAR,
            "units": "returns, rates, drawdowns, turnover and exposure are fractions (0.05 = 5 %)",
            "compounding": "equity compounds daily; CAGR = (final / initial)^(252 / days) - 1",
            "risk_free_rate": strategy.risk_free,
            "sharpe": "mean daily excess return / sample std of daily returns * sqrt(252)",
            "sortino": "mean daily excess return / sqrt(mean(min(r - rf, 0)^2)) * sqrt(252)",
            "ic": "per-date Pearson correlation of score and realised forward return across symbols (>= 3 symbols), averaged over dates",
            "rank_ic": "per-date Spearman correlation (average ranks for ties), averaged over dates",
            "icir": "mean IC / std of the daily IC (not annualised)",
            "hit_rate": "share of dates with a positive Rank IC",
            "relative_mae": "MAE / MAE of the zero-return forecast on the same rows (not Hyndman's MASE, which scales by the in-sample naive MAE)",
            "forecast_errors": "mae, rmse, relative_mae and directional_accuracy only for models whose score is a forecast of the label (gbm, linear, lstm, forecast); null for rules and ensembles",
            "turnover": "one-way: mean over dates of 0.5 * (value bought + value sold) / equity before trading (a full rotation is 1.0); turnover_two_way = 2 * turnover",
            "fills": format!("{:?} (signal at the close of t); an order for a symbol without a bar on the fill date fills at its next bar", strategy.fill),
            "ties": "names tied at a rank cut-off (top_k, long_short) share the places left at it equally (r places, m tied names: r / m of a place each; a name in both long_short groups nets its two shares); n_drop sells a tied group of holdings only when all of it fits in the n_drop places; threshold has no rank cut-off. No result depends on symbol names",
            "delisting": format!("a held symbol whose prices end is sold on the next date at its last close * (1 + {}), without costs", strategy.delisting_return),
            "label": meta.label.definition,
            "purge": "per symbol: a training row is used only if its label window, in the symbol's own rows, ends before the next validation or test window; folds[].train_window_* is the calendar window before the purge, models.<m>.folds[].train_start/train_end the first and last rows trained on",
            "cpcv_embargo": "embargo_days, or by default max(gap, ceil(1 % of the calendar's dates)) dates after each test group not trained on (Lopez de Prado 2018, 7.4.2)",
            "bootstrap_ci": "stationary block bootstrap (Politis & Romano 1994), mean block round(n^(1/3)), 1000 resamples, percentile 95 % interval, seeded by the run's seed",
            "psr": "Phi(SR * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2)), SR = daily (mean(r) - rf) / sd(r), biased skewness, non-excess kurtosis (Bailey & Lopez de Prado 2012)",
            "dsr": "PSR against SR0 = sqrt(V) * ((1 - g) * PhiInv(1 - 1/N) + g * PhiInv(1 - 1/(N e))), N trials = models x configurations in the run, V = sample variance of their daily Sharpe ratios, g = Euler-Mascheroni (Bailey & Lopez de Prado 2014)",
            "pbo": "CSCV over the models' aligned daily returns in S blocks (folds rounded down to even, at most 16): share of the C(S, S/2) in/out splits whose in-sample best Sharpe ranks at or below the out-of-sample median (Bailey et al. 2015); null below 2 models or 8 folds",
            "costs": costs_convention(strategy),
                "monthly_returns": "compounded daily returns of the month's trading days: prod(1 + r_t) - 1, r_t = E_t / E_(t-1) - 1, E_0 = capital",
        "rolling": "rolling Sharpe and volatility over the last report.rolling_days daily returns, annualised with sqrt(252)",
        "drawdown_periods": "peak (last date at the running maximum before the fall), valley (lowest equity), recovery (first date back at the peak), depth = valley / peak - 1, days = trading days from peak to recovery or to the end",
        "quantiles": "per date, the scores cut into report.quantiles equal-frequency bins exactly as pandas.qcut(scores, q) cuts them (edges: linear-interpolated quantiles i/q, right-closed, the lowest value in Q1); where ties make edges coincide (pandas raises) every edge is kept, so tied scores share the lowest bin that reaches them; binned over the rows with a label (alphalens drops the others first); mean label per bin and date, then each bin's mean over the dates where it has rows (alphalens mean_return_by_quantile, not demeaned); dates with fewer than 2 labelled scores are skipped",
        "quantile_cumulative": "per date, mean 1-day forward return px(t+2) / px(t+1) - 1 of each quantile (t+k: the symbol's k-th own bar after t; px: open, close without opens), binned over the rows with that return, compounded over the dates where every quantile has one; top minus bottom compounds the difference of the two means",
        "ic_decay": "mean over dates of the Spearman correlation between the score and the h-day forward return px(t+1+h) / px(t+1) - 1 over the symbol's own bars (as the label counts them), h in report.ic_horizons",
        "ic_by_group": "per sector (each name's sector on the date: the classification file's, else the securities file's): mean over dates (with >= 3 of its names labelled) of the Spearman correlation of score and label among that sector's names",
        "quantile_mean_by_group": "per sector: quantiles cut over the whole date as for quantiles, then the mean label of each quantile's names in that sector per date, and its mean over the dates where that (sector, quantile) has rows (alphalens mean_return_by_quantile(by_group=True), binning_by_group=False); null for a quantile the sector never had",
        "sector_neutral_rank_ic": "mean over dates of the Spearman correlation of the label with the score minus its (date, sector) mean, over the names with a sector (>= 3); null without sectors",
        "rank_autocorrelation": "Spearman correlation between a date's scores and the previous prediction date's scores of the same symbols",
    });
    if let Value::Object(m) = &mut all {
        for (key, formula) in RISK_CONVENTIONS {
            m.insert(key.to_owned(), json!(formula));
        }
    }
    all
}

/// The `report.json` document.
///
/// # Errors
/// Serialisation errors only.
pub fn report_json(meta: &RunMeta, wf: &WalkForward, eval: &Evaluation, strategy: &StrategyConfig) -> Result<Value> {
    let models = &eval.models;
    let mut per_model = serde_json::Map::new();
    for m in models {
        let mut o = serde_json::Map::new();
        o.insert("kind".into(), json!(m.kind));
        merge(&mut o, &m.simulation.stats)?;
        merge(&mut o, &m.signal)?;
        merge(&mut o, &m.forecast)?;
        merge(&mut o, &m.overfit)?;
        o.insert("risk".into(), serde_json::to_value(&m.risk).map_err(|e| Error::Data(e.to_string()))?);
        o.insert("capacity".into(), serde_json::to_value(&m.capacity).map_err(|e| Error::Data(e.to_string()))?);
        o.insert("attribution".into(), serde_json::to_value(&m.attribution).map_err(|e| Error::Data(e.to_string()))?);
        if let Some(c) = &m.cpcv {
            o.insert("cpcv".into(), serde_json::to_value(c).map_err(|e| Error::Data(e.to_string()))?);
        }
        let autocorr: Vec<f64> = m.sheet.rank_autocorr.iter().map(|x| x.1).filter(|x| x.is_finite()).collect();
        let autocorr = if autocorr.is_empty() { f64::NAN } else { metrics::mean(&autocorr) };
        o.insert(
            "tearsheet".into(),
            json!({
                "quantile_mean_label": m.sheet.quantile_mean,
                "ic_decay": m.sheet.ic_decay.iter().map(|(h, v)| json!({"horizon": h, "rank_ic": v})).collect::<Vec<_>>(),
                "rank_autocorrelation": autocorr,
                "drawdown_periods": m.sheet.drawdowns,
                "ic_by_group": m.sheet.ic_by_group.iter().map(|(g, v, n)| json!({"group": g, "rank_ic": v, "dates": n})).collect::<Vec<_>>(),
                "quantile_mean_by_group": m.sheet.quantile_mean_by_group.iter().map(|(g, v)| json!({"group": g, "quantile_mean_label": v})).collect::<Vec<_>>(),
                "sector_neutral_rank_ic": m.sheet.sector_neutral_rank_ic,
            }),
        );
        o.insert("fit_seconds".into(), json!(m.fit_seconds));
        o.insert("predict_seconds".into(), json!(m.predict_seconds));
        o.insert("simulate_seconds".into(), json!(m.simulate_seconds));
        o.insert("weights_seconds".into(), json!(m.simulation.weigh_seconds.0));
        let folds: Vec<Value> = wf
            .results
            .iter()
            .filter(|r| r.model == m.name)
            .map(|r| {
                json!({
                    "fold": r.fold, "fit_fold": r.fit_fold, "train_start": r.train_start, "train_end": r.train_end,
                    "test_start": r.test_start, "test_end": r.test_end, "train_rows": r.train_rows,
                    "valid_rows": r.valid_rows, "test_rows": r.test_rows, "fit_seconds": r.fit_seconds,
                    "ic": r.signal.ic, "rank_ic": r.signal.rank_ic, "icir": r.signal.icir,
                    "hit_rate": r.signal.hit_rate, "mae": r.forecast.mae, "rmse": r.forecast.rmse,
                    "relative_mae": r.forecast.relative_mae, "directional_accuracy": r.forecast.directional_accuracy,
                })
            })
            .collect();
        o.insert("folds".into(), Value::Array(folds));
        per_model.insert(m.name.clone(), Value::Object(o));
    }
    let bench = models.first().map(|m| {
        json!({
            "kind": "equal-weight universe, rebalanced daily, no costs (with a point-in-time universe: the previous date's members)",
            "total_return": m.simulation.stats.benchmark_total_return,
            "cagr": m.simulation.stats.benchmark_cagr,
            "index_total_return": m.simulation.stats.index_total_return,
        })
    });
    Ok(json!({
        "format": 1,
        "stockcast_version": meta.version,
        "seed": meta.seed,
        "feature_spec_hash": meta.feature_spec_hash,
        "label_horizon": meta.horizon,
        "label": meta.label,
        "data": meta.data,
        "config": meta.config,
        "conventions": conventions(meta, strategy),
        "folds": wf.folds.iter().map(|f| json!({
            "fold": f.id,
            "train_window_start": wf.calendar.get(f.train.start), "train_window_end": f.train.end.checked_sub(1).and_then(|i| wf.calendar.get(i)),
            "valid_start": (!f.valid.is_empty()).then(|| wf.calendar[f.valid.start]),
            "valid_end": (!f.valid.is_empty()).then(|| wf.calendar[f.valid.end - 1]),
            "test_start": wf.calendar.get(f.test.start), "test_end": f.test.end.checked_sub(1).and_then(|i| wf.calendar.get(i)),
            "fit_fold": f.fit_fold,
            "path": f.path,
        })).collect::<Vec<_>>(),
        "benchmark": bench,
        "overfitting": eval.overfitting,
        "models": per_model,
        "timings_seconds": meta.timings,
    }))
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.2}%", v * 100.0) } else { "–".into() }
}
fn num(v: f64) -> String {
    if v.is_finite() { format!("{v:.3}") } else { "–".into() }
}

/// A table of formatted cells, written as Markdown (report.md, the CLI) or HTML (the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The table in Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

/// The summary: one row per model, then the benchmark.
pub fn summary(models: &[ModelReport]) -> Table {
    let header = [
        "model",
        "total return",
        "CAGR",
        "vol",
        "Sharpe",
        "Sortino",
        "max DD",
        "turnover",
        "trades",
        "IC",
        "Rank IC",
        "ICIR",
        "MAE",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let p = &m.simulation.stats;
            vec![
                m.name.clone(),
                pct(p.total_return),
                pct(p.cagr),
                pct(p.volatility),
                num(p.sharpe),
                num(p.sortino),
                pct(p.max_drawdown),
                pct(p.turnover),
                p.trades.to_string(),
                num(m.signal.ic),
                num(m.signal.rank_ic),
                num(m.signal.icir),
                num(m.forecast.mae),
            ]
        })
        .collect();
    if let Some(m) = models.first() {
        let p = &m.simulation.stats;
        let mut row = vec!["benchmark (equal weight)".to_owned(), pct(p.benchmark_total_return), pct(p.benchmark_cagr)];
        row.resize(header.len(), String::new());
        rows.push(row);
        if let Some(i) = p.index_total_return {
            let kind = match m.simulation.index_kind {
                Some(portfolio::IndexKind::TotalReturn) => "index (total return)",
                _ => "index (price)",
            };
            let mut row = vec![kind.to_owned(), pct(i)];
            row.resize(header.len(), String::new());
            rows.push(row);
        }
    }
    Table { header, rows }
}

/// One line that says plainly which models did not beat the equal-weight benchmark (empty without models).
pub fn verdict(models: &[ModelReport]) -> String {
    let Some(first) = models.first() else { return String::new() };
    let bench = pct(first.simulation.stats.benchmark_total_return);
    let losers: Vec<String> = models
        .iter()
        .filter(|m| !m.risk.beats_benchmark)
        .map(|m| format!("{} ({})", m.name, pct(m.simulation.stats.total_return)))
        .collect();
    if losers.is_empty() {
        format!("Every model beat the equal-weight benchmark ({bench}).")
    } else if losers.len() == models.len() {
        format!("No model beat the equal-weight benchmark ({bench}): {}.", losers.join(", "))
    } else {
        format!("Did not beat the equal-weight benchmark ({bench}): {}.", losers.join(", "))
    }
}

/// The summary table (Markdown), also printed by the CLI, then the [`verdict`] and each model's beta and
/// annualised alpha against the equal-weight benchmark.
pub fn summary_table(models: &[ModelReport]) -> String {
    let mut text = summary(models).markdown();
    if !models.is_empty() {
        let capm: Vec<String> = models
            .iter()
            .map(|m| format!("{} {} / {}", m.name, num(m.risk.benchmark.beta), pct(m.risk.benchmark.alpha)))
            .collect();
        let _ = write!(text, "\n{}\nBeta / annualised alpha against it: {}.\n", verdict(models), capm.join(", "));
    }
    text
}

/// Benchmark-relative, tail and significance statistics per model (report.md's and the page's "Risk and
/// benchmark" table; formulas in [`crate::relative`]).
pub fn risk_table(models: &[ModelReport]) -> Table {
    let header = [
        "model",
        "beta (se)",
        "alpha/yr (t)",
        "corr",
        "tracking error",
        "IR",
        "up / down capture",
        "VaR 95",
        "CVaR 95",
        "tail ratio",
        "omega",
        "profit factor",
        "best / worst day",
        "best / worst month",
        "min track record",
        "Rank IC t (Newey-West)",
    ]
    .map(str::to_owned)
    .to_vec();
    let rows = models
        .iter()
        .map(|m| {
            let k = &m.risk;
            let b = &k.benchmark;
            vec![
                m.name.clone(),
                format!("{} ({})", num(b.beta), num(b.beta_se)),
                format!("{} ({})", pct(b.alpha), num(b.alpha_t)),
                num(b.correlation),
                pct(b.tracking_error),
                num(b.information_ratio),
                format!("{} / {}", num(b.up_capture), num(b.down_capture)),
                pct(k.var_95),
                pct(k.cvar_95),
                num(k.tail_ratio),
                num(k.omega),
                num(k.profit_factor),
                format!("{} / {}", pct(k.best_day), pct(k.worst_day)),
                format!("{} / {}", pct(k.best_month), pct(k.worst_month)),
                k.min_track_record_years.map_or_else(|| "never (SR ≤ 0)".to_owned(), |y| format!("{y:.1} y")),
                format!("{} ({}, {} lags)", num(k.rank_ic_t), num(k.rank_ic_t_newey_west), k.newey_west_lags),
            ]
        })
        .collect();
    Table { header, rows }
}

/// The four static plots as (file name, SVG), drawn by the report's one chart renderer ([`Chart::svg`]).
///
/// # Errors
/// Drawing errors.
pub(crate) fn plots(models: &[ModelReport], wf: &WalkForward) -> Result<Vec<(&'static str, String)>> {
    let Some(first) = models.first() else { return Ok(Vec::new()) };
    let dates = &first.simulation.dates;
    let mut equity = Chart::dated("equity", Section::Performance, "Equity vs benchmark", Kind::Line, dates, false);
    for m in models {
        equity = equity.with(&m.name, m.simulation.equity.clone());
    }
    equity = equity.with("benchmark", first.simulation.benchmark.clone());
    if let Some(i) = &first.simulation.index {
        equity = equity.with("index", i.clone());
    }
    let mut drawdown = Chart::dated("drawdown", Section::Performance, "Drawdown", Kind::Line, dates, true);
    for m in models {
        drawdown = drawdown.with(&m.name, metrics::drawdowns(&m.simulation.equity));
    }
    // Mean Rank IC per calendar month.
    let mut months: Vec<String> = models
        .iter()
        .flat_map(|m| m.daily_ic.iter().map(|d| format!("{}-{:02}", d.date.year(), d.date.month())))
        .collect();
    months.sort_unstable();
    months.dedup();
    let mut ic = Chart::labelled("ic", Section::Signal, "Mean Rank IC per month", Kind::Bar, months.clone(), false);
    for m in models {
        let monthly = months
            .iter()
            .map(|mo| {
                let v: Vec<f64> = m
                    .daily_ic
                    .iter()
                    .filter(|d| format!("{}-{:02}", d.date.year(), d.date.month()) == *mo && d.rank_ic.is_finite())
                    .map(|d| d.rank_ic)
                    .collect();
                if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
            })
            .collect();
        ic = ic.with(&m.name, monthly);
    }
    let fold_labels: Vec<String> = wf.folds.iter().map(|f| f.id.to_string()).collect();
    let mut folds = Chart::labelled("folds", Section::Folds, "Rank IC per fold", Kind::Bar, fold_labels, false);
    for m in models {
        let mut v = vec![f64::NAN; wf.folds.len()];
        for r in wf.results.iter().filter(|r| r.model == m.name) {
            v[r.fold] = r.signal.rank_ic;
        }
        folds = folds.with(&m.name, v);
    }
    Ok(vec![
        ("equity.svg", equity.svg()?),
        ("drawdown.svg", drawdown.svg()?),
        ("ic.svg", ic.svg()?),
        ("folds.svg", folds.svg()?),
    ])
}

/// The overfitting statistics: an introduction (trials, DSR benchmark, bootstrap), a table of intervals, PSR and
/// DSR per model, and the run's PBO sentence.
pub fn overfitting_parts(eval: &Evaluation) -> (String, Table, String) {
    let o = &eval.overfitting;
    let ci = |c: Option<[f64; 2]>| c.map_or_else(|| "–".to_owned(), |[a, b]| format!("[{}, {}]", num(a), num(b)));
    let intro = format!(
        "{} trials; DSR benchmark (expected max daily Sharpe of {} unskilled trials) {}; bootstrap: {} stationary \
         resamples, {:.0} % intervals, seed {}.",
        o.trials,
        o.trials,
        num(o.expected_max_sharpe),
        o.bootstrap.resamples,
        o.bootstrap.level * 100.0,
        o.bootstrap.seed
    );
    let table = Table {
        header: ["model", "Sharpe 95 % CI", "Rank IC 95 % CI", "PSR", "DSR"].map(str::to_owned).to_vec(),
        rows: eval
            .models
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    ci(m.overfit.sharpe_ci),
                    ci(m.overfit.rank_ic_ci),
                    num(m.overfit.psr),
                    num(m.overfit.dsr),
                ]
            })
            .collect(),
    };
    let pbo = match (&o.pbo, &o.pbo_note) {
        (Some(p), _) => format!(
            "Probability of Backtest Overfitting (CSCV, {} blocks, {} splits, {} models): {} (median logit {}).",
            p.blocks,
            p.splits,
            p.models,
            num(p.pbo),
            num(p.median_logit)
        ),
        (None, Some(why)) => format!("Probability of Backtest Overfitting: not computed ({why})."),
        (None, None) => String::new(),
    };
    (intro, table, pbo)
}

/// The overfitting table (Markdown): intervals, PSR, DSR per model, and the run's PBO.
pub fn overfitting_table(eval: &Evaluation) -> String {
    let (intro, table, pbo) = overfitting_parts(eval);
    let mut s = format!("{intro}\n\n{}", table.markdown());
    if !pbo.is_empty() {
        let _ = writeln!(s, "\n{pbo}");
    }
    s
}

/// The report's Data section: what the quality stage read, kept and removed, each finding with its count and
/// first examples, and the split adjustments applied (from `data.quality`; empty without it).
fn data_section(data: &Value) -> String {
    let Some(q) = data.get("quality") else { return String::new() };
    let n = |k: &str| q.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut s = format!(
        "\n## Data\n\n{} rows read, {} kept, {} quarantined.\n",
        n("rows_read"),
        n("rows_kept"),
        n("rows_quarantined")
    );
    for f in q.get("findings").and_then(Value::as_array).into_iter().flatten() {
        let ex: Vec<&str> = f["examples"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let _ = writeln!(
            s,
            "- {}: {} row(s), policy {} → {}{}",
            f["check"].as_str().unwrap_or("?"),
            f["rows"],
            f["policy"].as_str().unwrap_or("?"),
            f["action"].as_str().unwrap_or("?"),
            if ex.is_empty() { String::new() } else { format!(" (e.g. {})", ex.join("; ")) }
        );
    }
    for a in q.get("split_adjustments").and_then(Value::as_array).into_iter().flatten() {
        let _ = writeln!(
            s,
            "- split adjusted ({}): {} on {}, ratio {}, {} earlier row(s)",
            a["source"].as_str().unwrap_or("?"),
            a["symbol"].as_str().unwrap_or("?"),
            a["date"].as_str().unwrap_or("?"),
            a["ratio"],
            a["rows"]
        );
    }
    s
}

pub(crate) fn markdown(meta: &RunMeta, eval: &Evaluation, wf: &WalkForward) -> String {
    let models = &eval.models;
    let mut s = String::from("# stockcast backtest\n\n");
    let _ = writeln!(
        s,
        "stockcast {}, seed {}, feature spec {}, label horizon {} trading days, {} folds.\n\nData: `{}`\n",
        meta.version,
        meta.seed,
        meta.feature_spec_hash,
        meta.horizon,
        wf.folds.len(),
        {
            let mut d = meta.data.clone();
            if let Some(o) = d.as_object_mut() {
                o.remove("quality");
            }
            d
        }
    );
    s.push_str(&summary_table(models));
    s.push_str(&data_section(&meta.data));
    let warning = meta.warnings().iter().fold(String::new(), |mut s, w| {
        let _ = write!(s, " **Warning:** {w}.");
        s
    });
    let _ = write!(
        s,
        "\nConventions: 252 trading days a year; daily compounding; fractions shown as percentages; Sharpe and Sortino \
         annualised with √252 over the risk-free rate in the config; IC/Rank IC are per-date cross-sectional \
         correlations averaged over dates; ICIR = mean / std of the daily IC; turnover is one-way. Label: {}; fills: \
         {:?}.{warning} Formulas: report.json → conventions and docs/backtests.md (Conventions).\n\n## Overfitting\n\n{}\n## Per fold\n\n\
         | model | fold | train | test | rows | Rank IC | IC | MAE |\n|---|---|---|---|---|---|---|---|\n",
        meta.label.definition,
        meta.label.fill,
        overfitting_table(eval),
    );
    for r in &wf.results {
        let _ = writeln!(
            s,
            "| {} | {} | {} .. {} | {} .. {} | {} | {} | {} | {} |",
            r.model,
            r.fold,
            r.train_start,
            r.train_end,
            r.test_start,
            r.test_end,
            r.test_rows,
            num(r.signal.rank_ic),
            num(r.signal.ic),
            num(r.forecast.mae)
        );
    }
    let _ = write!(
        s,
        "\n## Risk and benchmark\n\nAgainst the equal-weight benchmark (daily CAPM regression; standard errors from \
         its residuals). {}\n\n{}",
        verdict(models),
        risk_table(models).markdown()
    );
    s.push_str(
        "\n## Attribution\n\nEach date's return from the weights at the previous close: market = beta x the \
         equal-weight benchmark's return, sector = over/underweighting sectors against it, selection = names against \
         their sector, other = costs, cash and exposure away from beta; sums of the daily contributions.\n\n| model | \
         beta | market | sector | selection | other | sum of daily returns |\n|---|---|---|---|---|---|---|\n",
    );
    for m in models {
        let a = &m.attribution;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            num(a.beta),
            pct(a.market),
            pct(a.sector),
            pct(a.selection),
            pct(a.other),
            pct(a.total)
        );
    }
    if models.iter().any(|m| !m.capacity.is_empty()) {
        s.push_str("\n## Capacity\n\nThe same signals at each starting capital (costs scale with the orders' size against the volume).\n\n| model | capital | total return | CAGR | Sharpe | costs | participation shortfall |\n|---|---|---|---|---|---|---|\n");
        for m in models {
            for c in &m.capacity {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {} | {} | {} | {} |",
                    m.name,
                    c.capital,
                    pct(c.total_return),
                    pct(c.cagr),
                    num(c.sharpe),
                    pct(c.costs),
                    c.participation_shortfall.map_or_else(|| "–".to_owned(), pct)
                );
            }
        }
    }
    s.push_str(&sector_section(models));
    s.push_str("\n![equity](equity.svg)\n![drawdown](drawdown.svg)\n![ic](ic.svg)\n![folds](folds.svg)\n");
    s
}

/// The report's "By sector" section (empty without sectors): each model's sector-neutral Rank IC, and per sector
/// its Rank IC and the mean label of each score quantile (report.json → conventions).
fn sector_section(models: &[ModelReport]) -> String {
    if models.iter().all(|m| m.sheet.sector_neutral_rank_ic.is_none()) {
        return String::new();
    }
    let q = models.iter().map(|m| m.sheet.quantile_mean.len()).max().unwrap_or(0);
    let mut s = String::from("\n## By sector\n\nSector-neutral Rank IC (scores demeaned per date and sector): ");
    let neutral: Vec<String> = models
        .iter()
        .map(|m| format!("{} {}", m.name, m.sheet.sector_neutral_rank_ic.map_or("–".into(), num)))
        .collect();
    let _ = writeln!(s, "{}.\n", neutral.join(", "));
    let quantiles = (1..=q).map(|k| format!(" Q{k} mean label |")).collect::<Vec<_>>().concat();
    let _ = writeln!(s, "| model | sector | Rank IC | dates |{quantiles}\n|---|---|---|---|{}", "---|".repeat(q));
    for m in models {
        for (g, means) in &m.sheet.quantile_mean_by_group {
            let ic = m.sheet.ic_by_group.iter().find(|x| &x.0 == g);
            let cells: String = (0..q)
                .map(|k| format!(" {} |", means.get(k).map_or("–".into(), |v| pct(*v))))
                .collect::<Vec<_>>()
                .concat();
            let _ = writeln!(
                s,
                "| {} | {g} | {} | {} |{cells}",
                m.name,
                ic.map_or("–".into(), |x| num(x.1)),
                ic.map_or("–".into(), |x| x.2.to_string())
            );
        }
    }
    s
}

fn date_col(name: &str, dates: impl Iterator<Item = NaiveDate>) -> Result<Column> {
    let days: Vec<i32> = dates.map(date_to_days).collect();
    Ok(Column::new(name.into(), days).cast(&DataType::Date).map_err(stockcast_features::Error::from)?)
}

fn frame(cols: Vec<Column>) -> Result<DataFrame> {
    Ok(DataFrame::new_infer_height(cols).map_err(stockcast_features::Error::from)?)
}

pub(crate) fn write_frames(
    dir: &Path,
    wf: &WalkForward,
    models: &[ModelReport],
    predictions: Option<&crate::predfile::Spooled>,
) -> Result<()> {
    // predictions.parquet: model, symbol, date, fold, score, label (a streamed merge wrote it already).
    let path = dir.join("predictions.parquet");
    match predictions {
        Some(spooled) => spooled.link_to(&path)?,
        None => {
            crate::predfile::write(&path, &wf.predictions)?;
        }
    }
    // equity.parquet: model, date, equity, benchmark, index, drawdown, exposure, turnover.
    let mut cols: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let (mut names, mut dates) = (Vec::new(), Vec::new());
    for m in models {
        let sim = &m.simulation;
        let dd = metrics::drawdowns(&sim.equity);
        names.extend(std::iter::repeat_n(m.name.as_str(), sim.dates.len()));
        dates.extend(sim.dates.iter().copied());
        cols.entry("equity").or_default().extend(&sim.equity);
        cols.entry("benchmark").or_default().extend(&sim.benchmark);
        cols.entry("index").or_default().extend(sim.index.clone().unwrap_or_else(|| vec![f64::NAN; sim.dates.len()]));
        cols.entry("drawdown").or_default().extend(dd);
        cols.entry("exposure").or_default().extend(&sim.exposure);
        cols.entry("turnover").or_default().extend(&sim.turnover);
    }
    let mut c = vec![Column::new("model".into(), names), date_col("date", dates.into_iter())?];
    for key in ["equity", "benchmark", "index", "drawdown", "exposure", "turnover"] {
        c.push(Column::new(key.into(), cols.remove(key).unwrap_or_default()));
    }
    let mut df = frame(c)?;
    stockcast_features::io::write_frame(&mut df, &dir.join("equity.parquet"))?;
    // folds.parquet: one row per model and fold.
    let r = &wf.results;
    let mut df = frame(vec![
        Column::new("model".into(), r.iter().map(|x| x.model.as_str()).collect::<Vec<_>>()),
        Column::new("fold".into(), r.iter().map(|x| x.fold as u32).collect::<Vec<_>>()),
        Column::new("fit_fold".into(), r.iter().map(|x| x.fit_fold as u32).collect::<Vec<_>>()),
        date_col("train_start", r.iter().map(|x| x.train_start))?,
        date_col("train_end", r.iter().map(|x| x.train_end))?,
        date_col("test_start", r.iter().map(|x| x.test_start))?,
        date_col("test_end", r.iter().map(|x| x.test_end))?,
        Column::new("train_rows".into(), r.iter().map(|x| x.train_rows as u64).collect::<Vec<_>>()),
        Column::new("test_rows".into(), r.iter().map(|x| x.test_rows as u64).collect::<Vec<_>>()),
        Column::new("ic".into(), r.iter().map(|x| x.signal.ic).collect::<Vec<_>>()),
        Column::new("rank_ic".into(), r.iter().map(|x| x.signal.rank_ic).collect::<Vec<_>>()),
        Column::new("icir".into(), r.iter().map(|x| x.signal.icir).collect::<Vec<_>>()),
        Column::new("hit_rate".into(), r.iter().map(|x| x.signal.hit_rate).collect::<Vec<_>>()),
        Column::new("mae".into(), r.iter().map(|x| x.forecast.mae).collect::<Vec<_>>()),
        Column::new("rmse".into(), r.iter().map(|x| x.forecast.rmse).collect::<Vec<_>>()),
        Column::new("fit_seconds".into(), r.iter().map(|x| x.fit_seconds).collect::<Vec<_>>()),
    ])?;
    stockcast_features::io::write_frame(&mut df, &dir.join("folds.parquet"))?;
    Ok(())
}

pub(crate) fn trades_csv(models: &[ModelReport]) -> String {
    let mut s = String::from("model,symbol,side,entry_date,entry_price,exit_date,exit_price,pnl,return\n");
    for m in models {
        for t in &m.simulation.trades {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{}",
                m.name,
                t.symbol,
                t.side,
                t.entry_date,
                t.entry_price,
                t.exit_date.map(|d| d.to_string()).unwrap_or_default(),
                t.exit_price,
                t.pnl,
                t.return_pct
            );
        }
    }
    s
}

/// What marks a directory as a backtest or training run: its `report.json` or, before the merge of a sharded run,
/// its `plan.json`, each with its `format`.
pub const RUN_MARKERS: [Marker; 3] = [
    Marker { file: "report.json", key: "format" },
    Marker { file: crate::shard::PLAN_FILE, key: "format" },
    Marker { file: UPLOAD_MARKER, key: "format" },
];

/// On an object store, the marker of a run being uploaded: written first, removed last (a prefix holding it is an
/// unfinished upload of stockcast's, which a rerun may replace; without `report.json` it is not a finished run).
pub const UPLOAD_MARKER: &str = "upload.json";

/// Checks that a run may be written to `dir` (absent, empty, an earlier run, or `replace` is
/// [`Replace::Force`]); see [`stockcast_features::outputs`].
///
/// # Errors
/// [`stockcast_features::Error::Refused`] (wrapped) naming the directory.
pub fn check_run_dir(dir: &Path, replace: Replace) -> Result<()> {
    Ok(check_output_dir(dir, "backtest or training run", &RUN_MARKERS, replace)?)
}
