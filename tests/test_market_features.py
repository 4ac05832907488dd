"""The features beyond a symbol's own candles (funding, basis, cross-asset, calendar, volatility
regime): causal by close time, degrading to NaN when an input is missing, and handed to plugins
through ``MarketData.inputs``.

Causality is checked as the look-ahead checks do it: the data cut after bar ``k`` (``head``, which
cuts every input at bar ``k``'s close) must give the same values up to ``k``; and, independently
of ``head``, replacing every input after a bar's close must not change that bar's value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcoord.candles import Candles, candles_from_frame, resample
from mlcoord.components import build_market_data
from mlcoord.feature_matrix import ALL_FEATURES, FEATURES, available_features, feature_matrix, feature_table
from mlcoord.funding import FundingSeries
from mlcoord.market_features import CALENDAR, MARKET_FEATURES, VOL_REGIME
from mlcoord.market_inputs import MarketInputs, aligned

HOUR = 3_600_000_000_000
START, BARS = 20_000, 1_200      # 2022-12 of the bundled 1h data


def renamed(c: Candles, symbol: str, scale=1.0) -> Candles:
    """``c``'s bars as ``symbol``, prices multiplied by ``scale`` (a number or one per bar)."""
    f = c.frame.copy()
    for col in ("open", "high", "low", "close"):
        f[col] = f[col] * scale
    return candles_from_frame(f, symbol=symbol, timeframe=c.timeframe)


@pytest.fixture(scope="module")
def bundled():
    from mlcoord.api import bundled_path, load_candles

    return {s: load_candles(bundled_path(s), symbol=s) for s in ("BTC/USDT", "ETH/USDT")}


@pytest.fixture(scope="module")
def eth(bundled):
    return bundled["ETH/USDT"].slice(START, START + BARS)


