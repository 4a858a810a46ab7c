//! The declarative feature spec: which feature families with which windows, and how the label is made.
//!
//! A spec is plain TOML (see `configs/features/default.toml`), validated once, and identified by a stable
//! [`SpecHash`] over its normalised content, so every artifact can record which features it was trained on.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checked::{Checked, Params};
use crate::error::{Error, Result};
use crate::load::PriceField;

/// Feature families. Each family turns a list of windows into one feature per window (MACD: three features;
/// cross-sectional families: one per referenced feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `close[t] / close[t-w] - 1` → `ret_{w}`.
    Returns,
    /// `ln(close[t] / close[t-w])` → `logret_{w}`.
    LogReturns,
    /// `close / SMA(close, w) - 1` → `ma_ratio_{w}`.
    MaRatio,
    /// `close / EMA(close, span w) - 1`, EMA with `alpha = 2/(w+1)`, seeded with the first close → `ema_ratio_{w}`.
    EmaRatio,
    /// Sample standard deviation (ddof 1) of daily log returns over `w` days → `vol_{w}`.
    Volatility,
    /// Wilder's RSI (0–100): gains/losses smoothed with `alpha = 1/w` → `rsi_{w}`.
    Rsi,
    /// MACD line `(EMA_fast - EMA_slow) / close`, its EMA signal, and their difference → `macd_*`.
    Macd,
    /// Bollinger %B: `(close - (SMA - k·sd)) / (2k·sd)`, sd with ddof 1 → `bb_pctb_{w}`.
    Bollinger,
    /// Wilder's average true range over `w`, divided by close → `atr_{w}`. Needs high and low.
    Atr,
    /// Stochastic %K (0–100): `(close - min(low, w)) / (max(high, w) - min(low, w))` → `stoch_k_{w}`.
    Stochastic,
    /// z-score of `ln(1 + volume)` against its `w`-day mean and sd → `volume_z_{w}`. Needs volume.
    VolumeZ,
    /// Pearson correlation of close and `ln(1 + volume)` over `w` days (qlib's CORR) → `pv_corr_{w}`.
    PriceVolumeCorr,
    /// `close / max(close, w) - 1` (≤ 0) → `dist_max_{w}`.
    DistMax,
    /// `close / min(close, w) - 1` (≥ 0) → `dist_min_{w}`.
    DistMin,
    /// Rolling skewness (biased, like pandas `skew(bias=True)`) of daily simple returns → `skew_{w}`.
    Skew,
    /// Rolling excess kurtosis (Fisher, biased) of daily simple returns → `kurt_{w}`.
    Kurtosis,
    /// Mean of `(high - low) / close` over `w` days → `hl_range_{w}`. Needs high and low.
    HlRange,
    /// Mean of the overnight gap `open / previous close - 1` over `w` days → `open_gap_{w}`. Needs open.
    OpenGap,
    /// Cross-sectional mid-rank percentile `(rank - 0.5) / n` per date of the features in `of` → `cs_rank_{f}`.
    CsRank,
    /// Cross-sectional z-score per date of the features in `of` → `cs_z_{f}`.
    CsZscore,
    /// The value of each factor column in `of` (joined point in time, see [`crate::factors`]) → `f_{c}`.
    Factor,
    /// Rolling mean of each factor column over `w` rows → `f_{c}_mean_{w}`.
    FactorMean,
    /// Rolling sample standard deviation (ddof 1) of each factor column → `f_{c}_std_{w}`.
    FactorStd,
    /// z-score of each factor column against its `w`-row mean and sd → `f_{c}_z_{w}`.
    FactorZscore,
    /// Relative change of each factor column over `w` rows, `c[t] / c[t-w] - 1` → `f_{c}_chg_{w}`.
    FactorChange,
    /// A formula over data columns and earlier features (`name`, `expr`; see [`crate::expr`]) → `{name}`.
    Expr,
}

