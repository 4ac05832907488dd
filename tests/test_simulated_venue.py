"""The simulated venue's fill rules that protect a backtest from optimism (each once a bug).

* quantity filled at a limit inside a bar never exits at that bar's take profit;
* a hedge closed with its position pays the taker fee and its own slippage;
* an isolated-margin liquidation loses the margin plus the liquidation fee, never more;
* a guard's hedge for one symbol hedges that symbol only;
* the hedge leg follows the position's quantity (the guard's fraction of what is held now);
* an exit manager may close a position itself, with its own (namespaced) reason.
"""

from __future__ import annotations

import attrs

import numpy as np
import pandas as pd
import pytest
import structlog
from hypothesis import given, settings, strategies as st

from mlcoord import hookimpl
from mlcoord.backtest.run import run_backtest
from mlcoord.candles import candles_from_frame
from mlcoord.components import SignalSeries
from mlcoord.config import Settings, structure
from mlcoord.model import EntryLeg, EntryPlan, ExitLevels, GuardAction, PositionExit, Sizing
from mlcoord.registry import load_plugins
from pipelines import pipeline_of


def planted(settings, plugins):
    """The settings with a pipeline of exactly the planted components (an allow-list)."""
    from mlcoord.config import PipelineConfig

    return attrs.evolve(settings, pipeline=structure(pipeline_of(plugins), PipelineConfig))

H = 3_600_000_000_000
T0 = pd.Timestamp("2024-01-01", tz="UTC").value
FLAT = [(100, 100.5, 99.5, 100)] * 5


def frame(rows, symbol="TEST/USDT"):
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    df["volume"] = 1.0
    df["date"] = pd.date_range("2024-01-01", periods=len(df), freq="h", tz="UTC")
    return candles_from_frame(df, symbol=symbol, timeframe="1h")


class Source:
    def __init__(self, signals):
        self.signals = signals

    def prepare(self, data):
        action, conf = np.zeros(len(data), np.int8), np.zeros(len(data))
        for i, a in self.signals.get(data.symbol, {}).items():
            if i < len(data):
                action[i], conf[i] = a, 0.9
        return SignalSeries(action, conf, lambda i: ["planted"])


class Ladder:
    """A market leg and limit legs at given prices (equal fractions)."""

    def __init__(self, limits):
        self.limits = limits

    def plan(self, signal, price, context):
        side = signal.action.side
        n = len(self.limits) + 1
        legs = [EntryLeg(price, 1 / n, market=True)] + [EntryLeg(p, 1 / n) for p in self.limits]
        return EntryPlan(side, legs, expires_after_bars=10, planner="ladder")


class Levels:
    """Fixed absolute levels; ``close_at``: bar index at which the manager closes (a time stop)."""

    def __init__(self, stop, tp, partial=None, partial_fraction=0.0, close_at=None):
        self.stop, self.tp, self.partial, self.partial_fraction, self.close_at = \
            stop, tp, partial, partial_fraction, close_at

    def prepare(self, data):
        return self

    def initial(self, i, side, plan):
        return ExitLevels(stop=self.stop, take_profit=self.tp, partial_take_profit=self.partial,
                          partial_fraction=self.partial_fraction)

    def update(self, i, position, levels):
        if self.close_at is not None and i >= self.close_at:
            return PositionExit("time_stop")
        return levels


