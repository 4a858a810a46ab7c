//! Walk-forward tests: fold properties, no look-ahead (by construction and by perturbing later prices), metrics
//! against hand-computed values, an SMA crossover against an independent loop, and a shuffled-label control.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use proptest::prelude::*;
use stockcast_backtest::BacktestConfig;
use stockcast_backtest::metrics::{self, average_ranks};
use stockcast_backtest::portfolio::{self, Fill, Market, Rule, StrategyConfig};
use stockcast_backtest::runner::{self, ModelSpec, RunOptions};
use stockcast_backtest::split::{SplitConfig, WindowKind};
use stockcast_features::polars::prelude::*;
use stockcast_features::{Checked, FeatureMatrix, FeatureSpec, LoadOptions, MatrixOptions, PriceFrame, SynthConfig};
use stockcast_models::{Dataset, History, ModelConfig};

mod overfit;
mod shard;
mod sweep;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// The evaluation of a walk-forward with the default strategy and report (seed 1, horizon 5).
fn evaluate_defaults(
    wf: &runner::WalkForward,
    models: &[runner::ModelSpec],
    market: &Market,
) -> stockcast_backtest::report::Evaluation {
    let facts = stockcast_backtest::report::RunFacts { seed: 1, horizon: 5 };
    stockcast_backtest::report::evaluate(wf, models, market, &Checked::default(), None, facts, &Checked::default())
        .unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

// ---------------------------------------------------------------- splits

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn folds_never_overlap_and_keep_the_gap(
        n in 50usize..2000,
        min_train in 10usize..400,
        test in 1usize..200,
        extra_step in 0usize..50,
        horizon in 1usize..20,
        extra_gap in 0usize..10,
        valid in 0usize..40,
        rolling in any::<bool>(),
        train_days_extra in 0usize..300,
        refit in 1usize..4,
    ) {
        let cfg = SplitConfig {
            window: if rolling { WindowKind::Rolling } else { WindowKind::Expanding },
            train_days: min_train + train_days_extra,
            min_train_days: min_train,
            test_days: test,
            step_days: Some(test + extra_step),
            gap_days: Some(horizon + extra_gap),
            valid_days: valid,
            refit_every: refit,
            ..SplitConfig::default()
        };
        let gap = horizon + extra_gap;
        let Ok(folds) = cfg.folds(n, horizon) else {
            // Refused only for a reason: too little data or a validation tail that does not fit.
            prop_assert!(min_train + gap >= n || (valid > 0 && valid + gap >= min_train));
            return Ok(());
        };
        let mut last_test_end = 0;
        for f in &folds {
            prop_assert!(!f.train.is_empty() && !f.test.is_empty());
            prop_assert!(f.train.end + gap <= f.test.start, "train {:?} + gap {gap} vs test {:?}", f.train, f.test);
            if !f.valid.is_empty() {
                prop_assert!(f.train.end + gap <= f.valid.start);
                prop_assert!(f.valid.end + gap <= f.test.start);
            }
            prop_assert!(f.test.start >= last_test_end, "test windows overlap");
            prop_assert!(f.test.end <= n);
            last_test_end = f.test.end;
            prop_assert!(f.fit_fold <= f.id && f.id - f.fit_fold < refit);
            if rolling {
                let inner_gap = if f.valid.is_empty() { 0 } else { gap };
                prop_assert!(f.train.len() + f.valid.len() + inner_gap <= cfg.train_days);
            } else {
                prop_assert_eq!(f.train.start, 0);
            }
        }
        // Contiguous steps cover every date from the first test date to the end exactly once.
        if extra_step == 0 {
            prop_assert_eq!(folds[0].test.start, min_train + gap);
            prop_assert!(folds.windows(2).all(|w| w[0].test.end == w[1].test.start));
            prop_assert_eq!(folds.last().unwrap().test.end, n);
        }
    }
}

/// `prices` with each bar of the symbols in `thin` deleted with probability `p` (seeded).
fn delete_bars(prices: &PriceFrame, thin: &[&str], p: f64, seed: u64) -> PriceFrame {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let df = prices.df();
    let syms: Vec<String> = symbol_strings(df);
    let keep: BooleanChunked = syms.iter().map(|s| !(thin.contains(&s.as_str()) && rng.random::<f64>() < p)).collect();
    PriceFrame::from_df(df.filter(&keep).unwrap()).unwrap()
}

/// The symbol of every row.
fn symbol_strings(df: &DataFrame) -> Vec<String> {
    let c = df.column("symbol").unwrap().cast(&DataType::String).unwrap();
    c.str().unwrap().iter().map(|s| s.unwrap().to_owned()).collect()
}

