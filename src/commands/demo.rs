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

    out("1/6 load + data quality");
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

    out("2/6 features + labels");
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

    out("3/6 model matrix");
    let m = FeatureMatrix::from_frame(&frame, MatrixOptions { require_label: true, drop_incomplete: true })?;
    let first_row = m.index.first().map(|(s, d)| format!("{s} {d}")).unwrap_or_default();
    out(&format!(
        "    {} training rows x {} features (rows with a label and a full look-back window), first row {first_row}",
        m.nrows(),
        m.ncols()
    ));
    out("4/6 models: fit on prices up to the cut date, save, load, score the last date");
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
    out("5/6 walk-forward backtest of every model kind (configs/backtest.toml)");
    let bt = BacktestArgs {
        prices: Some(data.prices.clone()),
        out: Some(args.out.join("backtest")),
        ..BacktestArgs::from_config(locate(Path::new("configs/backtest.toml")))
    };
    super::backtest::run(ctx, &bt)?;
    postgres_step(ctx, args, &data)?;
    out(&format!("done: outputs in {}", args.out.display()));
    Ok(())
}

/// 6/6: Postgres (DATABASE_URL, or a throwaway local cluster) → import → nightly training from the `prices` table →
/// recommendations as of the last date → the HTTP server, briefly, with sample requests.
fn postgres_step(ctx: Ctx, args: &DemoArgs, data: &DataArgs) -> anyhow::Result<()> {
    use stockcast_infer::cluster::LocalCluster;
    use stockcast_infer::db::{self, PoolConfig};
    use stockcast_infer::http_client::HttpClient;
    use stockcast_infer::recommend::{RecommendConfig, Scorer};
    use stockcast_infer::server::{self, ServeConfig};
    use stockcast_models::registry::Registry;

    out("6/6 Postgres: import, nightly training from the prices table, recommendations, the HTTP server");
    let given = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let (_cluster, url) = if let Some(url) = given {
        out(&format!("    using DATABASE_URL ({})", db::redact(&url)));
        (None, url)
    } else {
        let pb = ctx.progress.step("starting a throwaway PostgreSQL cluster");
        let cluster =
            LocalCluster::start().context("starting a throwaway PostgreSQL (set DATABASE_URL to use yours)")?;
        pb.finish_and_clear();
        let url = cluster.create_database("stockcast_demo")?;
        out(&format!("    started a throwaway PostgreSQL on 127.0.0.1:{} (removed at the end)", cluster.port()));
        (Some(cluster), url)
    };
    let rt = super::runtime()?;
    let pool = rt.block_on(db::connect(&url, PoolConfig::default()))?;
    rt.block_on(db::migrate(&pool))?;
    let securities = locate(Path::new("datasets/us5_securities.csv"));
    let with_sectors = DataArgs::file(data.prices.clone(), Some(securities), None);
    let loaded = load(ctx, &with_sectors, &args.out.join("prices"), None)?;
    let s = rt.block_on(db::import_prices(&pool, &loaded.prices, loaded.prices.securities()))?;
    out(&format!(
        "    imported {} price rows of {} symbols with sectors ({} new, {} updated)",
        s.rows, s.symbols, s.inserted, s.updated
    ));

    let models_dir = args.out.join("models-registry");
    let train = crate::cli::TrainArgs {
        config: locate(Path::new("configs/nightly.toml")),
        models_dir: models_dir.clone(),
        as_of: None,
        prices: None,
        database_url: Some(url.clone()),
        seed: None,
        created_at: None,
        on_bad_rows: None,
    };
    super::train::run(ctx, &train)?;

    let reg = Registry::new(&models_dir);
    let refs = super::recommend::references(&reg, &[])?;
    let scorers = refs.iter().map(|r| Scorer::load(&reg, r)).collect::<Result<Vec<_>, _>>()?;
    let db_prices = load(ctx, &DataArgs::file(url.clone().into(), None, None), &args.out.join("prices"), None)?;
    let (_, last) = db_prices.prices.date_range()?.context("no dates")?;
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let cfg = RecommendConfig::default();
    super::recommend::store_days(ctx, &rt, &pool, &scorers, &db_prices.prices, last, &cfg, now)?;
    rt.block_on(pool.close());

    let cfg = ServeConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        models_dir,
        database_url: Some(url),
        poll_s: 0,
        ..ServeConfig::default()
    };
    rt.block_on(async {
        let background = server::Background::start(cfg, super::serve::system_clock()).await?;
        let addr = background.addr;
        out(&format!("    server on http://{addr} (stopped after these requests; `stockcast serve` runs it for good)"));
        let mut client = HttpClient::connect(addr).await?;
        let path = "/v1/recommendations?limit=3";
        let r = client.send("GET", path, &[], None).await?;
        out(&format!("    $ curl 'http://{addr}{path}'\n    {} {}", r.status, r.text()));
        let body = format!(r#"{{"symbols":["AAPL","MSFT"],"date":"{last}"}}"#);
        let r = client.send("POST", "/v1/predict", &[], Some(body.as_bytes())).await?;
        out(&format!(
            "    $ curl -X POST -H 'content-type: application/json' -d '{body}' http://{addr}/v1/predict\n    {} {}",
            r.status,
            r.text()
        ));
        background.stop().await?;
        anyhow::Ok(())
    })?;
    Ok(())
}
