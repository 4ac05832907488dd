"""The API's force-enter at the loop (:meth:`mlcoord.loop.TradingLoop.force_enter`)."""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord.backtest.engine import Backtest
from mlcoord.config import Settings
from mlcoord.registry import load_plugins

TECHNICAL = {n: "test: technical pipeline" for n in ("bayes", "lstm", "attention", "mtf", "rl_selector")}


def test_force_enter_refuses_a_bar_already_decided(short_candles):
    """The API's force-enter enters at the last stepped bar; a bar on which the symbol was already
    decided is refused (a live store keeps one decision per symbol and bar: a second would be
    lost, and its plan with it), one without a decision is entered."""
    from mlcoord.backtest.run import market_datasets
    from mlcoord.journal import Journal
    from mlcoord.model import Side
    from mlcoord.pipeline import build_pipeline

    settings = Settings()
    pipeline = build_pipeline(settings, load_plugins(TECHNICAL))
    prepared = [pipeline.prepare(d) for d in market_datasets(settings, [short_candles], None)]
    decided = [d.time for d in Backtest(pipeline, settings, Journal()).run(prepared).decisions]
    assert decided
    for cut, expect_refused in ((decided[-1], True), (next(t for t in short_candles.time[::-1].tolist()
                                                           if t not in set(decided)), False)):
        k = int(np.searchsorted(short_candles.time, cut))
        pipeline = build_pipeline(settings, load_plugins(TECHNICAL))
        prepared = [pipeline.prepare(d) for d in market_datasets(settings, [short_candles.slice(0, k + 1)], None)]
        session = Backtest(pipeline, settings, Journal())
        session.run(prepared)
        loop = session.loop
        if expect_refused:
            with pytest.raises(ValueError, match="already decided on this bar"):
                loop.force_enter("BTC/USDT", Side.LONG)
        else:       # the run closed everything at its last bar: nothing stands in the way
            assert "BTC/USDT" not in loop.ledger.positions and not loop.venue.has_entries("BTC/USDT")
            assert loop.force_enter("BTC/USDT", Side.LONG).time == cut
