"""Side-by-side benchmarks: stockcast and a peer run alternately, N times each (default 3), on the same data
(features: the same Parquet file) or data of the same shape and distribution (LSTM: both generate the same
synthetic panel with their own generators); prints every run, the medians, and the ratio stockcast / peer (below
1: stockcast is faster or smaller). Wall time, CPU time (user + system) and peak RSS are read by this script for
each child process (os.wait4), so both sides are measured the same way. On a shared machine CPU seconds move less
than wall seconds from run to run.

  python3 bench/compare.py lstm [--runs N]
  python3 bench/compare.py features [--runs N] [--symbols 2000] [--days 2500]
  python3 bench/compare.py momentum [--runs N] [--symbols 500] [--days 2520]

Needs a release build (`cargo build --release --locked`; STOCKCAST=path overrides the binary) and the peer's
packages (pip install torch numpy / pip install polars numpy / pip install vectorbt); not part of the test command.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/stockcast-target"))
    return os.environ.get("STOCKCAST", os.path.join(target, "release", "stockcast"))


def bench_binary() -> str:
    """The benchmarks' own binary (`cargo build --release -p stockcast-bench`), beside `stockcast`."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/stockcast-target"))
    return os.environ.get("STOCKCAST_BENCH", os.path.join(target, "release", "stockcast-bench"))


