"""vectorbt peer for `stockcast-bench backtest --models momentum`: the same portfolio on the same prices.

Reads the benchmark's work directory (`stockcast-bench backtest --models momentum --out DIR` writes
DIR/prices.parquet, DIR/backtest.toml and the run DIR/run). The strategy is stockcast's:

- score: momentum(60) = close_t / close_{t-60} - 1, on the run's out-of-sample dates (its predictions' range);
- every 5th of those dates (from the first), top-50 with n-drop 10 (qlib's TopkDropout, as stockcast's `targets`):
  at most 10 holdings, the worst by score, are swapped for the best names not held; names that stay keep their
  shares, exits sell everything, new names buy 1/(names held) of equity;
- the orders fill at the next date's open, 10 bps commission and 5 bps slippage per side, one cash pool.

vectorbt 1.2 `Portfolio.from_orders` (size_type "targetpercent", cash sharing, sells before buys) simulates it.
Timed: signal (momentum + the rebalance targets) and simulation, after one untimed run that compiles numba's
kernels, median of `--runs`. Loading the Parquet file and pivoting it is not timed (stockcast's load is not either).

Usage: python3 bench/momentum_vectorbt.py --dir DIR [--runs 3]
Prints one JSON line: {"peer": "vectorbt 1.2.0", "signal_s": ..., "simulate_s": ..., "total_return": ..., ...}.
Requires: pip install vectorbt (not part of the test command).
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import pandas as pd
import vectorbt as vbt

K, N_DROP, EVERY, LOOKBACK = 50, 10, 5, 60
COMMISSION, SLIPPAGE, CAPITAL = 10e-4, 5e-4, 1_000_000.0


def topk_dropout(scores: np.ndarray, held: list[int]) -> list[int]:
    """The names to hold after a rebalance: stockcast's `targets` for `Rule::TopK { k, n_drop }` (ties by index)."""
    finite = np.flatnonzero(np.isfinite(scores))
    ranked = sorted(finite, key=lambda s: (-scores[s], s))
    score = {s: scores[s] for s in finite}
    last = sorted(held, key=lambda s: (-score.get(s, -np.inf), s))
    want_new = max(N_DROP + K - len(last), 0)
    held_set = set(held)
    today = [s for s in ranked if s not in held_set][:want_new]
    comb = sorted(last + today, key=lambda s: (-score.get(s, -np.inf), s))
    bottom = set(comb[::-1][:N_DROP])
    sell = [s for s in last if s in bottom]
    n_buy = max(len(sell) + K - len(last), 0)
    return [s for s in last if s not in sell] + today[:n_buy]


def signal(close: pd.DataFrame, start: int, end: int) -> np.ndarray:
    """Order sizes (target percent of equity; NaN: no order) for every date, filled at the next open."""
    mom = (close / close.shift(LOOKBACK) - 1.0).to_numpy()
    size = np.full(close.shape, np.nan)
    held: list[int] = []
    for d in range(start, end + 1, EVERY):
        if d >= end:  # the last date's orders would fill after the data
            break
        names = topk_dropout(mom[d], held)
        new = set(names) - set(held)
        for s in set(held) - set(names):
            size[d + 1, s] = 0.0
        for s in new:
            size[d + 1, s] = 1.0 / len(names)
        held = names
    return size


def simulate(close: pd.DataFrame, open_: pd.DataFrame, size: np.ndarray, start: int, end: int):
    rows = slice(start, end + 1)
    return vbt.Portfolio.from_orders(
        close=close.iloc[rows],
        size=size[rows],
        size_type="targetpercent",
        price=open_.iloc[rows],
        fees=COMMISSION,
        slippage=SLIPPAGE,
        init_cash=CAPITAL,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    prices = pd.read_parquet(os.path.join(a.dir, "prices.parquet"))
    close = prices.pivot(index="date", columns="symbol", values="close").sort_index()
    open_ = prices.pivot(index="date", columns="symbol", values="open").sort_index()
    scored = pd.read_parquet(os.path.join(a.dir, "run", "predictions.parquet"), columns=["date"])["date"]
    dates = list(close.index)
    start, end = dates.index(scored.min()), dates.index(scored.max())

    # Untimed: compiles vectorbt's numba kernels on a short window.
    simulate(close, open_, signal(close, start, start + 30), start, start + 30)
    signal_s, simulate_s, pf = [], [], None
    for _ in range(a.runs):
        t = time.perf_counter()
        size = signal(close, start, end)
        signal_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        pf = simulate(close, open_, size, start, end)
        value = pf.value()
        simulate_s.append(time.perf_counter() - t)
    orders = int(pf.orders.count())
    print(json.dumps({
        "peer": f"vectorbt {vbt.__version__}",
        "signal_s": statistics.median(signal_s),
        "simulate_s": statistics.median(simulate_s),
        "total_s": statistics.median(s + m for s, m in zip(signal_s, simulate_s)),
        "total_return": float(value.iloc[-1] / CAPITAL - 1.0),
        "orders": orders,
        "dates": end - start + 1,
    }))


if __name__ == "__main__":
    main()