class Guard:
    """Emits planted actions at bar indices (from 2024-01-01 00:00, hourly)."""

    def __init__(self, actions):
        self.actions = actions

    def on_bar(self, portfolio):
        return self.actions.get((portfolio.time - T0) // H, [])

    def allow_entry(self, symbol, side, portfolio):
        return None


class Size:
    def __init__(self, qty):
        self.qty = qty

    def size(self, request):
        return Sizing(quantity=self.qty, risk=0.0)


class Planted:
    def __init__(self, signals, limits=(), levels=None, guard=None, qty=1.0):
        self.signals, self.limits, self.levels, self.guard, self.qty = signals, limits, levels, guard, qty
        self.rungs = None

    @hookimpl
    def register_signal_sources(self, register):
        register("planted", lambda o: Source(self.signals))

    @hookimpl
    def register_entry_planners(self, register):
        register("ladder", lambda o: self.rungs if self.rungs is not None else Ladder(self.limits))

    @hookimpl
    def register_exit_managers(self, register):
        register("fixedexits", lambda o: self.levels)

    @hookimpl
    def register_sizers(self, register):
        register("fixedsize", lambda o: Size(self.qty))

    def _guard(self, options):
        return self.guard

    @hookimpl
    def register_portfolio_watchers(self, register):
        if self.guard is not None:
            register("plantedguard", self._guard)


def run(candles, plugin, instruments=None, **backtest):
    plugins = load_plugins({}, entry_points={}, extra_plugins={"planted": plugin})
    config = structure({"engine": {"min_confidence": 0.5},
                        "backtest": {"fee_taker": 0.001, "fee_maker": 0.0002, "slippage": 0.001,
                                     "funding_rate": 0.0, **backtest},
                        "data": {"higher_timeframes": []}, "instruments": instruments or {}}, Settings)
    return run_backtest(planted(config, plugins), plugins=plugins, candles=list(candles)).raw


def test_a_limit_fill_never_exits_at_the_same_bars_take_profit():
    """Bought 99.00 at the bar's low and sold 101.49 at its high, inside one bar: the order of the
    two is unknown, so the limit-filled quantity waits for the next bar (the market leg, filled at
    the open, may take the take profit)."""
    bars = FLAT + [(100, 101.6, 98.9, 100), (100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(99.0,), levels=Levels(90.0, 101.49)))
    exits = [f for f in raw.fills if f.reduce_only]
    same_bar = [f for f in exits if f.time == T0 + 5 * H]
    assert sum(f.quantity for f in same_bar) == pytest.approx(0.5)          # the market leg only
    assert all(f.tag == "take_profit" for f in exits)
    later = [f for f in exits if f.time == T0 + 6 * H]
    assert sum(f.quantity for f in later) == pytest.approx(0.5)             # the limit leg, at the next open
    assert later[0].price == pytest.approx(100 * (1 - 0.001))
    assert len(raw.trades) == 1 and raw.trades[0].exit_reason == "take_profit"


def test_the_stop_may_still_take_a_limit_fill_in_the_same_bar():
    bars = FLAT + [(100, 100.2, 94, 95), (95, 96, 94, 95)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(99.0,), levels=Levels(96.0, 110.0)))
    assert raw.trades[0].exit_reason == "stop_loss" and raw.trades[0].closed_at == T0 + 5 * H
    assert raw.trades[0].quantity == pytest.approx(1.0)


def test_hedge_closed_with_its_position_pays_taker_and_its_own_slippage():
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 3 + [(100, 106, 99.5, 105), (105, 106, 104, 105)]
    guard = Guard({5: [GuardAction("open_hedge", "planted", fraction=0.5)]})
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(90.0, 104.0), guard=guard))
    tp = next(f for f in raw.fills if f.tag == "take_profit")
    hedge_close = next(f for f in raw.fills if f.hedge and f.reduce_only)
    # taker: live takes a take profit with a market order (TAKE_PROFIT_MARKET), never a resting limit
    assert tp.fee == pytest.approx(tp.price * tp.quantity * 0.001)
    assert hedge_close.time == tp.time
    assert hedge_close.price == pytest.approx(104.0 * (1 + 0.001))               # a market buy at the level
    assert hedge_close.fee == pytest.approx(hedge_close.price * hedge_close.quantity * 0.001)   # taker


def test_liquidation_loses_the_margin_plus_the_fee_never_more():
    """5x long, stop far away: a bar gaps open through the liquidation price. The open is far
    below it, yet the loss is the isolated margin plus the liquidation fee."""
    bars = FLAT + [(100, 100.5, 99.5, 100), (60, 61, 59, 60), (60, 61, 59, 60)]
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(50.0, 200.0)), leverage=5.0)
    trade = raw.trades[0]
    assert trade.exit_reason == "liquidation"
    entry = 100 * 1.001
    margin = entry * 1.0 / 5.0
    liquidation_price = entry * (1 - (1 / 5.0 - 0.005))
    fee = liquidation_price * 0.001
    entry_fee = entry * 0.001
    assert -trade.pnl == pytest.approx(margin + fee + entry_fee, rel=1e-9)


