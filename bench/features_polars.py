"""Polars-from-Python peer for `stockcast features`: the default spec (68 features + the next-open label),
hand-written the way a Polars user would, every time-series expression `.over("symbol")`.

Reads the prices Parquet stockcast reads, writes the features Parquet (symbol, date, the 68 features in spec order,
label; NaN and ±inf as null, like stockcast), and prints one JSON line with the wall time and this process's peak
RSS. With `--check FILE` (stockcast's output of the same prices) it compares every column and prints the largest
absolute difference per family.

Usage: python3 bench/features_polars.py --prices P.parquet --out F.parquet [--check stockcast.parquet]
Requires: pip install polars numpy (not part of the test command).
"""

import argparse
import json
import resource
import time

import polars as pl

S = "symbol"


def o(e: pl.Expr) -> pl.Expr:
    return e.over(S)


def ewm(e: pl.Expr, alpha: float, min_samples: int) -> pl.Expr:
    # y[t] = (1-α) y[t-1] + α x[t], seeded with the first value; null for the first min_samples - 1 values.
    return o(e.ewm_mean(alpha=alpha, adjust=False, min_samples=min_samples, ignore_nulls=True))


def span(w: int) -> float:
    return 2.0 / (w + 1.0)


def features(lf: pl.LazyFrame, horizon: int) -> tuple[pl.LazyFrame, list[str]]:
    c, h, lo, op = pl.col("close"), pl.col("high"), pl.col("low"), pl.col("open")
    prev = o(c.shift(1))
    lf = lf.with_columns(prev.alias("_prev"), (pl.col("volume") + 1.0).log().alias("_logv"))
    p, lv = pl.col("_prev"), pl.col("_logv")
    d = c - p
    tr = pl.max_horizontal(h - lo, (h - p).abs().fill_null(0.0), (lo - p).abs().fill_null(0.0))
    lf = lf.with_columns(
        (c / p - 1.0).alias("_r1"),
        (c / p).log().alias("_lr1"),
        ((d.abs() + d) * 0.5).alias("_gain"),
        ((d.abs() - d) * 0.5).alias("_loss"),
        tr.alias("_tr"),
    )
    r1, lr1, gain, loss, trc = (pl.col(n) for n in ["_r1", "_lr1", "_gain", "_loss", "_tr"])
    ex: list[pl.Expr] = []
    for w in [1, 2, 3, 5, 10, 20, 60, 120]:
        ex.append((c / o(c.shift(w)) - 1.0).alias(f"ret_{w}"))
    for w in [1, 5, 20]:
        ex.append((c / o(c.shift(w))).log().alias(f"logret_{w}"))
    for w in [5, 10, 20, 50, 100, 200]:
        ex.append((c / o(c.rolling_mean(w)) - 1.0).alias(f"ma_ratio_{w}"))
    for w in [5, 12, 26, 50]:
        ex.append((c / ewm(c, span(w), w) - 1.0).alias(f"ema_ratio_{w}"))
    for w in [5, 10, 20, 60]:
        ex.append(o(lr1.rolling_std(w)).alias(f"vol_{w}"))
    for w in [6, 14, 28]:
        g, l_ = ewm(gain, 1.0 / w, w), ewm(loss, 1.0 / w, w)
        ex.append((100.0 - 100.0 / (1.0 + g / l_)).alias(f"rsi_{w}"))
    ex.append(((ewm(c, span(12), 12) - ewm(c, span(26), 26)) / c).alias("macd_12_26"))
    for w in [10, 20]:
        ex.append((0.5 + (c - o(c.rolling_mean(w))) / (4.0 * o(c.rolling_std(w)))).alias(f"bb_pctb_{w}"))
    for w in [5, 14, 28]:
        ex.append((ewm(trc, 1.0 / w, w) / c).alias(f"atr_{w}"))
    for w in [5, 14, 28]:
        mn, mx = o(lo.rolling_min(w)), o(h.rolling_max(w))
        ex.append((100.0 * (c - mn) / (mx - mn)).alias(f"stoch_k_{w}"))
    for w in [5, 20, 60]:
        ex.append(((lv - o(lv.rolling_mean(w))) / o(lv.rolling_std(w))).alias(f"volume_z_{w}"))
    for w in [10, 20, 60]:
        ex.append(o(pl.rolling_corr(c, lv, window_size=w, min_samples=w)).alias(f"pv_corr_{w}"))
    for w in [10, 20, 60, 120, 250]:
        ex.append((c / o(c.rolling_max(w)) - 1.0).alias(f"dist_max_{w}"))
    for w in [10, 20, 60, 120, 250]:
        ex.append((c / o(c.rolling_min(w)) - 1.0).alias(f"dist_min_{w}"))
    for w in [20, 60]:
        ex.append(o(r1.rolling_skew(w, bias=True)).alias(f"skew_{w}"))
    for w in [20, 60]:
        ex.append(o(r1.rolling_kurtosis(w, fisher=True, bias=True)).alias(f"kurt_{w}"))
    hl = (h - lo) / c
    ex.append(hl.alias("hl_range_1"))
    for w in [5, 20]:
        ex.append(o(hl.rolling_mean(w)).alias(f"hl_range_{w}"))
    ex.append((op / p - 1.0).alias("open_gap_1"))
    # Next-open label: open(t+1+h) / open(t+1) - 1.
    ex.append((o(op.shift(-(horizon + 1))) / o(op.shift(-1)) - 1.0).alias("label"))
    lf = lf.with_columns(ex)
    lf = lf.with_columns(o(pl.col("macd_12_26").ewm_mean(alpha=span(9), adjust=False, min_samples=9, ignore_nulls=True)).alias("macd_signal_12_26_9"))
    lf = lf.with_columns((pl.col("macd_12_26") - pl.col("macd_signal_12_26_9")).alias("macd_hist_12_26_9"))
    names = [e.meta.output_name() for e in ex if e.meta.output_name() != "label"]
    # Spec order: MACD after RSI.
    at = names.index("macd_12_26") + 1
    names[at:at] = ["macd_signal_12_26_9", "macd_hist_12_26_9"]
    finite = [pl.when(pl.col(n).is_finite()).then(pl.col(n)).otherwise(None).alias(n) for n in names + ["label"]]
    lf = lf.with_columns(finite)
    ranked = ["ret_5", "ret_20", "vol_20", "rsi_14", "volume_z_20"]
    lf = lf.with_columns(
        ((pl.col(n).rank("average") - 0.5) / pl.col(n).count()).over("date").alias(f"cs_rank_{n}") for n in ranked
    )
    names += [f"cs_rank_{n}" for n in ranked]
    return lf.select([S, "date", *names, "label"]), names


