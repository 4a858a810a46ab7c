"""The scaling chart of bench/scaling.sh: time per stage and peak memory against rows (symbols x days), log-log,
with each series' growth exponent b fitted by least squares on log(value) = a + b log(rows) (b = 1: linear).

Usage: python3 bench/scaling_chart.py docs/scaling.csv docs/scaling.png   (needs matplotlib)
"""

import csv
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

SERIES = [
    ("features_s", "features (s)"),
    ("walk_forward_s", "walk-forward (s)"),
    ("evaluate_s", "evaluate (s)"),
    ("peak_rss_mb", "peak RSS (GB)"),
]


def exponent(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(src)))
    x = [float(r["rows"]) for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in SERIES:
        y = [float(r[key]) / (1024 if key == "peak_rss_mb" else 1) for r in rows]
        b = exponent(x, y)
        print(f"{label}: growth exponent {b:.2f}")
        ax = ax_m if key == "peak_rss_mb" else ax_t
        for days, marker in (("2520", "o"), ("5040", "s")):
            pts = [(xi, yi) for xi, yi, r in zip(x, y, rows) if r["days"] == days]
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker=marker, linestyle="-",
                      label=f"{label}, {days} days (b = {b:.2f})" if days == "2520" else None,
                      color=ax.lines[-1].get_color() if days == "5040" else None)
    for ax, title in ((ax_t, "time per stage"), (ax_m, "peak memory of the run")):
        ax.set_xlabel("rows (symbols x days); circles 2,520 days, squares 5,040")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g} M"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
