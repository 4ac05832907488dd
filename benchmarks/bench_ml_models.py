"""Speed of the lstm and attention models: training time per epoch (default options, 3 years of
BTC/USDT 1h bars), numpy batched inference in windows/s, and one-window latency (p50, p99).

Run: ``MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 \
PYTHONPATH=engine:plugins python benchmarks/bench_ml_models.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mlcoord.backtest.run import bundled_path
from mlcoord.candles import load_candles
from mlcoord.components import build_market_data
from mlcoord_attention import Attention, AttentionOptions
from mlcoord_lstm import Lstm, LstmOptions

THREE_YEARS = 3 * 365 * 24


def main() -> None:
    candles = load_candles(bundled_path("BTC/USDT"), symbol="BTC/USDT")
    data = build_market_data(candles.slice(0, THREE_YEARS))
    full = build_market_data(candles)
    with tempfile.TemporaryDirectory() as tmp:
        for cls, options in ((Lstm, LstmOptions), (Attention, AttentionOptions)):
            report = cls(options()).train([data], Path(tmp) / f"{cls.kind}.npz")
            print(f"{cls.kind}: training on {len(data)} 1h bars: {report['seconds_per_epoch']:.2f} s/epoch "
                  f"({report['epochs_run']} epochs, {report['seconds']:.1f} s, {report['train_samples']} samples)")
            component = cls(options(max_model_age_days=100_000.0))    # the shipped model
            voter = component.prepare(full)
            index = np.arange(len(full))
            started = time.perf_counter()
            voter.probabilities(index)
            elapsed = time.perf_counter() - started
            print(f"{cls.kind}: numpy batched inference: {len(index) / elapsed:,.0f} windows/s")
            model = component.load_model(full.event)
            rng = np.random.default_rng(0)
            latencies = []
            for i in rng.integers(100, len(full), 2000):
                t0 = time.perf_counter()
                model.predict(voter.matrix, np.array([i]))
                latencies.append(time.perf_counter() - t0)
            p50, p99 = np.percentile(latencies, [50, 99]) * 1e6
            print(f"{cls.kind}: one-window latency: p50 {p50:.0f} us, p99 {p99:.0f} us")
            fresh = component.prepare(full)
            t0 = time.perf_counter()
            for i in range(0, len(full), 22):        # ~4.5 % of bars, like the technical signal
                fresh.vote(i, None)
            print(f"{cls.kind}: prepare + lazy votes on every 22nd of {len(full)} bars: "
                  f"{time.perf_counter() - t0:.2f} s (votes only)")


if __name__ == "__main__":
    main()
