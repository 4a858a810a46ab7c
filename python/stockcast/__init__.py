"""stockcast from Python: features, walk-forward backtests and saved models on Polars frames.

Every function runs the same code as the ``stockcast`` command line, in this process with the GIL released, so
its outputs are the CLI's bit for bit::

    import polars as pl, stockcast
    prices = pl.read_csv("datasets/us5_daily.csv", try_parse_dates=True).drop("adj_close")
    feats = stockcast.features(prices)                      # one row per (symbol, date): features + label
    run = stockcast.backtest("configs/backtest.toml")       # or a dict of the same keys
    run.report["models"]["gbm"]["rank_ic"], run.predictions, run.equity, run.folds, run.html_path
    model = stockcast.Model.load("runs/demo/models/gbm")    # a saved model or a registry version
    model.predict(prices, "2024-06-28")                     # symbol, date, score

Errors are exceptions with the CLI's message: ``InputError`` (bad usage, configuration or data; the CLI's exit
code 2), ``QualityError`` (data-quality checks failed; 3), ``StockcastError`` (anything else; 1), each with an
``exit_code`` attribute. A price frame given as a ``polars.DataFrame`` is written to a temporary Parquet file and
read by the engine's loader, so it goes through the same quality checks as a file.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import os as _os
import tempfile as _tempfile
import tomllib as _tomllib
from pathlib import Path as _Path
from typing import Any, Mapping, Sequence, Union

import polars as _pl

from stockcast._stockcast import InputError, QualityError, StockcastError, __version__, run, to_toml

__all__ = [
    "InputError",
    "Model",
    "QualityError",
    "Run",
    "StockcastError",
    "__version__",
    "backtest",
    "features",
    "run",
]

Prices = Union[_pl.DataFrame, str, _os.PathLike]


class _Inputs:
    """A scratch directory for one call: frames written as Parquet, inline configs as TOML."""

    def __init__(self) -> None:
        self._dir = _tempfile.TemporaryDirectory(prefix="stockcast-")
        self.path = _Path(self._dir.name)

    def __enter__(self) -> "_Inputs":
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()

    def prices(self, prices: Prices) -> str:
        if isinstance(prices, _pl.DataFrame):
            path = self.path / "prices.parquet"
            prices.write_parquet(path)
            return str(path)
        return _os.fspath(prices)


def _quiet() -> list[str]:
    # Per-epoch and per-stage lines stay out of a notebook unless STOCKCAST_LOG asks for them.
    return [] if _os.environ.get("STOCKCAST_LOG") else ["--quiet"]


def features(
    prices: Prices,
    spec: str | _os.PathLike | None = None,
    *,
    horizon: int | None = None,
    demean: bool = False,
    symbol: str | None = None,
) -> _pl.DataFrame:
    """The features and label of ``spec`` (default: the built-in spec) for every (symbol, date) of ``prices``.

    ``prices``: a Polars frame (symbol, date, open, high, low, close, volume; or close only) or a file the CLI
    reads (CSV, Parquet, IPC, a folder). Equal to ``stockcast features --prices … --out F.parquet`` read back.
    """
    with _Inputs() as tmp:
        out = tmp.path / "features.parquet"
        args = _quiet() + ["features", "--prices", tmp.prices(prices), "--out", str(out)]
        if spec is not None:
            args += ["--spec", _os.fspath(spec)]
        if horizon is not None:
            args += ["--horizon", str(horizon)]
        if demean:
            args.append("--demean")
        if symbol is not None:
            args += ["--symbol", symbol]
        run(args)
        return _pl.read_parquet(out)


class Run:
    """A backtest run directory: ``report`` (report.json as a dict), ``predictions``, ``equity`` and ``folds``
    (Polars frames, read when first used), ``html_path`` (the report page) and ``dir``."""

    def __init__(self, directory: str | _os.PathLike) -> None:
        self.dir = _Path(directory)
        if not (self.dir / "report.json").is_file():
            raise InputError(f"{self.dir}: not a backtest run (no report.json)")
        self._frames: dict[str, _pl.DataFrame] = {}
        self._report: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    @property
    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = _json.loads((self.dir / "report.json").read_text())
        return self._report

    def _frame(self, name: str) -> _pl.DataFrame:
        if name not in self._frames:
            self._frames[name] = _pl.read_parquet(self.dir / f"{name}.parquet")
        return self._frames[name]

    @property
    def predictions(self) -> _pl.DataFrame:
        """model, symbol, date, fold, score, label: every out-of-sample score."""
        return self._frame("predictions")

    @property
    def equity(self) -> _pl.DataFrame:
        """model, date, equity, benchmark, index, drawdown, exposure, turnover."""
        return self._frame("equity")

    @property
    def folds(self) -> _pl.DataFrame:
        """model, fold, train/test ranges, rows and the fold's IC, Rank IC, ICIR, hit rate, MAE, RMSE."""
        return self._frame("folds")

    @property
    def html_path(self) -> _Path:
        return self.dir / "report.html"