/// Each symbol's trading dates, read from the price frame itself.
fn symbol_dates(prices: &PriceFrame) -> BTreeMap<String, Vec<NaiveDate>> {
    let df = prices.df();
    let syms = symbol_strings(df);
    let days = df.column("date").unwrap().date().unwrap().physical().clone();
    let mut out: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
    for (s, d) in syms.into_iter().zip(days.into_no_null_iter()) {
        out.entry(s).or_default().push(stockcast_features::prices::days_to_date(d).unwrap());
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn no_training_label_window_reaches_the_next_window_with_deleted_bars(
        seed in 0u64..1000,
        horizon in 1usize..6,
        open_label in any::<bool>(),
        p in 0.05f64..0.5,
        boundary in 40usize..110,
    ) {
        let full = synth(3, 130, seed);
        let prices = delete_bars(&full, &["S0001", "S0002"], p, seed + 1);
        let mut spec = FeatureSpec::from_toml("[[features]]\nfamily = \"returns\"\nwindows = [1]\n").unwrap().into_inner();
        spec.label.horizon = horizon;
        spec.label.price = if open_label { stockcast_features::LabelPrice::Open } else { stockcast_features::LabelPrice::Close };
        let data = dataset(&prices, &spec);
        let cal = stockcast_backtest::split::calendar(data.matrix.index.iter().map(|(_, d)| *d));
        let before = cal[boundary];
        // The union-calendar gap of the splitter: training dates end `horizon` dates before the boundary.
        let to = cal[boundary - horizon - 1];
        let rows = runner::training_rows(&data, cal[0], to, before, spec.label.span_rows());
        let dates = symbol_dates(&prices);
        let span = horizon + usize::from(open_label);
        let y = data.matrix.y.as_ref().unwrap();
        let ends_before = |i: usize| {
            let (s, d) = &data.matrix.index[i];
            let own = &dates[&**s];
            let pos = own.binary_search(d).unwrap();
            own.get(pos + span).is_some_and(|end| *end < before)
        };
        for &i in &rows {
            prop_assert!(data.matrix.index[i].1 <= to);
            prop_assert!(ends_before(i), "row {:?}: its label window reaches {before}", data.matrix.index[i]);
        }
        // Nothing else is purged: every labelled, complete row in range whose window ends before is kept.
        let expected: Vec<usize> = (0..data.len())
            .filter(|&i| data.matrix.index[i].1 <= to && y[i].is_finite()
                && data.matrix.x.row(i).iter().all(|v| v.is_finite()) && ends_before(i))
            .collect();
        prop_assert_eq!(rows, expected);
    }
}

#[test]
fn a_symbol_missing_bars_before_the_test_start_loses_the_labels_that_cross_it() {
    // S0001 has no bars for the 8 dates before the boundary: its rows just before the gap have labels that end
    // after the boundary in its own rows; the calendar gap alone would keep them.
    let full = synth(2, 120, 3);
    let cal = symbol_dates(&full)["S0000"].clone();
    let boundary = 80;
    let hole: Vec<NaiveDate> = cal[boundary - 8..boundary].to_vec();
    let df = full.df();
    let syms: Vec<String> = symbol_strings(df);
    let days: Vec<NaiveDate> = df
        .column("date")
        .unwrap()
        .date()
        .unwrap()
        .physical()
        .into_no_null_iter()
        .map(|d| stockcast_features::prices::days_to_date(d).unwrap())
        .collect();
    let keep: BooleanChunked = syms.iter().zip(&days).map(|(s, d)| !(s == "S0001" && hole.contains(d))).collect();
    let prices = PriceFrame::from_df(df.filter(&keep).unwrap()).unwrap();
    let spec =
        FeatureSpec::from_toml("[label]\nhorizon = 5\n[[features]]\nfamily = \"returns\"\nwindows = [1]\n").unwrap();
    let data = dataset(&prices, &spec);
    let to = cal[boundary - 5 - 1];
    let rows = runner::training_rows(&data, cal[0], to, cal[boundary], spec.label.span_rows());
    let last_kept =
        |sym: &str| rows.iter().map(|&i| &data.matrix.index[i]).filter(|(s, _)| &**s == sym).map(|(_, d)| *d).max();
    // S0000 trades every date: its last kept row is the last training date (span 6 = 5 + next open, gap 5).
    assert_eq!(last_kept("S0000"), Some(cal[boundary - 6 - 1]).min(Some(to)));
    // S0001: its last 6 own rows before the hole all have label windows ending on or after the boundary.
    let own = &symbol_dates(&prices)["S0001"];
    let pos = own.partition_point(|d| *d < cal[boundary]);
    assert_eq!(last_kept("S0001"), Some(own[pos - 7]));
    assert!(own[pos - 7] < to);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn cpcv_splits_purge_embargo_and_make_complete_paths(
        n in 200usize..1500,
        groups in 2usize..9,
        k_raw in 1usize..8,
        embargo in 0usize..15,
    ) {
        let k = 1 + (k_raw - 1) % (groups - 1);
        let cfg = SplitConfig {
            kind: stockcast_backtest::split::SplitKind::Cpcv,
            groups,
            test_groups: k,
            embargo_days: Some(embargo),
            ..SplitConfig::default()
        };
        let folds = cfg.folds(n, 5).unwrap();
        let choose = stockcast_backtest::split::choose;
        prop_assert_eq!(folds.len(), choose(groups, k) * k);
        let tests: Vec<std::ops::Range<usize>> = {
            let mut t: Vec<_> = folds.iter().map(|f| f.test.clone()).collect();
            t.sort_by_key(|r| r.start);
            t.dedup();
            t
        };
        prop_assert_eq!(tests.len(), groups);
        prop_assert_eq!(tests.first().unwrap().start, 0);
        prop_assert_eq!(tests.last().unwrap().end, n);
        for f in &folds {
            let split: Vec<&stockcast_backtest::Fold> = folds.iter().filter(|g| g.fit_fold == f.fit_fold).collect();
            prop_assert_eq!(split.len(), k);
            for (part, before) in &f.train_parts {
                for t in &split {
                    // No training date inside a test group, and none in the embargo after one.
                    prop_assert!(part.end <= t.test.start || part.start >= t.test.end + embargo, "{part:?} vs {:?}", t.test);
                }
                // Labels are purged against the next test group (or nothing follows).
                prop_assert!(*before >= part.end);
                prop_assert!(*before == n || split.iter().any(|t| t.test.start == *before));
            }
        }
        // Every group is tested C(N-1, k-1) times, once on each path.
        let paths = choose(groups - 1, k - 1);
        for p in 0..paths {
            let mut covered: Vec<std::ops::Range<usize>> = folds.iter().filter(|f| f.path == p).map(|f| f.test.clone()).collect();
            covered.sort_by_key(|r| r.start);
            prop_assert_eq!(&covered, &tests, "path {}", p);
        }
        prop_assert!(folds.iter().all(|f| f.path < paths));
    }
}

#[test]
fn a_cpcv_run_predicts_every_date_on_every_path() {
    let prices = synth(12, 600, 8);
    let spec = FeatureSpec::from_toml("[[features]]\nfamily = \"returns\"\nwindows = [1, 5, 20]\n").unwrap();
    let data = dataset(&prices, &spec);
    let split = SplitConfig {
        kind: stockcast_backtest::split::SplitKind::Cpcv,
        groups: 5,
        test_groups: 2,
        ..SplitConfig::default()
    };
    let models = vec![model("linear", "kind = \"linear\"\nalpha = 0.01")];
    let wf = runner::run(&data, &models, &split, RunOptions::new(&spec.label, 3, 2), &|_, _, _, _| {}).unwrap();
    let paths = &wf.paths["linear"];
    assert_eq!(paths.len(), 4); // C(4, 1)
    let keys = |v: &[runner::OosPrediction]| -> Vec<(String, NaiveDate)> {
        v.iter().map(|p| (p.symbol.to_string(), p.date)).collect()
    };
    let first = keys(&paths[0]);
    assert_eq!(first, keys(&wf.predictions["linear"]));
    assert_eq!(first.len(), data.len(), "every row predicted once per path");
    for p in &paths[1..] {
        assert_eq!(keys(p), first);
    }
    // Different paths come from different fits: some scores differ.
    assert!(paths[0].iter().zip(&paths[1]).any(|(a, b)| a.score.to_bits() != b.score.to_bits()));
    assert!(
        wf.results.iter().all(|r| r.train_rows > 100),
        "{:?}",
        wf.results.iter().map(|r| r.train_rows).collect::<Vec<_>>()
    );
    let market = Market::from_prices(&prices).unwrap();
    let eval = evaluate_defaults(&wf, &models, &market);
    let c = eval.models[0].cpcv.as_ref().unwrap();
    assert_eq!((c.paths, c.sharpe.len(), c.rank_ic.len()), (4, 4, 4));
    assert!(c.sharpe.iter().all(|s| s.is_finite()));
}

#[test]
fn a_gap_shorter_than_the_horizon_is_refused() {
    let cfg = SplitConfig { gap_days: Some(2), ..SplitConfig::default() };
    let e = cfg.folds(2000, 5).unwrap_err().to_string();
    assert!(e.contains("shorter than the label horizon"), "{e}");
    let cfg = SplitConfig { step_days: Some(10), test_days: 20, ..SplitConfig::default() };
    assert!(cfg.folds(2000, 5).unwrap_err().to_string().contains("overlap"));
}

// ---------------------------------------------------------------- synthetic data

fn synth(symbols: usize, days: usize, seed: u64) -> PriceFrame {
    let df = stockcast_features::synth_prices(&SynthConfig::new(symbols, days, seed)).unwrap();
    let df = df.sort(["symbol", "date"], SortMultipleOptions::default()).unwrap();
    PriceFrame::from_df(df).unwrap()
}

fn dataset(prices: &PriceFrame, spec: &FeatureSpec) -> Dataset {
    let ff = stockcast_features::build_features(prices, &Checked::new(spec.clone()).unwrap()).unwrap();
    let m = FeatureMatrix::from_frame(&ff, MatrixOptions::default()).unwrap();
    Dataset::new(m, Arc::new(History::from_prices(prices).unwrap()))
}

fn model(name: &str, toml: &str) -> ModelSpec {
    ModelSpec { name: name.into(), config: ModelConfig::from_toml(toml).unwrap() }
}

fn small_models() -> Vec<ModelSpec> {
    vec![
        model("gbm", "kind = \"gbm\"\nrounds = 20\nmax_depth = 3\nnthread = 1\nearly_stopping_rounds = 5"),
        model("linear", "kind = \"linear\"\nalpha = 0.01"),
        model("forecast", "kind = \"forecast\"\nmethod = \"ets\"\nhistory_days = 200"),
        model("momentum", "kind = \"rule\"\nrule = \"momentum\"\nlookback = 20"),
        model("lstm", "kind = \"lstm\"\nlookback = 5\nhidden = 4\nepochs = 1\nbatch_size = 128\npatience = 1"),
    ]
}

fn split() -> SplitConfig {
    SplitConfig { min_train_days: 300, test_days: 60, valid_days: 40, ..SplitConfig::default() }
}

#[test]
fn every_prediction_comes_from_a_fit_that_ended_a_gap_before_it() {
    let prices = synth(12, 520, 3);
    let data = dataset(&prices, &FeatureSpec::default());
    let opts = RunOptions::new(&FeatureSpec::default().label, 1, 2);
    let wf = runner::run(&data, &small_models(), &split(), opts, &|_, _, _, _| {}).unwrap();
    let pos = |x: NaiveDate| wf.calendar.binary_search(&x).unwrap();
    assert_eq!(wf.results.len(), 5 * wf.folds.len());
    for r in &wf.results {
        // The fit saw rows up to train_end, whose labels reach train_end + horizon < test_start.
        assert!(pos(r.train_end) + 5 < pos(r.test_start), "{r:?}");
        for p in wf.predictions[&r.model].iter().filter(|p| p.fold as usize == r.fold) {
            assert!(p.date >= r.test_start && p.date <= r.test_end);
            assert!(pos(p.date) > pos(r.train_end) + 5);
        }
    }
    // Every model predicted every test row.
    let n = wf.predictions["gbm"].len();
    assert!(n > 0 && wf.predictions.values().all(|v| v.len() == n));
}

/// A memory limit changes which fits run together, never what they produce: runs whose limit leaves room for
/// one task at a time and for every task at once equal the unlimited run (predictions bit for bit, every fold's
/// rows and metrics). Which tasks are held back under a budget is `next_task`'s unit test.
#[test]
fn a_memory_limit_changes_no_prediction_or_metric() {
    let prices = synth(12, 520, 3);
    let data = dataset(&prices, &FeatureSpec::default());
    let opts = RunOptions::new(&FeatureSpec::default().label, 1, 2);
    let models = small_models();
    let run = |o: RunOptions| runner::run(&data, &models, &split(), o, &|_, _, _, _| {}).unwrap();
    let free = run(opts);
    let plan = runner::plan(&data, &models, &split(), opts).unwrap();
    let sizes: Vec<u64> = plan.tasks.iter().map(|t| runner::task_bytes(&plan, &data, &models[t.model], t)).collect();
    assert!(sizes.iter().all(|&b| b > 0) && sizes.iter().any(|&b| b != sizes[0]), "{sizes:?}");
    for limit in [1, u64::MAX] {
        let limited = run(RunOptions { memory_limit: Some(limit), ..opts });
        let strip = |wf: &runner::WalkForward| -> Vec<String> {
            wf.results
                .iter()
                .map(|r| {
                    format!("{} {} {} {} {:?} {:?}", r.model, r.fold, r.train_rows, r.test_rows, r.signal, r.forecast)
                })
                .collect()
        };
        assert_eq!(strip(&free), strip(&limited), "limit {limit}");
        for m in &models {
            let bits = |v: &[runner::OosPrediction]| -> Vec<(String, NaiveDate, u32, u64, u64)> {
                v.iter().map(|p| (p.symbol.to_string(), p.date, p.fold, p.score.to_bits(), p.label.to_bits())).collect()
            };
            assert_eq!(
                bits(&free.predictions[&m.name]),
                bits(&limited.predictions[&m.name]),
                "{} limit {limit}",
                m.name
            );
        }
    }
}

/// Multiplies every price after `after` by a random factor per row (keeping each bar consistent).
fn perturb_after(prices: &PriceFrame, after: NaiveDate) -> PriceFrame {
    let mut df = prices.df().clone();
    let cutoff = stockcast_features::prices::date_to_days(after);
    let dates = df.column("date").unwrap().cast(&DataType::Int32).unwrap();
    let dates: Vec<i32> = dates.i32().unwrap().into_no_null_iter().collect();
    let factor: Vec<f64> =
        dates.iter().enumerate().map(|(i, d)| if *d > cutoff { 1.5 + (i % 7) as f64 * 0.1 } else { 1.0 }).collect();
    for c in ["open", "high", "low", "close"] {
        let v: Vec<f64> =
            df.column(c).unwrap().f64().unwrap().into_no_null_iter().zip(&factor).map(|(x, f)| x * f).collect();
        df.with_column(Column::new(c.into(), v)).unwrap();
    }
    PriceFrame::from_df(df).unwrap()
}

#[test]
fn changing_prices_after_a_fold_never_changes_its_predictions() {
    let prices = synth(10, 560, 5);
    let spec = FeatureSpec::default();
    let opts = RunOptions::new(&spec.label, 9, 1);
    let models = small_models();
    let base = runner::run(&dataset(&prices, &spec), &models, &split(), opts, &|_, _, _, _| {}).unwrap();
    assert!(base.folds.len() >= 3);
    let fold1_end = base.calendar[base.folds[1].test.end - 1];
    let changed = perturb_after(&prices, fold1_end);
    let after = runner::run(&dataset(&changed, &spec), &models, &split(), opts, &|_, _, _, _| {}).unwrap();
    for m in &models {
        let keep = |v: &[runner::OosPrediction]| -> Vec<(String, NaiveDate, u64)> {
            v.iter().filter(|p| p.fold <= 1).map(|p| (p.symbol.to_string(), p.date, p.score.to_bits())).collect()
        };
        let (a, b) = (keep(&base.predictions[&m.name]), keep(&after.predictions[&m.name]));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{}: folds 0-1 changed when only later prices changed", m.name);
        // ... and the later fold does change (the perturbation is real).
        let later = |v: &[runner::OosPrediction]| {
            v.iter().filter(|p| p.fold == 2).map(|p| p.score.to_bits()).collect::<Vec<_>>()
        };
        if m.name != "lstm" {
            assert_ne!(later(&base.predictions[&m.name]), later(&after.predictions[&m.name]), "{}", m.name);
        }
    }
}

// ---------------------------------------------------------------- metrics by hand

#[test]
fn ic_and_rank_ic_match_hand_computations() {
    // Scores 1,2,3,4 vs labels 1,3,2,4: Pearson = 0.8, Spearman = 0.8.
    let day = d(2020, 1, 2);
    let rows = [(day, 1.0, 1.0), (day, 2.0, 3.0), (day, 3.0, 2.0), (day, 4.0, 4.0)];
    let ic = metrics::daily_ic(rows);
    assert!(close(ic[0].ic, 0.8, 1e-12) && close(ic[0].rank_ic, 0.8, 1e-12), "{ic:?}");
    // Ties share the average rank: [1, 2, 2, 3] → ranks [1, 2.5, 2.5, 4].
    assert_eq!(average_ranks(&[1.0, 2.0, 2.0, 3.0]), vec![1.0, 2.5, 2.5, 4.0]);
    // Spearman with ties = Pearson of ranks: x ranks [1,2.5,2.5,4], y = [1,2,3,4].
    // mean 2.5; cov = (-1.5·-1.5 + 0 + 0 + 1.5·1.5) = 4.5; var x = 4.5, var y = 5 → 4.5/√22.5.
    let r = metrics::spearman(&[1.0, 2.0, 2.0, 3.0], &[10.0, 20.0, 30.0, 40.0]);
    assert!(close(r, 4.5 / 22.5_f64.sqrt(), 1e-12), "{r}");
    // Fewer than three pairs: no IC that date; NaN labels are skipped.
    let rows = [(day, 1.0, 1.0), (day, 2.0, f64::NAN), (day, 3.0, 2.0)];
    assert!(metrics::daily_ic(rows).is_empty());
    // Summary: daily rank ICs 0.2, 0.4 → mean 0.3, std √0.02, ICIR 0.3/√0.02, hit rate 1.
    let daily = vec![
        metrics::DateIc { date: day, n: 3, ic: 0.1, rank_ic: 0.2 },
        metrics::DateIc { date: d(2020, 1, 3), n: 3, ic: 0.3, rank_ic: 0.4 },
    ];
    let s = metrics::signal_stats(&daily);
    assert!(
        close(s.rank_ic, 0.3, 1e-12) && close(s.rank_icir, 0.3 / 0.02_f64.sqrt(), 1e-9) && close(s.hit_rate, 1.0, 0.0)
    );
    assert!(close(s.t_stat, 0.3 / 0.02_f64.sqrt() * 2f64.sqrt(), 1e-9));
}

#[test]
fn performance_statistics_match_hand_computations() {
    let eq = [100.0, 110.0, 99.0, 108.9, 120.0];
    let r = metrics::returns(&eq);
    assert!(close(r[0], 0.1, 1e-12) && close(r[1], -0.1, 1e-12) && close(r[2], 0.1, 1e-12));
    // Max drawdown: peak 110 → 99 = −10 %, 2 days below the peak (99, 108.9), then a new high.
    let (dd, days) = metrics::max_drawdown(&eq);
    assert!(close(dd, -0.1, 1e-12) && days == 2, "{dd} {days}");
    // CAGR over 4 daily returns: (1.2)^(252/4) − 1.
    assert!(close(metrics::cagr(&eq), 1.2_f64.powf(63.0) - 1.0, 1e-9));
    // Sharpe with rf = 0: mean / sample std · √252.
    let mean = r.iter().sum::<f64>() / 4.0;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    assert!(close(metrics::sharpe(&r, 0.0), mean / sd * 252f64.sqrt(), 1e-12));
    // Sortino: downside deviation over all 4 days = √(0.1² / 4) = 0.05.
    assert!(close(metrics::sortino(&r, 0.0), mean / 0.05 * 252f64.sqrt(), 1e-12));
    // Calmar = CAGR / 10 %.
    assert!(close(metrics::calmar(&eq), metrics::cagr(&eq) / 0.1, 1e-12));
    // Forecast errors: scores 0.01, −0.02 vs labels 0.02, −0.01 → MAE 0.01, relative MAE 0.01 / 0.015.
    let f = metrics::forecast_stats([(0.01, 0.02), (-0.02, -0.01)]);
    assert!(close(f.mae, 0.01, 1e-12) && close(f.rmse, 0.01, 1e-12) && close(f.relative_mae, 0.01 / 0.015, 1e-12));
    assert!(close(f.directional_accuracy, 1.0, 0.0));
}

fn two_symbol_market() -> Market {
    // A rises 10 % a day (opens at the previous close), B is flat at 50.
    let dates: Vec<NaiveDate> = (0..5).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let mut rows = Vec::new();
    let mut a = 100.0;
    for dt in &dates {
        rows.push(("A".to_string(), *dt, a, a * 1.1));
        rows.push(("B".to_string(), *dt, 50.0, 50.0));
        a *= 1.1;
    }
    Market::from_rows(rows)
}

#[test]
fn costs_turnover_and_fills_match_hand_computations() {
    let market = two_symbol_market();
    // Hold A (score 1 > B's 0) every day, fills at the next open, 10 bps commission + 10 bps slippage.
    let scores: BTreeMap<(NaiveDate, String), f64> =
        market.dates.iter().flat_map(|dt| [((*dt, "A".to_string()), 1.0), ((*dt, "B".to_string()), 0.0)]).collect();
    let cfg = StrategyConfig {
        rule: Rule::TopK { k: 1, n_drop: None },
        commission_bps: 10.0,
        slippage_bps: 10.0,
        capital: 1000.0,
        ..StrategyConfig::default()
    };
    // A 3rd symbol is not needed: B is only the loser.
    let sim = portfolio::simulate(&Checked::new(cfg.clone()).unwrap(), &market, &scores, None).unwrap();
    // Day 0: signal only. Day 1: buy at open 110 · 1.001 with equity 1000 / 1.002 to spend.
    let exec = 110.0 * 1.001;
    let shares = 1000.0 / 1.002 / 110.0;
    let cash = 1000.0 - shares * exec * 1.001;
    assert!(close(sim.equity[0], 1000.0, 1e-12));
    assert!(close(sim.equity[1], cash + shares * 121.0, 1e-9), "{} vs {}", sim.equity[1], cash + shares * 121.0);
    // One-way turnover on day 1: ½ · traded value (at the open, before slippage) / equity before the trade.
    assert!(close(sim.turnover[1], 0.5 * shares * 110.0 / 1000.0, 1e-9));
    assert!(close(sim.stats.turnover_two_way, 2.0 * sim.stats.turnover, 1e-12));
    // Later days re-weight a single name: nothing to trade but tiny drift corrections are not needed (k = 1).
    assert!(sim.turnover[2..].iter().all(|t| *t < 1e-12), "{:?}", sim.turnover);
    // Slippage: 10 bps of the open; commission: 10 bps of the executed value (open + slippage).
    assert!(close(sim.stats.costs, shares * (110.0 * 0.001 + exec * 0.001) / 1000.0, 1e-9));
    assert_eq!(sim.stats.fills, 1);
    // Benchmark: mean of A's 10 % and B's 0 % each day from day 1.
    assert!(close(sim.benchmark[4], 1000.0 * 1.05_f64.powi(4), 1e-9));
}

#[test]
fn a_full_rotation_between_two_symbols_is_one_way_turnover_one() {
    // Flat prices; day 0 scores A best, day 1 B best; no costs, close fills: day 0 buys A from cash, day 1 sells
    // all of A and buys B with the proceeds.
    let dates: Vec<NaiveDate> = (0..3).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let rows = dates.iter().flat_map(|dt| ["A", "B"].map(|s| (s.to_string(), *dt, 10.0, 10.0)));
    let market = Market::from_rows(rows);
    let mut scores = BTreeMap::new();
    for (i, dt) in dates.iter().enumerate() {
        scores.insert((*dt, "A".to_string()), if i == 0 { 1.0 } else { 0.0 });
        scores.insert((*dt, "B".to_string()), if i == 0 { 0.0 } else { 1.0 });
    }
    let cfg =
        StrategyConfig { rule: Rule::TopK { k: 1, n_drop: None }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(cfg.clone()).unwrap(), &market, &scores, None).unwrap();
    // Day 0: bought 100 % from cash (one-way ½); day 1: sold 100 % and bought 100 % (one-way 1); day 2: nothing.
    assert!(close(sim.turnover[0], 0.5, 1e-12), "{:?}", sim.turnover);
    assert!(close(sim.turnover[1], 1.0, 1e-12), "{:?}", sim.turnover);
    assert!(sim.turnover[2].abs() < 1e-12, "{:?}", sim.turnover);
    assert!(close(sim.stats.turnover, 0.5, 1e-12));
    assert!(close(sim.stats.turnover_two_way, 1.0, 1e-12));
}

/// A at 10 every day; B at 20 on days 0..=2, then no more bars (delisted) while the panel goes on to day 5.
fn delisting_market() -> Market {
    let dates: Vec<NaiveDate> = (0..6).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let mut rows = Vec::new();
    for (i, dt) in dates.iter().enumerate() {
        rows.push(("A".to_string(), *dt, 10.0, 10.0));
        if i <= 2 {
            rows.push(("B".to_string(), *dt, 20.0, 20.0 + i as f64));
        }
    }
    Market::from_rows(rows)
}

#[test]
fn a_held_symbol_whose_prices_stop_is_liquidated_at_its_last_close() {
    let market = delisting_market();
    // B always scores best (it is scored only while it trades), so the rule holds B until it disappears.
    let mut scores = BTreeMap::new();
    for (i, dt) in market.dates.iter().enumerate() {
        scores.insert((*dt, "A".to_string()), 0.0);
        if i <= 2 {
            scores.insert((*dt, "B".to_string()), 1.0);
        }
    }
    for delisting_return in [0.0, -0.5] {
        let cfg = StrategyConfig {
            rule: Rule::TopK { k: 1, n_drop: None },
            fill: Fill::Close,
            rebalance_days: 10, // no rebalance after day 0: only the delisting may sell B
            capital: 1000.0,
            delisting_return,
            ..StrategyConfig::default()
        };
        let sim = portfolio::simulate(&Checked::new(cfg.clone()).unwrap(), &market, &scores, None).unwrap();
        // Bought 50 shares of B at 20 on day 0; its last close is 22 on day 2; sold on day 3 at 22 · (1 + r).
        let cash = 50.0 * 22.0 * (1.0 + delisting_return);
        assert_eq!(sim.stats.delisted, 1);
        let b = sim.trades.iter().find(|t| t.symbol == "B").unwrap();
        assert_eq!(b.exit_date, Some(market.dates[3]));
        assert!(close(b.exit_price, 22.0 * (1.0 + delisting_return), 1e-12));
        // After the delisting the equity is cash: it no longer moves with (or is marked at) B.
        for i in 3..6 {
            assert!(close(sim.equity[i], cash, 1e-9), "day {i}: {} vs {cash}", sim.equity[i]);
            assert!(sim.exposure[i].abs() < 1e-12);
        }
    }
}

#[test]
fn an_order_for_a_missing_bar_fills_at_the_symbol_next_bar() {
    // B has no bar on day 1 (the fill day of day 0's signal) and trades again on day 2 at 30.
    let dates: Vec<NaiveDate> = (0..4).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let mut rows = Vec::new();
    for (i, dt) in dates.iter().enumerate() {
        rows.push(("A".to_string(), *dt, 10.0, 10.0));
        if i != 1 {
            rows.push(("B".to_string(), *dt, 30.0, 30.0));
        }
    }
    let market = Market::from_rows(rows);
    let scores: BTreeMap<(NaiveDate, String), f64> =
        [((dates[0], "A".to_string()), 0.0), ((dates[0], "B".to_string()), 1.0), ((dates[3], "A".to_string()), 0.0)]
            .into_iter()
            .collect();
    let cfg = StrategyConfig {
        rule: Rule::TopK { k: 1, n_drop: None },
        rebalance_days: 10,
        capital: 900.0,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cfg.clone()).unwrap(), &market, &scores, None).unwrap();
    let b = sim.trades.iter().find(|t| t.symbol == "B").expect("the order for B waited and filled");
    assert_eq!(b.entry_date, dates[2]);
    assert!(close(b.entry_price, 30.0, 1e-12));
    assert!(close(sim.equity[3], 900.0, 1e-9));
    assert!(close(sim.exposure[2], 1.0, 1e-9), "{:?}", sim.exposure);
}

