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

/// A response body and its ETag ([`super::handlers::etag_of`]), hashed once.
#[derive(Debug, Clone)]
pub(super) struct Tagged {
    pub(super) body: Bytes,
    pub(super) etag: axum::http::HeaderValue,
    /// The body gzip-compressed: made by the first request that takes gzip and shared by every clone, so a cached
    /// answer is compressed once, not per request. (The cache's byte bound counts the bodies; each gzip copy adds
    /// its compressed size, a fraction of its body's.)
    gzip: Arc<std::sync::OnceLock<Option<Bytes>>>,
}

impl Tagged {
    pub(super) fn new(body: Bytes) -> Self {
        let etag = axum::http::HeaderValue::from_str(&super::handlers::etag_of(&body))
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("\"0\""));
        Self { body, etag, gzip: Arc::default() }
    }

    /// The body gzip-compressed (compression's default level, as the compression layer's).
    pub(super) fn gzipped(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                use std::io::Write as _;
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(&self.body).ok()?;
                z.finish().ok().map(Bytes::from)
            })
            .as_ref()
    }
}

/// Response bodies by normalised query, bounded in entries and bytes; the oldest entries go first.
#[derive(Debug, Default)]
pub(super) struct ResponseCache {
    map: HashMap<String, (Instant, Tagged)>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

impl ResponseCache {
    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.order.pop_front()
            && let Some((_, b)) = self.map.remove(&k)
        {
            self.bytes -= b.body.len();
        }
    }

    fn put(&mut self, key: String, answer: Tagged, max_entries: usize, max_bytes: usize) {
        if answer.body.len() > max_bytes {
            return;
        }
        if let Some((_, old)) = self.map.remove(&key) {
            self.bytes -= old.body.len();
            self.order.retain(|k| *k != key);
        }
        while !self.order.is_empty() && (self.map.len() >= max_entries || self.bytes + answer.body.len() > max_bytes) {
            self.evict_oldest();
        }
        self.bytes += answer.body.len();
        self.order.push_back(key.clone());
        self.map.insert(key, (Instant::now(), answer));
    }
}

/// Most cached response bodies (besides the byte bound).
const CACHE_ENTRIES: usize = 10_000;
/// Most (model version, date) score maps kept (besides the byte budget `day_cache_max_bytes`).
const DAYS_KEPT: usize = 64;

/// The computed days: (model version, date) → its scores, computed once. When full (by count or by the byte
/// budget) the entry of the **earliest date** goes first (the oldest computed among equal dates), so requests for
/// many old dates evict each other and never the recent days everyone reads (the latest day is computed ahead at
/// start and after each reload).
#[derive(Default)]
pub(super) struct DayCache {
    cells: HashMap<DayKey, (DayCell, u64)>,
    seq: u64,
}

impl DayCache {
    /// Approximate bytes of a computed day: its symbols and scores in a B-tree.
    fn bytes(cell: &DayCell) -> usize {
        cell.get().map_or(0, |m| m.keys().map(|k| k.len() + 64).sum())
    }

    fn used(&self) -> usize {
        self.cells.values().map(|(c, _)| Self::bytes(c)).sum()
    }

    /// The cell of `key`, made (and the cache trimmed to `max_bytes` and [`DAYS_KEPT`]) when absent.
    fn cell(&mut self, key: DayKey, max_bytes: usize) -> DayCell {
        if let Some((c, _)) = self.cells.get(&key) {
            return c.clone();
        }
        let mut used = self.used();
        while self.cells.len() >= DAYS_KEPT || (!self.cells.is_empty() && used > max_bytes) {
            let Some(victim) = self.cells.iter().min_by_key(|(k, (_, seq))| (k.2, *seq)).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some((cell, _)) = self.cells.remove(&victim) {
                used -= Self::bytes(&cell);
            }
        }
        self.seq += 1;
        let cell = DayCell::default();
        self.cells.insert(key, (cell.clone(), self.seq));
        cell
    }

    fn clear(&mut self) {
        self.cells.clear();
    }
}

/// Scores of one (model version, date), computed once from the stored prices.
pub(super) type DayKey = (String, u64, NaiveDate);

/// Computed once: concurrent requests for the same day wait for the first computation instead of repeating it.
pub(super) type DayCell = Arc<tokio::sync::OnceCell<Arc<BTreeMap<String, f64>>>>;

/// One of a client's computing slots ([`AppState::begin_compute`]).
pub(super) struct ComputeGuard<'a> {
    state: &'a AppState,
    client: Option<String>,
    /// The slot, held until the guard drops.
    #[allow(dead_code)]
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for ComputeGuard<'_> {
    fn drop(&mut self) {
        if let (Some(c), Ok(mut m)) = (&self.client, self.state.computing.lock())
            && let Some(n) = m.get_mut(c)
        {
            n.1 -= 1;
            if n.1 == 0 {
                m.remove(c);
            }
        }
    }
}

