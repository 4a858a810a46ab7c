//! `report.html`: one self-contained page (no network at view time) rendered from a minijinja template, with
//! sections Summary, Performance, Signal, Folds, Trades, Models and Conventions; its charts are drawn in the
//! browser by the page's own script (`report.js`, inlined) from the same [`Chart`] data written as PNG and
//! Parquet under `plots/`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::charts::{Chart, Kind, Section, sanitize};
use crate::error::{Error, Result};
use crate::metrics;
use crate::report::{Evaluation, ModelReport, RunMeta, Table};
use crate::runner::WalkForward;

const TEMPLATE: &str = include_str!("report.html.j2");
const SCRIPT: &str = include_str!("report.js");

/// Trades listed on the page (all of them are in `trades.csv`).
pub const PAGE_TRADES: usize = 3000;

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Values of dated series aligned on the union of their dates (NaN where a series has no value).
fn aligned(series: &[(&str, Vec<(NaiveDate, f64)>)]) -> (Vec<NaiveDate>, Vec<(String, Vec<f64>)>) {
    let dates: BTreeSet<NaiveDate> = series.iter().flat_map(|(_, v)| v.iter().map(|x| x.0)).collect();
    let dates: Vec<NaiveDate> = dates.into_iter().collect();
    let out = series
        .iter()
        .map(|(name, v)| {
            let m: BTreeMap<NaiveDate, f64> = v.iter().copied().collect();
            ((*name).to_owned(), dates.iter().map(|d| m.get(d).copied().unwrap_or(f64::NAN)).collect())
        })
        .collect();
    (dates, out)
}

fn dated_chart(
    id: &str,
    section: Section,
    title: &str,
    percent: bool,
    series: &[(&str, Vec<(NaiveDate, f64)>)],
) -> Chart {
    let (dates, values) = aligned(series);
    let mut c = Chart::dated(id, section, title, Kind::Line, &dates, percent);
    c.series = values;
    c
}

fn trailing_mean(v: &[f64], w: usize) -> Vec<f64> {
    (0..v.len())
        .map(|i| {
            let win: Vec<f64> = v[i.saturating_sub(w - 1)..=i].iter().copied().filter(|x| x.is_finite()).collect();
            if i + 1 >= w && !win.is_empty() { metrics::mean(&win) } else { f64::NAN }
        })
        .collect()
}

fn hist_chart(id: &str, section: Section, title: &str, h: &crate::tearsheet::Histogram, percent: bool) -> Chart {
    let centers: Vec<String> = h
        .edges
        .windows(2)
        .map(|w| {
            let c = f64::midpoint(w[0], w[1]);
            if percent { format!("{:.2}%", c * 100.0) } else { format!("{c:.3}") }
        })
        .collect();
    Chart::labelled(id, section, title, Kind::Bar, centers, false)
        .with("count", h.counts.iter().map(|&c| c as f64).collect())
}

/// Mean feature importance over a model's fits: total gain as a share of the fit's total (gbm), or the
/// coefficient (linear); the `top` largest by magnitude.
pub fn importance(wf: &WalkForward, model: &str, top: usize) -> Option<(String, Vec<(String, f64)>)> {
    let fits: Vec<&stockcast_models::Importance> =
        wf.results.iter().filter(|r| r.model == model).filter_map(|r| r.importance.as_ref()).collect();
    let measure = fits.first()?.measure.clone();
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for f in &fits {
        let total: f64 = f.values.iter().map(|v| v.1).sum();
        for (name, v) in &f.values {
            let v = if measure == "total_gain" && total > 0.0 { v / total } else { *v };
            *sums.entry(name.as_str()).or_default() += v / fits.len() as f64;
        }
    }
    let mut v: Vec<(String, f64)> = sums.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    v.truncate(top);
    let label = if measure == "total_gain" { "share of total gain" } else { "coefficient (standardised features)" };
    Some((label.to_owned(), v))
}

