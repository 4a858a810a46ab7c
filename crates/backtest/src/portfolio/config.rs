//! The strategy configuration: rule, rebalancing, fills, costs, capital, and its checks.

use super::{Deserialize, Error, Params, Result, Serialize};

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

/// How trading costs beyond the commission are charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CostModel {
    /// `slippage_bps` per side of the price.
    #[default]
    Bps,
    /// The square-root law of market impact: an order of q shares moves its price against it by the fraction
    /// `impact_coefficient · σ · √(q / ADV)`, σ the daily volatility and ADV the average daily volume (shares)
    /// over the `adv_days` bars up to the signal date (replaces `slippage_bps`; needs a volume column).
    SqrtImpact,
}

/// How the names a rule selects share each side's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Equally.
    #[default]
    Equal,
    /// In proportion to |score| (the short side's names by how negative their scores are).
    Score,
    /// In proportion to 1 / σ, σ the sample std of each name's daily returns over the `cov_days` dates up to the
    /// signal date on which all of the side's names have returns.
    InverseVol,
    /// Markowitz: maximise μᵀw − (λ/2) wᵀΣw over the side's names with Σw = the side's total and
    /// 0 ≤ w ≤ `max_weight`, μ the scores (the short side's negated), Σ their Ledoit–Wolf covariance over `cov_days`,
    /// λ = `risk_aversion`; solved as a QP by Clarabel (PyPortfolioOpt's `max_quadratic_utility`).
    MeanVariance,
    /// Equal risk contributions: w_i (Σw)_i the same for every name of a side, Σ Ledoit–Wolf over `cov_days`
    /// (Spinu's convex formulation, solved by Newton's method to a gradient of 1e-12).
    RiskParity,
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
    /// Slippage (`bps`) or square-root market impact (`sqrt_impact`).
    pub cost_model: CostModel,
    /// The square-root law's coefficient Y (cost fraction Y · σ · √(q / ADV)); 1 by default, the order of
    /// magnitude the empirical studies find (Tóth et al. 2011; Almgren et al. 2005 fit 0.3–1 on US equities).
    pub impact_coefficient: f64,
    /// Bars of the trailing average daily volume and volatility the impact and participation limit read.
    pub adv_days: usize,
    /// Largest order as a fraction of the trailing average daily volume; larger orders are cut to it and the
    /// shortfall reported (`None`: no limit).
    pub max_participation: Option<f64>,
    /// Annual fee on the value of short positions, in basis points, accrued daily (1/252 of it per date).
    pub borrow_bps: f64,
    /// Annual rate earned on a positive cash balance (paid on a negative one), compounded daily.
    pub cash_rate: f64,
    /// Capital levels of the capacity curve (the same signals simulated at each); empty: no curve.
    pub capacity: Vec<f64>,
    /// How each side's weight is shared among its names.
    pub weights: Weighting,
    /// Largest |weight| of one name (a fraction of equity); weights above it are capped and the excess shared
    /// among the others in proportion to their weights; a book that cannot meet it is an error, not a clip.
    pub max_weight: Option<f64>,
    /// Annualised volatility the book is scaled down to when its predicted volatility (Ledoit–Wolf covariance of
    /// the held names over `cov_days`) is above it; never levered up.
    pub target_vol: Option<f64>,
    /// Trailing trading dates of the returns `inverse_vol`, `mean_variance` and `target_vol` estimate from.
    pub cov_days: usize,
    /// λ of `mean_variance`.
    pub risk_aversion: f64,
    /// Smallest trade, as a fraction of equity: a held name whose rebalancing order is smaller is left as it is
    /// (entries and exits always trade).
    pub min_trade: f64,
    /// Gross exposure target Σ|w| (default: the rule's, 1).
    pub gross: Option<f64>,
    /// Net exposure target Σw (long-short only; default 0 for long_short, the gross for long-only rules).
    pub net: Option<f64>,
    /// Largest total |weight| of one side of the book in one sector (a fraction of equity); sectors above it are
    /// scaled down and the excess shared among the side's other sectors; a book that cannot meet it is an error.
    pub max_sector_weight: Option<f64>,
    /// Long-short only: the names are chosen sector by sector, each sector's long total equal to its short total
    /// (see the conventions), and every weighting shares a sector's total among that sector's names.
    pub sector_neutral: bool,
}

