//! Tooling for tests, the demo and benchmarks (feature `testkit`, off by default, so the server's normal
//! dependency graph has none of it): a throwaway PostgreSQL cluster on loopback, a minimal HTTP/1.1 client and
//! a bounded load generator.

pub mod cluster;
pub mod http_client;
pub mod redis;

pub use cluster::LocalCluster;
pub use http_client::{HttpClient, HttpResponse, LoadReport, LoadRequest, RateReport, load, load_at_rate};
pub use redis::LocalRedis;
