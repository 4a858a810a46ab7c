//! The quality report: what each check flagged and did, the split adjustments, the quarantined rows, a printed
//! summary and the quarantine file.

use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use super::{Check, Policy};
use crate::error::Result;
use crate::load::{Bars, Layout, PriceField};

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
    /// An empty report for `bars`.
    pub(crate) fn new(bars: &Bars) -> Self {
        Self {
            source: bars.source.display().to_string(),
            layout: bars.layout,
            rows_read: bars.len(),
            rows_kept: bars.len(),
            rows_quarantined: 0,
            empty_wide_cells: bars.empty_wide_cells,
            symbols: 0,
            first_date: None,
            last_date: None,
            adjusted: false,
            checks: Check::ALL
                .iter()
                .map(|c| CheckSummary {
                    check: *c,
                    policy: c.default_policy(),
                    flagged: 0,
                    action: "ok",
                    examples: vec![],
                })
                .collect(),
            split_adjustments: Vec::new(),
            quarantine: Vec::new(),
        }
    }

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
        let _ = writeln!(
            s,
            "quality: {} ({} layout): {} rows read, {} kept, {} quarantined; {} symbols, {}{}",
            self.source,
            self.layout,
            self.rows_read,
            self.rows_kept,
            self.rows_quarantined,
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
                let _ = writeln!(s, "      line {} {} {}: {}", e.line, e.symbol, date, e.detail);
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

    /// Writes the quarantine CSV (header always, one line per removed row) atomically.
    pub fn write_quarantine(&self, path: &Path) -> Result<()> {
        let mut out = String::from("file,line,symbol,date,check,column,detail,open,high,low,close,volume,adj_close\n");
        for q in &self.quarantine {
            let f = &q.flag;
            let value = |p: PriceField| {
                q.values
                    .iter()
                    .find(|(g, _)| *g == p)
                    .map_or_else(String::new, |(_, v)| if v.is_nan() { String::new() } else { v.to_string() })
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&self.source),
                f.line,
                csv_field(&f.symbol),
                f.date.map(|d| d.to_string()).unwrap_or_default(),
                q.check.name(),
                csv_field(f.column.as_deref().unwrap_or("")),
                csv_field(&f.detail),
                value(PriceField::Open),
                value(PriceField::High),
                value(PriceField::Low),
                value(PriceField::Close),
                value(PriceField::Volume),
                value(PriceField::AdjClose),
            );
        }
        crate::io::write_atomic(path, out.as_bytes())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}
