//! The backtest job as a library call: prices → features → walk-forward of every configured model on the same
//! folds → signal, forecast and portfolio evaluation → a [`Backtest`] that writes the report directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use serde_json::json;
use stockcast_backtest::report::{self, Evaluation, RunMeta};
use stockcast_backtest::{
    BacktestConfig, Market, ModelSpec, RunOptions, SplitConfig, WalkForward, label_alignment, portfolio, runner,
};
use stockcast_features::{FeatureSpec, Policy, PriceFrame};
use stockcast_models::{Dataset, DatasetOptions};

use crate::ctx::Ctx;
use crate::prices::{PriceInput, load, require};

/// The prices a backtest runs on, already loaded and checked.
#[derive(Debug, Clone)]
pub struct BacktestData {
    /// The prices (only `data.symbols` when the config names some).
    pub prices: PriceFrame,
    /// How the source is named in the report (a path, or a database URL without its password).
    pub source: String,
    /// Index closes for a second benchmark, when the config names an index file.
    pub index: Option<BTreeMap<NaiveDate, f64>>,
}

impl BacktestData {
    /// Loads what `cfg.data` names: prices through the quality checks (removed rows quarantined beside
    /// `quarantine_beside`), the symbol filter, and the index file.
    pub fn load(
        ctx: &Ctx,
        cfg: &BacktestConfig,
        on_bad_rows: Option<Policy>,
        quarantine_beside: &Path,
    ) -> anyhow::Result<Self> {
        let path = require(cfg.data.prices.clone())?;
        let input = PriceInput::file(path.clone(), cfg.data.securities.clone(), on_bad_rows);
        let loaded = load(ctx, &input, quarantine_beside, None)?;
        let prices = loaded.prices.filter_symbols(&cfg.data.symbols).context("data.symbols")?;
        let index = cfg.data.index.as_deref().map(portfolio::load_index).transpose()?;
        Ok(Self { prices, source: crate::prices::source_label(&path), index })
    }
}

/// A finished backtest: the walk-forward predictions and each model's evaluation.
#[derive(Debug)]
pub struct Backtest {
    /// The configuration it ran.
    pub config: BacktestConfig,
    /// The models, resolved from the config.
    pub models: Vec<ModelSpec>,
    /// The feature spec.
    pub spec: FeatureSpec,
    /// Out-of-sample predictions and per-fold results.
    pub walk_forward: WalkForward,
    /// Signal, forecast and portfolio metrics per model.
    pub evaluation: Evaluation,
    /// What the report records about the run (config, data, hashes, seed, timings).
    pub meta: RunMeta,
}

/// The spec a config asks for: its `data.spec` file (or the default spec) with `data.horizon` applied.
pub fn spec_of(cfg: &BacktestConfig) -> anyhow::Result<FeatureSpec> {
    crate::features::resolve_spec(cfg.data.spec.as_deref(), cfg.data.horizon, false)
}

/// The walk-forward run with a progress bar over every (model, fold).
pub fn walk_forward(
    ctx: &Ctx,
    data: &Dataset,
    models: &[ModelSpec],
    split: &SplitConfig,
    opts: RunOptions,
) -> anyhow::Result<WalkForward> {
    let pb = ctx.progress.bar(0, "walk-forward");
    let wf = runner::run(data, models, split, opts, &|model, fold, done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(format!("walk-forward {model} fold {fold}"));
        tracing::debug!(model, fold, done, total, "fold done");
    })?;
    pb.finish_and_clear();
    Ok(wf)
}

