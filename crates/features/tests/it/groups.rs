//! Point-in-time classification: each row gets the sector it had on its date; group features and the
//! sector-demeaned label follow reclassifications without looking ahead; bad files name their line.

use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;
use proptest::prelude::*;
use stockcast_features::{Classification, FeatureSpec, PriceFrame, build_features};

use crate::{load, write};

/// Four symbols, 120 weekdays from 2024-01-01, wiggly closes with different phases.
fn prices(dir: &Path) -> (PriceFrame, Vec<NaiveDate>) {
    let dates = stockcast_features::synth::weekdays(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 120);
    let mut text = String::from("date,symbol,close\n");
    for (k, s) in ["A", "B", "C", "D"].iter().enumerate() {
        for (i, d) in dates.iter().enumerate() {
            let c = 20.0 + 4.0 * ((i as f64) * (0.3 + 0.07 * k as f64) + k as f64).sin() + 0.03 * i as f64;
            let _ = writeln!(text, "{d},{s},{c}");
        }
    }
    (load(&write(dir, "p.csv", &text)).unwrap().prices, dates)
}

/// A and B Tech throughout; D Energy throughout; C Energy until the day before `moves`, then Tech.
fn classes(dir: &Path, dates: &[NaiveDate], moves: usize) -> Classification {
    let text = format!(
        "symbol,start,end,sector,industry\nA,2020-01-01,,Tech,Software\nB,2020-01-01,,Tech,Hardware\n\
         C,2020-01-01,{},Energy,Oil\nC,{},,Tech,Software\nD,2020-01-01,,Energy,Oil\n",
        dates[moves - 1],
        dates[moves]
    );
    Classification::load(&write(dir, &format!("classes_{moves}.csv"), &text)).unwrap()
}

fn group_spec() -> stockcast_features::Checked<FeatureSpec> {
    FeatureSpec::from_toml(
        "[label]\ndemean = \"sector\"\n[[features]]\nfamily = \"returns\"\nwindows = [5]\n\
         [[features]]\nfamily = \"expr\"\nname = \"grp\"\nexpr = \"group_rank(ret_5, sector)\"\n\
         [[features]]\nfamily = \"expr\"\nname = \"ind\"\nexpr = \"group_zscore($close, industry)\"\n",
    )
    .unwrap()
}

/// (symbol, day index) → (sector, grp, ind, label) of a feature frame.
fn cells(
    f: &stockcast_features::FeatureFrame,
    dates: &[NaiveDate],
) -> std::collections::BTreeMap<(String, usize), (Option<String>, Option<f64>, Option<f64>, Option<f64>)> {
    let df = f.df();
    let (s, d, g) = (
        df.column("symbol").unwrap().str().unwrap(),
        df.column("date").unwrap().date().unwrap().physical(),
        df.column("sector").unwrap().str().unwrap(),
    );
    let v = |n: &str| df.column(n).unwrap().f64().unwrap().clone();
    let (grp, ind, label) = (v("grp"), v("ind"), v("label"));
    (0..df.height())
        .map(|i| {
            let day = dates.iter().position(|x| stockcast_features::prices::date_to_days(*x) == d.get(i).unwrap());
            (
                (s.get(i).unwrap().to_owned(), day.unwrap()),
                (g.get(i).map(str::to_owned), grp.get(i), ind.get(i), label.get(i)),
            )
        })
        .collect()
}

#[test]
fn each_row_gets_the_sector_it_had_on_its_date_and_groups_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p, dates) = prices(dir.path());
    let c = classes(dir.path(), &dates, 60);
    assert_eq!((c.symbols(), c.spans(), c.has_industry), (4, 5, true));
    let p = p.with_classification(&c).unwrap();
    let f = build_features(&p, &group_spec()).unwrap();
    let cells = cells(&f, &dates);
    let sector = |s: &str, i: usize| cells[&(s.to_owned(), i)].0.clone().unwrap();
    assert_eq!((sector("C", 59).as_str(), sector("C", 60).as_str()), ("Energy", "Tech"));
    // Ranks within the date's sector, recomputed here: (rank − ½) / n of ret_5 among the sector's names.
    for i in 10..110 {
        for s in ["A", "B", "C", "D"] {
            let members: Vec<&str> =
                ["A", "B", "C", "D"].into_iter().filter(|x| sector(x, i) == sector(s, i)).collect();
            let ret = |x: &str| {
                let close =
                    |j: usize| 20.0 + 4.0 * ((j as f64) * (0.3 + 0.07 * idx(x)) + idx(x)).sin() + 0.03 * j as f64;
                close(i) / close(i - 5) - 1.0
            };
            let below = members.iter().filter(|x| ret(x) < ret(s)).count() as f64;
            let want = (below + 0.5) / members.len() as f64;
            let got = cells[&(s.to_owned(), i)].1.unwrap();
            assert!((got - want).abs() < 1e-9, "{s} day {i}: {got} vs {want} among {members:?}");
        }
        // The label demeaned per (date, sector) sums to zero in each sector.
        for g in ["Tech", "Energy"] {
            let labels: Vec<f64> = ["A", "B", "C", "D"]
                .iter()
                .filter(|x| sector(x, i) == g)
                .filter_map(|x| cells[&((*x).to_owned(), i)].3)
                .collect();
            assert!(labels.iter().sum::<f64>().abs() < 1e-12, "day {i} {g}: {labels:?}");
        }
        // Industry groups: C is Oil with D before the move, Software with A after it (two names: z-scores of
        // opposite sign); a group of one has none.
        let z = |s: &str| cells[&(s.to_owned(), i)].2;
        if i < 60 {
            assert!(z("B").is_none() && z("A").is_none(), "A and B are alone in their industries before the move");
            assert!((z("C").unwrap() + z("D").unwrap()).abs() < 1e-12);
        } else {
            assert!(z("B").is_none() && z("D").is_none());
            assert!((z("A").unwrap() + z("C").unwrap()).abs() < 1e-12);
        }
    }
}

