//! Data-quality checks with a policy per check (`error`, `drop`, `warn`), a report, and a quarantine file.
//!
//! Row checks run on the raw parsed rows (before adjustment); series checks run per symbol on the sorted,
//! adjusted prices, so a split that `adj_close` explains is not reported as a suspicious move.
//!
//! Row defects and series findings get different remedies. A row defect (unparseable, non-finite, non-positive,
//! negative volume, OHLC-inconsistent, duplicate) is a bad row: `drop` removes it (and `--on-bad-rows` sets the
//! policy of exactly these checks). A series finding is about valid bars: the first bar after a gap is real data
//! (dropping it only widens the gap), so `gap`, `zero_volume_streak` and `unsorted` are `warn` or `error`, never
//! `drop`; a suspected unadjusted split is remedied by adjusting, not by dropping the day after it (which leaves
//! the split in the series): declared splits (`splits`, `--splits FILE` with `symbol,date,ratio`) and, with
//! `adjust_detected_splits`, the detected ones back-adjust the symbol's earlier OHLC (÷ ratio) and volume
//! (× ratio), each adjustment listed in the report. A reverting spike (a bad print) may be dropped.

mod checks;
mod quarantine;
pub(crate) mod report;
mod run;
mod splits;

pub use checks::{Check, Policy};

pub use report::{CheckSummary, FlagRecord, QualityReport, QuarantinedRow, SplitAdjustment};
pub use run::QualityRun;
pub use splits::{SplitEvent, read_splits};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Policies and thresholds of the quality stage (TOML: `[quality]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Policy per check; checks not listed use [`Check::default_policy`]. `drop` only for row defects and spikes.
    pub policies: BTreeMap<Check, Policy>,
    /// Overrides the policy of every row-defect check when set (`--on-bad-rows`); series checks keep theirs.
    pub on_bad_rows: Option<Policy>,
    /// Declared splits, back-adjusted before the series checks (`--splits FILE`).
    pub splits: Vec<SplitEvent>,
    /// Back-adjust every detected suspect split by the common ratio it is near (`--adjust-detected-splits`).
    pub adjust_detected_splits: bool,
    /// A gap is flagged when more trading days of the data's calendar than this are missing between two bars.
    pub max_gap_trading_days: usize,
    /// A gap is also flagged when two consecutive bars are more calendar days apart than this.
    pub max_gap_calendar_days: i64,
    /// A one-day move whose close ratio is below `1/(1+t)` or above `1+t` is a candidate split or spike.
    pub move_threshold: f64,
    /// Consecutive zero-volume days that make a streak.
    pub zero_volume_streak: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            policies: BTreeMap::new(),
            on_bad_rows: None,
            splits: Vec::new(),
            adjust_detected_splits: false,
            max_gap_trading_days: 5,
            max_gap_calendar_days: 14,
            move_threshold: 0.4,
            zero_volume_streak: 5,
        }
    }
}

impl QualityConfig {
    /// The policy in force for a check: `on_bad_rows` for row defects, else the configured or default policy.
    pub fn policy(&self, check: Check) -> Policy {
        let over = if check.is_row_defect() { self.on_bad_rows } else { None };
        over.or_else(|| self.policies.get(&check).copied()).unwrap_or_else(|| check.default_policy())
    }
}

/// Thresholds and policies, checked where the configuration enters (a quality config file with the command
/// line's overrides); loading takes them checked ([`crate::LoadOptions`]).
impl crate::Params for QualityConfig {
    type Error = Error;
    fn check(&self) -> Result<()> {
        if !(self.move_threshold > 0.0 && self.move_threshold.is_finite()) {
            return Err(Error::config("quality config", "move_threshold must be a positive number"));
        }
        if self.zero_volume_streak == 0 {
            return Err(Error::config("quality config", "zero_volume_streak must be at least 1"));
        }
        for (check, policy) in &self.policies {
            if *policy == Policy::Drop && !check.can_drop() {
                let remedy = match check {
                    Check::SuspectSplit => "declare the split (--splits FILE) or use --adjust-detected-splits",
                    Check::Gap => "the bar after a gap is valid data; dropping it widens the gap",
                    _ => "its rows are valid bars",
                };
                return Err(Error::config(
                    "quality config",
                    format!("`{}` cannot be `drop` (warn or error only): {remedy}", check.name()),
                ));
            }
        }
        for s in &self.splits {
            if !(s.ratio > 0.0 && s.ratio.is_finite()) {
                return Err(Error::config(
                    "quality config",
                    format!("split {} {}: ratio must be a positive number, got {}", s.symbol, s.date, s.ratio),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::splits::split_ratio;
    use super::*;

    #[test]
    fn split_ratios_are_recognised() {
        let name = |r: f64| split_ratio(r).map(|x| x.1);
        assert_eq!(name(0.5), Some("2:1"));
        assert_eq!(name(0.49), Some("2:1"));
        assert_eq!(name(0.34), Some("3:1"));
        assert_eq!(name(0.58), None);
        assert_eq!(name(2.02), Some("1:2"));
    }

    #[test]
    fn policies_default_and_override() {
        let mut cfg = QualityConfig::default();
        assert_eq!(cfg.policy(Check::Duplicate), Policy::Error);
        assert_eq!(cfg.policy(Check::OhlcInconsistent), Policy::Drop);
        assert_eq!(cfg.policy(Check::Gap), Policy::Warn);
        cfg.policies.insert(Check::Gap, Policy::Error);
        assert_eq!(cfg.policy(Check::Gap), Policy::Error);
        cfg.on_bad_rows = Some(Policy::Drop);
        // `--on-bad-rows` sets the row defects' policy; series checks keep theirs.
        assert_eq!(cfg.policy(Check::Gap), Policy::Error);
        assert_eq!(cfg.policy(Check::SuspectSplit), Policy::Warn);
        assert_eq!(cfg.policy(Check::Duplicate), Policy::Drop);
        assert_eq!(cfg.policy(Check::OhlcInconsistent), Policy::Drop);
        // `drop` is refused for findings about valid bars.
        for check in [Check::Gap, Check::SuspectSplit, Check::ZeroVolumeStreak, Check::Unsorted] {
            let mut c = QualityConfig::default();
            c.policies.insert(check, Policy::Drop);
            let e = crate::Params::check(&c).unwrap_err().to_string();
            assert!(e.contains(check.name()) && e.contains("cannot be `drop`"), "{e}");
        }
        let mut c = QualityConfig::default();
        c.policies.insert(Check::Spike, Policy::Drop);
        crate::Params::check(&c).unwrap();
    }

    #[test]
    fn policy_parses_from_text() {
        assert_eq!("drop".parse::<Policy>(), Ok(Policy::Drop));
        assert!("skip".parse::<Policy>().is_err());
    }
}
