//! Postgres, and all of its SQL: connection pool, embedded migrations, the prices import and read, model
//! versions, and recommendation runs with their predictions.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::postgres::{PgPool, PgPoolOptions};
use stockcast_features::load::Bars;
use stockcast_features::{BarsBuilder, PriceField, PriceFrame, Security, SeriesColumns};
use stockcast_models::registry::Manifest;

use crate::error::{Error, Result};
use crate::recommend::Recommendation;

/// The schema, embedded at build time from `crates/infer/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Rows per UNNEST statement of the import.
const BATCH: usize = 10_000;

/// Pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections.
    pub max_connections: u32,
    /// How long to wait for a connection.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { max_connections: 8, acquire_timeout: Duration::from_secs(5) }
    }
}

/// Connects (lazily checked with one `SELECT 1`).
///
/// # Errors
/// [`Error::Unavailable`] naming the host when the server cannot be reached.
pub async fn connect(url: &str, cfg: PoolConfig) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(cfg.acquire_timeout)
        .connect(url)
        .await
        .map_err(|e| Error::Unavailable(format!("{}: {e}", redact(url))))?;
    Ok(pool)
}

/// Query parameters of a database URL whose values are shown in messages; every other value is masked.
const SHOWN_PARAMETERS: [&str; 14] = [
    "sslmode",
    "ssl-mode",
    "application_name",
    "connect_timeout",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "target_session_attrs",
    "sslrootcert",
    "ssl-root-cert",
    "statement-cache-capacity",
    "options",
];

/// The URL for messages: the userinfo password removed and every query value masked (`name=***`) except those of
/// [`SHOWN_PARAMETERS`], judged by the percent-decoded name (so `p%61ssword=` is masked as `password=` is). A
/// string that does not parse as a URL is not shown at all.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a database URL that does not parse; not shown)".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(None);
    }
    let Some(query) = parsed.query().map(str::to_owned) else { return parsed.to_string() };
    let params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (raw_name, _) = p.split_once('=').unwrap_or((p, ""));
            let name: String = url::form_urlencoded::parse(raw_name.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            if SHOWN_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) {
                p.to_owned()
            } else {
                format!("{raw_name}=***")
            }
        })
        .collect();
    parsed.set_query(None);
    format!("{parsed}?{}", params.join("&"))
}

/// Applies every pending migration.
///
/// # Errors
/// [`Error::Migrate`].
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ImportStats {
    /// Price rows written.
    pub rows: usize,
    /// Of which new.
    pub inserted: usize,
    /// Of which replaced an existing (symbol, date).
    pub updated: usize,
    /// Symbols.
    pub symbols: usize,
}

