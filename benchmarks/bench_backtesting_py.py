"""backtesting.py's own speed on the same 50,000 candles, for the side-by-side loop figure.

Runs backtesting.py's documented SMA crossover example (SMA 10/20, ``crossover``, buy/sell
closing the opposite position) over the last 50,000 rows of nic BTC/USDT 1h and prints bars
per second of ``Backtest.run`` (median of runs). backtesting.py is not a dependency of mlcoord:
install it in a separate environment (``pip install backtesting pyarrow``) and run this script
there. Prints numbers; asserts nothing.

Usage: python benchmarks/bench_backtesting_py.py [--runs 5] [--data50k PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "nic-tradingstrategyga" / "BTC_USDT-1h.feather"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data50k", type=Path, default=SHARED)
    args = parser.parse_args()
    import backtesting
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    frame = pd.read_feather(args.data50k).tail(50_000)
    frame = frame.rename(columns=str.capitalize).set_index("Date")

    class SmaCross(Strategy):
        n1, n2 = 10, 20

        def init(self):
            self.sma1 = self.I(SMA, self.data.Close, self.n1)
            self.sma2 = self.I(SMA, self.data.Close, self.n2)

        def next(self):
            if crossover(self.sma1, self.sma2):
                self.position.close()
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.position.close()
                self.sell()

    times, trades = [], 0
    for _ in range(args.runs):
        bt = Backtest(frame, SmaCross, cash=10_000_000, commission=0.0005, finalize_trades=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            stats = bt.run()
            times.append(time.perf_counter() - t0)
        trades = int(stats["# Trades"])
    loop = statistics.median(times)
    print(f"python {sys.version.split()[0]}, backtesting.py {backtesting.__version__}, runs={args.runs}")
    print(f"SMA(10/20) crossover on {len(frame):,} bars (nic BTC/USDT 1h, last 50,000 rows): "
          f"Backtest.run {loop:.3f} s median = {len(frame) / loop:,.0f} bars/s; {trades} trades")


if __name__ == "__main__":
    main()
