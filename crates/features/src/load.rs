//! Reading price files (CSV or Parquet; long, single-symbol or wide layout) into columnar [`Bars`].
//!
//! Parsing never fails on a bad value: every value that cannot be parsed is recorded as a [`ParseIssue`] with its
//! line and column, and the quality stage decides what happens to it (error by default). Structural problems
//! (empty file, no date column, no price column) are errors right here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::error::{Error, Result};

use crate::fields::{DATE_ALIASES, SYMBOL_ALIASES};
pub use crate::fields::{Layout, PriceField};

/// Normalises a column name for alias matching: lower case, alphanumerics only (`Adj Close` → `adjclose`).
pub(crate) fn norm(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// A value that could not be parsed, kept for the quality stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseIssue {
    /// Row index into [`Bars`].
    pub row: usize,
    /// Column name as written in the file.
    pub column: String,
    /// The text that failed to parse.
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
}

/// Parsed price rows in file order, columnar. Missing or unparseable numbers are `NaN`; rows whose date could
/// not be parsed have `date = None`.
#[derive(Debug, Clone)]
pub struct Bars {
    /// The file the rows came from.
    pub source: PathBuf,
    /// `line` (CSV) or `row` (Parquet): what [`Bars::line`] counts.
    pub line_unit: &'static str,
    /// The detected layout.
    pub layout: Layout,
    /// Distinct symbol names; [`Bars::symbol`] indexes into it.
    pub symbol_names: Vec<String>,
    /// Symbol code per row.
    pub symbol: Vec<u32>,
    /// Trading date per row.
    pub date: Vec<Option<NaiveDate>>,
    /// Price columns present in the input, each one value per row.
    pub fields: Vec<(PriceField, Vec<f64>)>,
    /// Source line (1-based, header = 1) or row per row.
    pub line: Vec<u64>,
    /// Values that failed to parse.
    pub issues: Vec<ParseIssue>,
    /// Column names in the input matched to each field (as written), for messages.
    pub column_names: HashMap<PriceField, String>,
    /// Empty cells of a wide file (a symbol not trading yet): not rows, counted for the report.
    pub empty_wide_cells: usize,
    /// The files of a folder or glob source ([`Layout::Files`]); empty for one file.
    pub files: Vec<PathBuf>,
    /// Per row, its file in [`Bars::files`] (empty for one file).
    pub file: Vec<u32>,
    /// How a CSV that is not comma-separated was read (e.g. `';'-separated, decimal commas`), for the report.
    pub dialect: Option<&'static str>,
}