@pytest.fixture(scope="module")
def inputs(bundled, eth):
    """Every input for ETH: funding every 8 h stamped 3 ms late, a perpetual at a varying premium,
    spot, mark, BTC (starting earlier, ending later) and a 4h peer (coarser than ETH's bars)."""
    rng = np.random.default_rng(7)
    first = (int(eth.time[0]) // (8 * HOUR) - 6) * 8 * HOUR
    times = np.arange(first, int(eth.time[-1]) + 48 * HOUR, 8 * HOUR) + 3_000_000
    funding = FundingSeries(times, rng.normal(1e-4, 2e-4, len(times)))
    premium = 1.0 + 0.001 * np.sin(np.arange(len(eth)) / 7.0)
    btc = bundled["BTC/USDT"].slice(START - 300, START + BARS + 50)
    sol = renamed(resample(bundled["BTC/USDT"].slice(START - 400, START + BARS + 50), "4h"), "SOL/USDT", 0.001)
    return MarketInputs(funding, spot=eth, perpetual=renamed(eth, "ETH/USDT", premium),
                        mark=renamed(eth, "ETH/USDT", premium * 1.0001), peers={"BTC/USDT": btc, "SOL/USDT": sol})


@pytest.fixture(scope="module")
def data(eth, inputs):
    return build_market_data(eth, inputs=inputs)


@pytest.fixture(scope="module")
def table(data):
    return feature_table(data)


def col(name: str) -> int:
    return ALL_FEATURES.index(name)


# -- causality ------------------------------------------------------------------------------------------
CUTS = (1, 2, 25, 170, 171, 500, 997, BARS - 1)


@pytest.mark.parametrize("name", MARKET_FEATURES)
def test_each_feature_is_the_same_with_every_input_cut_after_the_bar(data, table, name):
    assert np.isfinite(table[600:, col(name)]).mean() > 0.9, f"{name}: too few values to test anything"
    for k in CUTS:
        cut = data.head(k)
        close = int(cut.candles.time[-1]) + cut.candles.timeframe_ns
        assert int(cut.inputs.funding.time[-1]) <= close < int(data.inputs.funding.time[-1])
        assert all(len(p) < len(data.inputs.peers[s]) for s, p in cut.inputs.peers.items())
        np.testing.assert_array_equal(feature_table(cut, [name])[:, 0], table[:k, col(name)], err_msg=f"cut {k}")


def _garbage_after(inputs: MarketInputs, close: int) -> MarketInputs:
    """``inputs`` with every bar closing, and every funding event stamped, after ``close``
    replaced by nonsense (prices x 7, rates 0.05)."""
    def spoil(c):
        after = (c.time + c.timeframe_ns) > close
        return renamed(c, c.symbol, np.where(after, 7.0, 1.0))

    f = inputs.funding
    return MarketInputs(FundingSeries(f.time, np.where(f.time > close, 0.05, f.rate)), spoil(inputs.spot),
                        spoil(inputs.perpetual), spoil(inputs.mark), {s: spoil(p) for s, p in inputs.peers.items()})


@pytest.mark.parametrize("k", (171, 650, BARS - 2))
def test_no_feature_changes_when_inputs_after_the_bars_close_change(eth, inputs, table, k):
    close = int(eth.time[k]) + eth.timeframe_ns
    spoiled = feature_table(build_market_data(eth, inputs=_garbage_after(inputs, close)))
    np.testing.assert_array_equal(spoiled[:k + 1], table[:k + 1])
    assert not np.array_equal(spoiled[k + 1:], table[k + 1:], equal_nan=True)   # the garbage does show later


def test_a_funding_event_counts_from_the_bar_that_closes_at_its_time(eth, inputs, table):
    """A 1h bar stamped 07:00 closes at 08:00: the 08:00:00.003 event is known there, not a bar before."""
    f = inputs.funding
    k = int(np.flatnonzero((eth.time + HOUR) % (8 * HOUR) == 0)[3])       # a bar closing on an event
    event = int(np.searchsorted(f.time, int(eth.time[k]) + HOUR))
    assert f.time[event] == eth.time[k] + HOUR
    assert table[k, col("funding_rate")] == np.float32(f.rate[event])
    assert table[k - 1, col("funding_rate")] == np.float32(f.rate[event - 1])
    day = f.rate[event - 2:event + 1].sum()           # the events at close - 16 h, - 8 h and at the close
    assert table[k, col("funding_24h")] == pytest.approx(day, rel=1e-6)


def test_a_peer_bar_is_seen_once_it_has_closed(eth, inputs, table):
    """BTC's bar stamped like ETH's closes with it; a 4h bar only at the 1h bar that ends its 4 h."""
    btc = inputs.peers["BTC/USDT"]
    k = 400
    j = int(np.searchsorted(btc.time, eth.time[k]))
    assert table[k, col("btc_ret_1")] == np.float32(np.log(btc.close[j] / btc.close[j - 1]))
    sol = inputs.peers["SOL/USDT"]
    index = aligned(sol, eth.time + HOUR, 4 * HOUR)
    ends = np.flatnonzero((eth.time + HOUR) % (4 * HOUR) == 0)
    assert (sol.time[index[ends]] + 4 * HOUR == eth.time[ends] + HOUR).all()
    mid = ends[5] + 2                         # two hours into the next 4h bar: still the last closed one
    assert index[mid] == index[ends[5]] and sol.time[index[mid]] + 4 * HOUR <= eth.time[mid] + HOUR


def test_the_basis_is_perpetual_over_spot_at_the_same_close(inputs, table):
    expected = inputs.perpetual.close / inputs.spot.close - 1.0
    np.testing.assert_allclose(table[:, col("basis")], expected, rtol=1e-5, atol=1e-9)


def test_calendar_reads_the_close_time(eth, table):
    k = int(np.flatnonzero(pd.DatetimeIndex(eth.time + HOUR, tz="UTC").hour == 6)[0])    # bar 05:00 -> 06:00
    assert table[k, col("hour_sin")] == pytest.approx(1.0) and table[k, col("hour_cos")] == pytest.approx(0.0, abs=1e-6)
    monday = pd.Timestamp(int(eth.time[k]) + HOUR, tz="UTC").weekday()
    angle = 2 * np.pi * (monday + 0.25) / 7
    assert table[k, col("dow_sin")] == pytest.approx(np.sin(angle), abs=1e-6)


# -- degrading ------------------------------------------------------------------------------------------
def test_without_inputs_only_own_candle_features_are_available_and_the_rest_is_nan(eth):
    bare = build_market_data(eth)
    assert available_features(bare) == FEATURES + CALENDAR + VOL_REGIME
    t = feature_table(bare)
    for name in set(MARKET_FEATURES) - set(CALENDAR + VOL_REGIME):
        assert np.isnan(t[:, col(name)]).all(), name
    assert np.isfinite(t[600:, col("vol_rank_500")]).all()
    np.testing.assert_array_equal(feature_table(bare.head(10)), t[:10])
    assert feature_table(bare.head(0)).shape == (0, len(ALL_FEATURES))


def test_btc_is_its_own_anchor_and_a_symbol_without_btc_has_no_btc_features(bundled, eth):
    btc = bundled["BTC/USDT"].slice(START, START + BARS)
    own = feature_table(build_market_data(btc), ["btc_ret_1", "btc_vol_24", "ret_1", "realised_vol_24"])
    np.testing.assert_array_equal(own[1:, 0], own[1:, 2])
    np.testing.assert_array_equal(own[30:, 1], own[30:, 3])
    alone = build_market_data(eth, inputs=MarketInputs(peers={"SOL/USDT": renamed(eth, "SOL/USDT", 0.01)}))
    assert "btc_ret_1" not in available_features(alone) and "market_vol_24" in available_features(alone)
    assert np.isnan(feature_table(alone, ["btc_ret_24"])).all()


def test_stale_or_partial_inputs_are_nan_not_carried(eth, inputs):
    f = inputs.funding
    short = FundingSeries(f.time[10:14], f.rate[10:14])                 # 4 events: 32 hours of history
    t = feature_table(build_market_data(eth, inputs=MarketInputs(short)), ["funding_rate", "funding_24h"])
    close = eth.time + HOUR
    known = (close >= short.time[0]) & (close < short.time[-1] + 24 * HOUR)
    assert (np.isfinite(t[:, 0]) == known).all()
    assert (np.isfinite(t[:, 1]) == (known & (close >= short.time[0] + 24 * HOUR))).all()
    gap = renamed(eth.slice(0, 300), "BTC/USDT")                        # BTC ends at bar 300
    t = feature_table(build_market_data(eth, inputs=MarketInputs(peers={"BTC/USDT": gap})), ["btc_ret_1"])
    assert np.isfinite(t[1:300, 0]).all() and np.isnan(t[300:, 0]).all()
    spot_only = build_market_data(eth, inputs=MarketInputs(spot=eth))
    assert "basis" not in available_features(spot_only) and np.isnan(feature_table(spot_only, ["basis"])).all()


def test_mark_prices_stand_in_for_a_missing_perpetual(eth, inputs):
    d = build_market_data(eth, inputs=MarketInputs(spot=inputs.spot, mark=inputs.mark))
    np.testing.assert_allclose(feature_table(d, ["basis"])[:, 0], inputs.mark.close / eth.close - 1, rtol=1e-5)


# -- the table --------------------------------------------------------------------------------------------
def test_own_candle_columns_filled_with_zero_are_the_shipped_models_matrix(data, eth):
    np.testing.assert_array_equal(feature_table(data, FEATURES, fill=0.0),
                                  feature_matrix(eth.open, eth.high, eth.low, eth.close, eth.volume))


def test_columns_come_in_the_order_asked_and_unknown_names_are_refused(data, table):
    t = feature_table(data, ["dow_cos", "ret_1", "basis"])
    np.testing.assert_array_equal(t, table[:, [col("dow_cos"), col("ret_1"), col("basis")]])
    assert not t.flags.writeable
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['btc_return'\]"):
        feature_table(data, ["btc_return"])


def test_what_plugins_are_handed_refuses_writes(data):
    with pytest.raises(ValueError):
        data.inputs.funding.rate[0] = 1.0
    with pytest.raises(TypeError):
        data.inputs.peers["XRP/USDT"] = data.candles       # type: ignore[index]
    assert list(data.inputs.peers) == ["BTC/USDT", "SOL/USDT"]
