"""PyTorch peer for `stockcast-bench lstm`: the same panel shape, data distribution, network and training loop.

A 100-symbol synthetic panel of `--sequences` rows (row i is symbol i % 100 on day i // 100), `--cols` features
uniform in [-1, 1], label 0.8·x0 − 0.5·x1·x2 + noise; each row's sequence is its symbol's last `--lookback` rows,
left-padded with zeros, features standardised; one `nn.LSTM` layer (`--hidden`) and a linear head on the last
hidden state, MSE, Adam (lr 1e-3), shuffled mini-batches of `--batch-size`. Fit time covers building the windows
and every epoch; predict scores every row in chunks of 4,096 under `torch.no_grad()`.

Usage: python3 bench/lstm_torch.py [--sequences 50000] [--lookback 30] [--cols 8] [--hidden 32]
                                   [--batch-size 256] [--epochs 2] [--threads 2]
Prints one JSON line: {"peer": "pytorch", "epoch_s": ..., "predict_s": ..., ...}.
Requires: pip install torch numpy (not part of the test command).
"""

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, cols: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(cols, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :]).squeeze(-1)


def windows(x: np.ndarray, lookback: int, symbols: int = 100) -> np.ndarray:
    rows, cols = x.shape
    out = np.zeros((rows, lookback, cols), dtype=np.float32)
    for k in range(lookback):
        # Step lookback-1-k of row i is row i - k·symbols (the same symbol k days earlier).
        shift = k * symbols
        if shift < rows:
            out[shift:, lookback - 1 - k, :] = x[: rows - shift]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sequences", type=int, default=50_000)
    p.add_argument("--lookback", type=int, default=30)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    x = rng.uniform(-1, 1, size=(a.sequences, a.cols)).astype(np.float32)
    y = (0.8 * x[:, 0] - 0.5 * x[:, 1] * x[:, 2] + 0.1 * (rng.uniform(size=a.sequences) - 0.5)).astype(np.float32)

    t = time.perf_counter()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    seqs = torch.from_numpy(windows(z, a.lookback))
    target = torch.from_numpy((y - y.mean()) / y.std())
    net = Net(a.cols, a.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    losses = []
    for _ in range(a.epochs):
        order = torch.randperm(a.sequences)
        total = 0.0
        for start in range(0, a.sequences, a.batch_size):
            idx = order[start : start + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(seqs[idx]), target[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / a.sequences)
    fit_s = time.perf_counter() - t

    t = time.perf_counter()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(seqs[i : i + 4096]) for i in range(0, a.sequences, 4096)])
    predict_s = time.perf_counter() - t
    print(
        json.dumps(
            {
                "peer": f"pytorch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "sequences": a.sequences,
                "lookback": a.lookback,
                "cols": a.cols,
                "hidden": a.hidden,
                "batch_size": a.batch_size,
                "epochs": a.epochs,
                "epoch_s": fit_s / a.epochs,
                "predict_s": predict_s,
                "train_loss": losses,
                "predicted": int(pred.shape[0]),
            }
        )
    )


if __name__ == "__main__":
    main()