/// Upserts `prices` (validated by the loader) and their securities in ONE transaction: all rows or none.
/// Re-importing the same file changes nothing; a changed row replaces the stored one.
///
/// # Errors
/// [`Error::Database`] (the transaction is rolled back), [`Error::Data`] for rows the loader should have refused.
pub async fn import_prices(pool: &PgPool, prices: &PriceFrame, securities: &[Security]) -> Result<ImportStats> {
    // Sectors go in through `securities`, not per row.
    let series = prices.series_with(SeriesColumns { sector: false, ..SeriesColumns::ALL })?;
    // Every row as (symbol, date, [open, high, low, close, volume, raw_close]), in order, without a copy of the
    // table per column (25 M rows would be 3 GB of them).
    let rows = || {
        series.iter().flat_map(|s| {
            let at = |v: &Option<Vec<f64>>, i: usize| v.as_ref().map(|v| v[i]);
            (0..s.len()).map(move |i| {
                let values = [
                    at(&s.open, i),
                    at(&s.high, i),
                    at(&s.low, i),
                    Some(s.close[i]),
                    at(&s.volume, i),
                    at(&s.raw_close, i),
                ];
                (s.symbol.as_str(), s.dates[i], values)
            })
        })
    };
    let distinct: Vec<&str> =
        series.iter().map(|s| s.symbol.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();

    let mut tx = pool.begin().await?;
    // Securities: every symbol of the prices, with name/sector from the securities file where given.
    let (sec_sym, sec_name, sec_sector): (Vec<String>, Vec<Option<String>>, Vec<Option<String>>) = distinct
        .iter()
        .map(|s| {
            let info = securities.iter().find(|x| x.symbol == *s);
            ((*s).to_owned(), info.and_then(|x| x.name.clone()), info.and_then(|x| x.sector.clone()))
        })
        .fold((Vec::new(), Vec::new(), Vec::new()), |mut acc, (a, b, c)| {
            acc.0.push(a);
            acc.1.push(b);
            acc.2.push(c);
            acc
        });
    sqlx::query(
        "INSERT INTO securities (symbol, name, sector) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
         ON CONFLICT (symbol) DO UPDATE SET name = COALESCE(EXCLUDED.name, securities.name), \
         sector = COALESCE(EXCLUDED.sector, securities.sector)",
    )
    .bind(&sec_sym)
    .bind(&sec_name)
    .bind(&sec_sector)
    .execute(&mut *tx)
    .await?;
    let mut stats = ImportStats { symbols: distinct.len(), ..ImportStats::default() };
    // Symbols with no stored row yet (a first import): binary COPY straight into the table, as `psql \copy`
    // would; rows of stored symbols go through the upsert below.
    let fresh: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM prices WHERE symbol = ANY($1))")
        .bind(&distinct)
        .fetch_one(&mut *tx)
        .await?;
    if fresh {
        let mut copy = tx
            .copy_in_raw(
                "COPY prices (symbol, date, open, high, low, close, volume, raw_close) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let mut buf = crate::copy::header();
        for (symbol, date, values) in rows() {
            crate::copy::write_row(&mut buf, symbol, date, values);
            if buf.len() >= 1 << 20 {
                copy.send(std::mem::take(&mut buf)).await?;
            }
        }
        crate::copy::trailer(&mut buf);
        copy.send(buf).await?;
        let rows = usize::try_from(copy.finish().await?).unwrap_or(usize::MAX);
        tx.commit().await?;
        analyze(pool).await?;
        return Ok(ImportStats { rows, inserted: rows, ..stats });
    }
    let mut all = rows().peekable();
    while all.peek().is_some() {
        let (mut symbols, mut dates) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
        let mut cols: [Vec<Option<f64>>; 6] = Default::default();
        for (symbol, date, values) in all.by_ref().take(BATCH) {
            symbols.push(symbol);
            dates.push(date);
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
        }
        let [open, high, low, close, volume, raw_close] = &cols;
        let inserted: Vec<bool> = sqlx::query_scalar(
            "INSERT INTO prices (symbol, date, open, high, low, close, volume, raw_close) \
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], \
             $7::float8[], $8::float8[]) \
             ON CONFLICT (symbol, date) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, \
             close = EXCLUDED.close, volume = EXCLUDED.volume, raw_close = EXCLUDED.raw_close \
             RETURNING (xmax = 0)",
        )
        .bind(&symbols)
        .bind(&dates)
        .bind(open)
        .bind(high)
        .bind(low)
        .bind(close)
        .bind(volume)
        .bind(raw_close)
        .fetch_all(&mut *tx)
        .await?;
        stats.rows += inserted.len();
        stats.inserted += inserted.iter().filter(|x| **x).count();
    }
    stats.updated = stats.rows - stats.inserted;
    tx.commit().await?;
    analyze(pool).await?;
    Ok(stats)
}

/// Refreshes the planner's statistics of `prices` after an import: with stale ones (autovacuum has not run yet)
/// the read sorts the whole table on disk instead of walking its (symbol, date) index.
async fn analyze(pool: &PgPool) -> Result<()> {
    sqlx::query("ANALYZE prices").execute(pool).await?;
    Ok(())
}

/// Which stored prices to read.
#[derive(Debug, Clone, Default)]
pub struct PriceQuery {
    /// Only these symbols (all when empty).
    pub symbols: Vec<String>,
    /// Only dates up to and including this one.
    pub until: Option<NaiveDate>,
    /// Only dates from this one on.
    pub since: Option<NaiveDate>,
    /// Connections a read of every symbol splits across (`None`: one per core, at most 4 and the pool's size).
    pub streams: Option<usize>,
}

/// The first of the last `n` trading dates (dates with any price) up to `until`; `None` when there are fewer.
///
/// # Errors
/// [`Error::Database`].
pub async fn nth_last_date(pool: &PgPool, until: NaiveDate, n: usize) -> Result<Option<NaiveDate>> {
    // A step back per date (`max(date)` below the previous one, an index lookup each) instead of `DISTINCT date`,
    // which reads every price row in the range: on 5,000 × 300 rows 3 ms instead of 480 ms.
    let (first, count): (Option<NaiveDate>, i64) = sqlx::query_as(
        "WITH RECURSIVE d(date, k) AS ( \
           SELECT max(date), 1 FROM prices WHERE date <= $1 \
           UNION ALL \
           SELECT (SELECT max(p.date) FROM prices p WHERE p.date < d.date), d.k + 1 FROM d \
           WHERE d.k < $2 AND d.date IS NOT NULL) \
         SELECT min(date), count(date) FROM d",
    )
    .bind(until)
    .bind(n as i64)
    .fetch_one(pool)
    .await?;
    Ok(first.filter(|_| count as usize == n))
}

/// Whether any symbol has a price on `date` (an index lookup).
///
/// # Errors
/// [`Error::Database`].
pub async fn has_prices_on(pool: &PgPool, date: NaiveDate) -> Result<bool> {
    let (found,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM prices WHERE date = $1)").bind(date).fetch_one(pool).await?;
    Ok(found)
}

/// Reads the `prices` table (and the securities' names and sectors) as rows for the quality stage: the stored
/// prices are already adjusted, `raw_close` is carried in the [`PriceField::AdjClose`] slot when every row has
/// one (see [`stockcast_features::check_bars`] with `stored = true`). `source` names the rows in messages.
///
/// # Errors
/// [`Error::Database`]; [`Error::Data`] when nothing matches.
pub async fn read_prices(pool: &PgPool, source: &str, q: &PriceQuery) -> Result<(Bars, Vec<Security>)> {
    let mut builder = BarsBuilder::new(source, "row").column_name(PriceField::AdjClose, "raw_close");
    if q.symbols.is_empty() {
        // Every symbol (a day's scoring, a training run): binary COPY streams instead of a decoded result row
        // per price, split by symbol across connections when the pool and the cores allow.
        let streams = q.streams.unwrap_or_else(|| read_streams(pool));
        copy_all(pool, source, q, streams, &mut builder).await?;
    } else {
        read_rows(pool, q, &mut builder).await?;
    }
    if builder.is_empty() {
        let what = if q.symbols.is_empty() { String::new() } else { format!(" for {}", q.symbols.join(", ")) };
        let until = q.until.map_or_else(String::new, |d| format!(" up to {d}"));
        return Err(Error::Data(format!("{source}: the prices table has no rows{what}{until}")));
    }
    let bars = builder.finish();
    let securities = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
        "SELECT symbol, name, sector FROM securities WHERE symbol = ANY($1) ORDER BY symbol",
    )
    .bind(&bars.symbol_names)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(symbol, name, sector)| Security { symbol, name, sector })
    .collect();
    Ok((bars, securities))
}

