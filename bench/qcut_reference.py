"""The reference bins of `qcut_bins_are_pandas_qcut` (crates/backtest/tests/it/main.rs): pandas.qcut(x, q,
labels=False) on seeded normal samples rounded to 3 decimals. Run: python3 bench/qcut_reference.py (pandas 2.x)."""
import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
for n, q in [(4, 3), (5, 3), (7, 5), (10, 5), (11, 4), (13, 5), (6, 5), (20, 10), (3, 5), (9, 2)]:
    x = np.round(rng.normal(size=n), 3)
    print(f"(&{[float(v) for v in x]}, {q}, &{list(map(int, pd.qcut(x, q, labels=False)))}),")
print("(&[1.0, 2.0, 3.0, 4.0], 3, &%s)," % list(map(int, pd.qcut([1.0, 2.0, 3.0, 4.0], 3, labels=False))))
