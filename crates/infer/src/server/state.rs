//! Shared state: the pool, the served model versions (hot-swapped on reload), caches and counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::NaiveDate;
use sqlx::PgPool;
use stockcast_models::registry::{ModelRef, Registry};

use super::api::{Refused, ReloadReport};
use super::config::ServeConfig;
use super::metrics::Metrics;
use crate::error::{Error, Result};
use crate::recommend::Scorer;
use crate::store::{self, PoolConfig};

pub use stockcast_features::Clock;

/// The model versions being served, by name.
#[derive(Debug, Default)]
pub struct ModelSet {
    /// Scorers by registry name.
    pub by_name: BTreeMap<String, Arc<Scorer>>,
}

impl ModelSet {
    pub(super) fn versions(&self) -> Vec<(String, u64)> {
        self.by_name.values().map(|s| (s.name.clone(), s.version)).collect()
    }
}

/// Scores of one (model version, date), computed once from the stored prices.
pub(super) type DayKey = (String, u64, NaiveDate);

/// Computed once: concurrent requests for the same day wait for the first computation instead of repeating it.
pub(super) type DayCell = Arc<tokio::sync::OnceCell<Arc<BTreeMap<String, f64>>>>;

/// Shared state.
pub struct AppState {
    pub(super) cfg: ServeConfig,
    pub(super) registry: Registry,
    pub(super) models: RwLock<Arc<ModelSet>>,
    pub(super) pool: PgPool,
    /// Metrics.
    pub metrics: Metrics,
    pub(super) cache: Mutex<HashMap<String, (Instant, Bytes)>>,
    pub(super) days: Mutex<HashMap<DayKey, DayCell>>,
    pub(super) db_up: AtomicBool,
    pub(super) clock: Clock,
    pub(super) request_seq: AtomicU64,
    pub(super) bucket: Mutex<(f64, Instant)>,
    pub(super) reload_lock: tokio::sync::Mutex<()>,
    pub(super) refused: Mutex<Vec<(String, u64)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl AppState {
    /// The models being served now (a snapshot: a reload swaps the set without touching requests in flight).
    pub fn models(&self) -> Arc<ModelSet> {
        match self.models.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServeConfig {
        &self.cfg
    }

    pub(super) fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
        if let Ok(mut d) = self.days.lock() {
            d.clear();
        }
    }

    /// The references to serve: the configured ones, or every model's champion.
    pub(super) fn references(&self) -> Result<Vec<ModelRef>> {
        if !self.cfg.models.is_empty() {
            return Ok(self.cfg.models.clone());
        }
        crate::recommend::champion_references(&self.registry)
    }

    /// Loads new versions of the served references and swaps them in; a version that fails to load (missing
    /// or damaged files, wrong spec) is refused and the one already served stays.
    ///
    /// # Errors
    /// Registry errors listing the references.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport> {
        let _guard = self.reload_lock.lock().await;
        let current = self.models();
        let mut next = BTreeMap::new();
        let mut report = ReloadReport::default();
        for reference in self.references()? {
            let resolved = self.registry.resolve(&reference);
            let (name, version) = match resolved {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(model = %reference, error = %e, "model reference not found");
                    report
                        .refused
                        .push(Refused { model: reference.to_string(), reason: "not found in the registry".into() });
                    continue;
                }
            };
            if let Some(s) = current.by_name.get(&name).filter(|s| s.version == version) {
                next.insert(name, s.clone());
                continue;
            }
            let registry = self.registry.clone();
            let exact = ModelRef::version(name.clone(), version);
            let loaded = tokio::task::spawn_blocking(move || Scorer::load(&registry, &exact))
                .await
                .map_err(|e| Error::Data(format!("loading {name}@{version}: {e}")))?;
            match loaded {
                Ok(s) => {
                    report.loaded.push(s.label());
                    next.insert(name, Arc::new(s));
                }
                Err(e) => {
                    tracing::error!(model = %format!("{name}@{version}"), error = %e, "new model version refused");
                    if let Ok(mut r) = self.refused.lock() {
                        r.push((name.clone(), version));
                    }
                    report.refused.push(Refused {
                        model: format!("{name}@{version}"),
                        reason: "damaged or incompatible artifact (hashes, files or feature spec); see the server log"
                            .into(),
                    });
                    if let Some(old) = current.by_name.get(&name) {
                        next.insert(name, old.clone());
                    }
                }
            }
        }
        report.serving = next.values().map(|s| s.label()).collect();
        let changed = next.len() != current.by_name.len()
            || next.iter().any(|(n, s)| current.by_name.get(n).is_none_or(|o| o.version != s.version));
        if changed {
            if let Ok(mut w) = self.models.write() {
                *w = Arc::new(ModelSet { by_name: next });
            }
            self.invalidate();
        }
        self.metrics.reload(if report.refused.is_empty() { "ok" } else { "refused" });
        Ok(report)
    }

    /// True when the registry names versions other than those served (and not refused before).
    pub(super) fn registry_changed(&self) -> bool {
        let Ok(refs) = self.references() else { return false };
        let current = self.models();
        let refused = self.refused.lock().map(|r| r.clone()).unwrap_or_default();
        refs.iter().any(|r| match self.registry.resolve(r) {
            Ok((name, version)) => {
                current.by_name.get(&name).is_none_or(|s| s.version != version) && !refused.contains(&(name, version))
            }
            Err(_) => false,
        })
    }
}

