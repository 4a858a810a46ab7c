//! Integration tests of the models: every kind fits, predicts, saves, loads and predicts again identically;
//! planted signals are learned; altered artifacts are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, clippy::missing_panics_doc)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stockcast_features::{
    Checked, FeatureMatrix, FeatureSpec, LoadOptions, MatrixOptions, SpecHash, build_features, load_prices,
};
use stockcast_models::{Dataset, History, ModelConfig, Replace, TrainedModel, fit};

mod registry;

/// The bundled us5 data as (train, test) datasets split at 2010-01-01 with a 5-day gap.
fn us5() -> &'static (Dataset, Dataset) {
    static DATA: OnceLock<(Dataset, Dataset)> = OnceLock::new();
    DATA.get_or_init(|| {
        let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
            .join("../../datasets/us5_daily.csv");
        let loaded = load_prices(&path, &LoadOptions::default()).unwrap();
        let ff =
            build_features(&loaded.prices, &stockcast_features::Checked::new(FeatureSpec::default()).unwrap()).unwrap();
        let m = FeatureMatrix::from_frame(&ff, MatrixOptions { require_label: true, drop_incomplete: true }).unwrap();
        let all = Dataset::new(m, Arc::new(History::from_prices(&loaded.prices).unwrap()));
        let cut = chrono::NaiveDate::from_ymd_opt(2010, 1, 1).unwrap();
        let gap = chrono::NaiveDate::from_ymd_opt(2010, 1, 11).unwrap();
        (all.filter(|(_, d)| *d < cut), all.filter(|(_, d)| *d >= gap))
    })
}

fn config(name: &str) -> Checked<ModelConfig> {
    let p = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
        .join("../../configs/models")
        .join(format!("{name}.toml"));
    ModelConfig::from_file(&p).unwrap()
}

/// Asserts bit-identical scores, reporting how many differ (not the whole vectors).
fn assert_identical(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differ, 0, "{what}: {differ} of {} scores differ", a.len());
}

fn round_trip(name: &str) {
    round_trip_with(name, &config(name));
}

fn round_trip_with(name: &str, cfg: &Checked<ModelConfig>) {
    let (train, test) = us5();
    let m = fit(cfg, train, None, 7).unwrap();
    let p1 = m.predict(test).unwrap();
    assert_eq!(p1.score.len(), test.len());
    assert!(p1.score.iter().filter(|v| v.is_finite()).count() > test.len() / 2, "{name}: mostly NaN scores");
    let dir = tempfile::tempdir().unwrap();
    m.save(&dir.path().join("m"), &[("spec.toml", FeatureSpec::default().to_toml().as_bytes())], Replace::Own).unwrap();
    let loaded = TrainedModel::load(&dir.path().join("m")).unwrap();
    assert_eq!(loaded.meta.kind, name);
    let p2 = loaded.predict(test).unwrap();
    assert_identical(&p1.score, &p2.score, &format!("{name}: after save/load"));
    let again = fit(cfg, train, None, 7).unwrap().predict(test).unwrap();
    assert_identical(&p1.score, &again.score, &format!("{name}: second fit with the same seed"));
}

#[test]
fn gbm_round_trip() {
    round_trip("gbm");
}

#[test]
fn linear_round_trip() {
    round_trip("linear");
}

#[test]
fn rule_round_trip() {
    round_trip("rule");
}

#[test]
fn forecast_round_trip() {
    round_trip("forecast");
}

#[test]
fn lstm_round_trip() {
    // The example config, shortened to two epochs to keep the test quick.
    let text = std::fs::read_to_string(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
            .join("../../configs/models/lstm.toml"),
    )
    .unwrap()
    .replace("epochs = 8", "epochs = 2");
    let cfg = ModelConfig::from_toml(&text).unwrap();
    assert!(matches!(&*cfg, ModelConfig::Lstm(c) if c.epochs == 2));
    round_trip_with("lstm", &cfg);
}

