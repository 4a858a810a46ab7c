//! Postgres storage, daily recommendations and the HTTP inference server for stockcast, split by job:
//!
//! - [`store`]: all SQL — the schema (embedded sqlx migrations), connections, the prices import and read, model
//!   versions and recommendation runs;
//! - [`recommend`]: scoring a day with a published version, expected returns, ranks and actions (no database);
//! - [`server`]: the axum HTTP API (settings, state, errors, middleware, handlers, the generated OpenAPI);
//! - [`local`]: what the demo runs locally (a throwaway PostgreSQL cluster, one HTTP request to a local server);
//! - `testkit` (feature `testkit`, tests and benchmarks only): Redis and S3 test servers, an HTTP client and a load
//!   generator.

mod copy;
pub mod error;
pub mod local;
pub mod recommend;
pub mod server;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