/// The position and risk charts: net exposure, each model's most-held names and sector exposures over time and its
/// cumulative return attribution, the cost breakdown and the capacity curve.
fn position_charts(models: &[ModelReport], perf: Section) -> Vec<Chart> {
    let dated = |m: &ModelReport, v: &[f64]| m.simulation.dates.iter().copied().zip(v.iter().copied()).collect();
    let net: Vec<(&str, Vec<(NaiveDate, f64)>)> =
        models.iter().map(|m| (m.name.as_str(), dated(m, &m.simulation.net_exposure))).collect();
    let mut out = vec![dated_chart("net_exposure", perf, "Exposure (net: long − short, share of equity)", true, &net)];
    for m in models {
        let name = &m.name;
        let top: Vec<(&str, Vec<(NaiveDate, f64)>)> =
            m.positions.top.iter().map(|(s, v)| (s.as_str(), dated(m, v))).collect();
        out.push(dated_chart(
            &format!("weights_{name}"),
            perf,
            &format!("{name}: weights of the most-held names"),
            true,
            &top,
        ));
        if !m.positions.sectors.is_empty() {
            let sectors: Vec<(&str, Vec<(NaiveDate, f64)>)> =
                m.positions.sectors.iter().map(|(g, v)| (g.as_str(), dated(m, v))).collect();
            out.push(dated_chart(
                &format!("sectors_{name}"),
                perf,
                &format!("{name}: net exposure by sector"),
                true,
                &sectors,
            ));
        }
        if let Some(target) = m.simulation.target_vol {
            let series: Vec<(&str, Vec<(NaiveDate, f64)>)> = vec![
                ("realised (rolling, report.rolling_days)", dated(m, &m.sheet.rolling_vol)),
                ("predicted at the last rebalance", dated(m, &m.simulation.predicted_vol)),
                ("target", dated(m, &vec![target; m.simulation.dates.len()])),
            ];
            out.push(dated_chart(
                &format!("vol_target_{name}"),
                perf,
                &format!("{name}: realised vs target volatility (annualised)"),
                true,
                &series,
            ));
        }
        let a = &m.attribution;
        let cumulative = |i: usize| {
            let mut acc = 0.0;
            a.dates
                .iter()
                .copied()
                .zip(a.daily.iter().map(|x| {
                    acc += x[i];
                    acc
                }))
                .collect::<Vec<_>>()
        };
        let parts: Vec<(&str, Vec<(NaiveDate, f64)>)> =
            ["market", "sector", "selection", "other"].iter().enumerate().map(|(i, p)| (*p, cumulative(i))).collect();
        out.push(dated_chart(
            &format!("attribution_{name}"),
            perf,
            &format!("{name}: return attribution (cumulative sum of daily contributions, beta {:.2})", a.beta),
            true,
            &parts,
        ));
    }
    let kinds = ["commission", "slippage / impact", "borrow", "cash interest (earned)"].map(str::to_owned).to_vec();
    let mut costs =
        Chart::labelled("costs", perf, "Costs over the run (share of the starting capital)", Kind::Bar, kinds, true);
    for m in models {
        let p = &m.simulation.stats;
        costs = costs.with(&m.name, vec![p.cost_commission, p.cost_slippage, p.cost_borrow, p.cash_interest]);
    }
    out.push(costs);
    if let Some(levels) = models.iter().find(|m| !m.capacity.is_empty()).map(|m| &m.capacity) {
        let x: Vec<String> = levels.iter().map(|c| format!("{:.0}", c.capital)).collect();
        let mut ret =
            Chart::labelled("capacity", perf, "Capacity: total return by starting capital", Kind::Bar, x.clone(), true);
        let mut sharpe =
            Chart::labelled("capacity_sharpe", perf, "Capacity: Sharpe ratio by starting capital", Kind::Bar, x, false);
        for m in models {
            ret = ret.with(&m.name, m.capacity.iter().map(|c| c.total_return).collect());
            sharpe = sharpe.with(&m.name, m.capacity.iter().map(|c| c.sharpe).collect());
        }
        out.push(ret);
        out.push(sharpe);
    }
    out
}

/// Every chart of the report, in page order.
pub fn charts(eval: &Evaluation, wf: &WalkForward) -> Vec<Chart> {
    let mut out = all_charts(eval, wf);
    // Per-model charts are `<prefix>_<model>`: tagged for the page's model selector.
    for c in &mut out {
        c.model = eval
            .models
            .iter()
            .filter(|m| PER_MODEL.iter().any(|p| c.id == sanitize(&format!("{p}_{}", m.name))))
            .map(|m| m.name.clone())
            .next();
    }
    out
}

/// The id prefixes of the charts drawn once per model.
const PER_MODEL: [&str; 11] = [
    "weights",
    "sectors",
    "vol_target",
    "attribution",
    "monthly",
    "yearly",
    "returns_hist",
    "quantile_mean",
    "quantile_cum",
    "ic_hist",
    "importance",
];

