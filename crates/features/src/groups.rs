//! Point-in-time classification: which sector (and industry) a symbol belonged to on each date.
//!
//! A classification file is a CSV with a header: `symbol,start,end,sector[,industry]`. Each line is one span,
//! both ends inclusive; an empty `end` means "still so"; a symbol may have several spans (a reclassification
//! ends one and starts the next) but they may not overlap. [`crate::PriceFrame::with_classification`] writes each
//! price row's sector (and industry) for the row's date into the `sector` (`industry`) column, replacing a static
//! securities file's sector: group features (`group_rank`, `group_zscore`), `label.demean = "sector"` and the tear
//! sheet's per-sector tables then use the class a symbol had on that date, not the one it has today. A row whose
//! date no span covers has no sector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::error::{Error, Result};

/// One classification span.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: NaiveDate,
    end: Option<NaiveDate>,
    sector: String,
    industry: Option<String>,
    line: usize,
}

/// Sector (and industry) spans per symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The file it was read from.
    pub source: PathBuf,
    spans: BTreeMap<String, Vec<Span>>,
    /// Whether the file has an `industry` column.
    pub has_industry: bool,
}

impl Classification {
    /// Reads a classification file (see the module doc).
    ///
    /// # Errors
    /// [`Error::Read`] for an unreadable file; [`Error::BadInput`] naming the column or line of a missing column, an
    /// empty symbol or sector, a bad date, an end before its start, or a span that overlaps an earlier one of the
    /// same symbol (naming both lines); a file without spans.
    pub fn load(path: &Path) -> Result<Self> {
        let df = crate::load::read_csv_as_strings(path)?;
        let names: Vec<String> = df.get_column_names().iter().map(ToString::to_string).collect();
        let find = |aliases: &[&str]| names.iter().find(|n| aliases.contains(&crate::load::norm(n).as_str()));
        let column = |aliases: &[&str], what: &str| -> Result<polars::prelude::StringChunked> {
            let name = find(aliases).ok_or_else(|| {
                Error::bad_input(
                    path,
                    format!("no `{what}` column (a classification is symbol,start,end,sector[,industry])"),
                )
            })?;
            Ok(df.column(name)?.str()?.clone())
        };
        let symbol = column(crate::fields::SYMBOL_ALIASES, "symbol")?;
        let start = column(&["start", "from", "startdate"], "start")?;
        let end = column(&["end", "to", "enddate"], "end")?;
        let sector = column(&["sector", "gicssector"], "sector")?;
        let industry = find(&["industry", "gicsindustry"]).map(|n| df.column(n)?.str().cloned()).transpose()?;
        let bad = |line: usize, m: String| Error::bad_input(path, format!("line {line}: {m}"));
        let cell = |c: &polars::prelude::StringChunked, row: usize| c.get(row).map_or("", str::trim).to_owned();
        let mut spans: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for row in 0..df.height() {
            let line = row + 2;
            let s = cell(&symbol, row);
            if s.is_empty() {
                return Err(bad(line, "empty symbol".into()));
            }
            let first = cell(&start, row);
            let first = crate::load::parse_date(&first)
                .ok_or_else(|| bad(line, format!("{s}: start {first:?} must be YYYY-MM-DD")))?;
            let last = cell(&end, row);
            let last = if last.is_empty() {
                None
            } else {
                let d = crate::load::parse_date(&last)
                    .ok_or_else(|| bad(line, format!("{s}: end {last:?} must be YYYY-MM-DD or empty")))?;
                if d < first {
                    return Err(bad(line, format!("{s}: the span ends ({d}) before it starts ({first})")));
                }
                Some(d)
            };
            let sec = cell(&sector, row);
            if sec.is_empty() {
                return Err(bad(line, format!("{s}: empty sector")));
            }
            let ind = industry.as_ref().map(|c| cell(c, row)).filter(|v| !v.is_empty());
            let span = Span { start: first, end: last, sector: sec, industry: ind, line };
            let list = spans.entry(s.clone()).or_default();
            if let Some(o) = list.iter().find(|o| overlaps(o, &span)) {
                return Err(bad(line, format!("{s}: the span overlaps the one on line {}", o.line)));
            }
            list.push(span);
        }
        if spans.is_empty() {
            return Err(Error::bad_input(path, "no classification spans"));
        }
        for v in spans.values_mut() {
            v.sort_by_key(|s| s.start);
        }
        Ok(Self { source: path.to_path_buf(), spans, has_industry: industry.is_some() })
    }

    /// The sector and industry of `symbol` on `date`, when a span covers it.
    pub fn at(&self, symbol: &str, date: NaiveDate) -> Option<(&str, Option<&str>)> {
        let v = self.spans.get(symbol)?;
        let k = v.partition_point(|s| s.start <= date);
        let s = v.get(k.checked_sub(1)?)?;
        s.end.is_none_or(|e| date <= e).then_some((s.sector.as_str(), s.industry.as_deref()))
    }

    /// Symbols with at least one span.
    pub fn symbols(&self) -> usize {
        self.spans.len()
    }

    /// Spans in the file.
    pub fn spans(&self) -> usize {
        self.spans.values().map(Vec::len).sum()
    }
}

fn overlaps(a: &Span, b: &Span) -> bool {
    let before = |x: &Span, y: &Span| x.end.is_some_and(|e| e < y.start);
    !before(a, b) && !before(b, a)
}
