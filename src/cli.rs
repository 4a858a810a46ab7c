//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stockcast_models::registry::ModelRef;

/// stockcast: batch ML training and inference for daily stock price history.
///
/// Loads price history (CSV/Parquet: long, single-symbol or wide layout), checks data quality, builds
/// features and labels. Exit codes: 0 ok, 1 runtime failure, 2 bad usage, configuration or input data.
#[derive(Debug, Parser)]
#[command(name = "stockcast", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "STOCKCAST_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Only log warnings and errors (the level can also be set with `STOCKCAST_LOG`, e.g. `debug`).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for cron and log shippers).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stage on the bundled data (`datasets/us5_daily.csv`): quality, features, each model kind, a
    /// walk-forward backtest, then PostgreSQL (import, nightly training, recommendations, the server); writes runs/demo.
    Demo(DemoArgs),
    /// Load prices and run the data-quality checks; print a summary, optionally a JSON report.
    Quality(QualityArgs),
    /// Compute features and labels from prices and write them as Parquet or CSV.
    Features(FeaturesArgs),
    /// Print a feature spec (the default, or --spec FILE) as TOML with its hash.
    Spec(SpecArgs),
    /// Fit a model (configs/models/*.toml) on prices up to a date and save it to a directory.
    Fit(FitArgs),
    /// Score every symbol on a date with a saved model; CSV `symbol,date,score` to stdout or --out.
    Predict(PredictArgs),
    /// Walk-forward backtest of the configured models: per-fold signal and forecast metrics, a portfolio
    /// simulation with costs, and a report directory (JSON, Markdown, HTML with plots, Parquet).
    Backtest(BacktestArgs),
    /// Nightly training: walk-forward evaluation, final fit, publish to the registry, promote when the gate
    /// passes. Exit codes: 0 published (promoted or not), 1 failure, 2 bad config/input, 3 data-quality failure.
    Train(TrainArgs),
    /// Score every symbol as of a date with the champion (or pinned) model versions and store the ranked
    /// recommendations in Postgres (one transaction per model version; rerunning a date replaces its rows).
    Recommend(RecommendArgs),
    /// The HTTP inference server: predictions and recommendations from the promoted models and Postgres.
    Serve(ServeArgs),
    /// The model registry: list, show, promote, rollback, gc.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Postgres: apply the schema, import prices.
    #[command(subcommand)]
    Db(DbCommand),
    /// Dataset utilities.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Backtest reports: compare two runs.
    #[command(subcommand)]
    Report(ReportCommand),
}

/// Where prices come from and how bad rows are handled (shared by every command that reads prices).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Price file: CSV or Parquet; long (date,symbol,open,high,low,close[,volume][,adj_close]),
    /// single-symbol (no symbol column) or wide (date + one close column per symbol); or a Postgres URL
    /// (`postgres://user:pass@host/db`) to read the `prices` table (see `stockcast db import-prices`).
    #[arg(long, value_name = "FILE")]
    pub prices: PathBuf,
    /// Symbol of a single-symbol file (default: the file stem); in a long file, keep only this symbol.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Securities file (`symbol,name,sector`) whose sector is carried along.
    #[arg(long, value_name = "FILE")]
    pub securities: Option<PathBuf>,
    /// Policy for row defects (unparseable, non-finite, non-positive, negative-volume, OHLC-inconsistent and
    /// duplicate rows): `drop` quarantines exactly those rows. Series findings about valid bars keep their own
    /// policies: gaps and zero-volume streaks warn (or error, never drop), suspect splits warn (remedy: --splits
    /// or --adjust-detected-splits where offered), spikes warn.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_bad_rows: Option<PolicyArg>,
    /// Write every removed row with its reason to this CSV (default when rows are removed:
    /// `<output or input stem>.quarantine.csv`).
    #[arg(long, value_name = "FILE")]
    pub quarantine: Option<PathBuf>,
    /// The dates' format when they are not YYYY-MM-DD, in strftime syntax: `%m/%d/%Y` for an Excel export's
    /// 1/31/2020, `%d.%m.%Y` for 31.01.2020, `%d-%b-%Y` for 31-Jan-2020.
    #[arg(long, value_name = "FORMAT")]
    pub date_format: Option<String>,
    /// Quality settings.
    #[command(flatten)]
    pub quality: QualityFlags,
}

