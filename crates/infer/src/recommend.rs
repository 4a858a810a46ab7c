//! Daily recommendations: score every symbol with a published model version as of a date, derive an expected
//! return, rank, assign an action, and store the run in Postgres in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use stockcast_features::{FeatureSpec, MatrixOptions, PriceFrame, ReturnKind};
use stockcast_models::registry::{At, CHAMPION, Manifest, ModelRef, Registry};
use stockcast_models::{Dataset, DatasetOptions, ModelConfig, TrainedModel};

use crate::error::{Error, Result};

/// A flag the caller of long work sets when it no longer wants the result (its request timed out, its client
/// went away). The work checks it between its stages (quality checks, features, prediction, calibration) and
/// stops with [`Error::Cancelled`], so an abandoned request does not keep a core busy. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the work to stop at its next checkpoint.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A checkpoint: [`Error::Cancelled`] once cancelled.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// A published model version loaded for scoring (hashes verified by the registry).
#[derive(Debug)]
pub struct Scorer {
    /// Registry name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// The version's manifest.
    pub manifest: Manifest,
    /// The feature spec it was trained with.
    pub spec: stockcast_features::Checked<FeatureSpec>,
    model: TrainedModel,
}

impl Scorer {
    /// Loads `reference` (`NAME`, `NAME@VERSION` or `NAME@ALIAS`; a bare name means its champion), verifying
    /// every file's hash and the spec.
    ///
    /// # Errors
    /// [`Error::Model`] when the version does not exist or its files are damaged.
    pub fn load(registry: &Registry, reference: &ModelRef) -> Result<Self> {
        let (name, version) = registry.resolve(&reference.clone().champion_if_bare())?;
        let (manifest, model) = registry.load(&name, version)?;
        let spec = registry.version_file(&name, version, stockcast_features::spec::SPEC_FILE)?;
        let spec = FeatureSpec::from_toml(&String::from_utf8_lossy(&spec))?;
        Ok(Self { name, version, manifest, spec, model })
    }

    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.model.meta.config
    }

    /// Trading days of history before `as_of` the model needs (None: all of it). Forecasting and rule models
    /// read the whole price history; feature models need the spec's warm-up (plus the sequence length).
    pub fn history_days(&self) -> Option<usize> {
        self.config().history_days(self.spec.warmup_days() + 5)
    }

    /// Scores every symbol that has prices on `as_of`, using only prices up to `as_of`.
    ///
    /// # Errors
    /// [`Error::Data`] when no symbol has prices on `as_of`; feature and model errors.
    pub fn score_day(&self, prices: &PriceFrame, as_of: NaiveDate) -> Result<DayScores> {
        self.score_day_cancellable(prices, as_of, &Cancel::new())
    }

    /// [`Scorer::score_day`], checking `cancel` before the features, before the prediction and at the end.
    ///
    /// # Errors
    /// As [`Scorer::score_day`]; [`Error::Cancelled`] once `cancel` is set.
    pub fn score_day_cancellable(&self, prices: &PriceFrame, as_of: NaiveDate, cancel: &Cancel) -> Result<DayScores> {
        cancel.check()?;
        let known = prices.until(as_of)?;
        let Some((_, last)) = known.date_range()? else {
            return Err(Error::Data(format!("no prices up to {as_of}")));
        };
        let known = match self.history_days() {
            Some(n) => {
                let calendar = known.calendar()?;
                match calendar.iter().rev().nth(n) {
                    Some(&first) => known.since(first)?,
                    None => known,
                }
            }
            None => known,
        };
        let all_symbols = known.symbols()?;
        let day = Dataset::for_day(&known, &self.spec, as_of, self.config().day_context())?;
        if day.is_empty() {
            return Err(Error::Data(format!("no prices on {as_of} (the data ends on {last}; dates are trading days)")));
        }
        cancel.check()?;
        let preds = self.model.predict(&day)?;
        cancel.check()?;
        let scored: BTreeSet<&str> = preds.index.iter().map(|(s, _)| &**s).collect();
        let skipped = all_symbols
            .iter()
            .filter(|s| !scored.contains(s.as_str()))
            .map(|s| (s.clone(), format!("no prices on {as_of}")))
            .collect();
        Ok(DayScores {
            as_of,
            symbols: preds.index.into_iter().map(|(s, _)| s.to_string()).collect(),
            scores: preds.score,
            skipped,
        })
    }

    fn dataset(&self, prices: &PriceFrame, matrix: MatrixOptions) -> Result<Dataset> {
        let opts = DatasetOptions { matrix, context: self.config().uses_sequences() };
        Ok(Dataset::from_prices(prices, &self.spec, opts)?)
    }

    /// Expected h-day returns for `day`'s scores. Models that learn the label predict it directly (a log label
    /// is turned into a simple return; a demeaned label gives the return in excess of the cross-sectional
    /// mean). Rule scores are not returns: they are mapped by a least-squares line fitted on the last
    /// `calibration_days` dates whose labels are known at `as_of` (their h-day windows end on or before it).
    ///
    /// # Errors
    /// Feature and model errors; [`Error::Data`] when a rule model has no labelled history to calibrate on.
    pub fn expected_returns(
        &self,
        prices: &PriceFrame,
        day: &DayScores,
        calibration_days: usize,
    ) -> Result<(Vec<f64>, ExpectedReturn)> {
        let label = &self.spec.label;
        if self.config().score_is_label() {
            let er = day
                .scores
                .iter()
                .map(|&s| match label.kind {
                    ReturnKind::Simple => s,
                    ReturnKind::Log => s.exp_m1(),
                })
                .collect();
            let method = if label.demean.is_on() { ExpectedReturn::ModelExcess } else { ExpectedReturn::Model };
            return Ok((er, method));
        }
        let known = prices.until(day.as_of)?;
        let data = self.dataset(&known, MatrixOptions { require_label: true, drop_incomplete: false })?;
        let dates: BTreeSet<NaiveDate> = data.matrix.index.iter().map(|(_, d)| *d).collect();
        let from = dates.iter().rev().nth(calibration_days.saturating_sub(1)).or(dates.first()).copied();
        let Some(from) = from else {
            return Err(Error::Data(format!(
                "{}: no dates with known {}-day returns before {} to calibrate the rule's scores on",
                self.label(),
                label.horizon,
                day.as_of
            )));
        };
        let recent = data.filter(|(_, d)| *d >= from);
        let preds = self.model.predict(&recent)?;
        let labels = recent.matrix.y.as_ref().map(|y| y.iter().copied().collect::<Vec<f32>>()).unwrap_or_default();
        let pairs: Vec<(f64, f64)> = preds
            .score
            .iter()
            .zip(&labels)
            .map(|(&s, &y)| (s, f64::from(y)))
            .filter(|(s, y)| s.is_finite() && y.is_finite())
            .collect();
        let (intercept, slope) = least_squares(&pairs);
        let er = day.scores.iter().map(|&s| intercept + slope * s).collect();
        Ok((er, ExpectedReturn::Calibrated { dates: calibration_days.min(dates.len()), intercept, slope }))
    }
}

