//! `stockcast-bench`: the benchmarks on synthetic data (timings, peak memory, accuracy against naive baselines),
//! a binary of its own so that the product binary `stockcast` carries none of them nor their test launchers. The
//! peers they are compared with are in `bench/` (Python scripts, `bench/compare.sh`); docs/benchmarks.md
//! has the commands and the numbers.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use stockcast::cli::LogFormat;
use stockcast_pipeline::Ctx;

mod bench;
mod floor;

/// Polars and the models allocate as the product does: with the same allocator (see the `stockcast` binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// stockcast-bench: benchmarks of stockcast on synthetic data.
#[derive(Debug, Parser)]
#[command(name = "stockcast-bench", version, about, long_about = None)]
struct BenchCli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "STOCKCAST_LOG_FORMAT")]
    log_format: LogFormat,
    /// Only log warnings and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// The benchmark.
    #[command(subcommand)]
    command: BenchCommand,
}

/// Writes a result line to stdout; a closed pipe is not an error.
fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn main() -> ExitCode {
    let cli = BenchCli::parse();
    stockcast::logging::init(cli.log_format, cli.quiet);
    // Benchmarks time things; the engine's clock is read here only (for the serve benchmark's server).
    let terminal = stockcast::progress::Terminal::new(cli.log_format, cli.quiet);
    stockcast_models::progress::set_visible(terminal.visible());
    let ctx = Ctx::new(std::sync::Arc::new(terminal), stockcast::Clock::system());
    stockcast::report(bench::run(&ctx, cli.command))
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Features for a synthetic panel: load (Parquet and CSV) + quality + features; rows/s and peak memory.
    Features(BenchFeaturesArgs),
    /// Forecast accuracy and speed: Prophet-style and ETS vs the naive last value, rolling origins on one series.
    Forecast(BenchForecastArgs),
    /// XGBoost training time on a synthetic planted-signal matrix (rows x cols, rounds).
    Gbm(BenchGbmArgs),
    /// LSTM training time per epoch on synthetic sequences (flex CPU backend).
    Lstm(BenchLstmArgs),
    /// Walk-forward backtest of every model kind on a synthetic panel; time per stage and per model.
    Backtest(BenchBacktestArgs),
    /// The HTTP server and Postgres on loopback: writing a day of recommendations, then req/s and p50/p99 of
    /// `GET /v1/recommendations` (cached read) and `POST /v1/predict` under a closed-loop load.
    Serve(BenchServeArgs),
    /// A bare hyper HTTP/1 server answering every request with one fixed body: the floor under `stockcast
    /// serve`'s throughput on this machine (`bench/serve_wrk.sh` loads both). Serves until killed.
    HttpFloor(BenchHttpFloorArgs),
}

/// `stockcast-bench http-floor`.
#[derive(Debug, Args)]
pub struct BenchHttpFloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    pub addr: String,
    /// Bytes of the response body (the cached `GET /v1/recommendations?limit=3` of `bench/serve_wrk.sh`: 501).
    #[arg(long, default_value_t = 501)]
    pub body_bytes: usize,
    /// Worker threads of the runtime (`stockcast serve`: one per core).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// `stockcast-bench serve`.
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Symbols of the synthetic panel (one recommendation each).
    #[arg(long, default_value_t = 5000)]
    pub symbols: usize,
    /// Trading days of the synthetic panel.
    #[arg(long, default_value_t = 300)]
    pub days: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of load per endpoint.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub load_threads: usize,
    /// Times the 5,000-row recommendation run is written (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub writes: usize,
    /// Fault run: during the cached-read load, stop Postgres for this many seconds (from 20 % of `--seconds`),
    /// restart it, then publish and reload a new champion; 0: no faults.
    #[arg(long, default_value_t = 0.0)]
    pub fault_outage_s: f64,
    /// Fault run: requests per second of the second, fixed-rate pass.
    #[arg(long, default_value_t = 1000.0)]
    pub fault_rate: f64,
    /// Fault run: a third pass with `wrk` (Debian package) at `--fault-rate` (bench/wrk_fixed_rate.lua) through
    /// the same outage and a reload.
    #[arg(long)]
    pub wrk: bool,
    /// Work directory (synthetic prices, registry, results.json).
    #[arg(long, value_name = "DIR", default_value = "runs/bench-serve")]
    pub out: PathBuf,
}

/// `stockcast-bench backtest`.
#[derive(Debug, Args)]
pub struct BenchBacktestArgs {
    /// Symbols.
    #[arg(long, default_value_t = 500)]
    pub symbols: usize,
    /// Trading days (2520 = 10 years).
    #[arg(long, default_value_t = 2520)]
    pub days: usize,
    /// Fits in parallel.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// The config's `memory_gb`: concurrent fits kept under this resident total (GB).
    #[arg(long, value_name = "GB")]
    pub memory_gb: Option<f64>,
    /// Which of the benchmark's models to run (comma-separated: gbm, lstm, linear, forecast, momentum, ensemble).
    #[arg(long, value_delimiter = ',', default_value = "gbm,lstm,linear,forecast,momentum,ensemble")]
    pub models: Vec<String>,
    /// Train each fold on a rolling window of this many trading days (default: an expanding window from the first
    /// date, whose fits grow with the history: the sum of training rows over yearly folds grows with its square).
    #[arg(long, value_name = "DAYS")]
    pub train_days: Option<usize>,
    /// Work directory (synthetic prices, config, run).
    #[arg(long, value_name = "DIR", default_value = "runs/bench-backtest")]
    pub out: PathBuf,
}

/// `stockcast-bench forecast`.
#[derive(Debug, Args)]
pub struct BenchForecastArgs {
    /// A single-symbol (or long) price file.
    #[arg(long, value_name = "FILE", default_value = "datasets/msft_daily.csv")]
    pub prices: PathBuf,
    /// Horizon in trading days.
    #[arg(long, default_value_t = 5)]
    pub horizon: usize,
    /// Number of forecast origins (every `horizon` days, ending at the last date that has a target).
    #[arg(long, default_value_t = 100)]
    pub origins: usize,
}

/// `stockcast-bench gbm`.
#[derive(Debug, Args)]
pub struct BenchGbmArgs {
    /// Rows.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Feature columns.
    #[arg(long, default_value_t = 30)]
    pub cols: usize,
    /// Boosting rounds (no early stopping).
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub nthread: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// `stockcast-bench lstm`.
#[derive(Debug, Args)]
pub struct BenchLstmArgs {
    /// Training sequences (one per row of a synthetic 100-symbol panel).
    #[arg(long, default_value_t = 50_000)]
    pub sequences: usize,
    /// Time steps per sequence.
    #[arg(long, default_value_t = 30)]
    pub lookback: usize,
    /// Features per step.
    #[arg(long, default_value_t = 8)]
    pub cols: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Epochs timed.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the timings as JSON here (`epoch_s`, `predict_s`, …), for `bench/compare.sh`.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// `stockcast-bench features`.
#[derive(Debug, Args)]
pub struct BenchFeaturesArgs {
    /// Number of symbols.
    #[arg(long, default_value_t = 2000)]
    pub symbols: usize,
    /// Number of trading days.
    #[arg(long, default_value_t = 2500)]
    pub days: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Repetitions (the best and the median are reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also time the CSV path (slower: every value is parsed with line/column tracking).
    #[arg(long)]
    pub csv: bool,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Only write the synthetic prices to this Parquet file and stop (the input of `bench/compare.py features`).
    #[arg(long, value_name = "FILE")]
    pub write_prices: Option<PathBuf>,
}