fn all_charts(eval: &Evaluation, wf: &WalkForward) -> Vec<Chart> {
    let models = &eval.models;
    let Some(first) = models.first() else { return Vec::new() };
    let dated = |f: &dyn Fn(&ModelReport) -> Vec<f64>| -> Vec<(&str, Vec<(NaiveDate, f64)>)> {
        models
            .iter()
            .map(|m| (m.name.as_str(), m.simulation.dates.iter().copied().zip(f(m)).collect::<Vec<_>>()))
            .collect()
    };
    let perf = Section::Performance;
    // Cumulative returns: each curve over the capital (the benchmark's first value), less 1.
    let capital = first.simulation.benchmark.first().copied().unwrap_or(1.0);
    let cumulative = |v: &[f64]| -> Vec<f64> { v.iter().map(|e| e / capital - 1.0).collect() };
    let mut eq = dated(&|m| cumulative(&m.simulation.equity));
    eq.push((
        "benchmark",
        first.simulation.dates.iter().copied().zip(cumulative(&first.simulation.benchmark)).collect(),
    ));
    if let Some(i) = &first.simulation.index {
        eq.push(("index", first.simulation.dates.iter().copied().zip(cumulative(i)).collect()));
    }
    let mut equity = dated_chart("equity", perf, "Cumulative return vs benchmark (equity / capital − 1)", true, &eq);
    equity.log_scale = true;
    // Each model's worst drawdowns, peak to recovery (or to the end), shaded while its line is shown.
    let at = |d: NaiveDate| equity.x.partition_point(|x| x.as_str() < d.to_string().as_str());
    let last = equity.x.len().saturating_sub(1);
    equity.shades = models
        .iter()
        .flat_map(|m| {
            m.sheet.drawdowns.iter().map(|p| (m.name.clone(), at(p.start), p.recovery.map_or(last, at).min(last)))
        })
        .collect();
    let mut out = vec![
        equity,
        dated_chart("drawdown", perf, "Drawdown", true, &dated(&|m| metrics::drawdowns(&m.simulation.equity))),
        dated_chart("relative", perf, "Equity / benchmark", false, &dated(&|m| m.sheet.relative.clone())),
        dated_chart("rolling_sharpe", perf, "Rolling Sharpe ratio", false, &dated(&|m| m.sheet.rolling_sharpe.clone())),
        dated_chart(
            "rolling_vol",
            perf,
            "Rolling volatility (annualised)",
            true,
            &dated(&|m| m.sheet.rolling_vol.clone()),
        ),
        dated_chart(
            "exposure",
            perf,
            "Exposure (gross, share of equity)",
            true,
            &dated(&|m| m.simulation.exposure.clone()),
        ),
        dated_chart(
            "turnover",
            perf,
            "Turnover (one-way, 21-day mean)",
            true,
            &dated(&|m| trailing_mean(&m.simulation.turnover, 21)),
        ),
    ];
    for m in models {
        let s = &m.sheet;
        let years: BTreeSet<i32> = s.monthly.iter().map(|x| x.0).collect();
        let mut heat = Chart::labelled(
            &format!("monthly_{}", m.name),
            perf,
            &format!("{}: monthly returns (%)", m.name),
            Kind::Heatmap,
            MONTHS.iter().map(|x| (*x).to_owned()).collect(),
            true,
        );
        for y in years {
            let row =
                (1..=12).map(|mo| s.monthly.iter().find(|x| x.0 == y && x.1 == mo).map_or(f64::NAN, |x| x.2)).collect();
            heat = heat.with(&y.to_string(), row);
        }
        out.push(heat);
        out.push(
            Chart::labelled(
                &format!("yearly_{}", m.name),
                perf,
                &format!("{}: yearly returns", m.name),
                Kind::Bar,
                s.yearly.iter().map(|x| x.0.to_string()).collect(),
                true,
            )
            .with(&m.name, s.yearly.iter().map(|x| x.1).collect())
            .with("benchmark", s.yearly.iter().map(|x| x.2).collect()),
        );
        out.push(hist_chart(
            &format!("returns_hist_{}", m.name),
            perf,
            &format!("{}: distribution of daily returns", m.name),
            &s.returns_hist,
            true,
        ));
    }
    let sig = Section::Signal;
    let ic21: Vec<(&str, Vec<(NaiveDate, f64)>)> = models
        .iter()
        .map(|m| {
            let v: Vec<f64> = m.daily_ic.iter().map(|d| d.rank_ic).collect();
            (m.name.as_str(), m.daily_ic.iter().map(|d| d.date).zip(trailing_mean(&v, 21)).collect())
        })
        .collect();
    out.extend(position_charts(models, perf));
    out.push(dated_chart("rank_ic", sig, "Rank IC (21-day mean)", false, &ic21));
    let horizons: Vec<String> = first.sheet.ic_decay.iter().map(|(h, _)| format!("{h}d")).collect();
    let mut decay =
        Chart::labelled("ic_decay", sig, "IC decay: mean Rank IC by forward horizon", Kind::Bar, horizons, false);
    for m in models {
        decay = decay.with(&m.name, m.sheet.ic_decay.iter().map(|x| x.1).collect());
    }
    out.push(decay);
    let autocorr: Vec<(&str, Vec<(NaiveDate, f64)>)> = models
        .iter()
        .map(|m| {
            let v: Vec<f64> = m.sheet.rank_autocorr.iter().map(|x| x.1).collect();
            (m.name.as_str(), m.sheet.rank_autocorr.iter().map(|x| x.0).zip(trailing_mean(&v, 21)).collect())
        })
        .collect();
    out.push(dated_chart("rank_autocorr", sig, "Score rank autocorrelation (21-day mean)", false, &autocorr));
    let spread: Vec<(&str, Vec<(NaiveDate, f64)>)> = models
        .iter()
        .map(|m| {
            (m.name.as_str(), m.sheet.quantile_dates.iter().copied().zip(m.sheet.spread_cumulative.clone()).collect())
        })
        .collect();
    out.push(dated_chart("spread", sig, "Cumulative top-minus-bottom quantile return (1-day forward)", false, &spread));
    for m in models {
        let s = &m.sheet;
        let q = s.quantile_mean.len();
        out.push(
            Chart::labelled(
                &format!("quantile_mean_{}", m.name),
                sig,
                &format!("{}: mean label by score quantile", m.name),
                Kind::Bar,
                (1..=q).map(|i| format!("Q{i}")).collect(),
                true,
            )
            .with("mean label", s.quantile_mean.clone()),
        );
        let mut cum = Chart::dated(
            &format!("quantile_cum_{}", m.name),
            sig,
            &format!("{}: cumulative 1-day forward return by quantile", m.name),
            Kind::Line,
            &s.quantile_dates,
            false,
        );
        for (i, v) in s.quantile_cumulative.iter().enumerate() {
            cum = cum.with(&format!("Q{}", i + 1), v.clone());
        }
        out.push(cum);
        out.push(hist_chart(
            &format!("ic_hist_{}", m.name),
            sig,
            &format!("{}: distribution of the daily Rank IC", m.name),
            &s.ic_hist,
            false,
        ));
    }
    let mut folds = Chart::labelled(
        "folds_rank_ic",
        Section::Folds,
        "Rank IC per fold",
        Kind::Bar,
        wf.folds.iter().map(|f| f.id.to_string()).collect(),
        false,
    );
    for m in models {
        let mut v = vec![f64::NAN; wf.folds.len()];
        for r in wf.results.iter().filter(|r| r.model == m.name) {
            if let Some(x) = v.get_mut(r.fold) {
                *x = r.signal.rank_ic;
            }
        }
        folds = folds.with(&m.name, v);
    }
    out.push(folds);
    for m in models {
        if let Some((measure, v)) = importance(wf, &m.name, 15) {
            out.push(
                Chart::labelled(
                    &format!("importance_{}", m.name),
                    Section::Models,
                    &format!("{}: feature importance ({measure}, mean over fits)", m.name),
                    Kind::Bar,
                    v.iter().map(|x| x.0.clone()).collect(),
                    false,
                )
                .with(&measure, v.iter().map(|x| x.1).collect()),
            );
        }
    }
    out
}