impl StrategyConfig {
    /// The long and the short side's total weight: from `gross` and `net` ((gross ± net) / 2 for long_short),
    /// else the rule's (1 and 0; long_short ½ and ½).
    pub fn side_totals(&self) -> (f64, f64) {
        match self.rule {
            Rule::LongShort { .. } => {
                let (g, n) = (self.gross.unwrap_or(1.0), self.net.unwrap_or(0.0));
                (f64::midpoint(g, n), f64::midpoint(g, -n))
            }
            _ => (self.gross.unwrap_or(1.0), 0.0),
        }
    }

    /// True when names that stay in the book are traded back to their target weight at every rebalance:
    /// `reweight = true`, or any weighting other than equal, or a volatility target (their targets move).
    pub fn reweights(&self) -> bool {
        self.reweight
            || self.weights != Weighting::Equal
            || self.target_vol.is_some()
            || self.max_sector_weight.is_some()
            || self.sector_neutral
    }

    /// True when the simulation needs each symbol's trailing volume and volatility.
    pub fn needs_liquidity(&self) -> bool {
        self.cost_model == CostModel::SqrtImpact || self.max_participation.is_some()
    }
}

/// The TOML/JSON shape of [`StrategyConfig`]: the rule's parameters flat beside `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StrategyToml {
    #[serde(default)]
    pub(super) kind: StrategyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) n_drop: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) threshold: Option<f64>,
    #[serde(default = "default_rebalance")]
    pub(super) rebalance_days: usize,
    #[serde(default)]
    pub(super) fill: Fill,
    #[serde(default)]
    pub(super) commission_bps: f64,
    #[serde(default)]
    pub(super) slippage_bps: f64,
    #[serde(default)]
    pub(super) reweight: bool,
    #[serde(default = "default_capital")]
    pub(super) capital: f64,
    #[serde(default)]
    pub(super) risk_free: f64,
    #[serde(default)]
    pub(super) delisting_return: f64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub(super) cost_model: CostModel,
    #[serde(default = "default_impact", skip_serializing_if = "is_default_impact")]
    pub(super) impact_coefficient: f64,
    #[serde(default = "default_adv_days", skip_serializing_if = "is_default_adv_days")]
    pub(super) adv_days: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_participation: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) borrow_bps: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) cash_rate: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) capacity: Vec<f64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub(super) weights: Weighting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_weight: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) target_vol: Option<f64>,
    #[serde(default = "default_cov_days", skip_serializing_if = "is_default_cov_days")]
    pub(super) cov_days: usize,
    #[serde(default = "default_risk_aversion", skip_serializing_if = "is_default_risk_aversion")]
    pub(super) risk_aversion: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) min_trade: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) gross: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) net: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_sector_weight: Option<f64>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub(super) sector_neutral: bool,
}

