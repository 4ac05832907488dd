"""Checks of entry guards and portfolio watchers, on two scripted accounts walked over the last bars
of the kit's data (``on_bar`` every bar for watchers, ``allow_entry`` every 10 bars for each symbol
and side for entry guards; a guard playing both roles gets both):

* **one symbol**: a long position through a 30% drawdown and back, a losing stop closed midway;
* **three symbols**: the kit's symbol long (and, for a while, another watcher's hedge leg on it), a
  second symbol short with a working DCA entry, a third first a working entry, then long, stopped
  out twice at a loss and entered again; the same drawdown.

The kit answers a guard's actions as the engine does: a hedge trigger per (guard, symbol or None),
hedge legs that follow the held quantity while a trigger is on, ``close_all`` closing everything.
A guard sees the engine's read-only snapshot (:class:`mlcoord.views.PortfolioSnapshot`).
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import numpy as np

from mlcoord.bounds import checked_guard_actions, checked_verdict
from mlcoord.model import GuardAction, Side, Trade
from mlcoord.testing.core import build, call, engine_accepts, expect, has_method, role_check, who
from mlcoord.testing.fixtures import FakePortfolio, FakePosition, PendingEntry, expect_read_only
from mlcoord.testing.state import restored, saved_state

SIDES = (Side.LONG, Side.SHORT)
HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
#: the other watcher whose hedge leg the three-symbol account holds for a while
OTHER_WATCHER = "conformance_other_watcher"
#: the step of the three-symbol walk where the state round trip restarts the guard: in the
#: drawdown, with a pair lock and a stop cooldown running
RESTART_STEP = 126


def _shock(step: int) -> float:
    """Equity factor: 30% down between steps 100 and 150, back up between 200 and 250."""
    return 1.0 - 0.3 * min(max((step - 100) / 50, 0.0), 1.0) + 0.3 * min(max((step - 200) / 50, 0.0), 1.0)


def _trade(symbol: str, t: int, price: float, pnl_sign: float = -1.0) -> Trade:
    """A closed long stopped out at ``price`` (a loss, or a gain with ``pnl_sign`` 1)."""
    return Trade(f"conformance-{symbol}-{t}", symbol, Side.LONG, t - 5 * HOUR_NS, t, price * (1 - 0.02 * pnl_sign),
                 price, 0.1, 0.002 * price * pnl_sign, 0.0001 * price, 0.0, "stop", 1, 1, 0.7, "conformance check")


@attrs.define
class _Walk:
    """One scripted account over the last ``bars`` bars of the data, moved step by step; forked
    for a guard restarted midway."""

    spec: Any
    symbols: tuple[str, ...]
    prices: np.ndarray                  # [symbol, step]
    times: np.ndarray
    multi: bool
    portfolio: FakePortfolio
    closed_all: bool = False
    day: Optional[int] = None

    @classmethod
    def new(cls, spec, data, multi: bool) -> "_Walk":
        bars = 300 if multi else 400
        expect(len(data) >= bars, f"{who(spec)}: the guard checks need {bars} bars of data, got {len(data)}")
        close = np.asarray(data.candles.close[len(data) - bars:], float)
        steps = np.arange(bars)
        symbols: tuple[str, ...] = (data.symbol,)
        prices = [close]
        if multi:
            symbols += tuple(s for s in ("ETH/USDT", "SOL/USDT", "XRP/USDT") if s != data.symbol)[:2]
            prices += [close * 0.065 * (1 + 0.03 * np.sin(steps / 9)), 5e5 / close]   # one follows, one opposes
        times = np.asarray(data.candles.time[len(data) - bars:], np.int64)
        return cls(spec, symbols, np.array(prices), times, multi, FakePortfolio(time=int(times[0])))

    @property
    def bars(self) -> int:
        return len(self.times)

    def at(self, step: int) -> str:
        return f"step {step}" + (" of the three-symbol account" if self.multi else "")

    # -- the script -------------------------------------------------------------------------------
    def _open(self, k: int, side: Side, notional: float, step: int) -> None:
        price = float(self.prices[k, step])
        self.portfolio.positions.append(FakePosition(side, price, step, price, symbol=self.symbols[k],
                                                     quantity=notional / price, opened_at=int(self.times[step])))

    def _held(self, symbol: str) -> Optional[FakePosition]:
        return next((p for p in self.portfolio.positions if p.symbol == symbol and not p.hedge), None)

    def _script(self, guard, step: int) -> None:
        """The fills, orders and closed trades of ``step`` (none after a close_all)."""
        p, s = self.portfolio, self.symbols
        if self.closed_all:
            return
        t = int(self.times[step])
        if step == 0:
            self._open(0, Side.LONG, 5_000.0 if not self.multi else 4_000.0, step)
        if not self.multi:
            if step == 120:
                self._closed(guard, _trade(s[0], t, float(self.prices[0, step])), step)
            return
        price = {sym: float(self.prices[k, step]) for k, sym in enumerate(s)}
        if step == 0:
            self._open(1, Side.SHORT, 3_000.0, step)
        if step in (0, 180):            # a working entry on the third symbol ...
            p.pending_entries.append(PendingEntry(s[2], Side.LONG, 2_000.0 / price[s[2]], price[s[2]] * 0.99))
        if step in (30, 195):           # ... filled
            p.pending_entries[:] = [e for e in p.pending_entries if e.symbol != s[2]]
            self._open(2, Side.LONG, 2_000.0, step)
        if step == 40:
            p.hedge_triggers[(OTHER_WATCHER, s[0])] = 0.5
        if step == 90:
            p.hedge_triggers.pop((OTHER_WATCHER, s[0]), None)
        if step == 60:                  # a DCA leg of the short, working, then filled
            p.pending_entries.append(PendingEntry(s[1], Side.SHORT, 1_000.0 / price[s[1]], price[s[1]] * 1.01))
        if step == 80:
            p.pending_entries[:] = [e for e in p.pending_entries if e.symbol != s[1]]
            short = self._held(s[1])
            if short is not None:
                short.quantity += 1_000.0 / price[s[1]]
                short.entries_filled = short.entries_planned = 2
        if step == 110:                 # an earlier trade of the third symbol, lost
            self._closed(guard, _trade(s[2], t - 2 * HOUR_NS, price[s[2]]), step)
        if step == 118:                 # the third symbol stopped out at a loss
            p.positions[:] = [q for q in p.positions if q.symbol != s[2]]
            self._closed(guard, _trade(s[2], t, price[s[2]]), step)
        if step == 230:
            self._closed(guard, _trade(s[1], t, price[s[1]], pnl_sign=1.0), step)

    def _closed(self, guard, trade: Trade, step: int) -> None:
        hook = getattr(guard, "on_trade_closed", None) if guard is not None else None
        if callable(hook):
            call(self.spec, f"on_trade_closed({trade.symbol} {trade.exit_reason}, pnl {trade.pnl:+.2f}) at "
                            f"{self.at(step)}", hook, trade, None)

    def _mark(self, step: int, flat: bool) -> None:
        """Prices, time, best prices, hedge legs, equity, peak and day start of ``step``."""
        p = self.portfolio
        for k, sym in enumerate(self.symbols):
            p.prices[sym] = float(self.prices[k, step])
        p.time = int(self.times[step])
        if flat:
            return
        self._cover(step)
        pnl = 0.0
        for q in p.positions:
            price = p.prices[q.symbol]
            q.best_price = max(q.best_price, price) if q.side is Side.LONG else min(q.best_price, price)
            pnl += q.side * q.quantity * (price - q.entry_price)
        p.equity = (10_000.0 + pnl) * _shock(step)
        p.peak_equity = max(p.peak_equity, p.equity)
        if p.time // DAY_NS != self.day:
            self.day, p.day_start_equity = p.time // DAY_NS, p.equity

    def _cover(self, step: int) -> None:
        """Hedge legs as the engine holds them: the largest trigger's fraction of each held position."""
        p = self.portfolio
        legs = {q.symbol: q for q in p.positions if q.hedge}
        p.positions[:] = [q for q in p.positions if not q.hedge]
        for q in list(p.positions):
            fractions = [f for (_, sym), f in p.hedge_triggers.items() if sym is None or sym == q.symbol]
            if not fractions or max(fractions) <= 0:
                continue
            leg = legs.get(q.symbol)
            price = p.prices[q.symbol]
            if leg is None:
                leg = FakePosition(q.side.opposite, price, step, price, symbol=q.symbol, hedge=True,
                                   opened_at=p.time)
            leg.quantity = q.quantity * max(fractions)
            p.positions.append(leg)

    # -- the guard's answers --------------------------------------------------------------------------
    def _apply(self, action: GuardAction, step: int) -> None:
        """Check one action against the engine's meaning of ``symbol`` and carry it out."""
        spec, p = self.spec, self.portfolio
        name = f"{who(spec)}: on_bar() at {self.at(step)} returned {action!r}"
        expect(isinstance(action.reason, str) and action.reason.strip(), f"{name} without a reason")
        expect(action.symbol is None or action.symbol in p.prices,
               f"{name}: {action.symbol!r} is not a symbol of the portfolio {tuple(p.prices)}; symbol=None "
               f"means every symbol")
        if action.kind == "open_hedge":
            expect(action.fraction > 0, f"{name}: an open_hedge of fraction {action.fraction} hedges nothing")
            expect(action.symbol is None or self._held(action.symbol) is not None,
                   f"{name}: the portfolio holds no {action.symbol} position to hedge (held: "
                   f"{sorted({q.symbol for q in p.positions if not q.hedge})}); symbol=None hedges every position")
            p.hedge_triggers[(spec.name, action.symbol)] = action.fraction
        elif action.kind == "close_hedge":
            mine = [key for key in p.hedge_triggers if key[0] == spec.name]
            released = [key for key in mine if action.symbol in (None, key[1])]
            expect(released or not mine,
                   f"{name}, but its hedge is on for {[k[1] or 'every symbol (symbol=None)' for k in mine]}: "
                   f"close_hedge(symbol={action.symbol!r}) releases only a trigger opened for that symbol, so "
                   f"this hedge would stay on")
            for key in released:
                del p.hedge_triggers[key]
        elif action.kind == "close_all":
            p.positions.clear()
            p.pending_entries.clear()
            self.closed_all = True

    def fork(self) -> "_Walk":
        """The account as it stands, to walk on separately (a restarted guard, a reordered view)."""
        p = self.portfolio
        return attrs.evolve(self, portfolio=attrs.evolve(
            p, positions=[attrs.evolve(q) for q in p.positions], pending_entries=list(p.pending_entries),
            prices=dict(p.prices), hedge_triggers=dict(p.hedge_triggers)))

    def _view(self, reverse: bool):
        p = self.portfolio
        if reverse:     # the same account, listed in another order
            p = attrs.evolve(p, positions=p.positions[::-1], pending_entries=p.pending_entries[::-1],
                             prices=dict(reversed(list(p.prices.items()))),
                             hedge_triggers=dict(reversed(list(p.hedge_triggers.items()))))
        return p.view()

    def run(self, guard, steps: range, *, reverse: bool = False, probe: bool = False) -> list:
        """Walk ``steps``; the guard's answers in order: ``("on_bar", step, actions)`` and
        ``("allow_entry", step, symbol, side, reason or None)``."""
        spec = self.spec
        answers: list[tuple] = []
        on_bar = getattr(guard, "on_bar", None) if "portfolio_watchers" in spec.roles else None
        for step in steps:
            self._script(guard, step)
            self._mark(step, flat=False)
            view = self._view(reverse)
            if probe and step == steps.start:
                expect_read_only(spec, view, "the portfolio handed to the guard")
            if on_bar is not None:
                actions = call(spec, f"on_bar() at {self.at(step)}", on_bar, view)
                expect(isinstance(actions, (list, tuple)) and all(isinstance(a, GuardAction) for a in actions),
                       f"{who(spec)}: on_bar() at {self.at(step)} returned {actions!r:.100}, expected a list of "
                       f"GuardAction")
                engine_accepts(spec, f"on_bar() at {self.at(step)}", checked_guard_actions, actions)
                for action in actions:
                    self._apply(action, step)
                self._cover(step)
                answers.append(("on_bar", step, tuple(actions)))
            if step % 10 == 0 and "entry_guards" in spec.roles:
                view = self._view(reverse)
                for symbol in self.symbols:
                    for side in SIDES:
                        asked = f"allow_entry({symbol!r}, {side.name}) at {self.at(step)}"
                        why = call(spec, asked, guard.allow_entry, symbol, side, view)
                        expect(why is None or (isinstance(why, str) and why.strip()),
                               f"{who(spec)}: {asked} returned {why!r}; expected None or the reason (a non-empty str)")
                        engine_accepts(spec, asked, checked_verdict, why)
                        answers.append(("allow_entry", step, symbol, side.name, why))
        return answers

    def replay_flat(self, guard, steps: range) -> None:
        """What a restarted live session does before it restores a guard's state: its warm-up bars
        through ``on_bar`` as flat bars (prices and time only; answers ignored)."""
        on_bar = getattr(guard, "on_bar", None) if "portfolio_watchers" in self.spec.roles else None
        if on_bar is None:
            return
        flat = _Walk(self.spec, self.symbols, self.prices, self.times, self.multi, FakePortfolio())
        for step in steps:
            flat._mark(step, flat=True)
            call(self.spec, f"on_bar() of warm-up bar {step} (a flat account)", on_bar, flat.portfolio.view())


    def skip_flat(self, guard, steps: range, one_by_one: int) -> bool:
        """``steps`` as flat bars: the first ``one_by_one`` through ``on_bar``, the rest at once
        through ``skip_flat_bars`` if the guard says it can take them (as a backtest does);
        True if it took them."""
        self.replay_flat(guard, range(steps.start, steps.start + one_by_one))
        flat = _Walk(self.spec, self.symbols, self.prices, self.times, self.multi, FakePortfolio())
        flat._mark(steps.start + one_by_one - 1, flat=True)
        view = flat.portfolio.view()
        rest = range(steps.start + one_by_one, steps.stop)
        if not call(self.spec, "can_skip_flat_bars() on a flat account", guard.can_skip_flat_bars, view):
            self.replay_flat(guard, rest)
            return False
        times = self.times[rest.start:rest.stop].copy()
        times.setflags(write=False)
        closes = {}
        for k, sym in enumerate(self.symbols):
            closes[sym] = self.prices[k, rest.start:rest.stop].copy()
            closes[sym].setflags(write=False)
        call(self.spec, f"skip_flat_bars() of flat bars {rest.start}-{rest.stop - 1}", guard.skip_flat_bars, view,
             times, {sym: closes[sym] for sym in view.symbols()})
        return True