fn idx(s: &str) -> f64 {
    f64::from(["A", "B", "C", "D"].iter().position(|x| *x == s).unwrap() as u8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    /// A reclassification dated after t changes no group feature and no sector-demeaned label at t (the label
    /// is demeaned within the sector of date t): where C moves is not known before it happens.
    #[test]
    fn a_later_reclassification_changes_no_group_feature_before_it(moves in 20usize..100, later in 1usize..15) {
        let dir = tempfile::tempdir().unwrap();
        let (p, dates) = prices(dir.path());
        let a = cells(&build_features(&p.with_classification(&classes(dir.path(), &dates, moves)).unwrap(), &group_spec()).unwrap(), &dates);
        let b = cells(&build_features(&p.with_classification(&classes(dir.path(), &dates, moves + later)).unwrap(), &group_spec()).unwrap(), &dates);
        for ((s, i), x) in &a {
            let y = &b[&(s.clone(), *i)];
            if *i < moves {
                prop_assert_eq!(&x.0, &y.0);
                prop_assert_eq!(x.1, y.1, "{} day {}", s, i);
                prop_assert_eq!(x.2, y.2, "{} day {}", s, i);
                prop_assert_eq!(x.3, y.3, "{} day {}", s, i);
            }
            if *i >= moves && *i < moves + later && s == "C" {
                prop_assert_ne!(&x.0, &y.0, "the two files differ from day {}", moves);
            }
        }
    }
}

#[test]
fn bad_classification_files_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = |text: &str| Classification::load(&write(dir.path(), "c.csv", text)).unwrap_err().to_string();
    let e = err("symbol,start,end,sector\nA,2024-01-01,,Tech\nA,2024-06-01,2024-03-01,Energy\n");
    assert!(e.contains("c.csv") && e.contains("line 3") && e.contains("ends (2024-03-01) before it starts"), "{e}");
    let e = err("symbol,start,end,sector\nA,2024-01-01,,Tech\nB,2024-01-01,,Tech\nA,2024-06-01,,Energy\n");
    assert!(e.contains("line 4") && e.contains("overlaps the one on line 2"), "{e}");
    let e = err("symbol,start,end,sector\nA,2024-01-01,2024-05-31,Tech\nA,2024-06-01,,\n");
    assert!(e.contains("line 3") && e.contains("empty sector"), "{e}");
    let e = err("symbol,start,end,sector\nA,01/02/2024,,Tech\n");
    assert!(e.contains("line 2") && e.contains("01/02/2024"), "{e}");
    let e = err("symbol,start,sector\nA,2024-01-01,Tech\n");
    assert!(e.contains("no `end` column"), "{e}");
    let e = err("symbol,start,end,sector\n");
    assert!(e.contains("no classification spans"), "{e}");
    // Adjacent spans are fine; a date no span covers has no sector.
    let c = Classification::load(&write(
        dir.path(),
        "ok.csv",
        "symbol,start,end,sector\nA,2024-01-01,2024-05-31,Tech\nA,2024-06-01,2024-06-30,Energy\n",
    ))
    .unwrap();
    let d = |m, day| NaiveDate::from_ymd_opt(2024, m, day).unwrap();
    assert_eq!(c.at("A", d(5, 31)).map(|x| x.0), Some("Tech"));
    assert_eq!(c.at("A", d(6, 1)).map(|x| x.0), Some("Energy"));
    assert_eq!(c.at("A", d(7, 1)), None);
    assert_eq!(c.at("A", NaiveDate::from_ymd_opt(2023, 12, 31).unwrap()), None);
    assert_eq!(c.at("B", d(6, 1)), None);
}