#[test]
fn long_short_and_n_drop_pick_the_documented_names() {
    let dates: Vec<NaiveDate> = (0..3).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let syms = ["A", "B", "C", "D"];
    let rows = dates.iter().flat_map(|dt| syms.iter().map(move |s| (s.to_string(), *dt, 10.0, 10.0)));
    let market = Market::from_rows(rows);
    // Day 0 ranks A > B > C > D; day 1 ranks D > C > B > A.
    let mut scores = BTreeMap::new();
    for (i, s) in syms.iter().enumerate() {
        scores.insert((dates[0], s.to_string()), -(i as f64));
        scores.insert((dates[1], s.to_string()), i as f64);
    }
    let ls = StrategyConfig { rule: Rule::LongShort { k: 1 }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(ls.clone()).unwrap(), &market, &scores, None).unwrap();
    // Flat prices: long A/short D then long D/short A; all trades break even, exposure 1.
    assert!(close(sim.stats.exposure, 1.0, 1e-9), "{}", sim.stats.exposure);
    assert_eq!(sim.trades.iter().filter(|t| t.symbol == "A" && t.side == 1).count(), 1);
    assert_eq!(sim.trades.iter().filter(|t| t.symbol == "A" && t.side == -1).count(), 1);
    // Top 2 with n_drop = 1: day 0 holds A, B; day 1 drops only the worst held (A) for the best new (D).
    let td =
        StrategyConfig { rule: Rule::TopK { k: 2, n_drop: Some(1) }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(td.clone()).unwrap(), &market, &scores, None).unwrap();
    let held_day1: Vec<&str> = sim
        .trades
        .iter()
        .filter(|t| t.entry_date <= dates[1] && t.exit_date.is_none_or(|x| x > dates[1]))
        .map(|t| t.symbol.as_str())
        .collect();
    let mut held = held_day1.clone();
    held.sort_unstable();
    assert_eq!(held, vec!["B", "D"], "{:?}", sim.trades);
}