#[test]
fn ensemble_round_trip() {
    round_trip("ensemble");
}

/// `n` rows of 5 standard-normal features; label = 0.8·x0 − 0.5·x1 + N(0, 0.3²).
fn planted(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = || {
        let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let mut x = Array2::<f32>::zeros((n, 5));
    let mut y = Array1::<f32>::zeros(n);
    for i in 0..n {
        for j in 0..5 {
            x[[i, j]] = normal() as f32;
        }
        y[i] = (0.8 * f64::from(x[[i, 0]]) - 0.5 * f64::from(x[[i, 1]]) + 0.3 * normal()) as f32;
    }
    let start = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let index =
        (0..n).map(|i| (format!("S{}", i % 50).into(), start + chrono::Duration::days((i / 50) as i64))).collect();
    let matrix = FeatureMatrix {
        x,
        y: Some(y),
        index,
        feature_names: (0..5).map(|j| format!("f{j}")).collect(),
        spec_hash: SpecHash("planted".into()),
        label: stockcast_features::spec::LabelSpec::default(),
    };
    Dataset::new(matrix, Arc::new(History::default()))
}

fn r2(pred: &[f64], y: &Array1<f32>) -> f64 {
    let mean = y.iter().map(|v| f64::from(*v)).sum::<f64>() / y.len() as f64;
    let ss_tot: f64 = y.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum();
    let ss_res: f64 = y.iter().zip(pred).map(|(v, p)| (f64::from(*v) - p).powi(2)).sum();
    1.0 - ss_res / ss_tot
}

#[test]
fn gbm_learns_a_planted_signal() {
    let (train, valid, test) = (planted(6000, 1), planted(1500, 2), planted(2000, 3));
    let cfg = ModelConfig::from_toml("kind = \"gbm\"\nrounds = 300\nmax_depth = 4\neta = 0.1\nnthread = 2").unwrap();
    let m = fit(&cfg, &train, Some(&valid), 3).unwrap();
    let r2 = r2(&m.predict(&test).unwrap().score, test.matrix.y.as_ref().unwrap());
    assert!(r2 > 0.5, "test R² {r2}");
}

#[test]
fn linear_recovers_coefficient_signs() {
    let (train, test) = (planted(4000, 4), planted(1000, 5));
    let m = fit(&ModelConfig::from_toml("kind = \"linear\"\nalpha = 0.001").unwrap(), &train, None, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path(), &[], Replace::Own).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("linear.json")).unwrap()).unwrap();
    let coef: Vec<f64> = saved["coef"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(coef[0] > 0.5 && coef[1] < -0.3, "{coef:?}");
    assert!(coef[2..].iter().all(|c| c.abs() < 0.05), "{coef:?}");
    let r2 = r2(&m.predict(&test).unwrap().score, test.matrix.y.as_ref().unwrap());
    assert!(r2 > 0.8, "linear test R² {r2}");
}

fn mse(pred: &[f64], y: &Array1<f32>) -> f64 {
    y.iter().zip(pred).map(|(v, p)| (f64::from(*v) - p).powi(2)).sum::<f64>() / y.len() as f64
}