fn least_squares(pairs: &[(f64, f64)]) -> (f64, f64) {
    let n = pairs.len() as f64;
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

/// How `expected_return` was derived (stored with the run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ExpectedReturn {
    /// The model's prediction of the h-day return.
    Model,
    /// The model's prediction of the h-day return in excess of the cross-sectional mean (demeaned label).
    ModelExcess,
    /// A least-squares line from score to realised h-day return over the last `dates` labelled dates.
    Calibrated {
        /// Dates used.
        dates: usize,
        /// Intercept.
        intercept: f64,
        /// Slope.
        slope: f64,
    },
}

/// One day's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct DayScores {
    /// The as-of date.
    pub as_of: NaiveDate,
    /// Scored symbols (sorted).
    pub symbols: Vec<String>,
    /// Score per symbol.
    pub scores: Vec<f64>,
    /// Symbols in the data that could not be scored, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// How actions are assigned from expected returns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionRule {
    /// `buy` when the expected return is above `buy_above`, `sell` when below `sell_below`, else `hold`.
    Threshold {
        /// Buy threshold (h-day return, e.g. 0.005 = 0.5 %).
        buy_above: f64,
        /// Sell threshold.
        sell_below: f64,
    },
    /// `buy` the top `buy_fraction` of the ranking, `sell` the bottom `sell_fraction`, `hold` the rest (at
    /// least one symbol each when the fraction is positive and there are enough symbols).
    Quantile {
        /// Fraction bought.
        buy_fraction: f64,
        /// Fraction sold.
        sell_fraction: f64,
    },
}

