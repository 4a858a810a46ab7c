"""report.json's risk statistics against empyrical-reloaded, quantstats and statsmodels on the run's own daily
returns (bench/risk_empyrical.py, to 1e-9): a run of every model kind with an index, and one with a 3 % risk-free
rate (alpha, omega and the minimum track record read it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import stockcast

ROOT = Path(__file__).resolve().parents[2]


def test_risk_statistics_equal_empyrical_quantstats_and_statsmodels(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    plain = stockcast.backtest(ROOT / "configs" / "backtest.toml", out=tmp_path / "plain")
    assert plain.report["models"]["gbm"]["risk"]["index"] is not None
    text = (ROOT / "configs" / "backtest.toml").read_text().replace("risk_free = 0.0", "risk_free = 0.03")
    assert "risk_free = 0.03" in text
    config = tmp_path / "rf.toml"
    config.write_text(text)
    with_rf = stockcast.backtest(config, models=["gbm", "momentum"], out=tmp_path / "rf")
    assert with_rf.report["config"]["strategy"]["risk_free"] == 0.03
    p = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "risk_empyrical.py"), str(plain.dir), str(with_rf.dir)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    # Every statistic was compared (the script prints one line per key).
    for key in ("benchmark.alpha", "benchmark.beta_se", "index.up_capture", "cvar_95", "omega", "rank_ic_t_newey_west"):
        assert key in p.stdout, p.stdout
