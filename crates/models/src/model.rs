//! One interface for every model kind: configure ([`ModelConfig`], validated) → [`fit`] → [`TrainedModel`] →
//! predict → save / load. A saved model is a directory with `model.json` (kind, config, feature spec hash and
//! names, seed, training range, sha256 of every file) plus the kind's own files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use stockcast_features::Checked;
pub use stockcast_features::outputs::Replace;
use stockcast_features::outputs::{Marker, check_output_dir, replace_dir};

use crate::data::{Dataset, Predictions, Rows};
use crate::error::{Error, Result};
pub use crate::kinds::ModelConfig;

/// What marks a directory as a saved model: `model.json` with its `format`.
pub const MODEL_MARKER: Marker = Marker { file: "model.json", key: "format" };

/// A fitted model of any kind.
pub trait Model: std::fmt::Debug + Send + Sync {
    /// Scores for every row of `data` (same order), NaN where the model has no opinion (e.g. too little history).
    fn predict_rows(&self, data: &Dataset) -> Result<Vec<f64>>;
    /// Writes the kind's own files into the (existing, empty) directory `dir`; returns extra metadata to record.
    fn save_files(&self, dir: &Path) -> Result<BTreeMap<String, serde_json::Value>>;
    /// How much each feature (named by `feature_names`, the matrix columns) drives the model, with the measure's
    /// name (`total_gain` for boosted trees, `coefficient` on standardised features for linear models); None for
    /// kinds without such a measure.
    fn importance(&self, feature_names: &[String]) -> Result<Option<Importance>> {
        let _ = feature_names;
        Ok(None)
    }
    /// One line about what the fit found, for the console (gbm: the rounds kept and the top features by gain);
    /// None for kinds with nothing to add.
    fn fit_summary(&self) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Feature importance of a fitted model: the measure and (feature, value) pairs, largest magnitude first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    /// `total_gain` or `coefficient`.
    pub measure: String,
    /// (feature, value), sorted by decreasing |value|.
    pub values: Vec<(String, f64)>,
}