/// A claimed refresh of a cached answer; released when dropped (done, failed, or its request went away).
pub(super) struct Refreshing<'a> {
    state: &'a AppState,
    key: String,
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        if let Ok(mut r) = self.state.refreshing.lock() {
            r.remove(&self.key);
        }
    }
}

/// Shared state.
pub struct AppState {
    pub(super) cfg: ServeConfig,
    pub(super) registry: Registry,
    pub(super) models: RwLock<Arc<ModelSet>>,
    pub(super) pool: PgPool,
    /// Metrics.
    pub metrics: Metrics,
    pub(super) cache: Mutex<ResponseCache>,
    /// Cache keys being refreshed from the database now (one request each).
    pub(super) refreshing: Mutex<std::collections::HashSet<String>>,
    pub(super) days: Mutex<DayCache>,
    /// Computations started per client and second (`compute_per_client_per_s`).
    pub(super) compute_rate: super::ratelimit::RateLimiter,
    /// Per client: its computing slots (`compute_per_client`) and how many requests hold or wait for one.
    pub(super) computing: Mutex<HashMap<String, (Arc<tokio::sync::Semaphore>, usize)>>,
    /// Dates known not to be trading dates of the stored prices (bounded; cleared with the caches).
    pub(super) not_trading: Mutex<std::collections::BTreeSet<NaiveDate>>,
    /// Slots for expensive work (scoring a day, bars in a body, a recommendations run); full: 503 `busy`.
    pub(super) heavy: super::work::HeavySlots,
    pub(super) db_up: AtomicBool,
    pub(super) clock: Clock,
    pub(super) request_seq: AtomicU64,
    pub(super) limiter: super::ratelimit::RateLimiter,
    /// `trusted_proxies`, parsed.
    pub(super) trusted_proxies: Vec<super::ratelimit::Cidr>,
    /// Open connections per client address (`max_connections_per_address`).
    pub(super) connections: Mutex<HashMap<String, usize>>,
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
        if let Ok(mut n) = self.not_trading.lock() {
            n.clear();
        }
    }

    /// Entries and bytes of the response cache.
    pub(super) fn cache_size(&self) -> (usize, usize) {
        self.cache.lock().map(|c| (c.map.len(), c.bytes)).unwrap_or_default()
    }

    /// A cached response body for `key` no older than `max_age` (`None`: any age, served marked stale while
    /// the database is unavailable).
    fn cached_within(&self, key: &str, max_age: Option<Duration>) -> Option<Tagged> {
        let c = self.cache.lock().ok()?;
        c.map.get(key).filter(|(t, _)| max_age.is_none_or(|m| t.elapsed() < m)).map(|(_, b)| b.clone())
    }

    /// A cached response body for `key` of any age (served, marked stale, while the database is unavailable).
    pub(super) fn cached_stale(&self, key: &str) -> Option<Tagged> {
        self.cached_within(key, None)
    }

    /// A cached response body for `key`, if fresh.
    pub(super) fn cached(&self, key: &str) -> Option<Tagged> {
        let ttl = Duration::from_millis(self.cfg.cache_ttl_ms);
        if ttl.is_zero() {
            return None;
        }
        self.cached_within(key, Some(ttl))
    }

    /// Claims the refresh of `key`'s cached answer from the database: None while another request is refreshing
    /// it (that one request waits for the database; the others answer with the previous body meanwhile).
    pub(super) fn begin_refresh(&self, key: &str) -> Option<Refreshing<'_>> {
        let mut r = self.refreshing.lock().ok()?;
        if r.len() >= CACHE_ENTRIES || !r.insert(key.to_owned()) {
            return None;
        }
        Some(Refreshing { state: self, key: key.to_owned() })
    }

    /// Caches a response body (bounded by `cache_max_bytes` and 10,000 entries; oldest out first). Kept even with
    /// `cache_ttl_ms = 0`, for the stale answers of a database outage.
    pub(super) fn cache_put(&self, key: String, answer: Tagged) {
        if let Ok(mut c) = self.cache.lock() {
            c.put(key, answer, CACHE_ENTRIES, self.cfg.cache_max_bytes);
        }
    }

    /// The scores of `key` when they are computed already (no cell is made otherwise).
    pub(super) fn day_done(&self, key: &DayKey) -> Option<Arc<BTreeMap<String, f64>>> {
        self.days.lock().ok()?.cells.get(key).and_then(|(c, _)| c.get().cloned())
    }

    /// The once-cell of a (model version, date) in the [`DayCache`].
    pub(super) fn day_cell(&self, key: DayKey) -> Option<DayCell> {
        Some(self.days.lock().ok()?.cell(key, self.cfg.day_cache_max_bytes))
    }

    /// Claims one of `client`'s `compute_per_client` slots for expensive work, waiting for one while the client's
    /// own queue (twice its slots) has room; `None` when it is full (the caller answers 429): one client cannot
    /// hold every heavy slot, and its concurrent connections wait their turn. Released when the guard drops.
    pub(super) async fn begin_compute(&self, client: &str) -> Option<ComputeGuard<'_>> {
        let limit = self.cfg.compute_per_client;
        if limit == 0 {
            return Some(ComputeGuard { state: self, client: None, permit: None });
        }
        let sem = {
            let mut m = self.computing.lock().ok()?;
            let entry = m.entry(client.to_owned()).or_insert_with(|| (Arc::new(tokio::sync::Semaphore::new(limit)), 0));
            // Running plus waiting: a client's own queue is twice its slots; beyond it, refused at once.
            if entry.1 >= 3 * limit {
                return None;
            }
            entry.1 += 1;
            entry.0.clone()
        };
        // Counted from here: the guard gives the place back however this ends (a cancelled wait included).
        let mut guard = ComputeGuard { state: self, client: Some(client.to_owned()), permit: None };
        guard.permit = Some(sem.acquire_owned().await.ok()?);
        Some(guard)
    }

    /// Whether `date` is a trading date of the stored prices: one indexed query, remembered when it is not.
    pub(super) async fn is_trading_date(&self, date: NaiveDate) -> Result<bool> {
        if self.not_trading.lock().is_ok_and(|n| n.contains(&date)) {
            return Ok(false);
        }
        let known = store::has_prices_on(&self.pool, date).await?;
        if !known && let Ok(mut n) = self.not_trading.lock() {
            if n.len() >= 10_000 {
                n.clear();
            }
            n.insert(date);
        }
        Ok(known)
    }

    /// Pings the database (2 s at most) and records the result for `/healthz` and the metrics.
    pub(super) async fn probe_database(&self) -> bool {
        let ok = tokio::time::timeout(std::time::Duration::from_secs(2), crate::store::ping(&self.pool))
            .await
            .is_ok_and(|r| r.is_ok());
        let was = self.db_up.swap(ok, std::sync::atomic::Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!("database reachable again");
            } else {
                tracing::warn!("database unreachable");
            }
        }
        ok
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
                    // Keep serving what is served under that name: a registry mid-change (or a mistaken alias)
                    // must not take a model offline.
                    tracing::error!(model = %reference, error = %e, "model reference not found; keeping the served version");
                    let kept = current.by_name.get(&reference.name);
                    report.refused.push(Refused {
                        model: reference.to_string(),
                        reason: match kept {
                            Some(s) => format!("not found in the registry; still serving {}", s.label()),
                            None => "not found in the registry".into(),
                        },
                    });
                    if let Some(s) = kept {
                        next.insert(reference.name.clone(), s.clone());
                    }
                    continue;
                }
            };
            if let Some(s) = current.by_name.get(&name).filter(|s| s.version == version) {
                next.insert(name, s.clone());
                continue;
            }
            let registry = self.registry.clone();
            let exact = ModelRef::version(name.clone(), version);
            // A panic while loading is a refused version like any other (its text goes to the log only).
            let loaded =
                tokio::task::spawn_blocking(move || Scorer::load(&registry, &exact)).await.unwrap_or_else(|e| {
                    tracing::error!(model = %format!("{name}@{version}"), error = %e, "loading panicked");
                    Err(Error::Data("loading panicked".into()))
                });
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
            // The day everyone asks for first, computed ahead (in the background) rather than by a request.
            tokio::spawn(super::handlers::warm_latest(Arc::clone(self)));
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
    let cfg_heavy = cfg.heavy_slots.max(1);
    let limiter = super::ratelimit::RateLimiter::new(
        cfg.rate_limit_per_s,
        cfg.rate_limit_burst,
        cfg.rate_limit_redis_url.as_deref(),
        &cfg.rate_limit_key,
    )
    .map_err(|m| Error::Data(format!("serve settings: {m}")))?;
    let trusted_proxies = cfg
        .trusted_proxies
        .iter()
        .map(|c| super::ratelimit::Cidr::parse(c))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|m| Error::Data(format!("serve settings: {m}")))?;
    let state = Arc::new(AppState {
        registry: Registry::new(&cfg.models_dir),
        models: RwLock::new(Arc::new(ModelSet::default())),
        pool,
        metrics: Metrics::default(),
        cache: Mutex::new(ResponseCache::default()),
        refreshing: Mutex::new(std::collections::HashSet::new()),
        days: Mutex::new(DayCache::default()),
        computing: Mutex::new(HashMap::new()),
        compute_rate: super::ratelimit::RateLimiter::new(cfg.compute_per_client_per_s, 20.0, None, "compute")
            .map_err(|m| Error::Data(format!("serve settings: {m}")))?,
        not_trading: Mutex::new(std::collections::BTreeSet::new()),
        heavy: super::work::HeavySlots::new(cfg_heavy),
        db_up: AtomicBool::new(true),
        clock,
        request_seq: AtomicU64::new(0),
        limiter,
        trusted_proxies,
        connections: Mutex::new(HashMap::new()),
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
