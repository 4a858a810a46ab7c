//! Formula features: checked at spec load with positions, equal to qlib's operator definitions computed
//! independently, hashed, and blind to later prices.

use std::fmt::Write as _;

use stockcast_features::{FeatureSpec, PriceFrame, build_features};

use crate::{load, write};

fn spec_err(expr: &str) -> String {
    let toml = format!(
        "[[features]]\nfamily = \"returns\"\nwindows = [5]\n[[features]]\nfamily = \"cs_rank\"\nof = [\"ret_5\"]\n\
         [[features]]\nfamily = \"expr\"\nname = \"x\"\nexpr = {expr:?}\n"
    );
    FeatureSpec::from_toml(&toml).unwrap_err().to_string()
}

#[test]
fn bad_formulas_are_refused_at_spec_load_naming_the_feature_and_column() {
    let e = spec_err("mean($close, 5) / mena($close, 20)");
    assert!(e.contains("expr feature `x`, column 19") && e.contains("unknown function `mena`"), "{e}");
    let e = spec_err("ref($close, -1)");
    assert!(e.contains("column 13") && e.contains("look ahead"), "{e}");
    let e = spec_err("ret_5 / ret_50");
    assert!(e.contains("column 9") && e.contains("`ret_50` is not a feature defined earlier"), "{e}");
    // A feature cannot read itself or a later one (no cycle can form), nor a cross-sectional output.
    assert!(spec_err("x + 1").contains("`x` is not a feature defined earlier"));
    assert!(spec_err("cs_rank_ret_5 * 2").contains("`cs_rank_ret_5` is not a feature defined earlier"));
    let e = spec_err("std($close, 1)");
    assert!(e.contains("at least 2"), "{e}");
    let e = spec_err("group_rank($close, country)");
    assert!(e.contains("sector") && e.contains("country"), "{e}");
    let e = spec_err("(ret_5");
    assert!(e.contains("expected `)`"), "{e}");
}

/// Two symbols with wiggly closes and volumes; sectors from a securities file.
fn prices(dir: &std::path::Path, bump_after: Option<usize>) -> PriceFrame {
    let dates = stockcast_features::synth::weekdays(chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 120);
    let mut text = String::from("date,symbol,close,volume\n");
    for (k, s) in ["A", "B", "C"].iter().enumerate() {
        for (i, d) in dates.iter().enumerate() {
            let mut c = 20.0 + 5.0 * ((i as f64) * 0.37 + k as f64).sin() + 0.05 * i as f64;
            if bump_after.is_some_and(|t| i > t) {
                c *= 1.5;
            }
            let v = 1000.0 + 300.0 * ((i as f64) * 0.91 + 2.0 * k as f64).cos();
            let _ = writeln!(text, "{d},{s},{c},{v}");
        }
    }
    let path = write(dir, "p.csv", &text);
    let sec = write(dir, "sec.csv", "symbol,name,sector\nA,a,Tech\nB,b,Tech\nC,c,Energy\n");
    let opts = stockcast_features::LoadOptions { securities: Some(sec), ..Default::default() };
    stockcast_features::load_prices(&path, &opts).unwrap().prices
}

fn formula_spec() -> stockcast_features::Checked<FeatureSpec> {
    let feature =
        |name: &str, expr: &str| format!("[[features]]\nfamily = \"expr\"\nname = \"{name}\"\nexpr = \"{expr}\"\n");
    let mut toml = String::from("[[features]]\nfamily = \"returns\"\nwindows = [5]\n");
    for (n, e) in [
        ("mom", "ref($close, 5) / $close - 1"),
        ("m10", "mean($close, 10)"),
        ("s10", "std($close, 10)"),
        ("c10", "corr($close, log($volume), 10)"),
        ("r10", "rank($close, 10)"),
        ("mix", "clip(sign(ret_5) * abs(mom), -0.1, 0.1) + max($close, 3) - min($close, 3) + sum(ret_5, 2)"),
        ("csr", "cs_rank(ret_5)"),
        ("grp", "group_rank(ret_5, sector)"),
        ("grz", "group_zscore($close, sector)"),
    ] {
        toml.push_str(&feature(n, e));
    }
    toml.push_str("[[features]]\nfamily = \"cs_rank\"\nof = [\"ret_5\"]\n");
    FeatureSpec::from_toml(&toml).unwrap()
}

