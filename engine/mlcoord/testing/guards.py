"""Checks of entry guards and portfolio watchers: a long position walked through a 30% drawdown and
back (``on_bar`` every bar for watchers, ``allow_entry`` every 10 bars for entry guards; a guard
playing both roles gets both)."""

from __future__ import annotations

from mlcoord.model import GuardAction, Side, Trade
from mlcoord.testing.core import build, call, expect, role_check, who
from mlcoord.testing.fixtures import FakePortfolio, expect_read_only

SIDES = (Side.LONG, Side.SHORT)
HOUR_NS = 3_600_000_000_000


def _losing_trade(data, i: int) -> Trade:
    t, price = int(data.candles.time[i]), float(data.candles.close[i])
    return Trade("conformance-1", data.symbol, Side.LONG, t - 5 * HOUR_NS, t, price * 1.02, price, 0.1,
                 -0.002 * price, 0.0001 * price, 0.0, "stop", 1, 1, 0.7, "conformance check")


def _guard_run(spec, guard, data, bars: int = 400) -> list:
    """Walk a long position through ``bars`` bars with a 30% drawdown in the middle; record answers."""
    c, symbol = data.candles, data.symbol
    start = len(data) - bars
    portfolio = FakePortfolio(time=int(c.time[start]))
    quantity, day, answers = 5_000.0 / float(c.close[start]), None, []
    for j in range(start, len(data)):
        step = j - start
        shock = 1.0 - 0.3 * min(max((step - 100) / 50, 0.0), 1.0) + 0.3 * min(max((step - 200) / 50, 0.0), 1.0)
        price = float(c.close[j])
        portfolio.time = int(c.time[j])
        portfolio.prices[symbol] = price
        portfolio.positions[symbol] = quantity * price
        portfolio.equity = (5_000.0 + quantity * price) * shock
        portfolio.peak_equity = max(portfolio.peak_equity, portfolio.equity)
        if portfolio.time // (24 * HOUR_NS) != day:
            day, portfolio.day_start_equity = portfolio.time // (24 * HOUR_NS), portfolio.equity
        if step == 120 and callable(getattr(guard, "on_trade_closed", None)):
            call(spec, "on_trade_closed(a losing stop)", guard.on_trade_closed, _losing_trade(data, j), None)
        view = portfolio.view()
        if step == 0:
            expect_read_only(spec, view, "the portfolio handed to the guard")
        on_bar = getattr(guard, "on_bar", None) if "portfolio_watchers" in spec.roles else None
        actions = call(spec, f"on_bar() at step {step}", on_bar, view) if on_bar is not None else []
        expect(isinstance(actions, (list, tuple)) and all(isinstance(a, GuardAction) for a in actions),
               f"{who(spec)}: on_bar() returned {actions!r:.100}, expected a list of GuardAction")
        for action in actions:
            expect(isinstance(action.reason, str) and action.reason.strip(), f"{who(spec)}: {action} without a reason")
            if action.kind == "open_hedge":
                portfolio.hedge = action.symbol or "*"
            elif action.kind == "close_hedge":
                portfolio.hedge = None
            elif action.kind == "close_all":
                quantity, portfolio.hedge = 0.0, None
        answers.append(tuple(actions))
        if step % 10 == 0 and "entry_guards" in spec.roles:
            for side in SIDES:
                why = call(spec, f"allow_entry({side.name}) at step {step}", guard.allow_entry, symbol, side, view)
                expect(why is None or (isinstance(why, str) and why.strip()),
                       f"{who(spec)}: allow_entry() returned {why!r}; expected None or the reason (a non-empty str)")
                answers.append(why)
    return answers


@role_check("entry_guards", name="output")
@role_check("portfolio_watchers", name="output")
def guard_output(spec, get_data) -> None:
    _guard_run(spec, build(spec), get_data())


@role_check("entry_guards", name="deterministic")
@role_check("portfolio_watchers", name="deterministic")
def guard_deterministic(spec, get_data) -> None:
    data = get_data()
    a, b = _guard_run(spec, build(spec), data), _guard_run(spec, build(spec), data)
    for x, y in zip(a, b):
        expect(x == y, f"{who(spec)}: two fresh instances answer the same portfolio differently: {x!r} vs {y!r}")
