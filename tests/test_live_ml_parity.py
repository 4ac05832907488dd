"""The live loop on the loopback exchange trades as the backtest does with every ML component
voting (the default pipeline).

The bot runs against the loopback Binance USD-M and Bybit linear servers (a real ccxt client, the exchange venue,
the broker and the store), inside the shipped models' validity (trained until 2022-04-01, voting
until 2025-03-31); its session's own ledger, folded from the exchange's fills, is compared trade
by trade with a backtest of the same candles that applies the exchange's instrument rules. Every
ML component must have voted in both runs, or the comparison would say nothing about them.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

import pytest
from structlog.testing import capture_logs

from exchange_sim import venue_client, venue_exchange_server
from live_helpers import BarClock, backtest_of_session, live_config
from mlcoord.live.retry import ManualClock
from mlcoord.live.runner import load_live_settings
from mlcoord.live.session import run_live
from mlcoord.model.instruments import Instruments, instrument_from_ccxt
from mlcoord.registry import load_plugins

ML = ("lstm", "attention", "mtf", "rl_selector")
TF = 3600 * 10**9
WARM_UP = 1000          # bars before the first stepped one (the ML features' warm-up)


def _votes(decisions):
    return {v.component for d in decisions for v in d.votes if v.component in ML}


@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
def test_live_trades_equal_the_backtests_with_every_ml_component_voting(tmp_path, venue):
    path = live_config(tmp_path, history_bars=WARM_UP)
    text = path.read_text().replace("ml_components = []\n", "").replace('signal_sources = ["technical"]\n', "")
    path.write_text(text)
    settings, options = load_live_settings(path)
    plugins = load_plugins()
    with venue_exchange_server(venue, start="2023-03-01") as server, capture_logs():
        if venue != "binance":    # unified accounts show the emulator's spot book too: the backtest's 10,000 only
            server.state.spot.balances["USDT"] = [Decimal(0), Decimal(0)]
        client = venue_client(server, "futures")
        market = client.load_markets()["BTC/USDT:USDT"]
        # both runs at the account's fee rates (Bybit's /v5/account/fee-rate: taker 0.055 %; OKX's
        # trade-fee; the Binance emulator has no commission route: its rates are ccxt's market defaults)
        fee = client.fetch_trading_fee("BTC/USDT:USDT") if venue != "binance" else market
        settings = attrs.evolve(settings, backtest=attrs.evolve(settings.backtest, fee_taker=float(fee["taker"]),
                                                                  fee_maker=float(fee["maker"])))
        trader = run_live(settings, options, venue_client(server, "futures"), plugins, clock=BarClock(server),
                          health_clock=ManualClock(), cycles=200)
    assert not server.errors
    rules = Instruments({"BTC/USDT": instrument_from_ccxt("BTC/USDT", market)})
    raw, start = backtest_of_session(trader, settings, options, plugins, instruments=rules)
    live_decisions = trader.engine.journal.decisions
    assert _votes(live_decisions) == set(ML) and _votes(raw.decisions) == set(ML)
    # the same votes, weights and confidences at every bar both decided on
    simulated = {d.time: d for d in raw.decisions}
    both = [d for d in live_decisions if d.time in simulated]
    assert len(both) >= 0.9 * len(live_decisions) and len(both) >= 3
    for d in both:
        b = simulated[d.time]
        assert (d.votes, d.raw_confidence, d.confidence) == (b.votes, b.raw_confidence, b.confidence)
    done = [t for t in raw.trades if t.exit_reason != "end_of_data"]
    live = trader.engine.trades
    assert len(live) >= 2 and [(t.side, t.hedge) for t in live] == [(t.side, t.hedge) for t in done]
    for a, b in zip(live, done):
        assert a.quantity == pytest.approx(b.quantity, abs=0.001 * b.entries_filled + 1e-9)
        assert a.entry_price == pytest.approx(b.entry_price, rel=0.002)
        assert a.exit_price == pytest.approx(b.exit_price, rel=0.005)
        assert a.exit_reason == b.exit_reason and a.opened_at == b.opened_at
        assert 0 <= a.closed_at - b.closed_at <= TF
        assert a.entries_planned == b.entries_planned and a.entries_filled == b.entries_filled
        # fees: the exchange's (its trade list) against the cost model's rates, on quantities within
        # a lot and prices within the tolerances above; funding as the exchange charged it
        assert a.fees == pytest.approx(b.fees, rel=0.02)
        assert a.funding == pytest.approx(b.funding, rel=0.02, abs=1e-6)
    print("trades", len(live), "decisions", len(live_decisions),
          "pnl live", round(sum(t.pnl for t in live), 4), "backtest", round(sum(t.pnl for t in done), 4))
