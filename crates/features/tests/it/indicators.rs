//! Each indicator family against an independent, straightforward loop implementation of its documented
//! definition (and a few values computed by hand).

use stockcast_features::polars::prelude::*;
use stockcast_features::{FeatureDef, FeatureSpec, PriceFrame, build_features};

use crate::{assert_close, col_f64};

/// A deterministic, wiggly single-symbol OHLCV series of `n` days (no RNG: closed-form).
fn series(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut close = Vec::with_capacity(n);
    let mut p = 100.0;
    for t in 0..n {
        let t = t as f64;
        p *= 1.0 + 0.02 * (t * 0.7).sin() + 0.01 * (t * 0.13).cos() - 0.002;
        close.push(p);
    }
    let open: Vec<f64> = close.iter().enumerate().map(|(t, c)| c * (1.0 + 0.004 * ((t as f64) * 1.3).sin())).collect();
    let high: Vec<f64> = close
        .iter()
        .zip(&open)
        .enumerate()
        .map(|(t, (c, o))| c.max(*o) * (1.0 + 0.01 + 0.005 * (t as f64).cos().abs()))
        .collect();
    let low: Vec<f64> = close
        .iter()
        .zip(&open)
        .enumerate()
        .map(|(t, (c, o))| c.min(*o) * (1.0 - 0.01 - 0.004 * (t as f64).sin().abs()))
        .collect();
    let volume: Vec<f64> = (0..n).map(|t| 1e6 * (1.5 + ((t as f64) * 0.9).sin())).collect();
    (open, high, low, close, volume)
}

fn frame(symbols: &[(&str, usize)]) -> PriceFrame {
    let (mut sym, mut date, mut o, mut h, mut l, mut c, mut v) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (k, (s, n)) in symbols.iter().enumerate() {
        let (so, sh, sl, sc, sv) = series(*n + k * 7);
        let skip = k * 7;
        for t in 0..*n {
            sym.push(s.to_string());
            date.push(10_000 + t as i32);
            o.push(so[t + skip]);
            h.push(sh[t + skip]);
            l.push(sl[t + skip]);
            c.push(sc[t + skip]);
            v.push(sv[t + skip]);
        }
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), sym),
        Column::new("date".into(), date).cast(&DataType::Date).unwrap(),
        Column::new("open".into(), o),
        Column::new("high".into(), h),
        Column::new("low".into(), l),
        Column::new("close".into(), c),
        Column::new("volume".into(), v),
    ])
    .unwrap();
    PriceFrame::from_df(df).unwrap()
}

fn spec_of(toml: &str) -> FeatureSpec {
    FeatureSpec::from_toml(toml).unwrap().into_inner()
}

fn compute(toml: &str, n: usize) -> (DataFrame, (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)) {
    let prices = frame(&[("A", n)]);
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec_of(toml).clone()).unwrap()).unwrap();
    (ff.df().clone(), series(n))
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn sample_sd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0)).sqrt()
}

/// `y[t] = (1-a) y[t-1] + a x[t]`, seeded with the first value, `None` before `min_periods` observations.
fn ewm(x: &[Option<f64>], alpha: f64, min_periods: usize) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(x.len());
    let mut y: Option<f64> = None;
    let mut seen = 0;
    for v in x {
        if let Some(v) = v {
            seen += 1;
            y = Some(match y {
                None => *v,
                Some(prev) => (1.0 - alpha) * prev + alpha * v,
            });
        }
        out.push(if seen >= min_periods { y } else { None });
    }
    out
}

fn rolling(x: &[f64], w: usize, f: impl Fn(&[f64]) -> f64) -> Vec<Option<f64>> {
    (0..x.len()).map(|t| (t + 1 >= w).then(|| f(&x[t + 1 - w..=t]))).collect()
}

const N: usize = 300;

#[test]
fn returns_and_log_returns() {
    let (df, (_, _, _, c, _)) =
        compute("[[features]]\nfamily='returns'\nwindows=[1,5]\n[[features]]\nfamily='log_returns'\nwindows=[3]", N);
    for w in [1usize, 5] {
        let want: Vec<Option<f64>> = (0..N).map(|t| (t >= w).then(|| c[t] / c[t - w] - 1.0)).collect();
        assert_close(&col_f64(&df, &format!("ret_{w}")), &want, 1e-12, "ret");
    }
    let want: Vec<Option<f64>> = (0..N).map(|t| (t >= 3).then(|| (c[t] / c[t - 3]).ln())).collect();
    assert_close(&col_f64(&df, "logret_3"), &want, 1e-12, "logret_3");
}

