//! One module per subcommand: each parses its arguments into the library's types, calls one library function
//! and prints the result.

mod backtest;
mod datasets;
mod db;
mod demo;
mod features;
mod model;
mod models;
mod quality;
mod recommend;
mod report;
mod serve;
mod spec;
mod train;

use std::io::Write;

use stockcast_features::{Clock, Policy};

use crate::cli::{Cli, Command, DataArgs, PolicyArg};
use stockcast_pipeline::Ctx;
use stockcast_pipeline::prices::PriceInput;

use crate::progress::Terminal;

/// Runs a parsed command line; `clock` is the wall clock read by `main`.
pub fn run(cli: Cli, clock: Clock) -> anyhow::Result<()> {
    crate::logging::init(cli.log_format, cli.quiet);
    let terminal = Terminal::new(cli.log_format, cli.quiet);
    stockcast_models::progress::set_visible(terminal.visible());
    let ctx = Ctx::new(std::sync::Arc::new(terminal), clock);
    let ctx = &ctx;
    match cli.command {
        Command::Demo(a) => demo::run(ctx, &a),
        Command::Quality(a) => quality::run(ctx, &a),
        Command::Features(a) => features::run(ctx, &a),
        Command::Spec(a) => spec::run(&a),
        Command::Fit(a) => model::fit(ctx, &a),
        Command::Predict(a) => model::predict(ctx, &a),
        Command::Backtest(a) => backtest::run(ctx, &a),
        Command::Train(a) => train::run(ctx, &a),
        Command::Models(c) => models::run(ctx, c),
        Command::Db(c) => db::run(ctx, c),
        Command::Datasets(c) => datasets::run(ctx, c),
        Command::Report(c) => report::run(c),
        Command::Recommend(a) => recommend::run(ctx, &a),
        Command::Serve(a) => serve::run(ctx, &a),
    }
}

/// Writes a line to stdout (the command's result); a closed pipe is not an error.
pub(crate) fn out(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The library's policy for a command-line one.
pub(crate) fn policy(p: PolicyArg) -> Policy {
    match p {
        PolicyArg::Error => Policy::Error,
        PolicyArg::Drop => Policy::Drop,
        PolicyArg::Warn => Policy::Warn,
    }
}

impl DataArgs {
    /// The library's description of this price source.
    pub(crate) fn input(&self) -> PriceInput {
        PriceInput {
            prices: self.prices.clone(),
            symbol: self.symbol.clone(),
            symbols: Vec::new(),
            securities: self.securities.clone(),
            on_bad_rows: self.on_bad_rows.map(policy),
            quarantine: self.quarantine.clone(),
            quality_config: self.quality.quality_config.clone(),
            quality: None,
            splits: self.quality.splits.clone(),
            adjust_detected_splits: self.quality.adjust_detected_splits,
            date_format: self.date_format.clone(),
        }
    }
}
