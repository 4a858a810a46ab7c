"""Recomputes every model's `report.json -> models.<m>.risk` of a backtest run with empyrical-reloaded, quantstats
and statsmodels from the run's own daily equity (equity.parquet) and daily Rank ICs (predictions.parquet), and
prints the largest absolute difference per statistic. Exit 1 when one exceeds 1e-9.

    python3 bench/risk_empyrical.py RUN_DIR [RUN_DIR...]

Peers: pip install empyrical-reloaded quantstats statsmodels polars 'pandas<3'. Conventions (report.json ->
conventions) that differ from a library's default are passed to it explicitly: the risk-free rate is daily
((1 + annual)^(1/252) - 1) for every function that takes one; the omega threshold is 0.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import empyrical as ep
import numpy as np
import pandas as pd
import polars as pl
import quantstats as qs
import statsmodels.api as sm
from scipy import stats

TOL = 1e-9


def daily_returns(curve: np.ndarray, capital: float) -> np.ndarray:
    eq = np.concatenate([[capital], curve])
    return eq[1:] / eq[:-1] - 1.0


def rank_ic_by_date(preds: pl.DataFrame) -> np.ndarray:
    # Per date: Spearman correlation (average ranks) of score and label over the labelled rows, >= 3 of them.
    df = preds.filter(pl.col("label").is_not_nan() & pl.col("score").is_not_nan())
    per_date = (
        df.with_columns(
            pl.col("score").rank("average").over("date").alias("rs"),
            pl.col("label").rank("average").over("date").alias("rl"),
        )
        .group_by("date")
        .agg(pl.corr("rs", "rl").alias("ic"), pl.len().alias("n"))
        .filter(pl.col("n") >= 3)
        .sort("date")
    )
    ic = per_date["ic"].to_numpy()
    return ic[np.isfinite(ic)]


def min_trl(r: np.ndarray, rf: float) -> float:
    # Bailey & Lopez de Prado (2012), written out with scipy's moments: biased skewness, non-excess kurtosis.
    sr = (r.mean() - rf) / r.std(ddof=1)
    if not sr > 0:
        return float("nan")
    g3, g4 = stats.skew(r, bias=True), stats.kurtosis(r, fisher=False, bias=True)
    return 1 + (1 - g3 * sr + (g4 - 1) / 4 * sr**2) * (stats.norm.ppf(0.95) / sr) ** 2


def relative(r: pd.Series, b: pd.Series, rf: float) -> dict[str, float]:
    alpha, beta = ep.alpha_beta(r, b, risk_free=rf)
    ols = sm.OLS(r.to_numpy(), sm.add_constant(b.to_numpy())).fit()
    active = r - b
    te = active.std(ddof=1) * math.sqrt(252)
    return {
        "alpha": alpha,
        "beta": beta,
        # The regression's slope and the standard errors are those of r on b (rf shifts only the intercept).
        "beta_se": ols.bse[1],
        "alpha_se": ols.bse[0],
        "correlation": float(np.corrcoef(r, b)[0, 1]),
        "tracking_error": te,
        "information_ratio": active.mean() * 252 / te,
        "up_capture": ep.up_capture(r, b),
        "down_capture": ep.down_capture(r, b),
    }


def reference(run: Path) -> list[tuple[str, str, float, float]]:
    report = json.loads((run / "report.json").read_text())
    strategy = report["config"]["strategy"]
    capital, rf = strategy.get("capital", 1_000_000.0), (1 + strategy.get("risk_free", 0.0)) ** (1 / 252) - 1
    horizon = report["label_horizon"]
    equity = pl.read_parquet(run / "equity.parquet")
    preds = pl.read_parquet(run / "predictions.parquet")
    rows = []
    for name, got in report["models"].items():
        e = equity.filter(pl.col("model") == name).sort("date")
        dates = pd.DatetimeIndex(e["date"].to_list())
        r = pd.Series(daily_returns(e["equity"].to_numpy(), capital), index=dates)
        b = pd.Series(daily_returns(e["benchmark"].to_numpy(), capital), index=dates)
        risk = got["risk"]
        want = {f"benchmark.{k}": v for k, v in relative(r, b, rf).items()}
        if risk.get("index") is not None:
            i = pd.Series(daily_returns(e["index"].to_numpy(), capital), index=dates)
            want |= {f"index.{k}": v for k, v in relative(r, i, rf).items()}
        monthly = r.groupby([r.index.year, r.index.month]).apply(lambda x: (1 + x).prod() - 1)
        ic = rank_ic_by_date(preds.filter(pl.col("model") == name))
        hac = sm.OLS(ic, np.ones_like(ic)).fit(cov_type="HAC", cov_kwds={"maxlags": horizon - 1, "use_correction": False})
        want |= {
            "var_95": ep.value_at_risk(r.to_numpy(), cutoff=0.05),
            "cvar_95": ep.conditional_value_at_risk(r.to_numpy(), cutoff=0.05),
            "tail_ratio": ep.tail_ratio(r.to_numpy()),
            "omega": ep.omega_ratio(r.to_numpy(), risk_free=rf, required_return=0.0),
            "profit_factor": qs.stats.profit_factor(r),
            "best_day": qs.stats.best(r, aggregate=None),
            "worst_day": qs.stats.worst(r, aggregate=None),
            "best_month": monthly.max(),
            "worst_month": monthly.min(),
            "rank_ic_t": ic.mean() / (ic.std(ddof=1) / math.sqrt(len(ic))),
            "rank_ic_t_newey_west": hac.tvalues[0],
            "min_track_record_days": min_trl(r.to_numpy(), rf),
        }
        for key, w in want.items():
            g = risk
            for part in key.split("."):
                g = g[part]
            rows.append((name, key, float(w), float("nan") if g is None else float(g)))
    return rows


def main() -> int:
    worst: dict[str, float] = {}
    bad = []
    for run in map(Path, sys.argv[1:]):
        for name, key, want, got in reference(run):
            d = abs(want - got) if not (math.isnan(want) and math.isnan(got)) else 0.0
            scale = max(1.0, abs(want))
            worst[key] = max(worst.get(key, 0.0), d / scale)
            if not d <= TOL * scale:
                bad.append(f"{run.name}/{name} {key}: stockcast {got!r}, peer {want!r}")
    for key, d in worst.items():
        print(f"{key:<34} max relative difference {d:.2e}")
    for line in bad:
        print("MISMATCH", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
