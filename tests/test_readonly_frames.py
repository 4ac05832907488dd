"""Issue 15: the candle frame plugins are handed refuses writes.

A signal source that added a column to ``data.candles.frame`` passed backtests and stopped paper
trading at the next bar (a ``CandleError`` naming no plugin); one that scaled prices in place put
prices 16x the real ones into the session's history after 5 cycles.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import structlog

import fake_plugins
from mlcoord.candles import Candles
from mlcoord.components import SignalSeries
from mlcoord.config import Settings, structure
from mlcoord.frozen_frame import FrozenFrameError
from mlcoord.live.runner import PaperTrader
from mlcoord.pipeline import build_pipeline
from mlcoord.registry import discover_entry_points, load_plugins

from conftest import BUILTINS

WRITES = {
    "new column": lambda f: f.__setitem__("sma", f["close"].rolling(3).mean()),
    "scale a column": lambda f: f.__setitem__("close", f["close"] * 16),
    "in-place operator": lambda f: f.__imul__(2.0),
    "loc": lambda f: f.loc.__setitem__((f.index[0], "close"), 1.0),
    "loc whole column": lambda f: f.loc.__setitem__((slice(None), "close"), 1.0),
    "iloc": lambda f: f.iloc.__setitem__((0, 3), 1.0),
    "at": lambda f: f.at.__setitem__((f.index[0], "close"), 1.0),
    "iat": lambda f: f.iat.__setitem__((0, 3), 1.0),
    "del": lambda f: f.__delitem__("volume"),
    "pop": lambda f: f.pop("volume"),
    "insert": lambda f: f.insert(0, "x", 1.0),
    "update": lambda f: f.update(f * 2),
    "attribute column": lambda f: setattr(f, "close", 1.0),
    "columns": lambda f: setattr(f, "columns", list("abcde")),
    "index": lambda f: setattr(f, "index", f.index + pd.Timedelta("1h")),
    "inplace method": lambda f: f.sort_index(ascending=False, inplace=True),
    "drop inplace": lambda f: f.drop(columns=["volume"], inplace=True),
    "attrs": lambda f: f.attrs.__setitem__("owner", "me"),
    "values of a column": lambda f: f["close"].values.__setitem__(0, 1.0),
    "numpy out=": lambda f: np.multiply(f["close"].to_numpy(), 2.0, out=f["close"].to_numpy()),
}


@pytest.mark.parametrize("write", list(WRITES), ids=list(WRITES))
def test_every_write_to_the_frame_raises_and_changes_nothing(short_candles, write):
    frame = short_candles.frame
    before = frame.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # pandas deprecates inplace=True
        with pytest.raises((FrozenFrameError, ValueError, TypeError)):
            WRITES[write](frame)
    pd.testing.assert_frame_equal(short_candles.frame, before, check_frame_type=False)
    assert short_candles.frame.attrs == {} and np.array_equal(short_candles.close, before["close"].to_numpy())


def test_what_a_plugin_derives_from_the_frame_is_its_own(short_candles):
    frame = short_candles.frame
    for derived in (frame.copy(), frame[["close"]], frame.rolling(3).mean(), frame.assign(x=1.0), frame + 0.0,
                    frame.iloc[:10], frame.reset_index(), pickle.loads(pickle.dumps(frame)).copy()):
        assert type(derived) is pd.DataFrame
        derived["y"] = 1.0                               # writable, and reaches nothing else
    assert list(short_candles.frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.close.iloc[-1] == short_candles.close[-1] and frame.loc[frame.index[-1], "close"] > 0


def test_the_frame_is_built_over_the_read_only_arrays(short_candles):
    assert np.shares_memory(short_candles.frame["close"].to_numpy(), short_candles.close)
    copy = pickle.loads(pickle.dumps(short_candles))          # an executor's worker process gets read-only bars too
    assert not copy.close.flags.writeable and not copy.time.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        copy.close[0] = 1.0


class ColumnAdder:
    def __init__(self, options=None):
        pass

    def prepare(self, data):
        frame = data.candles.frame
        frame["sma"] = frame["close"].rolling(3).mean()
        n = len(data)
        return SignalSeries(np.zeros(n, np.int8), np.zeros(n), lambda i: [])


class PriceScaler(ColumnAdder):
    def prepare(self, data):
        frame = data.candles.frame
        frame["close"] *= 1.75
        return super().prepare(data)


@pytest.mark.parametrize("source", [ColumnAdder, PriceScaler], ids=["adds a column", "scales prices"])
def test_paper_trading_goes_on_without_the_source_that_writes_into_its_frame(btc_candles, source):
    eps = {n: ep for n, ep in discover_entry_points().items() if n in BUILTINS}
    plugins = load_plugins({}, entry_points=eps, extra_plugins={
        "fakes": fake_plugins.Components(signal_sources={"scribbler": source})})
    settings = structure({"engine": {"enable": ["fakes"]}}, Settings)
    candles = btc_candles.slice(0, 1200)
    paper = PaperTrader(build_pipeline(settings, plugins, live=True), settings, [candles.slice(0, 1000)],
                        prepare_bars=500)
    with structlog.testing.capture_logs() as logs:
        for k in range(1000, 1006):
            assert paper.on_candles([candles.slice(k - 3, k + 1)]) == 1
    history = paper.history["BTC/USDT"]
    same_bars = np.searchsorted(candles.time, history.time)
    np.testing.assert_array_equal(history.frame["close"].to_numpy(), candles.close[same_bars])  # the real prices
    Candles(history.symbol, history.timeframe, history.frame)          # what a session rebuilds from its frame
    failures = [e for e in logs if e["event"] == "component_failed"]
    assert failures and {e["component"] for e in failures} == {"scribbler"}
    assert failures[0]["error"].startswith("FrozenFrameError: this DataFrame is read-only")
