//! The backtest configuration file (TOML): data, feature spec, label horizon, splitter, models and strategy.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stockcast_features::Checked;
use stockcast_models::ModelConfig;

use crate::error::{Error, Result};
use crate::portfolio::{Fill, StrategyConfig};
use crate::runner::ModelSpec;
use crate::split::SplitConfig;

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Price file (CSV or Parquet; long, single-symbol or wide layout).
    #[serde(default)]
    pub prices: Option<PathBuf>,
    /// Securities file (symbol, sector, name), optional.
    #[serde(default)]
    pub securities: Option<PathBuf>,
    /// Index close file (`date`, `close`) for a second benchmark, optional.
    #[serde(default)]
    pub index: Option<PathBuf>,
    /// What the index file's levels include: `"price"` (the default; dividends left out, as in most index
    /// files) or `"total_return"` (dividends reinvested). The report says which, and warns when it does not
    /// match the prices (a price index against dividend-adjusted strategies).
    #[serde(default)]
    pub index_kind: crate::portfolio::IndexKind,
    /// Point-in-time universe file (qlib's `SYMBOL<TAB>start<TAB>end`, or `symbol,start,end`): on each date only
    /// members are ranked, labelled for training, scored, traded and counted (default: every symbol of the
    /// prices on every date it trades, which is survivor-biased when the file holds today's members only).
    #[serde(default)]
    pub universe: Option<PathBuf>,
    /// Point-in-time classification file (`symbol,start,end,sector[,industry]`, an empty end open): each row's
    /// sector (and industry) on its date, for group features, `label.demean = "sector"` and the tear sheet's
    /// per-sector tables; it replaces the securities file's static sector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<PathBuf>,
    /// Data-quality policies, thresholds, declared splits and `adjust_detected_splits` (the `quality` command's
    /// config file, inline as `[data.quality]`; `--quality-config`, `--splits` and `--adjust-detected-splits`
    /// override it). Default: the quality defaults (row defects are errors, series findings warn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<stockcast_features::QualityConfig>,
    /// Factor files joined point in time (`[[data.factors]]`: `file`, `lag_days` or an `available_date` column,
    /// `max_age_days`, `columns`); the spec's `factor*` families read their columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<stockcast_features::factors::FactorSource>,
    /// Only these symbols (default: all).
    #[serde(default)]
    pub symbols: Vec<String>,
    /// The dates' format when the price file's are not YYYY-MM-DD (strftime syntax, e.g. `%m/%d/%Y`).
    #[serde(default)]
    pub date_format: Option<String>,
    /// Feature spec file (default: the built-in default spec).
    #[serde(default)]
    pub spec: Option<PathBuf>,
    /// Label horizon in trading days, overriding the spec's.
    #[serde(default)]
    pub horizon: Option<usize>,
}

/// Checks a run name: the default output directory is `runs/<name>`, so it is a plain name (letters, digits, `-`,
/// `_`, `.`, not starting with `.`, at most 100 characters), never a path.
///
/// # Errors
/// [`Error::Config`] naming the value.
pub fn check_run_name(name: &str) -> Result<()> {
    if stockcast_features::outputs::is_plain_name(name, 100) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "name = {name:?}: a run name is a plain name (letters, digits, -, _ and ., not starting with .); the \
             default output is runs/<name>, and --out names any other directory"
        )))
    }
}

/// A model entry: a name and either a config file or an inline config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Name in the report.
    pub name: String,
    /// Model config file (`configs/models/*.toml`).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Inline model config, e.g. `model = { kind = "rule", rule = "sma_cross", fast = 10, slow = 20 }`.
    #[serde(default)]
    pub model: Option<Checked<ModelConfig>>,
}

