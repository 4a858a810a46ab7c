//! Postgres: connection pool, embedded migrations, and the prices import.

use std::time::Duration;

use chrono::NaiveDate;
use sqlx::postgres::{PgPool, PgPoolOptions};
use stockcast_features::load::Bars;
use stockcast_features::polars::prelude::DataType;
use stockcast_features::prices::days_to_date;
use stockcast_features::{Layout, PriceField, PriceFrame, Security};

use crate::error::{Error, Result};

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

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
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

fn f64_column(prices: &PriceFrame, name: &str) -> Result<Option<Vec<Option<f64>>>> {
    match prices.df().column(name) {
        Ok(c) => Ok(Some(
            c.cast(&DataType::Float64)
                .map_err(stockcast_features::Error::from)?
                .f64()
                .map_err(stockcast_features::Error::from)?
                .iter()
                .collect(),
        )),
        Err(_) => Ok(None),
    }
}

/// Upserts `prices` (validated by the loader) and their securities in ONE transaction: all rows or none.
/// Re-importing the same file changes nothing; a changed row replaces the stored one.
///
/// # Errors
/// [`Error::Database`] (the transaction is rolled back), [`Error::Data`] for rows the loader should have refused.
pub async fn import_prices(pool: &PgPool, prices: &PriceFrame, securities: &[Security]) -> Result<ImportStats> {
    let df = prices.df();
    let f = |e| Error::Features(stockcast_features::Error::from(e));
    let symbols: Vec<String> =
        df.column("symbol").map_err(f)?.str().map_err(f)?.iter().map(|s| s.unwrap_or_default().to_owned()).collect();
    let dates: Vec<NaiveDate> = df
        .column("date")
        .and_then(|c| c.cast(&DataType::Int32))
        .map_err(f)?
        .i32()
        .map_err(f)?
        .iter()
        .enumerate()
        .map(|(i, d)| d.and_then(days_to_date).ok_or_else(|| Error::Data(format!("row {i} ({}): no date", symbols[i]))))
        .collect::<Result<_>>()?;
    let close = f64_column(prices, "close")?.ok_or_else(|| Error::Data("prices have no close".into()))?;
    let none = || vec![None; df.height()];
    let open = f64_column(prices, "open")?.unwrap_or_else(none);
    let high = f64_column(prices, "high")?.unwrap_or_else(none);
    let low = f64_column(prices, "low")?.unwrap_or_else(none);
    let volume = f64_column(prices, "volume")?.unwrap_or_else(none);
    let raw_close = f64_column(prices, "raw_close")?.unwrap_or_else(none);
    let mut distinct: Vec<&str> = symbols.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();

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
    for start in (0..df.height()).step_by(BATCH) {
        let r = start..(start + BATCH).min(df.height());
        let inserted: Vec<bool> = sqlx::query_scalar(
            "INSERT INTO prices (symbol, date, open, high, low, close, volume, raw_close) \
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], \
             $7::float8[], $8::float8[]) \
             ON CONFLICT (symbol, date) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, \
             close = EXCLUDED.close, volume = EXCLUDED.volume, raw_close = EXCLUDED.raw_close \
             RETURNING (xmax = 0)",
        )
        .bind(&symbols[r.clone()])
        .bind(&dates[r.clone()])
        .bind(&open[r.clone()])
        .bind(&high[r.clone()])
        .bind(&low[r.clone()])
        .bind(&close[r.clone()])
        .bind(&volume[r.clone()])
        .bind(&raw_close[r])
        .fetch_all(&mut *tx)
        .await?;
        stats.rows += inserted.len();
        stats.inserted += inserted.iter().filter(|x| **x).count();
    }
    stats.updated = stats.rows - stats.inserted;
    tx.commit().await?;
    Ok(stats)
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
}

/// The first of the last `n` trading dates (dates with any price) up to `until`; `None` when there are fewer.
///
/// # Errors
/// [`Error::Database`].
pub async fn nth_last_date(pool: &PgPool, until: NaiveDate, n: usize) -> Result<Option<NaiveDate>> {
    let (first, count): (Option<NaiveDate>, i64) = sqlx::query_as(
        "SELECT min(date), count(*) FROM \
         (SELECT DISTINCT date FROM prices WHERE date <= $1 ORDER BY date DESC LIMIT $2) d",
    )
    .bind(until)
    .bind(n as i64)
    .fetch_one(pool)
    .await?;
    Ok(first.filter(|_| count as usize == n))
}

/// Reads the `prices` table (and the securities' names and sectors) as rows for the quality stage: the stored
/// prices are already adjusted, `raw_close` is carried in the [`PriceField::AdjClose`] slot when every row has
/// one (see [`stockcast_features::check_bars`] with `stored = true`). `source` names the rows in messages.
///
/// # Errors
/// [`Error::Database`]; [`Error::Data`] when nothing matches.
pub async fn read_prices(pool: &PgPool, source: &str, q: &PriceQuery) -> Result<(Bars, Vec<Security>)> {
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
    let mut symbol_names: Vec<String> = Vec::new();
    let (mut symbol, mut date) = (Vec::new(), Vec::new());
    let mut cols: [Vec<f64>; 6] = Default::default();
    let mut nulls = [0usize; 6];
    while let Some(row) = rows.try_next().await? {
        let s: &str = row.try_get(0)?;
        if symbol_names.last().is_none_or(|l| l != s) {
            symbol_names.push(s.to_owned());
        }
        symbol.push((symbol_names.len() - 1) as u32);
        date.push(Some(row.try_get::<NaiveDate, _>(1)?));
        for (i, col) in cols.iter_mut().enumerate() {
            let v: Option<f64> = row.try_get(i + 2)?;
            nulls[i] += usize::from(v.is_none());
            col.push(v.unwrap_or(f64::NAN));
        }
    }
    drop(rows);
    let n = symbol.len();
    if n == 0 {
        let what = if q.symbols.is_empty() { String::new() } else { format!(" for {}", q.symbols.join(", ")) };
        let until = q.until.map_or_else(String::new, |d| format!(" up to {d}"));
        return Err(Error::Data(format!("{source}: the prices table has no rows{what}{until}")));
    }
    let order = [PriceField::Open, PriceField::High, PriceField::Low, PriceField::Close, PriceField::Volume];
    let mut fields = Vec::new();
    for (i, values) in cols.into_iter().enumerate() {
        // A column never filled is absent (e.g. close-only data); a partly missing one goes to the checks.
        let absent = nulls[i] == n;
        let keep = match order.get(i) {
            Some(f) => !absent || *f == PriceField::Close,
            None => nulls[i] == 0,
        };
        if keep {
            fields.push((order.get(i).copied().unwrap_or(PriceField::AdjClose), values));
        }
    }
    let securities = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
        "SELECT symbol, name, sector FROM securities WHERE symbol = ANY($1) ORDER BY symbol",
    )
    .bind(&symbol_names)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(symbol, name, sector)| Security { symbol, name, sector })
    .collect();
    let bars = Bars {
        source: source.into(),
        line_unit: "row",
        layout: Layout::Long,
        symbol_names,
        symbol,
        date,
        fields,
        line: (1..=n as u64).collect(),
        issues: Vec::new(),
        column_names: std::iter::once((PriceField::AdjClose, "raw_close".to_owned())).collect(),
        empty_wide_cells: 0,
    };
    Ok((bars, securities))
}
