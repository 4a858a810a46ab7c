//! Prometheus metrics, hand-rolled: a few counters, a latency histogram per route, gauges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Recommendation runs stored by this server.
    pub recommendation_runs: AtomicU64,
    /// Reloads by result (ok, refused).
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    /// Responses served from the recommendations cache.
    pub cache_hits: AtomicU64,
    /// Days scored from the stored history (the expensive path of `POST /v1/predict`).
    pub day_computations: AtomicU64,
    /// Expensive computations stopped at a checkpoint because their request went away (timeout, client gone).
    pub cancelled_work: AtomicU64,
}

/// The method as a metrics label: the standard methods as they are, anything else `other` (a client can send
/// any token as a method; each would otherwise be a new series).
fn method_label(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE" => method,
        _ => "other",
    }
}

/// The status as a metrics label: the real code, or 0 outside 100–599.
fn status_label(status: u16) -> u16 {
    if (100..600).contains(&status) { status } else { 0 }
}

impl Metrics {
    /// Counts a request and its latency. `route` must be a route pattern (a bounded set) or `unmatched`; the
    /// method and status are normalised to bounded label sets.
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), method_label(method).to_owned(), status_label(status))).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(route.to_owned()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// Counts a reload.
    pub fn reload(&self, result: &'static str) {
        if let Ok(mut m) = self.reloads.lock() {
            *m.entry(result).or_default() += 1;
        }
    }

    /// The exposition text; `models` are the loaded (name, version) pairs, `db_up` the last known state,
    /// `heavy_busy` the expensive computations running now.
    pub fn render(&self, models: &[(String, u64)], db_up: bool, heavy_busy: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP stockcast_http_requests_total HTTP requests by route, method and status.");
        let _ = writeln!(out, "# TYPE stockcast_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "stockcast_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# HELP stockcast_http_request_duration_seconds Request latency by route.");
        let _ = writeln!(out, "# TYPE stockcast_http_request_duration_seconds histogram");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "stockcast_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "stockcast_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "stockcast_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
                let _ = writeln!(out, "stockcast_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
            }
        }
        let _ = writeln!(out, "# HELP stockcast_model_version_loaded Model versions being served (value 1).");
        let _ = writeln!(out, "# TYPE stockcast_model_version_loaded gauge");
        for (name, version) in models {
            let _ = writeln!(out, "stockcast_model_version_loaded{{name=\"{name}\",version=\"{version}\"}} 1");
        }
        let _ = writeln!(out, "# HELP stockcast_models_loaded Number of models being served.");
        let _ = writeln!(out, "# TYPE stockcast_models_loaded gauge");
        let _ = writeln!(out, "stockcast_models_loaded {}", models.len());
        let _ = writeln!(out, "# HELP stockcast_recommendation_runs_total Recommendation runs stored by this server.");
        let _ = writeln!(out, "# TYPE stockcast_recommendation_runs_total counter");
        let _ =
            writeln!(out, "stockcast_recommendation_runs_total {}", self.recommendation_runs.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP stockcast_model_reloads_total Model reloads by result.");
        let _ = writeln!(out, "# TYPE stockcast_model_reloads_total counter");
        if let Ok(m) = self.reloads.lock() {
            for result in ["ok", "refused"] {
                let _ = writeln!(
                    out,
                    "stockcast_model_reloads_total{{result=\"{result}\"}} {}",
                    m.get(result).copied().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(out, "# HELP stockcast_recommendations_cache_hits_total Reads answered from the cache.");
        let _ = writeln!(out, "# TYPE stockcast_recommendations_cache_hits_total counter");
        let _ = writeln!(out, "stockcast_recommendations_cache_hits_total {}", self.cache_hits.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP stockcast_day_computations_total Days scored from the stored price history.");
        let _ = writeln!(out, "# TYPE stockcast_day_computations_total counter");
        let _ = writeln!(out, "stockcast_day_computations_total {}", self.day_computations.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP stockcast_cancelled_computations_total Expensive computations stopped because their request went away."
        );
        let _ = writeln!(out, "# TYPE stockcast_cancelled_computations_total counter");
        let _ = writeln!(out, "stockcast_cancelled_computations_total {}", self.cancelled_work.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP stockcast_heavy_computations_running Expensive computations holding a slot now.");
        let _ = writeln!(out, "# TYPE stockcast_heavy_computations_running gauge");
        let _ = writeln!(out, "stockcast_heavy_computations_running {heavy_busy}");
        let _ = writeln!(out, "# HELP stockcast_database_up 1 when the last database check succeeded.");
        let _ = writeln!(out, "# TYPE stockcast_database_up gauge");
        let _ = writeln!(out, "stockcast_database_up {}", u8::from(db_up));
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
        let before = m.render(&[], true, 0);
        for i in 0..1000 {
            m.observe("unmatched", &format!("X{i}"), 405, d);
        }
        let after = m.render(&[], true, 0);
        // Only the counts change (a few more digits): no new series, and the size stays within those digits.
        assert_eq!(before.lines().count(), after.lines().count());
        assert!(after.len() < before.len() + 100, "{} -> {}", before.len(), after.len());
        assert!(after.contains("method=\"other\"") && !after.contains("X999"));
        assert!(after.contains("method=\"POST\""));
    }
}
