//! Folds over the data's trading dates.
//!
//! - Walk-forward (`kind = "walk_forward"`, the default): expanding or rolling train window, a gap (purge) of at
//!   least the label horizon between the last training date and the first test date, an optional validation tail
//!   inside the train window (after its own gap), and refits every k folds.
//! - Combinatorial purged cross-validation (`kind = "cpcv"`, López de Prado 2018, ch. 12): the calendar is cut
//!   into `groups` equal contiguous groups; every choice of `test_groups` of them is one split whose model trains
//!   on the other groups and predicts the chosen ones. Training rows before a test group are purged per symbol
//!   (no label window reaches the test group, see the runner); the first `embargo_days` dates after a test group
//!   are not trained on. Each test group of a split is one [`Fold`] sharing the split's fit; the `C(N−1, k−1)`
//!   splits that test a group give it paths 0, 1, …, so every path is a complete out-of-sample history.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the training window moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// From the first date to the fold's last training date.
    #[default]
    Expanding,
    /// The last `train_days` dates before the gap.
    Rolling,
}

/// Which splitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// Walk-forward folds (expanding or rolling window).
    #[default]
    WalkForward,
    /// Combinatorial purged cross-validation.
    Cpcv,
}

/// Splitter parameters, in trading dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Walk-forward or combinatorial purged cross-validation.
    #[serde(default)]
    pub kind: SplitKind,
    /// CPCV: contiguous groups the calendar is cut into (N).
    #[serde(default = "default_groups")]
    pub groups: usize,
    /// CPCV: groups tested per split (k).
    #[serde(default = "default_test_groups")]
    pub test_groups: usize,
    /// CPCV: dates after each test group that are not trained on (default: [`SplitConfig::embargo`], the larger
    /// of the gap and 1 % of the calendar, López de Prado's rule of thumb).
    #[serde(default)]
    pub embargo_days: Option<usize>,
    /// Walk-forward: expanding or rolling training window.
    #[serde(default)]
    pub window: WindowKind,
    /// Rolling: training dates per fold. Expanding: ignored.
    #[serde(default = "default_train")]
    pub train_days: usize,
    /// Fewest training dates of the first fold.
    #[serde(default = "default_min_train")]
    pub min_train_days: usize,
    /// Test dates per fold.
    #[serde(default = "default_test")]
    pub test_days: usize,
    /// Dates between fold starts (default: `test_days`, contiguous test windows).
    #[serde(default)]
    pub step_days: Option<usize>,
    /// Dates dropped between the last training date and the first test date; at least the label horizon
    /// (default: the horizon).
    #[serde(default)]
    pub gap_days: Option<usize>,
    /// Dates at the end of the train window held out for validation / early stopping (0: none). A gap of
    /// `gap_days` separates them from the rest of the training dates too.
    #[serde(default)]
    pub valid_days: usize,
    /// Fit a new model every k folds; folds in between reuse the last fit (1: refit every fold).
    #[serde(default = "default_refit")]
    pub refit_every: usize,
}

fn default_train() -> usize {
    756
}
fn default_min_train() -> usize {
    504
}
fn default_test() -> usize {
    63
}
fn default_refit() -> usize {
    1
}
fn default_groups() -> usize {
    6
}
fn default_test_groups() -> usize {
    2
}

/// `n` choose `k` (saturating).
pub fn choose(n: usize, k: usize) -> usize {
    (0..k.min(n)).fold(1usize, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            kind: SplitKind::WalkForward,
            groups: default_groups(),
            test_groups: default_test_groups(),
            embargo_days: None,
            window: WindowKind::Expanding,
            train_days: default_train(),
            min_train_days: default_min_train(),
            test_days: default_test(),
            step_days: None,
            gap_days: None,
            valid_days: 0,
            refit_every: default_refit(),
        }
    }
}

/// A half-open range of indices into the trading-date calendar.
pub type Span = std::ops::Range<usize>;

/// One walk-forward fold, as index ranges into the calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fold {
    /// Fold number from 0.
    pub id: usize,
    /// Training dates (excluding the validation tail and its gap).
    pub train: Span,
    /// Validation dates (empty when none).
    pub valid: Span,
    /// Test dates.
    pub test: Span,
    /// The fold whose fit this fold uses (itself when it refits).
    pub fit_fold: usize,
    /// CPCV: the training spans of the split, each with the calendar index its labels must end before (the
    /// next test group's start, or the calendar's length). Empty for walk-forward folds (`train`/`valid` apply).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub train_parts: Vec<(Span, usize)>,
    /// CPCV: the backtest path this fold's predictions belong to (0 for walk-forward folds).
    pub path: usize,
}

impl SplitConfig {
    /// The gap for label horizon `horizon`.
    pub fn gap(&self, horizon: usize) -> usize {
        self.gap_days.unwrap_or(horizon)
    }