/// The quality stage's settings on the command line (`quality`, `features`, `backtest`).
#[derive(Debug, Clone, Default, Args)]
pub struct QualityFlags {
    /// Quality policies and thresholds (TOML: `[policies]` check = "error|drop|warn", thresholds, `[[splits]]`,
    /// `adjust_detected_splits`; in a backtest it replaces [data.quality]).
    #[arg(long, value_name = "FILE")]
    pub quality_config: Option<PathBuf>,
    /// Declared stock splits (CSV `symbol,date,ratio`, ratio = new shares per old share): the symbol's earlier
    /// OHLC are divided by the ratio and its volume multiplied, before the series checks; listed in the report.
    #[arg(long, value_name = "FILE")]
    pub splits: Option<PathBuf>,
    /// Back-adjust every suspected unadjusted split (a non-reverting overnight move near a common split ratio)
    /// by that ratio instead of only warning; each adjustment is listed in the report.
    #[arg(long)]
    pub adjust_detected_splits: bool,
}

impl DataArgs {
    /// A price file with default quality handling (policies from the defaults, row defects set to `on_bad_rows`).
    pub fn file(prices: PathBuf, securities: Option<PathBuf>, on_bad_rows: Option<PolicyArg>) -> Self {
        Self {
            prices,
            symbol: None,
            securities,
            on_bad_rows,
            quarantine: None,
            date_format: None,
            quality: QualityFlags::default(),
        }
    }
}

/// A quality policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Stop with an error naming the first bad row.
    Error,
    /// Remove bad rows and write them to the quarantine file.
    Drop,
    /// Keep bad rows and report them.
    Warn,
}

/// `stockcast quality`.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Input and policies.
    #[command(flatten)]
    pub data: DataArgs,
    /// Write the report as JSON to this file (`-` for stdout). Written also when a check fails.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `stockcast features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Input and policies.
    #[command(flatten)]
    pub data: DataArgs,
    /// Feature spec (TOML); default: the built-in spec (`stockcast spec` prints it).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Label horizon in trading days (overrides the spec).
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Subtract the cross-sectional mean label per date (overrides the spec).
    #[arg(long)]
    pub demean: bool,
    /// Output file: `.parquet` or `.csv`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Also write the quality report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub quality_json: Option<PathBuf>,
}