FAMILIES = ["cs_rank", "ret", "logret", "ma_ratio", "ema_ratio", "vol", "rsi", "macd_signal", "macd_hist", "macd",
            "bb_pctb", "atr", "stoch_k", "volume_z", "pv_corr", "dist_max", "dist_min", "skew", "kurt", "hl_range",
            "open_gap", "label"]


def check(ours: pl.DataFrame, theirs_path: str) -> dict:
    theirs = pl.read_parquet(theirs_path).sort([S, "date"])
    ours = ours.sort([S, "date"])
    if theirs.height != ours.height:
        raise SystemExit(f"row counts differ: stockcast {theirs.height}, polars {ours.height}")
    worst = {}
    for name in ours.columns[2:]:
        a, b = ours[name].cast(pl.Float64), theirs[name].cast(pl.Float64)
        nulls = int((a.is_null() != b.is_null()).sum())
        diff = (a - b).abs().max()
        family = next((f for f in FAMILIES if name.startswith(f)), name)
        prev = worst.get(family, (0.0, 0))
        worst[family] = (max(prev[0], diff or 0.0), prev[1] + nulls)
    return {k: {"max_abs_diff": v[0], "null_mismatches": v[1]} for k, v in worst.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prices", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--check")
    a = ap.parse_args()
    t = time.perf_counter()
    lf = pl.scan_parquet(a.prices).sort([S, "date"])
    lf, names = features(lf, a.horizon)
    df = lf.collect()
    df.write_parquet(a.out)
    total = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {
        "peer": f"polars {pl.__version__} (python)",
        "rows": df.height,
        "features": len(names),
        "total_s": total,
        "peak_rss_mb": peak,
        "threads": pl.thread_pool_size(),
    }
    if a.check:
        result["check"] = check(df, a.check)
        result["max_abs_diff"] = max((v["max_abs_diff"] for v in result["check"].values()), default=0.0)
        result["null_mismatches"] = sum(v["null_mismatches"] for v in result["check"].values())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