impl Family {
    /// Snake-case name as written in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Self::Returns => "returns",
            Self::LogReturns => "log_returns",
            Self::MaRatio => "ma_ratio",
            Self::EmaRatio => "ema_ratio",
            Self::Volatility => "volatility",
            Self::Rsi => "rsi",
            Self::Macd => "macd",
            Self::Bollinger => "bollinger",
            Self::Atr => "atr",
            Self::Stochastic => "stochastic",
            Self::VolumeZ => "volume_z",
            Self::PriceVolumeCorr => "price_volume_corr",
            Self::DistMax => "dist_max",
            Self::DistMin => "dist_min",
            Self::Skew => "skew",
            Self::Kurtosis => "kurtosis",
            Self::HlRange => "hl_range",
            Self::OpenGap => "open_gap",
            Self::CsRank => "cs_rank",
            Self::CsZscore => "cs_zscore",
            Self::Factor => "factor",
            Self::FactorMean => "factor_mean",
            Self::FactorStd => "factor_std",
            Self::FactorZscore => "factor_zscore",
            Self::FactorChange => "factor_change",
            Self::Expr => "expr",
        }
    }

    /// Whether the family transforms factor columns (named in `of`) rather than prices.
    pub fn is_factor(self) -> bool {
        matches!(self, Self::Factor | Self::FactorMean | Self::FactorStd | Self::FactorZscore | Self::FactorChange)
    }

    /// Price columns the family needs besides `close`.
    pub fn needs(self) -> &'static [PriceField] {
        match self {
            Self::Atr | Self::Stochastic | Self::HlRange => &[PriceField::High, PriceField::Low],
            Self::VolumeZ | Self::PriceVolumeCorr => &[PriceField::Volume],
            Self::OpenGap => &[PriceField::Open],
            _ => &[],
        }
    }

    fn is_cross_sectional(self) -> bool {
        matches!(self, Self::CsRank | Self::CsZscore)
    }

    /// Output column prefix.
    fn prefix(self) -> &'static str {
        match self {
            Self::Returns => "ret",
            Self::LogReturns => "logret",
            Self::MaRatio => "ma_ratio",
            Self::EmaRatio => "ema_ratio",
            Self::Volatility => "vol",
            Self::Rsi => "rsi",
            Self::Macd => "macd",
            Self::Bollinger => "bb_pctb",
            Self::Atr => "atr",
            Self::Stochastic => "stoch_k",
            Self::VolumeZ => "volume_z",
            Self::PriceVolumeCorr => "pv_corr",
            Self::DistMax => "dist_max",
            Self::DistMin => "dist_min",
            Self::Skew => "skew",
            Self::Kurtosis => "kurt",
            Self::HlRange => "hl_range",
            Self::OpenGap => "open_gap",
            Self::CsRank => "cs_rank",
            Self::CsZscore => "cs_z",
            Self::Factor => "f",
            Self::FactorMean => "mean",
            Self::FactorStd => "std",
            Self::FactorZscore => "z",
            Self::FactorChange => "chg",
            Self::Expr => "",
        }
    }
}

/// One entry of the spec: a family with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDef {
    /// The family.
    pub family: Family,
    /// Look-back windows in trading days (not used by `macd`, `cs_rank`, `cs_zscore`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<usize>,
    /// Fail instead of skipping when the data lacks a column this family needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Bollinger band width in standard deviations (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<f64>,
    /// MACD `[fast, slow, signal]` spans (default `[12, 26, 9]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<[usize; 3]>,
    /// Cross-sectional families: names of the features to transform; factor families: the factor columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub of: Vec<String>,
    /// `expr`: the output column's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `expr`: the formula ([`crate::expr`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
}

impl FeatureDef {
    fn new(family: Family, windows: &[usize]) -> Self {
        Self {
            family,
            windows: windows.to_vec(),
            required: false,
            k: None,
            spans: None,
            of: Vec::new(),
            name: None,
            expr: None,
        }
    }

    /// MACD spans (fast, slow, signal).
    pub fn macd_spans(&self) -> [usize; 3] {
        self.spans.unwrap_or([12, 26, 9])
    }

    /// Bollinger width.
    pub fn bollinger_k(&self) -> f64 {
        self.k.unwrap_or(2.0)
    }

