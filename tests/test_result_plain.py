"""The result file's vectorised values equal the one-by-one ones they replace: ISO times as
``pd.Timestamp(t, tz="UTC").isoformat()``, equity as ``round(float(v), 6)``, trades and fills
as the per-row conversion wrote them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlcoord.backtest.plain import rounded
from mlcoord.times import iso, iso_times
from mlcoord.backtest.run import _iso_of, _plain, run_backtest
from mlcoord.config import Settings, unstructure


def slow_iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def slow_plain(d: dict) -> dict:
    """The per-row conversion the result file used before the batched one."""
    out = {}
    for k, v in d.items():
        if k in ("time", "opened_at", "closed_at") and isinstance(v, int):
            v = slow_iso(v)
        out[k] = getattr(v, "name", v) if not isinstance(v, (int, float, str, type(None))) else v
    return out


def test_iso_matches_pandas_on_real_bars_and_odd_times(btc_candles):
    times = btc_candles.time[-3000:]
    assert iso_times(times) == [slow_iso(t) for t in times]
    odd = [0, -3_600_000_000_000, 1_700_000_000_123_456_789, 1_700_000_000_500_000_000, -1, 4_102_444_800 * 10**9]
    assert [iso(t) for t in odd] == [slow_iso(t) for t in odd]
    assert iso_times(odd) == [slow_iso(t) for t in odd]        # a finer time: one by one
    assert iso_times([]) == []


def test_rounded_equals_python_round_also_at_ties():
    rng = np.random.default_rng(7)
    values = [
        *(10_000 + np.cumsum(rng.normal(0, 5, 20_000))),           # equity-like
        *rng.uniform(-1e6, 1e6, 5_000), *rng.uniform(-1, 1, 5_000),
        *((np.arange(-2000, 2000) + 0.5) / 1e6),                   # decimal ties k.5e-6
        *(np.arange(1, 2000) * 0.0000005 + 1234.0),
        0.0, -0.0, 1e-300, -4e-7, 5e-7, 2.5e-6, 1.0000005, 2.675, 1e12 + 0.1234565, 2.0 ** 53, -1e300,
        math.inf, -math.inf, math.nan,
    ]
    got, want = rounded(values, 6), [round(float(v), 6) for v in values]
    assert len(got) == len(want)
    for g, w, v in zip(got, want, values):
        assert (g == w and math.copysign(1, g) == math.copysign(1, w)) or (math.isnan(g) and math.isnan(w)), v
    assert all(type(g) is float for g in got)
    assert rounded([0.1234565, 7.0000015], 2) == [round(0.1234565, 2), round(7.0000015, 2)]


@pytest.mark.usefixtures("builtin_plugins_only")
def test_batched_trades_and_fills_equal_the_row_by_row_conversion(short_candles):
    result = run_backtest(Settings(), candles=[short_candles], disabled={})
    raw = result.raw
    assert raw.trades and raw.fills and raw.level_paths
    rows = [unstructure(x) for x in (*raw.trades, *raw.fills)]
    text = _iso_of([d.get(k) for d in rows for k in ("time", "opened_at", "closed_at")])
    assert [_plain(d, text) for d in rows] == [slow_plain(d) for d in rows]
    data = result.to_json()
    assert data["equity"]["value"] == [round(float(v), 6) for v in raw.equity]
    assert data["candles"][short_candles.symbol]["time"] == data["equity"]["time"] == \
        [slow_iso(t) for t in raw.times]
    assert data["candles"][short_candles.symbol]["time"] is not data["equity"]["time"]
    assert data["levels"][0]["path"] == [[slow_iso(t), stop, tp] for t, stop, tp in raw.level_paths[0]["path"]]


@pytest.mark.usefixtures("builtin_plugins_only")
def test_result_file_is_written_whole_from_bytes(short_candles, tmp_path):
    import json
    import os

    import orjson

    result = run_backtest(Settings(), candles=[short_candles], disabled={})
    path = tmp_path / "sub" / "result.json"
    result.write_json(path)
    text = path.read_text(encoding="utf-8")
    want = orjson.dumps(result.to_json(), default=str,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode("utf-8")
    drop = lambda d: {k: v for k, v in d.items() if k != "elapsed_seconds"}  # noqa: E731
    assert drop(json.loads(text)) == drop(json.loads(want)) and len(text) > 10_000
    assert os.listdir(path.parent) == ["result.json"]              # no temporary file left
    path.write_text("old", encoding="utf-8")
    result.write_json(path)                                          # replaces an existing file
    assert path.read_text(encoding="utf-8") == text


def test_month_of_a_time_is_its_iso_prefix(btc_candles):
    times = [*btc_candles.time[::97].tolist(), 1_700_000_000_123_456_789, 0, -1]
    assert [iso(t)[:7] for t in times] == [pd.Timestamp(t, tz="UTC").strftime("%Y-%m") for t in times]


def test_plain_rows_with_odd_values_take_the_general_branch():
    import enum

    class Colour(enum.Enum):
        RED = "r"

    class Named:
        name = "by-name"

    rows = [{"time": 1_700_000_000_000_000_000, "side": 1, "x": Colour.RED, "y": Named(), "z": None},
            {"opened_at": 1_700_000_003_600_000_000, "closed_at": "already text", "flag": True, "q": 1.5},
            {"time": 1_700_000_000_123_456_789, "hedge": False}]
    for d in rows:
        assert _plain(d, {}) == slow_plain(d)                      # times not batched: converted here
    text = _iso_of([1_700_000_000_000_000_000, "x", None])
    assert text == {1_700_000_000_000_000_000: slow_iso(1_700_000_000_000_000_000)}
    assert _plain(rows[0], text) == slow_plain(rows[0])