/// Command-line overrides of a [`BacktestConfig`] (`None` and an empty list keep the file's values); applied and
/// checked by [`BacktestConfig::with_overrides`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `data.prices` (a file or a database URL).
    pub prices: Option<PathBuf>,
    /// `data.index`.
    pub index: Option<PathBuf>,
    /// `data.index_kind`.
    pub index_kind: Option<crate::portfolio::IndexKind>,
    /// A quality config file replacing `data.quality`.
    pub quality_config: Option<PathBuf>,
    /// A declared-splits file (`symbol,date,ratio`) added to `data.quality.splits`.
    pub splits: Option<PathBuf>,
    /// Sets `data.quality.adjust_detected_splits`.
    pub adjust_detected_splits: bool,
    /// Only these models (and their sweeps), by name.
    pub models: Vec<String>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `jobs` (≥ 1, as in the file).
    pub jobs: Option<usize>,
    /// `memory_gb` (> 0, as in the file).
    pub memory_gb: Option<f64>,
    /// `data.horizon`: the label horizon, which the purge gap and every model's target follow.
    pub horizon: Option<usize>,
    /// `split.test_days`.
    pub test_days: Option<usize>,
    /// `split.min_train_days`.
    pub min_train_days: Option<usize>,
    /// `strategy.rebalance_days`.
    pub rebalance_days: Option<usize>,
    /// `strategy.commission_bps`.
    pub commission_bps: Option<f64>,
    /// `strategy.slippage_bps`.
    pub slippage_bps: Option<f64>,
}

/// The whole backtest configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestConfig {
    /// Run name (the default output directory is `runs/<name>`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Base seed of every fit.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Fits in parallel (default: 1).
    #[serde(default = "default_jobs")]
    pub jobs: usize,
    /// Resident memory, in GB, the walk-forward keeps its concurrent fits under: a fit starts only while its
    /// estimated memory fits beside the running ones (one always runs). Changes no result, only which fits run
    /// together. Default: no limit (`jobs` fits at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gb: Option<f64>,
    /// Data.
    #[serde(default)]
    pub data: DataConfig,
    /// Walk-forward splitter.
    #[serde(default)]
    pub split: SplitConfig,
    /// Models.
    pub models: Vec<ModelEntry>,
    /// Portfolio strategy.
    #[serde(default)]
    pub strategy: Checked<StrategyConfig>,
    /// Report settings (quantiles, IC decay horizons, rolling window, drawdown periods).
    #[serde(default)]
    pub report: Checked<crate::tearsheet::ReportConfig>,
    /// Parameter sweeps: `[sweep.<model name>]` with `parameter = [values...]` replaces that model by one model
    /// per point of the grid (every combination), named `<name>[p1=v1,p2=v2]` (parameters in name order).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sweep: std::collections::BTreeMap<String, toml::Table>,
}

fn default_name() -> String {
    "backtest".into()
}
fn default_seed() -> u64 {
    42
}
fn default_jobs() -> usize {
    1
}

/// Whether the label measures what the strategy's fills can earn: next-open fills earn open(t+1) → open(t+1+h)
/// (`label.price = "open"`, the default), close fills earn close(t) → close(t+h) (`label.price = "close"`). A
/// mismatch is allowed but reported: with a close label and next-open fills, IC and the promotion gate include the
/// overnight move close(t) → open(t+1), which the portfolio never earns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelAlignment {
    /// The label's formula.
    pub definition: String,
    /// The label price (`open` or `close`).
    pub price: &'static str,
    /// The strategy's fill.
    pub fill: Fill,
    /// True when the label starts where the fills trade.
    pub aligned: bool,
    /// What a mismatch means, when there is one.
    pub warning: Option<String>,
}

/// See [`LabelAlignment`].
pub fn label_alignment(label: &stockcast_features::LabelSpec, fill: Fill) -> LabelAlignment {
    use stockcast_features::LabelPrice;
    let aligned = matches!((label.price, fill), (LabelPrice::Open, Fill::NextOpen) | (LabelPrice::Close, Fill::Close));
    let warning = (!aligned).then(|| match fill {
        Fill::NextOpen => "the label is close(t) → close(t+h) but orders fill at the next open: IC, Rank IC and the \
                           gate include the overnight move close(t) → open(t+1), which the portfolio never earns \
                           (set label.price = \"open\" in the feature spec)"
            .to_owned(),
        Fill::Close => "the label is open(t+1) → open(t+1+h) but orders fill at the close of t: the signal metrics \
                        leave out the overnight move the portfolio does earn (set label.price = \"close\")"
            .to_owned(),
    });
    LabelAlignment { definition: label.describe(), price: label.price.name(), fill, aligned, warning }
}

/// Resolves a path named in a config: as given when it exists (relative to the working directory), else relative
/// to the config file's directory and its ancestors (so `configs/x.toml` can name `datasets/...`).
pub fn resolve(path: &Path, config_file: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let mut dir = config_file.parent();
    while let Some(d) = dir {
        let candidate = d.join(path);
        if candidate.exists() {
            return candidate;
        }
        dir = d.parent();
    }
    path.to_path_buf()
}

