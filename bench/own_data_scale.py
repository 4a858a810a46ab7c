"""Prepares the "desk's own data at scale" benchmark (bench/own_data_scale.sh): one synthetic panel written as
one Parquet file and as a folder of per-symbol Parquet files, a point-in-time universe and a quarterly factor file.

    python3 bench/own_data_scale.py PANEL.parquet OUT_DIR [--seed 7]

PANEL.parquet is `stockcast datasets synth` output (symbols S0000..). Writes, all derived from it and the seed:
  OUT_DIR/panel.parquet      the panel as one file (a copy)
  OUT_DIR/folder/S0000.parquet ...  the same rows, one file per symbol
  OUT_DIR/universe.txt       qlib instruments format: each symbol a member from a random start for a random length
                             (a quarter of them leave before the end, a quarter join late)
  OUT_DIR/book.csv           symbol,date,book_value: a value per quarter end per symbol (30 % of the quarter-end
                             close times a seeded random walk), used with lag_days = 45
Everything is synthetic.
"""
import random
import sys
from pathlib import Path

import polars as pl


def main(panel: Path, out: Path, seed: int) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    df = pl.read_parquet(panel)
    df.write_parquet(out / "panel.parquet")
    folder = out / "folder"
    folder.mkdir(exist_ok=True)
    for (symbol,), part in df.partition_by("symbol", as_dict=True, maintain_order=True).items():
        part.drop("symbol").write_parquet(folder / f"{symbol}.parquet")
    dates = df["date"].unique().sort().to_list()
    lines = []
    for symbol in df["symbol"].unique().sort().to_list():
        start, end = 0, len(dates) - 1
        kind = rng.random()
        if kind < 0.25:
            end = rng.randrange(len(dates) // 2, len(dates) - 1)
        elif kind < 0.5:
            start = rng.randrange(1, len(dates) // 2)
        lines.append(f"{symbol}\t{dates[start]}\t{dates[end]}")
    (out / "universe.txt").write_text("\n".join(lines) + "\n")
    quarter_ends = (
        df.with_columns(q=pl.col("date").dt.truncate("1q"))
        .group_by("symbol", "q")
        .agg(pl.col("date").last(), pl.col("close").last())
        .sort("symbol", "date")
    )
    walk = {}
    values = []
    for symbol, close in zip(quarter_ends["symbol"], quarter_ends["close"]):
        walk[symbol] = walk.get(symbol, 1.0) * (1.0 + rng.gauss(0.0, 0.05))
        values.append(0.3 * close * walk[symbol])
    quarter_ends.select("symbol", "date").with_columns(book_value=pl.Series(values)).write_csv(out / "book.csv")


if __name__ == "__main__":
    args = sys.argv[1:]
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 7
    main(Path(args[0]), Path(args[1]), seed)