/// Connects with retries and exponential back-off.
///
/// # Errors
/// [`Error::Unavailable`] after the last attempt, naming the attempts and the last error.
pub async fn connect_with_retry(cfg: &ServeConfig) -> Result<PgPool> {
    let url = cfg
        .database_url
        .as_deref()
        .ok_or_else(|| Error::Data("no database URL: pass --database-url or set DATABASE_URL".into()))?;
    let pool_cfg = PoolConfig {
        max_connections: cfg.db_max_connections.max(1),
        acquire_timeout: Duration::from_millis(cfg.db_acquire_timeout_ms.max(1)),
    };
    let attempts = cfg.db_connect_attempts.max(1);
    let mut wait = Duration::from_millis(cfg.db_connect_backoff_ms);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match store::connect(url, pool_cfg).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                last = match e {
                    Error::Unavailable(m) => m,
                    other => other.to_string(),
                };
                if attempt < attempts {
                    tracing::warn!(attempt, of = attempts, retry_in_ms = wait.as_millis() as u64, error = %last, "database not reachable yet");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
    Err(Error::Unavailable(format!("gave up after {attempts} attempts: {last}")))
}

/// Builds the state: connects (with retries), migrates when asked, loads the served models.
///
/// # Errors
/// Database unavailable after the retries; a configured model reference that cannot be loaded.
pub async fn build_state(cfg: ServeConfig, clock: Clock) -> Result<Arc<AppState>> {
    let pool = connect_with_retry(&cfg).await?;
    if cfg.migrate {
        store::migrate(&pool).await?;
    }
    let state = Arc::new(AppState {
        registry: Registry::new(&cfg.models_dir),
        models: RwLock::new(Arc::new(ModelSet::default())),
        pool,
        metrics: Metrics::default(),
        cache: Mutex::new(HashMap::new()),
        days: Mutex::new(HashMap::new()),
        db_up: AtomicBool::new(true),
        clock,
        request_seq: AtomicU64::new(0),
        bucket: Mutex::new((cfg.rate_limit_burst, Instant::now())),
        reload_lock: tokio::sync::Mutex::new(()),
        refused: Mutex::new(Vec::new()),
        cfg,
    });
    let report = state.reload().await?;
    if !state.cfg.models.is_empty() && !report.refused.is_empty() {
        let why: Vec<String> = report.refused.iter().map(|r| format!("{}: {}", r.model, r.reason)).collect();
        return Err(Error::Data(format!("cannot serve the configured models: {}", why.join("; "))));
    }
    if report.serving.is_empty() {
        tracing::warn!(models_dir = %state.cfg.models_dir.display(), "no champion model to serve: /readyz answers 503 until one is promoted and reloaded");
    }
    Ok(state)
}
