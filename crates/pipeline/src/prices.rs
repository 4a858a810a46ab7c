//! Loading prices for a job: a file or the Postgres `prices` table, through the quality checks, with the report
//! printed and the quarantine/JSON files written.

use std::path::{Path, PathBuf};

use stockcast_features::{Checked, LoadOptions, Loaded, Policy, QualityConfig, QualityReport, ReadOptions};

use crate::{Context, Ctx, Error, Result};

/// Where prices come from and how the quality stage treats them.
#[derive(Debug, Clone, Default)]
pub struct PriceInput {
    /// A CSV/Parquet file, or a Postgres URL (`postgres://…`) whose `prices` table is read.
    pub prices: PathBuf,
    /// Symbol of a single-symbol file; in a long file, keep only this symbol.
    pub symbol: Option<String>,
    /// A folder or pattern source reads only the files that can hold these symbols (empty: all).
    pub symbols: Vec<String>,
    /// Securities file (`symbol,name,sector`).
    pub securities: Option<PathBuf>,
    /// Overrides the policy of the row-defect checks.
    pub on_bad_rows: Option<Policy>,
    /// Where removed rows go (default: `<stem>.quarantine.csv` beside the output).
    pub quarantine: Option<PathBuf>,
    /// Quality policies and thresholds (TOML).
    pub quality_config: Option<PathBuf>,
    /// Quality policies and thresholds given inline (a job config's `[data.quality]`), used when no file is.
    pub quality: Option<QualityConfig>,
    /// Declared splits (CSV `symbol,date,ratio`), added to the config's.
    pub splits: Option<PathBuf>,
    /// Back-adjust detected suspect splits.
    pub adjust_detected_splits: bool,
    /// The dates' format when not ISO (`%m/%d/%Y`, …; chrono's `strftime` syntax).
    pub date_format: Option<String>,
}

impl PriceInput {
    /// A price file or URL with default quality handling (row-defect policies set to `on_bad_rows` when given).
    pub fn file(prices: PathBuf, securities: Option<PathBuf>, on_bad_rows: Option<Policy>) -> Self {
        Self { prices, securities, on_bad_rows, ..Self::default() }
    }
}

/// Reads `quality_config` (or the defaults) and applies `on_bad_rows`.
pub fn quality_config(input: &PriceInput) -> Result<Checked<QualityConfig>> {
    let mut cfg = match &input.quality_config {
        Some(p) => crate::config::load_toml::<QualityConfig>(p, "quality config")?,
        None => input.quality.clone().unwrap_or_default(),
    };
    if let Some(p) = input.on_bad_rows {
        cfg.on_bad_rows = Some(p);
    }
    if let Some(path) = &input.splits {
        cfg.splits.extend(stockcast_features::read_splits(path)?);
    }
    cfg.adjust_detected_splits |= input.adjust_detected_splits;
    Ok(Checked::new(cfg)?)
}

/// Where removed rows go: `quarantine`, else `<stem>.quarantine.csv` beside `default_beside` (a database source
/// gives `prices.quarantine.csv`: a file name never carries a URL, or its password).
fn quarantine_path(input: &PriceInput, default_beside: &Path) -> PathBuf {
    input.quarantine.clone().unwrap_or_else(|| {
        if stockcast_features::is_database_url(&input.prices) && default_beside.to_string_lossy().contains("://")
            || default_beside.to_string_lossy().contains('@')
        {
            return PathBuf::from("prices.quarantine.csv");
        }
        let stem = default_beside.file_stem().map_or_else(|| "prices".into(), |s| s.to_string_lossy().into_owned());
        default_beside.with_file_name(format!("{stem}.quarantine.csv"))
    })
}

