//! The checks and their policies (a leaf module, like the report that names them).

use serde::{Deserialize, Serialize};

/// What to do with rows a check flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Stop with an error naming the first flagged row.
    Error,
    /// Remove the flagged rows and write them to the quarantine file with the reason.
    Drop,
    /// Keep the rows and report them.
    Warn,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "error" => Ok(Self::Error),
            "drop" => Ok(Self::Drop),
            "warn" => Ok(Self::Warn),
            other => Err(format!("unknown policy `{other}` (expected error, drop or warn)")),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Drop => "drop",
            Self::Warn => "warn",
        })
    }
}

/// The checks, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A value (date, symbol or number) could not be parsed.
    Unparseable,
    /// A price or volume is missing, NaN or infinite.
    NonFinite,
    /// A price is zero or negative.
    NonPositive,
    /// Volume is negative.
    NegativeVolume,
    /// `high < max(open, close)`, `low > min(open, close)` or `high < low`.
    OhlcInconsistent,
    /// The same (symbol, date) occurs more than once (rows after the first are flagged).
    Duplicate,
    /// A symbol's rows are not in increasing date order in the file (the loader sorts them; nothing is lost).
    Unsorted,
    /// More trading days (of the data's own calendar) or calendar days missing between two bars than allowed.
    Gap,
    /// A one-day close move close to a common split ratio that does not revert: likely an unadjusted split.
    SuspectSplit,
    /// A one-day move beyond the spike threshold that reverts the next day: likely a bad print.
    Spike,
    /// A run of consecutive zero-volume days.
    ZeroVolumeStreak,
}

impl Check {
    /// All checks in run order.
    pub const ALL: [Check; 11] = [
        Self::Unparseable,
        Self::NonFinite,
        Self::NonPositive,
        Self::NegativeVolume,
        Self::OhlcInconsistent,
        Self::Duplicate,
        Self::Unsorted,
        Self::Gap,
        Self::SuspectSplit,
        Self::Spike,
        Self::ZeroVolumeStreak,
    ];

    /// Snake-case name used in reports, configs and the quarantine file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unparseable => "unparseable",
            Self::NonFinite => "non_finite",
            Self::NonPositive => "non_positive",
            Self::NegativeVolume => "negative_volume",
            Self::OhlcInconsistent => "ohlc_inconsistent",
            Self::Duplicate => "duplicate",
            Self::Unsorted => "unsorted",
            Self::Gap => "gap",
            Self::SuspectSplit => "suspect_split",
            Self::Spike => "spike",
            Self::ZeroVolumeStreak => "zero_volume_streak",
        }
    }

    /// True for checks that find bad rows (as opposed to findings about a symbol's series of valid bars).
    pub fn is_row_defect(self) -> bool {
        matches!(
            self,
            Self::Unparseable
                | Self::NonFinite
                | Self::NonPositive
                | Self::NegativeVolume
                | Self::OhlcInconsistent
                | Self::Duplicate
        )
    }

    /// Whether `drop` is a remedy for this check: row defects and reverting spikes only.
    pub fn can_drop(self) -> bool {
        self.is_row_defect() || self == Self::Spike
    }

    /// The default policy: errors for unusable values, drop for OHLC inconsistencies, warn for the rest.
    pub fn default_policy(self) -> Policy {
        match self {
            Self::Unparseable | Self::NonFinite | Self::NonPositive | Self::NegativeVolume | Self::Duplicate => {
                Policy::Error
            }
            Self::OhlcInconsistent => Policy::Drop,
            Self::Unsorted | Self::Gap | Self::SuspectSplit | Self::Spike | Self::ZeroVolumeStreak => Policy::Warn,
        }
    }
}