def _whole(walk: _Walk) -> range:
    return range(walk.bars)


@role_check("entry_guards", name="output")
@role_check("portfolio_watchers", name="output")
def guard_output(spec, get_data) -> None:
    """One symbol: answers of the right types, a reason for every refusal and action."""
    walk = _Walk.new(spec, get_data(), multi=False)
    walk.run(build(spec), _whole(walk), probe=True)


@role_check("entry_guards", name="deterministic")
@role_check("portfolio_watchers", name="deterministic")
def guard_deterministic(spec, get_data) -> None:
    data = get_data()
    a = _Walk.new(spec, data, multi=False)
    b = a.fork()
    for x, y in zip(a.run(build(spec), _whole(a)), b.run(build(spec), _whole(b))):
        expect(x == y, f"{who(spec)}: two fresh instances answer the same portfolio differently: {x!r} vs {y!r}")


def _gist(answer: tuple) -> tuple:
    """What must not depend on the order the portfolio lists things in: the actions (kind, symbol,
    fraction) and whether an entry is allowed (reasons may list symbols in that order)."""
    if answer[0] == "on_bar":
        return answer[:2] + (tuple((a.kind, a.symbol, a.fraction) for a in answer[2]),)
    return answer[:4] + (answer[4] is None,)


@role_check("entry_guards", name="multi_symbol")
@role_check("portfolio_watchers", name="multi_symbol")
def guard_multi_symbol(spec, get_data) -> None:
    """Three symbols, positions on both sides, a hedge leg and working entries: the guard must not
    crash, must use ``GuardAction.symbol`` as the engine does (a held symbol, or None for all; a
    close for the symbol it opened), and must answer the same whatever order the portfolio lists
    its positions, working entries and prices in (a guard reading ``positions[0]`` does not)."""
    data = get_data()
    walk = _Walk.new(spec, data, multi=True)
    again = walk.fork()
    listed = walk.run(build(spec), _whole(walk), probe=True)
    reordered = again.run(build(spec), _whole(again), reverse=True)
    for x, y in zip(listed, reordered):
        expect(_gist(x) == _gist(y),
               f"{who(spec)}: step {x[1]}: the same portfolio listed in another order (positions, working entries, "
               f"prices reversed) gets another answer: {_describe(x)} vs {_describe(y)}; look at every position, "
               f"by symbol, not at their order")


