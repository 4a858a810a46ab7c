//! `predictions.parquet` written as a stream: rows are pushed model by model and leave in row groups of a fixed
//! number of rows ([`GROUP_ROWS`], counted across models), so a whole run (every prediction in memory) and a
//! merge (one model's at a time, read from shard files) write the same bytes while the merge holds one row group.
//! A shard's predictions file is written the same way, keyed by task ([`Layout::Shard`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stockcast_features::polars::prelude::*;
use stockcast_features::prices::date_to_days;

use crate::error::{Error, Result};
use crate::runner::OosPrediction;

/// Rows per row group (Polars' default row group size).
pub const GROUP_ROWS: usize = 512 * 512;

/// The columns of a predictions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A run's `predictions.parquet`: model (str), symbol, date (date), fold, score, label.
    Report,
    /// A shard's: task (u32, its index in the plan), symbol, date (i32 days since 1970-01-01), fold, score, label.
    Shard,
}

/// The columns of the rows waiting for their row group.
#[derive(Default)]
struct Rows {
    /// The model's place in the writer's names ([`Layout::Report`]) or the task ([`Layout::Shard`]).
    model: Vec<u32>,
    symbol: Vec<Arc<str>>,
    date: Vec<i32>,
    fold: Vec<u32>,
    score: Vec<f64>,
    label: Vec<f64>,
}

impl Rows {
    fn len(&self) -> usize {
        self.model.len()
    }

    /// The frame of these rows in `layout`.
    fn frame(&self, layout: Layout, models: &[String]) -> Result<DataFrame> {
        let (key, date) = match layout {
            Layout::Report => (
                Column::new(
                    "model".into(),
                    self.model.iter().map(|&m| models[m as usize].as_str()).collect::<Vec<_>>(),
                ),
                Column::new("date".into(), &self.date)
                    .cast(&DataType::Date)
                    .map_err(stockcast_features::Error::from)?,
            ),
            Layout::Shard => (Column::new("task".into(), &self.model), Column::new("date".into(), &self.date)),
        };
        let cols = vec![
            key,
            Column::new("symbol".into(), self.symbol.iter().map(|s| &**s).collect::<Vec<_>>()),
            date,
            Column::new("fold".into(), &self.fold),
            Column::new("score".into(), &self.score),
            Column::new("label".into(), &self.label),
        ];
        Ok(DataFrame::new_infer_height(cols).map_err(stockcast_features::Error::from)?)
    }

    /// Empties the columns, keeping their room for the next row group.
    fn clear(&mut self) {
        self.model.clear();
        self.symbol.clear();
        self.date.clear();
        self.fold.clear();
        self.score.clear();
        self.label.clear();
    }
}

/// A `predictions.parquet` being written (see the module's documentation). It creates its file (never one that
/// is there already), and removes it when dropped before [`PredictionWriter::finish`].
pub struct PredictionWriter {
    path: PathBuf,
    layout: Layout,
    writer: Option<stockcast_features::polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    models: Vec<String>,
    rows: Rows,
    written: usize,
}

impl std::fmt::Debug for PredictionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionWriter")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("models", &self.models)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl PredictionWriter {
    /// Creates `path`, which must not exist, with the columns of `layout`.
    ///
    /// # Errors
    /// [`Error::File`] (among others when `path` exists); Parquet errors.
    pub fn create(path: &Path, layout: Layout) -> Result<Self> {
        let file = std::fs::File::create_new(path).map_err(|e| Error::file(path, e))?;
        let schema = Rows::default().frame(layout, &[])?.schema().clone();
        let writer = ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .batched(&schema)
            .map_err(stockcast_features::Error::from)?;
        Ok(Self {
            path: path.to_owned(),
            layout,
            writer: Some(writer),
            models: Vec::new(),
            rows: Rows::default(),
            written: 0,
        })
    }

    /// Appends `preds` of model `model` ([`Layout::Report`]).
    ///
    /// # Errors
    /// Parquet and I/O errors of a row group that filled up.
    pub fn push(&mut self, model: &str, preds: &[OosPrediction]) -> Result<()> {
        let m = if let Some(m) = self.models.iter().position(|n| n == model) {
            m
        } else {
            self.models.push(model.to_owned());
            self.models.len() - 1
        };
        self.push_keyed(u32::try_from(m).map_err(|_| Error::Data("more than 2^32 models".into()))?, preds)
    }

    /// Appends `preds` of task `task` ([`Layout::Shard`]).
    ///
    /// # Errors
    /// As [`PredictionWriter::push`].
    pub fn push_task(&mut self, task: usize, preds: &[OosPrediction]) -> Result<()> {
        self.push_keyed(u32::try_from(task).map_err(|_| Error::Data(format!("task {task} beyond 2^32")))?, preds)
    }

    fn push_keyed(&mut self, m: u32, preds: &[OosPrediction]) -> Result<()> {
        for p in preds {
            let r = &mut self.rows;
            r.model.push(m);
            r.symbol.push(Arc::clone(&p.symbol));
            r.date.push(date_to_days(p.date));
            r.fold.push(p.fold);
            r.score.push(p.score);
            r.label.push(p.label);
            if r.len() == GROUP_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        let df = self.rows.frame(self.layout, &self.models)?;
        if let Some(w) = &mut self.writer {
            w.write_batch(&df).map_err(|e| Error::Data(format!("{}: {e}", self.path.display())))?;
        }
        self.written += self.rows.len();
        self.rows.clear();
        Ok(())
    }

    /// Writes the last row group and the footer, and flushes the file to disk; the rows written.
    ///
    /// # Errors
    /// Parquet and I/O errors.
    pub fn finish(mut self) -> Result<usize> {
        self.flush()?;
        if let Some(w) = self.writer.take() {
            w.finish().map_err(|e| Error::Data(format!("{}: {e}", self.path.display())))?;
        }
        let f = std::fs::File::open(&self.path).map_err(|e| Error::file(&self.path, e))?;
        f.sync_all().map_err(|e| Error::file(&self.path, e))?;
        Ok(self.written)
    }

    /// [`PredictionWriter::finish`], the file then in the charge of a [`Spooled`] (removed when that is dropped).
    ///
    /// # Errors
    /// As [`PredictionWriter::finish`].
    pub fn finish_spooled(self) -> Result<(Spooled, usize)> {
        let path = self.path.clone();
        let rows = self.finish()?;
        Ok((Spooled { path }, rows))
    }
}

impl Drop for PredictionWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes every model's predictions of `predictions` (in its order) to `path`.
///
/// # Errors
/// As [`PredictionWriter`].
pub fn write<'a>(
    path: &Path,
    predictions: impl IntoIterator<Item = (&'a String, &'a Vec<OosPrediction>)>,
) -> Result<usize> {
    let mut w = PredictionWriter::create(path, Layout::Report)?;
    for (model, preds) in predictions {
        w.push(model, preds)?;
    }
    w.finish()
}

/// A file a [`PredictionWriter`] created and finished, removed when this is dropped: a streamed merge's
/// `predictions.parquet`, written before its run directory and linked (or copied) into it.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
}

impl Spooled {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the file at `dest` too: a hard link, or a copy across file systems.
    ///
    /// # Errors
    /// [`Error::File`].
    pub fn link_to(&self, dest: &Path) -> Result<()> {
        if std::fs::hard_link(&self.path, dest).is_err() {
            std::fs::copy(&self.path, dest).map_err(|e| Error::file(dest, e))?;
        }
        Ok(())
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