impl Default for ActionRule {
    fn default() -> Self {
        Self::Quantile { buy_fraction: 0.2, sell_fraction: 0.2 }
    }
}

/// The rule's numbers, checked where the configuration enters (a serve config file, the command line);
/// [`compute_day`] takes them checked.
impl stockcast_features::Params for ActionRule {
    type Error = Error;
    fn check(&self) -> Result<()> {
        match *self {
            Self::Threshold { buy_above, sell_below } => {
                if !(buy_above.is_finite() && sell_below.is_finite() && sell_below <= buy_above) {
                    return Err(Error::Data(format!(
                        "actions: need finite sell_below ≤ buy_above, got sell_below = {sell_below}, buy_above = \
                         {buy_above}"
                    )));
                }
            }
            Self::Quantile { buy_fraction, sell_fraction } => {
                let ok = |f: f64| (0.0..=1.0).contains(&f);
                if !(ok(buy_fraction) && ok(sell_fraction) && buy_fraction + sell_fraction <= 1.0) {
                    return Err(Error::Data(format!(
                        "actions: buy_fraction and sell_fraction must be in [0, 1] with a sum ≤ 1, got \
                         {buy_fraction} and {sell_fraction}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl ActionRule {
    fn action(&self, rank: usize, n: usize, expected: f64) -> Action {
        match *self {
            Self::Threshold { buy_above, sell_below } => {
                if expected > buy_above {
                    Action::Buy
                } else if expected < sell_below {
                    Action::Sell
                } else {
                    Action::Hold
                }
            }
            Self::Quantile { buy_fraction, sell_fraction } => {
                let count = |f: f64| if f > 0.0 { ((f * n as f64).round() as usize).max(1) } else { 0 };
                let (buys, sells) = (count(buy_fraction), count(sell_fraction));
                if rank <= buys {
                    Action::Buy
                } else if rank > n.saturating_sub(sells) {
                    Action::Sell
                } else {
                    Action::Hold
                }
            }
        }
    }
}

/// A recommended action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Buy.
    Buy,
    /// Hold.
    Hold,
    /// Sell.
    Sell,
}

impl Action {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Hold => "hold",
            Self::Sell => "sell",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Self::Buy),
            "hold" => Some(Self::Hold),
            "sell" => Some(Self::Sell),
            _ => None,
        }
    }
}

/// One recommendation row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Symbol.
    pub symbol: String,
    /// The model's score.
    pub score: f64,
    /// 1 = highest expected return.
    pub rank: u32,
    /// Expected h-day return (see [`ExpectedReturn`]).
    pub expected_return: f64,
    /// The action.
    pub action: Action,
    /// Sector, when known.
    pub sector: Option<String>,
}

/// Ranks the scored symbols by expected return (ties by symbol for the rank number) and assigns actions.
///
/// - A symbol without a finite expected return (the model could not score it) is not ranked and gets no action:
///   it is returned in the second list, to be reported as `unscored`, never stored as buy/hold/sell.
/// - Equal expected returns share one action: when a quantile boundary falls inside a group of ties, the whole
///   group gets the milder action (`hold`), so the order of symbol names never decides a buy or a sell.
pub fn rank(
    day: &DayScores,
    expected: &[f64],
    sectors: &BTreeMap<String, String>,
    rule: &ActionRule,
) -> (Vec<Recommendation>, Vec<String>) {
    let (mut order, unscored): (Vec<usize>, Vec<usize>) =
        (0..day.symbols.len()).partition(|&i| expected[i].is_finite());
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]).then_with(|| day.symbols[a].cmp(&day.symbols[b])));
    let n = order.len();
    let mut actions: Vec<Action> = order.iter().enumerate().map(|(r, &i)| rule.action(r + 1, n, expected[i])).collect();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && expected[order[end]].total_cmp(&expected[order[start]]).is_eq() {
            end += 1;
        }
        if actions[start..end].iter().any(|a| *a != actions[start]) {
            actions[start..end].fill(Action::Hold);
        }
        start = end;
    }
    let rows = order
        .into_iter()
        .zip(actions)
        .enumerate()
        .map(|(r, (i, action))| Recommendation {
            symbol: day.symbols[i].clone(),
            score: day.scores[i],
            rank: (r + 1) as u32,
            expected_return: expected[i],
            action,
            sector: sectors.get(&day.symbols[i]).cloned(),
        })
        .collect();
    (rows, unscored.into_iter().map(|i| day.symbols[i].clone()).collect())
}

