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

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::load::{Bars, Layout, PriceField};

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

/// A stock split: from `date` on, one old share is `ratio` new shares (2 for a 2-for-1 split; 0.1 for a 1-for-10
/// reverse split). Rows before `date` are back-adjusted: OHLC ÷ ratio, volume × ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEvent {
    /// Symbol.
    pub symbol: String,
    /// First trading date at the new share count.
    pub date: NaiveDate,
    /// New shares per old share.
    pub ratio: f64,
}

/// Reads a splits file: a header, then `symbol,date,ratio` rows (dates as in price files).
///
/// # Errors
/// An unreadable file; [`Error::BadInput`] naming the file and line of a bad row.
pub fn read_splits(path: &Path) -> Result<Vec<SplitEvent>> {
    let text = crate::io::read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |m: String| Error::bad_input(path, format!("line {}: {m}", i + 1));
        if c.len() != 3 {
            return Err(bad(format!("expected symbol,date,ratio, got {line:?}")));
        }
        let date = crate::load::parse_date(c[1])
            .ok_or_else(|| bad(format!("date {:?} is not YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD", c[1])))?;
        let ratio: f64 = c[2]
            .parse()
            .ok()
            .filter(|r: &f64| *r > 0.0 && r.is_finite())
            .ok_or_else(|| bad(format!("ratio {:?} is not a positive number", c[2])))?;
        if c[0].is_empty() {
            return Err(bad("empty symbol".into()));
        }
        out.push(SplitEvent { symbol: c[0].to_owned(), date, ratio });
    }
    Ok(out)
}

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

    fn check_mut(&mut self, check: Check) -> &mut CheckSummary {
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

/// A flag raised by a check on one row.
#[derive(Debug, Clone)]
struct Flag {
    row: usize,
    check: Check,
    column: Option<String>,
    detail: String,
}

/// Runs the checks and keeps the report.
#[derive(Debug)]
pub struct QualityRun<'a> {
    cfg: &'a QualityConfig,
    /// The report so far.
    pub report: QualityReport,
}

impl<'a> QualityRun<'a> {
    /// Starts a run over `bars`.
    pub fn new(cfg: &'a QualityConfig, bars: &Bars) -> Self {
        let mut report = QualityReport::new(bars);
        for c in &mut report.checks {
            c.policy = cfg.policy(c.check);
        }
        Self { cfg, report }
    }

    fn record(bars: &Bars, f: &Flag) -> FlagRecord {
        FlagRecord {
            line: bars.line[f.row],
            symbol: bars.symbol_names[bars.symbol[f.row] as usize].clone(),
            date: bars.date[f.row],
            column: f.column.clone(),
            detail: f.detail.clone(),
        }
    }

    /// Applies the policy of each check to its flags: error out, remove rows (quarantined) or warn.
    /// `must_remove` rows (e.g. no date) are removed under `warn` too.
    fn apply(&mut self, bars: &mut Bars, flags: Vec<Flag>, must_remove: impl Fn(&Flag) -> bool) -> Result<()> {
        let mut by_check: BTreeMap<Check, Vec<Flag>> = BTreeMap::new();
        for f in flags {
            by_check.entry(f.check).or_default().push(f);
        }
        // Errors first, in check order, so the message names the most basic problem.
        for (check, flags) in &by_check {
            if self.cfg.policy(*check) == Policy::Error {
                let first = &flags[0];
                let col = first.column.as_deref().map(|c| format!(", column `{c}`")).unwrap_or_default();
                let summary = self.report.check_mut(*check);
                summary.flagged += flags.len();
                summary.action = "failed";
                let examples: Vec<FlagRecord> = flags.iter().take(5).map(|f| Self::record(bars, f)).collect();
                self.report.check_mut(*check).examples = examples;
                return Err(Error::Quality {
                    check: check.name().to_owned(),
                    count: flags.len(),
                    first: format!("{}{col}: {}", bars.describe_row(first.row), first.detail),
                    hint: format!(
                        " (use --on-bad-rows drop to quarantine such rows, or set the `{}` policy)",
                        check.name()
                    ),
                    report: None,
                });
            }
        }
        let mut remove = vec![false; bars.len()];
        for (check, flags) in &by_check {
            let policy = self.cfg.policy(*check);
            let examples: Vec<FlagRecord> = flags.iter().take(5).map(|f| Self::record(bars, f)).collect();
            let mut dropped_any = false;
            for f in flags {
                let drop = policy == Policy::Drop || must_remove(f);
                if drop && !remove[f.row] {
                    remove[f.row] = true;
                    dropped_any = true;
                    self.report.quarantine.push(QuarantinedRow {
                        flag: Self::record(bars, f),
                        check: *check,
                        values: bars.fields.iter().map(|(p, v)| (*p, v[f.row])).collect(),
                    });
                }
            }
            let summary = self.report.check_mut(*check);
            summary.flagged += flags.len();
            summary.examples = examples;
            summary.action = if policy == Policy::Drop || dropped_any { "dropped" } else { "warned" };
        }
        let removed = remove.iter().filter(|r| **r).count();
        if removed > 0 {
            let keep: Vec<bool> = remove.iter().map(|r| !r).collect();
            bars.retain_rows(&keep);
        }
        self.report.rows_quarantined += removed;
        self.report.rows_kept = bars.len();
        Ok(())
    }

