"""Planted leaks for ``mlcoord check lookahead`` / ``check recursive`` (test-only plugin).

This module is itself a plugin (module-level hooks, written against :mod:`mlcoord.api` only),
registered with ``load_plugins(extra_plugins={"leaky": leaky_plugins})`` or loaded by ``--plugins-dir``. Each
component is written the way such a bug is written in a real strategy: plausible code whose
value at bar ``i`` reads a later bar. The clean ones (``honest``, ``short_windows``) are the
controls: the checks must pass them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlcoord.api import Action, ExitLevels, Side, SignalSeries, Vote, feature_table, hookimpl
from mlcoord.api import features as ft

MLCOORD_HOOKS_VERSION = 2


def _series(score: np.ndarray, threshold: float, scale: float, what: str) -> SignalSeries:
    """BUY/SELL where ``|score|`` reaches ``threshold``; confidence grows with it."""
    score = np.nan_to_num(np.asarray(score, dtype=np.float64))
    action = np.where(score >= threshold, 1, np.where(score <= -threshold, -1, 0)).astype(np.int8)
    confidence = np.where(action != 0, np.clip(0.5 + np.abs(score) * scale, 0.0, 0.95), 0.0)
    return SignalSeries(action, confidence, lambda i: [f"{what} {score[i]:+.4f}"])


class NextBarSource:
    """Momentum confirmed by the next bar's close: ``shift(-1)`` on one input."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        close = pd.Series(data.candles.close)
        confirmed = close.shift(-1).pct_change(4)           # the leak: the next close
        momentum = close.pct_change(4)
        return _series((momentum + confirmed).to_numpy(), 0.03, 5.0, "momentum")


class WholeSeriesZSource:
    """Close z-scored over the whole column: every bar sees the full series' mean and std."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        close = pd.Series(data.candles.close)
        z = (close - close.mean()) / close.std()            # the leak: statistics of every bar
        return _series(-z.diff(3).to_numpy() * 10, 0.25, 0.5, "z-score change")


class HonestSource:
    """The same idea without a leak: RSI(14) and Bollinger %b, both causal."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        close = np.asarray(data.candles.close, dtype=np.float64)
        rsi = ft.rsi(close, 14)
        return _series((50.0 - rsi) / 20.0, 1.0, 0.2, "RSI distance")


class UnfinishedFourHourVoter:
    def __init__(self, close: np.ndarray, bucket_close: np.ndarray):
        self.close, self.bucket_close = close, bucket_close

    def vote(self, i, signal=None):
        up = self.bucket_close[i] >= self.close[i]
        p = 0.6 if up else 0.4
        return Vote("htf_peek", Action.BUY if up else Action.SELL, max(p, 1 - p), reasons=("4h close",),
                    p_up=p, p_down=1 - p)


class UnfinishedFourHour:
    """An ML component resampling the base candles itself with pandas and reading the close of
    the current 4h bucket: in a backtest that bucket is complete, its close a later bar's."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        c = data.candles
        frame = pd.DataFrame({"close": c.close}, index=pd.to_datetime(c.time, utc=True))
        four = frame["close"].resample("4h").last()         # the last bucket is still open
        bucket_close = four.reindex(frame.index.floor("4h")).to_numpy()
        return UnfinishedFourHourVoter(np.asarray(c.close, dtype=np.float64), bucket_close)


class HonestVoter:
    """An ML component that only reads its own bar: the control for the vote comparison."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        ema = ft.ema(np.asarray(data.candles.close, dtype=np.float64), 20)
        close = np.asarray(data.candles.close, dtype=np.float64)

        class Voter:
            def vote(self, i, signal=None):
                if not ema[i] == ema[i]:
                    return None
                p = float(np.clip(0.5 + (close[i] / ema[i] - 1.0) * 5, 0.05, 0.95))
                return Vote("honest_ml", Action.BUY if p >= 0.5 else Action.SELL, max(p, 1 - p),
                            reasons=("close vs EMA20",), p_up=p, p_down=1 - p)
        return Voter()


