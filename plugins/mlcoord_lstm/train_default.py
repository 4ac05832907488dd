"""Reproduce the shipped models: ``python -m mlcoord_lstm.train_default [--only lstm|attention]``.

Trains ``lstm`` and ``attention`` with their default options (seed 0, 1 thread: deterministic)
on the earliest part of the bundled 1h data, BTC/USDT and ETH/USDT from 2020-09-20 up to
2022-03-31 23:00 UTC (labels need the close 24 bars later, so the last 24 bars only feed
features), writes ``models/default.npz`` into each plugin package, and scores each model out of
sample on 2022-04-01 -> 2025-09-19, BTC and ETH separately (AUC of both columns on the model's
target: P(long wins) / P(short wins) for the default trade label).
Set ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000`` before starting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np

CUTOFF = "2022-04-01T00:00:00"      # first bar NOT used for training
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _components():
    from mlcoord_attention import Attention, AttentionOptions
    from mlcoord_lstm import Lstm, LstmOptions
    return {"lstm": (Lstm, LstmOptions), "attention": (Attention, AttentionOptions)}


def load_bundled():
    from mlcoord.api import build_market_data, bundled_path, load_candles
    return {s: build_market_data(load_candles(bundled_path(s), symbol=s)) for s in SYMBOLS}


def cutoff_index(data) -> int:
    return int(np.searchsorted(data.candles.time, np.datetime64(CUTOFF, "ns").astype(np.int64)))


def out_of_sample(component, data) -> dict:
    """AUC and log-loss of both columns on the bars after the cutoff, on the component's own
    target (trade label: long wins / short wins; event: up / down)."""
    from mlcoord.api import auc, log_loss
    k = cutoff_index(data)
    voter = component.prepare(data)
    labels = component.labels(data.candles, len(data) - 1, data.event)
    up, down = labels[:, 0], labels[:, 1]
    idx = np.arange(k, len(data))
    idx = idx[np.isfinite(up[idx]) & np.isfinite(down[idx])]
    p = voter.probabilities(idx)
    return {"bars": int(len(idx)), "auc_up": auc(up[idx], p[:, 0]), "auc_down": auc(down[idx], p[:, 1]),
            "log_loss_up": log_loss(up[idx], p[:, 0]), "log_loss_down": log_loss(down[idx], p[:, 1]),
            "base_rate_up": float(np.mean(up[idx])), "base_rate_down": float(np.mean(down[idx]))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lstm", "attention"))
    parser.add_argument("--out", type=Path, help="directory for the artifacts (default: the plugin packages)")
    args = parser.parse_args(argv)
    markets = load_bundled()
    train_sets = [d.head(cutoff_index(d)) for d in markets.values()]
    results = {}
    for name, (cls, options) in _components().items():
        if args.only and name != args.only:
            continue
        package = cls.package
        out = (args.out / f"{name}.npz") if args.out else Path(str(resources.files(package) / "models" / "default.npz"))
        component = cls(options())
        report = component.train(train_sets, out)
        with np.load(out) as z:
            digest = hashlib.sha256(b"".join(z[k].tobytes() for k in sorted(z.files) if k.startswith("w."))).hexdigest()
        scored = cls(options(model_path=str(out), max_model_age_days=100_000.0))   # score the whole OOS range
        results[name] = {"report": report, "weights_sha256": digest,
                         "out_of_sample": {s: out_of_sample(scored, d) for s, d in markets.items()}}
        print(json.dumps({name: results[name]}, indent=2, default=float), flush=True)
    return results


if __name__ == "__main__":
    main()
