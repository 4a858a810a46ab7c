"""The Python package against the CLI on the bundled data: same features, same backtest report, same predictions,
same errors; the GIL is released while a job runs; the notebook executes; the wheel installs into a clean venv.

Run by `scripts/python.sh --test` (part of `scripts/test.sh`). STOCKCAST_BIN: the CLI binary to compare with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

import stockcast

ROOT = Path(__file__).resolve().parents[2]
US5 = ROOT / "datasets" / "us5_daily.csv"
BIN = os.environ.get("STOCKCAST_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "stockcast-target")) / "release" / "stockcast"
)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([BIN, "--quiet", *args], capture_output=True, text=True, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"stockcast {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def test_the_package_is_the_installed_wheel_not_the_source_tree():
    # An editable or source import would not prove the wheel works.
    assert "site-packages" in stockcast.__file__, stockcast.__file__
    assert stockcast.__version__ == "0.1.0"


def test_features_equal_the_cli_parquet_output_from_a_file_and_from_a_frame(tmp_path):
    cli("features", "--prices", str(US5), "--out", str(tmp_path / "cli.parquet"))
    expected = pl.read_parquet(tmp_path / "cli.parquet")
    from_file = stockcast.features(US5)
    assert from_file.equals(expected, null_equal=True)
    assert from_file.schema == expected.schema
    frame = pl.read_csv(US5, try_parse_dates=True)
    from_frame = stockcast.features(frame)
    assert from_frame.equals(expected, null_equal=True)
    assert from_frame.height == 12154 and from_frame.width == expected.width


def test_features_take_a_spec_and_a_horizon(tmp_path):
    spec = ROOT / "configs" / "features" / "default.toml"
    cli("features", "--prices", str(US5), "--spec", str(spec), "--horizon", "10", "--out", str(tmp_path / "h.parquet"))
    got = stockcast.features(US5, spec, horizon=10)
    assert got.equals(pl.read_parquet(tmp_path / "h.parquet"), null_equal=True)
    # A different horizon is a different label: the test could fail.
    assert not got["label"].equals(stockcast.features(US5)["label"], null_equal=True)


def comparable(value):
    # Wall-clock timings (`timings_seconds`, `*_seconds`) differ between any two runs; everything else is a
    # function of data, config and seed.
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def test_a_backtest_from_python_equals_the_cli_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the report records the config's paths as resolved: the same working directory
    config = ROOT / "configs" / "backtest.toml"
    cli("backtest", "--config", str(config), "--out", str(tmp_path / "cli"))
    run = stockcast.backtest(config, out=tmp_path / "py")
    expected = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert comparable(run.report) == comparable(expected)
    for name in ("predictions", "equity", "folds"):
        got, want = getattr(run, name), pl.read_parquet(tmp_path / "cli" / f"{name}.parquet")
        keep = [c for c in want.columns if not c.endswith("seconds")]
        assert got.select(keep).equals(want.select(keep), null_equal=True), name
    assert run.html_path.is_file() and run.html_path.name == "report.html"
    assert set(run.predictions["model"].unique()) == set(run.report["models"])


def test_a_dict_config_and_a_price_frame(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative paths in a dict config are relative to the working directory
    prices = pl.read_csv(US5, try_parse_dates=True).filter(pl.col("symbol") != "GOOG")
    config = {
        "name": "py-dict",
        "seed": 7,
        "data": {"prices": "datasets/us5_daily.csv", "horizon": 5},
        "split": {"min_train_days": 504, "test_days": 252},
        "models": [{"name": "linear", "config": "configs/models/linear.toml"}],
        "strategy": {"kind": "top_k", "k": 2, "rebalance_days": 5},
    }
    run = stockcast.backtest(config, prices, out=tmp_path / "run")
    assert list(run.report["models"]) == ["linear"]
    assert run.report["seed"] == 7
    # The frame replaced data.prices: GOOG is in the file, not in the run.
    assert "GOOG" not in set(run.predictions["symbol"].unique())
    assert run.predictions["symbol"].n_unique() == 4
    # A bad config is refused before any work, with the CLI's message (and the default output untouched).
    with pytest.raises(stockcast.InputError, match="min_train_days .* must be at least 1"):
        stockcast.backtest({**config, "split": {"min_train_days": 0, "test_days": 252}}, prices)
    assert not (ROOT / "runs" / "py-dict").exists()


def test_a_saved_model_predicts_what_the_cli_predicts(tmp_path):
    model_dir = tmp_path / "linear"
    cli("fit", "--model", "configs/models/linear.toml", "--prices", str(US5), "--train-until", "2011-12-30",
        "--out", str(model_dir))
    cli("predict", "--model-dir", str(model_dir), "--prices", str(US5), "--date", "2012-06-29",
        "--out", str(tmp_path / "cli.csv"))
    expected = pl.read_csv(tmp_path / "cli.csv", try_parse_dates=True, schema_overrides={"score": pl.Float64})
    model = stockcast.Model.load(model_dir)
    got = model.predict(pl.read_csv(US5, try_parse_dates=True), "2012-06-29")
    assert got.equals(expected)
    assert got.height == 5 and got["score"].is_finite().all()
    assert model.meta["kind"] == "linear"
    with pytest.raises(stockcast.InputError, match="no prices on 1999-01-04"):
        model.predict(US5, "1999-01-04")


def test_errors_are_exceptions_with_the_cli_message_and_exit_code(tmp_path):
    missing = tmp_path / "missing.csv"
    p = cli("features", "--prices", str(missing), "--out", str(tmp_path / "f.parquet"), check=False)
    assert p.returncode == 2
    with pytest.raises(stockcast.InputError) as e:
        stockcast.features(missing)
    assert e.value.exit_code == 2
    # The CLI prints "error: <message>" and the causes; the exception carries the same text.
    assert p.stderr.strip() == f"error: {e.value}"
    with pytest.raises(stockcast.InputError, match="--horizon"):
        stockcast.features(US5, horizon=0)
    with pytest.raises(stockcast.InputError, match="not a saved model"):
        stockcast.Model.load(tmp_path)
    assert issubclass(stockcast.QualityError, stockcast.InputError)
    assert issubclass(stockcast.InputError, stockcast.StockcastError)


def test_the_gil_is_released_while_a_job_runs():
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    # Jobs until they have run a quarter of a second together (one features job on the bundled data can take
    # under 50 ms), counting only the ticks inside the calls.
    calls, elapsed, during = 0, 0.0, 0
    try:
        while elapsed < 0.25 and calls < 100:
            before = ticks
            started = time.perf_counter()
            stockcast.features(US5)
            elapsed += time.perf_counter() - started
            during += ticks - before
            calls += 1
    finally:
        stop.set()
        t.join()
    # With the GIL held the counter could not run at all during a call.
    assert during >= 10, (during, elapsed, calls)


def test_the_notebook_executes_from_another_directory(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "backtest_report.ipynb", as_version=4)
    env_before = dict(os.environ)
    os.environ["STOCKCAST_REPO"] = str(ROOT)
    os.environ.pop("STOCKCAST_RUN", None)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4


def test_the_wheel_installs_into_a_clean_venv_and_runs_a_backtest(tmp_path):
    wheel = os.environ.get("STOCKCAST_WHEEL")
    if not wheel:
        pytest.skip("STOCKCAST_WHEEL not set (scripts/python.sh sets it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel], check=True)
    code = (
        "import stockcast, sys; "
        f"run = stockcast.backtest({str(ROOT / 'configs' / 'backtest.toml')!r}, out=sys.argv[1]); "
        "print(len(run.report['models']), run.predictions.height)"
    )
    p = subprocess.run([str(py), "-c", code, str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    models, rows = map(int, p.stdout.split()[-2:])
    assert models == len(json.loads((tmp_path / "run" / "report.json").read_text())["models"]) and models >= 2
    assert rows > 1000
