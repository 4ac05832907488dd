"""The ledger: positions and trades folded from fills only, with the account's money conserved.

Property tests over random fill sequences (bounded examples): whatever the venue reports, the
wallet equals the initial equity plus realised PnL less fees and funding; a closed trade's PnL is
exactly what its fills and funding moved; positions never go negative; every fill is kept once.
"""

from __future__ import annotations


import pytest
from hypothesis import given, settings, strategies as st

from mlcoord.ledger import Ledger
from mlcoord.model import Fill, Side

T0 = 1_700_000_000_000_000_000
H = 3_600_000_000_000


def fills_strategy():
    """Sequences of (symbol, side, hedge, entry or exit, quantity, price, fee rate, funding)."""
    step = st.tuples(st.sampled_from(["BTC/USDT", "ETH/USDT"]), st.sampled_from([Side.LONG, Side.SHORT]),
                     st.booleans(), st.booleans(), st.floats(0.001, 5.0), st.floats(10.0, 1000.0),
                     st.floats(0.0, 0.002), st.floats(-0.5, 0.5))
    return st.lists(step, min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps=fills_strategy())
def test_money_is_conserved_and_trades_account_for_their_fills(steps):
    ledger = Ledger(10_000.0, leverage=2.0, maintenance_margin=0.005)
    closed = []
    ledger.on_closed.append(lambda trade, position: closed.append(trade))
    realised = fees = funding = 0.0
    own: dict[tuple[str, bool], list[float]] = {}       # per open position: realised, fees, funding
    t = T0
    for k, (sym, side, hedge, entry, qty, price, fee_rate, pay) in enumerate(steps):
        t += H
        book = ledger.hedges if hedge else ledger.positions
        held = book.get(sym)
        mine = own.setdefault((sym, hedge), [0.0, 0.0, 0.0])
        if held is not None and pay:
            ledger.pay_funding(held, pay)
            funding += pay
            mine[2] += pay
        if entry or held is None:
            use_side = held.side if held is not None else side
            fill = Fill(f"o{k}", sym, use_side, t, price, qty, price * qty * fee_rate, False, "entry", hedge)
        else:
            qty = min(qty, held.quantity)
            realised += (price - held.entry_price) * qty * held.side
            mine[0] += (price - held.entry_price) * qty * held.side
            fill = Fill(f"o{k}", sym, held.side, t, price, qty, price * qty * fee_rate, True, "exit", hedge)
        fees += fill.fee
        mine[1] += fill.fee
        trade = ledger.apply(fill, index=k)
        assert all(p.quantity >= 0 for b in (ledger.positions, ledger.hedges) for p in b.values())
        if trade is not None:      # a trade's PnL is its own realised PnL less its own fees and funding
            assert sym not in book and trade.closed_at == t
            assert trade.pnl == pytest.approx(mine[0] - mine[1] - mine[2], rel=1e-9, abs=1e-9)
            assert (trade.fees, trade.funding) == (pytest.approx(mine[1]), pytest.approx(mine[2]))
            del own[(sym, hedge)]
    assert ledger.cash == pytest.approx(10_000.0 + realised - fees - funding, rel=1e-9, abs=1e-6)
    assert len(ledger.fills) == len(steps)
    assert closed == ledger.trades
    for trade in ledger.trades:
        assert trade.quantity > 0 and trade.entry_price > 0
    still_open = sum(p.fees + p.funding - p.realised for b in (ledger.positions, ledger.hedges) for p in b.values())
    assert sum(t.pnl for t in ledger.trades) - still_open == pytest.approx(ledger.cash - 10_000.0, abs=1e-6)


def test_an_exit_with_nothing_open_is_a_clear_error():
    ledger = Ledger(1_000.0)
    with pytest.raises(ValueError, match="exit fill 'x' for BTC/USDT .*nothing open"):
        ledger.apply(Fill("x", "BTC/USDT", Side.LONG, T0, 100.0, 1.0, 0.0, True, "stop_loss"))


def test_a_position_carries_its_plan_and_the_trade_its_reasons():
    ledger = Ledger(1_000.0, leverage=1.0)
    ledger.expect_plan("BTC/USDT", "BTC/USDT:1", None, entries_planned=3, entry_reason="planted")
    ledger.apply(Fill("a", "BTC/USDT", Side.LONG, T0, 100.0, 1.0, 0.1, False, "entry:1/3"), index=7)
    position = ledger.positions["BTC/USDT"]
    assert (position.plan_id, position.entries_planned, position.opened_index) == ("BTC/USDT:1", 3, 7)
    assert position.liquidation_price == 0.0            # 1x long: never liquidated
    trade = ledger.apply(Fill("b", "BTC/USDT", Side.LONG, T0 + H, 110.0, 1.0, 0.1, True, "take_profit"))
    assert trade is not None and trade.exit_reason == "take_profit" and trade.entries_filled == 1
    assert trade.pnl == pytest.approx(10.0 - 0.2)