def _describe(answer: tuple) -> str:
    if answer[0] == "on_bar":
        return f"on_bar() -> {list(answer[2])!r}"
    return f"allow_entry({answer[2]!r}, {answer[3]}) -> {answer[4]!r}"


@role_check("portfolio_watchers", name="skip_flat_bars",
            applies=lambda spec: has_method(spec, "can_skip_flat_bars", "skip_flat_bars"))
def guard_skip_flat_bars(spec, get_data) -> None:
    """A watcher taking flat bars at once (:class:`mlcoord.protocols.SkipsFlatBars`): flat warm-up
    bars stepped one by one, or the first ten so and the rest through ``skip_flat_bars``, must
    leave it answering the three-symbol walk that follows exactly alike (and, if it has
    ``state()``, in the same state)."""
    data = get_data()
    walk = _Walk.new(spec, data, multi=True)
    again = walk.fork()
    stepped, skipping = build(spec), build(spec)
    warm_up = range(RESTART_STEP)
    walk.replay_flat(stepped, warm_up)
    walk.skip_flat(skipping, warm_up, one_by_one=10)
    if has_method(spec, "state", "load_state"):
        a, b = saved_state(spec, stepped, " after flat bars"), saved_state(spec, skipping, " after flat bars")
        expect(a == b, f"{who(spec)}: after {len(warm_up)} flat bars, stepped one by one its state() is {a!r:.200}; "
                       f"taken at once through skip_flat_bars() it is {b!r:.200}")
    for x, y in zip(walk.run(stepped, _whole(walk)), again.run(skipping, _whole(again))):
        expect(x == y, f"{who(spec)}: step {x[1]} after {len(warm_up)} flat bars: stepped one by one it answers "
                       f"{_describe(x)}; with the flat bars taken through skip_flat_bars() {_describe(y)}")


