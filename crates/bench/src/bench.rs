//! The benchmarks (`stockcast-bench ...`): timings and peak memory on synthetic data.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use stockcast_features::outputs::Replace;
use stockcast_features::{FeatureSpec, LoadOptions, SynthConfig, build_features, load_prices, synth_prices};

use stockcast::UsageError;
use stockcast_pipeline::Ctx;

use crate::out;
use crate::{
    BenchBacktestArgs, BenchCommand, BenchFeaturesArgs, BenchForecastArgs, BenchGbmArgs, BenchLstmArgs, BenchServeArgs,
};

/// Resets the peak RSS counter (Linux ≥ 4.0), so a measurement excludes data generation.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[derive(Debug, Serialize)]
struct Timing {
    input: &'static str,
    rows: usize,
    features: usize,
    load_quality_s: f64,
    features_s: f64,
    total_s: f64,
    rows_per_s: f64,
    peak_rss_mb: Option<f64>,
}

fn time_one(
    ctx: &Ctx,
    path: &Path,
    input: &'static str,
    spec: &stockcast_features::Checked<FeatureSpec>,
    repeat: usize,
) -> anyhow::Result<Timing> {
    let mut runs = Vec::new();
    let peak_reset = reset_peak_rss();
    let label = format!("{input}: load + quality + features");
    let pb = ctx.bar(&label);
    for run in 0..repeat.max(1) {
        let t0 = Instant::now();
        let loaded = load_prices(path, &LoadOptions::default())?;
        let t1 = Instant::now();
        let frame = build_features(&loaded.prices, spec)?;
        let t2 = Instant::now();
        runs.push((
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t2 - t0).as_secs_f64(),
            frame.df().height(),
            frame.features().len(),
        ));
        pb.update(run as u64 + 1, repeat.max(1) as u64, &label);
    }
    pb.finish();
    runs.sort_by(|a, b| a.2.total_cmp(&b.2));
    let best = runs[0];
    Ok(Timing {
        input,
        rows: best.3,
        features: best.4,
        load_quality_s: best.0,
        features_s: best.1,
        total_s: best.2,
        rows_per_s: best.3 as f64 / best.2,
        peak_rss_mb: peak_reset
            .then(stockcast_backtest::runner::peak_resident_bytes)
            .flatten()
            .map(|b| b as f64 / 1_048_576.0),
    })
}

fn features(ctx: &Ctx, a: &BenchFeaturesArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let pb = ctx.step(&format!("generating {} symbols x {} days", a.symbols, a.days));
    let mut df = synth_prices(&SynthConfig::new(a.symbols, a.days, a.seed))?;
    if let Some(p) = &a.write_prices {
        stockcast_features::io::write_frame(&mut df, p)?;
        pb.finish();
        return Ok(());
    }
    let parquet = dir.path().join("prices.parquet");
    let csv = dir.path().join("prices.csv");
    stockcast_features::io::write_frame(&mut df, &parquet)?;
    if a.csv {
        stockcast_features::io::write_frame(&mut df, &csv)?;
    }
    drop(df);
    pb.finish();
    let spec: stockcast_features::Checked<FeatureSpec> = stockcast_features::Checked::default();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    out(&format!(
        "bench features: {} symbols x {} days, default spec, {threads} CPU(s), best of {}",
        a.symbols, a.days, a.repeat
    ));
    let mut results = vec![time_one(ctx, &parquet, "parquet", &spec, a.repeat)?];
    if a.csv {
        results.push(time_one(ctx, &csv, "csv", &spec, a.repeat)?);
    }
    out("input    rows       features  load+quality  features  total    rows/s      peak RSS");
    for r in &results {
        out(&format!(
            "{:<8} {:<10} {:<9} {:>10.2} s {:>7.2} s {:>6.2} s {:>10.0} {:>9}",
            r.input,
            r.rows,
            r.features,
            r.load_quality_s,
            r.features_s,
            r.total_s,
            r.rows_per_s,
            r.peak_rss_mb.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.0} MB"))
        ));
    }
    if let Some(p) = &a.json {
        stockcast_features::io::write_atomic(p, serde_json::to_string_pretty(&results)?.as_bytes())?;
    }
    Ok(())
}

