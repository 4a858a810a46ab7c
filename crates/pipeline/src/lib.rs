//! stockcast's jobs as library functions, with typed inputs, outputs and errors: the command line, a scheduler's
//! shard runner or a test calls them without spawning the binary.
//!
//! - [`prices::load`]: a file, an object or the Postgres `prices` table through the quality checks;
//! - [`features`]: the spec a run asks for, prices → features → model input ([`features::dataset_for`]);
//! - [`model::fit`] / [`model::predict`]: one model by hand;
//! - [`backtest`]: walk-forward of every configured model → evaluation → a report directory;
//! - [`train`]: the nightly job (gate, champion comparison, publish, promote);
//! - [`sharded`]: what the two walk-forward jobs share: plan → shards → merge ([`sharded::ShardedJob`]), run
//!   whole or step by step on a local or object-store run directory ([`staging::Staging`]);
//! - [`db`]: migrations and a price import into Postgres;
//! - [`recommend`]: score a day with the promoted versions and store the recommendations;
//! - [`serve`]: the HTTP server until a shutdown signal;
//! - [`demo`]: every stage on the bundled data.
//!
//! The stages themselves live in the member crates (`stockcast-features`, `stockcast-models`,
//! `stockcast-backtest`, `stockcast-infer`). A job reports through the [`Ctx`] it is given (progress, notes,
//! results) and reads time from its [`Clock`]: only the binary's `main` reads the system clock.

pub mod backtest;
pub mod config;
pub mod ctx;
pub mod db;
pub mod demo;
pub mod error;
pub mod features;
pub mod model;
pub mod prices;
pub mod recommend;
pub mod serve;
pub mod sharded;
pub mod staging;
pub mod train;

pub use ctx::{Ctx, Reporter, Task};
pub use error::{Context, Error, Kind, Result};
pub use stockcast_features::Clock;