/// One symbol's values of a column, in date order.
fn series(f: &stockcast_features::FeatureFrame, symbol: &str, name: &str) -> Vec<Option<f64>> {
    let df = f.df();
    let s = df.column("symbol").unwrap().str().unwrap();
    let v = df.column(name).unwrap().f64().unwrap();
    (0..df.height()).filter(|&i| s.get(i) == Some(symbol)).map(|i| v.get(i)).collect()
}

fn near(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn formulas_equal_qlibs_operators_computed_independently() {
    let dir = tempfile::tempdir().unwrap();
    let p = prices(dir.path(), None);
    let f = build_features(&p, &formula_spec()).unwrap();
    assert_eq!(series(&f, "B", "mom").len(), 120);
    // The raw series of B, from the input.
    let (c, v): (Vec<f64>, Vec<f64>) = (0..120_usize)
        .map(|i| {
            (
                20.0 + 5.0 * ((i as f64) * 0.37 + 1.0).sin() + 0.05 * i as f64,
                1000.0 + 300.0 * ((i as f64) * 0.91 + 2.0).cos(),
            )
        })
        .unzip();
    let lv: Vec<f64> = v.iter().map(|x| x.ln()).collect();
    let win = |i: usize, w: usize| (i + 1 >= w).then(|| i + 1 - w..i + 1);
    for i in 0..120 {
        // Ref($close, 5) / $close - 1
        let mom = (i >= 5).then(|| c[i - 5] / c[i] - 1.0);
        assert!(near(series(&f, "B", "mom")[i], mom), "mom at {i}");
        // Mean and Std (pandas rolling, ddof 1).
        let mean = win(i, 10).map(|r| c[r].iter().sum::<f64>() / 10.0);
        let std = win(i, 10).map(|r| {
            let m = c[r.clone()].iter().sum::<f64>() / 10.0;
            (c[r].iter().map(|x| (x - m).powi(2)).sum::<f64>() / 9.0).sqrt()
        });
        assert!(near(series(&f, "B", "m10")[i], mean) && near(series(&f, "B", "s10")[i], std), "mean/std at {i}");
        // Corr: Pearson over the window.
        let corr = win(i, 10).map(|r| {
            let (x, y) = (&c[r.clone()], &lv[r]);
            let (mx, my) = (x.iter().sum::<f64>() / 10.0, y.iter().sum::<f64>() / 10.0);
            let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
            let sx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>().sqrt();
            let sy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>().sqrt();
            cov / (sx * sy)
        });
        assert!(near(series(&f, "B", "c10")[i], corr), "corr at {i}");
        // Rank: scipy.stats.percentileofscore(window, last, kind="rank") / 100 (qlib's Rank).
        let rank = win(i, 10).map(|r| {
            let x = c[i];
            let left = c[r.clone()].iter().filter(|a| **a < x).count() as f64;
            let right = c[r].iter().filter(|a| **a <= x).count() as f64;
            (left + right + if right > left { 1.0 } else { 0.0 }) * 50.0 / 10.0 / 100.0
        });
        assert!(near(series(&f, "B", "r10")[i], rank), "rank at {i}");
    }
    // cs_rank inside a formula is the cs_rank family; group_rank ranks within the sector (B among A, B).
    for s in ["A", "B", "C"] {
        let (a, b) = (series(&f, s, "csr"), series(&f, s, "cs_rank_ret_5"));
        assert!(a.iter().zip(&b).all(|(x, y)| near(*x, *y)), "{s}");
    }
    let (ga, gb, gc) = (series(&f, "A", "grp"), series(&f, "B", "grp"), series(&f, "C", "grp"));
    for i in 5..120 {
        assert!(near(gc[i], Some(0.5)), "C is alone in Energy: {:?}", gc[i]);
        let sum = ga[i].unwrap() + gb[i].unwrap();
        assert!((sum - 1.0).abs() < 1e-12, "two names: ranks 0.25 and 0.75");
    }
    assert!(series(&f, "C", "grz").iter().all(Option::is_none), "a group of one has no z-score");
    assert!(series(&f, "B", "mix").iter().skip(10).all(Option::is_some));
}

#[test]
fn formulas_are_hashed_and_read_no_later_price() {
    let dir = tempfile::tempdir().unwrap();
    let a =
        FeatureSpec::from_toml("[[features]]\nfamily = \"expr\"\nname = \"m\"\nexpr = \"mean($close, 5)\"\n").unwrap();
    let b =
        FeatureSpec::from_toml("[[features]]\nfamily = \"expr\"\nname = \"m\"\nexpr = \"mean($close, 6)\"\n").unwrap();
    assert_ne!(a.hash(), b.hash());
    // Prices after day 60 changed: every formula (cross-sectional and group ones included) up to day 60 holds.
    let (base, bumped) = (prices(dir.path(), None), prices(dir.path(), Some(60)));
    let (fa, fb) = (build_features(&base, &formula_spec()).unwrap(), build_features(&bumped, &formula_spec()).unwrap());
    for s in ["A", "B", "C"] {
        for name in formula_spec().output_names() {
            let (x, y) = (series(&fa, s, &name), series(&fb, s, &name));
            assert!(x[..=60].iter().zip(&y[..=60]).all(|(u, v)| near(*u, *v)), "{s} {name}");
        }
    }
    assert!(formula_spec().warmup_days() > 10);
}

#[test]
fn a_label_demeaned_by_sector_sums_to_zero_in_each_date_and_sector() {
    let dir = tempfile::tempdir().unwrap();
    let p = prices(dir.path(), None);
    let spec =
        FeatureSpec::from_toml("[label]\ndemean = \"sector\"\n[[features]]\nfamily = \"returns\"\nwindows = [1]\n")
            .unwrap();
    let f = build_features(&p, &spec).unwrap();
    let df = f.df();
    let (dates, sectors, labels) = (
        df.column("date").unwrap().date().unwrap().physical().clone(),
        df.column("sector").unwrap().str().unwrap().clone(),
        df.column("label").unwrap().f64().unwrap().clone(),
    );
    let mut sums: std::collections::BTreeMap<(i32, String), (f64, usize)> = std::collections::BTreeMap::new();
    for i in 0..df.height() {
        if let Some(l) = labels.get(i) {
            let e = sums.entry((dates.get(i).unwrap(), sectors.get(i).unwrap().to_owned())).or_default();
            e.0 += l;
            e.1 += 1;
        }
    }
    assert!(sums.len() > 100);
    // Energy has one name: its demeaned label is 0; Tech's two names cancel.
    assert!(sums.values().all(|(s, _)| s.abs() < 1e-12), "{:?}", sums.values().find(|(s, _)| s.abs() >= 1e-12));
    // `true` still means per date, and serialises as before (the spec hash of existing specs is unchanged).
    let by_date =
        FeatureSpec::from_toml("[label]\ndemean = true\n[[features]]\nfamily = \"returns\"\nwindows = [1]\n").unwrap();
    assert!(by_date.to_toml().contains("demean = true"));
    assert!(spec.to_toml().contains("demean = \"sector\""));
    // Without sectors it is a clear error.
    let bare =
        load(&write(dir.path(), "bare.csv", "date,symbol,close\n2024-01-02,A,1\n2024-01-03,A,2\n")).unwrap().prices;
    let e = build_features(&bare, &spec).unwrap_err().to_string();
    assert!(e.contains("sector") && e.contains("securities"), "{e}");
    let e =
        FeatureSpec::from_toml("[label]\ndemean = \"industry\"\n[[features]]\nfamily = \"returns\"\nwindows = [1]\n")
            .unwrap_err()
            .to_string();
    assert!(e.contains("demean"), "{e}");
}
