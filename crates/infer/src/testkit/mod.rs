//! Tooling for tests and benchmarks (feature `testkit`, off by default: neither the server's nor the `stockcast`
//! binary's normal dependency graph has it): a throwaway Redis and S3-compatible server on loopback, a minimal
//! HTTP/1.1 client and a bounded load generator; the throwaway PostgreSQL cluster is the product's
//! [`crate::local::LocalCluster`], re-exported here.

pub mod http_client;
pub mod redis;
pub mod s3;

pub use crate::local::LocalCluster;
pub use http_client::{HttpClient, HttpResponse, LoadReport, LoadRequest, RateReport, load, load_at_rate};
pub use redis::LocalRedis;
pub use s3::LocalS3;

pub(crate) use crate::local::free_port;
