//! The quarantine file: every removed row with its line, check and values, written atomically.

use std::fmt::Write as _;
use std::path::Path;

use super::report::QualityReport;
use crate::error::Result;
use crate::fields::PriceField;

impl QualityReport {
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
                csv_field(f.file.as_deref().unwrap_or(&self.source)),
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