    /// Row-level checks on raw rows: unparseable, non-finite, non-positive, negative volume, OHLC consistency,
    /// then duplicates and ordering. On success the rows are sorted by (symbol, date) with symbols in name order.
    pub fn row_checks(&mut self, bars: &mut Bars) -> Result<()> {
        let mut flags = Vec::new();
        let mut unparsed: std::collections::HashSet<(usize, &str)> = std::collections::HashSet::new();
        for i in &bars.issues {
            unparsed.insert((i.row, i.column.as_str()));
            flags.push(Flag {
                row: i.row,
                check: Check::Unparseable,
                column: Some(i.column.clone()),
                detail: format!("cannot parse {:?} as {}", i.value, i.expected),
            });
        }
        for (field, values) in &bars.fields {
            let col = bars.column_names.get(field).cloned().unwrap_or_else(|| field.name().to_owned());
            for (row, v) in values.iter().enumerate() {
                if !v.is_finite() {
                    if unparsed.contains(&(row, col.as_str())) {
                        continue;
                    }
                    let what = if v.is_nan() { "missing or NaN".to_owned() } else { format!("{v}") };
                    flags.push(Flag {
                        row,
                        check: Check::NonFinite,
                        column: Some(col.clone()),
                        detail: format!("{what} {}", field.name()),
                    });
                } else if *field == PriceField::Volume {
                    if *v < 0.0 {
                        flags.push(Flag {
                            row,
                            check: Check::NegativeVolume,
                            column: Some(col.clone()),
                            detail: format!("negative volume {v}"),
                        });
                    }
                } else if *v <= 0.0 {
                    flags.push(Flag {
                        row,
                        check: Check::NonPositive,
                        column: Some(col.clone()),
                        detail: format!("non-positive {} {v}", field.name()),
                    });
                }
            }
        }
        if let (Some(o), Some(h), Some(l), Some(c)) = (
            bars.field(PriceField::Open),
            bars.field(PriceField::High),
            bars.field(PriceField::Low),
            bars.field(PriceField::Close),
        ) {
            for row in 0..bars.len() {
                let (o, h, l, c) = (o[row], h[row], l[row], c[row]);
                if !(o.is_finite() && h.is_finite() && l.is_finite() && c.is_finite()) {
                    continue;
                }
                let tol = 1e-9 * h.abs().max(1.0);
                let detail = if h + tol < o.max(c) {
                    Some(format!("high {h} below max(open {o}, close {c})"))
                } else if l - tol > o.min(c) {
                    Some(format!("low {l} above min(open {o}, close {c})"))
                } else if h + tol < l {
                    Some(format!("high {h} below low {l}"))
                } else {
                    None
                };
                if let Some(detail) = detail {
                    flags.push(Flag { row, check: Check::OhlcInconsistent, column: None, detail });
                }
            }
        }
        // A row without a date or symbol cannot be placed: it is removed (and quarantined) even under `warn`.
        let unplaceable: Vec<bool> = (0..bars.len())
            .map(|r| bars.date[r].is_none() || bars.symbol_names[bars.symbol[r] as usize].is_empty())
            .collect();
        self.apply(bars, flags, |f| unplaceable[f.row])?;
        self.duplicates_and_order(bars)
    }