/// `stockcast backtest`: flags override the config file.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BacktestArgs {
    /// `merge`: the report of a sharded run.
    #[command(subcommand)]
    pub action: Option<BacktestAction>,
    /// Backtest config (TOML: [data], [split], [[models]], [strategy]).
    #[arg(long, value_name = "FILE", default_value = "configs/backtest.toml")]
    pub config: PathBuf,
    /// Price file or Postgres URL (overrides data.prices).
    #[arg(long, value_name = "FILE|URL")]
    pub prices: Option<PathBuf>,
    /// Read the `prices` table of this Postgres database (same as `--prices URL`). Prefer the environment
    /// variable, which `ps` does not show (`DATABASE_URL` is not read here, so a server's setting never
    /// redirects a file-based run).
    #[arg(long, value_name = "URL", conflicts_with = "prices", env = "STOCKCAST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Index close file for a second benchmark (overrides data.index).
    #[arg(long, value_name = "FILE")]
    pub index: Option<PathBuf>,
    /// What the index file's levels include (overrides data.index_kind; default: price).
    #[arg(long, value_name = "KIND", value_parser = ["price", "total_return"])]
    pub index_kind: Option<String>,
    /// Quality settings (override [data.quality]).
    #[command(flatten)]
    pub quality: QualityFlags,
    /// Run directory (default: runs/<name>): written beside it, then swapped in atomically. An existing one is
    /// replaced only when it is an earlier run (its report.json or plan.json) or empty; any other directory is
    /// refused (see --force).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace --out even when it is not an earlier run: everything in it is deleted. `.`, `..`, `/`, the home
    /// directory and the working directory's parents are refused even so.
    #[arg(long)]
    pub force: bool,
    /// Only these models (by name; repeatable).
    #[arg(long = "model", value_name = "NAME")]
    pub models: Vec<String>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fits in parallel.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Keep the walk-forward's concurrent fits under this much resident memory (GB; the config's `memory_gb`).
    #[arg(long, value_name = "GB")]
    pub memory_gb: Option<f64>,
    /// Label horizon in trading days.
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Test dates per fold.
    #[arg(long)]
    pub test_days: Option<usize>,
    /// Fewest training dates of the first fold.
    #[arg(long)]
    pub min_train_days: Option<usize>,
    /// Rebalance every n trading dates.
    #[arg(long)]
    pub rebalance_days: Option<usize>,
    /// Commission per side in basis points.
    #[arg(long)]
    pub commission_bps: Option<f64>,
    /// Slippage per side in basis points.
    #[arg(long)]
    pub slippage_bps: Option<f64>,
    /// Policy for row defects (unparseable, non-finite, non-positive, negative-volume, OHLC-inconsistent and
    /// duplicate rows): `drop` quarantines exactly those rows. Series findings about valid bars keep their own
    /// policies: gaps and zero-volume streaks warn (or error, never drop), suspect splits warn (remedy: --splits
    /// or --adjust-detected-splits where offered), spikes warn.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_bad_rows: Option<PolicyArg>,
    /// Write the run's tasks (model × refit fold) to OUT/plan.json with the data and spec hashes they assume,
    /// print the task count, and stop.
    #[arg(long, conflicts_with = "shard")]
    pub plan: bool,
    /// Run task subset I of N (from 0) into OUT/shards/I/, replacing an earlier run of it; `backtest merge`
    /// makes the report. Default from the scheduler: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, or
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs) with --shards.
    /// `--shard` alone: from the environment.
    #[arg(long, value_name = "I/N", num_args = 0..=1, default_missing_value = "env")]
    pub shard: Option<String>,
    /// Shard count with JOB_COMPLETION_INDEX (or STOCKCAST_SHARDS).
    #[arg(long, value_name = "N", env = "STOCKCAST_SHARDS")]
    pub shards: Option<usize>,
}

/// `stockcast backtest <action>`.
#[derive(Debug, Subcommand)]
pub enum BacktestAction {
    /// Check that every shard of OUT/plan.json is present, complete and planned from the same data and config,
    /// then run the portfolio simulation, metrics and report into OUT (the same report as one process).
    Merge(MergeArgs),
}

/// `stockcast backtest merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The sharded run directory (plan.json, shards/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Price file or Postgres URL, when it is not where the plan says (a database URL's password is never
    /// recorded in the plan).
    #[arg(long, value_name = "FILE|URL", env = "STOCKCAST_DATABASE_URL", hide_env_values = true)]
    pub prices: Option<PathBuf>,
    /// Policy for row defects, as the shards ran with.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_bad_rows: Option<PolicyArg>,
}

impl BacktestArgs {
    /// Arguments that run `config` as it is (no overrides).
    pub fn from_config(config: PathBuf) -> Self {
        Self {
            action: None,
            config,
            prices: None,
            database_url: None,
            index: None,
            index_kind: None,
            quality: QualityFlags::default(),
            out: None,
            models: Vec::new(),
            seed: None,
            jobs: None,
            memory_gb: None,
            horizon: None,
            test_days: None,
            min_train_days: None,
            rebalance_days: None,
            commission_bps: None,
            slippage_bps: None,
            on_bad_rows: None,
            force: false,
            plan: false,
            shard: None,
            shards: None,
        }
    }
}