impl BacktestConfig {
    /// Parses a config; paths stay as written.
    ///
    /// # Errors
    /// [`Error::Config`] with the parser's message.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The rules every config meets, from a file or with command-line [`Overrides`]: at least one model, `jobs` ≥
    /// 1, a plain run name, a horizon ≥ 1 when given (the strategy, report settings and inline models are
    /// checked as they are read: [`Checked`]).
    fn check(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(Error::Config("no [[models]] given".into()));
        }
        if self.jobs == 0 {
            return Err(Error::Config("jobs must be at least 1".into()));
        }
        if let Some(gb) = self.memory_gb.filter(|gb| !(gb.is_finite() && *gb > 0.0)) {
            return Err(Error::Config(format!("memory_gb must be a positive number of gigabytes, not {gb}")));
        }
        if self.data.horizon == Some(0) {
            return Err(Error::Config("the label horizon must be at least 1 trading day".into()));
        }
        check_run_name(&self.name)
    }

    /// The config with the command line's `overrides` applied, checked by the same rules as a file (so `--jobs 0`
    /// is refused as `jobs = 0` is).
    ///
    /// # Errors
    /// [`Error::Config`] naming the value (an unknown `--model` name lists the config's).
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Self> {
        if let Some(p) = &o.prices {
            self.data.prices = Some(p.clone());
        }
        if let Some(p) = &o.index {
            self.data.index = Some(p.clone());
        }
        if let Some(k) = o.index_kind {
            self.data.index_kind = k;
        }
        if let Some(p) = &o.quality_config {
            let text = stockcast_features::io::read_text(p)?;
            let q = toml::from_str(&text)
                .map_err(|e| Error::Config(format!("quality config {}: {}", p.display(), e.message())))?;
            self.data.quality = Some(q);
        }
        if let Some(p) = &o.splits {
            self.data.quality.get_or_insert_with(Default::default).splits.extend(stockcast_features::read_splits(p)?);
        }
        if o.adjust_detected_splits {
            self.data.quality.get_or_insert_with(Default::default).adjust_detected_splits = true;
        }
        if !o.models.is_empty() {
            if let Some(name) = o.models.iter().find(|n| !self.models.iter().any(|m| &m.name == *n)) {
                let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                return Err(Error::Config(format!("--model {name}: not in the config (it has {})", known.join(", "))));
            }
            self.models.retain(|m| o.models.contains(&m.name));
            self.sweep.retain(|name, _| o.models.contains(name));
        }
        self.seed = o.seed.unwrap_or(self.seed);
        self.jobs = o.jobs.unwrap_or(self.jobs);
        self.memory_gb = o.memory_gb.or(self.memory_gb);
        self.data.horizon = o.horizon.or(self.data.horizon);
        self.split.test_days = o.test_days.unwrap_or(self.split.test_days);
        self.split.min_train_days = o.min_train_days.unwrap_or(self.split.min_train_days);
        let mut strategy = self.strategy.into_inner();
        strategy.rebalance_days = o.rebalance_days.unwrap_or(strategy.rebalance_days);
        strategy.commission_bps = o.commission_bps.unwrap_or(strategy.commission_bps);
        strategy.slippage_bps = o.slippage_bps.unwrap_or(strategy.slippage_bps);
        self.strategy = Checked::new(strategy)?;
        self.check()?;
        Ok(self)
    }

    /// Like [`BacktestConfig::from_toml`] for a text that also has the top-level tables `extra`, which are returned
    /// as they are (paths stay as written).
    ///
    /// # Errors
    /// [`Error::Config`] with the parser's message.
    pub fn from_toml_with(text: &str, extra: &[&str]) -> Result<(Self, toml::Table)> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let mut extras = toml::Table::new();
        for key in extra {
            if let Some(v) = table.remove(*key) {
                extras.insert((*key).to_owned(), v);
            }
        }
        let rest = toml::to_string(&table).map_err(|e| Error::Config(e.to_string()))?;
        Ok((Self::from_toml(&rest)?, extras))
    }

    /// Reads a config file and resolves its paths (data files, spec, model configs) against it.
    ///
    /// # Errors
    /// [`Error::File`] when unreadable, [`Error::Config`] when invalid (the message names the file).
    pub fn from_file(path: &Path) -> Result<Self> {
        Ok(Self::from_file_with(path, &[])?.0)
    }

    /// Like [`BacktestConfig::from_file`] for a file that also has the top-level tables `extra` (e.g. the nightly
    /// config's `[gate]`), which are returned as they are.
    ///
    /// # Errors
    /// As [`BacktestConfig::from_file`].
    pub fn from_file_with(path: &Path, extra: &[&str]) -> Result<(Self, toml::Table)> {
        let text = stockcast_features::io::read_text(path)?;
        let (mut cfg, extras) = Self::from_toml_with(&text, extra).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p.as_mut() {
                *x = resolve(x, path);
            }
        };
        fix(&mut cfg.data.prices);
        fix(&mut cfg.data.securities);
        fix(&mut cfg.data.index);
        fix(&mut cfg.data.spec);
        fix(&mut cfg.data.universe);
        fix(&mut cfg.data.classification);
        for f in &mut cfg.data.factors {
            f.file = resolve(&f.file, path);
        }
        for m in &mut cfg.models {
            fix(&mut m.config);
        }
        Ok((cfg, extras))
    }

    /// The models with their configs read (a config file is read once here; the inline form wins if both given
    /// is refused).
    ///
    /// # Errors
    /// [`Error::Config`] naming the model.
    pub fn model_specs(&self) -> Result<Vec<ModelSpec>> {
        self.models
            .iter()
            .map(|m| {
                let config = match (&m.config, &m.model) {
                    (Some(_), Some(_)) => {
                        return Err(Error::Config(format!("model {:?}: give `config` or `model`, not both", m.name)));
                    }
                    (None, None) => {
                        return Err(Error::Config(format!(
                            "model {:?}: give a `config` file or an inline `model`",
                            m.name
                        )));
                    }
                    (Some(p), None) => {
                        ModelConfig::from_file(p).map_err(|e| Error::Config(format!("model {:?}: {e}", m.name)))?
                    }
                    (None, Some(c)) => c.clone(),
                };
                Ok(ModelSpec { name: m.name.clone(), config })
            })
            .collect::<Result<Vec<_>>>()
            .and_then(|specs| self.expand_sweeps(specs))
    }

    /// Replaces each swept model by its grid (see [`BacktestConfig::sweep`]).
    fn expand_sweeps(&self, specs: Vec<ModelSpec>) -> Result<Vec<ModelSpec>> {
        for name in self.sweep.keys() {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(Error::Config(format!("[sweep.{name}]: no model named {name:?} in [[models]]")));
            }
        }
        let mut out = Vec::new();
        for spec in specs {
            match self.sweep.get(&spec.name) {
                None => out.push(spec),
                Some(grid) => out.extend(sweep_grid(&spec, grid)?),
            }
        }
        Ok(out)
    }
}

