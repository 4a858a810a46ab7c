//! The demo as a library call: every stage on the bundled data, narrated on stdout. Each step calls the same
//! library function the corresponding command calls.

use std::path::{Path, PathBuf};

use stockcast_backtest::BacktestConfig;
use stockcast_features::outputs::{Marker, Replace, check_output_dir};
use stockcast_features::{Checked, FeatureMatrix, FeatureSpec, MatrixOptions};
use stockcast_models::{DatasetOptions, ModelConfig, TrainedModel};

use crate::prices::{PriceInput, load};
use crate::{Context, Ctx, Error, Result};

/// What the demo reads and where it writes.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The bundled price file.
    pub prices: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// Whether `out` may be a directory an earlier demo did not write.
    pub replace: Replace,
    /// A Postgres URL for step 6 (`None`: a throwaway local cluster).
    pub database_url: Option<String>,
}

/// What marks a directory as the demo's: the quality report its first step writes.
const DEMO_MARKER: Marker = Marker { file: "quality.json", key: "rows_quarantined" };

/// The bundled file, looked up in the working directory first, then in the source tree this binary was built
/// from (so `target/release/stockcast demo` works from anywhere inside a checkout).
pub fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    // This crate's directory is `crates/pipeline` of the source tree.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap_or(Path::new("."));
    let in_tree = root.join(path);
    if in_tree.exists() { in_tree } else { path.to_path_buf() }
}