// The cost settings are written into a run's config only when set, so the configurations (and plan hashes) of
// runs without them are what they were.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_default_impact(v: &f64) -> bool {
    (*v - default_impact()).abs() < f64::EPSILON
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_default_risk_aversion(v: &f64) -> bool {
    (*v - default_risk_aversion()).abs() < f64::EPSILON
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_default_adv_days(v: &usize) -> bool {
    *v == default_adv_days()
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_default_cov_days(v: &usize) -> bool {
    *v == default_cov_days()
}
pub(super) fn default_cov_days() -> usize {
    63
}
pub(super) fn default_risk_aversion() -> f64 {
    1.0
}
pub(super) fn default_impact() -> f64 {
    1.0
}
pub(super) fn default_adv_days() -> usize {
    20
}

pub(super) fn default_k() -> usize {
    10
}
pub(super) fn default_rebalance() -> usize {
    1
}
pub(super) fn default_capital() -> f64 {
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
            cost_model: t.cost_model,
            impact_coefficient: t.impact_coefficient,
            adv_days: t.adv_days,
            max_participation: t.max_participation,
            borrow_bps: t.borrow_bps,
            cash_rate: t.cash_rate,
            capacity: t.capacity,
            weights: t.weights,
            max_weight: t.max_weight,
            target_vol: t.target_vol,
            cov_days: t.cov_days,
            risk_aversion: t.risk_aversion,
            min_trade: t.min_trade,
            gross: t.gross,
            net: t.net,
            max_sector_weight: t.max_sector_weight,
            sector_neutral: t.sector_neutral,
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
            cost_model: c.cost_model,
            impact_coefficient: c.impact_coefficient,
            adv_days: c.adv_days,
            max_participation: c.max_participation,
            borrow_bps: c.borrow_bps,
            cash_rate: c.cash_rate,
            capacity: c.capacity,
            weights: c.weights,
            max_weight: c.max_weight,
            target_vol: c.target_vol,
            cov_days: c.cov_days,
            risk_aversion: c.risk_aversion,
            min_trade: c.min_trade,
            gross: c.gross,
            net: c.net,
            max_sector_weight: c.max_sector_weight,
            sector_neutral: c.sector_neutral,
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
            cost_model: CostModel::Bps,
            impact_coefficient: default_impact(),
            adv_days: default_adv_days(),
            max_participation: None,
            borrow_bps: 0.0,
            cash_rate: 0.0,
            capacity: Vec::new(),
            weights: Weighting::Equal,
            max_weight: None,
            target_vol: None,
            cov_days: default_cov_days(),
            risk_aversion: default_risk_aversion(),
            min_trade: 0.0,
            gross: None,
            net: None,
            max_sector_weight: None,
            sector_neutral: false,
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
        if !(self.impact_coefficient >= 0.0 && self.impact_coefficient.is_finite()) {
            return err(format!("impact_coefficient must be ≥ 0, got {}", self.impact_coefficient));
        }
        if self.adv_days < 2 {
            return err(format!("adv_days must be at least 2 (a volatility needs two returns), got {}", self.adv_days));
        }
        if let Some(p) = self.max_participation
            && !(p > 0.0 && p <= 1.0)
        {
            return err(format!("max_participation is a fraction of the average daily volume in (0, 1], got {p}"));
        }
        if !(0.0..10_000.0).contains(&self.borrow_bps) {
            return err(format!("borrow_bps must be in [0, 10000), got {}", self.borrow_bps));
        }
        if !(self.cash_rate > -1.0 && self.cash_rate < 1.0) {
            return err(format!("cash_rate is an annual fraction, got {}", self.cash_rate));
        }
        if let Some(c) = self.capacity.iter().find(|c| !(**c > 0.0 && c.is_finite())) {
            return err(format!("capacity lists capital levels > 0, got {c}"));
        }
        if let Some(m) = self.max_weight {
            if !(m > 0.0 && m <= 1.0) {
                return err(format!("max_weight is a fraction of equity in (0, 1], got {m}"));
            }
            // A side of k names holds its total only if k · max_weight reaches it.
            let (long, short) = self.side_totals();
            let side = match self.rule {
                Rule::TopK { k, .. } => Some((k, long)),
                Rule::LongShort { k } => Some((k, long.max(short))),
                Rule::Threshold { .. } => None,
            };
            if let Some((k, total)) = side
                && (k as f64) * m < total - 1e-12
            {
                return err(format!(
                    "max_weight = {m} cannot hold a side of {k} names at {total} of equity (k * max_weight < {total})"
                ));
            }
        }
        if let Some(t) = self.target_vol
            && !(t > 0.0 && t.is_finite())
        {
            return err(format!("target_vol is an annualised volatility > 0, got {t}"));
        }
        if !(self.risk_aversion > 0.0 && self.risk_aversion.is_finite()) {
            return err(format!("risk_aversion must be > 0, got {}", self.risk_aversion));
        }
        if let Some(g) = self.gross
            && !(g > 0.0 && g <= 1.0)
        {
            return err(format!("gross is Σ|w| in (0, 1] of equity (the book is not levered), got {g}"));
        }
        match (self.rule, self.net) {
            (Rule::LongShort { .. }, Some(n)) if n.abs() > self.gross.unwrap_or(1.0) => {
                return err(format!("net = {n} exceeds the gross exposure {}", self.gross.unwrap_or(1.0)));
            }
            (Rule::LongShort { .. }, _) | (_, None) => {}
            (_, Some(_)) => return err("net applies to long_short (a long-only book's net is its gross)".into()),
        }
        if !(0.0..1.0).contains(&self.min_trade) {
            return err(format!("min_trade is a fraction of equity in [0, 1), got {}", self.min_trade));
        }
        if let Some(m) = self.max_sector_weight
            && !(m > 0.0 && m <= 1.0)
        {
            return err(format!("max_sector_weight is a fraction of equity in (0, 1], got {m}"));
        }
        if self.sector_neutral {
            if !matches!(self.rule, Rule::LongShort { .. }) {
                return err("sector_neutral applies to long_short (a long-only book cannot net out a sector)".into());
            }
            if self.net.is_some_and(|n| n != 0.0) {
                return err(format!("sector_neutral books are net 0, and net = {} was given", self.net.unwrap_or(0.0)));
            }
        }
        if self.cov_days < 3 {
            return err(format!("cov_days must be at least 3, got {}", self.cov_days));
        }
        Ok(())
    }
}