    fn duplicates_and_order(&mut self, bars: &mut Bars) -> Result<()> {
        // Unsorted: a symbol whose dates do not increase in file order.
        let mut last: HashMap<u32, (NaiveDate, usize)> = HashMap::new();
        let mut unsorted = Vec::new();
        for row in 0..bars.len() {
            let Some(d) = bars.date[row] else { continue };
            if let Some((prev, prev_row)) = last.get(&bars.symbol[row])
                && d < *prev
            {
                unsorted.push(Flag {
                    row,
                    check: Check::Unsorted,
                    column: None,
                    detail: format!("date comes after {prev} (line {})", bars.line[*prev_row]),
                });
            }
            last.insert(bars.symbol[row], (d, row));
        }
        // Sort by (symbol name, date, file order): stable, so duplicates keep their file order.
        let mut sym_rank: Vec<usize> = (0..bars.symbol_names.len()).collect();
        sym_rank.sort_by(|a, b| bars.symbol_names[*a].cmp(&bars.symbol_names[*b]));
        let mut rank_of = vec![0; sym_rank.len()];
        for (r, s) in sym_rank.iter().enumerate() {
            rank_of[*s] = r;
        }
        let mut order: Vec<usize> = (0..bars.len()).collect();
        order.sort_by_key(|&i| (rank_of[bars.symbol[i] as usize], bars.date[i], i));
        let mut dups = Vec::new();
        for w in order.windows(2) {
            let (a, b) = (w[0], w[1]);
            if bars.symbol[a] == bars.symbol[b] && bars.date[a] == bars.date[b] {
                dups.push(Flag {
                    row: b,
                    check: Check::Duplicate,
                    column: None,
                    detail: format!("same symbol and date as line {}", bars.line[a]),
                });
            }
        }
        let unsorted_policy = self.cfg.policy(Check::Unsorted);
        if !unsorted.is_empty() {
            let n = unsorted.len();
            let examples: Vec<FlagRecord> = unsorted.iter().take(5).map(|f| Self::record(bars, f)).collect();
            let summary = self.report.check_mut(Check::Unsorted);
            summary.flagged = n;
            summary.examples = examples;
            if unsorted_policy == Policy::Error {
                summary.action = "failed";
                let first = &unsorted[0];
                return Err(Error::Quality {
                    check: Check::Unsorted.name().to_owned(),
                    count: n,
                    first: format!("{}: {}", bars.describe_row(first.row), first.detail),
                    hint: " (set the `unsorted` policy to warn to let the loader sort the rows)".to_owned(),
                    report: None,
                });
            }
            summary.action = "sorted";
        }
        bars.permute(&order);
        // After permute, duplicate rows are adjacent; recompute their new row indices.
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        for d in &mut dups {
            d.row = new_index[d.row];
        }
        self.apply(bars, dups, |f| f.check == Check::Duplicate)?;
        Ok(())
    }

