"""Python peer for the ETS row of `stockcast-bench forecast`: statsforecast's AutoETS, additive damped trend
(model "AAN", damped=True, i.e. ETS(A,Ad,N)), on the same rolling origins and the same log closes.

For each of the last `--origins` origins (every `--horizon` trading days, the last one `--horizon` days before the
end of the file), fit on the previous 756 trading days of log closes and forecast `--horizon` steps ahead; report
MAE of exp(forecast) against the close, vs the naive last value, and the fit time per series.

Usage: python3 bench/ets_statsforecast.py [--prices datasets/msft_daily.csv] [--horizon 5] [--origins 100]
Requires: pip install statsforecast pandas (not part of the test command).
"""

import argparse
import time

import numpy as np
import pandas as pd
from statsforecast.models import AutoETS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prices", default="datasets/msft_daily.csv")
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--origins", type=int, default=100)
    a = p.parse_args()
    close = pd.read_csv(a.prices)["close"].to_numpy()
    n = len(close)
    last = n - a.horizon - 1
    origins = [last - k * a.horizon for k in range(a.origins) if last - k * a.horizon >= 800]
    # One warm-up fit: statsforecast compiles its kernels with numba on first use.
    AutoETS(model="AAN", damped=True).fit(np.log(close[:756]))
    errs, naive, fit_s = [], [], 0.0
    for i in origins:
        y = np.log(close[i - 755 : i + 1])
        t = time.perf_counter()
        m = AutoETS(model="AAN", damped=True).fit(y)
        fit_s += time.perf_counter() - t
        f = float(np.exp(m.predict(h=a.horizon)["mean"][-1]))
        target = close[i + a.horizon]
        errs.append(abs(f - target))
        naive.append(abs(close[i] - target))
    k = len(origins)
    print(
        f"python statsforecast AutoETS(A,Ad,N): {k} origins, horizon {a.horizon}: MAE {np.mean(errs):.4f} "
        f"({np.mean(errs) / np.mean(naive):.3f}x naive {np.mean(naive):.4f}), fit {1e3 * fit_s / k:.1f} ms/series"
    )


if __name__ == "__main__":
    main()
