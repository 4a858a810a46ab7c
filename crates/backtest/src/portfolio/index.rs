//! Index close files for a second benchmark.

use super::{BTreeMap, Error, NaiveDate, Result};

/// Reads an index close file: a header, then `date,value` rows (the first two columns; dates as in price files).
///
/// # Errors
/// An unreadable file (a user error, like every input file); [`Error::Data`] naming the file and line of a bad
/// date or value.
pub fn load_index(path: &std::path::Path) -> Result<BTreeMap<NaiveDate, f64>> {
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
    Ok(out)
}
