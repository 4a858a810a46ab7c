"""Python peer for `stockcast-bench forecast`: Facebook/Meta Prophet on the same rolling origins.

For each of the last `--origins` origins (every `--horizon` trading days, the last one `--horizon` days before the
end of the file), fit Prophet on the previous 756 trading days of log closes (daily seasonality off, weekly and
yearly on, default priors) and forecast the close `--horizon` weekdays ahead; report MAE vs the naive last value
and the fit time per series. Same data and origins as `stockcast-bench forecast`.

Usage: python3 bench/prophet_python.py [--prices datasets/msft_daily.csv] [--horizon 5] [--origins 100]
Requires: pip install prophet pandas (not part of the test command).
"""

import argparse
import logging
import time

import numpy as np
import pandas as pd
from prophet import Prophet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prices", default="datasets/msft_daily.csv")
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--origins", type=int, default=100)
    a = p.parse_args()
    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    df = pd.read_csv(a.prices, parse_dates=["date"])
    close = df["close"].to_numpy()
    dates = df["date"]
    n = len(df)
    last = n - a.horizon - 1
    origins = [last - k * a.horizon for k in range(a.origins) if last - k * a.horizon >= 800]
    errs, naive, fit_s = [], [], 0.0
    for i in origins:
        hist = pd.DataFrame({"ds": dates[i - 755 : i + 1].to_numpy(), "y": np.log(close[i - 755 : i + 1])})
        m = Prophet(daily_seasonality=False, weekly_seasonality=3, yearly_seasonality=10)
        t = time.perf_counter()
        m.fit(hist)
        fit_s += time.perf_counter() - t
        target_day = pd.bdate_range(dates[i], periods=a.horizon + 1)[-1]
        f = np.exp(m.predict(pd.DataFrame({"ds": [target_day]}))["yhat"].iloc[0])
        target = close[i + a.horizon]
        errs.append(abs(f - target))
        naive.append(abs(close[i] - target))
    k = len(origins)
    print(
        f"python prophet: {k} origins, horizon {a.horizon}: MAE {np.mean(errs):.4f} "
        f"({np.mean(errs) / np.mean(naive):.3f}x naive {np.mean(naive):.4f}), fit {1e3 * fit_s / k:.1f} ms/series"
    )


if __name__ == "__main__":
    main()
