//! Recommendations: scoring, ranking, actions, and the one-transaction store.

use std::collections::BTreeMap;

use stockcast_features::Params as _;
use stockcast_infer::recommend::{self, Action, ActionRule, DayScores, ExpectedReturn, RecommendConfig, Scorer};
use stockcast_infer::store;
use stockcast_models::registry::{ModelRef, Registry};

use crate::fixture::{LINEAR, date, promote, publish, us5};
use crate::pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_prices_read_back_as_the_file_loaded_them() {
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("rt"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let file = us5();
    store::import_prices(&pool, &file.prices, &[]).await.unwrap();
    let (bars, secs) = store::read_prices(&pool, "test db", &store::PriceQuery::default()).await.unwrap();
    let back = stockcast_features::check_bars(bars, &stockcast_features::Checked::default(), secs, true).unwrap();
    assert_eq!(back.prices.height(), file.prices.height());
    // Same columns and values (raw_close included): the content hash matches.
    assert_eq!(back.prices.data_hash(), file.prices.data_hash());
    // Every symbol named (a bound query, a decoded row each) reads what the unfiltered read (one binary COPY
    // stream) does.
    let all = store::PriceQuery { symbols: file.prices.symbols().unwrap(), ..store::PriceQuery::default() };
    let (bars, secs) = store::read_prices(&pool, "test db", &all).await.unwrap();
    let named = stockcast_features::check_bars(bars, &stockcast_features::Checked::default(), secs, true).unwrap();
    assert_eq!(named.prices.data_hash(), file.prices.data_hash());
    // A filtered read names what is missing.
    let q = store::PriceQuery { symbols: vec!["NOPE".into()], ..store::PriceQuery::default() };
    let e = store::read_prices(&pool, "test db", &q).await.unwrap_err().to_string();
    assert!(e.contains("test db") && e.contains("NOPE"), "{e}");
    let q = store::PriceQuery {
        symbols: vec!["MSFT".into()],
        until: Some(date("2012-12-31")),
        since: Some(date("2012-01-03")),
        ..store::PriceQuery::default()
    };
    let (bars, _) = store::read_prices(&pool, "test db", &q).await.unwrap();
    assert!(bars.date.iter().all(|d| (date("2012-01-03")..=date("2012-12-31")).contains(&d.unwrap())));
    assert_eq!(bars.len(), 250);
    // 2012 had 250 trading dates (counted in the file with awk): the 250th last one up to 2012-12-31 is 2012-01-03.
    assert_eq!(store::nth_last_date(&pool, date("2012-12-31"), 250).await.unwrap(), Some(date("2012-01-03")));
    assert_eq!(store::nth_last_date(&pool, date("2000-03-03"), 5).await.unwrap(), None);
    assert_eq!(bars.symbol_names, ["MSFT"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_split_across_connections_is_the_one_streams_rows() {
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("split"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    store::import_prices(&pool, &us5().prices, &[]).await.unwrap();
    // Securities without prices, before, between and after the priced ones: parts with no rows.
    for s in ["AAA", "IBMX", "ZZZ"] {
        sqlx::query("INSERT INTO securities (symbol) VALUES ($1)").bind(s).execute(&pool).await.unwrap();
    }
    for (until, since) in [(None, None), (Some(date("2012-12-31")), Some(date("2011-01-03")))] {
        let read = |streams: usize| {
            let q = store::PriceQuery { until, since, streams: Some(streams), ..store::PriceQuery::default() };
            let pool = pool.clone();
            async move { store::read_prices(&pool, "test db", &q).await.unwrap() }
        };
        let (one, secs) = read(1).await;
        assert!(one.len() > 1000 && one.symbol_names.len() == 5, "{} rows", one.len());
        // Symbol codes, row numbers, dates and every value, NaN bits included: the whole Debug form.
        let whole = format!("{one:?}");
        for streams in [2, 3, 4, 8, 20] {
            let (split, split_secs) = read(streams).await;
            assert_eq!(format!("{split:?}"), whole, "{streams} streams, {until:?}..{since:?}");
            assert_eq!(split_secs, secs);
        }
    }
}

fn day(scores: &[f64]) -> DayScores {
    DayScores {
        as_of: date("2020-01-02"),
        symbols: (0..scores.len()).map(|i| format!("S{i}")).collect(),
        scores: scores.to_vec(),
        skipped: Vec::new(),
    }
}

#[test]
fn ties_share_one_action_and_unscorable_symbols_are_never_ranked() {
    // S1, S2, S3 tie at +0.0041; a 20 % / 20 % quantile rule over 6 ranked symbols buys 1 and sells 1, and the sell
    // boundary falls inside the tie: the three share the milder action (hold). S5 has no score.
    let d = day(&[0.02, 0.0041, 0.0041, 0.0041, -0.01, f64::NAN, 0.0041]);
    let (rows, unscored) = recommend::rank(
        &d,
        &d.scores,
        &BTreeMap::new(),
        &ActionRule::Quantile { buy_fraction: 0.2, sell_fraction: 0.2 },
    );
    assert_eq!(unscored, ["S5"]);
    assert!(rows.iter().all(|r| r.symbol != "S5" && r.expected_return.is_finite()));
    assert_eq!(rows.len(), 6);
    let action = |s: &str| rows.iter().find(|r| r.symbol == s).unwrap().action;
    for s in ["S1", "S2", "S3", "S6"] {
        assert_eq!(action(s), Action::Hold, "{s}");
    }
    assert_eq!(action("S0"), Action::Buy);
    assert_eq!(action("S4"), Action::Sell);
    // All tied: no symbol name decides a buy or sell.
    let flat = day(&[0.001; 5]);
    let (rows, _) = recommend::rank(
        &flat,
        &flat.scores,
        &BTreeMap::new(),
        &ActionRule::Quantile { buy_fraction: 0.2, sell_fraction: 0.2 },
    );
    assert!(rows.iter().all(|r| r.action == Action::Hold));
    // A tie entirely inside the buy bucket stays a buy.
    let top = day(&[0.05, 0.05, 0.0, -0.01, -0.02, -0.03, -0.04, -0.05, -0.06, -0.07]);
    let (rows, _) = recommend::rank(
        &top,
        &top.scores,
        &BTreeMap::new(),
        &ActionRule::Quantile { buy_fraction: 0.2, sell_fraction: 0.2 },
    );
    assert_eq!(rows[0].action, Action::Buy);
    assert_eq!(rows[1].action, Action::Buy);
}

#[test]
fn ranks_follow_expected_returns_and_actions_follow_the_rule() {
    let d = day(&[0.01, -0.02, 0.03, 0.0, -0.01]);
    let sectors: BTreeMap<String, String> = [("S2".to_owned(), "Tech".to_owned())].into();
    let (q, _) =
        recommend::rank(&d, &d.scores, &sectors, &ActionRule::Quantile { buy_fraction: 0.2, sell_fraction: 0.4 });
    let order: Vec<&str> = q.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(order, ["S2", "S0", "S3", "S4", "S1"]);
    assert_eq!(q.iter().map(|r| r.rank).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let actions: Vec<Action> = q.iter().map(|r| r.action).collect();
    assert_eq!(actions, [Action::Buy, Action::Hold, Action::Hold, Action::Sell, Action::Sell]);
    assert_eq!(q[0].sector.as_deref(), Some("Tech"));
    assert_eq!(q[1].sector, None);
    let (t, _) =
        recommend::rank(&d, &d.scores, &sectors, &ActionRule::Threshold { buy_above: 0.005, sell_below: -0.015 });
    let actions: Vec<Action> = t.iter().map(|r| r.action).collect();
    assert_eq!(actions, [Action::Buy, Action::Buy, Action::Hold, Action::Hold, Action::Sell]);
    assert!(ActionRule::Quantile { buy_fraction: 0.7, sell_fraction: 0.4 }.check().is_err());
    assert!(ActionRule::Threshold { buy_above: -0.1, sell_below: 0.1 }.check().is_err());
}

#[test]
fn rule_scores_are_calibrated_on_labels_known_at_the_as_of_date_only() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    let prices = us5().prices;
    let rule = "kind = \"rule\"\nrule = \"momentum\"\nlookback = 60\n";
    let v = publish(&reg, "mom", rule, &prices, date("2012-12-31"));
    let scorer = Scorer::load(&reg, &ModelRef::version("mom", v)).unwrap();
    let as_of = date("2012-12-31");
    let d = scorer.score_day(&prices, as_of).unwrap();
    assert_eq!(d.symbols.len(), 5);
    let (er, method) = scorer.expected_returns(&prices, &d, 252).unwrap();
    let ExpectedReturn::Calibrated { dates, slope, intercept } = method else { panic!("{method:?}") };
    assert_eq!(dates, 252);
    for (e, s) in er.iter().zip(&d.scores) {
        assert!((e - (intercept + slope * s)).abs() < 1e-12);
    }
    // A cancelled caller gets no scores: the work stops at its first checkpoint.
    let cancel = stockcast_infer::recommend::Cancel::new();
    cancel.cancel();
    let stopped = scorer.score_day_cancellable(&prices, as_of, &cancel).unwrap_err();
    assert!(matches!(stopped, stockcast_infer::Error::Cancelled), "{stopped}");
    let cfg = stockcast_infer::recommend::RecommendConfig::default();
    let stopped = stockcast_infer::recommend::compute_day(&scorer, &prices, as_of, &cfg, &cancel).unwrap_err();
    assert!(matches!(stopped, stockcast_infer::Error::Cancelled), "{stopped}");
    // Prices after the as-of date change nothing.
    let cut = prices.until(as_of).unwrap();
    let d2 = scorer.score_day(&cut, as_of).unwrap();
    let (er2, _) = scorer.expected_returns(&cut, &d2, 252).unwrap();
    assert_eq!(d.scores, d2.scores);
    assert_eq!(er, er2);
    // A model that learns the label predicts the return itself.
    let lin = publish(&reg, "lin", LINEAR, &prices, date("2012-06-29"));
    let s = Scorer::load(&reg, &ModelRef::version("lin", lin)).unwrap();
    let d = s.score_day(&prices, as_of).unwrap();
    let (er, method) = s.expected_returns(&prices, &d, 252).unwrap();
    assert_eq!(method, ExpectedReturn::Model);
    assert_eq!(er, d.scores);
    // An ensemble's score is a mean rank percentile in (0, 1), not a return, even when every member learns the
    // label: it is calibrated like a rule, never stored as an 80 % "expected return".
    let ens = "kind = \"ensemble\"\n[[members]]\nkind = \"linear\"\nalpha = 0.01\n[[members]]\nkind = \"linear\"\n\
               alpha = 0.1\n";
    let e = publish(&reg, "ens", ens, &prices, date("2012-06-29"));
    let s = Scorer::load(&reg, &ModelRef::version("ens", e)).unwrap();
    let d = s.score_day(&prices, as_of).unwrap();
    assert!(d.scores.iter().all(|v| (0.0..=1.0).contains(v)), "{:?}", d.scores);
    let (er, method) = s.expected_returns(&prices, &d, 252).unwrap();
    assert!(matches!(method, ExpectedReturn::Calibrated { .. }), "{method:?}");
    assert!(er.iter().all(|v| v.abs() < 0.1), "calibrated 5-day returns: {er:?}");
}

async fn counts(pool: &sqlx::PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM recommendation_runs), (SELECT count(*) FROM predictions), \
         (SELECT count(*) FROM recommendations)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_replaces_its_rows_and_a_failed_run_leaves_none() {
    let cluster = pg::Cluster::start();
    let pool = store::connect(&cluster.url("runs"), store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    let prices = us5().prices;
    store::import_prices(&pool, &prices, &[]).await.unwrap();
    let v = publish(&reg, "lin", LINEAR, &prices, date("2012-06-29"));
    promote(&reg, "lin", v);
    let scorer = Scorer::load(&reg, &"lin".parse().unwrap()).unwrap();
    assert_eq!(scorer.version, v);
    let as_of = date("2012-12-31");
    let day = recommend::compute_day(&scorer, &prices, as_of, &RecommendConfig::default(), &recommend::Cancel::new())
        .unwrap();
    assert_eq!(day.rows.len(), 5);
    let run = |rows: Vec<recommend::Recommendation>, as_of| {
        let (pool, manifest, params) = (pool.clone(), scorer.manifest.clone(), day.params.clone());
        async move {
            stockcast_infer::store::store_run(
                &pool,
                &stockcast_infer::store::NewRun {
                    manifest: &manifest,
                    as_of,
                    created_at: "2026-11-23T00:00:00Z".parse().unwrap(),
                    params,
                    rows: &rows,
                },
            )
            .await
        }
    };
    let first = run(day.rows.clone(), as_of).await.unwrap();
    assert!(!first.replaced);
    assert_eq!(counts(&pool).await, (1, 5, 5));
    let again = run(day.rows.clone(), as_of).await.unwrap();
    assert!(again.replaced);
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(counts(&pool).await, (1, 5, 5));
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM model_versions").fetch_one(&pool).await.unwrap();
    assert_eq!(versions, 1);

    // A constraint violation on the last row: nothing of the failed call is kept, the earlier run is intact.
    let mut bad = day.rows.clone();
    for r in &mut bad {
        r.expected_return += 1.0;
    }
    bad.last_mut().unwrap().rank = 0;
    let e = run(bad.clone(), as_of).await.unwrap_err().to_string();
    assert!(e.contains("recommendations_rank_check"), "{e}");
    assert_eq!(counts(&pool).await, (1, 5, 5));
    let stored: Vec<f64> =
        sqlx::query_scalar("SELECT expected_return FROM recommendations ORDER BY rank").fetch_all(&pool).await.unwrap();
    let want: Vec<f64> = day.rows.iter().map(|r| r.expected_return).collect();
    assert_eq!(stored, want);
    // ...and a failing run of a new date leaves no run row at all.
    run(bad, date("2012-12-28")).await.unwrap_err();
    assert_eq!(counts(&pool).await, (1, 5, 5));
}