def test_a_guard_hedging_one_symbol_hedges_that_symbol_only():
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 6
    guard = Guard({6: [GuardAction("open_hedge", "eth only", symbol="ETH/USDT", fraction=0.5)]})
    plugin = Planted({"BTC/USDT": {4: 1}, "ETH/USDT": {4: 1}}, levels=Levels(90.0, 110.0), guard=guard)
    raw = run([frame(bars, "BTC/USDT"), frame(bars, "ETH/USDT")], plugin)
    hedged = {f.symbol for f in raw.fills if f.hedge and not f.reduce_only}
    assert hedged == {"ETH/USDT"}


def test_a_hedge_asked_for_an_untraded_symbol_or_of_nothing_is_refused_and_marks_nothing_hedged():
    """An ``open_hedge`` for a symbol the run does not trade, or of fraction 0 (GuardAction's
    default), hedges nothing; taken as a trigger it made ``portfolio.hedged()`` true for good, so
    a watcher that hedges only while nothing is hedged (the built-in one) never hedged again."""
    seen = []

    class Watching(Guard):
        def on_bar(self, portfolio):
            seen.append(((portfolio.time - T0) // H, portfolio.hedged()))
            return super().on_bar(portfolio)

    bars = FLAT + [(100, 100.5, 99.5, 100)] * 6
    guard = Watching({5: [GuardAction("open_hedge", "a symbol nobody trades", symbol="DOGE/USDT", fraction=0.5)],
                      6: [GuardAction("open_hedge", "of nothing")]})
    with structlog.testing.capture_logs() as logs:
        raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(90.0, 110.0), guard=guard))
    assert [h for bar, h in seen if bar > 5] and not any(h for bar, h in seen if bar > 5)
    assert not [f for f in raw.fills if f.hedge]
    refused = [e["error"] for e in logs if e["event"] == "component_failed" and e["call"] == "on_bar"]
    assert len(refused) == 2 and "'DOGE/USDT', which this run does not trade" in refused[0], refused
    assert "fraction 0 hedges nothing" in refused[1], refused


def test_the_hedge_leg_follows_what_is_held():
    """The guard asks for 50 %: after later legs fill the leg grows to 50 % of the new quantity;
    after a partial take profit it shrinks to 50 % of what is left."""
    bars = FLAT + [(100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100), (99, 99.5, 97.5, 98),
                   (98, 98.5, 97.5, 98), (98, 103, 97.5, 102), (102, 102.5, 101.5, 102), (102, 102.5, 101.5, 102)]
    guard = Guard({5: [GuardAction("open_hedge", "planted", fraction=0.5)]})
    levels = Levels(80.0, 120.0, partial=102.5, partial_fraction=0.5)
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, limits=(98.0,), levels=levels, guard=guard))
    held, hedge = 0.0, 0.0
    ratios = {}
    for f in raw.fills:
        if f.hedge:
            hedge += -f.quantity if f.reduce_only else f.quantity
        elif f.tag != "end_of_data":
            held += -f.quantity if f.reduce_only else f.quantity
        ratios[f.time] = (held, hedge)
    # after each bar's fills and the loop's resize at the next open
    assert ratios[T0 + 7 * H][1] == pytest.approx(0.5 * 0.5)                # hedge of the market leg
    assert ratios[T0 + 8 * H] == pytest.approx((1.0, 0.5))                  # the limit leg filled: resized
    assert ratios[T0 + 10 * H][1] == pytest.approx(0.25)                    # after the partial take profit