    /// The output column names of this entry.
    pub fn output_names(&self) -> Vec<String> {
        let p = self.family.prefix();
        match self.family {
            Family::Macd => {
                let [f, s, g] = self.macd_spans();
                vec![format!("macd_{f}_{s}"), format!("macd_signal_{f}_{s}_{g}"), format!("macd_hist_{f}_{s}_{g}")]
            }
            Family::CsRank | Family::CsZscore => self.of.iter().map(|f| format!("{p}_{f}")).collect(),
            Family::Factor => self.of.iter().map(|c| format!("f_{c}")).collect(),
            Family::Expr => self.name.iter().cloned().collect(),
            f if f.is_factor() => {
                self.of.iter().flat_map(|c| self.windows.iter().map(move |w| format!("f_{c}_{p}_{w}"))).collect()
            }
            _ => self.windows.iter().map(|w| format!("{p}_{w}")).collect(),
        }
    }
}

/// Which return the label is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReturnKind {
    /// `p[t+h] / p[t] - 1`.
    #[default]
    Simple,
    /// `ln(p[t+h] / p[t])`.
    Log,
}

/// Which price the label's return is measured on. The default is `open`: the label starts where a strategy
/// that fills at the next open (the default fill) can trade, so IC and the promotion gate never include the
/// overnight move close(t) → open(t+1) that no such portfolio earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelPrice {
    /// Close of t to close of t+h (what a strategy filling at the close of the signal date earns).
    Close,
    /// Open of t+1 to open of t+1+h (what a strategy filling at the next open earns). On close-only data the
    /// close of t+1 stands in for its open, as it does for next-open fills.
    #[default]
    Open,
}

impl LabelPrice {
    /// The name written in specs (`close`, `open`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Open => "open",
        }
    }
}

/// The label: forward return over `horizon` trading days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// Horizon h in trading days (≥ 1).
    #[serde(default = "default_horizon")]
    pub horizon: usize,
    /// Simple or log return.
    #[serde(default)]
    pub kind: ReturnKind,
    /// Close-to-close or next-open to next-open.
    #[serde(default)]
    pub price: LabelPrice,
    /// Subtract the cross-sectional mean label of each date (`true`), or of each date's sector (`"sector"`).
    #[serde(default)]
    pub demean: Demean,
}

/// Which mean a demeaned label subtracts (`label.demean`: `false`, `true` or `"sector"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Demean {
    /// The raw label.
    #[default]
    No,
    /// Minus the mean label of its date (`true`).
    Date,
    /// Minus the mean label of its date and sector (`"sector"`; the securities file's sectors).
    Sector,
}

impl Demean {
    /// Whether the label is demeaned at all.
    pub fn is_on(self) -> bool {
        self != Self::No
    }
}

impl Serialize for Demean {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::No => s.serialize_bool(false),
            Self::Date => s.serialize_bool(true),
            Self::Sector => s.serialize_str("sector"),
        }
    }
}

impl<'de> Deserialize<'de> for Demean {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(false) => Ok(Self::No),
            Raw::Flag(true) => Ok(Self::Date),
            Raw::Name(n) if n == "date" => Ok(Self::Date),
            Raw::Name(n) if n == "sector" => Ok(Self::Sector),
            Raw::Name(n) => {
                Err(serde::de::Error::custom(format!("label.demean is true, false or \"sector\", not {n:?}")))
            }
        }
    }
}

fn default_horizon() -> usize {
    5
}

impl Default for LabelSpec {
    fn default() -> Self {
        Self { horizon: default_horizon(), kind: ReturnKind::Simple, price: LabelPrice::Open, demean: Demean::No }
    }
}

impl LabelSpec {
    /// Rows of a symbol from the signal row to the last price row the label reads: `h` for close labels,
    /// `h + 1` for next-open labels. A training row is usable for a test window starting at date T only when the
    /// symbol's row that many rows later is dated before T.
    pub fn span_rows(&self) -> usize {
        match self.price {
            LabelPrice::Close => self.horizon,
            LabelPrice::Open => self.horizon + 1,
        }
    }