/// How each part of a split read starts its transaction (before importing or exporting the snapshot).
const SNAPSHOT_READ: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// How many connections a full read uses: one per core, at most 4 and at most the pool's size.
fn read_streams(pool: &PgPool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.min(pool.options().get_max_connections() as usize).clamp(1, 4)
}

/// Every symbol's rows of `q` (dates only) into `builder`, in `(symbol, date)` order, through `streams` binary
/// COPY streams read at once: PostgreSQL writes the rows in one backend per stream, so on 5,000 × 300 rows the
/// read takes about the time of its largest part instead of the whole. The parts are consecutive ranges of the
/// `securities` table's symbols (every price's symbol is one, by the foreign key), bounded inside the statement by
/// row offsets, and every stream reads one exported snapshot, so together they are the one stream's rows.
///
/// # Errors
/// [`Error::Database`]; [`Error::Data`] for a stream that is not the rows expected.
async fn copy_all(
    pool: &PgPool,
    source: &str,
    q: &PriceQuery,
    streams: usize,
    builder: &mut BarsBuilder,
) -> Result<()> {
    // The statement takes no parameters: the dates and offsets are written into it (ISO dates and integers).
    let bound = |op: &str, d: Option<NaiveDate>| d.map_or_else(String::new, |d| format!(" AND date {op} '{d}'"));
    let nth_symbol = |k: usize| format!("(SELECT symbol FROM securities ORDER BY symbol OFFSET {k} LIMIT 1)");
    let statement = |lo: Option<usize>, hi: Option<usize>| {
        format!(
            "COPY (SELECT symbol, date, open, high, low, close, volume, raw_close FROM prices WHERE true{}{}{}{} \
             ORDER BY symbol, date) TO STDOUT (FORMAT binary)",
            bound("<=", q.until),
            bound(">=", q.since),
            lo.map_or_else(String::new, |k| format!(" AND symbol >= {}", nth_symbol(k))),
            hi.map_or_else(String::new, |k| format!(" AND symbol < {}", nth_symbol(k))),
        )
    };
    if streams <= 1 {
        let mut conn = pool.acquire().await?;
        return copy_into(&mut conn, &statement(None, None), source, builder).await;
    }
    // The first connection exports its snapshot; the others read the same one.
    let mut first = pool.begin().await?;
    sqlx::query(SNAPSHOT_READ).execute(&mut *first).await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut *first).await?;
    if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Data(format!("{source}: unexpected snapshot id {snapshot:?}")));
    }
    let symbols: i64 = sqlx::query_scalar("SELECT count(*) FROM securities").fetch_one(&mut *first).await?;
    let n = usize::try_from(symbols).unwrap_or(0);
    let mut txs = vec![first];
    // Only connections the pool gives at once: a read never waits on others' connections while holding one.
    while txs.len() < streams.min(n) {
        let Ok(Ok(mut tx)) = tokio::time::timeout(Duration::from_millis(200), pool.begin()).await else { break };
        sqlx::query(SNAPSHOT_READ).execute(&mut *tx).await?;
        // The id was checked above to be hex digits and dashes.
        let set = sqlx::AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{snapshot}'"));
        sqlx::query(set).execute(&mut *tx).await?;
        txs.push(tx);
    }
    let parts = txs.len();
    tracing::debug!(parts, symbols = n, "reading every symbol's prices in parts");
    // A JoinSet aborts the parts still reading when this future is dropped (a cancelled request) or returns early.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut tx) in txs.into_iter().enumerate() {
        let (lo, hi) = ((i > 0).then(|| i * n / parts), (i + 1 < parts).then(|| (i + 1) * n / parts));
        let (statement, source) = (statement(lo, hi), source.to_owned());
        tasks.spawn(async move {
            let mut part = BarsBuilder::new(source.clone(), "row");
            copy_into(&mut tx, &statement, &source, &mut part).await?;
            tx.rollback().await?;
            Ok::<_, Error>((i, part))
        });
    }
    let mut done: Vec<Option<BarsBuilder>> = (0..parts).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, part) = joined.map_err(|e| Error::Data(format!("{source}: a read task failed: {e}")))??;
        done[i] = Some(part);
    }
    for part in done.into_iter().flatten() {
        builder.append(part);
    }
    Ok(())
}