def test_an_exit_manager_closes_with_its_own_reason_at_the_next_open():
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 3 + [(101, 101.5, 100.5, 101)] * 3
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Levels(90.0, 120.0, close_at=7)))
    trade = raw.trades[0]
    assert trade.exit_reason == "fixedexits:time_stop"
    assert trade.closed_at == T0 + 8 * H                                    # decided at bar 7, filled at 8
    assert trade.exit_price == pytest.approx(101 * (1 - 0.001))


def test_an_exit_managers_partial_close_keeps_the_rest():
    class Half(Levels):
        def update(self, i, position, levels):
            return PositionExit("trim", fraction=0.5) if i == 7 else levels

    bars = FLAT + [(100, 100.5, 99.5, 100)] * 6
    raw = run([frame(bars)], Planted({"TEST/USDT": {4: 1}}, levels=Half(90.0, 120.0)))
    trims = [f for f in raw.fills if f.tag == "fixedexits:trim"]
    assert len(trims) == 1 and trims[0].quantity == pytest.approx(0.5)
    assert raw.trades[0].exit_reason == "end_of_data"


def test_a_plugin_exit_reason_reaches_the_breakdowns_and_the_report_built_from_the_json(tmp_path):
    import json

    from mlcoord.backtest.stats import breakdowns
    from mlcoord.report import build_report, load_result

    bars = FLAT + [(100, 100.5, 99.5, 100)] * 3 + [(101, 101.5, 100.5, 101)] * 3
    plugins = load_plugins({}, entry_points={}, extra_plugins={
        "planted": Planted({"TEST/USDT": {4: 1}}, levels=Levels(90.0, 120.0, close_at=7))})
    config = structure({"engine": {"min_confidence": 0.5}, "data": {"higher_timeframes": []}}, Settings)
    result = run_backtest(planted(config, plugins), plugins=plugins, candles=[frame(bars)])
    assert "fixedexits:time_stop" in breakdowns(result.raw)["per_exit_reason"]
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result.to_json()))
    loaded = load_result(path)
    assert loaded["mlcoord_result"] == 2
    assert "fixedexits:time_stop" in build_report(loaded)


def test_a_result_without_trades_writes_valid_json_and_its_report_builds(tmp_path):
    """Ratios with nothing to divide are written as null (valid JSON, unlike NaN), and the report
    is rebuilt from the file alone."""
    import json
    import math

    from mlcoord.report import build_report, load_result

    plugins = load_plugins({}, entry_points={}, extra_plugins={"planted": Planted({}, levels=Levels(90.0, 120.0))})
    config = structure({"engine": {"min_confidence": 0.5}, "data": {"higher_timeframes": []}}, Settings)
    result = run_backtest(planted(config, plugins), plugins=plugins, candles=[frame(FLAT * 4)])
    assert not result.raw.trades
    path = tmp_path / "empty.json"
    result.write_json(path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text)
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in loaded["stats"].values())
    assert "<html" in build_report(load_result(path)).lower()


class _RelativeLevels(Levels):
    """Stop 2 % beyond the worst rung, take profit 3 % beyond the average, a partial at 1.5 %."""

    def __init__(self):
        super().__init__(0.0, 0.0)

    def initial(self, i, side, plan):
        worst, avg = plan.worst_price, plan.average_price
        return ExitLevels(stop=worst * (1 - side * 0.02), take_profit=avg * (1 + side * 0.03),
                          partial_take_profit=avg * (1 + side * 0.015), partial_fraction=0.5)


class _RelativeLadder(Ladder):
    def plan(self, signal, price, context):
        side = signal.action.side
        return EntryPlan(side, (EntryLeg(price, 0.5, market=True), EntryLeg(price * (1 - side * 0.01), 0.5)),
                         expires_after_bars=5, planner="ladder")


@settings(max_examples=25, deadline=None)
@given(moves=st.lists(st.tuples(st.floats(-0.04, 0.04), st.floats(0.0, 0.03), st.floats(0.0, 0.03)),
                      min_size=30, max_size=80),
       signals=st.dictionaries(st.integers(1, 70), st.sampled_from([1, -1]), max_size=8),
       leverage=st.sampled_from([1.0, 3.0]))
