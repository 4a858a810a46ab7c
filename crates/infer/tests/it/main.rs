//! Postgres integration tests against a real throwaway PostgreSQL cluster (initdb + pg_ctl on 127.0.0.1, a free
//! port, a private socket directory), started and stopped by each test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::missing_panics_doc)]

mod fixture;
mod pg;
mod ratelimit;
mod recommend;
mod server;

use fixture::us5;
use stockcast_infer::store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_from_empty_and_again_idempotently() {
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("mig"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> \
         '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        ["model_versions", "predictions", "prices", "recommendation_runs", "recommendations", "securities"]
    );
    // The price check holds.
    sqlx::query("INSERT INTO securities (symbol) VALUES ('X')").execute(&pool).await.unwrap();
    let e = sqlx::query("INSERT INTO prices (symbol, date, close) VALUES ('X', '2020-01-02', -1)")
        .execute(&pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("check constraint"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_prices_twice_is_idempotent_and_updates_replace_rows() {
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("imp"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let loaded = us5();
    let first = store::import_prices(&pool, &loaded.prices, &[]).await.unwrap();
    assert_eq!((first.rows, first.inserted, first.updated, first.symbols), (12_154, 12_154, 0, 5));
    let again = store::import_prices(&pool, &loaded.prices, &[]).await.unwrap();
    assert_eq!((again.rows, again.inserted, again.updated), (12_154, 0, 12_154));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM prices").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 12_154);
    // The stored close equals the loaded (adjusted) close.
    let stored: f64 = sqlx::query_scalar("SELECT close FROM prices WHERE symbol = 'MSFT' AND date = '2012-06-01'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let want = {
        let series = loaded.prices.series().unwrap();
        let msft = series.iter().find(|s| s.symbol == "MSFT").unwrap();
        let i = msft.dates.binary_search(&chrono::NaiveDate::from_ymd_opt(2012, 6, 1).unwrap()).unwrap();
        msft.close[i]
    };
    assert!((stored - want).abs() < 1e-12, "{stored} vs {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_leaves_nothing_behind() {
    use stockcast_features::polars::prelude::*;
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("fail"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    // A symbol the schema refuses (space) makes the securities insert fail inside the transaction.
    let loaded = us5();
    let mut df = loaded.prices.df().clone();
    let sym: Vec<String> = df
        .column("symbol")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| if s == Some("MSFT") { "MS FT".to_owned() } else { s.unwrap().to_owned() })
        .collect();
    df.with_column(Column::new("symbol".into(), sym)).unwrap();
    let df = df.sort(["symbol", "date"], SortMultipleOptions::default()).unwrap();
    let bad = stockcast_features::PriceFrame::from_df(df).unwrap();
    let e = store::import_prices(&pool, &bad, &[]).await.unwrap_err().to_string();
    assert!(e.contains("securities_symbol_check"), "{e}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM prices").fetch_one(&pool).await.unwrap();
    let secs: i64 = sqlx::query_scalar("SELECT count(*) FROM securities").fetch_one(&pool).await.unwrap();
    assert_eq!((count, secs), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let e = store::connect(
        "postgres://app:secret@127.0.0.1:1/none",
        store::PoolConfig { max_connections: 1, acquire_timeout: std::time::Duration::from_millis(500) },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("database unavailable: postgres://app@127.0.0.1:1/none"), "{e}");
    assert!(!e.contains("secret"));
}
