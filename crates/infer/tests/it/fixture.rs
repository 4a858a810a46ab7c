//! Shared test data: us5 prices, a registry with linear models fitted on them, a running server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use stockcast_features::{FeatureMatrix, FeatureSpec, LoadOptions, MatrixOptions, PriceFrame, load_prices};
use stockcast_infer::server::{self, ServeConfig};
use stockcast_models::registry::{CHAMPION, DataInfo, Publish, Registry};
use stockcast_models::{Dataset, History, ModelConfig};

pub(crate) fn us5() -> stockcast_features::Loaded {
    let p = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
        .join("../../datasets/us5_daily.csv");
    load_prices(&p, &LoadOptions::default()).unwrap()
}

pub(crate) fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Fits `config` (TOML) on prices up to `until` and publishes it as the next version of `name`.
pub(crate) fn publish(reg: &Registry, name: &str, config: &str, prices: &PriceFrame, until: NaiveDate) -> u64 {
    let config = ModelConfig::from_toml(config).unwrap();
    let spec = FeatureSpec::default();
    let known = prices.until(until).unwrap();
    let frame =
        stockcast_features::build_features(&known, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    let matrix =
        FeatureMatrix::from_frame(&frame, MatrixOptions { require_label: true, drop_incomplete: true }).unwrap();
    let data = Dataset::new(matrix, Arc::new(History::from_prices(&known).unwrap()));
    let model = stockcast_models::fit(&config, &data, None, 7).unwrap();
    let m = reg
        .publish(
            name,
            &Publish {
                model: &model,
                spec_toml: &spec.to_toml(),
                created_at: "2026-11-23T00:00:00Z",
                data: DataInfo::default(),
                metrics: serde_json::json!({"rank_ic": 0.01}),
                stockcast_version: "test",
                git_commit: None,
            },
        )
        .unwrap();
    m.version
}

pub(crate) fn promote(reg: &Registry, name: &str, version: u64) {
    reg.set_alias(name, CHAMPION, version, "2026-11-23T00:00:00Z", "test").unwrap();
}

pub(crate) const LINEAR: &str = "kind = \"linear\"\nalpha = 0.001\nl1_ratio = 0.0\n";

/// A running server (with a fixed clock); stopped when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    inner: server::Background,
}

impl Server {
    pub(crate) async fn start(cfg: ServeConfig) -> Self {
        let clock = server::Clock::fixed("2026-11-23T12:00:00Z".parse().unwrap());
        let inner = server::Background::start(cfg, clock).await.unwrap();
        Self { addr: inner.addr, inner }
    }

    /// Graceful stop; returns when the server has finished.
    pub(crate) async fn stop(self) {
        self.inner.stop().await.unwrap();
    }
}
