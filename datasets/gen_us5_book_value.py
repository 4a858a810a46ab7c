"""Writes us5_book_value_synthetic.csv: a SYNTHETIC quarterly book value per share for the five us5 symbols
(2000Q1..2012Q4), shaped like a fundamentals file (symbol, quarter-end date, value; published about 45 days later,
so a [[data.factors]] entry gives it lag_days = 45). Not real data: a seeded random walk around 30 % of each
symbol's adjusted close at the quarter end. Run: python3 datasets/gen_us5_book_value.py (standard library only)."""
import csv
import random
from pathlib import Path

here = Path(__file__).parent
closes = {}
with open(here / "us5_daily.csv") as f:
    for row in csv.DictReader(f):
        closes.setdefault(row["symbol"], []).append((row["date"], float(row["adj_close"])))
rng = random.Random(20261206)
out = ["symbol,date,book_value"]
for symbol in sorted(closes):
    rows = closes[symbol]
    ratio = 0.3
    for year in range(2000, 2013):
        for month, day in [(3, "31"), (6, "30"), (9, "30"), (12, "31")]:
            end = f"{year}-{month:02d}-{day}"
            known = [c for d, c in rows if d <= end]
            if not known or rows[0][0] > end:
                continue
            ratio = max(0.05, ratio * (1 + rng.gauss(0, 0.08)))
            out.append(f"{symbol},{end},{known[-1] * ratio:.4f}")
(here / "us5_book_value_synthetic.csv").write_text("\n".join(out) + "\n")