impl Bars {
    /// No rows yet, from `source` (rows counted in `line_unit`s), in `layout`, without price fields.
    pub(crate) fn empty(source: PathBuf, line_unit: &'static str, layout: Layout) -> Self {
        Self {
            source,
            line_unit,
            layout,
            symbol_names: Vec::new(),
            symbol: Vec::new(),
            date: Vec::new(),
            fields: Vec::new(),
            line: Vec::new(),
            issues: Vec::new(),
            dialect: None,
            column_names: HashMap::new(),
            empty_wide_cells: 0,
            files: Vec::new(),
            file: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.symbol.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.symbol.is_empty()
    }

    /// The values of one field, if the input has it.
    pub fn field(&self, f: PriceField) -> Option<&[f64]> {
        self.fields.iter().find(|(g, _)| *g == f).map(|(_, v)| v.as_slice())
    }

    /// Keeps only the rows for which `keep` is true, in order.
    pub fn retain_rows(&mut self, keep: &[bool]) {
        fn filt<T: Clone>(v: &[T], keep: &[bool]) -> Vec<T> {
            v.iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| x.clone()).collect()
        }
        let mut new_index = vec![usize::MAX; keep.len()];
        let mut n = 0;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                new_index[i] = n;
                n += 1;
            }
        }
        self.symbol = filt(&self.symbol, keep);
        self.date = filt(&self.date, keep);
        self.line = filt(&self.line, keep);
        if !self.file.is_empty() {
            self.file = filt(&self.file, keep);
        }
        for (_, v) in &mut self.fields {
            *v = filt(v, keep);
        }
        self.issues.retain(|i| keep[i.row]);
        for i in &mut self.issues {
            i.row = new_index[i.row];
        }
    }

    /// Reorders rows by `order` (a permutation of row indices).
    pub fn permute(&mut self, order: &[usize]) {
        fn perm<T: Clone>(v: &[T], order: &[usize]) -> Vec<T> {
            order.iter().map(|&i| v[i].clone()).collect()
        }
        // Rows already in order (the usual file): nothing moves, and no column is copied.
        if order.iter().enumerate().all(|(new, &old)| new == old) {
            return;
        }
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        self.symbol = perm(&self.symbol, order);
        self.date = perm(&self.date, order);
        self.line = perm(&self.line, order);
        if !self.file.is_empty() {
            self.file = perm(&self.file, order);
        }
        for (_, v) in &mut self.fields {
            *v = perm(v, order);
        }
        for i in &mut self.issues {
            i.row = new_index[i.row];
        }
    }

    /// The file a row came from: its own file for a folder or glob source, else the source.
    pub fn file_of(&self, row: usize) -> &Path {
        self.file.get(row).map_or(&self.source, |&f| &self.files[f as usize])
    }

    /// Where a row is, for messages: `line N` of a single file, `FILE line N` in a folder or glob source.
    pub fn locate(&self, row: usize) -> String {
        if self.file.is_empty() {
            format!("{} {}", self.line_unit, self.line[row])
        } else {
            format!("{} {} {}", self.file_of(row).display(), self.line_unit, self.line[row])
        }
    }

    /// Describes a row for messages: `file line N, symbol S, date D`.
    pub fn describe_row(&self, row: usize) -> String {
        let date = self.date[row].map_or_else(|| "?".to_owned(), |d| d.to_string());
        format!(
            "{} {} {}, symbol {}, date {}",
            self.file_of(row).display(),
            self.line_unit,
            self.line[row],
            {
                let name = &self.symbol_names[self.symbol[row] as usize];
                if check_symbol(name).is_ok() { name.clone() } else { shown(name) }
            },
            date
        )
    }
}

/// Builds [`Bars`] from values given in code (a request body, database rows) instead of a file; the result goes
/// through [`check_bars`](crate::check_bars) like a file's rows, so the same checks and messages apply.
///
/// A price field is present when any row has a value for it (close always); a row without a value gets `NaN`,
/// which the quality checks report with the row's number. [`PriceField::AdjClose`] is present only when every
/// row has one.
#[derive(Debug)]
pub struct BarsBuilder {
    bars: Bars,
    code: HashMap<String, u32>,
    seen: [usize; 6],
}

impl BarsBuilder {
    /// An empty builder; `source` names the rows in messages, `line_unit` says what a row number counts.
    pub fn new(source: impl Into<PathBuf>, line_unit: &'static str) -> Self {
        let bars = Bars {
            fields: PriceField::ALL.iter().map(|f| (*f, Vec::new())).collect(),
            ..Bars::empty(source.into(), line_unit, Layout::Long)
        };
        Self { bars, code: HashMap::new(), seen: [0; 6] }
    }

    /// Names the column a field came from in messages (e.g. the stored `raw_close` in the `AdjClose` slot).
    #[must_use]
    pub fn column_name(mut self, field: PriceField, name: &str) -> Self {
        self.bars.column_names.insert(field, name.to_owned());
        self
    }

    /// Appends one row; `values` are in [`PriceField::ALL`] order (open, high, low, close, volume, adj_close).
    pub fn push(&mut self, symbol: &str, date: NaiveDate, values: [Option<f64>; 6]) {
        // Rows come grouped by symbol: the previous row's code, else a lookup, allocating only a new name.
        let code = match self.bars.symbol.last() {
            Some(&c) if self.bars.symbol_names[c as usize] == symbol => c,
            _ => self.code_of(symbol),
        };
        self.bars.symbol.push(code);
        self.bars.date.push(Some(date));
        self.bars.line.push(self.bars.line.len() as u64 + 1);
        for (i, v) in values.into_iter().enumerate() {
            self.seen[i] += usize::from(v.is_some());
            self.bars.fields[i].1.push(v.unwrap_or(f64::NAN));
        }
    }