def run(cmd: list[str]) -> dict:
    """Runs cmd; its wall seconds, peak RSS (MB) and stdout."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed ({status}):\n{err.decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "stdout": out.decode()}


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def table(rows: list[tuple[str, list[float], list[float]]], runs: int, peer: str) -> None:
    print(f"\nmedians of {runs} alternating runs; peer: {peer}")
    print(f"{'metric':<26} {'stockcast':>11} {'peer':>11} {'ratio':>7}")
    for name, ours, theirs in rows:
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{name:<26} {a:>11.3f} {b:>11.3f} {a / b:>7.2f}")


def lstm(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        j = os.path.join(tmp, "ours.json")
        ours_cmd = [bench_binary(), "--quiet", "lstm", "--json", j]
        peer_cmd = [sys.executable, "bench/lstm_torch.py", "--threads", "2"]
        ours, theirs, peer = [], [], ""
        for i in range(a.runs):
            r = run(ours_cmd)
            o = json.load(open(j))
            o["peak_rss_mb"] = r["peak_rss_mb"]
            p = run(peer_cmd)
            t = last_json(p["stdout"])
            t["peak_rss_mb"] = p["peak_rss_mb"]
            peer = t["peer"]
            print(f"run {i + 1}: stockcast epoch {o['epoch_s']:.3f} s, predict {o['predict_s']:.3f} s | "
                  f"{peer} epoch {t['epoch_s']:.3f} s, predict {t['predict_s']:.3f} s")
            ours.append(o)
            theirs.append(t)
        table([(k, [x[k] for x in ours], [x[k] for x in theirs]) for k in ["epoch_s", "predict_s", "peak_rss_mb"]],
              a.runs, peer)


def features(a: argparse.Namespace) -> None:
    a.symbols, a.days = a.symbols or 2000, a.days or 2500
    with tempfile.TemporaryDirectory() as tmp:
        prices = os.path.join(tmp, "prices.parquet")
        run([bench_binary(), "--quiet", "features", "--symbols", str(a.symbols), "--days", str(a.days),
             "--write-prices", prices])
        mine, theirs_out = os.path.join(tmp, "ours.parquet"), os.path.join(tmp, "peer.parquet")
        ours_cmd = [binary(), "--quiet", "features", "--prices", prices, "--out", mine]
        ours, theirs, peer, check = [], [], "", None
        for i in range(a.runs):
            o = run(ours_cmd)
            peer_cmd = [sys.executable, "bench/features_polars.py", "--prices", prices, "--out", theirs_out]
            p = run(peer_cmd)
            t = last_json(p["stdout"])
            peer = t["peer"]
            print(f"run {i + 1}: stockcast {o['wall_s']:.2f} s ({o['cpu_s']:.1f} CPU-s), {o['peak_rss_mb']:.0f} MB | "
                  f"{peer} {p['wall_s']:.2f} s ({p['cpu_s']:.1f} CPU-s), {p['peak_rss_mb']:.0f} MB")
            ours.append(o)
            theirs.append(p)
        # The value check reads both outputs: a separate, untimed run.
        check = last_json(run(peer_cmd + ["--check", mine])["stdout"]).get("check")
        rows = t["rows"]
        print(f"\n{a.symbols} symbols x {a.days} days = {rows} rows, 68 features + label, Parquet in and out")
        table([(k, [x[k] for x in ours], [x[k] for x in theirs]) for k in ["wall_s", "cpu_s", "peak_rss_mb"]],
              a.runs, peer)
        if check:
            print("\nlargest |stockcast - polars| per family (null mismatches):")
            for fam, v in check.items():
                print(f"  {fam:<22} {v['max_abs_diff']:.3e} ({v['null_mismatches']})")


def momentum(a: argparse.Namespace) -> None:
    """The top-50 momentum(60) portfolio of `stockcast-bench backtest --models momentum`: the whole `stockcast
    backtest` (wall) and its signal + simulation seconds (the rule's scoring and `simulate_seconds`, from
    report.json) against bench/momentum_vectorbt.py's signal + simulation after numba's compilation."""
    symbols, days = a.symbols or 500, a.days or 2520
    with tempfile.TemporaryDirectory() as tmp:
        run([bench_binary(), "--quiet", "backtest", "--models", "momentum", "--symbols", str(symbols), "--days",
             str(days), "--out", tmp])
        config = os.path.join(tmp, "backtest.toml")
        ours, theirs, peer = [], [], ""
        for i in range(a.runs):
            out = os.path.join(tmp, f"run{i}")
            r = run([binary(), "--quiet", "backtest", "--config", config, "--out", out])
            m = json.load(open(os.path.join(out, "report.json")))["models"]["momentum"]
            o = {"wall_s": r["wall_s"], "signal_s": m["predict_seconds"], "simulate_s": m["simulate_seconds"],
                 "total_return": m["total_return"], "fills": m["fills"]}
            o["signal_plus_simulation_s"] = o["signal_s"] + o["simulate_s"]
            p = run([sys.executable, "bench/momentum_vectorbt.py", "--dir", tmp, "--runs", "1"])
            t = last_json(p["stdout"])
            t["wall_s"] = p["wall_s"]
            t["signal_plus_simulation_s"] = t["total_s"]
            peer = t["peer"]
            print(f"run {i + 1}: stockcast backtest {o['wall_s']:.2f} s, signal + simulation "
                  f"{o['signal_plus_simulation_s']:.3f} s (total return {o['total_return']:.4f}, {o['fills']} fills) | "
                  f"{peer} signal + simulation {t['total_s']:.3f} s (total return {t['total_return']:.4f}, "
                  f"{t['orders']} orders), process {p['wall_s']:.2f} s")
            ours.append(o)
            theirs.append(t)
        print(f"\n{symbols} symbols x {days} days, top-50 n-drop 10 momentum(60), every 5 days, next-open fills")
        table([(k, [x[k] for x in ours], [x[k] for x in theirs])
               for k in ["signal_s", "simulate_s", "signal_plus_simulation_s", "wall_s"]], a.runs, peer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["lstm", "features", "momentum"])
    ap.add_argument("--runs", type=int, default=3)
    # Defaults per benchmark: features 2,000 x 2,500, momentum 500 x 2,520.
    ap.add_argument("--symbols", type=int)
    ap.add_argument("--days", type=int)
    a = ap.parse_args()
    {"lstm": lstm, "features": features, "momentum": momentum}[a.what](a)


if __name__ == "__main__":
    main()
