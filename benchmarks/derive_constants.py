"""Re-derive the technical scoring constants and the mtf scales on the development part only.

Usage: PYTHONPATH=engine:plugins python benchmarks/derive_constants.py [--holdout-from DATE]
                                                                       [--check-dir DIR]

Calibrating on bars that are later scored flatters the result, so every statistic here is
computed on the development part: the bars before ``holdout_from``, chosen by the same rule as
``mlcoord evaluate`` (``mlcoord.evaluation.holdout.make_split``; default: the last 30 % of the
bars are held out). Derivation data: the bundled BTC/USDT 1h candles (what the constants were
first calibrated on). Check data: ETH, SOL and XRP 1h from ``--check-dir`` (default
``../shared/data/bernini10-oraculo-de-bitcoin``, same source and span as the bundled file; read
for this check only), each cut at its own development part by the same rule.

What is derived, with the plugin's own formulas (``scoring.score``, ``scoring.shape_confidence``,
``views.readings``):

* ``entry_score``: the net score at which BUY/SELL fall on 4.5 % of the bars, rounded to the
  quarter point;
* ``CONFIDENCE_SCALE``, ``AGREEMENT_BONUS``, ``OPPOSITION_PENALTY``: "each DCA band (< 0.65,
  0.65-0.75, >= 0.75) holds a sizeable share" read as: maximise the smallest band's share of the
  signal bars, one constant at a time (others at their current value), on the grid of their
  written precision. A value whose smallest share is within one binomial standard error of the
  best is not distinguishable from it (signals cluster in time, so the true error is larger and
  this test errs towards change); the current value is kept when it is among those. The fit
  to the shares documented for the first calibration (56 / 19 / 25 %) is printed beside it;
* ``_SCALES`` of the mtf views: two thirds of the 90th percentile of each reading's magnitude,
  per timeframe (1h, and 4h / 1d resampled from it as the engine does), one scale per reading
  from the median over the three timeframes, rounded to the written precision (0.1; RSI: 1).

The bundled file's default split (2024-03-21 10:00) is later than the one ``evaluate`` draws on the
five roshan7869 series (2023-11-12 23:00); ``--holdout-from 2023-11-12T23:00`` re-derives on
the shorter part (every value rounds the same as with the default, measured 2026-12-07).

Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CHECK_DIR = ROOT.parent / "shared" / "data" / "bernini10-oraculo-de-bitcoin"
CHECK_SYMBOLS = ("ETH", "SOL", "XRP")
SIGNAL_SHARE = 0.045                                   # share of bars entry_score aims at
DOCUMENTED_BANDS = (0.56, 0.19, 0.25)                  # first calibration's band shares (full 2020-2025 data)
GRIDS = {"CONFIDENCE_SCALE": np.round(np.arange(0.50, 1.201, 0.05), 2),
         "AGREEMENT_BONUS": np.round(np.arange(0.0, 0.101, 0.01), 2),
         "OPPOSITION_PENALTY": np.round(np.arange(0.0, 0.101, 0.01), 2)}
READINGS = ("close vs EMA (ATRs)", "EMA slope (ATRs)", "MACD hist (ATRs)", "RSI - 50")
SCALE_STEP = (0.1, 0.1, 0.1, 1.0)


def dev_parts(candles, holdout_from):
    from mlcoord.evaluation.holdout import development_candles, make_split

    split = make_split(candles, holdout_from)
    return development_candles(candles, split), split


def span(c) -> str:
    first, last = (pd.Timestamp(int(t), tz="UTC").strftime("%Y-%m-%d %H:%M") for t in (c.time[0], c.time[-1]))
    return f"{first} -> {last}, {len(c):,} bars"


def technical(c):
    """Scores with the default options, plus the bars that would enter at any entry_score."""
    import attrs

    from mlcoord import Regime
    from mlcoord.components import build_market_data
    from mlcoord_technical import TechnicalOptions, scoring

    o = TechnicalOptions()
    hv = np.asarray(build_market_data(c).context.regime) == Regime.HIGH_VOLATILITY
    s = scoring.score(c.close, c.high, c.low, c.volume, o, hv)
    eligible = scoring.score(c.close, c.high, c.low, c.volume, attrs.evolve(o, entry_score=1e-9), hv).action != 0
    return o, s, eligible


def bands(s, o, **constants) -> np.ndarray:
    from mlcoord_technical import scoring

    sig = s.action != 0
    beyond = np.maximum(np.abs(s.net) - o.entry_score, 0.0)
    conf = scoring.shape_confidence(beyond, np.maximum(s.agreeing - o.min_agreeing, 0), s.opposing, s.volatile,
                                    **constants)[sig]
    return np.array([(conf < 0.65).mean(), ((conf >= 0.65) & (conf < 0.75)).mean(), (conf >= 0.75).mean()])


def entry_stats(c):
    o, s, eligible = technical(c)
    n = len(c)
    net = np.sort(np.abs(s.net[eligible]))[::-1]
    k = int(round(SIGNAL_SHARE * n))
    derived = float(net[k - 1]) if 0 < k <= len(net) else float("nan")
    return o, s, (s.action != 0).mean(), derived


def confidence_profiles(s, o):
    """Per constant: (derived, supported values, smallest share at derived, at current, documented-fit value)."""
    from mlcoord_technical import scoring

    current = {"CONFIDENCE_SCALE": scoring.CONFIDENCE_SCALE, "AGREEMENT_BONUS": scoring.AGREEMENT_BONUS,
               "OPPOSITION_PENALTY": scoring.OPPOSITION_PENALTY}
    keyword = {"CONFIDENCE_SCALE": "scale", "AGREEMENT_BONUS": "bonus", "OPPOSITION_PENALTY": "penalty"}
    n_signals = int((s.action != 0).sum())
    out = {}
    for name, grid in GRIDS.items():
        shares = [bands(s, o, **{keyword[name]: float(x)}) for x in grid]
        smallest = np.array([b.min() for b in shares])
        best = smallest.max()
        se = np.sqrt(best * (1 - best) / max(n_signals, 1))
        supported = grid[smallest >= best - se]
        at_current = bands(s, o, **{keyword[name]: current[name]}).min()
        derived = current[name] if np.any(np.isclose(supported, current[name])) else float(grid[smallest.argmax()])
        fit = float(grid[np.argmin([((b - DOCUMENTED_BANDS) ** 2).sum() for b in shares])])
        out[name] = (derived, current[name], supported, best, at_current, se, fit)
    return out


def mtf_p90(c):
    """Per timeframe: p90 of |reading| for the four readings of the mtf view."""
    from mlcoord.candles import resample
    from mlcoord_mtf import MtfOptions
    from mlcoord_mtf.views import readings

    m = MtfOptions()
    out = {}
    for tf in ("1h", *m.timeframes):
        x = c if tf == c.timeframe else resample(c, tf)
        r = readings(x.high, x.low, x.close, m.ema_period, m.slope_bars, m.atr_period, m.rsi_period)
        out[tf] = (len(x), [float(np.nanpercentile(np.abs(v), 90)) for v in r])
    return out


def rounded(x: float, step: float) -> float:
    return round(round(x / step) * step, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout-from", default=None, help="as `mlcoord evaluate` (default: last 30 %% held out)")
    parser.add_argument("--check-dir", type=Path, default=CHECK_DIR)
    args = parser.parse_args()

    from mlcoord import datasets
    from mlcoord.candles import load_candles
    from mlcoord_mtf import views

    btc = load_candles(datasets.bundled_path("BTC/USDT"))
    (dev,), split = dev_parts([btc], args.holdout_from)
    print(f"derivation: bundled BTC/USDT 1h, {split.describe()}")
    print(f"  development part {span(dev)} (of {len(btc):,})")
    checks = []
    for sym in CHECK_SYMBOLS:
        path = args.check_dir / f"{sym}_USDT-1h.feather"
        if path.exists():
            (part,), _ = dev_parts([load_candles(path, symbol=f"{sym}/USDT")], args.holdout_from)
            checks.append((sym, part))
            print(f"check: {sym}/USDT 1h ({path.parent.name}) development part {span(part)}")
        else:
            print(f"check: {path} not found, skipped")

    print("\n== entry_score: BUY/SELL on 4.5 % of the bars (rounded to 0.25) ==")
    o, s, share, derived = entry_stats(dev)
    print(f"{'data':<8}{'share at current':>18}{'net score at 4.5 %':>20}")
    print(f"{'BTC':<8}{share:>17.2%} {derived:>19.3f}")
    for sym, part in checks:
        _, _, sh, d = entry_stats(part)
        print(f"{sym:<8}{sh:>17.2%} {d:>19.3f}")
    print(f"entry_score  derived {rounded(derived, 0.25):.2f} ({derived:.3f})  current {o.entry_score:.2f}")

    print("\n== confidence shaping: DCA band shares of the signal bars (< 0.65 / 0.65-0.75 / >= 0.75) ==")
    print("current constants:")
    for sym, part in [("BTC", dev), *checks]:
        oo, ss, _, _ = entry_stats(part) if sym != "BTC" else (o, s, None, None)
        b = bands(ss, oo)
        print(f"  {sym:<6}{int((ss.action != 0).sum()):>6} signals  " + " / ".join(f"{x:.1%}" for x in b)
              + f"   smallest {b.min():.1%}")
    print(f"  documented for the first calibration (BTC 2020-2025, all bars): "
          + " / ".join(f"{x:.0%}" for x in DOCUMENTED_BANDS))
    print("one constant at a time, the others at their current value (BTC development part):")
    print(f"  {'constant':<20}{'derived':>8}{'current':>8}  {'best smallest band':>18}  {'at current':>10}  "
          f"{'1 SE':>5}  supported (within 1 SE)   fit to documented shares")
    for name, (d, cur, sup, best, atc, se, fit) in confidence_profiles(s, o).items():
        print(f"  {name:<20}{d:>8.2f}{cur:>8.2f}  {best:>18.1%}  {atc:>10.1%}  {se:>5.1%}  "
              f"{sup.min():.2f} .. {sup.max():.2f}{'':>14}{fit:.2f}")
    for sym, part in checks:
        oo, ss, _, _ = entry_stats(part)
        row = "  ".join(f"{name} {d:.2f} ({sup.min():.2f}..{sup.max():.2f})"
                        for name, (d, _, sup, *_) in confidence_profiles(ss, oo).items())
        print(f"  check {sym}: {row}")

    print("\n== mtf view scales: 2/3 x p90 of |reading|, median over 1h / 4h / 1d ==")
    per = {"BTC": mtf_p90(dev), **{sym: mtf_p90(part) for sym, part in checks}}
    for k, reading in enumerate(READINGS):
        print(f"{reading}  (current {views._SCALES[k]:g})")
        for sym, tfs in per.items():
            scales = [2 / 3 * p[k] for _, p in tfs.values()]
            cells = "  ".join(f"{tf} p90 {p[k]:7.3f} -> {2 / 3 * p[k]:7.3f}" for tf, (_, p) in tfs.items())
            print(f"  {sym:<4}{cells}   median {np.median(scales):7.3f}  mean {np.mean(scales):7.3f}")
        btc_scale = float(np.median([2 / 3 * p[k] for _, p in per["BTC"].values()]))
        print(f"  derived {rounded(btc_scale, SCALE_STEP[k]):g} ({btc_scale:.3f})  current {views._SCALES[k]:g}")
    print("bars per timeframe (BTC development part): "
          + ", ".join(f"{tf} {n:,}" for tf, (n, _) in per["BTC"].items()))


if __name__ == "__main__":
    main()