fn table_json(t: &Table) -> Value {
    json!({ "header": t.header, "rows": t.rows })
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.2}%", v * 100.0) } else { "–".into() }
}

/// The page.
///
/// # Errors
/// Template errors (a bug), serialisation errors.
pub fn render(
    meta: &RunMeta,
    eval: &Evaluation,
    wf: &WalkForward,
    charts: &[Chart],
    conventions: &Value,
    overfitting: (&str, &Table, &str),
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE).map_err(|e| Error::Data(format!("report template: {e}")))?;
    let section = |s: Section| -> Vec<Value> {
        charts
            .iter()
            .filter(|c| c.section == s)
            .map(|c| json!({"id": c.id, "title": c.title, "model": c.model, "log": c.log_scale}))
            .collect()
    };
    let drawdowns: Vec<Value> = eval
        .models
        .iter()
        .map(|m| {
            json!({
                "model": m.name,
                "rows": m.sheet.drawdowns.iter().map(|d| vec![
                    d.start.to_string(),
                    d.valley.to_string(),
                    d.recovery.map_or_else(|| "not recovered".to_owned(), |r| r.to_string()),
                    pct(d.depth),
                    d.days.to_string(),
                ]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let folds = Table {
        header: ["model", "fold", "train", "test", "train rows", "test rows", "IC", "Rank IC", "ICIR", "MAE", "fit s"]
            .map(str::to_owned)
            .to_vec(),
        rows: wf
            .results
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.fold.to_string(),
                    format!("{} .. {}", r.train_start, r.train_end),
                    format!("{} .. {}", r.test_start, r.test_end),
                    r.train_rows.to_string(),
                    r.test_rows.to_string(),
                    format!("{:.3}", r.signal.ic),
                    format!("{:.3}", r.signal.rank_ic),
                    format!("{:.3}", r.signal.icir),
                    if r.forecast.mae.is_finite() { format!("{:.4}", r.forecast.mae) } else { "–".into() },
                    format!("{:.2}", r.fit_seconds),
                ]
            })
            .collect(),
    };
    let all_trades: Vec<(&str, &crate::portfolio::Trade)> =
        eval.models.iter().flat_map(|m| m.simulation.trades.iter().map(move |t| (m.name.as_str(), t))).collect();
    let trades = Table {
        header: ["model", "symbol", "side", "entry", "entry price", "exit", "exit price", "P&L", "return"]
            .map(str::to_owned)
            .to_vec(),
        rows: all_trades
            .iter()
            .take(PAGE_TRADES)
            .map(|(m, t)| {
                vec![
                    (*m).to_owned(),
                    t.symbol.clone(),
                    if t.side > 0 { "long".into() } else { "short".into() },
                    t.entry_date.to_string(),
                    format!("{:.2}", t.entry_price),
                    t.exit_date.map_or_else(|| "open".into(), |d| d.to_string()),
                    format!("{:.2}", t.exit_price),
                    format!("{:.2}", t.pnl),
                    pct(t.return_pct),
                ]
            })
            .collect(),
    };
    let models: Vec<Value> = eval
        .models
        .iter()
        .map(|m| {
            let cfg = &m.params;
            json!({
                "name": m.name,
                "kind": m.kind,
                "params": serde_json::to_string_pretty(cfg).unwrap_or_default(),
                "fit_seconds": format!("{:.2}", m.fit_seconds),
                "predict_seconds": format!("{:.2}", m.predict_seconds),
                "importance": charts.iter().find(|c| c.id == sanitize(&format!("importance_{}", m.name))).map(|c| &c.id),
            })
        })
        .collect();
    let chart_data = serde_json::to_string(charts).map_err(|e| Error::Data(e.to_string()))?.replace("</", "<\\/");
    let summary = crate::report::summary(&eval.models);
    let ctx = json!({
        "meta": {
            "version": meta.version,
            "seed": meta.seed,
            "spec": meta.feature_spec_hash,
            "horizon": meta.horizon,
            "folds": wf.folds.len(),
            "data": meta.data,
            "label": meta.label.definition,
            "fill": format!("{:?}", meta.label.fill),
            "warning": Some(meta.warnings().join(". ")).filter(|w| !w.is_empty()),
        },
        "summary": table_json(&summary),
        "verdict": crate::report::verdict(&eval.models),
        "risk": table_json(&crate::report::risk_table(&eval.models)),
        "overfitting": {"intro": overfitting.0, "table": table_json(overfitting.1), "pbo": overfitting.2},
        "performance": section(Section::Performance),
        "signal": section(Section::Signal),
        "folds_charts": section(Section::Folds),
        "drawdowns": drawdowns,
        "folds": table_json(&folds),
        "trades": table_json(&trades),
        "trades_total": all_trades.len(),
        "trades_shown": all_trades.len().min(PAGE_TRADES),
        "models": models,
        "conventions": conventions.as_object().map(|o| o.iter().map(|(k, v)| json!({
            "key": k,
            "text": v.as_str().map_or_else(|| v.to_string(), str::to_owned),
        })).collect::<Vec<_>>()),
        "script": SCRIPT,
        "chart_data": chart_data,
        "palette": crate::charts::palette_attr(),
    });
    env.get_template("report.html")
        .and_then(|t| t.render(ctx))
        .map_err(|e| Error::Data(format!("report template: {e}")))
}
