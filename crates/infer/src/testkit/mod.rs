//! Tooling for tests, the demo and benchmarks (feature `testkit`, off by default, so the server's normal
//! dependency graph has none of it): a throwaway PostgreSQL cluster, Redis and S3-compatible server on loopback, a minimal HTTP/1.1 client and
//! a bounded load generator.

pub mod cluster;
pub mod http_client;
pub mod redis;
pub mod s3;

pub use cluster::LocalCluster;
pub use http_client::{HttpClient, HttpResponse, LoadReport, LoadRequest, RateReport, load, load_at_rate};
pub use redis::LocalRedis;
pub use s3::LocalS3;

/// A free TCP port on 127.0.0.1 (bound and released; the caller's server takes it next).
pub(crate) fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port())
}
