//! PostgreSQL's binary `COPY` format for the `prices` rows (symbol text, date, six nullable float8: open, high,
//! low, close, volume, raw_close), both ways: the import writes it (`COPY prices FROM STDIN`), the full read
//! parses it (`COPY (SELECT …) TO STDOUT`). One row per message instead of one per bound parameter row or per
//! decoded result row.
//!
//! Format (PostgreSQL docs, "COPY: Binary Format"): the 11-byte signature `PGCOPY\n\xff\r\n\0`, a 32-bit flags
//! word, a 32-bit header-extension length and that many bytes; then each tuple as a 16-bit field count and, per
//! field, a 32-bit length (−1: NULL) and the value in the type's binary form (text: UTF-8; date: 32-bit days
//! since 2000-01-01; float8: IEEE 754); a field count of −1 ends the data. All integers are big-endian.

use chrono::NaiveDate;
use stockcast_features::BarsBuilder;

use crate::error::{Error, Result};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The days of PostgreSQL's date epoch (2000-01-01) from the common era, as chrono counts them.
const EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// The stream's header (no flags, no extension).
pub(crate) fn header() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// Appends one `prices` row.
pub(crate) fn write_row(out: &mut Vec<u8>, symbol: &str, date: NaiveDate, values: [Option<f64>; 6]) {
    out.extend_from_slice(&8i16.to_be_bytes());
    // Symbols are at most 64 characters (the loader's grammar).
    out.extend_from_slice(&i32::try_from(symbol.len()).unwrap_or(i32::MAX).to_be_bytes());
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&(chrono::Datelike::num_days_from_ce(&date) - EPOCH_DAYS_FROM_CE).to_be_bytes());
    for v in values {
        match v {
            Some(x) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&x.to_be_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
}

/// The stream's end.
pub(crate) fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Parses a binary `COPY … TO STDOUT` stream of `prices` rows chunk by chunk (a row may span chunks) into a
/// [`BarsBuilder`].
#[derive(Debug, Default)]
pub(crate) struct RowReader {
    buf: Vec<u8>,
    header_done: bool,
    finished: bool,
    rows: usize,
}

fn bad(what: &str) -> Error {
    Error::Data(format!("prices table: unexpected COPY data ({what})"))
}

/// Big-endian integers at `at` (`None`: not that many bytes yet).
fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl RowReader {
    /// Rows parsed so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the end-of-data marker was read.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Parses every whole row of `chunk` (with what was left of the previous one) into `builder`.
    ///
    /// # Errors
    /// [`Error::Data`] when the stream is not eight fields of the expected types.
    pub(crate) fn feed(&mut self, chunk: &[u8], builder: &mut BarsBuilder) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        let b = &self.buf;
        let mut at = 0;
        if !self.header_done {
            let Some(ext) = be_i32(b, 15) else { return Ok(()) };
            if &b[..11] != SIGNATURE {
                return Err(bad("no binary COPY signature"));
            }
            let ext = usize::try_from(ext).map_err(|_| bad("header"))?;
            if b.len() < 19 + ext {
                return Ok(());
            }
            at = 19 + ext;
            self.header_done = true;
        }
        while !self.finished {
            let Some(fields) = be_i16(b, at) else { break };
            if fields == -1 {
                self.finished = true;
                at += 2;
                break;
            }
            if fields != 8 {
                return Err(bad(&format!("{fields} fields in a row")));
            }
            // The row's fields, or stop at the first one not wholly here yet.
            let mut pos = at + 2;
            let mut spans = [(0usize, -1i32); 8];
            let mut whole = true;
            for span in &mut spans {
                let Some(len) = be_i32(b, pos) else {
                    whole = false;
                    break;
                };
                let size = usize::try_from(len.max(0)).unwrap_or(0);
                if b.len() < pos + 4 + size {
                    whole = false;
                    break;
                }
                *span = (pos + 4, len);
                pos += 4 + size;
            }
            if !whole {
                break;
            }
            let field = |i: usize| {
                let (start, len) = spans[i];
                (len >= 0).then(|| &b[start..start + usize::try_from(len).unwrap_or(0)])
            };
            let symbol = field(0).ok_or_else(|| bad("a NULL symbol"))?;
            let symbol = std::str::from_utf8(symbol).map_err(|_| bad("a symbol that is not UTF-8"))?;
            let days = field(1)
                .and_then(|d| d.try_into().ok())
                .map(i32::from_be_bytes)
                .ok_or_else(|| bad("a date that is NULL or not 4 bytes"))?;
            let date = NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE).ok_or_else(|| bad("a date"))?;
            let mut values = [None; 6];
            for (i, v) in values.iter_mut().enumerate() {
                *v = match field(2 + i) {
                    None => None,
                    Some(x) => Some(f64::from_be_bytes(x.try_into().map_err(|_| bad("a float8 not 8 bytes"))?)),
                };
            }
            builder.push(symbol, date, values);
            self.rows += 1;
            at = pos;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_are_read_back_across_any_chunking() {
        let rows = [
            (
                "AAPL",
                NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
                [Some(1.5), None, Some(-0.0), Some(2.0), None, Some(3.25)],
            ),
            ("BRK.B", NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(), [None; 6]),
            (
                "Ü",
                NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
                [Some(f64::MAX), Some(1e-300), Some(7.0), Some(8.0), Some(9.0), Some(10.0)],
            ),
        ];
        let mut stream = header();
        for (s, d, v) in rows {
            write_row(&mut stream, s, d, v);
        }
        trailer(&mut stream);
        // 2000-01-01 is day 0 of the format.
        assert_eq!(&stream[19 + 2 + 4 + 4 + 4..19 + 2 + 4 + 4 + 4 + 4], &(-1i32).to_be_bytes());
        for chunk in [1, 3, 7, 64, stream.len()] {
            let mut builder = BarsBuilder::new("test", "row");
            let mut reader = RowReader::default();
            for part in stream.chunks(chunk) {
                reader.feed(part, &mut builder).unwrap();
            }
            assert!(reader.finished() && reader.rows() == 3, "chunks of {chunk}");
            let mut direct = BarsBuilder::new("test", "row");
            for (s, d, v) in rows {
                direct.push(s, d, v);
            }
            assert_eq!(format!("{:?}", builder.finish()), format!("{:?}", direct.finish()), "chunks of {chunk}");
        }
        let mut reader = RowReader::default();
        let err = reader.feed(b"PGCOPY\n\xff\r\n\x01\0\0\0\0\0\0\0\0", &mut BarsBuilder::new("t", "row"));
        assert!(err.unwrap_err().to_string().contains("signature"));
    }
}