/// Prints the report, writes the quarantine file (when rows were removed or a path was given) and the JSON
/// report (when asked).
fn publish_report(
    ctx: &Ctx,
    report: &QualityReport,
    input: &PriceInput,
    quarantine_beside: &Path,
    json: Option<&Path>,
) -> Result<()> {
    if ctx.json_logs() {
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
    } else if !(ctx.quiet_summaries() && report.checks.iter().all(|c| c.flagged == 0)) {
        eprint!("{}", report.summary());
    }
    if report.rows_quarantined > 0 || input.quarantine.is_some() {
        let q = quarantine_path(input, quarantine_beside);
        report.write_quarantine(&q)?;
        ctx.note(&format!("  quarantine: {} row(s) written to {}", report.quarantine.len(), q.display()));
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        if path == Path::new("-") {
            ctx.out(&text);
        } else {
            stockcast_features::io::write_atomic(path, text.as_bytes())?;
        }
    }
    Ok(())
}

/// How a price source is named in messages and manifests: a file's path, or a database URL without its
/// password.
pub fn source_label(p: &Path) -> String {
    if stockcast_features::is_database_url(p) {
        format!("{} (prices table)", stockcast_infer::store::redact(&p.to_string_lossy()))
    } else {
        p.display().to_string()
    }
}

/// A small tokio runtime for the jobs that talk to Postgres.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Reads the `prices` table of the database at `url` and runs the quality checks on it.
/// The outer error is the database's, the inner one the quality stage's.
fn load_from_db(url: &str, input: &PriceInput, opts: &LoadOptions) -> Result<stockcast_features::Result<Loaded>> {
    use stockcast_infer::store::{self, PoolConfig, PriceQuery};
    let label = source_label(Path::new(url));
    let read = async {
        // Up to 4 connections: a full read splits across them (see `store::read_prices`).
        let pool = store::connect(url, PoolConfig { max_connections: 4, ..PoolConfig::default() }).await?;
        let q = PriceQuery { symbols: input.symbol.iter().cloned().collect(), ..PriceQuery::default() };
        let r = store::read_prices(&pool, &label, &q).await;
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
pub fn load(ctx: &Ctx, input: &PriceInput, quarantine_beside: &Path, json: Option<&Path>) -> Result<Loaded> {
    // The files this writes are checked before the work: none of them may replace a directory.
    for out in input.quarantine.as_deref().into_iter().chain(json.filter(|p| *p != Path::new("-"))) {
        stockcast_features::outputs::check_output_file(out)?;
    }
    let opts = LoadOptions {
        read: ReadOptions {
            symbol: input.symbol.clone(),
            symbols: input.symbols.clone(),
            date_format: input.date_format.clone(),
        },
        quality: quality_config(input)?,
        securities: input.securities.clone(),
    };
    let label = source_label(&input.prices);
    let pb = ctx.step(&format!("loading {label}"));
    let result = if stockcast_features::is_database_url(&input.prices) {
        load_from_db(&input.prices.to_string_lossy(), input, &opts).inspect_err(|_| pb.finish())?
    } else if stockcast_features::objects::is_object_path(&input.prices) {
        // An object (s3://bucket/prices.parquet): a local copy for the reader, removed after it.
        let copy =
            stockcast_features::objects::download(&input.prices.to_string_lossy()).inspect_err(|_| pb.finish())?;
        stockcast_features::load_prices(&copy.path, &opts)
    } else {
        stockcast_features::load_prices(&input.prices, &opts)
    };
    pb.finish();
    match result {
        Ok(loaded) => {
            publish_report(ctx, &loaded.report, input, quarantine_beside, json)?;
            Ok(loaded)
        }
        Err(e) => {
            if let stockcast_features::Error::Quality { report: Some(report), .. } = &e {
                publish_report(ctx, report, input, quarantine_beside, json)?;
            }
            Err(e).with_context(|| format!("loading prices from {label}"))
        }
    }
}

/// The usage error for a missing price source.
pub(crate) fn require(prices: Option<PathBuf>) -> Result<PathBuf> {
    prices.ok_or_else(|| Error::Usage("no prices: set data.prices in the config or pass --prices".into()))
}
