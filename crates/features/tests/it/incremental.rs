//! Incremental builds: appending days reuses cached rows and matches a full rebuild; edited history or another
//! spec recomputes everything.

use polars::prelude::*;
use stockcast_features::{FeatureSpec, PriceFrame, SynthConfig, build_features, build_features_cached, synth_prices};

fn prices(days: usize) -> PriceFrame {
    let df = synth_prices(&SynthConfig::new(15, days, 21)).unwrap();
    PriceFrame::from_df(df.sort(["symbol", "date"], SortMultipleOptions::default()).unwrap()).unwrap()
}

/// Every column of `a` equals `b`'s within 1e-9 (relative), with the same missing values.
fn assert_same(a: &DataFrame, b: &DataFrame) {
    assert_eq!(a.height(), b.height());
    assert_eq!(a.get_column_names(), b.get_column_names());
    for name in a.get_column_names() {
        let (x, y) = (a.column(name).unwrap(), b.column(name).unwrap());
        if !x.dtype().is_float() {
            assert!(x.equals_missing(y), "{name}");
            continue;
        }
        for (i, (u, v)) in x.f64().unwrap().iter().zip(y.f64().unwrap().iter()).enumerate() {
            match (u, v) {
                (Some(u), Some(v)) if u.is_nan() && v.is_nan() => {}
                (Some(u), Some(v)) => assert!((u - v).abs() <= 1e-9 * (1.0 + v.abs()), "{name} row {i}: {u} vs {v}"),
                (None, None) => {}
                other => panic!("{name} row {i}: {other:?}"),
            }
        }
    }
}

#[test]
fn appended_days_reuse_the_cache_and_match_a_full_build() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FeatureSpec::default();
    let all = prices(1300);
    let cut = chrono::NaiveDate::from_ymd_opt(2014, 6, 30).unwrap();
    let first = build_features_cached(
        &all.until(cut).unwrap(),
        &stockcast_features::Checked::new(spec.clone()).unwrap(),
        dir.path(),
    )
    .unwrap();
    assert_eq!(first.reused_rows, 0);
    assert!(first.message.contains("no cached features"), "{}", first.message);
    let next =
        build_features_cached(&all, &stockcast_features::Checked::new(spec.clone()).unwrap(), dir.path()).unwrap();
    assert!(next.reused_rows > 5 * next.computed_rows, "{}", next.message);
    assert!(next.message.contains("reused"), "{}", next.message);
    let full = build_features(&all, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    assert_same(next.frame.df(), full.df());
    // Nothing new: everything reused.
    let again =
        build_features_cached(&all, &stockcast_features::Checked::new(spec.clone()).unwrap(), dir.path()).unwrap();
    assert_eq!(again.computed_rows, 0, "{}", again.message);
    assert_same(again.frame.df(), full.df());
}

#[test]
fn edited_history_or_another_spec_recomputes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FeatureSpec::default();
    let all = prices(700);
    build_features_cached(&all, &stockcast_features::Checked::new(spec.clone()).unwrap(), dir.path()).unwrap();
    // Change one early close.
    let mut df = all.df().clone();
    let mut close: Vec<f64> = df.column("close").unwrap().f64().unwrap().into_no_null_iter().collect();
    close[10] *= 1.01;
    df.with_column(Column::new("close".into(), close)).unwrap();
    let edited = PriceFrame::from_df(df).unwrap();
    let b =
        build_features_cached(&edited, &stockcast_features::Checked::new(spec.clone()).unwrap(), dir.path()).unwrap();
    assert_eq!(b.reused_rows, 0);
    assert!(b.message.contains("changed"), "{}", b.message);
    assert_same(
        b.frame.df(),
        build_features(&edited, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap().df(),
    );
    let mut other = spec.clone();
    other.label.horizon = 10;
    let c =
        build_features_cached(&edited, &stockcast_features::Checked::new(other.clone()).unwrap(), dir.path()).unwrap();
    assert_eq!(c.reused_rows, 0, "{}", c.message);
}

/// 1,700 days of 4 symbols: S0002 stops 30 days before the cut (delisted), S0003 has no bars for the last 4 days
/// before the cut and misses scattered days after it.
fn ragged(days: usize, cut: usize) -> PriceFrame {
    let df = synth_prices(&SynthConfig::new(4, days, 5)).unwrap();
    let df = df.sort(["symbol", "date"], SortMultipleOptions::default()).unwrap();
    let n = df.height();
    let keep: BooleanChunked = (0..n)
        .map(|i| {
            let (s, t) = (i / days, i % days);
            match s {
                2 => t < cut - 30,
                3 => !((cut - 4..cut).contains(&t) || (t > cut && t % 3 == 0)),
                _ => true,
            }
        })
        .collect();
    PriceFrame::from_df(df.filter(&keep).unwrap()).unwrap()
}