    /// `symbol`'s code, a new one (and its name stored) the first time.
    fn code_of(&mut self, symbol: &str) -> u32 {
        if let Some(&c) = self.code.get(symbol) {
            return c;
        }
        let next = self.code.len() as u32;
        self.code.insert(symbol.to_owned(), next);
        self.bars.symbol_names.push(symbol.to_owned());
        next
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.bars.len()
    }

    /// Appends `other`'s rows after this builder's, as if they had been pushed here in order: symbols keep their
    /// first-seen codes, row numbers continue (for reads split into parts, e.g. one per database connection).
    pub fn append(&mut self, other: BarsBuilder) {
        let offset = self.bars.line.len() as u64;
        let Bars { symbol_names, symbol, date, fields, line, .. } = other.bars;
        let codes: Vec<u32> = symbol_names.iter().map(|name| self.code_of(name)).collect();
        self.bars.symbol.extend(symbol.iter().map(|&c| codes[c as usize]));
        self.bars.date.extend(date);
        self.bars.line.extend(line.iter().map(|l| l + offset));
        for ((mine, theirs), (seen, more)) in
            self.bars.fields.iter_mut().zip(fields).zip(self.seen.iter_mut().zip(other.seen))
        {
            mine.1.extend(theirs.1);
            *seen += more;
        }
    }

    /// True when no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    /// The rows, with the fields that are present.
    pub fn finish(self) -> Bars {
        let Self { mut bars, seen, .. } = self;
        let n = bars.len();
        let fields = std::mem::take(&mut bars.fields);
        bars.fields = fields
            .into_iter()
            .zip(seen)
            .filter(|((f, _), seen)| match f {
                PriceField::Close => true,
                PriceField::AdjClose => *seen == n && n > 0,
                _ => *seen > 0,
            })
            .map(|(f, _)| f)
            .collect();
        bars
    }
}

/// What to read and how.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Symbol for a single-symbol file (default: the file stem); in a long file, keep only this symbol.
    pub symbol: Option<String>,
    /// In a folder or pattern source: read only the files that can hold one of these symbols (a file named for
    /// another symbol, without a symbol column, is skipped unread); empty: every file. The rows are not filtered
    /// here (a job's symbol filter does that, naming any symbol that is missing).
    pub symbols: Vec<String>,
    /// The dates' format when they are not ISO (chrono's `strftime` syntax, e.g. `%m/%d/%Y` for an Excel export's
    /// `1/31/2020`); default: `YYYY-MM-DD` (or `YYYY/MM/DD`, `YYYYMMDD`).
    pub date_format: Option<String>,
}

/// File formats the loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    Parquet,
    /// Arrow IPC (Feather v2) files.
    Ipc,
}

pub(crate) fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("parquet" | "pq") => Format::Parquet,
        Some("arrow" | "ipc" | "feather") => Format::Ipc,
        _ => Format::Csv,
    }
}

/// Reads price data into [`Bars`]: a file (CSV, Parquet or Arrow IPC), a folder of them (per-symbol files or
/// a hive-partitioned dataset, read recursively) or a glob pattern (`data/*.csv`); see [`crate::sources`].
///
/// # Errors
/// [`Error::Read`] when a file cannot be opened; [`Error::BadInput`] when one is empty, has no date column, no
/// price column, or a `--symbol` that is not in a long file; a folder or pattern without price files.
pub fn read_bars(path: &Path, opts: &ReadOptions) -> Result<Bars> {
    match crate::sources::files_of(path)? {
        None => read_file(path, opts),
        Some(files) => crate::sources::read_files(path, &files, opts),
    }
}

/// Reads one price file into [`Bars`].
pub(crate) fn read_file(path: &Path, opts: &ReadOptions) -> Result<Bars> {
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    if meta.is_dir() {
        return Err(Error::bad_input(path, "is a folder (give the folder itself, not a file inside, or a pattern)"));
    }
    if meta.len() == 0 {
        return Err(Error::bad_input(path, "the file is empty"));
    }
    let (df, unit) = read_frame(path)?;
    if df.height() == 0 {
        return Err(Error::bad_input(path, "the file has a header but no data rows"));
    }
    // Header is line 1 in a CSV; Parquet and IPC rows count from 1.
    let line_offset: u64 = if unit == "line" { 2 } else { 1 };
    let dialect = if unit == "line" {
        match csv_separator(path)? {
            b';' => Some("';'-separated, decimal commas read"),
            b'\t' => Some("tab-separated, decimal commas read"),
            b'|' => Some("'|'-separated, decimal commas read"),
            _ => None,
        }
    } else {
        None
    };
    let date_format = opts.date_format.as_deref();
    Parser { path, df: &df, unit, line_offset, decimal_comma: dialect.is_some(), dialect, date_format }.parse(opts)
}

