//! One module per subcommand, plus what they share: loading prices with quality reporting.

mod backtest;
mod bench;
mod datasets;
mod db;
mod demo;
mod features;
mod model;
mod models;
mod quality;
mod recommend;
mod serve;
mod spec;
mod train;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use stockcast_features::{LoadOptions, Loaded, Policy, QualityConfig, QualityReport, ReadOptions};

use crate::UsageError;
use crate::cli::{Cli, Command, DataArgs, PolicyArg};
use crate::progress::Progress;

/// Per-invocation context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) progress: Progress,
    /// Logs are JSON lines: human-readable text goes through `tracing` events instead of plain stderr lines.
    pub(crate) json_logs: bool,
    /// `--quiet`: no quality summary when every check passed.
    pub(crate) quiet: bool,
}

impl Ctx {
    /// A note for the user on stderr (a log event when logs are JSON).
    pub(crate) fn note(self, msg: &str) {
        if self.json_logs {
            tracing::info!("{msg}");
        } else {
            eprintln!("{msg}");
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::logging::init(cli.log_format, cli.quiet);
    let progress = Progress::new(cli.log_format, cli.quiet);
    stockcast_models::progress::set_visible(progress.visible());
    let ctx = Ctx { progress, json_logs: cli.log_format == crate::cli::LogFormat::Json, quiet: cli.quiet };
    match cli.command {
        Command::Demo(a) => demo::run(ctx, &a),
        Command::Quality(a) => quality::run(ctx, &a),
        Command::Features(a) => features::run(ctx, &a),
        Command::Spec(a) => spec::run(&a),
        Command::Fit(a) => model::fit(ctx, &a),
        Command::Predict(a) => model::predict(ctx, &a),
        Command::Backtest(a) => backtest::run(ctx, &a),
        Command::Train(a) => train::run(ctx, &a),
        Command::Models(c) => models::run(c),
        Command::Db(c) => db::run(ctx, c),
        Command::Datasets(c) => datasets::run(ctx, c),
        Command::Bench(c) => bench::run(ctx, c),
        Command::Recommend(a) => recommend::run(ctx, &a),
        Command::Serve(a) => serve::run(ctx, &a),
    }
}

/// Writes a line to stdout (the command's result); a closed pipe is not an error.
pub(crate) fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn policy(p: PolicyArg) -> Policy {
    match p {
        PolicyArg::Error => Policy::Error,
        PolicyArg::Drop => Policy::Drop,
        PolicyArg::Warn => Policy::Warn,
    }
}

/// Reads `--quality-config` (or the defaults) and applies `--on-bad-rows`.
pub(crate) fn quality_config(data: &DataArgs) -> anyhow::Result<QualityConfig> {
    let mut cfg = match &data.quality_config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<QualityConfig>(&text)
                .map_err(|e| UsageError(format!("{}: invalid quality config: {e}", p.display())))?
        }
        None => QualityConfig::default(),
    };
    if let Some(p) = data.on_bad_rows {
        cfg.on_bad_rows = Some(policy(p));
    }
    Ok(cfg)
}

/// Where removed rows go: `--quarantine`, else `<stem>.quarantine.csv` beside `default_beside`.
fn quarantine_path(data: &DataArgs, default_beside: &Path) -> PathBuf {
    data.quarantine.clone().unwrap_or_else(|| {
        let stem = default_beside.file_stem().map_or_else(|| "prices".into(), |s| s.to_string_lossy().into_owned());
        default_beside.with_file_name(format!("{stem}.quarantine.csv"))
    })
}