    /// The label's formula in words, e.g. `open(t+1+5) / open(t+1) - 1`.
    pub fn describe(&self) -> String {
        let h = self.horizon;
        let ratio = match self.price {
            LabelPrice::Close => format!("close(t+{h}) / close(t)"),
            LabelPrice::Open => format!("open(t+1+{h}) / open(t+1)"),
        };
        let r = match self.kind {
            ReturnKind::Simple => format!("{ratio} - 1"),
            ReturnKind::Log => format!("ln({ratio})"),
        };
        let r = match self.demean {
            Demean::No => r,
            Demean::Date => format!("{r}, minus its cross-sectional mean per date"),
            Demean::Sector => format!("{r}, minus the mean of its date and sector"),
        };
        let t =
            if self.price == LabelPrice::Open { "; close-only data: close(t+1) stands in for open(t+1)" } else { "" };
        format!("{r} (t = signal date, in the symbol's own trading rows{t})")
    }
}

/// A feature spec: label plus feature families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Spec format version (currently 1).
    #[serde(default = "default_version")]
    pub version: u32,
    /// The label.
    #[serde(default)]
    pub label: LabelSpec,
    /// Feature families in output order.
    pub features: Vec<FeatureDef>,
}

/// The content hash of `bytes` in stockcast's form (sha256, hex of the first 16 bytes).
pub fn content_hash(bytes: &[u8]) -> String {
    hex_prefix(&Sha256::digest(bytes))
}

/// Hex of the first 16 bytes of a digest: the form of every content hash in stockcast.
pub(crate) fn hex_prefix(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().take(16).fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn default_version() -> u32 {
    1
}

/// Stable identifier of a spec's content: hex of the first 16 bytes of sha256 over its normalised JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpecHash(pub String);

impl std::fmt::Display for SpecHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for FeatureSpec {
    /// The default spec: 68 features across 20 families when OHLCV is present (51 on close-only data).
    fn default() -> Self {
        use Family as F;
        let mut features = vec![
            FeatureDef::new(F::Returns, &[1, 2, 3, 5, 10, 20, 60, 120]),
            FeatureDef::new(F::LogReturns, &[1, 5, 20]),
            FeatureDef::new(F::MaRatio, &[5, 10, 20, 50, 100, 200]),
            FeatureDef::new(F::EmaRatio, &[5, 12, 26, 50]),
            FeatureDef::new(F::Volatility, &[5, 10, 20, 60]),
            FeatureDef::new(F::Rsi, &[6, 14, 28]),
            FeatureDef::new(F::Macd, &[]),
            FeatureDef::new(F::Bollinger, &[10, 20]),
            FeatureDef::new(F::Atr, &[5, 14, 28]),
            FeatureDef::new(F::Stochastic, &[5, 14, 28]),
            FeatureDef::new(F::VolumeZ, &[5, 20, 60]),
            FeatureDef::new(F::PriceVolumeCorr, &[10, 20, 60]),
            FeatureDef::new(F::DistMax, &[10, 20, 60, 120, 250]),
            FeatureDef::new(F::DistMin, &[10, 20, 60, 120, 250]),
            FeatureDef::new(F::Skew, &[20, 60]),
            FeatureDef::new(F::Kurtosis, &[20, 60]),
            FeatureDef::new(F::HlRange, &[1, 5, 20]),
            FeatureDef::new(F::OpenGap, &[1]),
        ];
        let mut rank = FeatureDef::new(F::CsRank, &[]);
        rank.of = ["ret_5", "ret_20", "vol_20", "rsi_14", "volume_z_20"].map(String::from).to_vec();
        features.push(rank);
        Self { version: 1, label: LabelSpec::default(), features }
    }
}

/// The file a saved model (and a published version) keeps its feature spec in, beside `model.json`.
pub const SPEC_FILE: &str = "spec.toml";

impl FeatureSpec {
    /// Parses and checks a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Checked<Self>> {
        let spec: Self = toml::from_str(text).map_err(|e| Error::config("feature spec", e.to_string()))?;
        Checked::new(spec)
    }

    /// Reads and checks a spec file.
    pub fn from_file(path: &Path) -> Result<Checked<Self>> {
        let text = crate::io::read_text(path)?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Config { what, message } => {
                Error::Config { what, message: format!("{}: {message}", path.display()) }
            }
            other => other,
        })
    }

    /// The spec as TOML.
    ///
    /// # Panics
    /// Never: every field of a spec has a TOML representation.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a spec always serialises")
    }

    /// Trading days of history a feature row needs so that recomputing it from a slice matches the full
    /// computation: the longest rolling window (+1 for shifted returns) and, for exponentially weighted families
    /// (EMA ratio, RSI, MACD, ATR), 40 spans, after which the truncated weights are below 1e-17 of the total.
    pub fn warmup_days(&self) -> usize {
        self.features
            .iter()
            .map(|d| match d.family {
                Family::EmaRatio | Family::Rsi | Family::Atr => 40 * d.windows.iter().max().copied().unwrap_or(1),
                Family::Macd => {
                    let [f, s, g] = d.macd_spans();
                    40 * (f.max(s) + g)
                }
                // Formulas read other features: their reach is added to every other family's below.
                Family::Expr => 0,
                _ => d.windows.iter().max().copied().unwrap_or(0) + 1,
            })
            .max()
            .unwrap_or(0)
            + self
                .features
                .iter()
                .filter(|d| d.family == Family::Expr)
                .filter_map(|d| crate::expr::parse(d.expr.as_deref()?, &|_| true).ok())
                .map(|a| a.lookback() + 1)
                .sum::<usize>()
    }

    /// The stable content hash.
    ///
    /// # Panics
    /// Never: a spec always serialises to JSON.
    pub fn hash(&self) -> SpecHash {
        let json = serde_json::to_vec(self).expect("a spec always serialises");
        SpecHash(hex_prefix(&Sha256::digest(&json)))
    }

    /// All output feature names, in order (before skipping families whose columns are absent).
    pub fn output_names(&self) -> Vec<String> {
        self.features.iter().flat_map(FeatureDef::output_names).collect()
    }
}

