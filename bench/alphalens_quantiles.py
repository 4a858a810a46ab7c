"""Recomputes a run's quantile mean labels with alphalens and compares them with report.json.

    python3 bench/alphalens_quantiles.py RUN_DIR        (pip install alphalens-reloaded 'pandas<3' polars)

For each model: predictions.parquet (date, symbol, score, label) becomes alphalens' factor_data (factor = score,
one forward-return column = label, rows without a label dropped as get_clean_factor does), binned by
alphalens.utils.quantize_factor(quantiles = report.quantiles) and averaged by mean_return_by_quantile(demeaned=False).
alphalens refuses a date whose scores tie so that bin edges coincide ("Bin edges must be unique"); such models are
reported with the number of refused dates instead of compared (stockcast keeps every edge there, see the README).

With sectors (the run's data.classification file, else its data.securities file) it also compares each model's
quantile_mean_by_group with mean_return_by_quantile(by_group=True, demeaned=False): each name's group is its
sector on the prediction date, bins cut over the whole date (alphalens' default binning_by_group=False).
"""
import json
import sys
from pathlib import Path

import alphalens.performance as perf
import alphalens.utils as au
import pandas as pd
import polars as pl


def sectors(report: dict):
    """A function (symbol, date) -> sector from the run's classification or securities file, or None."""
    data = report["config"]["data"]
    if data.get("classification"):
        spans = pd.read_csv(data["classification"], dtype=str, keep_default_na=False)
        spans["start"] = pd.to_datetime(spans["start"])
        spans["end"] = pd.to_datetime(spans["end"].replace("", "2262-01-01"))
        by_symbol = {s: g for s, g in spans.groupby("symbol")}

        def at(symbol, date):
            g = by_symbol.get(symbol)
            hit = g[(g["start"] <= date) & (date <= g["end"])] if g is not None else []
            return hit["sector"].iloc[0] if len(hit) else None
        return at
    if data.get("securities"):
        table = pd.read_csv(data["securities"], dtype=str).set_index("symbol")["sector"].to_dict()
        return lambda symbol, date: table.get(symbol)
    return None


def main(run: Path) -> int:
    report = json.loads((run / "report.json").read_text())
    q = report["config"]["report"]["quantiles"]
    preds = pl.read_parquet(run / "predictions.parquet").filter(pl.col("label").is_not_nan()).to_pandas()
    worst = 0.0
    for model, rows in preds.groupby("model"):
        ours = report["models"][model]["tearsheet"]["quantile_mean_label"]
        fd = rows.assign(date=pd.to_datetime(rows["date"]), asset=rows["symbol"]).set_index(["date", "asset"])
        fd = fd[["score", "label"]].rename(columns={"score": "factor", "label": "1D"})
        refused = 0
        for _, day in fd.groupby(level="date"):
            try:
                pd.qcut(day["factor"], q, labels=False)
            except ValueError:
                refused += 1
        if refused:
            print(f"{model:10s} alphalens refuses {refused} of {fd.index.get_level_values(0).nunique()} dates (coinciding edges)")
            continue
        fd["factor_quantile"] = au.quantize_factor(fd, quantiles=q)
        theirs, _ = perf.mean_return_by_quantile(fd, demeaned=False)
        theirs = theirs["1D"].reindex(range(1, q + 1)).tolist()
        diff = max(abs(a - b) for a, b in zip(ours, theirs))
        worst = max(worst, diff)
        print(f"{model:10s} stockcast {['%.10f' % v for v in ours]}\n{'':10s} alphalens {['%.10f' % v for v in theirs]}  max |diff| {diff:.2e}")
        at = sectors(report)
        if at is not None:
            dates, assets = fd.index.get_level_values(0), fd.index.get_level_values(1)
            fd["group"] = [at(a, d) for a, d in zip(assets, dates)]
            grouped = fd.dropna(subset=["group"])
            theirs, _ = perf.mean_return_by_quantile(grouped, by_group=True, demeaned=False)
            theirs = theirs["1D"]
            for row in report["models"][model]["tearsheet"]["quantile_mean_by_group"]:
                g = row["group"]
                for k, v in enumerate(row["quantile_mean_label"], start=1):
                    t = theirs.get((k, g), float("nan"))
                    d = 0.0 if (v is None and pd.isna(t)) else abs((v if v is not None else float("nan")) - t)
                    d = float("inf") if pd.isna(d) else d
                    worst = max(worst, d)
            print(f"{'':10s} by sector: {len(report['models'][model]['tearsheet']['quantile_mean_by_group'])} groups, max |diff| so far {worst:.2e}")
    return 0 if worst < 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