#[test]
fn returns_by_hand() {
    // closes 10, 11, 12.1, 9.68: ret_1 = 0.1, 0.1, -0.2; ret_2 at t=3 = 9.68/11 - 1 = -0.12.
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), ["X"; 4]),
        Column::new("date".into(), [0i32, 1, 2, 3]).cast(&DataType::Date).unwrap(),
        Column::new("close".into(), [10.0, 11.0, 12.1, 9.68]),
    ])
    .unwrap();
    let prices = PriceFrame::from_df(df).unwrap();
    let ff = build_features(
        &prices,
        &stockcast_features::Checked::new(
            spec_of("[label]\nhorizon=1\n[[features]]\nfamily='returns'\nwindows=[1,2]").clone(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_close(&col_f64(ff.df(), "ret_1"), &[None, Some(0.1), Some(0.1), Some(-0.2)], 1e-12, "ret_1");
    assert_close(&col_f64(ff.df(), "ret_2"), &[None, None, Some(0.21), Some(-0.12)], 1e-12, "ret_2");
    // The default label on close-only data: close(t+1+1) / close(t+1) - 1 (the close of t+1 stands in for its
    // open); the last two days have none.
    assert_close(&col_f64(ff.df(), "label"), &[Some(0.1), Some(-0.2), None, None], 1e-12, "label");
}

#[test]
fn moving_average_and_ema_ratios() {
    let (df, (_, _, _, c, _)) =
        compute("[[features]]\nfamily='ma_ratio'\nwindows=[10]\n[[features]]\nfamily='ema_ratio'\nwindows=[12]", N);
    let sma = rolling(&c, 10, mean);
    let want: Vec<Option<f64>> = sma.iter().zip(&c).map(|(m, c)| m.map(|m| c / m - 1.0)).collect();
    assert_close(&col_f64(&df, "ma_ratio_10"), &want, 1e-10, "ma_ratio_10");
    let cs: Vec<Option<f64>> = c.iter().copied().map(Some).collect();
    let ema = ewm(&cs, 2.0 / 13.0, 12);
    let want: Vec<Option<f64>> = ema.iter().zip(&c).map(|(m, c)| m.map(|m| c / m - 1.0)).collect();
    assert_close(&col_f64(&df, "ema_ratio_12"), &want, 1e-10, "ema_ratio_12");
}

#[test]
fn volatility_is_sample_sd_of_log_returns() {
    let (df, (_, _, _, c, _)) = compute("[[features]]\nfamily='volatility'\nwindows=[20]", N);
    let lr: Vec<f64> = (1..N).map(|t| (c[t] / c[t - 1]).ln()).collect();
    let mut want = vec![None];
    want.extend(rolling(&lr, 20, sample_sd));
    assert_close(&col_f64(&df, "vol_20"), &want, 1e-9, "vol_20");
}

#[test]
fn rsi_wilder() {
    let (df, (_, _, _, c, _)) = compute("[[features]]\nfamily='rsi'\nwindows=[14]", N);
    let mut gains = vec![None];
    let mut losses = vec![None];
    for t in 1..N {
        let d = c[t] - c[t - 1];
        gains.push(Some(d.max(0.0)));
        losses.push(Some((-d).max(0.0)));
    }
    let g = ewm(&gains, 1.0 / 14.0, 14);
    let l = ewm(&losses, 1.0 / 14.0, 14);
    let want: Vec<Option<f64>> =
        g.iter().zip(&l).map(|(g, l)| g.zip(*l).map(|(g, l)| 100.0 - 100.0 / (1.0 + g / l))).collect();
    assert_close(&col_f64(&df, "rsi_14"), &want, 1e-9, "rsi_14");
}

#[test]
fn rsi_of_a_rising_series_is_100() {
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), vec!["X"; 30]),
        Column::new("date".into(), (0..30).collect::<Vec<i32>>()).cast(&DataType::Date).unwrap(),
        Column::new("close".into(), (0..30).map(|t| 10.0 + f64::from(t)).collect::<Vec<f64>>()),
    ])
    .unwrap();
    let ff = build_features(
        &PriceFrame::from_df(df).unwrap(),
        &stockcast_features::Checked::new(spec_of("[[features]]\nfamily='rsi'\nwindows=[5]").clone()).unwrap(),
    )
    .unwrap();
    let rsi = col_f64(ff.df(), "rsi_5");
    assert!(rsi[..5].iter().all(Option::is_none));
    assert!(rsi[5..].iter().all(|v| (v.unwrap() - 100.0).abs() < 1e-12));
}