/// One binary COPY stream of `prices` rows into `builder`.
async fn copy_into(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    source: &str,
    builder: &mut BarsBuilder,
) -> Result<()> {
    use futures_util::TryStreamExt as _;

    let mut stream = conn.copy_out_raw(statement).await?;
    let mut reader = crate::copy::RowReader::default();
    while let Some(chunk) = stream.try_next().await? {
        reader.feed(&chunk, builder)?;
    }
    if !reader.finished() {
        return Err(Error::Data(format!("{source}: the COPY stream ended after {} rows", reader.rows())));
    }
    Ok(())
}

/// The rows of `q` (some symbols) through a bound query, one decoded row each.
async fn read_rows(pool: &PgPool, q: &PriceQuery, builder: &mut BarsBuilder) -> Result<()> {
    use futures_util::TryStreamExt as _;
    use sqlx::Row as _;

    let mut rows = sqlx::query(
        "SELECT symbol, date, open, high, low, close, volume, raw_close FROM prices \
         WHERE (cardinality($1::text[]) = 0 OR symbol = ANY($1)) AND ($2::date IS NULL OR date <= $2) \
         AND ($3::date IS NULL OR date >= $3) \
         ORDER BY symbol, date",
    )
    .bind(&q.symbols)
    .bind(q.until)
    .bind(q.since)
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let s: &str = row.try_get(0)?;
        let mut values = [None; 6];
        for (i, v) in values.iter_mut().enumerate() {
            *v = row.try_get(i + 2)?;
        }
        builder.push(s, row.try_get::<NaiveDate, _>(1)?, values);
    }
    Ok(())
}

