//! Postgres storage and (later) the HTTP inference server for stockcast.
//!
//! [`db`]: the schema (embedded sqlx migrations), connections, and the validated bulk import of prices.

pub mod cluster;
pub mod db;
pub mod error;
pub mod recommend;

pub use error::{Error, Result};
