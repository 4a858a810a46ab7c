"""Python peer for `stockcast-bench gbm`: the same shape, distribution and XGBoost parameters.

Usage: python3 bench/xgb_python.py [--rows 100000] [--cols 30] [--rounds 200] [--nthread 2] [--matrix dmatrix|quantile]

--matrix quantile builds the training matrix as stockcast does (a QuantileDMatrix: the rows quantised once into
256 bins, no float copy kept); dmatrix (default) as most Python users do.
Requires: pip install xgboost-cpu numpy (not part of the test command).
"""

import argparse
import time

import numpy as np
import xgboost as xgb


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--cols", type=int, default=30)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--nthread", type=int, default=2)
    p.add_argument("--matrix", choices=["dmatrix", "quantile"], default="dmatrix")
    a = p.parse_args()
    rng = np.random.default_rng(42)
    x = rng.uniform(-1, 1, size=(a.rows, a.cols)).astype(np.float32)
    y = 0.8 * x[:, 0] - 0.5 * x[:, 1] * x[:, 2] + 0.1 * (rng.uniform(size=a.rows) - 0.5)
    params = {
        "booster": "gbtree",
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "eval_metric": "rmse",
        "eta": 0.1,
        "max_depth": 6,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "min_child_weight": 1.0,
        "lambda": 1.0,
        "seed": 42,
        "nthread": a.nthread,
        "verbosity": 0,
    }
    t = time.perf_counter()
    if a.matrix == "quantile":
        d = xgb.QuantileDMatrix(x, label=y, missing=np.nan, max_bin=256, nthread=a.nthread)
    else:
        d = xgb.DMatrix(x, label=y, missing=np.nan)
    booster = xgb.train(params, d, num_boost_round=a.rounds)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    pred = booster.predict(xgb.DMatrix(x, missing=np.nan))
    predict_s = time.perf_counter() - t
    print(
        f"python xgboost {xgb.__version__}: {a.rows} x {a.cols}, {a.rounds} rounds, depth 6, eta 0.1, hist, "
        f"{a.nthread} threads: fit {fit_s:.2f} s (incl. {a.matrix}), predict {len(pred)} rows {predict_s:.3f} s"
    )


if __name__ == "__main__":
    main()
