"""Where market inputs come from (``[data.inputs]`` files, ``[data] context_symbols``), how a run
hands them to components, and the look-ahead check cutting them with the data (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import leaky_plugins
from mlcoord.backtest.run import run_backtest
from mlcoord.config import Settings, load_settings, structure
from mlcoord.errors import ConfigError
from mlcoord.leakcheck import check_lookahead
from mlcoord.market_sources import FundingFileError, load_funding, load_inputs, market_datasets
from mlcoord.registry import discover_entry_points, load_plugins

HOUR_MS = 3_600_000
START, BARS = 20_000, 1_500


@pytest.fixture(scope="module")
def eth():
    from mlcoord.api import bundled_path, load_candles

    return load_candles(bundled_path("ETH/USDT"), symbol="ETH/USDT").slice(START, START + BARS, own=True)


@pytest.fixture(scope="module")
def plugins():
    eps = {name: ep for name, ep in discover_entry_points().items() if name in ("technical", "exits", "risk")}
    return load_plugins({}, entry_points=eps, extra_plugins={"leaky": leaky_plugins})


def lean(source: str, **data) -> Settings:
    """One signal source, no ML, no planner or guards; ``data``: the ``[data]`` table."""
    pipeline = {"signal_sources": [source], "ml_components": [], "calibrator": "", "entry_planner": "",
                "entry_guards": [], "portfolio_watchers": []}
    return structure({"pipeline": pipeline, "data": data}, Settings)


def event_times(eth, n: int) -> np.ndarray:
    first = int(eth.time[0] // 1_000_000) // (8 * HOUR_MS) * 8 * HOUR_MS
    return first + 8 * HOUR_MS * np.arange(n) + 17           # stamped 17 ms late, as Binance does


# -- funding files ----------------------------------------------------------------------------------------
def test_funding_files_in_three_layouts_read_the_same(tmp_path, eth):
    times, rates = event_times(eth, 30), np.linspace(-2e-4, 3e-4, 30)
    when = pd.to_datetime(times, unit="ms", utc=True)
    freqtrade = pd.DataFrame({"date": when, "open": rates, "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0.0})
    freqtrade.to_feather(tmp_path / "ETH_USDT_USDT-1h-funding_rate.feather")
    pd.DataFrame({"time": when, "rate": rates}).to_parquet(tmp_path / "store.parquet")
    pd.DataFrame({"fundingTime": times, "fundingRate": rates}).to_csv(tmp_path / "binance.csv", index=False)
    read = [load_funding(tmp_path / n) for n in ("ETH_USDT_USDT-1h-funding_rate.feather", "store.parquet",
                                                  "binance.csv")]
    for series in read:
        np.testing.assert_array_equal(series.rate, rates)
        np.testing.assert_array_equal(series.time, (times - 17) * 1_000_000)   # rounded to the second


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"time": [0, 1], "rate": [1e-4, 2.0]}), r"row 1: rate 2.0 is not a funding rate"),
    (pd.DataFrame({"time": [0, 1], "rate": ["1e-4", "abc"]}), r"row 1: rate 'abc' is not a funding rate"),
    (pd.DataFrame({"time": [28_800_000, 0], "rate": [1e-4, 1e-4]}), r"row 1: time .* is not after the row before"),
    (pd.DataFrame({"when": [0], "rate": [1e-4]}), r"needs a time column .* found \['when', 'rate'\]"),
])
def test_a_bad_funding_file_is_an_error_naming_file_and_row(tmp_path, frame, message):
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(FundingFileError, match=message) as info:
        load_funding(path)
    assert str(path) in str(info.value)


# -- [data.inputs] and context symbols -----------------------------------------------------------------------
def test_configured_files_and_context_symbols_become_each_symbols_inputs(tmp_path, eth):
    pd.DataFrame({"fundingTime": event_times(eth, 200), "fundingRate": 1e-4}).to_csv(tmp_path / "f.csv", index=False)
    perp = eth.frame.copy()
    perp[["open", "high", "low", "close"]] *= 1.001
    perp.to_parquet(tmp_path / "perp.parquet")
    eth.frame.to_parquet(tmp_path / "spot.parquet")
    (tmp_path / "c.toml").write_text(
        '[data]\ncontext_symbols = ["BTC/USDT"]\n[data.inputs."ETH/USDT"]\nfunding = "f.csv"\n'
        'perpetual = "perp.parquet"\nspot = "spot.parquet"\n', encoding="utf-8")
    settings = load_settings(tmp_path / "c.toml")           # paths relative to the config file
    inputs = load_inputs(settings, [eth])["ETH/USDT"]
    assert list(inputs.peers) == ["BTC/USDT"] and len(inputs.peers["BTC/USDT"]) > 40_000   # the bundled file
    assert len(inputs.funding) == 200 and inputs.mark is None
    [data] = market_datasets(settings, [eth])
    assert data.inputs.peers["BTC/USDT"].time[-1] == eth.time[-1]       # cut where the traded data ends
    from mlcoord.feature_matrix import feature_table
    table = feature_table(data, ["basis", "funding_rate", "btc_ret_1"])
    assert np.allclose(table[:, 0], 0.001, atol=1e-6) and (table[24:, 1] == np.float32(1e-4)).all()
    assert np.isfinite(table[1:, 2]).all()


def test_inputs_for_a_symbol_the_run_does_not_have_are_an_error(eth):
    settings = structure({"data": {"inputs": {"ETH/USTD": {"funding": "f.csv"}}}}, Settings)
    with pytest.raises(ConfigError, match=r'\[data.inputs."ETH/USTD"\]: .* neither traded nor .*\(traded: ETH/USDT'):
        load_inputs(settings, [eth])
    # a sweep backtests the configured symbols one at a time: another data file's symbol is no typo
    files = structure({"data": {"files": ["a/ETH_USDT-1h.feather", "a/XRP_USDT-1h.feather"],
                                "inputs": {"XRP/USDT": {"perpetual": "x.feather"}}}}, Settings)
    assert load_inputs(files, [eth])["ETH/USDT"].perpetual is None


def test_a_context_symbol_with_no_candles_anywhere_is_an_error(eth):
    with pytest.raises(ConfigError, match=r"context_symbols: no candles for 'XRP/USDT'"):
        load_inputs(structure({"data": {"context_symbols": ["XRP/USDT"]}}, Settings), [eth])


def test_a_run_hands_the_inputs_to_components_and_degrades_without_them(eth, plugins):
    with_btc = run_backtest(lean("btc_lead", context_symbols=["BTC/USDT"]), plugins=plugins, candles=[eth])
    assert len(with_btc.raw.trades) > 3 and not with_btc.raw.errors
    alone = run_backtest(lean("btc_lead"), plugins=plugins, candles=[eth])          # no BTC: all NaN, HOLD
    assert not alone.raw.trades and not alone.raw.errors


# -- the look-ahead check cuts the inputs with the data --------------------------------------------------------
def test_the_lookahead_check_finds_a_source_reading_a_peers_next_bar(eth, plugins):
    settings = lean("btc_peek", context_symbols=["BTC/USDT"])
    report = check_lookahead(settings, plugins, [eth])
    found = {c.component: c for c in report.components}
    assert report.exit_code == 1 and found["btc_peek"].status == "leak", report.render()
    first = found["btc_peek"].first
    assert first is not None and first.bar == first.cut - 1        # the last bar before the cut
    clean = check_lookahead(lean("btc_lead", context_symbols=["BTC/USDT"]), plugins, [eth])
    assert clean.exit_code == 0, clean.render()