#[test]
fn lstm_loss_falls_and_beats_the_training_mean() {
    let (train, valid, test) = (planted(6000, 11), planted(1000, 12), planted(2000, 13));
    let cfg = ModelConfig::from_toml(
        "kind = \"lstm\"\nlookback = 5\nhidden = 16\nepochs = 3\nbatch_size = 64\nlearning_rate = 0.01\npatience = 3",
    )
    .unwrap();
    let m = fit(&cfg, &train, Some(&valid), 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.save(dir.path(), &[], Replace::Own).unwrap();
    let meta = TrainedModel::load(dir.path()).unwrap().meta;
    let losses: Vec<f64> = meta.extra["train_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 3, "{losses:?}");
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "training loss does not fall: {losses:?}");
    let y_train = train.matrix.y.as_ref().unwrap();
    let train_mean = y_train.iter().map(|v| f64::from(*v)).sum::<f64>() / y_train.len() as f64;
    let y_test = test.matrix.y.as_ref().unwrap();
    let model_mse = mse(&m.predict(&test).unwrap().score, y_test);
    let mean_mse = mse(&vec![train_mean; test.len()], y_test);
    assert!(model_mse < 0.7 * mean_mse, "lstm test MSE {model_mse} vs training-mean MSE {mean_mse}");
}

#[test]
fn lstm_sequences_never_look_ahead() {
    let (train, _) = us5();
    let cfg = ModelConfig::from_toml("kind = \"lstm\"\nlookback = 10\nhidden = 8\nepochs = 1\npatience = 0").unwrap();
    let m = fit(&cfg, train, None, 3).unwrap();
    // Score one row of each symbol at a date in the middle, with a context of every row.
    let mut data = train.clone();
    data.context = Some(Arc::clone(&train.matrix));
    let t = chrono::NaiveDate::from_ymd_opt(2005, 6, 1).unwrap();
    let day = data.filter(|(_, d)| *d == t);
    assert!(day.len() >= 3, "rows on {t}");
    let base = m.predict(&day).unwrap().score;
    // Scrambling every row after t changes nothing ...
    let mut ctx = (*train.matrix).clone();
    for (i, (_, d)) in train.matrix.index.iter().enumerate() {
        if *d > t {
            ctx.x.row_mut(i).fill(1e3);
        }
    }
    let mut later = day.clone();
    later.context = Some(Arc::new(ctx));
    assert_identical(&base, &m.predict(&later).unwrap().score, "lstm with rows after t altered");
    // ... while altering the row at t itself does change the scores (the test can fail).
    let mut ctx = (*train.matrix).clone();
    for (i, (_, d)) in train.matrix.index.iter().enumerate() {
        if *d == t {
            ctx.x.row_mut(i).fill(3.0);
        }
    }
    let mut now = day.clone();
    now.context = Some(Arc::new(ctx));
    let changed = m.predict(&now).unwrap().score;
    assert!(base.iter().zip(&changed).all(|(a, b)| (a - b).abs() > 1e-9), "{base:?} vs {changed:?}");
}

#[test]
fn exact_ridge_agrees_with_linfa_coordinate_descent() {
    let train = planted(3000, 21);
    let coef = |toml: &str| -> Vec<f64> {
        let m = fit(&ModelConfig::from_toml(toml).unwrap(), &train, None, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path(), &[], Replace::Own).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("linear.json")).unwrap()).unwrap();
        v["coef"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).collect()
    };
    // l1_ratio = 0 is solved in closed form; a vanishing l1_ratio goes through linfa's elastic net.
    let exact = coef("kind = \"linear\"\nalpha = 0.05");
    let cd = coef("kind = \"linear\"\nalpha = 0.05\nl1_ratio = 1e-9\ntolerance = 1e-10\nmax_iterations = 100000");
    for (a, b) in exact.iter().zip(&cd) {
        assert!((a - b).abs() < 1e-4, "{exact:?} vs {cd:?}");
    }
}

