//! Postgres storage, daily recommendations and the HTTP inference server for stockcast.
//!
//! [`db`]: the schema (embedded sqlx migrations), connections, and the validated bulk import of prices.

pub mod cluster;
pub mod db;
pub mod error;
pub mod http_client;
pub mod recommend;
pub mod server;

pub use error::{Error, Result};