#[test]
fn labels_left_open_by_missing_bars_resolve_incrementally_past_the_warm_up() {
    let (days, cut) = (1_700, 1_690);
    let all = ragged(days, cut);
    let cut_date = stockcast_features::synth::weekdays(SynthConfig::new(1, 1, 0).start, days)[cut - 1];
    for label in
        ["price = \"open\"", "price = \"close\"\ndemean = true", "price = \"open\"\nkind = \"log\"\nhorizon = 3"]
    {
        let spec = FeatureSpec::from_toml(&format!(
            "[label]\n{label}\n[[features]]\nfamily = \"returns\"\nwindows = [1, 5]\n[[features]]\nfamily = \
             \"ema_ratio\"\nwindows = [12]\n[[features]]\nfamily = \"rsi\"\nwindows = [14]\n"
        ))
        .unwrap();
        assert!(spec.warmup_days() + 100 < cut, "the slice must start after the first day");
        let dir = tempfile::tempdir().unwrap();
        build_features_cached(&all.until(cut_date).unwrap(), &spec, dir.path()).unwrap();
        let next = build_features_cached(&all, &spec, dir.path()).unwrap();
        // Most rows reused; the recomputed slice is far shorter than the history (warm-up truncation in use).
        assert!(next.reused_rows > 10 * next.computed_rows, "{label}: {}", next.message);
        assert!(next.message.contains("warm-up"), "{}", next.message);
        let full = build_features(&all, &spec).unwrap();
        assert_same(next.frame.df(), full.df());
    }
}

/// Every column of `a` and `b` identical, bit for bit (missing values in the same places).
fn assert_identical(a: &DataFrame, b: &DataFrame) {
    assert_eq!(a.height(), b.height());
    assert_eq!(a.get_column_names(), b.get_column_names());
    for name in a.get_column_names() {
        let (x, y) = (a.column(name).unwrap(), b.column(name).unwrap());
        if let (Ok(x), Ok(y)) = (x.f64(), y.f64()) {
            let bits = |c: &Float64Chunked| c.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>();
            assert_eq!(bits(x), bits(y), "{name}");
        } else {
            assert!(x.equals_missing(y), "{name}");
        }
    }
}

#[test]
fn a_sharded_write_is_the_whole_build_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let all = prices(700);
    // The default spec has cross-sectional ranks (every symbol of a date) besides per-symbol families; a demeaned
    // label and a z-score family exercise the per-date paths too.
    let mut demeaned = FeatureSpec::default();
    demeaned.label.demean = stockcast_features::spec::Demean::Date;
    let mut zscore = FeatureSpec::default();
    let mut z = FeatureSpec::default().features.last().unwrap().clone();
    z.family = stockcast_features::Family::CsZscore;
    z.of = vec!["ret_1".into(), "vol_5".into()];
    zscore.features.push(z);
    for (k, spec) in [FeatureSpec::default(), demeaned, zscore].iter().enumerate() {
        let whole = build_features(&all, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
        let reference = dir.path().join(format!("whole{k}.parquet"));
        whole.write(&reference).unwrap();
        // Shards of about three symbols (700 rows each): five shards, none splitting a symbol.
        let sharded = dir.path().join(format!("sharded{k}.parquet"));
        let written = stockcast_features::write_features(
            &all,
            &stockcast_features::Checked::new(spec.clone()).unwrap(),
            &sharded,
            3 * 700,
        )
        .unwrap();
        assert_eq!(written.rows, whole.height());
        assert_eq!(written.features, whole.features());
        assert_eq!(written.spec_hash, *whole.spec_hash());
        let read = |p: &std::path::Path| ParquetReader::new(std::fs::File::open(p).unwrap()).finish().unwrap();
        assert_identical(&read(&reference), &read(&sharded));
        // The file itself (encodings, page statistics, zstd frames, footer) is what polars' own writer makes of
        // the same rows cut into the same row groups: the sharded writer encodes, computes min/max and
        // compresses its pages itself.
        if !spec.label.demean.is_on() {
            let by_polars = dir.path().join(format!("polars{k}.parquet"));
            let mut df = whole.df().clone();
            ParquetWriter::new(std::fs::File::create(&by_polars).unwrap())
                .with_compression(ParquetCompression::Zstd(None))
                .with_row_group_size(Some(3 * 700))
                .finish(&mut df)
                .unwrap();
            let bytes = |p: &std::path::Path| std::fs::read(p).unwrap();
            assert!(bytes(&sharded) == bytes(&by_polars), "spec {k}: the sharded file differs from polars' own");
        }
    }
}

#[test]
fn a_matrix_built_by_shards_is_the_whole_frame_matrix_bit_for_bit() {
    use stockcast_features::{FeatureMatrix, MatrixOptions};
    let all = prices(500);
    let spec = FeatureSpec::default();
    let whole = build_features(&all, &stockcast_features::Checked::new(spec.clone()).unwrap()).unwrap();
    for opts in [MatrixOptions::default(), MatrixOptions { require_label: true, drop_incomplete: true }] {
        let a = FeatureMatrix::from_frame(&whole, opts).unwrap();
        // About two symbols per shard: eight shards.
        let b =
            FeatureMatrix::from_shards(&all, &stockcast_features::Checked::new(spec.clone()).unwrap(), opts, 2 * 500)
                .unwrap();
        assert!(a.nrows() > 1000, "{opts:?}: {} rows", a.nrows());
        assert_eq!(a.index, b.index, "{opts:?}");
        assert_eq!(a.feature_names, b.feature_names);
        assert_eq!(a.spec_hash, b.spec_hash);
        let bits = |v: &mut dyn Iterator<Item = &f32>| v.map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&mut a.x.iter()), bits(&mut b.x.iter()), "{opts:?}");
        assert_eq!(bits(&mut a.y.as_ref().unwrap().iter()), bits(&mut b.y.as_ref().unwrap().iter()), "{opts:?}");
    }
}