/// `stockcast train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Nightly config (a backtest config plus [gate] and [final]).
    #[arg(long, value_name = "FILE", default_value = "configs/nightly.toml")]
    pub config: PathBuf,
    /// Registry root.
    #[arg(long, value_name = "DIR", default_value = "models", env = "STOCKCAST_MODELS_DIR")]
    pub models_dir: PathBuf,
    /// Use prices up to this date only (reproducible reruns); default: the last date of the data.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<chrono::NaiveDate>,
    /// Price file or Postgres URL (overrides data.prices).
    #[arg(long, value_name = "FILE|URL")]
    pub prices: Option<PathBuf>,
    /// Read the `prices` table of this Postgres database (same as `--prices URL`). Prefer the environment
    /// variable, which `ps` does not show (`DATABASE_URL` is not read here, so a server's setting never
    /// redirects a file-based run).
    #[arg(long, value_name = "URL", conflicts_with = "prices", env = "STOCKCAST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Seed (overrides the config).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Creation time recorded in manifests and alias history (RFC 3339, e.g. 2026-11-30T22:30:00Z; default: now).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub created_at: Option<String>,
    /// Policy for row defects (unparseable, non-finite, non-positive, negative-volume, OHLC-inconsistent and
    /// duplicate rows): `drop` quarantines exactly those rows. Series findings about valid bars keep their own
    /// policies: gaps and zero-volume streaks warn (or error, never drop), suspect splits warn (remedy: --splits
    /// or --adjust-detected-splits where offered), spikes warn.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_bad_rows: Option<PolicyArg>,
    /// Directory (or object-store URL) of a sharded run: --plan, --shard and --merge read and write it. It must
    /// be absent, empty or a run's (its plan.json or report.json); any other directory is refused (see --force).
    #[arg(long, value_name = "DIR|URL", required_if_eq_any = [("plan", "true"), ("merge", "true")])]
    pub run_dir: Option<PathBuf>,
    /// Use --run-dir even when it is not a run's directory.
    #[arg(long, requires = "run_dir")]
    pub force: bool,
    /// Write the walk-forward tasks (candidates and champions × refit folds) to RUN_DIR/plan.json and stop.
    #[arg(long, conflicts_with_all = ["shard", "merge"])]
    pub plan: bool,
    /// Run walk-forward task subset I of N into RUN_DIR/shards/I/ (from the scheduler's environment when
    /// given alone, as for `backtest --shard`); nothing is published.
    #[arg(long, value_name = "I/N", num_args = 0..=1, default_missing_value = "env", requires = "run_dir")]
    pub shard: Option<String>,
    /// Shard count with JOB_COMPLETION_INDEX (or STOCKCAST_SHARDS).
    #[arg(long, value_name = "N", env = "STOCKCAST_SHARDS", requires = "run_dir")]
    pub shards: Option<usize>,
    /// Check every shard in RUN_DIR, then gate, fit, publish and promote under the registry lock (the same
    /// versions and promotions as one process).
    #[arg(long, conflicts_with = "shard")]
    pub merge: bool,
    /// Write the run's outcome as Prometheus metrics to FILE (atomically; node-exporter's textfile collector
    /// format): stockcast_train_success (also 0 on a failed run), timestamps, duration, versions published,
    /// promotions and gate values, for the alert rules in deploy/prometheus/.
    #[arg(long, value_name = "FILE", env = "STOCKCAST_TRAIN_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// `stockcast models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model with its versions, aliases and headline metrics.
    List(ModelsDirArg),
    /// A version's manifest (NAME, NAME@VERSION or NAME@ALIAS); --verify re-checks every file hash.
    Show {
        /// Registry root.
        #[command(flatten)]
        dir: ModelsDirArg,
        /// NAME[@VERSION|@ALIAS] (bare name: the champion, else the newest version).
        reference: ModelRef,
        /// Re-check every file's sha256; exit 2 on a mismatch.
        #[arg(long)]
        verify: bool,
    },
    /// Point `champion` (or --alias) at a version.
    Promote {
        /// Registry root.
        #[command(flatten)]
        dir: ModelsDirArg,
        /// Model name.
        name: String,
        /// Version.
        version: u64,
        /// Alias to move.
        #[arg(long, default_value = "champion")]
        alias: String,
    },
    /// Move `champion` back to the version it pointed to before its latest promotion.
    Rollback {
        /// Registry root.
        #[command(flatten)]
        dir: ModelsDirArg,
        /// Model name.
        name: String,
    },
    /// Delete all but the newest N versions of every model (aliased versions are kept).
    Gc {
        /// Registry root.
        #[command(flatten)]
        dir: ModelsDirArg,
        /// Versions to keep per model (at least 1).
        #[arg(long)]
        keep: usize,
    },
}