/// Runs the backtest of `cfg` on `data`.
///
/// # Errors
/// Invalid model or split configuration, too little data for the folds, feature and model errors.
pub fn run(ctx: &Ctx, cfg: &BacktestConfig, data: &BacktestData) -> anyhow::Result<Backtest> {
    let mut timings = BTreeMap::new();
    let models = cfg.model_specs()?;
    let spec = spec_of(cfg)?;
    let prices = &data.prices;
    let alignment = label_alignment(&spec.label, cfg.strategy.fill);
    if let Some(w) = &alignment.warning {
        ctx.note(&format!("warning: {w}"));
    }

    let t = Instant::now();
    let dataset = crate::features::dataset_for(ctx, prices, &spec, &models, DatasetOptions::default())?;
    timings.insert("features".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let opts = RunOptions::new(&spec.label, cfg.seed, cfg.jobs);
    let wf = walk_forward(ctx, &dataset, &models, &cfg.split, opts)?;
    timings.insert("walk_forward".to_owned(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let market = Market::from_prices(prices)?;
    let evaluation =
        report::evaluate(&wf, &models, &market, &cfg.strategy, data.index.as_ref(), cfg.seed, &cfg.report)?;
    timings.insert("evaluate".to_owned(), t.elapsed().as_secs_f64());

    let (first, last) = prices.date_range()?.unzip();
    let mut resolved = serde_json::to_value(cfg)?;
    resolved["models_resolved"] = serde_json::to_value(&models)?;
    let meta = RunMeta {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: resolved,
        data: json!({
            "prices": data.source,
            "data_hash": prices.data_hash(),
            "symbols": prices.symbols()?.len(),
            "rows": prices.height(),
            "first_date": first,
            "last_date": last,
            "index": cfg.data.index.as_ref().map(|p| p.display().to_string()),
        }),
        feature_spec_hash: spec.hash().0,
        horizon: spec.label.horizon,
        label: alignment,
        seed: cfg.seed,
        timings,
    };
    Ok(Backtest { config: cfg.clone(), models, spec, walk_forward: wf, evaluation, meta })
}

impl Backtest {
    /// Writes the report directory (report.json/md/html, plots, Parquet frames, trades) atomically into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        report::write_run(dir, &self.meta, &self.walk_forward, &self.evaluation, &self.config.strategy)
            .with_context(|| format!("writing the run to {}", dir.display()))
    }

    /// One line saying what ran.
    pub fn headline(&self) -> String {
        let wf = &self.walk_forward;
        format!(
            "backtest {}: {} model(s), {} folds ({} .. {}), horizon {}, strategy {:?}",
            self.config.name,
            self.models.len(),
            wf.folds.len(),
            wf.results.first().map(|r| r.test_start.to_string()).unwrap_or_default(),
            wf.results.iter().map(|r| r.test_end).max().map(|d| d.to_string()).unwrap_or_default(),
            self.spec.label.horizon,
            self.config.strategy.rule,
        )
    }

    /// The per-model summary table (Markdown).
    pub fn summary_table(&self) -> String {
        report::summary_table(&self.evaluation.models)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Clock;

    pub(crate) fn us5() -> PathBuf {
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
            .join("datasets/us5_daily.csv")
    }

    pub(crate) fn config(models: &str) -> BacktestConfig {
        let text = format!(
            "seed = 7\n[data]\nprices = {:?}\nhorizon = 5\n[split]\nmin_train_days = 504\ntest_days = 252\n\
             valid_days = 63\n{models}\n[strategy]\nkind = \"top_k\"\nk = 2\nrebalance_days = 5\n",
            us5().display().to_string()
        );
        BacktestConfig::from_toml(&text).unwrap()
    }

    const MODELS: &str = "[[models]]\nname = \"lin\"\nmodel = { kind = \"linear\", alpha = 0.01 }\n\
                          [[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n";

    #[test]
    fn backtest_runs_as_a_library_call_and_is_reproducible() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let cfg = config(MODELS);
        let dir = tempfile::tempdir().unwrap();
        let data = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap();
        let a = run(&ctx, &cfg, &data).unwrap();
        let names: Vec<&str> = a.evaluation.models.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["lin", "mom"]);
        assert!(a.walk_forward.folds.len() >= 5, "{} folds", a.walk_forward.folds.len());
        // Every out-of-sample prediction is dated after its fold's training window plus the label horizon.
        let calendar = &a.walk_forward.calendar;
        for r in &a.walk_forward.results {
            let train_end = calendar.binary_search(&r.train_end).unwrap();
            let test_start = calendar.binary_search(&r.test_start).unwrap();
            assert!(test_start > train_end + 5, "fold {} of {}: gap {}", r.fold, r.model, test_start - train_end);
        }
        // Same data, config and seed: identical predictions.
        let b = run(&ctx, &cfg, &data).unwrap();
        let bits = |x: &Backtest| -> Vec<(String, String, NaiveDate, u64)> {
            x.walk_forward
                .predictions
                .iter()
                .flat_map(|(m, v)| v.iter().map(move |p| (m.clone(), p.symbol.clone(), p.date, p.score.to_bits())))
                .collect()
        };
        assert!(!bits(&a).is_empty());
        assert_eq!(bits(&a), bits(&b));
        let out = a.write(&dir.path().join("run")).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert!(report["models"]["lin"]["rank_ic"].is_number(), "{}", report["models"]["lin"]);
        // Forecast errors only where the score forecasts the label: the momentum rule's are null.
        assert!(report["models"]["lin"]["mae"].is_number());
        assert!(report["models"]["mom"]["mae"].is_null() && report["models"]["mom"]["relative_mae"].is_null());
        // The default label starts at the default next-open fill.
        assert_eq!(report["label"]["aligned"], true);
        assert_eq!(report["label"]["price"], "open");
        assert_eq!(report["seed"], 7);
        // The key set users read from notebooks: a renamed or dropped key shows up in review.
        let mut keys = std::collections::BTreeSet::new();
        key_paths(&report, "", &mut keys);
        assert!(keys.contains("models.lin.rank_ic"), "{keys:?}");
        insta::assert_snapshot!("report_json_keys", keys.into_iter().collect::<Vec<_>>().join("\n"));
    }

    /// Dotted paths of every key (`[]` for array elements, the union over them).
    fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    out.insert(p.clone());
                    key_paths(x, &p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    key_paths(x, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn a_rules_only_run_computes_no_features_and_scores_the_same() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        let both = config(MODELS);
        let data = BacktestData::load(&ctx, &both, None, &dir.path().join("q.csv")).unwrap();
        let rules =
            config("[[models]]\nname = \"mom\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n");
        let models = rules.model_specs().unwrap();
        let spec = spec_of(&rules).unwrap();
        let only = crate::features::dataset_for(&ctx, &data.prices, &spec, &models, DatasetOptions::default()).unwrap();
        assert_eq!(only.matrix.ncols(), 0, "{:?}", only.matrix.feature_names);
        let full = crate::features::dataset_for(
            &ctx,
            &data.prices,
            &spec,
            &both.model_specs().unwrap(),
            DatasetOptions::default(),
        )
        .unwrap();
        assert!(full.matrix.ncols() > 60);
        // The same rows and labels, bit for bit.
        assert_eq!(only.matrix.index, full.matrix.index);
        let bits = |d: &Dataset| d.matrix.y.as_ref().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&only), bits(&full));
        // So the rule's out-of-sample scores, and its portfolio, do not depend on what else ran.
        let (a, b) = (run(&ctx, &rules, &data).unwrap(), run(&ctx, &both, &data).unwrap());
        let scores = |x: &Backtest| -> Vec<(String, NaiveDate, u64)> {
            x.walk_forward.predictions["mom"].iter().map(|p| (p.symbol.clone(), p.date, p.score.to_bits())).collect()
        };
        assert!(!scores(&a).is_empty());
        assert_eq!(scores(&a), scores(&b));
        let ret = |x: &Backtest| {
            let r = x.evaluation.models.iter().find(|r| r.name == "mom").unwrap();
            r.simulation.stats.total_return
        };
        assert!((ret(&a) - ret(&b)).abs() < 1e-12, "{} vs {}", ret(&a), ret(&b));
    }

    #[test]
    fn an_unknown_symbol_filter_is_a_usage_error() {
        let ctx = Ctx::quiet(Clock::fixed("2026-11-30T00:00:00Z".parse().unwrap()));
        let mut cfg = config(MODELS);
        cfg.data.symbols = vec!["NOPE".into()];
        let dir = tempfile::tempdir().unwrap();
        let e = BacktestData::load(&ctx, &cfg, None, &dir.path().join("q.csv")).unwrap_err();
        assert_eq!(crate::exit_code(&e), crate::exit::BAD_INPUT);
        assert!(format!("{e:#}").contains("NOPE"), "{e:#}");
    }
}