/// How many rows got each action (actions with no row are absent).
pub fn action_counts(rows: &[Recommendation]) -> BTreeMap<Action, usize> {
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r.action).or_default() += 1;
    }
    counts
}

/// `NAME@champion` for every model of the registry that has a champion, in name order.
///
/// # Errors
/// Registry errors (unreadable directory or aliases file).
pub fn champion_references(registry: &Registry) -> Result<Vec<ModelRef>> {
    let mut refs = Vec::new();
    for name in registry.names()? {
        if registry.aliases(&name)?.aliases.contains_key(CHAMPION) {
            refs.push(ModelRef { name, at: At::Alias(CHAMPION.to_owned()) });
        }
    }
    Ok(refs)
}

/// Sectors by symbol from the frame's securities.
pub fn sectors(prices: &PriceFrame) -> BTreeMap<String, String> {
    prices.securities().iter().filter_map(|s| Some((s.symbol.clone(), s.sector.clone()?))).collect()
}

/// Settings of a recommendation run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendConfig {
    /// How actions are assigned.
    #[serde(default)]
    pub actions: stockcast_features::Checked<ActionRule>,
    /// Labelled dates used to calibrate rule scores into expected returns.
    #[serde(default = "default_calibration_days")]
    pub calibration_days: usize,
}

fn default_calibration_days() -> usize {
    252
}

impl Default for RecommendConfig {
    fn default() -> Self {
        Self { actions: stockcast_features::Checked::default(), calibration_days: default_calibration_days() }
    }
}

/// A computed (not yet stored) day of recommendations.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRun {
    /// The rows, by rank.
    pub rows: Vec<Recommendation>,
    /// What is stored in `recommendation_runs.params`.
    pub params: serde_json::Value,
    /// Symbols that could not be scored, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Symbols with prices on the date that the model gave no finite score (not ranked, no action).
    pub unscored: Vec<String>,
}

/// Scores, ranks and assigns actions for `as_of` (CPU work; no database), checking `cancel` between stages.
///
/// # Errors
/// [`Error::Data`] for a bad rule or a date without prices; feature and model errors; [`Error::Cancelled`].
pub fn compute_day(
    scorer: &Scorer,
    prices: &PriceFrame,
    as_of: NaiveDate,
    cfg: &RecommendConfig,
    cancel: &Cancel,
) -> Result<DayRun> {
    let day = scorer.score_day_cancellable(prices, as_of, cancel)?;
    let (expected, method) = scorer.expected_returns(prices, &day, cfg.calibration_days)?;
    cancel.check()?;
    let (rows, unscored) = rank(&day, &expected, &sectors(prices), &cfg.actions);
    let params = serde_json::json!({
        "model": scorer.label(),
        "horizon": scorer.spec.label.horizon,
        "actions": cfg.actions,
        "expected_return": method,
        "data_hash": prices.until(as_of)?.data_hash(),
        "skipped": day.skipped.iter().map(|(s, why)| serde_json::json!({"symbol": s, "reason": why})).collect::<Vec<_>>(),
        "unscored": unscored,
    });
    Ok(DayRun { rows, params, skipped: day.skipped, unscored })
}