def test_simulated_fills_keep_their_rules_on_any_path(moves, signals, leverage):
    """On random bars: nothing fills on or before its deciding bar; entries never exceed the plan;
    limit entries fill at the limit or better; a take profit never sells quantity bought at a limit
    in the same bar; a liquidation never loses more than the margin plus its fee."""
    rows, price = [], 100.0
    for change, up, down in moves:
        o = price
        c = max(o * (1 + change), 1.0)
        rows.append((o, max(o, c) * (1 + up), min(o, c) * (1 - down), c))
        price = c
    plugin = Planted({"TEST/USDT": signals}, levels=_RelativeLevels())
    plugin.rungs = _RelativeLadder(())
    plugins = load_plugins({}, entry_points={}, extra_plugins={"planted": plugin})
    config = structure({"engine": {"min_confidence": 0.5},
                        "backtest": {"fee_taker": 0.001, "fee_maker": 0.0002, "slippage": 0.001, "funding_rate": 0.0,
                                     "leverage": leverage},
                        "data": {"higher_timeframes": []}}, Settings)
    raw = run_backtest(planted(config, plugins), plugins=plugins, candles=[frame(rows)]).raw
    times = list(raw.times)
    bar_of = {t: k for k, t in enumerate(times)}
    entered = {d.time: d for d in raw.decisions if d.outcome == "entered"}
    bought: dict[int, float] = {}
    for f in raw.fills:
        k = bar_of[f.time]
        o, h, l, c = rows[k]
        if not f.reduce_only and not f.hedge:
            plan_time = int(f.order_id.split(":")[1])
            assert f.time > plan_time                                  # never on the deciding bar
            decision = entered[plan_time]
            leg = decision.plan.legs[int(f.order_id.rsplit(":", 1)[1]) - 1]
            assert f.quantity == pytest.approx(decision.sizing.quantity * leg.fraction)
            if not leg.market:
                side = decision.plan.side
                assert (f.price <= leg.price + 1e-9) if side > 0 else (f.price >= leg.price - 1e-9)
                if f.price != o:
                    bought[f.time] = bought.get(f.time, 0.0) + f.quantity
        if f.tag in ("take_profit", "partial_take_profit") and f.time in bought:
            same_bar_entries = sum(g.quantity for g in raw.fills if g.time == f.time and not g.reduce_only
                                   and not g.hedge)
            sold = sum(g.quantity for g in raw.fills if g.time == f.time and g.tag in ("take_profit",
                                                                                      "partial_take_profit"))
            held_before = sum((-g.quantity if g.reduce_only else g.quantity) for g in raw.fills
                              if g.time < f.time and not g.hedge)
            assert sold <= held_before + (same_bar_entries - bought[f.time]) + 1e-9
    # (liquidation's bound: test_liquidation_loses_the_margin_plus_the_fee_never_more; these random
    # paths never reach a liquidation before their 2 % stop, so it is not checked here)


class PendingWatcher(Guard):
    """Notes how many working entry orders the portfolio view lists on each bar."""

    def __init__(self):
        super().__init__({})
        self.seen = {}

    def on_bar(self, portfolio):
        self.seen[(portfolio.time - T0) // H] = len(portfolio.pending_entries)
        return []


def test_expired_entry_legs_leave_the_views_commitments():
    """Regression: a leg that expired unfilled stayed in ``pending_entries`` (and in the committed
    exposure the caps use) until something else changed, because the view's cache only watched
    fills and intents."""
    bars = FLAT + [(100, 100.5, 99.5, 100)] * 16
    watcher = PendingWatcher()
    planted = Planted({"TEST/USDT": {4: 1}}, limits=(90.0,), levels=Levels(80.0, 130.0), guard=watcher)
    run([frame(bars)], planted)
    assert watcher.seen[5] == 1                    # the limit leg works (the market leg filled)
    expired = 4 + 10                               # the ladder's legs expire after 10 bars
    assert watcher.seen[expired - 1] == 1 and watcher.seen[expired] == 0
    assert all(n == 0 for k, n in watcher.seen.items() if k >= expired)
