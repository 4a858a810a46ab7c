//! Point-in-time universes: which symbols are members on which dates (qlib's `instruments/*.txt`).
//!
//! A universe file has one membership span per line, `SYMBOL<TAB>start<TAB>end` (qlib's format, no header) or
//! `symbol,start,end` (CSV, a header line allowed); a symbol may have several spans; both ends are inclusive.
//! Blank lines and `#` comments are skipped. [`crate::PriceFrame::with_universe`] marks each price row's
//! membership in the [`MEMBER`] column: cross-sectional features and a demeaned label are then computed over
//! the members of each date only, while time-series features still read every row of a symbol (a look-back may
//! start before membership).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::error::{Error, Result};

/// The price frame's boolean column: whether the row's symbol is a member on the row's date.
pub const MEMBER: &str = "in_universe";

/// Membership spans per symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Universe {
    /// The file it was read from.
    pub source: PathBuf,
    spans: BTreeMap<String, Vec<(NaiveDate, NaiveDate)>>,
}

impl Universe {
    /// A universe from spans given in code (`(symbol, first, last)`, inclusive).
    pub fn from_spans(
        source: impl Into<PathBuf>,
        spans: impl IntoIterator<Item = (String, NaiveDate, NaiveDate)>,
    ) -> Self {
        let mut out: BTreeMap<String, Vec<(NaiveDate, NaiveDate)>> = BTreeMap::new();
        for (s, a, b) in spans {
            out.entry(s).or_default().push((a, b));
        }
        for v in out.values_mut() {
            v.sort_unstable();
        }
        Self { source: source.into(), spans: out }
    }

    /// Reads a universe file (see the module doc).
    ///
    /// # Errors
    /// [`Error::Read`] for an unreadable file; [`Error::BadInput`] naming the line of a row without three fields,
    /// a bad date or an end before its start, or a file without spans.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        let bad = |line: usize, m: String| Error::bad_input(path, format!("line {line}: {m}"));
        let mut spans = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> =
                if line.contains('\t') { line.split('\t') } else { line.split(',') }.map(str::trim).collect();
            if cells.len() != 3 {
                return Err(bad(
                    i + 1,
                    format!("expected SYMBOL<TAB>start<TAB>end (or symbol,start,end), got {line:?}"),
                ));
            }
            let (start, end) = (crate::load::parse_date(cells[1]), crate::load::parse_date(cells[2]));
            let (Some(start), Some(end)) = (start, end) else {
                if spans.is_empty() && i == 0 {
                    continue; // a CSV header
                }
                return Err(bad(i + 1, format!("dates {:?} and {:?} must be YYYY-MM-DD", cells[1], cells[2])));
            };
            if cells[0].is_empty() {
                return Err(bad(i + 1, "empty symbol".into()));
            }
            if end < start {
                return Err(bad(i + 1, format!("{}: the span ends ({end}) before it starts ({start})", cells[0])));
            }
            spans.push((cells[0].to_owned(), start, end));
        }
        if spans.is_empty() {
            return Err(Error::bad_input(path, "no membership spans"));
        }
        Ok(Self::from_spans(path, spans))
    }

    /// Whether `symbol` is a member on `date`.
    pub fn contains(&self, symbol: &str, date: NaiveDate) -> bool {
        self.spans.get(symbol).is_some_and(|v| v.iter().any(|(a, b)| *a <= date && date <= *b))
    }

    /// Symbols with at least one span.
    pub fn symbols(&self) -> usize {
        self.spans.len()
    }
}