#[test]
fn saving_never_replaces_a_directory_it_did_not_write() {
    let (train, _) = us5();
    let m = fit(&config("linear"), train, None, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("research");
    std::fs::create_dir_all(d.join("notes")).unwrap();
    std::fs::write(d.join("thesis.txt"), "years of work").unwrap();
    std::fs::write(d.join("notes/a.md"), "draft").unwrap();
    let e = m.save(&d, &[], Replace::Own).unwrap_err();
    assert!(e.is_user_error(), "{e}");
    assert!(e.to_string().contains("thesis.txt"), "{e}");
    assert_eq!(std::fs::read_to_string(d.join("thesis.txt")).unwrap(), "years of work");
    assert_eq!(std::fs::read_to_string(d.join("notes/a.md")).unwrap(), "draft");
    // Nothing was left beside it either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A saved model is replaced by the next save; --force replaces the user's directory.
    let saved = dir.path().join("model");
    m.save(&saved, &[], Replace::Own).unwrap();
    std::fs::write(saved.join("stale.txt"), "from before").unwrap();
    m.save(&saved, &[], Replace::Own).unwrap();
    assert!(!saved.join("stale.txt").exists());
    TrainedModel::load(&saved).unwrap();
    m.save(&d, &[], Replace::Force).unwrap();
    assert!(!d.join("thesis.txt").exists());
    TrainedModel::load(&d).unwrap();
}

#[test]
fn altered_truncated_or_mismatched_models_are_refused() {
    let (train, test) = us5();
    let m = fit(&config("gbm"), train, None, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("m");
    m.save(&d, &[], Replace::Own).unwrap();
    // Altered: one byte of the XGBoost model.
    let model_file = d.join("xgboost.json");
    let mut bytes = std::fs::read(&model_file).unwrap();
    let original = bytes.clone();
    let k = bytes.len() / 2;
    bytes[k] = if bytes[k] == b'1' { b'2' } else { b'1' };
    std::fs::write(&model_file, &bytes).unwrap();
    let e = TrainedModel::load(&d).unwrap_err().to_string();
    assert!(e.contains("xgboost.json was altered or truncated"), "{e}");
    // Truncated.
    std::fs::write(&model_file, &original[..original.len() / 3]).unwrap();
    let e = TrainedModel::load(&d).unwrap_err().to_string();
    assert!(e.contains("altered or truncated"), "{e}");
    // Missing.
    std::fs::remove_file(&model_file).unwrap();
    let e = TrainedModel::load(&d).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    // Intact model, data from another spec.
    std::fs::write(&model_file, &original).unwrap();
    let loaded = TrainedModel::load(&d).unwrap();
    let mut other = test.clone();
    Arc::make_mut(&mut other.matrix).spec_hash = SpecHash("0123456789abcdef".into());
    let e = loaded.predict(&other).unwrap_err().to_string();
    assert!(e.contains("feature spec mismatch"), "{e}");
    // A broken model.json.
    std::fs::write(d.join("model.json"), "{").unwrap();
    assert!(TrainedModel::load(&d).unwrap_err().to_string().contains("invalid model.json"));
}

#[test]
fn rule_scores_match_their_definitions() {
    let (_, test) = us5();
    let m = fit(&config("rule"), &test.clone(), None, 0).unwrap();
    let p = m.predict(test).unwrap();
    let (s, d) = &test.matrix.index[100];
    let closes = test.history.get(s).unwrap().until(*d);
    let n = closes.len();
    let fast = closes[n - 10..].iter().sum::<f64>() / 10.0;
    let slow = closes[n - 20..].iter().sum::<f64>() / 20.0;
    assert!((p.score[100] - (fast / slow - 1.0)).abs() < 1e-12);
}

#[test]
fn ensemble_rank_normalises_per_date() {
    let idx: Vec<stockcast_features::matrix::RowKey> = ["A", "B", "C", "A", "B"]
        .iter()
        .zip([1, 1, 1, 2, 2])
        .map(|(s, d)| ((*s).into(), chrono::NaiveDate::from_ymd_opt(2020, 1, d).unwrap()))
        .collect();
    let r = stockcast_models::ensemble::rank_normalise(&idx, &[0.3, -1.0, 0.3, f64::NAN, 5.0]);
    assert!((r[0] - 4.0 / 6.0).abs() < 1e-12 && (r[1] - 1.0 / 6.0).abs() < 1e-12 && (r[2] - 4.0 / 6.0).abs() < 1e-12);
    assert!(r[3].is_nan() && (r[4] - 0.5).abs() < 1e-12);
}

#[test]
fn bad_configs_are_rejected_with_reasons() {
    for (text, want) in [
        ("kind = \"gbm\"\neta = 0", "eta"),
        ("kind = \"gbm\"\nmax_dept = 3", "unknown field"),
        ("kind = \"linear\"\nl1_ratio = 2", "l1_ratio"),
        ("kind = \"rule\"\nrule = \"sma_cross\"\nfast = 20\nslow = 10", "fast < slow"),
        ("kind = \"ensemble\"\nmembers = []", "no members"),
        ("kind = \"lstm\"\nhidden = 0", "hidden must be at least 1"),
        ("kind = \"lstm\"\ndropout = 1.5", "dropout"),
        ("kind = \"lstm\"\nloss = \"l1\"", "unknown variant"),
        ("kind = \"nope\"", "unknown variant"),
    ] {
        let e = ModelConfig::from_toml(text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

/// Fitting on rows of a dataset in place (`fit_rows`, what the walk-forward runner does) gives the model that
/// fitting on a copy of those rows gives: every kind, scattered rows, the same metadata.
#[test]
fn fitting_rows_in_place_equals_fitting_their_copy() {
    let (train, test) = us5();
    let rows: Vec<usize> = (0..train.len()).filter(|i| i % 3 != 1).collect();
    let valid_rows: Vec<usize> = (0..train.len()).filter(|i| i % 3 == 1).collect();
    let (copy, valid_copy) = (train.rows(&rows), train.rows(&valid_rows));
    for name in ["gbm", "linear", "ensemble", "rule", "forecast"] {
        let cfg = config(name);
        let a = stockcast_models::fit_rows(
            &cfg,
            stockcast_models::Rows::of(train, &rows),
            Some(stockcast_models::Rows::of(train, &valid_rows)),
            5,
        )
        .unwrap();
        let b = fit(&cfg, &copy, Some(&valid_copy), 5).unwrap();
        assert_eq!(a.meta.train_rows, rows.len(), "{name}");
        assert_eq!((a.meta.train_rows, a.meta.train_range), (b.meta.train_rows, b.meta.train_range), "{name}");
        let (pa, pb) = (a.predict(test).unwrap(), b.predict(test).unwrap());
        assert_identical(&pa.score, &pb.score, &format!("{name}: rows in place vs their copy"));
    }
}

/// Two symbols on weekdays whose log opens and log closes share a trend but carry weekday cycles two days
/// apart: the next-open label open(t+1) → open(t+1+h) and the close-to-close return from t differ every day.
fn cycle_prices() -> stockcast_features::PriceFrame {
    use stockcast_features::polars::prelude::*;
    let dates = stockcast_features::synth::weekdays(chrono::NaiveDate::from_ymd_opt(2015, 1, 5).unwrap(), 700);
    let cycle = |k: u32| 0.01 * (std::f64::consts::TAU * f64::from(k % 5) / 5.0).sin();
    let (mut sym, mut day, mut open, mut close) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (s, drift) in [("AAA", 0.0004), ("BBB", -0.0002)] {
        for (i, d) in dates.iter().enumerate() {
            let dow = chrono::Datelike::weekday(d).num_days_from_monday();
            let trend = 4.6 + drift * i as f64;
            sym.push(s);
            day.push(stockcast_features::prices::date_to_days(*d));
            open.push((trend + cycle(dow)).exp());
            close.push((trend + cycle(dow + 2)).exp());
        }
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), sym),
        Column::new("date".into(), day).cast(&DataType::Date).unwrap(),
        Column::new("open".into(), open),
        Column::new("close".into(), close),
    ])
    .unwrap();
    stockcast_features::PriceFrame::from_df(df).unwrap()
}

#[test]
fn the_forecast_model_scores_its_own_label() {
    let prices = cycle_prices();
    let toml = "[label]\nhorizon = 1\n[[features]]\nfamily = \"returns\"\nwindows = [1]\n";
    let spec = FeatureSpec::from_toml(toml).unwrap();
    let ff = build_features(&prices, &spec).unwrap();
    let m = FeatureMatrix::from_frame(&ff, MatrixOptions { require_label: true, drop_incomplete: true }).unwrap();
    let all = Dataset::new(m, Arc::new(History::from_prices(&prices).unwrap()));
    let cut = chrono::NaiveDate::from_ymd_opt(2017, 1, 2).unwrap();
    let (train, test) = (all.filter(|(_, d)| *d < cut), all.filter(|(_, d)| *d > cut));
    let cfg = ModelConfig::from_toml("kind = \"forecast\"\nmethod = \"prophet\"\nyearly_order = 0").unwrap();
    let model = fit(&cfg, &train, None, 1).unwrap();
    let p = model.predict(&test).unwrap();
    let labels: Vec<f64> = test.matrix.y.as_ref().unwrap().iter().map(|v| f64::from(*v)).collect();
    let n = p.score.len();
    assert!(n > 300 && p.score.iter().all(|s| s.is_finite()), "{n} rows");
    let mae = p.score.iter().zip(&labels).map(|(s, l)| (s - l).abs()).sum::<f64>() / n as f64;
    let spread = labels.iter().map(|l| l.abs()).sum::<f64>() / n as f64;
    // The labels swing by ~1 % with the weekday; a forecast of the close-to-close return from t (the old
    // target) misses them by about as much, the open(t+1) → open(t+2) forecast by a small fraction.
    assert!(spread > 0.004, "label size {spread}");
    assert!(mae < 0.1 * spread, "MAE {mae} against labels of mean size {spread}");
}

/// Scoring a date with only the look-back rows of its context (each scored symbol's last `lookback` rows, whole
/// dates) gives the sequence model the same scores, bit for bit, as a context of every row; one row fewer does
/// not (the test can fail). On the bundled panel, early (fewer rows than the look-back), mid-history and last.
#[test]
fn a_days_sequences_need_only_the_look_back_rows() {
    let (train, _) = us5();
    let cfg = ModelConfig::from_toml("kind = \"lstm\"\nlookback = 10\nhidden = 8\nepochs = 1\npatience = 0").unwrap();
    assert_eq!(cfg.day_context(), stockcast_models::DayContext::Rows(10));
    assert_eq!(config("linear").day_context(), stockcast_models::DayContext::None);
    let m = fit(&cfg, train, None, 3).unwrap();
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
        .join("../../datasets/us5_daily.csv");
    let prices = load_prices(&path, &LoadOptions::default()).unwrap().prices;
    let spec = Checked::new(FeatureSpec::default()).unwrap();
    let calendar = prices.calendar().unwrap();
    for t in [calendar[4], calendar[1300], *calendar.last().unwrap()] {
        let known = prices.until(t).unwrap();
        let day = |c| Dataset::for_day(&known, &spec, t, c).unwrap();
        let (all, tail) = (day(stockcast_models::DayContext::All), day(stockcast_models::DayContext::Rows(10)));
        assert_eq!(all.matrix.index, tail.matrix.index, "{t}");
        assert!(!tail.is_empty(), "{t}");
        assert!(tail.context.as_ref().unwrap().index.len() <= 10 * 5, "{t}: a context of the last 10 dates");
        let scores = m.predict(&all).unwrap().score;
        assert_identical(&scores, &m.predict(&tail).unwrap().score, &format!("lstm on {t}, look-back rows only"));
        if t != calendar[4] {
            let short = m.predict(&day(stockcast_models::DayContext::Rows(9))).unwrap().score;
            assert!(scores.iter().zip(&short).all(|(a, b)| a.to_bits() != b.to_bits()), "{t}: 9 rows scored the same");
        }
    }
}
