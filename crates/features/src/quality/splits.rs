//! Splits: declared ones (a `symbol,date,ratio` file or the config), the ratios a one-day move is recognised as,
//! and the back-adjustment of a symbol's earlier bars.

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::load::{Bars, PriceField};

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

/// Divides OHLC of `rows` by `ratio` and multiplies their volume by it.
pub(super) fn back_adjust(bars: &mut Bars, rows: std::ops::Range<usize>, ratio: f64) {
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
pub(super) fn split_ratio(r: f64) -> Option<(f64, &'static str)> {
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