/// `SELECT 1`: whether the database answers.
///
/// # Errors
/// [`Error::Database`].
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// The newest stored price date; `None` when the table is empty.
///
/// # Errors
/// [`Error::Database`].
pub async fn latest_price_date(pool: &PgPool) -> Result<Option<NaiveDate>> {
    Ok(sqlx::query_scalar("SELECT max(date) FROM prices").fetch_one(pool).await?)
}

/// One row of `recommendation_runs`, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRow {
    /// `recommendation_runs.id`.
    pub run_id: i64,
    /// The trading date the run scored.
    pub as_of: NaiveDate,
    /// When the run was stored.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The newest run of `name@version` (the one on `date` when given).
///
/// # Errors
/// [`Error::Database`].
pub async fn find_run(pool: &PgPool, name: &str, version: u64, date: Option<NaiveDate>) -> Result<Option<RunRow>> {
    Ok(sqlx::query_as(
        "SELECT r.id AS run_id, r.as_of, r.created_at FROM recommendation_runs r \
         JOIN model_versions m ON m.id = r.model_version_id \
         WHERE m.name = $1 AND m.version = $2 AND ($3::date IS NULL OR r.as_of = $3) \
         ORDER BY r.as_of DESC LIMIT 1",
    )
    .bind(name)
    .bind(version as i64)
    .bind(date)
    .fetch_optional(pool)
    .await?)
}

/// A stored prediction: one symbol's score in a run.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScoreRow {
    /// Ticker.
    pub symbol: String,
    /// Model score.
    pub score: f64,
}

/// The stored scores of a run, by symbol (only `symbols` when not empty).
///
/// # Errors
/// [`Error::Database`].
pub async fn run_scores(pool: &PgPool, run_id: i64, symbols: &[String]) -> Result<Vec<ScoreRow>> {
    Ok(sqlx::query_as(
        "SELECT symbol, score FROM predictions WHERE run_id = $1 \
         AND (cardinality($2::text[]) = 0 OR symbol = ANY($2)) ORDER BY symbol",
    )
    .bind(run_id)
    .bind(symbols)
    .fetch_all(pool)
    .await?)
}

/// One recommendation row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct RecommendationRow {
    /// Rank by expected return (1 = highest).
    pub rank: i32,
    /// Symbol.
    pub symbol: String,
    /// Expected h-day return.
    pub expected_return: f64,
    /// `buy`, `hold` or `sell`.
    pub action: String,
    /// Sector, when known.
    pub sector: Option<String>,
    /// Model score.
    pub score: f64,
}