/// `stockcast recommend`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// As-of date (a trading day of the data; only prices up to it are used).
    #[arg(long, value_name = "DATE")]
    pub date: chrono::NaiveDate,
    /// Model to use: NAME (its champion), NAME@VERSION or NAME@ALIAS; repeatable. Default: the champion of every
    /// model in the registry.
    #[arg(long = "model", value_name = "REF")]
    pub models: Vec<ModelRef>,
    /// Registry root.
    #[command(flatten)]
    pub dir: ModelsDirArg,
    /// Database connection (where the run is written).
    #[command(flatten)]
    pub db: DbArgs,
    /// Read prices from this file or Postgres URL instead of the database's `prices` table.
    #[arg(long, value_name = "FILE|URL")]
    pub prices: Option<PathBuf>,
    /// Securities file (`symbol,name,sector`) for sectors not stored in the database.
    #[arg(long, value_name = "FILE")]
    pub securities: Option<PathBuf>,
    /// Policy for row defects (unparseable, non-finite, non-positive, negative-volume, OHLC-inconsistent and
    /// duplicate rows): `drop` quarantines exactly those rows. Series findings about valid bars keep their own
    /// policies: gaps and zero-volume streaks warn (or error, never drop), suspect splits warn (remedy: --splits
    /// or --adjust-detected-splits where offered), spikes warn.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_bad_rows: Option<PolicyArg>,
    /// Action rule: `quantile` (top/bottom fractions of the ranking) or `threshold` (expected-return cut-offs).
    #[arg(long, value_enum, default_value_t = ActionMethod::Quantile)]
    pub actions: ActionMethod,
    /// Quantile rule: fraction of symbols to buy.
    #[arg(long, default_value_t = 0.2)]
    pub buy_fraction: f64,
    /// Quantile rule: fraction of symbols to sell.
    #[arg(long, default_value_t = 0.2)]
    pub sell_fraction: f64,
    /// Threshold rule: buy above this expected h-day return.
    #[arg(long, default_value_t = 0.005, allow_negative_numbers = true)]
    pub buy_above: f64,
    /// Threshold rule: sell below this expected h-day return.
    #[arg(long, default_value_t = -0.005, allow_negative_numbers = true)]
    pub sell_below: f64,
    /// Labelled dates used to turn rule scores into expected returns.
    #[arg(long, default_value_t = 252)]
    pub calibration_days: usize,
    /// Creation time recorded with the run (RFC 3339, e.g. 2026-11-30T22:30:00Z; default: now).
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    pub created_at: Option<String>,
}

/// How actions are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionMethod {
    /// Top/bottom fractions of the ranking.
    Quantile,
    /// Expected-return thresholds.
    Threshold,
}

/// `stockcast serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML; every key optional, flags and environment variables win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, value_name = "ADDR", env = "STOCKCAST_ADDR")]
    pub addr: Option<std::net::SocketAddr>,
    /// Registry root.
    #[arg(long, value_name = "DIR", env = "STOCKCAST_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Bearer token of the write/admin endpoints (prefer the environment variable).
    #[arg(long, env = "STOCKCAST_API_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Apply pending migrations at start.
    #[arg(long)]
    pub migrate: bool,
    /// Run for this many seconds, then shut down gracefully (demos, benchmarks).
    #[arg(long, value_name = "SECONDS")]
    pub exit_after_s: Option<f64>,
}