// ---------------------------------------------------------------- the market from a price frame

/// The market read from the price frame's columns (a dense day index, a row at a time) holds what the row-wise
/// constructor makes of the same bars (calendar sorted, symbols and dates searched): the raw us5 panel, whose
/// symbols start and end on different dates, and a synthetic one.
#[test]
fn a_market_from_the_price_columns_equals_one_from_its_rows() {
    let root =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time")).join("../..");
    let us5 = stockcast_features::load_prices(&root.join("datasets/us5_daily.csv"), &LoadOptions::default()).unwrap();
    for prices in [us5.prices, synth(40, 300, 5)] {
        let market = Market::from_prices(&prices).unwrap();
        let rows = prices
            .series_with(stockcast_features::SeriesColumns { open: true, ..stockcast_features::SeriesColumns::CLOSE })
            .unwrap();
        let by_rows = Market::from_rows(rows.iter().flat_map(|s| {
            s.dates
                .iter()
                .enumerate()
                .map(|(i, d)| (s.symbol.clone(), *d, s.open.as_ref().map_or(f64::NAN, |o| o[i]), s.close[i]))
        }));
        assert_eq!((&market.dates, &market.symbols), (&by_rows.dates, &by_rows.symbols));
        let bits =
            |v: &Vec<Vec<f64>>| v.iter().map(|r| r.iter().map(|x| x.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>();
        assert_eq!(bits(&market.open), bits(&by_rows.open));
        assert_eq!(bits(&market.close), bits(&by_rows.close));
        assert!(market.dates.len() > 250 && market.close.iter().flatten().filter(|c| c.is_finite()).count() > 10_000);
        // Volume: each bar's, NaN where a symbol has no bar.
        let volume = prices.df().column("volume").unwrap().f64().unwrap().iter().flatten().sum::<f64>();
        let summed: f64 = market.volume.iter().flatten().filter(|v| v.is_finite()).sum();
        assert!((summed - volume).abs() <= 1e-9 * volume.abs(), "{summed} vs {volume}");
    }
}

// ---------------------------------------------------------------- SMA crossover vs an independent loop

#[test]
fn sma_crossover_trades_match_an_independent_loop() {
    let root =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time")).join("../..");
    let loaded = stockcast_features::load_prices(
        &root.join("datasets/us5_daily.csv"),
        &LoadOptions {
            read: stockcast_features::ReadOptions { symbol: Some("MSFT".into()), ..Default::default() },
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let prices = loaded.prices;
    let mut spec = FeatureSpec::default();
    spec.label.horizon = 1;
    let data = dataset(&prices, &spec);
    let cfg = stockcast_backtest::BacktestConfig::from_file(&root.join("configs/backtest_sma_cross.toml")).unwrap();
    let models = cfg.model_specs().unwrap();
    let wf = runner::run(&data, &models, &cfg.split, RunOptions::new(&spec.label, 0, 1), &|_, _, _, _| {}).unwrap();
    let market = Market::from_prices(&prices).unwrap();
    let scores: BTreeMap<(NaiveDate, String), f64> =
        wf.predictions["sma_10_20"].iter().map(|p| ((p.date, p.symbol.to_string()), p.score)).collect();
    let sim = portfolio::simulate(&cfg.strategy, &market, &scores, None).unwrap();

    // The loop: SMA10 and SMA20 of the close at t; long when SMA10 > SMA20; act at the next open; 0.2 % per side.
    let (dates, open, close_px) = (&market.dates, &market.open[0], &market.close[0]);
    let first = dates.binary_search(&wf.results[0].test_start).unwrap();
    let last = dates.binary_search(&wf.results.last().unwrap().test_end).unwrap();
    let (mut cash, mut shares) = (cfg.strategy.capital, 0.0);
    let mut trades: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::new();
    let mut want_long = false;
    for t in first..=last {
        if t > first {
            // Execute yesterday's decision at today's open.
            if want_long && shares == 0.0 {
                shares = cash / (open[t] * 1.002);
                cash = 0.0;
                trades.push((dates[t], None));
            } else if !want_long && shares > 0.0 {
                cash = shares * open[t] * (1.0 - 0.002);
                shares = 0.0;
                trades.last_mut().unwrap().1 = Some(dates[t]);
            }
        }
        let sma = |n: usize| close_px[t + 1 - n..=t].iter().sum::<f64>() / n as f64;
        want_long = t >= 19 && sma(10) > sma(20);
    }
    let final_equity = cash + shares * close_px[last];
    let got: Vec<(NaiveDate, Option<NaiveDate>)> = sim.trades.iter().map(|t| (t.entry_date, t.exit_date)).collect();
    assert!(trades.len() > 20, "{} trades", trades.len());
    assert_eq!(got, trades);
    assert!(close(*sim.equity.last().unwrap(), final_equity, 1e-9), "{} vs {final_equity}", sim.equity.last().unwrap());
}

// ---------------------------------------------------------------- leakage control

#[test]
fn models_trained_on_shuffled_labels_show_no_rank_ic() {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let prices = synth(200, 460, 11);
    let mut spec = FeatureSpec::default();
    spec.label.horizon = 5;
    let data = dataset(&prices, &spec);
    let truth: BTreeMap<(String, NaiveDate), f32> = data
        .matrix
        .index
        .iter()
        .map(|(s, d)| (s.to_string(), *d))
        .zip(data.matrix.y.as_ref().unwrap().iter().copied())
        .collect();
    let mut shuffled = data.clone();
    let y = std::sync::Arc::make_mut(&mut shuffled.matrix).y.as_mut().unwrap();
    let mut v: Vec<f32> = y.to_vec();
    v.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(4));
    *y = ndarray::Array1::from(v);
    let models = vec![
        model("gbm", "kind = \"gbm\"\nrounds = 40\nmax_depth = 4\nnthread = 2\nearly_stopping_rounds = 0"),
        model("linear", "kind = \"linear\"\nalpha = 0.01"),
    ];
    let split = SplitConfig { min_train_days: 300, test_days: 40, ..SplitConfig::default() };
    let wf = runner::run(&shuffled, &models, &split, RunOptions::new(&spec.label, 2, 1), &|_, _, _, _| {}).unwrap();
    for m in ["gbm", "linear"] {
        let rows =
            wf.predictions[m].iter().map(|p| (p.date, p.score, f64::from(truth[&(p.symbol.to_string(), p.date)])));
        let s = metrics::signal_stats(&metrics::daily_ic(rows));
        assert!(s.dates > 100, "{m}: {} dates", s.dates);
        assert!(s.rank_ic.abs() < 0.03, "{m}: mean Rank IC {} on shuffled labels", s.rank_ic);
    }
}

#[test]
fn a_strategy_parameter_of_another_kind_is_refused_and_the_toml_round_trips() {
    let parse = |body: &str| toml::from_str::<StrategyConfig>(body);
    for (body, field) in [
        ("kind = \"top_k\"\nthreshold = 0.1", "threshold"),
        ("kind = \"long_short\"\nn_drop = 1", "n_drop"),
        ("kind = \"threshold\"\nk = 3", "k"),
    ] {
        let e = parse(body).unwrap_err().to_string();
        assert!(e.contains(&format!("`{field}` does not apply")), "{body}: {e}");
    }
    let c = parse("kind = \"top_k\"\nk = 3\nn_drop = 1\ncommission_bps = 5").unwrap();
    assert_eq!(c.rule, Rule::TopK { k: 3, n_drop: Some(1) });
    assert_eq!(parse(&toml::to_string(&c).unwrap()).unwrap(), c);
    let t = parse("kind = \"threshold\"\nthreshold = 0.02").unwrap();
    assert_eq!(t.rule, Rule::Threshold { threshold: 0.02 });
    assert_eq!(parse("").unwrap(), StrategyConfig::default());
}

#[test]
fn a_label_that_does_not_start_at_the_fill_is_flagged() {
    let open = stockcast_features::LabelSpec::default();
    let close = stockcast_features::LabelSpec {
        price: stockcast_features::LabelPrice::Close,
        ..stockcast_features::LabelSpec::default()
    };
    assert!(stockcast_backtest::label_alignment(&open, Fill::NextOpen).aligned);
    assert!(stockcast_backtest::label_alignment(&close, Fill::Close).aligned);
    assert!(stockcast_backtest::label_alignment(&open, Fill::NextOpen).warning.is_none());
    let a = stockcast_backtest::label_alignment(&close, Fill::NextOpen);
    assert!(!a.aligned && a.warning.as_deref().is_some_and(|w| w.contains("overnight")), "{a:?}");
    assert!(a.definition.starts_with("close(t+5) / close(t) - 1"), "{}", a.definition);
    let b = stockcast_backtest::label_alignment(&open, Fill::Close);
    assert!(!b.aligned && b.warning.is_some());
    assert!(b.definition.starts_with("open(t+1+5) / open(t+1) - 1"), "{}", b.definition);
}

/// The command line's overrides meet the file's rules: `--jobs 0` is refused as `jobs = 0` is (it used to become 1),
/// `--horizon 0` and an unknown `--model` name are refused, and valid overrides land where the file's values were.
#[test]
fn overrides_are_checked_by_the_same_rules_as_the_file() {
    use stockcast_backtest::config::Overrides;
    let text = "[[models]]\nname = \"m\"\nmodel = { kind = \"rule\", rule = \"momentum\", lookback = 20 }\n\
                [[models]]\nname = \"b\"\nmodel = { kind = \"rule\", rule = \"buy_and_hold\" }\n";
    let base = BacktestConfig::from_toml(text).unwrap();
    let file_err = BacktestConfig::from_toml(&format!("jobs = 0\n{text}")).unwrap_err().to_string();
    let cli_err = base.clone().with_overrides(&Overrides { jobs: Some(0), ..Overrides::default() }).unwrap_err();
    assert_eq!(cli_err.to_string(), file_err);
    assert!(cli_err.is_user_error());
    let e = base.clone().with_overrides(&Overrides { horizon: Some(0), ..Overrides::default() }).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = base.clone().with_overrides(&Overrides { models: vec!["x".into()], ..Overrides::default() }).unwrap_err();
    assert!(e.to_string().contains("--model x") && e.to_string().contains("m, b"), "{e}");
    let e = base.clone().with_overrides(&Overrides { commission_bps: Some(-1.0), ..Overrides::default() });
    assert!(e.is_err());
    for gb in ["0", "-2", "nan"] {
        let file_err = BacktestConfig::from_toml(&format!("memory_gb = {gb}\n{text}")).unwrap_err().to_string();
        assert!(file_err.contains("memory_gb must be a positive number"), "{file_err}");
        let over = Overrides { memory_gb: Some(gb.parse().unwrap()), ..Overrides::default() };
        assert_eq!(base.clone().with_overrides(&over).unwrap_err().to_string(), file_err);
    }
    let o = Overrides {
        jobs: Some(2),
        memory_gb: Some(16.0),
        horizon: Some(10),
        models: vec!["b".into()],
        ..Overrides::default()
    };
    let c = base.with_overrides(&o).unwrap();
    assert_eq!((c.jobs, c.memory_gb, c.data.horizon, c.models.len()), (2, Some(16.0), Some(10), 1));
    assert_eq!(c.models[0].name, "b");
}

/// Six symbols with seeded random-walk prices over 120 days and scores with only three distinct values (so names
/// tie at every cut-off), under the names in `names` (position i gets the prices and scores of symbol i).
fn tied_panel(names: &[&str]) -> (Market, BTreeMap<(NaiveDate, String), f64>) {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let dates: Vec<NaiveDate> = (0..120).map(|i| d(2021, 1, 4) + chrono::Duration::days(i)).collect();
    let (mut rows, mut scores) = (Vec::new(), BTreeMap::new());
    let mut px = vec![100.0; names.len()];
    for dt in &dates {
        for (i, name) in names.iter().enumerate() {
            let open = px[i] * (1.0 + 0.01 * (next() - 0.5));
            px[i] = open * (1.0 + 0.04 * (next() - 0.5));
            rows.push(((*name).to_string(), *dt, open, px[i]));
            scores.insert((*dt, (*name).to_string()), (next() * 3.0).floor());
        }
    }
    (Market::from_rows(rows), scores)
}

#[test]
fn renaming_symbols_changes_no_result_when_scores_tie_at_the_cut_off() {
    let names = ["AA", "BB", "CC", "DD", "EE", "FF"];
    let reversed: Vec<&str> = names.iter().rev().copied().collect();
    let rules = [
        Rule::TopK { k: 2, n_drop: None },
        Rule::TopK { k: 3, n_drop: Some(1) },
        Rule::LongShort { k: 2 },
        Rule::Threshold { threshold: 0.5 },
    ];
    for rule in rules {
        for fill in [Fill::NextOpen, Fill::Close] {
            let cfg = Checked::new(StrategyConfig {
                rule,
                fill,
                rebalance_days: 3,
                commission_bps: 5.0,
                slippage_bps: 5.0,
                ..StrategyConfig::default()
            })
            .unwrap();
            let run = |names: &[&str]| {
                let (market, scores) = tied_panel(names);
                portfolio::simulate(&cfg, &market, &scores, None).unwrap()
            };
            let (a, b) = (run(&names), run(&reversed));
            let same = |x: f64, y: f64| close(x, y, 1e-9 * x.abs().max(1.0));
            assert!(a.equity.iter().zip(&b.equity).all(|(x, y)| same(*x, *y)), "{rule:?} {fill:?}: equity differs");
            assert!(a.turnover.iter().zip(&b.turnover).all(|(x, y)| same(*x, *y)), "{rule:?} {fill:?}: turnover");
            let (s, t) = (&a.stats, &b.stats);
            assert!(same(s.sharpe, t.sharpe) && same(s.costs, t.costs) && same(s.exposure, t.exposure), "{rule:?}");
            assert_eq!((s.trades, s.fills), (t.trades, t.fills), "{rule:?} {fill:?}");
            assert!(s.fills > 10, "{rule:?} {fill:?}: the panel trades");
        }
    }
}

#[test]
fn names_tied_at_the_cut_off_share_its_places() {
    // Scores 3, 2, 2, 2, 1 with k = 2: the best name gets 1/2, the three tied at the cut-off 1/6 each.
    let dates: Vec<NaiveDate> = (0..3).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let names = ["A", "B", "C", "D", "E"];
    let rows = dates.iter().flat_map(|dt| names.map(|s| (s.to_string(), *dt, 10.0, 10.0)));
    let market = Market::from_rows(rows);
    let score = [3.0, 2.0, 2.0, 2.0, 1.0];
    let scores: BTreeMap<(NaiveDate, String), f64> =
        dates.iter().flat_map(|dt| names.iter().zip(score).map(|(s, v)| ((*dt, (*s).to_string()), v))).collect();
    let cfg =
        StrategyConfig { rule: Rule::TopK { k: 2, n_drop: None }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &scores, None).unwrap();
    // Four names bought on day 0 (A, B, C, D), none of E; fully invested.
    assert_eq!(sim.stats.fills, 4);
    assert!(close(sim.exposure[0], 1.0, 1e-12), "{:?}", sim.exposure);
    let ls = StrategyConfig { rule: Rule::LongShort { k: 2 }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(ls).unwrap(), &market, &scores, None).unwrap();
    // k = 2 per side: A and E whole, B/C/D share one long and one short place: net zero, not traded.
    assert_eq!(sim.stats.fills, 2);
    assert!(close(sim.exposure[0], 0.5, 1e-12), "{:?}", sim.exposure);
}

#[test]
fn qcut_bins_are_pandas_qcut() {
    // Computed by pandas 2.3.3 `qcut(x, q, labels=False)` (bench/qcut_reference.py), not by stockcast. The last
    // case is the issue's: four names in three quantiles are [0, 1, 2, 2], not rank · q / n's [0, 0, 1, 2].
    let cases: [(&[f64], usize, &[usize]); 11] = [
        (&[0.001, 0.299, -0.274, -0.891], 3, &[2, 2, 1, 0]),
        (&[-0.455, -0.992, 0.06, 1.34, -0.492], 3, &[1, 0, 2, 2, 0]),
        (&[-0.62, 0.49, 0.357, 0.105, -0.93, -0.029, 0.695], 5, &[0, 4, 3, 2, 0, 1, 4]),
        (
            &[-1.344, -0.458, -1.901, -1.29, -1.842, -0.235, -1.267, 0.271, 0.157, -0.187],
            5,
            &[1, 2, 0, 1, 0, 3, 2, 4, 4, 3],
        ),
        (
            &[-2.517, -0.539, -0.049, 0.113, -1.53, -0.478, -0.979, -0.809, 1.061, -0.808, -0.033],
            4,
            &[0, 1, 2, 3, 0, 2, 0, 1, 3, 1, 3],
        ),
        (
            &[0.884, -0.584, -0.112, 0.11, 0.064, -1.225, 0.076, 1.359, -1.547, 0.859, 0.119, -0.641, 2.0],
            5,
            &[4, 1, 1, 2, 2, 0, 2, 4, 0, 3, 3, 0, 4],
        ),
        (&[0.762, -1.199, 0.075, 0.577, -0.189, 0.683], 5, &[4, 0, 1, 2, 0, 3]),
        (
            &[
                -0.067, 0.667, 1.439, -0.676, 0.203, -0.463, 0.127, -1.187, -0.579, -0.196, 0.899, 1.145, -1.324,
                -0.795, 0.647, -1.992, -0.463, -0.097, 1.257, 0.689,
            ],
            10,
            &[5, 7, 9, 2, 6, 3, 5, 1, 2, 4, 8, 8, 0, 1, 6, 0, 3, 4, 9, 7],
        ),
        (&[-0.327, -0.369, -0.25], 5, &[2, 0, 4]),
        (&[1.524, -0.428, -0.304, 0.353, -0.121, -0.197, -1.114, -0.012, -0.444], 2, &[1, 0, 0, 1, 1, 0, 0, 1, 0]),
        (&[1.0, 2.0, 3.0, 4.0], 3, &[0, 1, 2, 2]),
    ];
    for (x, q, want) in cases {
        assert_eq!(stockcast_backtest::tearsheet::qcut_bins(x, q), want, "{x:?} in {q} bins");
    }
    // Ties that make edges coincide (pandas refuses them): tied scores share the lowest bin that reaches them,
    // and renaming (reordering) the rows moves no score to another bin.
    let tied = [1.0, 1.0, 1.0, 2.0];
    assert_eq!(stockcast_backtest::tearsheet::qcut_bins(&tied, 3), [0, 0, 0, 2]);
    assert_eq!(stockcast_backtest::tearsheet::qcut_bins(&[2.0, 1.0, 1.0, 1.0], 3), [2, 0, 0, 0]);
}

#[test]
fn ic_decay_at_the_label_horizon_is_the_rank_ic_when_bars_are_missing() {
    // Every 9th row deleted: each symbol misses bars on dates the others trade. The label counts the symbol's own
    // bars, and so must the tear sheet's forward returns, or IC decay at h = horizon drifts from the Rank IC.
    let df = stockcast_features::synth_prices(&SynthConfig::new(12, 600, 9)).unwrap();
    let df = df.sort(["symbol", "date"], SortMultipleOptions::default()).unwrap();
    let keep: BooleanChunked = (0..df.height()).map(|i| i % 9 != 4).collect();
    let prices = PriceFrame::from_df(df.filter(&keep).unwrap()).unwrap();
    let spec = FeatureSpec::from_toml("[[features]]\nfamily = \"returns\"\nwindows = [1, 5, 20]\n").unwrap();
    assert_eq!(spec.label.horizon, 5);
    let data = dataset(&prices, &spec);
    let models = vec![model("linear", "kind = \"linear\"\nalpha = 0.01")];
    let split = SplitConfig { min_train_days: 200, test_days: 100, ..SplitConfig::default() };
    let wf = runner::run(&data, &models, &split, RunOptions::new(&spec.label, 3, 1), &|_, _, _, _| {}).unwrap();
    let market = Market::from_prices(&prices).unwrap();
    let eval = evaluate_defaults(&wf, &models, &market);
    let m = &eval.models[0];
    let decay = m.sheet.ic_decay.iter().find(|(h, _)| *h == 5).unwrap().1;
    assert!(m.signal.rank_ic.abs() > 1e-4, "{}", m.signal.rank_ic);
    assert!(close(decay, m.signal.rank_ic, 1e-9), "IC decay at 5: {decay}, Rank IC {}", m.signal.rank_ic);
}

#[test]
fn the_default_cpcv_embargo_is_the_gap_or_one_percent_of_the_calendar() {
    let cfg = SplitConfig { kind: stockcast_backtest::split::SplitKind::Cpcv, ..SplitConfig::default() };
    // 1 % of 2,520 dates is 25.2 → 26 > the 5-day horizon; on 300 dates the horizon wins.
    assert_eq!(cfg.embargo(5, 2520), 26);
    assert_eq!(cfg.embargo(5, 300), 5);
    assert_eq!(SplitConfig { embargo_days: Some(3), ..cfg.clone() }.embargo(5, 2520), 3);
    let folds = cfg.folds(2520, 5).unwrap();
    for f in &folds {
        for (part, _) in &f.train_parts {
            for t in folds.iter().filter(|t| t.fit_fold == f.fit_fold) {
                assert!(part.end <= t.test.start || part.start >= t.test.end + 26, "{part:?} vs {:?}", t.test);
            }
        }
    }
    // Some training run does start right after an embargo (the bound is attained, not just respected).
    assert!(folds.iter().any(|f| f.train_parts.iter().any(|(p, _)| folds.iter().any(|t| p.start == t.test.end + 26))));
}

/// One symbol "A" (and a never-bought "B") over `n` dates: A's close alternates +1 % / −1 %, its open is the
/// previous close, its volume is `volume`; B is flat. Scores rank A first every day.
fn liquid_market(n: usize, volume: f64) -> (Market, BTreeMap<(NaiveDate, String), f64>) {
    let dates: Vec<NaiveDate> = (0..n).map(|i| d(2021, 1, 4) + chrono::Duration::days(i as i64)).collect();
    let mut rows = Vec::new();
    let mut c = 100.0;
    for (i, dt) in dates.iter().enumerate() {
        let open = c;
        c *= if i % 2 == 0 { 1.01 } else { 0.99 };
        rows.push(("A".to_string(), *dt, open, c));
        rows.push(("B".to_string(), *dt, 50.0, 50.0));
    }
    let mut market = Market::from_rows(rows);
    market.volume = vec![vec![volume; n], vec![volume; n]];
    let scores = dates.iter().flat_map(|dt| [((*dt, "A".to_string()), 1.0), ((*dt, "B".to_string()), 0.0)]).collect();
    (market, scores)
}

#[test]
fn a_single_order_pays_the_square_root_impact_of_its_size_against_the_volume() {
    let (market, scores) = liquid_market(30, 10_000.0);
    // Scores start on day 9 so the signal date has a full 5-bar window behind it.
    let late: BTreeMap<_, _> = scores.into_iter().filter(|((dt, _), _)| *dt >= market.dates[9]).collect();
    let run = |capital: f64| {
        let cfg = StrategyConfig {
            rule: Rule::TopK { k: 1, n_drop: None },
            cost_model: portfolio::CostModel::SqrtImpact,
            impact_coefficient: 0.8,
            adv_days: 5,
            capital,
            ..StrategyConfig::default()
        };
        portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &late, None).unwrap()
    };
    let sim = run(100_000.0);
    // Signal on day 9, filled at day 10's open. σ: sample std of the 4 close-to-close returns between bars 5..=9
    // (they alternate +1 % and −1 %), ADV 10,000 shares, order 100,000 / open shares (no commission).
    let closes: Vec<f64> = market.close[0][5..=9].to_vec();
    let rets: Vec<f64> = closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let mean = rets.iter().sum::<f64>() / 4.0;
    let sigma = (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    let open = market.open[0][10];
    // The buy is scaled to the cash (its impact was set aside at the wanted size), then pays its own impact.
    let impact_of = |capital: f64| {
        let wanted = capital / open;
        let shares = wanted / (1.0 + 0.8 * sigma * (wanted / 10_000.0).sqrt());
        (shares, 0.8 * sigma * (shares / 10_000.0).sqrt())
    };
    let (shares, impact) = impact_of(100_000.0);
    let trade = &sim.trades[0];
    assert!(
        close(trade.entry_price, open * (1.0 + impact), 1e-12),
        "{} vs {}",
        trade.entry_price,
        open * (1.0 + impact)
    );
    assert!(close(sim.stats.cost_slippage * 100_000.0, shares * open * impact, 1e-9));
    assert!(sim.stats.cost_commission.abs() < 1e-12 && sim.stats.cost_borrow.abs() < 1e-12);
    // Ten times the capital.
    let sim10 = run(1_000_000.0);
    let impact10 = sim10.trades[0].entry_price / open - 1.0;
    assert!(close(impact10, impact_of(1_000_000.0).1, 1e-12), "{impact10}");
    // About √10 times the impact per share (a little less: the larger order is scaled down more).
    assert!(impact10 / impact > 3.0 && impact10 / impact < 10f64.sqrt(), "{}", impact10 / impact);
}

#[test]
fn orders_above_the_participation_limit_are_cut_and_the_shortfall_reported() {
    let (market, scores) = liquid_market(12, 500.0);
    // 100,000 / ~100 ≈ 1,000 shares wanted against an ADV of 500: a 10 % limit buys 50 shares.
    let cfg = StrategyConfig {
        rule: Rule::TopK { k: 1, n_drop: None },
        max_participation: Some(0.1),
        rebalance_days: 100,
        capital: 100_000.0,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &scores, None).unwrap();
    let open = market.open[0][1];
    let wanted = 100_000.0 / open;
    assert_eq!(sim.stats.capped_orders, 1);
    let shortfall = sim.stats.participation_shortfall.unwrap();
    assert!(close(shortfall, (wanted - 50.0) / wanted, 1e-12), "{shortfall}");
    // What was bought: 50 shares, so the exposure at day 1's close is 50 · close / equity.
    let equity = sim.equity[1];
    assert!(close(sim.exposure[1], 50.0 * market.close[0][1] / equity, 1e-12), "{}", sim.exposure[1]);
    // Without a volume column the limit (and the impact model) cannot work: a clear error, not a silent zero.
    let mut no_volume = market.clone();
    no_volume.volume = Vec::new();
    let cfg = StrategyConfig { max_participation: Some(0.1), ..StrategyConfig::default() };
    let err = portfolio::simulate(&Checked::new(cfg).unwrap(), &no_volume, &scores, None).unwrap_err();
    assert!(err.to_string().contains("volume column"), "{err}");
    // A limit that is not a fraction is refused.
    let bad = StrategyConfig { max_participation: Some(1.5), ..StrategyConfig::default() };
    assert!(Checked::new(bad).unwrap_err().to_string().contains("max_participation"));
}

#[test]
fn a_short_held_n_days_pays_its_borrow_fee_and_cash_earns_its_rate() {
    // Flat prices: A scores best, B worst; long-short, close fills, 300 bps a year to borrow.
    let dates: Vec<NaiveDate> = (0..11).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let market = Market::from_rows(dates.iter().flat_map(|dt| ["A", "B"].map(|s| (s.to_string(), *dt, 20.0, 20.0))));
    let scores: BTreeMap<(NaiveDate, String), f64> =
        dates.iter().flat_map(|dt| [((*dt, "A".to_string()), 1.0), ((*dt, "B".to_string()), -1.0)]).collect();
    let cfg = StrategyConfig {
        rule: Rule::LongShort { k: 1 },
        fill: Fill::Close,
        borrow_bps: 300.0,
        rebalance_days: 100,
        capital: 10_000.0,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &scores, None).unwrap();
    // Short 0.5 · 10,000 of B from day 0's close, charged at each later close for the night before (10 nights).
    let fee = 5_000.0 * 0.03 / 252.0;
    assert!(close(sim.stats.cost_borrow * 10_000.0, 10.0 * fee, 1e-9), "{}", sim.stats.cost_borrow * 10_000.0);
    assert!(close(sim.equity[10], 10_000.0 - 10.0 * fee, 1e-9), "{}", sim.equity[10]);

    // All in cash (no score above the threshold): the capital compounds at the daily rate of 4 % a year.
    let cash = StrategyConfig {
        rule: Rule::Threshold { threshold: 5.0 },
        cash_rate: 0.04,
        capital: 10_000.0,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cash).unwrap(), &market, &scores, None).unwrap();
    let daily = 1.04_f64.powf(1.0 / 252.0) - 1.0;
    assert!(close(sim.equity[10], 10_000.0 * (1.0 + daily).powi(10), 1e-9), "{}", sim.equity[10]);
    assert!(close(sim.stats.cash_interest * 10_000.0, sim.equity[10] - 10_000.0, 1e-9));
}

#[test]
fn attribution_splits_a_day_into_market_sector_and_selection_by_hand() {
    // Four names, two sectors, flat on day 0; on day 1 A (X) +10 %, B (X) 0 %, C (Y) −5 %, D (Y) +5 %.
    let dates: Vec<NaiveDate> = (0..2).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let day1 = [("A", 110.0), ("B", 100.0), ("C", 95.0), ("D", 105.0)];
    let rows =
        day1.iter().flat_map(|(s, c)| [(s.to_string(), dates[0], 100.0, 100.0), (s.to_string(), dates[1], *c, *c)]);
    let mut market = Market::from_rows(rows);
    for (s, g) in ["X", "X", "Y", "Y"].iter().enumerate() {
        market.sector[s] = vec![(0, Some((*g).to_owned()))];
    }
    // All in A at day 0's close (no costs).
    let scores: BTreeMap<(NaiveDate, String), f64> = dates
        .iter()
        .flat_map(|dt| {
            ["A", "B", "C", "D"].iter().enumerate().map(move |(i, s)| ((*dt, (*s).to_string()), 4.0 - i as f64))
        })
        .collect();
    let cfg =
        StrategyConfig { rule: Rule::TopK { k: 1, n_drop: None }, fill: Fill::Close, ..StrategyConfig::default() };
    let sim = portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &scores, None).unwrap();
    assert!(close(sim.net_exposure[0], 1.0, 1e-12));
    // r_p = 10 %, r_b = 2.5 %, r_X = 5 %, r_Y = 0 %: market = β · 2.5 %, sector = 1 · (5 − 2.5) %,
    // selection = 1 · (10 − 5) %, other = the rest.
    let a = stockcast_backtest::attribution::attribute(&sim, &market, 1.0);
    assert_eq!(a.daily.len(), 1);
    for (got, want) in [(a.market, 0.025), (a.sector, 0.025), (a.selection, 0.05), (a.other, 0.0), (a.total, 0.10)] {
        assert!(close(got, want, 1e-12), "{a:?}");
    }
    let a = stockcast_backtest::attribution::attribute(&sim, &market, 0.8);
    assert!(close(a.market, 0.02, 1e-12) && close(a.other, 0.005, 1e-12), "{a:?}");
    assert!(close(a.market + a.sector + a.selection + a.other, a.total, 1e-15));
}

/// Three names whose returns alternate ±1 %, ±2 % and ±4 % (so their volatilities are exactly 1 : 2 : 4).
fn three_vols(n: usize) -> (Market, BTreeMap<(NaiveDate, String), f64>) {
    let dates: Vec<NaiveDate> = (0..n).map(|i| d(2021, 1, 4) + chrono::Duration::days(i as i64)).collect();
    let mut rows = Vec::new();
    for (name, step) in [("A", 0.01), ("B", 0.02), ("C", 0.04)] {
        let mut c = 100.0;
        for (i, dt) in dates.iter().enumerate() {
            if i > 0 {
                c *= if i % 2 == 0 { 1.0 + step } else { 1.0 - step };
            }
            rows.push((name.to_string(), *dt, c, c));
        }
    }
    let scores = dates
        .iter()
        .skip(n - 3)
        .flat_map(|dt| ["A", "B", "C"].iter().enumerate().map(move |(i, s)| ((*dt, (*s).to_string()), 3.0 - i as f64)))
        .collect();
    (Market::from_rows(rows), scores)
}

#[test]
fn inverse_vol_weights_and_the_max_weight_cap_match_hand_computations() {
    let (market, scores) = three_vols(30);
    let cfg = |max_weight: Option<f64>| StrategyConfig {
        rule: Rule::TopK { k: 3, n_drop: None },
        fill: Fill::Close,
        weights: portfolio::Weighting::InverseVol,
        max_weight,
        cov_days: 10,
        ..StrategyConfig::default()
    };
    let weights = |sim: &portfolio::Simulation| -> Vec<f64> {
        let mut w = vec![0.0; 3];
        for &(s, v) in &sim.holdings[0] {
            w[s as usize] = v;
        }
        w
    };
    // 1/σ in proportion 1 : 1/2 : 1/4, so 4/7, 2/7, 1/7.
    let sim = portfolio::simulate(&Checked::new(cfg(None)).unwrap(), &market, &scores, None).unwrap();
    for (got, want) in weights(&sim).iter().zip([4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]) {
        assert!(close(*got, want, 1e-9), "{:?}", weights(&sim));
    }
    // Capped at 0.5: A's excess 1/14 goes to B and C in proportion 2 : 1, so 1/2, 1/3, 1/6.
    let sim = portfolio::simulate(&Checked::new(cfg(Some(0.5))).unwrap(), &market, &scores, None).unwrap();
    for (got, want) in weights(&sim).iter().zip([0.5, 1.0 / 3.0, 1.0 / 6.0]) {
        assert!(close(*got, want, 1e-9), "{:?}", weights(&sim));
    }
    // Risk parity: equal risk contributions under the names' Ledoit–Wolf covariance of the same 10 dates.
    let parity = StrategyConfig { weights: portfolio::Weighting::RiskParity, ..cfg(None) };
    let sim = portfolio::simulate(&Checked::new(parity).unwrap(), &market, &scores, None).unwrap();
    let w = weights(&sim);
    assert!(close(w.iter().sum::<f64>(), 1.0, 1e-9) && w[0] > w[1] && w[1] > w[2], "{w:?}");
    let d0 = market.dates.len() - 3;
    let cov = stockcast_backtest::risk_model::ledoit_wolf(&stockcast_backtest::risk_model::trailing_returns(
        &market,
        &[0, 1, 2],
        d0,
        10,
    ))
    .unwrap();
    let rc: Vec<f64> = (0..3).map(|i| w[i] * (0..3).map(|j| cov.at(i, j) * w[j]).sum::<f64>()).collect();
    assert!(rc.iter().all(|c| close(*c, rc[0], 1e-9)), "{rc:?}");
    // Score weights: 3 : 2 : 1.
    let by_score = StrategyConfig { weights: portfolio::Weighting::Score, ..cfg(None) };
    let sim = portfolio::simulate(&Checked::new(by_score).unwrap(), &market, &scores, None).unwrap();
    for (got, want) in weights(&sim).iter().zip([0.5, 1.0 / 3.0, 1.0 / 6.0]) {
        assert!(close(*got, want, 1e-9), "{:?}", weights(&sim));
    }
    // Held names are traded back to their targets every rebalance (their prices drift): 3 entries, then
    // adjustments on the next two dates; min_trade = 0.5 of equity leaves every adjustment out.
    let fills = |min_trade: f64| {
        let c = StrategyConfig { weights: portfolio::Weighting::Score, min_trade, ..cfg(None) };
        portfolio::simulate(&Checked::new(c).unwrap(), &market, &scores, None).unwrap().stats.fills
    };
    assert!(fills(0.0) > 3, "{}", fills(0.0));
    assert_eq!(fills(0.5), 3);
    // A cap three names cannot meet is refused at the config check, and at run time for a threshold rule.
    let err = Checked::new(cfg(Some(0.3))).unwrap_err().to_string();
    assert!(err.contains("max_weight = 0.3 cannot hold a side of 3 names"), "{err}");
    let one = StrategyConfig {
        rule: Rule::Threshold { threshold: 2.5 },
        fill: Fill::Close,
        max_weight: Some(0.5),
        ..StrategyConfig::default()
    };
    let err = portfolio::simulate(&Checked::new(one).unwrap(), &market, &scores, None).unwrap_err().to_string();
    assert!(err.contains("max_weight = 0.5 cannot hold"), "{err}");
}

#[test]
fn a_volatility_target_scales_the_book_down_to_it() {
    let (market, scores) = three_vols(30);
    let cfg = StrategyConfig {
        rule: Rule::TopK { k: 1, n_drop: None },
        fill: Fill::Close,
        target_vol: Some(0.05),
        cov_days: 10,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cfg).unwrap(), &market, &scores, None).unwrap();
    // One name: the Ledoit–Wolf covariance is its sample variance (1/n) over the last 10 dates' returns.
    let d0 = market.dates.len() - 3;
    let rets: Vec<f64> = (d0 - 9..=d0).map(|t| market.close[0][t] / market.close[0][t - 1] - 1.0).collect();
    let mean = rets.iter().sum::<f64>() / 10.0;
    let var = rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 10.0;
    let predicted = (var * 252.0).sqrt();
    assert!(predicted > 0.05);
    assert!(close(sim.net_exposure[0], 0.05 / predicted, 1e-9), "{} vs {}", sim.net_exposure[0], 0.05 / predicted);
    // The book's predicted volatility after the scaling is the target, carried to every date (the chart's line).
    assert_eq!(sim.predicted_vol.len(), sim.dates.len());
    assert!(sim.predicted_vol.iter().all(|v| close(*v, 0.05, 1e-9)), "{:?}", sim.predicted_vol);
}