#[test]
fn macd_line_signal_hist() {
    let (df, (_, _, _, c, _)) = compute("[[features]]\nfamily='macd'", N);
    let cs: Vec<Option<f64>> = c.iter().copied().map(Some).collect();
    let fast = ewm(&cs, 2.0 / 13.0, 12);
    let slow = ewm(&cs, 2.0 / 27.0, 26);
    let line: Vec<Option<f64>> = (0..N).map(|t| fast[t].zip(slow[t]).map(|(f, s)| (f - s) / c[t])).collect();
    let signal = ewm(&line, 2.0 / 10.0, 9);
    let hist: Vec<Option<f64>> = line.iter().zip(&signal).map(|(l, s)| l.zip(*s).map(|(l, s)| l - s)).collect();
    assert_close(&col_f64(&df, "macd_12_26"), &line, 1e-10, "macd");
    assert_close(&col_f64(&df, "macd_signal_12_26_9"), &signal, 1e-10, "signal");
    assert_close(&col_f64(&df, "macd_hist_12_26_9"), &hist, 1e-10, "hist");
}

#[test]
fn bollinger_percent_b() {
    let (df, (_, _, _, c, _)) = compute("[[features]]\nfamily='bollinger'\nwindows=[20]\nk=2.0", N);
    let want: Vec<Option<f64>> = (0..N)
        .map(|t| {
            (t >= 19).then(|| {
                let w = &c[t - 19..=t];
                let (m, sd) = (mean(w), sample_sd(w));
                (c[t] - (m - 2.0 * sd)) / (4.0 * sd)
            })
        })
        .collect();
    assert_close(&col_f64(&df, "bb_pctb_20"), &want, 1e-9, "bb");
}

#[test]
fn atr_and_stochastic_and_ranges() {
    let (df, (o, h, l, c, _)) = compute(
        "[[features]]\nfamily='atr'\nwindows=[14]\n[[features]]\nfamily='stochastic'\nwindows=[14]\n\
         [[features]]\nfamily='hl_range'\nwindows=[1,5]\n[[features]]\nfamily='open_gap'\nwindows=[1]",
        N,
    );
    let tr: Vec<Option<f64>> = (0..N)
        .map(|t| {
            Some(if t == 0 {
                h[0] - l[0]
            } else {
                (h[t] - l[t]).max((h[t] - c[t - 1]).abs()).max((l[t] - c[t - 1]).abs())
            })
        })
        .collect();
    let atr = ewm(&tr, 1.0 / 14.0, 14);
    let want: Vec<Option<f64>> = atr.iter().zip(&c).map(|(a, c)| a.map(|a| a / c)).collect();
    assert_close(&col_f64(&df, "atr_14"), &want, 1e-10, "atr");
    let want: Vec<Option<f64>> = (0..N)
        .map(|t| {
            (t >= 13).then(|| {
                let lo = l[t - 13..=t].iter().copied().fold(f64::INFINITY, f64::min);
                let hi = h[t - 13..=t].iter().copied().fold(f64::NEG_INFINITY, f64::max);
                100.0 * (c[t] - lo) / (hi - lo)
            })
        })
        .collect();
    assert_close(&col_f64(&df, "stoch_k_14"), &want, 1e-10, "stoch");
    let hl: Vec<f64> = (0..N).map(|t| (h[t] - l[t]) / c[t]).collect();
    assert_close(&col_f64(&df, "hl_range_1"), &hl.iter().copied().map(Some).collect::<Vec<_>>(), 1e-12, "hl1");
    assert_close(&col_f64(&df, "hl_range_5"), &rolling(&hl, 5, mean), 1e-12, "hl5");
    let gap: Vec<Option<f64>> = (0..N).map(|t| (t >= 1).then(|| o[t] / c[t - 1] - 1.0)).collect();
    assert_close(&col_f64(&df, "open_gap_1"), &gap, 1e-12, "gap");
}