class NextHighLevels:
    def __init__(self, high: np.ndarray, close: np.ndarray, atr: np.ndarray, clamp: bool):
        self.high, self.close, self.atr, self.clamp = high, close, atr, clamp

    def _range(self, i: int) -> float:
        a = self.atr[i]
        return float(a) if a > 0 else float(self.close[i]) * 0.01

    def initial(self, i, side, plan):
        r = self._range(i)
        s = 1 if side == Side.LONG else -1
        stop = plan.worst_price - s * 2.0 * r
        return ExitLevels(stop=stop, take_profit=plan.average_price + s * 3.0 * r, reasons=("2 ATR stop",))

    def update(self, i, position, levels):
        j = min(i + 1, len(self.high) - 1) if self.clamp else i + 1
        best = max(position.best_price, float(self.high[j]))      # the leak: the next bar's high
        if position.side == Side.LONG:
            stop = best - 2.0 * self._range(i)
            if stop > levels.stop:
                return ExitLevels(stop=stop, take_profit=levels.take_profit, reasons=("trailing",))
        return levels


class NextHighExits:
    """An exit manager trailing from a best price that already includes the next bar's high."""

    def __init__(self, options=None, clamp: bool = True):
        self.clamp = clamp

    def prepare(self, data):
        c = data.candles
        return NextHighLevels(np.asarray(c.high, dtype=np.float64), np.asarray(c.close, dtype=np.float64),
                              np.asarray(data.context.atr, dtype=np.float64), self.clamp)


class Ema200Source:
    """Trend from close vs EMA(200), exposing the EMA as a feature: needs a long warm-up."""

    def __init__(self, options=None):
        pass

    def _ema(self, data):
        return ft.ema(np.asarray(data.candles.close, dtype=np.float64), 200)

    def prepare(self, data):
        close = np.asarray(data.candles.close, dtype=np.float64)
        return _series(close / self._ema(data) - 1.0, 0.02, 3.0, "close vs EMA200")

    def features(self, data):
        return {"ema200": self._ema(data)}


class ShortWindowSource:
    """Close vs its 20-bar mean in units of the 20-bar standard deviation: finite windows only."""

    def __init__(self, options=None):
        pass

    def _z(self, data):
        close = pd.Series(np.asarray(data.candles.close, dtype=np.float64))
        mean, std = close.rolling(20).mean(), close.rolling(20).std()
        return ((close - mean) / std).to_numpy()

    def prepare(self, data):
        return _series(-self._z(data), 2.0, 0.1, "20-bar z-score")

    def features(self, data):
        return {"zscore20": self._z(data)}


class BtcLeadSource:
    """Control: follows BTC's last 1-bar return, read through ``feature_table`` (aligned by close
    time, so a symbol's bar sees only BTC bars closed by its own close)."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        return _series(feature_table(data, ["btc_ret_1"])[:, 0], 0.004, 20.0, "btc return")


class BtcPeekSource:
    """Planted leak: BTC's return over the *next* bar, read from the raw peer candles by the
    symbol's bar index + 1 (clamped): an input series indexed like the symbol's own bars."""

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        btc = data.inputs.peers["BTC/USDT"]
        j = np.clip(np.searchsorted(btc.time, data.candles.time) + 1, 1, len(btc) - 1)
        return _series(np.log(btc.close[j] / btc.close[j - 1]), 0.004, 20.0, "btc next return")


@hookimpl
def register_signal_sources(register):
    register("btc_lead", BtcLeadSource, description="control: BTC's last return (feature_table)")
    register("btc_peek", BtcPeekSource, description="planted leak: BTC's next bar by index")
    register("next_bar", NextBarSource, description="planted leak: shift(-1)")
    register("whole_z", WholeSeriesZSource, description="planted leak: whole-series normalisation")
    register("honest", HonestSource, description="control: causal RSI")
    register("ema200", Ema200Source, description="recursive: EMA(200)")
    register("short_windows", ShortWindowSource, description="control: 20-bar windows")


@hookimpl
def register_ml_components(register):
    register("htf_peek", UnfinishedFourHour, description="planted leak: unfinished 4h bucket")
    register("honest_ml", HonestVoter, description="control: causal vote")


@hookimpl
def register_exit_managers(register):
    register("next_high", NextHighExits, description="planted leak: the next bar's high (clamped index)")
    register("next_high_raw", lambda options=None: NextHighExits(options, clamp=False),
             description="planted leak: the next bar's high (raises at the data's end)")