#[test]
fn gross_and_net_targets_set_each_side_of_a_long_short_book() {
    // Flat prices, close fills, no costs: the weights at the first close are the targets.
    let dates: Vec<NaiveDate> = (0..3).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let market = Market::from_rows(dates.iter().flat_map(|dt| ["A", "B"].map(|s| (s.to_string(), *dt, 20.0, 20.0))));
    let scores: BTreeMap<(NaiveDate, String), f64> =
        dates.iter().flat_map(|dt| [((*dt, "A".to_string()), 1.0), ((*dt, "B".to_string()), -1.0)]).collect();
    let cfg = |gross: Option<f64>, net: Option<f64>| StrategyConfig {
        rule: Rule::LongShort { k: 1 },
        fill: Fill::Close,
        gross,
        net,
        ..StrategyConfig::default()
    };
    let sim = portfolio::simulate(&Checked::new(cfg(Some(0.8), Some(0.2))).unwrap(), &market, &scores, None).unwrap();
    let w: BTreeMap<u32, f64> = sim.holdings[0].iter().copied().collect();
    assert!(close(w[&0], 0.5, 1e-12) && close(w[&1], -0.3, 1e-12), "{w:?}");
    assert!(close(sim.net_exposure[0], 0.2, 1e-12) && close(sim.exposure[0], 0.8, 1e-12));
    // Without targets: ±0.5.
    let sim = portfolio::simulate(&Checked::new(cfg(None, None)).unwrap(), &market, &scores, None).unwrap();
    assert!(close(sim.net_exposure[0], 0.0, 1e-12) && close(sim.exposure[0], 1.0, 1e-12));
    // Refused: a net beyond the gross, a net for a long-only rule, a levered gross.
    let refused = |c: StrategyConfig| Checked::new(c).unwrap_err().to_string();
    assert!(refused(cfg(Some(0.5), Some(0.6))).contains("exceeds the gross"));
    let long_only = StrategyConfig { net: Some(0.5), ..StrategyConfig::default() };
    assert!(refused(long_only).contains("net applies to long_short"));
    assert!(refused(cfg(Some(1.5), None)).contains("not levered"));
}

