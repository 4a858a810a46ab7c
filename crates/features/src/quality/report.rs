//! The quality report: what each check flagged and did, the split adjustments, the quarantined rows, a printed
//! summary and the quarantine file.

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::Serialize;

use super::checks::{Check, Policy};
use crate::fields::{Layout, PriceField};

/// A split adjustment the quality stage applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitAdjustment {
    /// Symbol.
    pub symbol: String,
    /// First date at the new share count.
    pub date: NaiveDate,
    /// New shares per old share; earlier OHLC were divided by it, volume multiplied.
    pub ratio: f64,
    /// `declared` (a splits file or config) or `detected` (a suspect split adjusted by its common ratio).
    pub source: &'static str,
    /// Rows adjusted (the symbol's rows before `date`).
    pub rows: usize,
}

/// One flagged row as it appears in reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagRecord {
    /// The row's file, when the source is a folder or pattern of files (else the report's source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line (CSV) or row (Parquet).
    pub line: u64,
    /// Symbol.
    pub symbol: String,
    /// Date, if it could be parsed.
    pub date: Option<NaiveDate>,
    /// Column involved, if one.
    pub column: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSummary {
    /// Check name.
    pub check: Check,
    /// Policy applied.
    pub policy: Policy,
    /// Rows flagged.
    pub flagged: usize,
    /// `ok`, `failed`, `dropped`, `warned` or `sorted`.
    pub action: &'static str,
    /// Up to five flagged rows.
    pub examples: Vec<FlagRecord>,
}

/// A removed row with its reason, as written to the quarantine file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinedRow {
    /// Where the row came from.
    pub flag: FlagRecord,
    /// The check that removed it.
    pub check: Check,
    /// The row's values (NaN where missing), in [`PriceField::ALL`] order where present.
    pub values: Vec<(PriceField, f64)>,
}

/// The quality stage's report: what was read, what each check found, what was kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Input file.
    pub source: String,
    /// Detected layout.
    pub layout: Layout,
    /// How a CSV that is not comma-separated was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<&'static str>,
    /// Rows parsed (wide: non-empty cells).
    pub rows_read: usize,
    /// Rows kept after the checks.
    pub rows_kept: usize,
    /// Rows removed (all listed in the quarantine file).
    pub rows_quarantined: usize,
    /// Empty cells of a wide file (symbol not trading that day): not rows, not data lost.
    pub empty_wide_cells: usize,
    /// Distinct symbols kept.
    pub symbols: usize,
    /// First date kept.
    pub first_date: Option<NaiveDate>,
    /// Last date kept.
    pub last_date: Option<NaiveDate>,
    /// Whether OHLC were adjusted by `adj_close / close`.
    pub adjusted: bool,
    /// Per-check outcomes, in [`Check::ALL`] order.
    pub checks: Vec<CheckSummary>,
    /// Split adjustments applied (declared and detected), in the order applied.
    pub split_adjustments: Vec<SplitAdjustment>,
    /// Every removed row.
    #[serde(skip)]
    pub quarantine: Vec<QuarantinedRow>,
}

impl QualityReport {
    /// The summary of one check.
    ///
    /// # Panics
    /// Never: a report holds a summary for every check.
    pub fn check(&self, check: Check) -> &CheckSummary {
        self.checks.iter().find(|c| c.check == check).expect("every check has a summary")
    }

    pub(super) fn check_mut(&mut self, check: Check) -> &mut CheckSummary {
        self.checks.iter_mut().find(|c| c.check == check).expect("every check has a summary")
    }

    /// A human-readable summary (several lines) for stderr.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let range = match (self.first_date, self.last_date) {
            (Some(a), Some(b)) => format!("{a} .. {b}"),
            _ => "no dates".to_owned(),
        };
        // After a failed check nothing was kept: say where it stopped instead of counting rows as kept.
        let outcome = match self.checks.iter().find(|c| c.action == "failed") {
            Some(c) => format!("stopped at the failed check `{}`", c.check.name()),
            None => format!("{} kept, {} quarantined", self.rows_kept, self.rows_quarantined),
        };
        let _ = writeln!(
            s,
            "quality: {} ({} layout{}): {} rows read, {outcome}; {} symbols, {}{}",
            self.source,
            self.layout,
            self.dialect.map(|d| format!(", {d}")).unwrap_or_default(),
            self.rows_read,
            self.symbols,
            range,
            if self.adjusted { "; OHLC adjusted by adj_close/close" } else { "" }
        );
        if self.empty_wide_cells > 0 {
            let _ =
                writeln!(s, "  {} empty cells in the wide file (symbol not trading that day)", self.empty_wide_cells);
        }
        for c in &self.checks {
            if c.flagged == 0 {
                continue;
            }
            let _ =
                writeln!(s, "  {:<20} {:>7} row(s)  policy {:<5} -> {}", c.check.name(), c.flagged, c.policy, c.action);
            for e in c.examples.iter().take(3) {
                let date = e.date.map_or_else(|| "?".to_owned(), |d| d.to_string());
                let file = e.file.as_deref().map(|f| format!("{f} ")).unwrap_or_default();
                let _ = writeln!(s, "      {file}line {} {} {}: {}", e.line, e.symbol, date, e.detail);
            }
        }
        if self.checks.iter().all(|c| c.flagged == 0) {
            let _ = writeln!(s, "  all {} checks passed", self.checks.len());
        }
        for a in &self.split_adjustments {
            let _ = writeln!(
                s,
                "  split adjusted ({}): {} {} ratio {} ({} earlier rows: OHLC ÷ {}, volume × {})",
                a.source, a.symbol, a.date, a.ratio, a.rows, a.ratio, a.ratio
            );
        }
        s
    }
}