fn forecast(ctx: &Ctx, a: &BenchForecastArgs) -> anyhow::Result<()> {
    use stockcast_models::forecast::{ForecastConfig, fit_series};
    let loaded = load_prices(&a.prices, &LoadOptions::default())?;
    let history = stockcast_models::History::from_prices(&loaded.prices)?;
    let (symbol, h) = history.symbols.iter().next().context("no symbol in the file")?;
    let n = h.close.len();
    let last_origin = n.checked_sub(a.horizon + 1).context("series shorter than the horizon")?;
    let origins: Vec<usize> = (0..a.origins).map(|k| last_origin - k * a.horizon).filter(|i| *i >= 800).collect();
    out(&format!(
        "bench forecast: {symbol} ({n} days), {} origins every {} days, horizon {}, fit on the last 756 days",
        origins.len(),
        a.horizon,
        a.horizon
    ));
    out("model     MAE (price)  MAPE     vs naive  fit/series");
    let mut naive = (0.0, 0.0);
    for &i in &origins {
        let (now, target) = (h.close[i], h.close[i + a.horizon]);
        naive.0 += (now - target).abs();
        naive.1 += (now - target).abs() / target;
    }
    let k = origins.len() as f64;
    for method in ["prophet", "ets"] {
        let cfg: ForecastConfig = toml::from_str(&format!("method = \"{method}\""))?;
        let pb = ctx.bar(method);
        let (mut mae, mut mape, mut fit_s) = (0.0, 0.0, 0.0);
        for (done, &i) in origins.iter().enumerate() {
            let t = Instant::now();
            let model = fit_series(&cfg, a.horizon, symbol, h, h.dates[i]).context("too little history")?;
            fit_s += t.elapsed().as_secs_f64();
            let f = model.forecast_close(symbol, h, h.dates[i]).context("no forecast")?;
            let target = h.close[i + a.horizon];
            mae += (f - target).abs();
            mape += (f - target).abs() / target;
            pb.update(done as u64 + 1, origins.len() as u64, method);
        }
        pb.finish();
        out(&format!(
            "{method:<9} {:>11.4} {:>7.3}% {:>8.3}x {:>8.2} ms",
            mae / k,
            100.0 * mape / k,
            mae / naive.0,
            1e3 * fit_s / k
        ));
    }
    out(&format!("{:<9} {:>11.4} {:>7.3}% {:>8.3}x", "naive", naive.0 / k, 100.0 * naive.1 / k, 1.0));
    Ok(())
}

/// `rows` rows of `cols` uniform features over 100 symbols (one row per symbol and day); the label is a planted
/// nonlinear function of the first three features plus noise.
fn synthetic_dataset(rows: usize, cols: usize, seed: u64) -> anyhow::Result<stockcast_models::Dataset> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let x = ndarray::Array2::<f32>::from_shape_fn((rows, cols), |_| rng.random::<f32>() * 2.0 - 1.0);
    let y = ndarray::Array1::<f32>::from_shape_fn(rows, |i| {
        0.8 * x[[i, 0]] - 0.5 * x[[i, 1]] * x[[i, 2.min(cols - 1)]] + 0.1 * (rng.random::<f32>() - 0.5)
    });
    let start = chrono::NaiveDate::from_ymd_opt(2000, 1, 3).context("date")?;
    let matrix = stockcast_features::FeatureMatrix {
        x,
        y: Some(y),
        index: (0..rows)
            .map(|i| (format!("S{}", i % 100).into(), start + chrono::Duration::days((i / 100) as i64)))
            .collect(),
        feature_names: (0..cols).map(|j| format!("f{j}")).collect(),
        spec_hash: stockcast_features::SpecHash("bench".into()),
        label: stockcast_features::spec::LabelSpec::default(),
    };
    Ok(stockcast_models::Dataset::new(matrix, std::sync::Arc::default()))
}