/// Which recommendations of a run to read.
#[derive(Debug, Clone, Default)]
pub struct RecommendationQuery {
    /// Only this sector.
    pub sector: Option<String>,
    /// Only this action (`buy`, `hold`, `sell`).
    pub action: Option<String>,
    /// Most rows, best ranks first.
    pub limit: usize,
    /// Only ranks after this one (the cursor of the previous page).
    pub after: Option<i32>,
}

/// The recommendations of a run by rank.
///
/// # Errors
/// [`Error::Database`].
pub async fn run_recommendations(
    pool: &PgPool,
    run_id: i64,
    q: &RecommendationQuery,
) -> Result<Vec<RecommendationRow>> {
    Ok(sqlx::query_as(
        "SELECT r.rank, r.symbol, r.expected_return, r.action, r.sector, p.score FROM recommendations r \
         JOIN predictions p ON p.run_id = r.run_id AND p.symbol = r.symbol \
         WHERE r.run_id = $1 AND ($2::text IS NULL OR r.sector = $2) AND ($3::text IS NULL OR r.action = $3) \
         AND ($5::int4 IS NULL OR r.rank > $5) ORDER BY r.rank LIMIT $4",
    )
    .bind(run_id)
    .bind(&q.sector)
    .bind(&q.action)
    .bind(q.limit as i64)
    .bind(q.after)
    .fetch_all(pool)
    .await?)
}

/// What a stored run looks like.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRun {
    /// `recommendation_runs.id`.
    pub run_id: i64,
    /// `model_versions.id`.
    pub model_version_id: i64,
    /// True when a run for the same date and version existed and was replaced.
    pub replaced: bool,
    /// Rows written.
    pub rows: usize,
}

/// Inserts (or updates) the `model_versions` row of a manifest; returns its id.
///
/// # Errors
/// [`Error::Database`].
pub async fn upsert_model_version(conn: &mut sqlx::PgConnection, m: &Manifest) -> Result<i64> {
    let manifest = serde_json::to_value(m).map_err(|e| Error::Data(e.to_string()))?;
    let created = chrono::DateTime::parse_from_rfc3339(&m.created_at)
        .map_err(|e| Error::Data(format!("manifest {}@{}: created_at {:?}: {e}", m.name, m.version, m.created_at)))?;
    let id = sqlx::query_scalar(
        "INSERT INTO model_versions (name, version, kind, feature_spec_hash, created_at, manifest) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (name, version) DO UPDATE SET kind = EXCLUDED.kind, \
         feature_spec_hash = EXCLUDED.feature_spec_hash, created_at = EXCLUDED.created_at, \
         manifest = EXCLUDED.manifest RETURNING id",
    )
    .bind(&m.name)
    .bind(m.version as i64)
    .bind(&m.kind)
    .bind(&m.feature_spec_hash)
    .bind(created)
    .bind(manifest)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// A run to store.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The model version's manifest.
    pub manifest: &'a Manifest,
    /// The as-of date.
    pub as_of: NaiveDate,
    /// When the run was made (passed in).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Parameters and notes kept with the run (action rule, expected-return method, skipped symbols).
    pub params: serde_json::Value,
    /// The rows.
    pub rows: &'a [Recommendation],
}

/// Writes the run, its predictions and its recommendations in ONE transaction. A run for the same date and model
/// version is replaced (its rows are deleted and rewritten); on any error nothing of this call is kept.
///
/// # Errors
/// [`Error::Database`] (rolled back).
pub async fn store_run(pool: &PgPool, run: &NewRun<'_>) -> Result<StoredRun> {
    let mut stored = store_runs(pool, std::slice::from_ref(run)).await?;
    stored.pop().ok_or_else(|| Error::Data("no run stored".into()))
}

