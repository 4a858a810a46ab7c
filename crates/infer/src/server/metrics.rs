//! Prometheus metrics through `prometheus-client` (the exposition format is the library's, OpenMetrics text):
//! request counts and latency histograms per route, counters of the server's work, gauges set when scraped. Every
//! label set is bounded: routes are route patterns (or `unmatched`), methods the standard ones (or `other`),
//! statuses 100–599 (or 0), reload results `ok`/`refused`, models the ones served.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    name: String,
    version: u64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    /// Recommendation runs stored by this server.
    pub recommendation_runs: Counter,
    /// Responses served from the recommendations cache.
    pub cache_hits: Counter,
    /// Days scored from the stored history (the expensive path of `POST /v1/predict`).
    pub day_computations: Counter,
    /// Expensive computations stopped at a checkpoint because their request went away (timeout, client gone).
    pub cancelled_work: Counter,
    models_loaded: Family<ModelLabels, Gauge>,
    models: Gauge,
    heavy_running: Gauge,
    database_up: Gauge,
    cache_bytes: Gauge<u64, AtomicU64>,
    cache_entries: Gauge<u64, AtomicU64>,
    breaker_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            reloads: Family::default(),
            recommendation_runs: Counter::default(),
            cache_hits: Counter::default(),
            day_computations: Counter::default(),
            cancelled_work: Counter::default(),
            models_loaded: Family::default(),
            models: Gauge::default(),
            heavy_running: Gauge::default(),
            database_up: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            breaker_open: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("stockcast_http_requests", "HTTP requests by route, method and status", m.requests.clone());
        r.register("stockcast_http_request_duration_seconds", "Request latency by route", m.latency.clone());
        r.register("stockcast_model_version_loaded", "Model versions being served (value 1)", m.models_loaded.clone());
        r.register("stockcast_models_loaded", "Number of models being served", m.models.clone());
        r.register(
            "stockcast_recommendation_runs",
            "Recommendation runs stored by this server",
            m.recommendation_runs.clone(),
        );
        r.register("stockcast_model_reloads", "Model reloads by result", m.reloads.clone());
        for result in ["ok", "refused"] {
            let _ = m.reloads.get_or_create(&ReloadLabels { result });
        }
        r.register("stockcast_recommendations_cache_hits", "Reads answered from the cache", m.cache_hits.clone());
        r.register(
            "stockcast_day_computations",
            "Days scored from the stored price history",
            m.day_computations.clone(),
        );
        r.register(
            "stockcast_cancelled_computations",
            "Expensive computations stopped because their request went away",
            m.cancelled_work.clone(),
        );
        r.register(
            "stockcast_heavy_computations_running",
            "Expensive computations holding a slot now",
            m.heavy_running.clone(),
        );
        r.register("stockcast_database_up", "1 when the last database check succeeded", m.database_up.clone());
        r.register(
            "stockcast_cache_bytes",
            "Bytes of cached answers (bounded by cache_max_bytes)",
            m.cache_bytes.clone(),
        );
        r.register("stockcast_cache_entries", "Cached answers", m.cache_entries.clone());
        r.register(
            "stockcast_rate_limit_breaker_open",
            "1 while the breaker in front of the rate limit's Redis is open (limits are per replica)",
            m.breaker_open.clone(),
        );
        Self { registry, ..m }
    }
}

/// The method as a metrics label: the standard methods as they are, anything else `other` (a client can send
/// any token as a method; each would otherwise be a new series).
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.iter().find(|m| **m == method).copied().unwrap_or("other")
}

/// The status as a metrics label: the real code, or 0 outside 100–599.
fn status_label(status: u16) -> u16 {
    if (100..600).contains(&status) { status } else { 0 }
}

/// What [`Metrics::render`] reports as of the scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot<'a> {
    /// The loaded (name, version) pairs.
    pub models: &'a [(String, u64)],
    /// The last known state of the database.
    pub db_up: bool,
    /// The expensive computations running now.
    pub heavy_busy: usize,
    /// Cached answers and their bytes.
    pub cache: (usize, usize),
    /// Whether the rate limit's breaker is open.
    pub breaker_open: bool,
}