#[test]
fn volume_zscore_and_price_volume_correlation() {
    let (df, (_, _, _, c, v)) = compute(
        "[[features]]\nfamily='volume_z'\nwindows=[20]\n[[features]]\nfamily='price_volume_corr'\nwindows=[10]",
        N,
    );
    let lv: Vec<f64> = v.iter().map(|x| (1.0 + x).ln()).collect();
    let want: Vec<Option<f64>> =
        (0..N).map(|t| (t >= 19).then(|| (lv[t] - mean(&lv[t - 19..=t])) / sample_sd(&lv[t - 19..=t]))).collect();
    assert_close(&col_f64(&df, "volume_z_20"), &want, 1e-9, "volume_z");
    let want: Vec<Option<f64>> = (0..N)
        .map(|t| {
            (t >= 9).then(|| {
                let (x, y) = (&c[t - 9..=t], &lv[t - 9..=t]);
                let (mx, my) = (mean(x), mean(y));
                let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
                let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
                let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
                cov / (vx * vy).sqrt()
            })
        })
        .collect();
    assert_close(&col_f64(&df, "pv_corr_10"), &want, 1e-8, "pv_corr");
}

#[test]
fn distance_to_max_min_skew_kurtosis() {
    let (df, (_, _, _, c, _)) = compute(
        "[[features]]\nfamily='dist_max'\nwindows=[20]\n[[features]]\nfamily='dist_min'\nwindows=[20]\n\
         [[features]]\nfamily='skew'\nwindows=[20]\n[[features]]\nfamily='kurtosis'\nwindows=[20]",
        N,
    );
    let mx = rolling(&c, 20, |w| w.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let mn = rolling(&c, 20, |w| w.iter().copied().fold(f64::INFINITY, f64::min));
    let dmax: Vec<Option<f64>> = mx.iter().zip(&c).map(|(m, c)| m.map(|m| c / m - 1.0)).collect();
    let dmin: Vec<Option<f64>> = mn.iter().zip(&c).map(|(m, c)| m.map(|m| c / m - 1.0)).collect();
    assert_close(&col_f64(&df, "dist_max_20"), &dmax, 1e-12, "dist_max");
    assert_close(&col_f64(&df, "dist_min_20"), &dmin, 1e-12, "dist_min");
    let r: Vec<f64> = (1..N).map(|t| c[t] / c[t - 1] - 1.0).collect();
    let moment = |w: &[f64], k: i32| {
        let m = mean(w);
        w.iter().map(|x| (x - m).powi(k)).sum::<f64>() / w.len() as f64
    };
    let mut skew = vec![None];
    skew.extend(rolling(&r, 20, |w| moment(w, 3) / moment(w, 2).powf(1.5)));
    let mut kurt = vec![None];
    kurt.extend(rolling(&r, 20, |w| moment(w, 4) / moment(w, 2).powi(2) - 3.0));
    assert_close(&col_f64(&df, "skew_20"), &skew, 1e-7, "skew");
    assert_close(&col_f64(&df, "kurt_20"), &kurt, 1e-7, "kurt");
}

#[test]
fn cross_sectional_rank_with_ties_and_zscore() {
    // Four symbols, one date: ret_1 values 0.1, 0.2, 0.2, 0.3 → average ranks 1, 2.5, 2.5, 4 → (r - 0.5) / 4.
    let prev = [10.0, 10.0, 10.0, 10.0];
    let now = [11.0, 12.0, 12.0, 13.0];
    let mut sym = vec![];
    let mut date = vec![];
    let mut close = vec![];
    for (k, s) in ["A", "B", "C", "D"].iter().enumerate() {
        sym.extend([s.to_string(), s.to_string()]);
        date.extend([0i32, 1]);
        close.extend([prev[k], now[k]]);
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), sym),
        Column::new("date".into(), date).cast(&DataType::Date).unwrap(),
        Column::new("close".into(), close),
    ])
    .unwrap();
    let spec = spec_of(
        "[label]\nhorizon=1\n[[features]]\nfamily='returns'\nwindows=[1]\n\
         [[features]]\nfamily='cs_rank'\nof=['ret_1']\n[[features]]\nfamily='cs_zscore'\nof=['ret_1']",
    );
    let ff =
        build_features(&PriceFrame::from_df(df).unwrap(), &stockcast_features::Checked::new(spec.clone()).unwrap())
            .unwrap();
    let rank = col_f64(ff.df(), "cs_rank_ret_1");
    // Rows are (A,0),(A,1),(B,0),... ; date 0 has no returns → null ranks.
    let want = [None, Some(0.125), None, Some(0.5), None, Some(0.5), None, Some(0.875)];
    assert_close(&rank, &want, 1e-12, "cs_rank");
    let r = [0.1, 0.2, 0.2, 0.3];
    let (m, sd) = (mean(&r), sample_sd(&r));
    let z = col_f64(ff.df(), "cs_z_ret_1");
    for k in 0..4 {
        assert!(z[2 * k].is_none());
        assert!((z[2 * k + 1].unwrap() - (r[k] - m) / sd).abs() < 1e-9);
    }
}