@role_check("entry_guards", name="state_roundtrip", applies=lambda spec: has_method(spec, "state", "load_state"))
@role_check("portfolio_watchers", name="state_roundtrip", applies=lambda spec: has_method(spec, "state", "load_state"))
def guard_state_roundtrip(spec, get_data) -> None:
    """A live restart midway through the three-symbol walk: ``state()`` saved as JSON, a fresh
    instance replays the warm-up bars as flat bars (as a live session does), loads it, and must then
    answer every following bar exactly as the guard that never stopped."""
    data = get_data()
    walk = _Walk.new(spec, data, multi=True)
    original = build(spec)
    walk.run(original, range(RESTART_STEP))
    saved = saved_state(spec, original, f" at step {RESTART_STEP}")
    resumed_walk = walk.fork()
    fresh = restored(spec, saved, lambda guard: walk.replay_flat(guard, range(RESTART_STEP)))
    rest = range(RESTART_STEP, walk.bars)
    for x, y in zip(walk.run(original, rest), resumed_walk.run(fresh, rest)):
        expect(x == y, f"{who(spec)}: restarted at step {RESTART_STEP} (state() -> JSON -> load_state() into a fresh "
                       f"instance), step {x[1]}: the restored guard answers {_describe(y)}, the original "
                       f"{_describe(x)}; state() misses part of what its answers depend on")