impl Metrics {
    /// Counts a request and its latency. `route` must be a route pattern (a bounded set) or `unmatched`; the
    /// method and status are normalised to bounded label sets.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        // The server's own routes borrow their static pattern: no allocation per request for the label lookups.
        let route = super::ROUTES
            .iter()
            .find(|r| **r == route)
            .map_or_else(|| Cow::Owned(route.to_owned()), |r| Cow::Borrowed(*r));
        let labels = RequestLabels { route, method: method_label(method), status: status_label(status) };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&RouteLabels { route: labels.route }).observe(elapsed.as_secs_f64());
    }

    /// Counts a reload (`ok` or `refused`).
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    /// The exposition text (OpenMetrics, [`CONTENT_TYPE`]) with the gauges set from `now`.
    pub fn render(&self, now: &Snapshot<'_>) -> String {
        self.models_loaded.clear();
        for (name, version) in now.models {
            self.models_loaded.get_or_create(&ModelLabels { name: name.clone(), version: *version }).set(1);
        }
        self.models.set(i64::try_from(now.models.len()).unwrap_or(i64::MAX));
        self.heavy_running.set(i64::try_from(now.heavy_busy).unwrap_or(i64::MAX));
        self.database_up.set(i64::from(now.db_up));
        self.cache_entries.set(now.cache.0 as u64);
        self.cache_bytes.set(now.cache.1 as u64);
        self.breaker_open.set(i64::from(now.breaker_open));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_do_not_grow_the_exposition() {
        let m = Metrics::default();
        let d = Duration::from_millis(1);
        m.observe("/v1/predict", "POST", 200, d);
        m.observe("unmatched", "BREW", 405, d);
        let before = m.render(&Snapshot::default());
        for i in 0..1000 {
            m.observe("unmatched", &format!("X{i}"), 405, d);
        }
        let after = m.render(&Snapshot::default());
        // Only the counts change (a few more digits): no new series, and the size stays within those digits.
        assert_eq!(before.lines().count(), after.lines().count());
        assert!(after.len() < before.len() + 100, "{} -> {}", before.len(), after.len());
        assert!(after.contains("method=\"other\"") && !after.contains("X999"));
        assert!(after.contains("method=\"POST\""));
    }

    #[test]
    fn the_exposition_has_every_family_with_its_type_and_counts() {
        let m = Metrics::default();
        m.observe("/v1/predict", "POST", 200, Duration::from_millis(3));
        m.observe("/v1/predict", "POST", 200, Duration::from_millis(30));
        m.reload("refused");
        m.cache_hits.inc();
        let models = [("lin".to_owned(), 2)];
        let text =
            m.render(&Snapshot { models: &models, db_up: true, heavy_busy: 1, cache: (3, 4096), breaker_open: true });
        for line in [
            "# TYPE stockcast_http_requests counter",
            "stockcast_http_requests_total{route=\"/v1/predict\",method=\"POST\",status=\"200\"} 2",
            "# TYPE stockcast_http_request_duration_seconds histogram",
            "stockcast_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/predict\"} 1",
            "stockcast_http_request_duration_seconds_bucket{le=\"0.05\",route=\"/v1/predict\"} 2",
            "stockcast_http_request_duration_seconds_count{route=\"/v1/predict\"} 2",
            "stockcast_model_version_loaded{name=\"lin\",version=\"2\"} 1",
            "stockcast_models_loaded 1",
            "stockcast_model_reloads_total{result=\"ok\"} 0",
            "stockcast_model_reloads_total{result=\"refused\"} 1",
            "stockcast_recommendations_cache_hits_total 1",
            "stockcast_heavy_computations_running 1",
            "stockcast_database_up 1",
            "stockcast_cache_entries 3",
            "stockcast_cache_bytes 4096",
            "stockcast_rate_limit_breaker_open 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // A model no longer served leaves the exposition.
        let text = m.render(&Snapshot::default());
        assert!(!text.contains("name=\"lin\""), "{text}");
    }
}