/// Prints the report, writes the quarantine file (when rows were removed or a path was given) and the JSON
/// report (when asked).
fn publish_report(
    ctx: Ctx,
    report: &QualityReport,
    data: &DataArgs,
    quarantine_beside: &Path,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    if ctx.json_logs {
        tracing::info!(
            source = %report.source,
            rows_read = report.rows_read,
            rows_kept = report.rows_kept,
            rows_quarantined = report.rows_quarantined,
            symbols = report.symbols,
            "quality report"
        );
        for c in report.checks.iter().filter(|c| c.flagged > 0) {
            let first = c.examples.first().map(|e| format!("line {} {}: {}", e.line, e.symbol, e.detail));
            tracing::warn!(check = c.check.name(), flagged = c.flagged, policy = %c.policy, action = c.action, first, "quality check flagged rows");
        }
    } else if !(ctx.quiet && report.checks.iter().all(|c| c.flagged == 0)) {
        eprint!("{}", report.summary());
    }
    if report.rows_quarantined > 0 || data.quarantine.is_some() {
        let q = quarantine_path(data, quarantine_beside);
        report.write_quarantine(&q)?;
        ctx.note(&format!("  quarantine: {} row(s) written to {}", report.quarantine.len(), q.display()));
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        if path == Path::new("-") {
            out(&text);
        } else {
            stockcast_features::io::write_atomic(path, text.as_bytes())?;
        }
    }
    Ok(())
}

/// How a `--prices` value is named in messages and manifests: a file's path, or a database URL without its
/// password.
pub(crate) fn source_label(p: &Path) -> String {
    if stockcast_features::is_database_url(p) {
        format!("{} (prices table)", stockcast_infer::db::redact(&p.to_string_lossy()))
    } else {
        p.display().to_string()
    }
}

/// A small tokio runtime for the commands that talk to Postgres.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Reads the `prices` table of the database at `url` and runs the quality checks on it.
/// The outer error is the database's, the inner one the quality stage's.
fn load_from_db(url: &str, data: &DataArgs, opts: &LoadOptions) -> anyhow::Result<stockcast_features::Result<Loaded>> {
    use stockcast_infer::db::{self, PoolConfig, PriceQuery};
    let label = source_label(Path::new(url));
    let read = async {
        let pool = db::connect(url, PoolConfig { max_connections: 1, ..PoolConfig::default() }).await?;
        let q = PriceQuery { symbols: data.symbol.iter().cloned().collect(), ..PriceQuery::default() };
        let r = db::read_prices(&pool, &label, &q).await;
        pool.close().await;
        r
    };
    let (bars, mut securities) = runtime()?.block_on(read)?;
    if let Some(p) = &opts.securities {
        // A securities file given on the command line wins over the stored names and sectors.
        let given = stockcast_features::load::read_securities(p)?;
        securities.retain(|s| !given.iter().any(|g| g.symbol == s.symbol));
        securities.extend(given);
    }
    Ok(stockcast_features::check_bars(bars, &opts.quality, securities, true))
}

/// Loads prices with quality checks, printing the report and writing the quarantine/JSON files; on a failed
/// check the report so far is still published before the error is returned.
pub(crate) fn load(ctx: Ctx, data: &DataArgs, quarantine_beside: &Path, json: Option<&Path>) -> anyhow::Result<Loaded> {
    let opts = LoadOptions {
        read: ReadOptions { symbol: data.symbol.clone() },
        quality: quality_config(data)?,
        securities: data.securities.clone(),
    };
    let label = source_label(&data.prices);
    let pb = ctx.progress.step(&format!("loading {label}"));
    let result = if stockcast_features::is_database_url(&data.prices) {
        load_from_db(&data.prices.to_string_lossy(), data, &opts).inspect_err(|_| pb.finish_and_clear())?
    } else {
        stockcast_features::load_prices(&data.prices, &opts)
    };
    pb.finish_and_clear();
    match result {
        Ok(loaded) => {
            publish_report(ctx, &loaded.report, data, quarantine_beside, json)?;
            Ok(loaded)
        }
        Err(e) => {
            if let stockcast_features::Error::Quality { report: Some(report), .. } = &e {
                publish_report(ctx, report, data, quarantine_beside, json)?;
            }
            Err(e).with_context(|| format!("loading prices from {label}"))
        }
    }
}