/// `--models-dir`.
#[derive(Debug, Clone, Args)]
pub struct ModelsDirArg {
    /// Registry root.
    #[arg(long, value_name = "DIR", default_value = "models", env = "STOCKCAST_MODELS_DIR")]
    pub models_dir: PathBuf,
}

/// `stockcast db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply every pending migration (the schema is embedded in the binary).
    Migrate(DbArgs),
    /// Validate a price file (the quality checks) and upsert it into `prices` in one transaction (idempotent).
    ImportPrices {
        /// Database connection.
        #[command(flatten)]
        db: DbArgs,
        /// Input and policies.
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Database connection settings.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Postgres URL, e.g. postgres://user@127.0.0.1:5432/stockcast.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,
    /// Most pool connections.
    #[arg(long, default_value_t = 8)]
    pub db_max_connections: u32,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 5)]
    pub db_timeout_s: u64,
}

/// `stockcast fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Model config (TOML with `kind = "gbm" | "linear" | "rule" | "ensemble"`).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Input and policies.
    #[command(flatten)]
    pub data: DataArgs,
    /// Last date whose prices may be used (labels of later rows would need later prices and are dropped).
    #[arg(long, value_name = "DATE")]
    pub train_until: chrono::NaiveDate,
    /// Output directory: written beside it, then swapped in atomically. An existing one is replaced only when it
    /// is a saved model (its model.json) or empty; any other directory is refused (see --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace --out even when it is not a saved model: everything in it is deleted. `.`, `..`, `/`, the home
    /// directory and the working directory's parents are refused even so.
    #[arg(long)]
    pub force: bool,
    /// Seed: same data + config + seed give identical predictions.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Feature spec (default: the built-in spec); saved with the model.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Label horizon in trading days (overrides the spec).
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Share of the most recent training dates held out for early stopping (gbm), after a gap of the horizon.
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f64,
}

/// `stockcast predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A directory written by `stockcast fit`.
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,
    /// Input and policies.
    #[command(flatten)]
    pub data: DataArgs,
    /// The date to score (features use prices up to and including it).
    #[arg(long, value_name = "DATE")]
    pub date: chrono::NaiveDate,
    /// Write the CSV here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `stockcast spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Spec file to validate and print (default: the built-in spec).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
}

/// `stockcast demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Bundled price file.
    #[arg(long, value_name = "FILE", default_value = "datasets/us5_daily.csv")]
    pub prices: PathBuf,
    /// Output directory: an earlier demo's (its quality.json), empty or absent; any other directory is refused
    /// (see --force).
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    pub out: PathBuf,
    /// Write into --out even when it is not an earlier demo's: the demo's files there are replaced.
    #[arg(long)]
    pub force: bool,
    /// Postgres for step 6 (default: a throwaway local cluster, removed at the end).
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// `stockcast report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Two backtest run directories side by side: metrics with differences, both equity curves, and the config
    /// keys, data and spec hashes that differ. Prints Markdown; --out also writes compare.html/.md/.json.
    Compare(CompareArgs),
}

/// `stockcast report compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run A (a directory written by `stockcast backtest`).
    pub run_a: PathBuf,
    /// Run B.
    pub run_b: PathBuf,
    /// Directory for compare.html, compare.md, compare.json and plots/.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `stockcast datasets ...`.
#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Generate a seeded synthetic OHLCV panel (geometric random walks with a market factor).
    Synth(SynthArgs),
}

/// `stockcast datasets synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
    /// Number of trading days (weekdays).
    #[arg(long, default_value_t = 2520)]
    pub days: usize,
    /// Seed: the same seed gives the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First date (YYYY-MM-DD).
    #[arg(long, default_value = "2010-01-04")]
    pub start: chrono::NaiveDate,
    /// Output file: `.parquet` or `.csv`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A `--created-at` value: RFC 3339 only (it names files and is stored; anything else is refused).
fn rfc3339(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-30T22:30:00Z ({e})"))
}
