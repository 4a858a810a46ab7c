//! `stockcast demo`: every stage that exists, on the bundled data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use stockcast_features::{FeatureMatrix, FeatureSpec, MatrixOptions};
use stockcast_models::{ModelConfig, TrainedModel};

use super::features::compute;
use super::model::{dataset, split_validation};
use super::{Ctx, load, out};
use crate::cli::{BacktestArgs, DataArgs, DemoArgs};

/// The bundled file, looked up in the working directory first, then in the source tree this binary was built
/// from (so `target/release/stockcast demo` works from anywhere inside a checkout).
fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if in_tree.exists() { in_tree } else { path.to_path_buf() }
}

pub(crate) fn run(ctx: Ctx, args: &DemoArgs) -> anyhow::Result<()> {
    let prices = locate(&args.prices);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    out(&format!("stockcast demo on {}", prices.display()));

    out("1/5 load + data quality");
    let data = DataArgs::file(prices, None, None);
    let quality_json = args.out.join("quality.json");
    let loaded = load(ctx, &data, &args.out.join("prices"), Some(&quality_json))?;
    let (first, last) = loaded.prices.date_range()?.context("no dates")?;
    out(&format!(
        "    {} rows, {} symbols, {first} .. {last}, adjusted for splits/dividends: {}; report {}",
        loaded.prices.height(),
        loaded.prices.symbols()?.len(),
        loaded.prices.adjusted(),
        quality_json.display()
    ));

    out("2/5 features + labels");
    let spec = FeatureSpec::default();
    let frame = compute(ctx, &loaded.prices, &spec)?;
    let features_path = args.out.join("features.parquet");
    frame.write(&features_path)?;
    out(&format!(
        "    {} features + label (forward {}-day return), spec hash {}; wrote {}",
        frame.features().len(),
        spec.label.horizon,
        frame.spec_hash(),
        features_path.display()
    ));
    for note in frame.notes() {
        out(&format!("    note: {note}"));
    }

    out("3/5 model matrix");
    let m = FeatureMatrix::from_frame(&frame, MatrixOptions { require_label: true, drop_incomplete: true })?;
    let first_row = m.index.first().map(|(s, d)| format!("{s} {d}")).unwrap_or_default();
    out(&format!(
        "    {} training rows x {} features (rows with a label and a full look-back window), first row {first_row}",
        m.nrows(),
        m.ncols()
    ));
    out("4/5 models: fit on prices up to the cut date, save, load, score the last date");
    let (_, last) = loaded.prices.date_range()?.context("no dates")?;
    let cut = last - chrono::Duration::days(365);
    let train_all =
        dataset(ctx, &loaded.prices, &spec, cut, MatrixOptions { require_label: true, drop_incomplete: true }, true)?;
    let scoring =
        dataset(ctx, &loaded.prices, &spec, last, MatrixOptions::default(), true)?.filter(|(_, d)| *d == last);
    for kind in ["gbm", "lstm", "linear", "forecast", "rule", "ensemble"] {
        let cfg_path = locate(&Path::new("configs/models").join(format!("{kind}.toml")));
        let config = ModelConfig::from_file(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let (train, valid) = if config.uses_validation() {
            split_validation(&train_all, 0.1, spec.label.horizon)
        } else {
            (train_all.clone(), None)
        };
        let model = stockcast_models::fit(&config, &train, valid.as_ref(), 42)?;
        let dir = args.out.join("models").join(kind);
        model.save(&dir, &[("spec.toml", spec.to_toml().as_bytes())])?;
        let preds = TrainedModel::load(&dir)?.predict(&scoring)?;
        let mut ranked: Vec<(&str, f64)> =
            preds.index.iter().zip(&preds.score).map(|((s, _), v)| (s.as_str(), *v)).collect();
        // Highest score first; NaN (no opinion, e.g. no history before the cut) last.
        ranked.sort_by(|a, b| a.1.is_nan().cmp(&b.1.is_nan()).then(b.1.total_cmp(&a.1)));
        let shown: Vec<String> = ranked.iter().map(|(s, v)| format!("{s} {v:+.4}")).collect();
        out(&format!("    {kind:<9} trained to {cut} on {} rows; {last}: {}", train.len(), shown.join(", ")));
    }
    out("5/5 walk-forward backtest of every model kind (configs/backtest.toml)");
    let bt = BacktestArgs {
        prices: Some(data.prices.clone()),
        out: Some(args.out.join("backtest")),
        ..BacktestArgs::from_config(locate(Path::new("configs/backtest.toml")))
    };
    super::backtest::run(ctx, &bt)?;
    out(&format!("done: outputs in {}", args.out.display()));
    Ok(())
}