/// Runs every step.
///
/// # Errors
/// The first step that fails.
pub fn run(ctx: &Ctx, opts: &DemoOptions) -> Result<()> {
    let prices = locate(&opts.prices);
    let out_dir = &opts.out;
    // The demo overwrites its own files there (quality.json, features.parquet, models/, backtest/): never in a
    // directory that holds anything else.
    check_output_dir(out_dir, "demo output", &[DEMO_MARKER], opts.replace)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    ctx.out(&format!("stockcast demo on {}", prices.display()));

    ctx.out("1/6 load + data quality");
    let input = PriceInput::file(prices, None, None);
    let quality_json = out_dir.join("quality.json");
    let loaded = load(ctx, &input, &out_dir.join("prices"), Some(&quality_json))?;
    let (first, last) = loaded.prices.date_range()?.context("no dates")?;
    ctx.out(&format!(
        "    {} rows, {} symbols, {first} .. {last}, adjusted for splits/dividends: {}; report {}",
        loaded.prices.height(),
        loaded.prices.symbols()?.len(),
        loaded.prices.adjusted(),
        quality_json.display()
    ));

    ctx.out("2/6 features + labels");
    let spec: Checked<FeatureSpec> = Checked::default();
    let frame = crate::features::compute(ctx, &loaded.prices, &spec)?;
    let features_path = out_dir.join("features.parquet");
    frame.write(&features_path)?;
    ctx.out(&format!(
        "    {} features + label {}, spec hash {}; wrote {}",
        frame.features().len(),
        spec.label.describe(),
        frame.spec_hash(),
        features_path.display()
    ));
    for note in frame.notes() {
        ctx.out(&format!("    note: {note}"));
    }

    ctx.out("3/6 model matrix");
    let m = FeatureMatrix::from_frame(&frame, MatrixOptions { require_label: true, drop_incomplete: true })?;
    let first_row = m.index.first().map(|(s, d)| format!("{s} {d}")).unwrap_or_default();
    ctx.out(&format!(
        "    {} training rows x {} features (rows with a label and a full look-back window), first row {first_row}",
        m.nrows(),
        m.ncols()
    ));
    ctx.out("4/6 models: fit on prices up to the cut date, save, load, score the last date");
    let cut = last - chrono::Duration::days(365);
    let training =
        DatasetOptions { matrix: MatrixOptions { require_label: true, drop_incomplete: true }, context: true };
    let train_all = crate::features::dataset(ctx, &loaded.prices.until(cut)?, &spec, training)?;
    let scoring_opts = DatasetOptions { matrix: MatrixOptions::default(), context: true };
    let scoring = crate::features::dataset(ctx, &loaded.prices, &spec, scoring_opts)?.filter(|(_, d)| *d == last);
    for kind in ["gbm", "lstm", "linear", "forecast", "rule", "ensemble"] {
        let cfg_path = locate(&Path::new("configs/models").join(format!("{kind}.toml")));
        let config = ModelConfig::from_file(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
        let (train, valid) = if config.uses_validation() {
            train_all.split_validation(0.1, spec.label.span_rows())
        } else {
            (train_all.clone(), None)
        };
        let model = stockcast_models::fit(&config, &train, valid.as_ref(), 42)?;
        let dir = out_dir.join("models").join(kind);
        model.save(&dir, &[(stockcast_features::spec::SPEC_FILE, spec.to_toml().as_bytes())], Replace::Own)?;
        let preds = TrainedModel::load(&dir)?.predict(&scoring)?;
        let mut ranked: Vec<(&str, f64)> = preds.index.iter().zip(&preds.score).map(|((s, _), v)| (&**s, *v)).collect();
        // Highest score first; NaN (no opinion, e.g. no history before the cut) last.
        ranked.sort_by(|a, b| a.1.is_nan().cmp(&b.1.is_nan()).then(b.1.total_cmp(&a.1)));
        let shown: Vec<String> = ranked.iter().map(|(s, v)| format!("{s} {v:+.4}")).collect();
        ctx.out(&format!("    {kind:<9} trained to {cut} on {} rows; {last}: {}", train.len(), shown.join(", ")));
    }
    ctx.out("5/6 walk-forward backtest of every model kind (configs/backtest.toml)");
    let mut cfg = BacktestConfig::from_file(&locate(Path::new("configs/backtest.toml")))?;
    cfg.data.prices = Some(input.prices.clone());
    let started = std::time::Instant::now();
    let data = crate::backtest::BacktestData::load(ctx, &cfg, None, &out_dir.join("backtest.prices.csv"))?;
    let bt = crate::backtest::run(ctx, &cfg, &data)?;
    let dir = bt.write(&out_dir.join("backtest"), Replace::Own)?;
    ctx.out(&format!("{}, {:.1} s", bt.headline(), started.elapsed().as_secs_f64()));
    ctx.out(bt.summary_table().trim_end());
    let o = &bt.evaluation.overfitting;
    ctx.out(&format!(
        "overfitting: {} trials; DSR per model: {}; PBO {}",
        o.trials,
        bt.evaluation.models.iter().map(|m| format!("{} {:.2}", m.name, m.overfit.dsr)).collect::<Vec<_>>().join(", "),
        o.pbo.as_ref().map_or_else(|| o.pbo_note.clone().unwrap_or_default(), |p| format!("{:.2}", p.pbo))
    ));
    ctx.out(&format!("report: {}", dir.join("report.html").display()));
    postgres_step(ctx, opts, &input)?;
    ctx.out(&format!("done: outputs in {}", out_dir.display()));
    Ok(())
}

/// 6/6: Postgres (the given URL, or a throwaway local cluster) → import → nightly training from the `prices`
/// table → recommendations as of the last date → the HTTP server, briefly, with sample requests.
fn postgres_step(ctx: &Ctx, opts: &DemoOptions, input: &PriceInput) -> Result<()> {
    use stockcast_infer::local::{LocalCluster, request};
    use stockcast_infer::recommend::RecommendConfig;
    use stockcast_infer::server::{self, ServeConfig};
    use stockcast_infer::store::{self, PoolConfig};
    use stockcast_models::registry::Registry;

    ctx.out("6/6 Postgres: import, nightly training from the prices table, recommendations, the HTTP server");
    if opts.database_url.is_none() && !LocalCluster::available() {
        ctx.out(
            "    skipped: no PostgreSQL server programs (initdb) on this machine. Install them (Debian: apt-get \
             install postgresql, or run scripts/setup.sh as root) or set DATABASE_URL to a database of yours, then \
             rerun the demo for this stage",
        );
        return Ok(());
    }
    let (_cluster, url) = if let Some(url) = &opts.database_url {
        ctx.out(&format!("    using DATABASE_URL ({})", store::redact(url)));
        (None, url.clone())
    } else {
        let pb = ctx.step("starting a throwaway PostgreSQL cluster");
        let cluster =
            LocalCluster::start().context("starting a throwaway PostgreSQL (set DATABASE_URL to use yours)")?;
        pb.finish();
        let url = cluster.create_database("stockcast_demo")?;
        ctx.out(&format!("    started a throwaway PostgreSQL on 127.0.0.1:{} (removed at the end)", cluster.port()));
        (Some(cluster), url)
    };
    let rt = crate::prices::runtime()?;
    let pool = rt.block_on(store::connect(&url, PoolConfig::default()))?;
    rt.block_on(store::migrate(&pool))?;
    let securities = locate(Path::new("datasets/us5_securities.csv"));
    let with_sectors = PriceInput::file(input.prices.clone(), Some(securities), None);
    let loaded = load(ctx, &with_sectors, &opts.out.join("prices"), None)?;
    let s = rt.block_on(store::import_prices(&pool, &loaded.prices, loaded.prices.securities()))?;
    ctx.out(&format!(
        "    imported {} price rows of {} symbols with sectors ({} new, {} updated)",
        s.rows, s.symbols, s.inserted, s.updated
    ));

    let models_dir = opts.out.join("models-registry");
    let mut train_cfg = crate::train::TrainConfig::from_file(&locate(Path::new("configs/nightly.toml")))?;
    train_cfg.backtest.data.prices = Some(PathBuf::from(&url));
    let train_opts = crate::train::TrainOptions { models_dir: models_dir.clone(), ..Default::default() };
    let summary = crate::train::run(ctx, &train_cfg, &train_opts)?;
    ctx.out(&summary.feature_cache);
    for m in &summary.models {
        ctx.out(&m.line());
    }
    ctx.out(&format!("run summary: {}", summary.path.display()));

    let reg = Registry::new(&models_dir);
    let scorers = crate::recommend::scorers(&reg, &crate::recommend::references(&reg, &[])?)?;
    let db_prices = load(ctx, &PriceInput::file(url.clone().into(), None, None), &opts.out.join("prices"), None)?;
    let (_, last) = db_prices.prices.date_range()?.context("no dates")?;
    let cfg = RecommendConfig::default();
    for day in crate::recommend::store_days(ctx, &rt, &pool, &scorers, &db_prices.prices, last, &cfg)? {
        for line in day.lines(5) {
            ctx.out(&line);
        }
    }
    rt.block_on(pool.close());

    let cfg = ServeConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        models_dir,
        database_url: Some(url),
        poll_s: 0,
        ..ServeConfig::default()
    };
    rt.block_on(async {
        let background = server::Background::start(cfg, ctx.clock().clone()).await?;
        let addr = background.addr;
        ctx.out(&format!(
            "    server on http://{addr} (stopped after these requests; `stockcast serve` runs it for good)"
        ));
        let path = "/v1/recommendations?limit=3";
        let (status, text) = request(addr, "GET", path, None).await?;
        ctx.out(&format!("    $ curl 'http://{addr}{path}'\n    {status} {text}"));
        let body = format!(r#"{{"symbols":["AAPL","MSFT"],"date":"{last}"}}"#);
        let (status, text) = request(addr, "POST", "/v1/predict", Some(&body)).await?;
        ctx.out(&format!(
            "    $ curl -X POST -H 'content-type: application/json' -d '{body}' http://{addr}/v1/predict\n    {status} {text}"
        ));
        background.stop().await?;
        Ok::<_, Error>(())
    })?;
    Ok(())
}