    /// Series checks per symbol on sorted, adjusted closes (and volume when present): gaps, suspected
    /// unadjusted splits, reverting spikes, zero-volume streaks.
    ///
    /// # Panics
    /// If called before [`QualityRun::row_checks`] succeeded (rows without a date or close remain).
    pub fn series_checks(&mut self, bars: &mut Bars) -> Result<()> {
        let close = bars.field(PriceField::Close).expect("close is always present after loading").to_vec();
        let open = bars.field(PriceField::Open).map(<[f64]>::to_vec);
        let volume = bars.field(PriceField::Volume).map(<[f64]>::to_vec);
        let dates: Vec<NaiveDate> = bars.date.iter().map(|d| d.expect("rows without a date were removed")).collect();
        let mut calendar: Vec<NaiveDate> = dates.clone();
        calendar.sort_unstable();
        calendar.dedup();
        let cal_index: HashMap<NaiveDate, usize> = calendar.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        let t = self.cfg.move_threshold;
        let (lo, hi) = (1.0 / (1.0 + t), 1.0 + t);
        let mut flags = Vec::new();
        // Detected splits to back-adjust: (first row of the symbol, the split row, new shares per old share).
        let mut detected: Vec<(usize, usize, f64)> = Vec::new();
        let n = bars.len();
        let mut start = 0;
        while start < n {
            let mut end = start + 1;
            while end < n && bars.symbol[end] == bars.symbol[start] {
                end += 1;
            }
            for row in start + 1..end {
                let (d0, d1) = (dates[row - 1], dates[row]);
                let missing = cal_index[&d1] - cal_index[&d0] - 1;
                let days = (d1 - d0).num_days();
                if missing > self.cfg.max_gap_trading_days || days > self.cfg.max_gap_calendar_days {
                    flags.push(Flag {
                        row,
                        check: Check::Gap,
                        column: None,
                        detail: format!("{missing} trading day(s), {days} calendar days since previous bar {d0}"),
                    });
                }
                // A split shows at the open: the overnight ratio open/previous close sits on the split ratio,
                // whatever the stock did during the day. Close-only data falls back to the close ratio.
                let r = close[row] / close[row - 1];
                let g = open.as_ref().map_or(r, |o| o[row] / close[row - 1]);
                let next = (row + 1 < end).then(|| close[row + 1] / close[row]);
                if r < lo || r > hi {
                    let reverts = next.is_some_and(|n| n.ln() * r.ln() < 0.0 && n.ln().abs() >= 0.5 * r.ln().abs());
                    if reverts {
                        flags.push(Flag {
                            row,
                            check: Check::Spike,
                            column: Some("close".to_owned()),
                            detail: format!("close moved {:+.1}% and reverted the next day", (r - 1.0) * 100.0),
                        });
                        continue;
                    }
                }
                if g < lo || g > hi {
                    let reverts = next.is_some_and(|n| n.ln() * g.ln() < 0.0 && n.ln().abs() >= 0.5 * g.ln().abs());
                    if let (false, Some((factor, ratio))) = (reverts, split_ratio(g)) {
                        if self.cfg.adjust_detected_splits {
                            detected.push((start, row, 1.0 / factor));
                        }
                        let what = if open.is_some() { "opened" } else { "closed" };
                        let hint = if open.is_some() { "" } else { " (close-only data: could be a real move)" };
                        flags.push(Flag {
                            row,
                            check: Check::SuspectSplit,
                            column: Some(if open.is_some() { "open" } else { "close" }.to_owned()),
                            detail: format!(
                                "{what} {:+.1}% from the previous close (ratio {g:.3}, near a {ratio} split) and \
                                 stayed: unadjusted split? provide adj_close{hint}",
                                (g - 1.0) * 100.0
                            ),
                        });
                    }
                }
            }
            if let Some(v) = &volume {
                let mut run = start;
                while run < end {
                    if v[run] == 0.0 {
                        let mut stop = run;
                        while stop < end && v[stop] == 0.0 {
                            stop += 1;
                        }
                        if stop - run >= self.cfg.zero_volume_streak {
                            for row in run..stop {
                                flags.push(Flag {
                                    row,
                                    check: Check::ZeroVolumeStreak,
                                    column: Some("volume".to_owned()),
                                    detail: format!("{} consecutive zero-volume days from {}", stop - run, dates[run]),
                                });
                            }
                        }
                        run = stop;
                    } else {
                        run += 1;
                    }
                }
            }
            start = end;
        }
        if !detected.is_empty() {
            // Adjusted suspect splits are remedied: reported as `adjusted`, not subject to the split policy.
            let rows: Vec<usize> = detected.iter().map(|d| d.1).collect();
            let (adjusted, rest): (Vec<Flag>, Vec<Flag>) =
                flags.into_iter().partition(|f| f.check == Check::SuspectSplit && rows.contains(&f.row));
            let examples: Vec<FlagRecord> = adjusted.iter().take(5).map(|f| Self::record(bars, f)).collect();
            let summary = self.report.check_mut(Check::SuspectSplit);
            summary.flagged += adjusted.len();
            summary.examples = examples;
            summary.action = "adjusted";
            flags = rest;
            for (first, row, ratio) in detected {
                let date = dates[row];
                let symbol = bars.symbol_names[bars.symbol[row] as usize].clone();
                back_adjust(bars, first..row, ratio);
                self.report.split_adjustments.push(SplitAdjustment {
                    symbol,
                    date,
                    ratio,
                    source: "detected",
                    rows: row - first,
                });
            }
        }
        self.apply(bars, flags, |_| false)
    }