/// Writes several runs (e.g. one per served model) in ONE transaction: all of them or none.
///
/// # Errors
/// [`Error::Database`] (rolled back).
pub async fn store_runs(pool: &PgPool, runs: &[NewRun<'_>]) -> Result<Vec<StoredRun>> {
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        out.push(write_run(&mut tx, run).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn write_run(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, run: &NewRun<'_>) -> Result<StoredRun> {
    let model_version_id = upsert_model_version(tx, run.manifest).await?;
    let symbols: Vec<&str> = run.rows.iter().map(|r| r.symbol.as_str()).collect();
    let sectors: Vec<Option<&str>> = run.rows.iter().map(|r| r.sector.as_deref()).collect();
    // Symbols scored from a file may not be in `securities` yet.
    sqlx::query(
        "INSERT INTO securities (symbol, sector) SELECT t.symbol, t.sector FROM UNNEST($1::text[], $2::text[]) \
         AS t (symbol, sector) WHERE NOT EXISTS (SELECT 1 FROM securities s WHERE s.symbol = t.symbol) \
         ON CONFLICT (symbol) DO NOTHING",
    )
    .bind(&symbols)
    .bind(&sectors)
    .execute(&mut **tx)
    .await?;
    let (run_id, inserted): (i64, bool) = sqlx::query_as(
        "INSERT INTO recommendation_runs (as_of, model_version_id, created_at, symbols, params) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (as_of, model_version_id) DO UPDATE SET created_at = EXCLUDED.created_at, \
         symbols = EXCLUDED.symbols, params = EXCLUDED.params RETURNING id, (xmax = 0)",
    )
    .bind(run.as_of)
    .bind(model_version_id)
    .bind(run.created_at)
    .bind(run.rows.len() as i32)
    .bind(&run.params)
    .fetch_one(&mut **tx)
    .await?;
    if !inserted {
        sqlx::query("DELETE FROM recommendations WHERE run_id = $1").bind(run_id).execute(&mut **tx).await?;
        sqlx::query("DELETE FROM predictions WHERE run_id = $1").bind(run_id).execute(&mut **tx).await?;
    }
    let scores: Vec<f64> = run.rows.iter().map(|r| r.score).collect();
    sqlx::query("INSERT INTO predictions (run_id, symbol, score) SELECT $1, * FROM UNNEST($2::text[], $3::float8[])")
        .bind(run_id)
        .bind(&symbols)
        .bind(&scores)
        .execute(&mut **tx)
        .await?;
    let ranks: Vec<i32> = run.rows.iter().map(|r| r.rank as i32).collect();
    let expected: Vec<f64> = run.rows.iter().map(|r| r.expected_return).collect();
    let actions: Vec<&str> = run.rows.iter().map(|r| r.action.as_str()).collect();
    sqlx::query(
        "INSERT INTO recommendations (run_id, symbol, rank, expected_return, action, sector) \
         SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::float8[], $5::text[], $6::text[])",
    )
    .bind(run_id)
    .bind(&symbols)
    .bind(&ranks)
    .bind(&expected)
    .bind(&actions)
    .bind(&sectors)
    .execute(&mut **tx)
    .await?;
    Ok(StoredRun { run_id, model_version_id, replaced: !inserted, rows: run.rows.len() })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn every_url_form_is_redacted() {
        assert_eq!(redact("postgres://u:pw@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=pw&x=1"),
            "postgres://u@h/db?sslmode=disable&password=***&x=***"
        );
        assert_eq!(redact("postgres://u:p%40ss@h/db?PassWord=x"), "postgres://u@h/db?PassWord=***");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        // A percent-encoded name is the same parameter to the driver: masked.
        assert_eq!(
            redact("postgres://u@h/db?p%61ssword=hunter2&application_name=app"),
            "postgres://u@h/db?p%61ssword=***&application_name=app"
        );
        // Unknown parameters (a key file's passphrase, a token under any name) are masked; known ones shown.
        let r = redact("postgres://u@h:5433/db?sslkey_password=k&Token2=t&sslmode=require&connect_timeout=5");
        assert_eq!(r, "postgres://u@h:5433/db?sslkey_password=***&Token2=***&sslmode=require&connect_timeout=5");
        assert_eq!(redact("host=h password=x"), "(a database URL that does not parse; not shown)");
    }
}