/// Eight names over three flat dates, sectors X (A–D) and Y (E–H), X's scores all above Y's.
fn two_sectors() -> (Market, BTreeMap<(NaiveDate, String), f64>) {
    let dates: Vec<NaiveDate> = (0..3).map(|i| d(2021, 3, 1) + chrono::Duration::days(i)).collect();
    let names = ["A", "B", "C", "D", "E", "F", "G", "H"];
    let mut market = Market::from_rows(dates.iter().flat_map(|dt| names.map(|s| (s.to_string(), *dt, 20.0, 20.0))));
    for s in 0..8 {
        market.sector[s] = vec![(0, Some(if s < 4 { "X" } else { "Y" }.to_owned()))];
    }
    let scores = dates
        .iter()
        .flat_map(|dt| names.iter().enumerate().map(move |(i, s)| ((*dt, (*s).to_string()), 8.0 - i as f64)))
        .collect();
    (market, scores)
}

#[test]
fn sector_neutral_books_and_sector_caps_match_hand_computations() {
    let (market, scores) = two_sectors();
    let weights = |c: StrategyConfig| -> Vec<f64> {
        let sim = portfolio::simulate(&Checked::new(c).unwrap(), &market, &scores, None).unwrap();
        let mut w = vec![0.0; 8];
        for &(s, v) in &sim.holdings[0] {
            w[s as usize] = v;
        }
        w
    };
    let long_short = |sector_neutral: bool| StrategyConfig {
        rule: Rule::LongShort { k: 2 },
        fill: Fill::Close,
        sector_neutral,
        ..StrategyConfig::default()
    };
    // Plain: long A, B and short G, H: X is net +½, Y net −½.
    let want = [0.25, 0.25, 0.0, 0.0, 0.0, 0.0, -0.25, -0.25];
    assert!(weights(long_short(false)).iter().zip(want).all(|(g, w)| close(*g, w, 1e-12)));
    // Neutral: one place a side in each sector (4 scored names each): long A and E, short D and H.
    let want = [0.25, 0.0, 0.0, -0.25, 0.25, 0.0, 0.0, -0.25];
    let got = weights(long_short(true));
    assert!(got.iter().zip(want).all(|(g, w)| close(*g, w, 1e-12)), "{got:?}");
    // Every weighting shares a sector's total among its names: score weights keep each sector at ±¼.
    let by_score = StrategyConfig { weights: portfolio::Weighting::Score, ..long_short(true) };
    let got = weights(by_score);
    assert!(close(got[0] + got[3], 0.0, 1e-12) && close(got[4] + got[7], 0.0, 1e-12), "{got:?}");
    // Top 6 equal (⅙ each): X holds ⅔ > 0.5, scaled to 0.5 (⅛ each) and the excess to Y (¼ each).
    let top6 = |max_sector_weight: Option<f64>, max_weight: Option<f64>| StrategyConfig {
        rule: Rule::TopK { k: 6, n_drop: None },
        fill: Fill::Close,
        max_sector_weight,
        max_weight,
        ..StrategyConfig::default()
    };
    let want = [0.125, 0.125, 0.125, 0.125, 0.25, 0.25, 0.0, 0.0];
    let got = weights(top6(Some(0.5), Some(0.3)));
    assert!(got.iter().zip(want).all(|(g, w)| close(*g, w, 1e-12)), "{got:?}");
    // Refused: caps that cannot hold the book (Y's two names at 0.2 + X at 0.5 = 0.9 < 1), one sector on a side,
    // a sector-neutral long-only book, a market without sectors.
    let run = |c: StrategyConfig, m: &Market| {
        portfolio::simulate(&Checked::new(c).unwrap(), m, &scores, None).unwrap_err().to_string()
    };
    let err = run(top6(Some(0.5), Some(0.2)), &market);
    assert!(err.contains("cannot hold 1.0000 of equity in these 2 sectors (at most 0.9000)"), "{err}");
    let err = run(StrategyConfig { max_sector_weight: Some(0.3), ..long_short(false) }, &market);
    assert!(err.contains("max_sector_weight = 0.3 cannot hold 0.5000 of equity in 1 sectors"), "{err}");
    let err = Checked::new(StrategyConfig { sector_neutral: true, ..top6(None, None) }).unwrap_err().to_string();
    assert!(err.contains("sector_neutral applies to long_short"), "{err}");
    let mut bare = market.clone();
    bare.sector = vec![Vec::new(); 8];
    assert!(run(long_short(true), &bare).contains("sector_neutral needs each name's sector"));
}
