//! The checks: row defects on the parsed rows, series findings per symbol, the policy of each applied (keep,
//! drop to the quarantine, warn or stop), and declared or detected splits adjusted.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::report::{CheckSummary, FlagRecord, QualityReport, QuarantinedRow, SplitAdjustment};
use super::splits::{back_adjust, split_ratio};
use super::{Check, Policy, QualityConfig};
use crate::error::{Error, Result};
use crate::load::{Bars, PriceField};
use crate::prices::{DayIndex, date_to_days, distinct_sorted};

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
            file: (!bars.file.is_empty()).then(|| bars.file_of(f.row).display().to_string()),
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
                    hint: hint(*check, flags.len(), bars.len(), &first.detail),
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
        // One flag per row, naming every cell of it that did not parse (a Yahoo `null` row fails in six columns:
        // one row to report, quarantine and count, not six).
        let mut by_row: BTreeMap<usize, Vec<&crate::load::ParseIssue>> = BTreeMap::new();
        for i in &bars.issues {
            unparsed.insert((i.row, i.column.as_str()));
            by_row.entry(i.row).or_default().push(i);
        }
        for (row, issues) in by_row {
            let first = issues[0];
            let same = issues.iter().all(|i| i.value == first.value && i.expected == first.expected);
            let detail = if issues.len() == 1 {
                format!("cannot parse {:?} as {}", first.value, first.expected)
            } else if same {
                let cols: Vec<&str> = issues.iter().map(|i| i.column.as_str()).collect();
                format!("cannot parse {:?} as {} in {}", first.value, first.expected, cols.join(", "))
            } else {
                let cells: Vec<String> =
                    issues.iter().map(|i| format!("{} {:?} (not {})", i.column, i.value, i.expected)).collect();
                format!("cannot parse {}", cells.join(", "))
            };
            flags.push(Flag { row, check: Check::Unparseable, column: Some(first.column.clone()), detail });
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
        // Each symbol's last date and row so far, by symbol number.
        let mut last: Vec<Option<(NaiveDate, usize)>> = vec![None; bars.symbol_names.len()];
        let mut unsorted = Vec::new();
        for row in 0..bars.len() {
            let Some(d) = bars.date[row] else { continue };
            if let Some((prev, prev_row)) = &last[bars.symbol[row] as usize]
                && d < *prev
            {
                unsorted.push(Flag {
                    row,
                    check: Check::Unsorted,
                    column: None,
                    detail: format!("date comes after {prev} ({})", bars.locate(*prev_row)),
                });
            }
            last[bars.symbol[row] as usize] = Some((d, row));
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
                    detail: format!("same symbol and date as {}", bars.locate(a)),
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
        // Each date's place among the panel's trading dates (every date is one of them).
        let calendar = DayIndex::new(distinct_sorted(dates.iter().map(|d| date_to_days(*d)).collect()));
        let cal_index = |d: NaiveDate| calendar.position(date_to_days(d)).unwrap_or_default();
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
            // Whether the previous row was a spike: its close is a bad print, so the next open is measured
            // against the close before it (a bad close followed by a normal open is not a split).
            let mut after_spike = false;
            for row in start + 1..end {
                let (d0, d1) = (dates[row - 1], dates[row]);
                let missing = cal_index(d1) - cal_index(d0) - 1;
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
                let reference = if after_spike && row >= start + 2 { close[row - 2] } else { close[row - 1] };
                let after = std::mem::take(&mut after_spike);
                let r = close[row] / close[row - 1];
                let g = open.as_ref().map_or(r, |o| o[row] / reference);
                let next = (row + 1 < end).then(|| close[row + 1] / close[row]);
                if !after && (r < lo || r > hi) {
                    let reverts = next.is_some_and(|n| n.ln() * r.ln() < 0.0 && n.ln().abs() >= 0.5 * r.ln().abs());
                    if reverts {
                        flags.push(Flag {
                            row,
                            check: Check::Spike,
                            column: Some("close".to_owned()),
                            detail: format!("close moved {:+.1}% and reverted the next day", (r - 1.0) * 100.0),
                        });
                        after_spike = true;
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

impl QualityReport {
    /// An empty report for `bars`.
    pub(crate) fn new(bars: &Bars) -> Self {
        Self {
            source: bars.source.display().to_string(),
            layout: bars.layout,
            dialect: bars.dialect,
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
}

/// The remedy an error names. Dates that do not parse in most rows are a format to declare (`--date-format`), not
/// rows to drop: `--on-bad-rows drop` would remove them all.
fn hint(check: Check, flagged: usize, rows: usize, detail: &str) -> String {
    if check == Check::Unparseable && detail.contains("as a date") && flagged * 2 > rows {
        let value = detail.split('"').nth(1).unwrap_or_default();
        let example = date_format_example(value)
            .map(|(fmt, alt)| format!(", e.g. --date-format '{fmt}' for {value:?}{alt}"))
            .unwrap_or_default();
        return format!(
            " (most dates are not YYYY-MM-DD: give their format with --date-format, or `date_format` under [data] \
             in a config{example})"
        );
    }
    format!(" (use --on-bad-rows drop to quarantine such rows, or set the `{}` policy)", check.name())
}

/// A strftime format that reads `value`, with a note when another one would too (day and month swapped).
fn date_format_example(value: &str) -> Option<(&'static str, &'static str)> {
    let parts: Vec<&str> = value.split(['/', '.', '-']).collect();
    let sep = value.chars().find(|c| matches!(c, '/' | '.' | '-'))?;
    let num = |s: &str| s.parse::<u32>().ok();
    if parts.len() != 3 || parts[2].len() != 4 || num(parts[2]).is_none() {
        return None;
    }
    match (num(parts[0]), num(parts[1]), sep) {
        (Some(_), None, '-') => Some(("%d-%b-%Y", "")),
        (Some(a), Some(_), '/') if a > 12 => Some(("%d/%m/%Y", "")),
        (Some(_), Some(b), '/') if b > 12 => Some(("%m/%d/%Y", "")),
        (Some(_), Some(_), '/') => Some(("%m/%d/%Y", " (or '%d/%m/%Y' when the day comes first)")),
        (Some(_), Some(_), '.') => Some(("%d.%m.%Y", "")),
        (Some(_), Some(_), '-') => Some(("%d-%m-%Y", " (or '%m-%d-%Y' when the month comes first)")),
        _ => None,
    }
}