/// A CSV (every column as text), Parquet or Arrow IPC file as a frame, and what its row numbers count (`line`
/// for a CSV, whose header is line 1; `row` otherwise).
pub(crate) fn read_frame(path: &Path) -> Result<(DataFrame, &'static str)> {
    let open = || std::fs::File::open(path).map_err(|e| Error::read(path, e));
    // The header alone first: a file of a million columns is refused before its rows are read.
    let width = header_names(path)?.len();
    if width > MAX_COLUMNS {
        return Err(Error::bad_input(
            path,
            format!("{width} columns; at most {MAX_COLUMNS} are read (a wide file holds one column per symbol)"),
        ));
    }
    Ok(match format_of(path) {
        Format::Csv => (read_csv_as_strings(path)?, "line"),
        Format::Parquet => {
            let df = ParquetReader::new(open()?)
                .finish()
                .map_err(|e| Error::bad_input(path, format!("not a readable Parquet file: {e}")))?;
            (df, "row")
        }
        Format::Ipc => {
            let df = IpcReader::new(open()?)
                .finish()
                .map_err(|e| Error::bad_input(path, format!("not a readable Arrow IPC file: {e}")))?;
            (df, "row")
        }
    })
}

/// Whether a price file has a symbol column (its header or schema only, not its rows).
pub(crate) fn has_symbol_column(path: &Path) -> Result<bool> {
    Ok(header_names(path)?.iter().any(|n| SYMBOL_ALIASES.contains(&norm(n).as_str())))
}

/// A price file's column names, from its header line or schema only (not its rows).
fn header_names(path: &Path) -> Result<Vec<String>> {
    let open = || std::fs::File::open(path).map_err(|e| Error::read(path, e));
    Ok(match format_of(path) {
        Format::Csv => {
            let first = first_line(path)?;
            let sep = char::from(sniff_separator(&first));
            first.split(sep).map(|c| c.trim().trim_matches('"').to_owned()).collect()
        }
        Format::Parquet => ParquetReader::new(open()?)
            .schema()
            .map_err(|e| Error::bad_input(path, format!("not a readable Parquet file: {e}")))?
            .iter_names()
            .map(ToString::to_string)
            .collect(),
        Format::Ipc => IpcReader::new(open()?)
            .schema()
            .map_err(|e| Error::bad_input(path, format!("not a readable Arrow IPC file: {e}")))?
            .iter_names()
            .map(ToString::to_string)
            .collect(),
    })
}

/// A file's first line (its header).
fn first_line(path: &Path) -> Result<String> {
    let mut first = String::new();
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first).map_err(|e| Error::read(path, e))?;
    Ok(first)
}

/// The field separator of a CSV header: `,` unless the line holds more `;`, tabs or `|` (outside quotes) than
/// commas, as European spreadsheet exports (`;` with decimal commas) and TSV files do.
pub(crate) fn sniff_separator(header: &str) -> u8 {
    let mut counts = [0usize; 4];
    let seps = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = seps.iter().position(|s| *s == b) {
            counts[i] += 1;
        }
    }
    let best = (1..4).max_by_key(|&i| (counts[i], std::cmp::Reverse(i))).unwrap_or(0);
    if counts[best] > counts[0] { seps[best] } else { b',' }
}

/// The separator of a CSV file, from its header.
pub(crate) fn csv_separator(path: &Path) -> Result<u8> {
    Ok(sniff_separator(&first_line(path)?))
}

