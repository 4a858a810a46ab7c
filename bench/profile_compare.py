#!/usr/bin/env python3
"""Two stockcast binaries side by side (e.g. the release profile vs `--profile tuned`), run alternately on the same
data, medians of N: the 5 M-row feature build (Parquet in and out, wall and peak RSS), an LSTM epoch and predict
(`bench lstm`), an XGBoost fit (`bench gbm`). Not part of the test command.

    python3 bench/profile_compare.py --a target/release/stockcast-bench --b target/tuned/stockcast-bench [--runs 3]
"""
import argparse, json, os, re, statistics, subprocess, tempfile, time


def timed(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, _, usage = os.wait4(p.pid, 0)
    out, err = p.stdout.read(), p.stderr.read()
    wall = time.perf_counter() - t
    if p.returncode not in (0, None) and usage is None:
        raise SystemExit(f"{cmd}: {err}")
    return wall, usage.ru_maxrss / 1024.0, out + err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--days", type=int, default=2500)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="stockcast-profiles-")
    prices = os.path.join(work, "prices.parquet")
    subprocess.run([args.a, "-q", "datasets", "synth", "--symbols", str(args.symbols), "--days", str(args.days),
                    "--seed", "42", "--out", prices], check=True, capture_output=True)
    res = {k: {"a": [], "b": []} for k in ["features_s", "features_mb", "lstm_epoch_s", "lstm_predict_s", "gbm_fit_s"]}
    for r in range(args.runs):
        for side in ["a", "b"]:
            b = getattr(args, side)
            wall, rss, _ = timed([b, "-q", "features", "--prices", prices, "--out", os.path.join(work, f"f-{side}.parquet")])
            res["features_s"][side].append(wall)
            res["features_mb"][side].append(rss)
            j = os.path.join(work, f"lstm-{side}.json")
            timed([b, "-q", "lstm", "--epochs", "2", "--json", j])
            l = json.load(open(j))
            res["lstm_epoch_s"][side].append(l["epoch_s"])
            res["lstm_predict_s"][side].append(l["predict_s"])
            _, _, text = timed([b, "-q", "gbm"])
            m = re.search(r"fit ([0-9.]+) s", text)
            res["gbm_fit_s"][side].append(float(m.group(1)) if m else float("nan"))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v['a'][-1]:.2f}/{v['b'][-1]:.2f}" for k, v in res.items()), flush=True)
    print(f"{'measure':<16}{'a (median)':>12}{'b (median)':>12}{'b / a':>8}")
    for k, v in res.items():
        a, b = statistics.median(v["a"]), statistics.median(v["b"])
        print(f"{k:<16}{a:>12.2f}{b:>12.2f}{b / a:>8.2f}")


if __name__ == "__main__":
    main()
