//! Price sources made of several files: a folder (per-symbol files, or a hive-partitioned dataset such as
//! `prices/symbol=AAPL/part-0.parquet`, read recursively) or a glob pattern (`data/*.csv`, `data/**/*.parquet`).
//!
//! Each file is read by the single-file reader (CSV, Parquet or Arrow IPC, any layout) and the rows are
//! concatenated; every row keeps its file and line, so the quality checks name `FILE line N` as they name a line
//! of one file. A file without a symbol column holds the symbol of its `symbol=` folder (hive), else its file
//! stem. Every file must have the same price columns. With a symbol filter (`--symbol`, `data.symbols`), a file
//! that names its symbol by path and has no symbol column is skipped without reading its rows, so a
//! 5,000-symbol folder is not read whole for a few names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fields::Layout;
use crate::load::{Bars, ReadOptions, has_symbol_column, read_file};

/// Extensions of the files a folder source reads.
const EXTENSIONS: &[&str] = &["csv", "txt", "parquet", "pq", "arrow", "ipc", "feather"];

/// The files of a folder or glob source, sorted; `None` for a plain file path.
///
/// # Errors
/// [`Error::BadInput`] for a bad pattern, or a folder or pattern without price files; [`Error::Read`] for an
/// unreadable folder.
pub fn files_of(path: &Path) -> Result<Option<Vec<PathBuf>>> {
    let text = path.to_string_lossy();
    let files = if text.contains(['*', '?', '[']) && !path.exists() {
        let paths = glob::glob(&text).map_err(|e| Error::bad_input(path, format!("not a valid pattern: {e}")))?;
        let mut files = Vec::new();
        for p in paths {
            let p = p.map_err(|e| {
                let at = e.path().to_path_buf();
                Error::read(&at, e.into())
            })?;
            if p.is_file() {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(Error::bad_input(path, "no file matches the pattern"));
        }
        files
    } else if path.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        if files.is_empty() {
            return Err(Error::bad_input(
                path,
                format!("the folder has no price files (looked for *.{}, recursively)", EXTENSIONS.join(", *.")),
            ));
        }
        files
    } else {
        return Ok(None);
    };
    let mut files = files;
    files.sort();
    Ok(Some(files))
}

/// Collects the price files under `dir`, skipping hidden and `_`-prefixed entries (`_SUCCESS`, `_metadata`).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))? {
        let entry = entry.map_err(|e| Error::read(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::read(&path, e))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The `key=value` folders between the source and a file (hive partitioning), keys in lower case.
fn hive_keys(root: &Path, file: &Path) -> HashMap<String, String> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    rel.parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|c| {
            let c = c.as_os_str().to_string_lossy();
            let (k, v) = c.split_once('=')?;
            Some((k.to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

/// The symbol a file names by its path: its `symbol=` (or `ticker=`) folder, else its file stem.
fn path_symbol(root: &Path, file: &Path) -> String {
    let keys = hive_keys(root, file);
    keys.get("symbol")
        .or_else(|| keys.get("ticker"))
        .cloned()
        .unwrap_or_else(|| file.file_stem().map_or_else(|| "SYMBOL".to_owned(), |s| s.to_string_lossy().into_owned()))
}

/// Reads `files` of the source `root` and concatenates their rows (see the module doc).
///
/// # Errors
/// Any file's read error; [`Error::BadInput`] naming a file whose price columns differ from the first file's, or
/// when the symbol filter matches no row.
pub fn read_files(root: &Path, files: &[PathBuf], opts: &ReadOptions) -> Result<Bars> {
    // Files are read and parsed on every core (each file on its own), then appended in file order.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Option<Bars>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|f| read_one(root, f, opts)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut out: Option<Bars> = None;
    let mut codes: HashMap<String, u32> = HashMap::new();
    for (file, bars) in files.iter().zip(parts) {
        let Some(bars) = bars? else { continue };
        let all = out.get_or_insert_with(|| Bars {
            fields: bars.fields.iter().map(|(f, _)| (*f, Vec::new())).collect(),
            column_names: bars.column_names.clone(),
            ..Bars::empty(root.to_path_buf(), bars.line_unit, Layout::Files)
        });
        append(all, bars, file, &mut codes)?;
    }
    out.ok_or_else(|| {
        Error::bad_input(
            root,
            format!("symbol `{}` is in none of its {} files", opts.symbol.as_deref().unwrap_or_default(), files.len()),
        )
    })
}

/// One file of the source, or `None` when the symbol filter rules it out.
fn read_one(root: &Path, file: &Path, opts: &ReadOptions) -> Result<Option<Bars>> {
    let named = path_symbol(root, file);
    let long = has_symbol_column(file)?;
    let unwanted = opts.symbol.as_ref().is_some_and(|want| *want != named)
        || (!opts.symbols.is_empty() && !opts.symbols.contains(&named));
    if !long && unwanted {
        return Ok(None);
    }
    // A file without a symbol column holds its path's symbol; a long file keeps only `--symbol`'s rows.
    let file_opts = ReadOptions {
        symbol: if long { opts.symbol.clone() } else { Some(named) },
        symbols: Vec::new(),
        date_format: opts.date_format.clone(),
    };
    match read_file(file, &file_opts) {
        Err(Error::BadInput { message, .. }) if message.contains("does not occur in the file") => Ok(None),
        other => other.map(Some),
    }
}

/// Appends one file's rows to the source's.
fn append(all: &mut Bars, bars: Bars, file: &Path, codes: &mut HashMap<String, u32>) -> Result<()> {
    let names = |b: &Bars| b.fields.iter().map(|(f, _)| f.name()).collect::<Vec<_>>().join(", ");
    let same = bars.fields.len() == all.fields.len() && bars.fields.iter().zip(&all.fields).all(|(a, b)| a.0 == b.0);
    if !same || bars.line_unit != all.line_unit {
        return Err(Error::bad_input(
            file,
            format!(
                "has the price columns [{}] ({}s) but {} has [{}] ({}s): every file of a folder or pattern needs \
                 the same columns and format",
                names(&bars),
                bars.line_unit,
                all.files.first().map_or_else(String::new, |f| f.display().to_string()),
                names(all),
                all.line_unit
            ),
        ));
    }
    let offset = all.len();
    let file_code = all.files.len() as u32;
    all.files.push(file.to_path_buf());
    let remap: Vec<u32> = bars
        .symbol_names
        .iter()
        .map(|name| {
            let next = codes.len() as u32;
            *codes.entry(name.clone()).or_insert_with(|| {
                all.symbol_names.push(name.clone());
                next
            })
        })
        .collect();
    all.symbol.extend(bars.symbol.iter().map(|c| remap[*c as usize]));
    all.date.extend(bars.date);
    all.line.extend(bars.line);
    all.file.extend(std::iter::repeat_n(file_code, bars.symbol.len()));
    for ((_, to), (_, from)) in all.fields.iter_mut().zip(bars.fields) {
        to.extend(from);
    }
    all.issues.extend(bars.issues.into_iter().map(|mut i| {
        i.row += offset;
        i
    }));
    all.empty_wide_cells += bars.empty_wide_cells;
    Ok(())
}