/// Fits on `data` and predicts it again: the predictions and the seconds each step took.
fn fit_and_predict(
    cfg: &stockcast_features::Checked<stockcast_models::ModelConfig>,
    data: &stockcast_models::Dataset,
    seed: u64,
) -> anyhow::Result<(stockcast_models::Predictions, f64, f64)> {
    let t = Instant::now();
    let model = stockcast_models::fit(cfg, data, None, seed)?;
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let preds = model.predict(data)?;
    Ok((preds, fit_s, t.elapsed().as_secs_f64()))
}

fn gbm(ctx: &Ctx, a: &BenchGbmArgs) -> anyhow::Result<()> {
    if a.cols < 3 {
        return Err(UsageError("--cols must be at least 3".into()).into());
    }
    let data = synthetic_dataset(a.rows, a.cols, a.seed)?;
    let cfg = stockcast_models::ModelConfig::from_toml(&format!(
        "kind = \"gbm\"\nrounds = {}\nmax_depth = 6\neta = 0.1\nnthread = {}\nearly_stopping_rounds = 0",
        a.rounds, a.nthread
    ))?;
    let pb = ctx.step("training");
    let (preds, fit_s, predict_s) = fit_and_predict(&cfg, &data, a.seed)?;
    pb.finish();
    out(&format!(
        "bench gbm: {} x {}, {} rounds, depth 6, eta 0.1, hist, {} threads: fit {fit_s:.2} s, predict {} rows {predict_s:.3} s",
        a.rows,
        a.cols,
        a.rounds,
        a.nthread,
        preds.score.len()
    ));
    Ok(())
}