    /// Checks the parameters against the label horizon.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self, horizon: usize) -> Result<()> {
        let err = |m: String| Err(Error::Config(format!("split: {m}")));
        if self.kind == SplitKind::Cpcv {
            if self.groups < 2 || self.test_groups == 0 || self.test_groups >= self.groups {
                return err(format!(
                    "cpcv needs groups ≥ 2 and 1 ≤ test_groups < groups, got groups = {}, test_groups = {}",
                    self.groups, self.test_groups
                ));
            }
            if choose(self.groups, self.test_groups) > 1000 {
                return err(format!(
                    "cpcv with groups = {} and test_groups = {} makes {} splits (at most 1000)",
                    self.groups,
                    self.test_groups,
                    choose(self.groups, self.test_groups)
                ));
            }
        }
        if self.test_days == 0 || self.min_train_days == 0 || self.refit_every == 0 {
            return err("test_days, min_train_days and refit_every must be at least 1".into());
        }
        if self.step_days.is_some_and(|s| s < self.test_days) {
            return err(format!(
                "step_days = {} is shorter than test_days = {}: test windows would overlap",
                self.step_days.unwrap_or_default(),
                self.test_days
            ));
        }
        if self.gap(horizon) < horizon {
            return err(format!(
                "gap_days = {} is shorter than the label horizon {horizon}: training labels would overlap the test \
                 window",
                self.gap(horizon)
            ));
        }
        if self.window == WindowKind::Rolling && self.train_days < self.min_train_days {
            return err(format!(
                "rolling train_days = {} is below min_train_days = {}",
                self.train_days, self.min_train_days
            ));
        }
        if self.valid_days > 0 && self.valid_days + self.gap(horizon) >= self.min_train_days {
            return err(format!(
                "valid_days + gap_days = {} leaves no training dates within min_train_days = {}",
                self.valid_days + self.gap(horizon),
                self.min_train_days
            ));
        }
        Ok(())
    }

    /// Folds over a calendar of `n` trading dates. The first test window starts after `min_train_days` training
    /// dates and the gap; folds step by `step_days` until the calendar ends (the last test window may be short).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid parameters, [`Error::Data`] when the calendar is too short for one fold.
    pub fn folds(&self, n: usize, horizon: usize) -> Result<Vec<Fold>> {
        self.validate(horizon)?;
        if self.kind == SplitKind::Cpcv {
            return self.cpcv_folds(n, horizon);
        }
        let gap = self.gap(horizon);
        let step = self.step_days.unwrap_or(self.test_days);
        let first_test = self.min_train_days + gap;
        if first_test >= n {
            return Err(Error::Data(format!(
                "{n} trading dates are too few for one fold: min_train_days {} + gap {gap} + at least one test date",
                self.min_train_days
            )));
        }
        let mut folds = Vec::new();
        let mut test_start = first_test;
        while test_start < n {
            let id = folds.len();
            let train_end = test_start - gap; // exclusive
            let train_start = match self.window {
                WindowKind::Expanding => 0,
                WindowKind::Rolling => train_end.saturating_sub(self.train_days),
            };
            let (train, valid) = if self.valid_days > 0 {
                let valid_start = train_end - self.valid_days;
                (train_start..valid_start - gap, valid_start..train_end)
            } else {
                (train_start..train_end, train_end..train_end)
            };
            let fit_fold = id - id % self.refit_every;
            folds.push(Fold {
                id,
                train,
                valid,
                test: test_start..(test_start + self.test_days).min(n),
                fit_fold,
                train_parts: Vec::new(),
                path: 0,
            });
            test_start += step;
        }
        Ok(folds)
    }
}

impl SplitConfig {
    /// The embargo after each CPCV test group on a calendar of `n` dates: `embargo_days`, or by default the
    /// larger of the gap (the label horizon) and ⌈1 % of the calendar⌉ (López de Prado 2018, §7.4.2: training
    /// rows just after a test group carry features built from the test group's prices, which the label's span
    /// alone does not cover; 1 % of 2,520 dates is 26).
    pub fn embargo(&self, horizon: usize, n: usize) -> usize {
        self.embargo_days.unwrap_or_else(|| self.gap(horizon).max(n.div_ceil(100)))
    }

    /// CPCV folds (see the module doc): splits in lexicographic order of their test groups, one fold per test
    /// group, the split's first fold carrying the fit.
    fn cpcv_folds(&self, n: usize, horizon: usize) -> Result<Vec<Fold>> {
        let (groups, k, embargo) = (self.groups, self.test_groups, self.embargo(horizon, n));
        if n < groups * (embargo + 2) {
            return Err(Error::Data(format!(
                "{n} trading dates are too few for cpcv with {groups} groups and an embargo of {embargo} dates"
            )));
        }
        let bounds: Vec<Span> = (0..groups).map(|g| g * n / groups..(g + 1) * n / groups).collect();
        let mut next_path = vec![0usize; groups];
        let mut folds = Vec::new();
        for mask in 0u32..(1 << groups) {
            if mask.count_ones() as usize != k {
                continue;
            }
            let tested = |g: usize| (mask >> g) & 1 == 1;
            // Training runs: maximal stretches of untested groups, embargoed after a test group, purged before one.
            let mut parts = Vec::new();
            let mut g = 0;
            while g < groups {
                if tested(g) {
                    g += 1;
                    continue;
                }
                let first = g;
                while g < groups && !tested(g) {
                    g += 1;
                }
                let start = if first > 0 { bounds[first].start + embargo } else { bounds[first].start };
                let end = bounds[g - 1].end;
                let before = if g < groups { bounds[g].start } else { n };
                if start < end {
                    parts.push((start..end, before));
                }
            }
            let train = match (parts.first(), parts.last()) {
                (Some(a), Some(b)) => a.0.start..b.0.end,
                _ => 0..0,
            };
            let fit_fold = folds.len();
            for g in (0..groups).filter(|g| tested(*g)) {
                folds.push(Fold {
                    id: folds.len(),
                    train: train.clone(),
                    valid: 0..0,
                    test: bounds[g].clone(),
                    fit_fold,
                    train_parts: parts.clone(),
                    path: next_path[g],
                });
                next_path[g] += 1;
            }
        }
        Ok(folds)
    }
}

/// The sorted distinct dates of `dates`.
pub fn calendar(dates: impl IntoIterator<Item = NaiveDate>) -> Vec<NaiveDate> {
    use chrono::Datelike as _;
    let days = dates.into_iter().map(|d| d.num_days_from_ce()).collect();
    stockcast_features::prices::distinct_sorted(days)
        .into_iter()
        .filter_map(NaiveDate::from_num_days_from_ce_opt)
        .collect()
}