/// What one model kind provides, implemented once per kind in the kind's own file. [`ModelConfig`] is the serde
/// entry point and delegates to it; adding a kind is a new file implementing this trait plus one line in the
/// kinds list in [`crate::kinds`] (and a config example under `configs/models/`).
pub trait ModelKind: std::fmt::Debug + Send + Sync {
    /// The kind's name (`kind = "..."` in TOML).
    fn name(&self) -> &'static str;
    /// Checks every parameter once, where the configuration enters ([`ModelConfig`]'s [`Params::check`]).
    fn check_params(&self) -> Result<()>;
    /// Fits on `train` (rows with labels), early-stopping on `valid` where the kind supports it.
    fn fit(&self, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<Box<dyn Model>>;
    /// [`ModelKind::fit`] on rows of datasets: the same model as fitting on [`Rows::materialize`]d copies, which
    /// is what this default does; kinds that can read the rows in place (gbm, linear, ensembles of them) do.
    fn fit_rows(&self, train: Rows<'_>, valid: Option<Rows<'_>>, seed: u64) -> Result<Box<dyn Model>> {
        let valid = valid.map(|v| v.materialize());
        self.fit(&train.materialize(), valid.as_ref(), seed)
    }
    /// Loads the kind's own files from a saved model directory (already verified against `meta`).
    fn load(&self, dir: &Path, meta: &ModelMeta) -> Result<Box<dyn Model>>;
    /// True when the model reads each row's preceding feature rows, so datasets should carry a
    /// [`context`](Dataset::context) with every known row (not only the labelled or complete ones).
    fn uses_sequences(&self) -> bool {
        false
    }
    /// True when fitting uses a validation set (early stopping), so callers hold one out.
    fn uses_validation(&self) -> bool {
        false
    }
    /// The memory a fit on `rows` training rows of `features` features allocates beyond the dataset it reads in
    /// place, in bytes: an estimate a scheduler keeps concurrent fits under a memory limit with (0: nothing that
    /// grows with the rows).
    fn fit_bytes(&self, _rows: usize, _features: usize) -> u64 {
        0
    }
    /// True when the model reads the feature columns; false for kinds that read only the price history and the
    /// rows' `(symbol, date)` (rules, forecasting), so a run of only such models computes no features.
    fn uses_features(&self) -> bool {
        true
    }
    /// True when fitting learns from training rows (rules do not: they need no labelled rows at all).
    fn learns(&self) -> bool {
        true
    }
    /// Trading days of history before a date that scoring it needs, given the feature spec's warm-up
    /// (`None`: the whole price history, as forecasting and rule models read it).
    fn history_days(&self, warmup: usize) -> Option<usize> {
        Some(warmup)
    }
    /// True when the score estimates the label (an h-day return), not a rule's signal.
    fn score_is_label(&self) -> bool {
        true
    }
}

/// What is recorded about a fitted model (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Format version of this file.
    pub format: u32,
    /// Model kind.
    pub kind: String,
    /// The configuration it was fitted with.
    pub config: Checked<ModelConfig>,
    /// Hash of the feature spec of the training data.
    pub spec_hash: String,
    /// Feature names, in matrix column order.
    pub feature_names: Vec<String>,
    /// Seed of the fit.
    pub seed: u64,
    /// Training rows.
    pub train_rows: usize,
    /// First and last training date.
    pub train_range: Option<(NaiveDate, NaiveDate)>,
    /// Kind-specific facts (best iteration, feature importance, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// sha256 of every other file in the directory, by relative path.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A fitted model and its metadata.
#[derive(Debug)]
pub struct TrainedModel {
    /// Metadata.
    pub meta: ModelMeta,
    /// The model.
    pub model: Box<dyn Model>,
}

/// Fits `config` on `train` (rows with labels), early-stopping on `valid` where the kind supports it.
///
/// # Errors
/// [`Error::Config`] for an invalid config, [`Error::Data`] for unusable data, library errors otherwise.
pub fn fit(config: &Checked<ModelConfig>, train: &Dataset, valid: Option<&Dataset>, seed: u64) -> Result<TrainedModel> {
    fit_rows(config, Rows::all(train), valid.map(Rows::all), seed)
}

/// [`fit`] on rows of datasets ([`Rows`]): the same model and metadata as fitting on copies of those rows,
/// without the copies where the kind reads rows in place.
///
/// # Errors
/// As [`fit`].
pub fn fit_rows(
    config: &Checked<ModelConfig>,
    train: Rows<'_>,
    valid: Option<Rows<'_>>,
    seed: u64,
) -> Result<TrainedModel> {
    let (names, spec) = (&train.data.matrix.feature_names, &train.data.matrix.spec_hash);
    if let Some(v) = valid
        && (v.data.matrix.feature_names != *names || v.data.matrix.spec_hash != *spec)
    {
        return Err(Error::Data("validation data has other features than the training data".into()));
    }
    let model = config.as_kind().fit_rows(train, valid, seed)?;
    let train_range = train.dates().min().zip(train.dates().max());
    let meta = ModelMeta {
        format: 1,
        kind: config.kind().to_owned(),
        config: config.clone(),
        spec_hash: spec.0.clone(),
        feature_names: names.clone(),
        seed,
        train_rows: train.len(),
        train_range,
        extra: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    Ok(TrainedModel { meta, model })
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    refuse_symlink(path)?;
    Ok(stockcast_features::io::sha256_file(path).map_err(|e| Error::Data(e.to_string()))?.1)
}

/// A symbolic link where an artifact's file should be is damage: refused, never followed.
fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::Data(format!(
            "{}: a symbolic link inside a model directory (damage: a version holds plain files only)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Relative paths of all files under `dir` (recursively, never following a symbolic link: one is an error),
/// sorted.
pub(crate) fn list_files(dir: &Path, prefix: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        let rel = prefix.join(e.file_name());
        let kind = e.file_type().map_err(|err| Error::io(&p, err))?;
        if kind.is_symlink() {
            refuse_symlink(&p)?;
        } else if kind.is_dir() {
            list_files(&p, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

impl TrainedModel {
    /// The model's feature importance ([`Model::importance`]).
    ///
    /// # Errors
    /// Errors of the kind's library (XGBoost).
    pub fn importance(&self) -> Result<Option<Importance>> {
        self.model.importance(&self.meta.feature_names)
    }

    /// Scores the rows of `data`, after checking it was built with the model's feature spec and columns.
    ///
    /// # Errors
    /// [`Error::SpecMismatch`] when the data's spec hash differs; [`Error::Data`] when the columns differ.
    pub fn predict(&self, data: &Dataset) -> Result<Predictions> {
        if data.matrix.spec_hash.0 != self.meta.spec_hash {
            return Err(Error::SpecMismatch {
                model: self.meta.spec_hash.clone(),
                data: data.matrix.spec_hash.0.clone(),
            });
        }
        if data.matrix.feature_names != self.meta.feature_names {
            return Err(Error::Data(format!(
                "the data has {} features, the model expects {} (same spec, but some families were skipped for \
                 missing columns?)",
                data.matrix.feature_names.len(),
                self.meta.feature_names.len()
            )));
        }
        let score = self.model.predict_rows(data)?;
        Ok(Predictions { index: data.matrix.index.clone(), score })
    }

    /// Saves into `dir` atomically: written into a temporary sibling directory, then [`replace_dir`] moves an
    /// existing `dir` aside, renames the new one into place and removes the old one (a crash leaves one of them
    /// complete). An existing `dir` must be a saved model (its `model.json`), empty, or `replace` must be
    /// [`Replace::Force`]; see [`stockcast_features::outputs`]. `extra_files` (name, contents) are written beside
    /// the model's own files, e.g. the spec.
    ///
    /// # Errors
    /// [`stockcast_features::Error::Refused`] (wrapped) for a directory this did not write; I/O errors.
    pub fn save(&self, dir: &Path, extra_files: &[(&str, &[u8])], replace: Replace) -> Result<()> {
        check_output_dir(dir, "saved model", &[MODEL_MARKER], replace)?;
        let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let result = (|| {
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let extra = self.model.save_files(&tmp)?;
            for (file, bytes) in extra_files {
                std::fs::write(tmp.join(file), bytes).map_err(|e| Error::io(tmp.join(file), e))?;
            }
            let mut files = Vec::new();
            list_files(&tmp, Path::new(""), &mut files)?;
            let mut meta = self.meta.clone();
            meta.extra.extend(extra);
            meta.files = files
                .iter()
                .map(|rel| Ok((rel.to_string_lossy().into_owned(), sha256_file(&tmp.join(rel))?)))
                .collect::<Result<_>>()?;
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Data(e.to_string()))?;
            stockcast_features::io::write_atomic(&tmp.join("model.json"), &json)?;
            replace_dir(&tmp, dir, &[], &|_| {})?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Loads a saved model, verifying that every recorded file exists with its recorded sha256.
    ///
    /// # Errors
    /// [`Error::Artifact`] when `model.json` is missing or invalid, a file is missing, altered or truncated.
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("model.json");
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| Error::artifact(dir, format!("cannot read model.json: {e}")))?;
        let meta: ModelMeta =
            serde_json::from_str(&text).map_err(|e| Error::artifact(dir, format!("invalid model.json: {e}")))?;
        if meta.format != 1 {
            return Err(Error::artifact(dir, format!("unsupported model format {}", meta.format)));
        }
        for (rel, want) in &meta.files {
            let p = dir.join(rel);
            refuse_symlink(&p)?;
            if !p.is_file() {
                return Err(Error::artifact(dir, format!("file {rel} is missing")));
            }
            let got = sha256_file(&p)?;
            if &got != want {
                return Err(Error::artifact(
                    dir,
                    format!("file {rel} was altered or truncated (sha256 {got}, expected {want})"),
                ));
            }
        }
        let model = meta.config.as_kind().load(dir, &meta)?;
        Ok(Self { meta, model })
    }
}