/// Every point of `grid` applied to `base`'s parameters, in odometer order (the last parameter fastest).
fn sweep_grid(base: &ModelSpec, grid: &toml::Table) -> Result<Vec<ModelSpec>> {
    let err = |m: String| Error::Config(format!("[sweep.{}]: {m}", base.name));
    if grid.is_empty() {
        return Err(err("no parameters to sweep".into()));
    }
    let mut axes: Vec<(&String, &Vec<toml::Value>)> = Vec::new();
    for (param, values) in grid {
        if param == "kind" {
            return Err(err("the model kind cannot be swept (give one [[models]] entry per kind)".into()));
        }
        match values {
            toml::Value::Array(v) if !v.is_empty() => axes.push((param, v)),
            _ => return Err(err(format!("{param} must be a non-empty array of values, e.g. {param} = [1, 2]"))),
        }
    }
    let toml::Value::Table(params) = toml::Value::try_from(&base.config).map_err(|e| err(e.to_string()))? else {
        return Err(err("the model's parameters are not a table".into()));
    };
    let points: usize = axes.iter().map(|(_, v)| v.len()).product();
    let mut out = Vec::with_capacity(points);
    for n in 0..points {
        let (mut table, mut label, mut rest) = (params.clone(), Vec::new(), n);
        for (param, values) in axes.iter().rev() {
            let v = &values[rest % values.len()];
            rest /= values.len();
            table.insert((*param).clone(), v.clone());
            label.push(format!(
                "{param}={}",
                match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            ));
        }
        label.reverse();
        let name = format!("{}[{}]", base.name, label.join(","));
        // Deserialising checks the expanded configuration.
        let config: Checked<ModelConfig> =
            toml::Value::Table(table).try_into().map_err(|e| err(format!("{name}: {e}")))?;
        out.push(ModelSpec { name, config });
    }
    Ok(out)
}