fn lstm(a: &BenchLstmArgs) -> anyhow::Result<()> {
    if a.cols < 3 || a.epochs == 0 {
        return Err(UsageError("--cols must be at least 3 and --epochs at least 1".into()).into());
    }
    let data = synthetic_dataset(a.sequences, a.cols, a.seed)?;
    let cfg = stockcast_models::ModelConfig::from_toml(&format!(
        "kind = \"lstm\"\nlookback = {}\nhidden = {}\nbatch_size = {}\nepochs = {}\npatience = 0",
        a.lookback, a.hidden, a.batch_size, a.epochs
    ))?;
    let t = Instant::now();
    let model = stockcast_models::fit(&cfg, &data, None, a.seed)?;
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let preds = model.predict(&data)?;
    let predict_s = t.elapsed().as_secs_f64();
    // Each epoch's mean training loss (standardised label), as the peer script prints it: the metadata the model
    // records when its files are written.
    let dir = tempfile::tempdir()?;
    let losses = model.model.save_files(dir.path())?.remove("train_loss");
    out(&format!(
        "bench lstm: {} sequences x {} steps x {} features, hidden {}, batch {}, Adam, flex CPU: {:.2} s/epoch \
         ({} epochs in {fit_s:.2} s, training loss {}); predict {} sequences {predict_s:.2} s",
        a.sequences,
        a.lookback,
        a.cols,
        a.hidden,
        a.batch_size,
        fit_s / a.epochs as f64,
        a.epochs,
        losses.as_ref().map_or_else(|| "-".into(), ToString::to_string),
        preds.score.len()
    ));
    if let Some(p) = &a.json {
        let json = serde_json::json!({
            "peer": "stockcast",
            "sequences": a.sequences,
            "lookback": a.lookback,
            "cols": a.cols,
            "hidden": a.hidden,
            "batch_size": a.batch_size,
            "epochs": a.epochs,
            "epoch_s": fit_s / a.epochs as f64,
            "predict_s": predict_s,
            "predicted": preds.score.len(),
            "train_loss": losses,
        });
        stockcast_features::io::write_atomic(p, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}

/// Models of the backtest benchmark: every kind, sized for a 500 × 2520 panel on 2 cores.
const BENCH_MODELS: [(&str, &str); 6] = [
    (
        "gbm",
        "{ kind = \"gbm\", rounds = 100, eta = 0.1, max_depth = 6, subsample = 0.8, colsample_bytree = 0.8, \
         min_child_weight = 50.0, early_stopping_rounds = 10, nthread = 2 }",
    ),
    (
        "lstm",
        "{ kind = \"lstm\", lookback = 20, hidden = 32, epochs = 2, batch_size = 512, max_train_rows = 50000, \
         patience = 0 }",
    ),
    ("linear", "{ kind = \"linear\", alpha = 0.001 }"),
    ("forecast", "{ kind = \"forecast\", method = \"prophet\", history_days = 504 }"),
    ("momentum", "{ kind = \"rule\", rule = \"momentum\", lookback = 60 }"),
    (
        "ensemble",
        "{ kind = \"ensemble\", members = [{ kind = \"linear\", alpha = 0.001 }, \
         { kind = \"rule\", rule = \"momentum\", lookback = 60 }] }",
    ),
];

/// The `[[models]]` tables of `names` (each one of [`BENCH_MODELS`]).
fn bench_models(names: &[String]) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut text = String::new();
    for name in names {
        let (_, model) = BENCH_MODELS.iter().find(|(n, _)| n == name).ok_or_else(|| {
            let known: Vec<&str> = BENCH_MODELS.iter().map(|(n, _)| *n).collect();
            UsageError(format!("--models: unknown model {name:?} (one of {})", known.join(", ")))
        })?;
        let _ = write!(text, "\n[[models]]\nname = \"{name}\"\nmodel = {model}\n");
    }
    if text.is_empty() {
        return Err(UsageError("--models: name at least one model".into()).into());
    }
    Ok(text)
}

fn backtest(ctx: &Ctx, a: &BenchBacktestArgs) -> anyhow::Result<()> {
    let models = bench_models(&a.models)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let t = Instant::now();
    let mut df = synth_prices(&SynthConfig::new(a.symbols, a.days, 42))?;
    let prices = a.out.join("prices.parquet");
    stockcast_features::io::write_frame(&mut df, &prices)?;
    let synth_s = t.elapsed().as_secs_f64();
    let config = a.out.join("backtest.toml");
    let window = a.train_days.map_or_else(String::new, |n| format!("window = \"rolling\"\ntrain_days = {n}\n"));
    let memory = a.memory_gb.map_or_else(String::new, |gb| format!("memory_gb = {gb}\n"));
    let text = format!(
        "name = \"bench\"\nseed = 42\njobs = {}\n{memory}\n[data]\nprices = {:?}\nhorizon = 5\n\n[split]\nmin_train_days = 504\n\
         test_days = 252\nvalid_days = 63\n{window}{models}\n[strategy]\nkind = \"top_k\"\nk = 50\nn_drop = 10\n\
         rebalance_days = 5\ncommission_bps = 10\nslippage_bps = 5\n",
        a.jobs,
        prices.display().to_string()
    );
    stockcast_features::io::write_atomic(&config, text.as_bytes())?;
    let run_dir = a.out.join("run");
    drop(df);
    let peak_reset = reset_peak_rss();
    let t = Instant::now();
    let cfg = stockcast_backtest::BacktestConfig::from_file(&config)?;
    let data =
        stockcast_pipeline::backtest::BacktestData::load(ctx, &cfg, None, &run_dir.with_extension("prices.csv"))?;
    let bt = stockcast_pipeline::backtest::run(ctx, &cfg, &data)?;
    bt.write(&run_dir, Replace::Own)?;
    out(&format!("{}, {:.1} s", bt.headline(), t.elapsed().as_secs_f64()));
    out(bt.summary_table().trim_end());
    let total = t.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json"))?)?;
    let peak = peak_reset
        .then(stockcast_backtest::runner::peak_resident_bytes)
        .flatten()
        .map_or_else(|| "n/a".to_owned(), |b| format!("{:.0} MB", b as f64 / 1_048_576.0));
    out(&format!(
        "bench backtest: {} symbols x {} days, {} folds, jobs {}, models {}; synthetic data {synth_s:.1} s, backtest \
         {total:.1} s, peak RSS {peak}",
        a.symbols,
        a.days,
        report["folds"].as_array().map_or(0, Vec::len),
        a.jobs,
        a.models.join(",")
    ));
    if let Some(t) = report["timings_seconds"].as_object() {
        for (stage, s) in t {
            out(&format!("  stage {stage:<14} {:>8.1} s", s.as_f64().unwrap_or(f64::NAN)));
        }
    }
    if let Some(m) = report["models"].as_object() {
        for (name, v) in m {
            out(&format!(
                "  model {name:<14} fit {:>7.1} s  predict {:>6.2} s  simulate {:>5.2} s  rank IC {:+.4}",
                v["fit_seconds"].as_f64().unwrap_or(f64::NAN),
                v["predict_seconds"].as_f64().unwrap_or(f64::NAN),
                v["simulate_seconds"].as_f64().unwrap_or(f64::NAN),
                v["rank_ic"].as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    Ok(())
}

pub(crate) fn run(ctx: &Ctx, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Features(a) => features(ctx, &a),
        BenchCommand::Forecast(a) => forecast(ctx, &a),
        BenchCommand::Gbm(a) => gbm(ctx, &a),
        BenchCommand::Lstm(a) => lstm(&a),
        BenchCommand::Backtest(a) => backtest(ctx, &a),
        BenchCommand::Serve(a) => serve(ctx, &a),
        BenchCommand::HttpFloor(a) => crate::floor::run(&a),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `stockcast bench serve`: Postgres + server on loopback, load from a second runtime in this process.
/// Waits `lead`, stops Postgres for `outage`, restarts it.
fn postgres_outage(
    cluster: &stockcast_infer::testkit::LocalCluster,
    lead: std::time::Duration,
    outage: std::time::Duration,
) -> anyhow::Result<()> {
    std::thread::sleep(lead);
    cluster.stop();
    std::thread::sleep(outage);
    cluster.restart()?;
    Ok(())
}

fn serve(ctx: &Ctx, a: &BenchServeArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Duration;

    use stockcast_features::MatrixOptions;
    use stockcast_infer::recommend::{self, RecommendConfig, Scorer};
    use stockcast_infer::server::{self, ServeConfig};
    use stockcast_infer::store::NewRun;
    use stockcast_infer::store::{self, PoolConfig};
    use stockcast_infer::testkit::LocalCluster;
    use stockcast_infer::testkit::{self as http_client, LoadRequest};
    use stockcast_models::registry::{CHAMPION, DataInfo, Publish, Registry};

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let pb = ctx.step("synthetic prices");
    let mut df = synth_prices(&SynthConfig::new(a.symbols, a.days, 42))?;
    let path = a.out.join("prices.parquet");
    stockcast_features::io::write_frame(&mut df, &path)?;
    let prices = load_prices(&path, &LoadOptions::default())?.prices;
    pb.finish();
    let (_, last) = prices.date_range()?.context("no dates")?;

    let cluster = Arc::new(LocalCluster::start()?);
    let url = cluster.create_database("bench")?;
    let rt = stockcast_pipeline::prices::runtime()?;
    let pool = rt.block_on(store::connect(&url, PoolConfig::default()))?;
    rt.block_on(store::migrate(&pool))?;
    let t = Instant::now();
    let imported = rt.block_on(store::import_prices(&pool, &prices, &[]))?;
    let import_s = t.elapsed().as_secs_f64();

    // A linear model on the panel, published as the champion.
    let models_dir = a.out.join("registry");
    // A fresh registry for each run, removed only when it is this benchmark's (its `bench` model's aliases).
    let own = stockcast_features::outputs::Marker { file: "bench/aliases.json", key: "aliases" };
    stockcast_features::outputs::check_output_dir(&models_dir, "benchmark registry", &[own], Replace::Own)?;
    if models_dir.exists() {
        std::fs::remove_dir_all(&models_dir).with_context(|| format!("removing {}", models_dir.display()))?;
    }
    let reg = Registry::new(&models_dir);
    let spec: stockcast_features::Checked<FeatureSpec> = stockcast_features::Checked::default();
    let cut = last - chrono::Duration::days(30);
    let opts = stockcast_models::DatasetOptions {
        matrix: MatrixOptions { require_label: true, drop_incomplete: true },
        context: false,
    };
    let train = stockcast_pipeline::features::dataset(ctx, &prices.until(cut)?, &spec, opts)?;
    let config = stockcast_models::ModelConfig::from_toml("kind = \"linear\"\nalpha = 0.001\nl1_ratio = 0.0\n")?;
    let model = stockcast_models::fit(&config, &train, None, 42)?;
    let publish = |created_at: &str| {
        reg.publish(
            "bench",
            &Publish {
                model: &model,
                spec_toml: &spec.to_toml(),
                created_at,
                data: DataInfo::default(),
                metrics: serde_json::json!({}),
                stockcast_version: env!("CARGO_PKG_VERSION"),
                git_commit: None,
            },
        )
    };
    let m = publish("2026-01-01T00:00:00Z")?;
    reg.set_alias("bench", CHAMPION, m.version, "2026-01-01T00:00:00Z", "bench")?;

    // Writing a day of recommendations: scoring once, then the one-transaction write, `writes` times.
    let scorer = Scorer::load(&reg, &"bench".parse()?)?;
    let t = Instant::now();
    let day = recommend::compute_day(&scorer, &prices, last, &RecommendConfig::default(), &recommend::Cancel::new())?;
    let score_s = t.elapsed().as_secs_f64();
    let created_at = "2026-01-01T00:00:00Z".parse()?;
    let mut write_ms = Vec::new();
    for _ in 0..a.writes.max(1) {
        let run =
            NewRun { manifest: &scorer.manifest, as_of: last, created_at, params: day.params.clone(), rows: &day.rows };
        let t = Instant::now();
        rt.block_on(store::store_run(&pool, &run))?;
        write_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rt.block_on(pool.close());
    drop(rt);

    // The server on its own runtime; the load generator on another.
    let server_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(a.server_threads.max(1)).enable_all().build()?;
    let cfg = ServeConfig {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        models_dir: models_dir.clone(),
        database_url: Some(url),
        poll_s: 0,
        api_token: Some("bench-token".into()),
        health_probe_ms: 500,
        max_symbols: a.symbols.max(1000),
        ..ServeConfig::default()
    };
    let background = server_rt.block_on(server::Background::start(cfg, ctx.clock().clone()))?;
    let addr = background.addr;
    let load_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(a.load_threads.max(1)).enable_all().build()?;
    let symbols = prices.symbols()?;
    let duration = Duration::from_secs_f64(a.seconds.max(0.1));
    // Pinned to the stored run's version: a fault run's reload serves a new champion with no stored run yet.
    let rec_path = "/v1/recommendations?limit=100&model=bench@1".to_owned();
    // The fault run: Postgres stopped and restarted, then a new champion published and reloaded, under load.
    let v2 = if a.fault_outage_s > 0.0 { Some(publish("2026-01-02T00:00:00Z")?.version) } else { None };
    let (outage, lead) = (Duration::from_secs_f64(a.fault_outage_s), duration.mul_f64(0.2));
    let faults = v2.map(|v2| {
        let (cluster, reg) = (cluster.clone(), reg.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
            let mut log = Vec::new();
            let t0 = Instant::now();
            postgres_outage(&cluster, lead, outage)?;
            log.push(format!(
                "postgres stopped at {:.1} s, restarted at {:.1} s",
                lead.as_secs_f64(),
                t0.elapsed().as_secs_f64()
            ));
            reg.set_alias("bench", CHAMPION, v2, "2026-01-02T00:00:00Z", "fault run")?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let r = rt.block_on(async {
                let mut c = stockcast_infer::testkit::HttpClient::connect(addr).await?;
                c.send("POST", "/v1/admin/reload", &[("authorization", "Bearer bench-token")], Some(b"{}")).await
            })?;
            log.push(format!("{:.1} s: reload to v{v2} answered {}", t0.elapsed().as_secs_f64(), r.status));
            Ok(log)
        })
    });
    let read = move |_| LoadRequest { method: "GET", path: rec_path.clone(), body: None };
    let reads = load_rt.block_on(http_client::load(addr, a.connections, duration, read.clone()))?;
    if let Some(f) = faults {
        for line in f.join().map_err(|_| anyhow::anyhow!("the fault thread panicked"))?? {
            out(&format!("  fault run: {line}"));
        }
        // The same faults at a fixed rate (open loop, latency from each request's scheduled start).
        let fault2 = {
            let cluster = cluster.clone();
            std::thread::spawn(move || postgres_outage(&cluster, lead, outage))
        };
        let fixed = load_rt.block_on(http_client::load_at_rate(addr, a.connections, a.fault_rate, duration, read))?;
        fault2.join().map_err(|_| anyhow::anyhow!("the fault thread panicked"))??;
        out(&format!(
            "  fault run at a fixed {:.0} req/s (Postgres stopped {:.0} s again): {} requests, statuses {:?}, p50 {:.2} \
             ms, p99 {:.2} ms, max {:.1} ms",
            a.fault_rate, a.fault_outage_s, fixed.requests, fixed.statuses, fixed.p50_ms, fixed.p99_ms, fixed.max_ms
        ));
        if a.wrk {
            // wrk at the same rate through the same outage, then a reload (back to version 1) while it runs.
            let fault3 = {
                let (cluster, reg) = (cluster.clone(), reg.clone());
                std::thread::spawn(move || -> anyhow::Result<u16> {
                    postgres_outage(&cluster, lead, outage)?;
                    reg.set_alias("bench", CHAMPION, 1, "2026-01-03T00:00:00Z", "fault run: back to v1")?;
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    let r = rt.block_on(async {
                        let mut c = stockcast_infer::testkit::HttpClient::connect(addr).await?;
                        c.send("POST", "/v1/admin/reload", &[("authorization", "Bearer bench-token")], Some(b"{}"))
                            .await
                    })?;
                    Ok(r.status)
                })
            };
            let url = format!("http://{addr}/v1/recommendations?limit=100&model=bench@1");
            let script = stockcast_pipeline::demo::locate(Path::new("bench/wrk_fixed_rate.lua"));
            let wrk = std::process::Command::new("wrk")
                .args(["-t2", &format!("-c{}", a.connections), &format!("-d{:.0}s", a.seconds), "--latency", "-s"])
                .arg(&script)
                .arg(&url)
                .args(["--", &format!("{}", a.fault_rate), &a.connections.to_string()])
                .output()
                .context("running wrk (Debian: apt-get install wrk)")?;
            let reload = fault3.join().map_err(|_| anyhow::anyhow!("the fault thread panicked"))??;
            let text = String::from_utf8_lossy(&wrk.stdout);
            anyhow::ensure!(wrk.status.success(), "wrk failed: {text} {}", String::from_utf8_lossy(&wrk.stderr));
            let line = |tag: &str| text.lines().find(|l| l.starts_with(tag)).unwrap_or_default().to_owned();
            out(&format!(
                "  fault run with wrk at {:.0} req/s (Postgres stopped {:.0} s, then a reload answered {reload}): {} | {}",
                a.fault_rate,
                a.fault_outage_s,
                line("wrk-statuses"),
                line("wrk-totals")
            ));
        }
    }
    // One `POST /v1/predict` of `symbol` on `date` on a new connection: its seconds (a 200 required).
    let predict_once = |symbol: &str, date: chrono::NaiveDate| -> anyhow::Result<f64> {
        let body = format!(r#"{{"symbols":["{symbol}"],"date":"{date}"}}"#);
        let t = Instant::now();
        let r = load_rt.block_on(async {
            let mut c = stockcast_infer::testkit::HttpClient::connect(addr).await?;
            c.send("POST", "/v1/predict", &[], Some(body.as_bytes())).await
        })?;
        anyhow::ensure!(r.status == 200, "prediction for {date} failed: {} {}", r.status, r.text());
        Ok(t.elapsed().as_secs_f64())
    };
    // The first prediction of a day reads the stored prices and scores every symbol once; later ones are cached.
    let cold_s = predict_once(&symbols[0], last)?;
    let probe = symbols[0].clone();
    let syms = Arc::new(symbols);
    let predicts = load_rt.block_on(http_client::load(addr, a.connections, duration, move |i| {
        let n = syms.len();
        let pick = |k: u64| syms[((i * 7 + k) % n as u64) as usize].clone();
        let body = serde_json::json!({ "symbols": [pick(0), pick(1), pick(2)], "date": last }).to_string();
        LoadRequest { method: "POST", path: "/v1/predict".into(), body: Some(body.into_bytes()) }
    }))?;
    // A day the server has not scored (the trading date before the last), asked with nothing else running: the
    // whole computation (read, checks, features, scores) without the start-up warm-up's head start.
    let calendar = prices.calendar()?;
    let earlier = *calendar.iter().rev().nth(1).context("fewer than two trading dates")?;
    let unwarmed_s = predict_once(&probe, earlier)?;
    server_rt.block_on(background.stop())?;
    drop(cluster);

    let write_median = median(write_ms.clone());
    out(&format!(
        "bench serve: {} symbols x {} days ({} rows imported in {import_s:.2} s); server {} threads, load generator {} \
         threads, {} connections, {:.0} s per endpoint, loopback, {} cores",
        a.symbols,
        a.days,
        imported.rows,
        a.server_threads,
        a.load_threads,
        a.connections,
        a.seconds,
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get)
    ));
    out(&format!(
        "  write {} recommendations (run + predictions + recommendations, one transaction, replacing): median \
         {write_median:.1} ms over {} writes (min {:.1}, max {:.1}); scoring the day took {score_s:.2} s",
        day.rows.len(),
        write_ms.len(),
        write_ms.iter().copied().fold(f64::INFINITY, f64::min),
        write_ms.iter().copied().fold(0.0, f64::max)
    ));
    out(&format!(
        "  first POST /v1/predict of the day (reads {} stored rows, scores all symbols): {cold_s:.2} s",
        imported.rows
    ));
    out(&format!(
        "  first POST /v1/predict of a day not scored yet ({earlier}; nothing else running; reads {} stored rows): \
         {unwarmed_s:.2} s",
        prices.until(earlier)?.height()
    ));
    out("  | endpoint | requests | failures | req/s | p50 ms | p99 ms | max ms |");
    out("  |---|---|---|---|---|---|---|");
    for (name, r) in
        [("GET /v1/recommendations?limit=100 (cached)", &reads), ("POST /v1/predict (3 symbols)", &predicts)]
    {
        out(&format!(
            "  | {name} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} |",
            r.requests, r.failures, r.rps, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    let results = serde_json::json!({
        "symbols": a.symbols, "days": a.days, "connections": a.connections, "seconds": a.seconds,
        "server_threads": a.server_threads, "load_threads": a.load_threads,
        "import_s": import_s, "score_day_s": score_s, "write_ms": write_ms, "write_median_ms": write_median, "first_predict_s": cold_s, "unwarmed_predict_s": unwarmed_s,
        "recommendations": reads, "predict": predicts,
    });
    let p = a.out.join("results.json");
    stockcast_features::io::write_atomic(&p, serde_json::to_string_pretty(&results)?.as_bytes())?;
    ctx.note(&format!("results: {}", p.display()));
    Ok(())
}