#[test]
fn labels_forward_return_and_demeaned() {
    let prices = frame(&[("A", 80), ("B", 80), ("C", 80)]);
    // Close label: close(t+5) / close(t) - 1.
    let close_spec = spec_of("[label]\nhorizon=5\nprice='close'\n[[features]]\nfamily='returns'\nwindows=[1]");
    let ff = build_features(&prices, &stockcast_features::Checked::new(close_spec.clone()).unwrap()).unwrap();
    let close = col_f64(prices.df(), "close");
    let label = col_f64(ff.df(), "label");
    for s in 0..3 {
        for t in 0..80 {
            let i = s * 80 + t;
            let want = (t + 5 < 80).then(|| close[i + 5].unwrap() / close[i].unwrap() - 1.0);
            assert_close(&[label[i]], &[want], 1e-12, "close label");
        }
    }
    // The default (next-open) label: open(t+1+5) / open(t+1) - 1.
    let spec = spec_of("[label]\nhorizon=5\n[[features]]\nfamily='returns'\nwindows=[1]");
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    let open = col_f64(prices.df(), "open");
    let label = col_f64(ff.df(), "label");
    for s in 0..3 {
        for t in 0..80 {
            let i = s * 80 + t;
            let want = (t + 6 < 80).then(|| open[i + 6].unwrap() / open[i + 1].unwrap() - 1.0);
            assert_close(&[label[i]], &[want], 1e-12, "open label");
        }
    }
    let mut demeaned = spec.clone();
    demeaned.label.demean = stockcast_features::spec::Demean::Date;
    let ff = build_features(&prices, &stockcast_features::Checked::new(demeaned.clone()).unwrap()).unwrap();
    let dl = col_f64(ff.df(), "label");
    for t in 0..74 {
        let m = (dl[t].unwrap() + dl[80 + t].unwrap() + dl[160 + t].unwrap()) / 3.0;
        assert!(m.abs() < 1e-12, "mean demeaned label at {t}: {m}");
        let raw_mean = (label[t].unwrap() + label[80 + t].unwrap() + label[160 + t].unwrap()) / 3.0;
        assert!((dl[t].unwrap() - (label[t].unwrap() - raw_mean)).abs() < 1e-12);
    }
}

#[test]
fn per_symbol_windows_do_not_mix_symbols() {
    // Symbol B's first rows must have no features from A's tail.
    let prices = frame(&[("A", 50), ("B", 50)]);
    let spec = spec_of(
        "[[features]]\nfamily='ma_ratio'\nwindows=[5]\n[[features]]\nfamily='ema_ratio'\nwindows=[5]\n\
         [[features]]\nfamily='returns'\nwindows=[4]\n[[features]]\nfamily='dist_max'\nwindows=[5]\n\
         [[features]]\nfamily='stochastic'\nwindows=[5]\n[[features]]\nfamily='atr'\nwindows=[5]",
    );
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    for name in ["ma_ratio_5", "ema_ratio_5", "ret_4", "dist_max_5", "stoch_k_5", "atr_5"] {
        let v = col_f64(ff.df(), name);
        assert!(v[50..54].iter().all(Option::is_none), "{name}: {:?}", &v[50..54]);
        assert!(v[54].is_some(), "{name}");
    }
    // And A's last labels (next open to open 5 rows later: 6 rows ahead) must not reach into B's prices.
    let label = col_f64(ff.df(), "label");
    assert!(label[44..50].iter().all(Option::is_none), "{:?}", &label[44..50]);
    assert!(label[43].is_some());
}