pub(crate) fn read_csv_as_strings(path: &Path) -> Result<DataFrame> {
    let sep = csv_separator(path)?;
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .map_parse_options(|o| o.with_separator(sep))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(polars::prelude::SerReader::finish)
        .map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().trim();
            if msg.to_ascii_lowercase().contains("empty") {
                Error::bad_input(path, "the file is empty")
            } else if first.contains("more fields than defined") {
                Error::bad_input(
                    path,
                    format!(
                        "not a readable CSV file: a row has more fields than the header ({} separated); quote \
                         fields that contain the separator",
                        match sep {
                            b';' => "';'",
                            b'\t' => "tab",
                            b'|' => "'|'",
                            _ => "','",
                        }
                    ),
                )
            } else {
                Error::bad_input(path, format!("not a readable CSV file: {first}"))
            }
        })
}

struct Parser<'a> {
    path: &'a Path,
    df: &'a DataFrame,
    unit: &'static str,
    line_offset: u64,
    /// Numbers written with a decimal comma (`10,5`) are read: a CSV separated by `;`, tabs or `|`.
    decimal_comma: bool,
    dialect: Option<&'static str>,
    date_format: Option<&'a str>,
}

/// Matched columns of the input.
struct Columns {
    date: String,
    symbol: Option<String>,
    fields: Vec<(PriceField, String)>,
    others: Vec<String>,
}