    /// Back-adjusts the declared splits (`splits`) on rows sorted by (symbol, date): each split divides the
    /// symbol's earlier OHLC by its ratio and multiplies their volume by it. A split of a symbol the data does
    /// not have adjusts nothing (listed with 0 rows).
    pub fn declared_splits(&mut self, bars: &mut Bars) {
        for s in &self.cfg.splits {
            let code = bars.symbol_names.iter().position(|n| *n == s.symbol);
            let rows: Vec<usize> = (0..bars.len())
                .filter(|&i| Some(bars.symbol[i] as usize) == code && bars.date[i].is_some_and(|d| d < s.date))
                .collect();
            if let (Some(&a), Some(&b)) = (rows.first(), rows.last()) {
                back_adjust(bars, a..b + 1, s.ratio);
            }
            self.report.split_adjustments.push(SplitAdjustment {
                symbol: s.symbol.clone(),
                date: s.date,
                ratio: s.ratio,
                source: "declared",
                rows: rows.len(),
            });
        }
    }

    /// Finishes the report with the kept rows' symbols and date range.
    pub fn finish(mut self, bars: &Bars, adjusted: bool) -> QualityReport {
        let mut syms: Vec<u32> = bars.symbol.clone();
        syms.sort_unstable();
        syms.dedup();
        self.report.symbols = syms.len();
        self.report.first_date = bars.date.iter().flatten().min().copied();
        self.report.last_date = bars.date.iter().flatten().max().copied();
        self.report.rows_kept = bars.len();
        self.report.adjusted = adjusted;
        self.report
    }
}

/// Divides OHLC of `rows` by `ratio` and multiplies their volume by it.
fn back_adjust(bars: &mut Bars, rows: std::ops::Range<usize>, ratio: f64) {
    for (f, values) in &mut bars.fields {
        let v = &mut values[rows.clone()];
        match f {
            PriceField::Open | PriceField::High | PriceField::Low | PriceField::Close => {
                for x in v.iter_mut() {
                    *x /= ratio;
                }
            }
            PriceField::Volume => {
                for x in v.iter_mut() {
                    *x *= ratio;
                }
            }
            PriceField::AdjClose => {}
        }
    }
}

/// The common split (price ratio, name: `2:1`, `3:2`, `1:4`...) a close ratio is near (within 4 %), if any.
fn split_ratio(r: f64) -> Option<(f64, &'static str)> {
    const RATIOS: [(f64, &str); 14] = [
        (1.0 / 2.0, "2:1"),
        (1.0 / 3.0, "3:1"),
        (2.0 / 3.0, "3:2"),
        (1.0 / 4.0, "4:1"),
        (1.0 / 5.0, "5:1"),
        (1.0 / 10.0, "10:1"),
        (1.0 / 20.0, "20:1"),
        (2.0, "1:2"),
        (3.0, "1:3"),
        (1.5, "2:3"),
        (4.0, "1:4"),
        (5.0, "1:5"),
        (10.0, "1:10"),
        (20.0, "1:20"),
    ];
    RATIOS.iter().find(|(x, _)| (r / x - 1.0).abs() < 0.04).copied()
}

#[cfg(test)]
mod tests {
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