/// Windows, spans, names and references, checked where a spec enters (a file, the default with a horizon
/// applied); the feature builders take it checked.
impl Params for FeatureSpec {
    type Error = Error;
    fn check(&self) -> Result<()> {
        let err = |m: String| Err(Error::config("feature spec", m));
        if self.version != 1 {
            return err(format!("unsupported spec version {} (this stockcast reads version 1)", self.version));
        }
        if self.label.horizon == 0 {
            return err("label.horizon must be at least 1 trading day".into());
        }
        if self.features.is_empty() {
            return err("no features".into());
        }
        let mut seen = BTreeSet::new();
        for def in &self.features {
            let fam = def.family.name();
            let uses_windows =
                !matches!(def.family, Family::Macd | Family::CsRank | Family::CsZscore | Family::Factor | Family::Expr);
            if (def.name.is_some() || def.expr.is_some()) != (def.family == Family::Expr) {
                return err(format!("`name` and `expr` go together, with family = \"expr\" only (family `{fam}`)"));
            }
            if def.family == Family::Expr {
                let name = def.name.as_deref().unwrap_or_default();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return err(format!("expr feature name {name:?} must be letters, digits and `_`"));
                }
                let cs: BTreeSet<String> = self
                    .features
                    .iter()
                    .filter(|d| d.family.is_cross_sectional())
                    .flat_map(FeatureDef::output_names)
                    .collect();
                let known = |n: &str| seen.contains(n) && !cs.contains(n);
                crate::expr::parse(def.expr.as_deref().unwrap_or_default(), &known).map_err(|e| {
                    Error::config("feature spec", format!("expr feature `{name}`, column {}: {}", e.column, e.message))
                })?;
            }
            if uses_windows && def.windows.is_empty() {
                return err(format!("family `{fam}` needs at least one window"));
            }
            if !uses_windows && !def.windows.is_empty() {
                return err(format!("family `{fam}` takes no `windows`"));
            }
            let min_window = match def.family {
                Family::Volatility
                | Family::Bollinger
                | Family::VolumeZ
                | Family::PriceVolumeCorr
                | Family::FactorStd
                | Family::FactorZscore => 2,
                Family::Skew | Family::Kurtosis => 4,
                _ => 1,
            };
            if let Some(w) = def.windows.iter().find(|w| **w < min_window) {
                return err(format!("family `{fam}`: window {w} is too short (minimum {min_window})"));
            }
            if def.k.is_some() && def.family != Family::Bollinger {
                return err(format!("`k` only applies to bollinger, not `{fam}`"));
            }
            if let Some(k) = def.k
                && !(k > 0.0 && k.is_finite())
            {
                return err(format!("bollinger k must be positive, got {k}"));
            }
            if def.spans.is_some() && def.family != Family::Macd {
                return err(format!("`spans` only applies to macd, not `{fam}`"));
            }
            let [f, s, g] = def.macd_spans();
            if def.family == Family::Macd && (f == 0 || g == 0 || f >= s) {
                return err(format!("macd spans must satisfy 0 < fast < slow and signal > 0, got [{f}, {s}, {g}]"));
            }
            if def.family.is_cross_sectional() {
                if def.of.is_empty() {
                    return err(format!("family `{fam}` needs `of = [feature names]`"));
                }
                for name in &def.of {
                    if !seen.contains(name) {
                        return err(format!(
                            "`{fam}` refers to `{name}`, which is not a feature defined earlier in the spec"
                        ));
                    }
                }
            } else if def.family.is_factor() {
                if def.of.is_empty() {
                    return err(format!("family `{fam}` needs `of = [factor column names]`"));
                }
            } else if !def.of.is_empty() {
                return err(format!("`of` only applies to cs_rank, cs_zscore and the factor families, not `{fam}`"));
            }
            for name in def.output_names() {
                if !seen.insert(name.clone()) {
                    return err(format!("feature `{name}` is defined twice"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid_with_at_least_60_features() {
        let spec = FeatureSpec::default();
        Params::check(&spec).unwrap();
        let names = spec.output_names();
        assert!(names.len() >= 60, "{}", names.len());
    }

    #[test]
    fn toml_round_trip_keeps_hash() {
        let spec = FeatureSpec::default();
        let back = FeatureSpec::from_toml(&spec.to_toml()).unwrap();
        assert_eq!(*back, spec);
        assert_eq!(back.hash(), spec.hash());
    }

    #[test]
    fn hash_changes_with_content_not_formatting() {
        let a = FeatureSpec::from_toml("[[features]]\nfamily = \"returns\"\nwindows = [1, 5]\n").unwrap();
        let b = FeatureSpec::from_toml("# comment\n[[features]]\nwindows = [1,5]\nfamily = \"returns\"").unwrap();
        let c = FeatureSpec::from_toml("[[features]]\nfamily = \"returns\"\nwindows = [1, 6]\n").unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        let mut d = a.clone().into_inner();
        d.label.horizon = 10;
        assert_ne!(a.hash(), d.hash());
    }

    #[test]
    fn bad_specs_are_rejected_with_reasons() {
        let cases = [
            ("[[features]]\nfamily = \"nope\"\nwindows=[1]", "unknown variant"),
            ("[[features]]\nfamily = \"returns\"", "at least one window"),
            ("[[features]]\nfamily = \"returns\"\nwindows=[0]", "too short"),
            ("[[features]]\nfamily = \"returns\"\nwindows=[1]\nbogus=1", "unknown field"),
            ("[[features]]\nfamily = \"cs_rank\"\nof=[\"ret_5\"]", "not a feature defined earlier"),
            ("[[features]]\nfamily = \"returns\"\nwindows=[1,1]", "defined twice"),
            ("[label]\nhorizon = 0\n[[features]]\nfamily = \"returns\"\nwindows=[1]", "horizon"),
            ("[[features]]\nfamily = \"macd\"\nspans=[26,12,9]", "fast < slow"),
        ];
        for (text, want) in cases {
            let e = FeatureSpec::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn bundled_default_spec_file_matches_code() {
        let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
            .join("../../configs/features/default.toml");
        let spec = FeatureSpec::from_file(&path).unwrap();
        assert_eq!(*spec, FeatureSpec::default(), "configs/features/default.toml drifted from FeatureSpec::default()");
    }
}