impl Parser<'_> {
    fn columns(&self) -> Result<Columns> {
        let names: Vec<String> = self.df.get_column_names().iter().map(ToString::to_string).collect();
        // A header named twice: the CSV reader renames the second `x_duplicated_0`; it is refused, not guessed.
        if let Some(dup) = names.iter().find_map(|n| {
            let (base, k) = n.rsplit_once("_duplicated_")?;
            (k.parse::<u32>().is_ok() && names.iter().any(|m| m == base)).then_some(base)
        }) {
            return Err(Error::bad_input(self.path, format!("the header names column `{dup}` more than once")));
        }
        let find = |aliases: &[&str]| -> Result<Option<String>> {
            let hits: Vec<&String> = names.iter().filter(|n| aliases.contains(&norm(n).as_str())).collect();
            if let [a, b, ..] = hits.as_slice() {
                return Err(Error::bad_input(
                    self.path,
                    format!(
                        "columns `{a}` and `{b}` both name `{}`: keep one",
                        aliases.first().copied().unwrap_or("?")
                    ),
                ));
            }
            Ok(hits.first().map(|n| (*n).clone()))
        };
        let date = find(DATE_ALIASES)?.ok_or_else(|| {
            Error::bad_input(
                self.path,
                format!("no date column (looked for one named like `date`); columns are: {}", names.join(", ")),
            )
        })?;
        let symbol = find(SYMBOL_ALIASES)?;
        let mut fields: Vec<(PriceField, String)> = Vec::new();
        for f in PriceField::ALL {
            if let Some(n) = find(f.aliases())? {
                fields.push((f, n));
            }
        }
        let used: Vec<&String> =
            std::iter::once(&date).chain(symbol.iter()).chain(fields.iter().map(|(_, n)| n)).collect();
        let others = names.iter().filter(|n| !used.contains(n)).cloned().collect();
        Ok(Columns { date, symbol, fields, others })
    }

    fn parse(&self, opts: &ReadOptions) -> Result<Bars> {
        let cols = self.columns()?;
        let has_price = cols.fields.iter().any(|(f, _)| matches!(f, PriceField::Close | PriceField::AdjClose));
        if cols.symbol.is_some() || has_price {
            if !has_price {
                return Err(Error::bad_input(
                    self.path,
                    format!(
                        "no `close` or `adj_close` column; columns are: {}",
                        self.df.get_column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if !cols.others.is_empty() {
                tracing::info!(file = %self.path.display(), columns = ?cols.others, "ignoring extra columns");
            }
            self.parse_long(&cols, opts)
        } else {
            self.parse_wide(&cols)
        }
    }

    fn new_bars(&self, layout: Layout) -> Bars {
        let mut bars = Bars::empty(self.path.to_path_buf(), self.unit, layout);
        bars.dialect = self.dialect;
        bars
    }

    fn parse_long(&self, cols: &Columns, opts: &ReadOptions) -> Result<Bars> {
        let n = self.df.height();
        let layout = if cols.symbol.is_some() { Layout::Long } else { Layout::SingleSymbol };
        let mut bars = self.new_bars(layout);
        // Symbols.
        let keep: Option<Vec<bool>> = if let Some(sym_col) = &cols.symbol {
            let s = self.df.column(sym_col)?.cast(&DataType::String)?;
            let ca = s.str()?;
            let mut codes: HashMap<&str, u32> = HashMap::new();
            let mut row_symbols = Vec::with_capacity(n);
            for (row, v) in ca.iter().enumerate() {
                let v = v.map_or("", str::trim);
                if check_symbol(v).is_err() {
                    bars.issues.push(ParseIssue {
                        row,
                        column: sym_col.clone(),
                        value: if v.chars().count() > 40 {
                            format!("{}…", v.chars().take(40).collect::<String>())
                        } else {
                            v.to_owned()
                        },
                        expected: SYMBOL_GRAMMAR,
                    });
                }
                let next = codes.len() as u32;
                let code = *codes.entry(v).or_insert_with(|| {
                    bars.symbol_names.push(v.to_owned());
                    next
                });
                row_symbols.push(code);
            }
            bars.symbol = row_symbols;
            opts.symbol.as_ref().map(|want| {
                let code = codes.get(want.as_str()).copied();
                bars.symbol.iter().map(|c| Some(*c) == code).collect()
            })
        } else {
            let name = opts.symbol.clone().unwrap_or_else(|| {
                self.path.file_stem().map_or_else(|| "SYMBOL".to_owned(), |s| s.to_string_lossy().into_owned())
            });
            check_symbol(&name).map_err(|m| Error::bad_input(self.path, format!("the file's symbol: {m}")))?;
            bars.symbol_names.push(name);
            bars.symbol = vec![0; n];
            None
        };
        bars.date = self.parse_dates(&cols.date, &mut bars.issues)?;
        bars.line = (0..n as u64).map(|i| i + self.line_offset).collect();
        for (field, name) in &cols.fields {
            let values = self.parse_numbers(name, &mut bars.issues)?;
            bars.fields.push((*field, values));
            bars.column_names.insert(*field, name.clone());
        }
        if let Some(keep) = keep {
            if !keep.iter().any(|k| *k) {
                return Err(Error::bad_input(
                    self.path,
                    format!("symbol `{}` does not occur in the file", opts.symbol.as_deref().unwrap_or_default()),
                ));
            }
            bars.retain_rows(&keep);
        }
        Ok(bars)
    }

    fn parse_wide(&self, cols: &Columns) -> Result<Bars> {
        let mut bars = self.new_bars(Layout::Wide);
        let symbols: Vec<&String> = cols.others.iter().collect();
        if symbols.is_empty() {
            return Err(Error::bad_input(
                self.path,
                "no price columns: expected `close` (long or single-symbol layout) or one column per symbol (wide)",
            ));
        }
        let mut date_issues = Vec::new();
        let dates = self.parse_dates(&cols.date, &mut date_issues)?;
        let date_issue_at: HashMap<usize, &ParseIssue> = date_issues.iter().map(|i| (i.row, i)).collect();
        let mut close = Vec::new();
        if let Some(bad) = symbols.iter().find_map(|s| check_symbol(s).err()) {
            return Err(Error::bad_input(self.path, format!("a column of this wide file (one per symbol): {bad}")));
        }
        for (code, sym) in symbols.iter().enumerate() {
            bars.symbol_names.push((*sym).clone());
            let col = self.df.column(sym)?;
            // An empty cell is "not trading yet", not a bad value: it must be told apart from text that fails
            // to parse (recorded by parse_numbers) and from NaN spellings (left to the non-finite check).
            let texts = if col.dtype().is_primitive_numeric() {
                None
            } else {
                Some(col.cast(&DataType::String)?.str()?.clone())
            };
            let mut col_issues = Vec::new();
            let values = self.parse_numbers(sym, &mut col_issues)?;
            let mut issue_at: HashMap<usize, ParseIssue> = col_issues.into_iter().map(|i| (i.row, i)).collect();
            for (row, v) in values.into_iter().enumerate() {
                let empty = match &texts {
                    Some(t) => t.get(row).is_none_or(|s| s.trim().is_empty()),
                    None => col.get(row).is_ok_and(|a| a.is_null()),
                };
                if empty {
                    bars.empty_wide_cells += 1;
                    continue;
                }
                let out_row = bars.symbol.len();
                if let Some(issue) = issue_at.remove(&row) {
                    bars.issues.push(ParseIssue { row: out_row, ..issue });
                }
                if let Some(issue) = date_issue_at.get(&row) {
                    bars.issues.push(ParseIssue { row: out_row, ..(*issue).clone() });
                }
                bars.symbol.push(code as u32);
                bars.date.push(dates[row]);
                bars.line.push(row as u64 + self.line_offset);
                close.push(v);
            }
        }
        if bars.is_empty() {
            return Err(Error::bad_input(self.path, "the wide file has no non-empty price cells"));
        }
        bars.fields.push((PriceField::Close, close));
        bars.column_names.insert(PriceField::Close, "<symbol column>".to_owned());
        Ok(bars)
    }

    fn parse_dates(&self, name: &str, issues: &mut Vec<ParseIssue>) -> Result<Vec<Option<NaiveDate>>> {
        let col = self.df.column(name)?;
        if col.dtype() == &DataType::Date {
            let ca = col.date()?;
            Ok(ca
                .physical()
                .iter()
                .enumerate()
                .map(|(row, d)| {
                    let d = d.and_then(crate::prices::days_to_date);
                    if d.is_none() {
                        issues.push(ParseIssue {
                            row,
                            column: name.to_owned(),
                            value: String::new(),
                            expected: "a date",
                        });
                    }
                    d
                })
                .collect())
        } else {
            let s = col.cast(&DataType::String)?;
            let ca = s.str()?;
            let mut cache: HashMap<&str, Option<NaiveDate>> = HashMap::new();
            Ok(ca
                .iter()
                .enumerate()
                .map(|(row, v)| {
                    let v = v.unwrap_or("").trim();
                    let d = *cache.entry(v).or_insert_with(|| match self.date_format {
                        Some(f) => NaiveDate::parse_from_str(v.trim(), f).ok(),
                        None => parse_date(v),
                    });
                    if d.is_none() {
                        issues.push(ParseIssue {
                            row,
                            column: name.to_owned(),
                            value: v.to_owned(),
                            expected: if self.date_format.is_some() {
                                "a date in the --date-format given"
                            } else {
                                "a date (YYYY-MM-DD)"
                            },
                        });
                    }
                    d
                })
                .collect())
        }
    }

    /// Parses a column to f64. Unparseable text becomes NaN and is recorded as an issue; empty cells become NaN
    /// without an issue (the non-finite check names them).
    fn parse_numbers(&self, name: &str, issues: &mut Vec<ParseIssue>) -> Result<Vec<f64>> {
        let col = self.df.column(name)?;
        if col.dtype().is_primitive_numeric() {
            let s = col.cast(&DataType::Float64)?;
            let ca = s.f64()?;
            return Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
        }
        let s = col.cast(&DataType::String)?;
        let ca = s.str()?;
        Ok(ca
            .iter()
            .enumerate()
            .map(|(row, v)| {
                let v = v.unwrap_or("").trim();
                let comma;
                let v = if self.decimal_comma && v.contains(',') && !v.contains('.') {
                    comma = v.replacen(',', ".", 1);
                    comma.as_str()
                } else {
                    v
                };
                if let Some(x) = parse_number(v) {
                    x
                } else {
                    if !v.is_empty() {
                        issues.push(ParseIssue {
                            row,
                            column: name.to_owned(),
                            value: v.to_owned(),
                            expected: "a number",
                        });
                    }
                    f64::NAN
                }
            })
            .collect())
    }
}

/// Parses a number; accepts `NaN`/`inf` spellings (they are caught by the non-finite check, not as parse errors)
/// and thousands separators are rejected. Returns `None` for empty or non-numeric text.
fn parse_number(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Parses `YYYY-MM-DD` (optionally followed by a time), `YYYY/MM/DD` or `YYYYMMDD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let head = s.split([' ', 'T']).next().unwrap_or("");
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(head, "%Y/%m/%d"))
        .or_else(|_| NaiveDate::parse_from_str(head, "%Y%m%d"))
        .ok()
}

/// One security's static data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Security {
    /// Ticker.
    pub symbol: String,
    /// Display name.
    pub name: Option<String>,
    /// Sector.
    pub sector: Option<String>,
}

/// Most columns a price file may have (a wide file: one per symbol); more is refused before the rows are parsed.
pub const MAX_COLUMNS: usize = 10_000;

/// What a symbol is, for messages.
pub const SYMBOL_GRAMMAR: &str = "a symbol: 1-64 characters, none of them a control character (NUL, tab, newline...)";

/// Checks a symbol against [`SYMBOL_GRAMMAR`].
///
/// # Errors
/// Why it is not one (the symbol shown shortened).
pub fn check_symbol(s: &str) -> std::result::Result<(), String> {
    let n = s.chars().count();
    if n == 0 || n > 64 {
        return Err(format!("symbol {} has {n} characters; expected {SYMBOL_GRAMMAR}", shown(s)));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("symbol {} has a control character; expected {SYMBOL_GRAMMAR}", shown(s)));
    }
    Ok(())
}

/// A value for a message: escaped, and at most 40 characters of it.
fn shown(s: &str) -> String {
    let head: String = s.chars().take(40).collect();
    if s.chars().count() > 40 { format!("{head:?}… ({} characters)", s.chars().count()) } else { format!("{head:?}") }
}

/// Reads a securities file (`symbol,name,sector`; `name` and `sector` optional).
///
/// # Errors
/// [`Error::BadInput`] when there is no symbol column, a symbol is empty or occurs twice.
pub fn read_securities(path: &Path) -> Result<Vec<Security>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    if meta.len() == 0 {
        return Err(Error::bad_input(path, "the file is empty"));
    }
    let df = read_csv_as_strings(path)?;
    let names: Vec<String> = df.get_column_names().iter().map(ToString::to_string).collect();
    let find = |aliases: &[&str]| names.iter().find(|n| aliases.contains(&norm(n).as_str())).cloned();
    let sym = find(SYMBOL_ALIASES).ok_or_else(|| Error::bad_input(path, "no `symbol` column"))?;
    let name = find(&["name", "company", "companyname", "security"]);
    let sector = find(&["sector", "gicssector", "industry"]);
    let get = |c: &Option<String>| -> Result<Option<StringChunked>> {
        c.as_ref().map(|c| Ok(df.column(c)?.str()?.clone())).transpose()
    };
    let (syms, nm, sec) = (df.column(&sym)?.str()?.clone(), get(&name)?, get(&sector)?);
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(df.height());
    for row in 0..df.height() {
        let s = syms.get(row).unwrap_or("").trim().to_owned();
        let line = row + 2;
        if s.is_empty() {
            return Err(Error::bad_input(path, format!("line {line}: empty symbol")));
        }
        if let Some(prev) = seen.insert(s.clone(), line) {
            return Err(Error::bad_input(path, format!("line {line}: symbol {s} already listed on line {prev}")));
        }
        let opt = |c: &Option<StringChunked>| {
            c.as_ref().and_then(|c| c.get(row)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        out.push(Security { symbol: s, name: opt(&nm), sector: opt(&sec) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_for_aliases() {
        assert_eq!(norm("Adj Close"), "adjclose");
        assert_eq!(norm("adj_close"), "adjclose");
        assert_eq!(norm("Date"), "date");
    }

    #[test]
    fn dates_in_common_spellings() {
        let d = NaiveDate::from_ymd_opt(2020, 3, 9);
        assert_eq!(parse_date("2020-03-09"), d);
        assert_eq!(parse_date("2020/03/09"), d);
        assert_eq!(parse_date("20200309"), d);
        assert_eq!(parse_date("2020-03-09 00:00:00"), d);
        assert_eq!(parse_date("2020-03-09T16:00:00Z"), d);
        assert_eq!(parse_date("09.03.2020"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn numbers_accept_nan_spellings_but_not_text() {
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_number("inf"), Some(f64::INFINITY));
        assert_eq!(parse_number("1.5e2"), Some(150.0));
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("1,000"), None);
    }
}