#[test]
fn default_spec_output_names_match_frame_columns() {
    let prices = frame(&[("A", 300), ("B", 300)]);
    let spec = FeatureSpec::default();
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    assert_eq!(ff.features(), spec.output_names().as_slice());
    assert!(ff.features().len() >= 60);
    assert!(ff.skipped().is_empty());
    // After the longest window (250) every feature has a value.
    let df = ff.df();
    for name in ff.features() {
        let v = col_f64(df, name);
        assert!(v[260].is_some_and(f64::is_finite), "{name} at row 260: {:?}", v[260]);
    }
}

#[test]
fn required_family_fails_on_close_only_data() {
    let df = DataFrame::new_infer_height(vec![
        Column::new("symbol".into(), ["X"; 3]),
        Column::new("date".into(), [0i32, 1, 2]).cast(&DataType::Date).unwrap(),
        Column::new("close".into(), [1.0, 2.0, 3.0]),
    ])
    .unwrap();
    let prices = PriceFrame::from_df(df).unwrap();
    let mut def = FeatureDef {
        family: stockcast_features::Family::Atr,
        windows: vec![5],
        required: true,
        k: None,
        spans: None,
        of: vec![],
        name: None,
        expr: None,
    };
    let spec = FeatureSpec { version: 1, label: Default::default(), features: vec![def.clone()] };
    let err =
        build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap_err().to_string();
    assert!(err.contains("atr") && err.contains("high"), "{err}");
    def.required = false;
    let spec = FeatureSpec {
        version: 1,
        label: Default::default(),
        features: vec![
            FeatureDef { family: stockcast_features::Family::Returns, windows: vec![1], ..def.clone() },
            def,
        ],
    };
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    assert_eq!(ff.features(), ["ret_1"]);
    assert_eq!(ff.skipped().len(), 1);
    assert!(ff.notes()[0].contains("atr"));
}

#[test]
fn feature_matrix_rows_columns_and_missing_values() {
    use stockcast_features::{FeatureMatrix, MatrixOptions};
    let prices = frame(&[("A", 30), ("B", 30)]);
    let spec = spec_of("[label]\nhorizon=2\n[[features]]\nfamily='returns'\nwindows=[1,3]");
    let ff = build_features(&prices, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    let all = FeatureMatrix::from_frame(&ff, MatrixOptions::default()).unwrap();
    assert_eq!((all.nrows(), all.ncols()), (60, 2));
    assert_eq!(all.feature_names, ["ret_1", "ret_3"]);
    assert_eq!(&all.spec_hash, ff.spec_hash());
    // Warm-up rows are NaN, not dropped, unless asked.
    assert!(all.x[[0, 0]].is_nan() && all.x[[2, 1]].is_nan() && !all.x[[3, 1]].is_nan());
    let ret1 = col_f64(ff.df(), "ret_1");
    assert!((f64::from(all.x[[5, 0]]) - ret1[5].unwrap()).abs() < 1e-6);
    assert_eq!(&*all.index[30].0, "B");
    // Training rows: a label and every feature present → 30 - 3 (warm-up) - 3 (no label: the next-open label
    // needs open(t+1+2)) per symbol.
    let train = FeatureMatrix::from_frame(&ff, MatrixOptions { require_label: true, drop_incomplete: true }).unwrap();
    assert_eq!(train.nrows(), 2 * 24);
    let y = train.y.as_ref().unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    assert!(train.x.iter().all(|v| v.is_finite()));
    assert_eq!(&*train.index[0].0, "A");
    assert!(train.index.windows(2).all(|w| w[0] < w[1]), "index sorted by (symbol, date)");
}
