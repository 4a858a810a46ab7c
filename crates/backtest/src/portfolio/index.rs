//! Index close files for a second benchmark, and what kind of index they hold.

use super::{BTreeMap, Deserialize, Error, NaiveDate, Result, Serialize};

/// What an index file's levels include (`data.index_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// A price index: constituents' price changes only, dividends left out (the usual index level, e.g. the
    /// S&P 500 `^GSPC`).
    #[default]
    Price,
    /// A total-return index: dividends reinvested (e.g. the S&P 500 Total Return `^SP500TR`).
    TotalReturn,
}

impl IndexKind {
    /// The name written in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Price => "price",
            Self::TotalReturn => "total_return",
        }
    }

    /// The caveat of comparing strategies on prices that are (`adjusted = true`) or are not dividend-adjusted
    /// with an index of this kind, when the two do not measure the same thing.
    pub fn warning(self, adjusted: bool) -> Option<String> {
        match (self, adjusted) {
            (Self::Price, true) => Some(
                "the index is a price index (no dividends) while the strategies' prices are dividend-adjusted: \
                 index_excess_return and index_information_ratio favour the strategies by about the index's \
                 dividend yield (~2 % a year for the S&P 500); use a total-return index with \
                 index_kind = \"total_return\" for a like-for-like comparison"
                    .to_owned(),
            ),
            (Self::TotalReturn, false) => Some(
                "the index is a total-return index (dividends reinvested) while the strategies' prices are not \
                 dividend-adjusted: index-relative figures understate the strategies by about the dividend yield"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// An index close series and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// Price or total return.
    pub kind: IndexKind,
    /// Levels by date.
    pub closes: BTreeMap<NaiveDate, f64>,
}

/// Reads an index close file: a header, then `date,value` rows (the first two columns; dates as in price files).
///
/// # Errors
/// An unreadable file (a user error, like every input file); [`Error::Data`] naming the file and line of a bad
/// date or value.
pub fn load_index(path: &std::path::Path, kind: IndexKind) -> Result<Index> {
    let text = stockcast_features::io::read_text(path)?;
    let bad = |m: String| Error::Data(format!("{}: {m}", path.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split(',');
        let (d, v) = (cells.next().unwrap_or("").trim(), cells.next().unwrap_or("").trim());
        // The price files' date parser: the same spellings are accepted in both.
        let date = stockcast_features::load::parse_date(d)
            .ok_or_else(|| bad(format!("line {}: date {d:?} is not YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD", i + 1)))?;
        let value: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite() && *x > 0.0)
            .ok_or_else(|| bad(format!("line {}: index value {v:?} is not a positive number", i + 1)))?;
        out.insert(date, value);
    }
    if out.is_empty() {
        return Err(bad("no index rows".into()));
    }
    Ok(Index { kind, closes: out })
}