def backtest(
    config: str | _os.PathLike | Mapping[str, Any] = "configs/backtest.toml",
    prices: Prices | None = None,
    *,
    out: str | _os.PathLike | None = None,
    models: Sequence[str] = (),
    seed: int | None = None,
    jobs: int | None = None,
    force: bool = False,
) -> Run:
    """A walk-forward backtest, as ``stockcast backtest --config CONFIG [--prices …] --out OUT``.

    ``config``: a TOML file or a dict of the same keys (relative paths in a dict are relative to the working
    directory). ``prices`` replaces ``data.prices``. ``out`` defaults to ``runs/<name>`` like the CLI; it is
    replaced only when it holds an earlier run (``force=True``: whatever it holds).
    """
    with _Inputs() as tmp:
        if isinstance(config, Mapping):
            path = tmp.path / "config.toml"
            path.write_text(to_toml(_json.dumps(config, default=_json_default)))
            name = config.get("name", "backtest")
        else:
            path = _Path(config)
            try:
                name = _tomllib.loads(path.read_text()).get("name", "backtest")
            except (OSError, _tomllib.TOMLDecodeError):
                name = "backtest"  # the CLI names the problem
        directory = _Path(out) if out is not None else _Path("runs") / str(name)
        args = _quiet() + ["backtest", "--config", str(path), "--out", str(directory)]
        if prices is not None:
            args += ["--prices", tmp.prices(prices)]
        for m in models:
            args += ["--model", m]
        if seed is not None:
            args += ["--seed", str(seed)]
        if jobs is not None:
            args += ["--jobs", str(jobs)]
        if force:
            args.append("--force")
        run(args)
    return Run(directory)


def _json_default(value: object) -> str:
    if isinstance(value, (_dt.date, _os.PathLike)):
        return str(value)
    raise TypeError(f"config value {value!r} is not a TOML value")


class Model:
    """A saved model: a ``stockcast fit --out`` directory or a registry version (``models/NAME/VERSION``)."""

    def __init__(self, directory: str | _os.PathLike) -> None:
        self.dir = _Path(directory)
        meta = self.dir / "model.json"
        if not meta.is_file():
            raise InputError(f"{self.dir}: not a saved model (no model.json)")
        self.meta: dict[str, Any] = _json.loads(meta.read_text())

    @classmethod
    def load(cls, directory: str | _os.PathLike) -> "Model":
        return cls(directory)

    def __repr__(self) -> str:
        return f"Model({str(self.dir)!r}, kind={self.meta.get('kind')!r})"

    def predict(self, prices: Prices, date: str | _dt.date) -> _pl.DataFrame:
        """Scores of every symbol of ``prices`` on ``date`` (a trading date), with the model's own feature spec:
        symbol, date, score (as ``stockcast predict``)."""
        with _Inputs() as tmp:
            out = tmp.path / "predictions.csv"
            run(
                _quiet()
                + ["predict", "--model-dir", str(self.dir), "--prices", tmp.prices(prices), "--date", str(date)]
                + ["--out", str(out)]
            )
            return _pl.read_csv(out, try_parse_dates=True, schema_overrides={"score": _pl.Float64})
