"""Portfolio guards: ``hedging`` (signal-independent hedges) and ``protections`` (entry locks)."""

from __future__ import annotations

import inspect
import math
from typing import Optional

import attrs
import numpy as np
import pytest

import mlcoord_hedging
import mlcoord_protections
from mlcoord import Action, Decision, GuardAction, Side, Signal, Trade, hookimpl
from mlcoord.components import EntryGuard, PortfolioWatcher
from mlcoord.config import structure
from mlcoord.errors import ConfigError
from mlcoord.registry import load_plugins
from mlcoord_hedging import HedgingGuard, HedgingOptions
from mlcoord_hedging.trackers import MarketReturns
from mlcoord_protections import Protections, ProtectionsOptions

HOUR = 3_600_000_000_000
T0 = 1_704_067_200 * 1_000_000_000          # 2024-01-01 00:00 UTC


@attrs.define
class FakePortfolio:
    """A minimal :class:`mlcoord.components.PortfolioView`; ``hedges`` holds "*" for a portfolio hedge."""

    equity: float = 10_000.0
    peak_equity: float = 10_000.0
    cash: float = 10_000.0
    day_start_equity: float = 10_000.0
    time: int = T0
    positions: dict = attrs.field(factory=dict)       # symbol -> net exposure (quote)
    prices: dict = attrs.field(factory=dict)          # symbol -> last price
    hedges: set = attrs.field(factory=set)
    n_open: Optional[int] = None

    @property
    def drawdown(self) -> float:
        return 1.0 - self.equity / self.peak_equity if self.peak_equity > 0 else 0.0

    def open_positions(self) -> int:
        return self.n_open if self.n_open is not None else sum(1 for e in self.positions.values() if e)

    def committed_trades(self) -> int:
        return self.open_positions()

    def committed_exposure(self) -> float:
        return self.gross_exposure()

    def exposure(self, symbol=None) -> float:
        return self.positions.get(symbol, 0.0) if symbol else sum(self.positions.values())

    def gross_exposure(self) -> float:
        return sum(abs(e) for e in self.positions.values())

    def hedged(self, symbol=None) -> bool:
        return bool(self.hedges) if symbol is None else ("*" in self.hedges or symbol in self.hedges)

    def last_price(self, symbol: str) -> float:
        return self.prices[symbol]

    def symbols(self):
        return tuple(sorted(self.prices))

    def mark(self, equity: float) -> None:
        self.equity = equity
        self.peak_equity = max(self.peak_equity, equity)

    def apply(self, actions) -> None:
        """What the engine would do with the guard's actions."""
        for a in actions:
            if a.kind == "open_hedge":
                self.hedges.add(a.symbol or "*")
            elif a.kind == "close_hedge":
                self.hedges.clear()


def trade(symbol="BTC/USDT", pnl=-10.0, exit_reason="stop", closed_at=T0, hedge=False, i=0) -> Trade:
    return Trade(f"t{i}", symbol, Side.LONG, closed_at - HOUR, closed_at, 100.0, 100.0 + pnl, 1.0, pnl,
                 0.1, 0.0, exit_reason, 1, 1, 0.7, "test", hedge)


def decision(action: Action, symbol="BTC/USDT") -> Decision:
    sig = Signal(action, 0.9, ("test",), "tech")
    return Decision(T0, symbol, sig, sig, (), 0.9, 0.9, 0.5, "entered")


def only(**kw) -> HedgingOptions:
    """Options with every trigger off except those given."""
    base = dict(use_drawdown=False, use_volatility=False, use_correlation=False)
    base.update(kw)
    return HedgingOptions(**base)


# -- hedging -----------------------------------------------------------------------------------

def drawdown_path():
    """(equity, prices) per bar: a rally, a 14% slide, a recovery."""
    eq = [10_000 * (1 + 0.002 * t) for t in range(40)]
    top = eq[-1]
    eq += [top * (1 - 0.007 * t) for t in range(1, 21)]
    low = eq[-1]
    eq += [low + (top - low) * t / 30 for t in range(1, 31)]
    return eq


def test_hedging_strategy_works_independently():
    # Nothing about signals can even be passed: the API takes a portfolio and nothing else.
    assert list(inspect.signature(HedgingGuard.on_bar).parameters) == ["self", "portfolio"]
    assert not hasattr(HedgingGuard, "allow_entry")      # a watcher: it cannot even veto an entry
    with pytest.raises(TypeError):
        HedgingGuard().on_bar(FakePortfolio(), signal=Signal(Action.BUY, 1.0))

    # Two guards see the same portfolio path but opposite "signal worlds": every entry they are
    # asked about and every closed trade's decision differ. Their actions must not.
    a, b = HedgingGuard(), HedgingGuard()
    pa = FakePortfolio(positions={"BTC/USDT": 5_000.0}, prices={"BTC/USDT": 100.0})
    pb = FakePortfolio(positions={"BTC/USDT": 5_000.0}, prices={"BTC/USDT": 100.0})
    outputs = []
    for t, equity in enumerate(drawdown_path()):
        for p in (pa, pb):
            p.mark(equity)
            p.prices["BTC/USDT"] = 100.0 * equity / 10_000
            p.time = T0 + t * HOUR
        a.on_trade_closed(trade(pnl=50.0, exit_reason="take_profit", i=t), decision(Action.BUY))
        b.on_trade_closed(trade(pnl=-50.0, i=t), decision(Action.SELL, "ETH/USDT"))
        out_a, out_b = a.on_bar(pa), b.on_bar(pb)
        assert out_a == out_b
        pa.apply(out_a)
        pb.apply(out_b)
        outputs += out_a
    assert [x.kind for x in outputs] == ["open_hedge", "close_hedge"]   # the path did exercise it


def test_drawdown_trigger_opens_at_10pct_and_closes_only_at_5pct():
    guard = HedgingGuard(only(use_drawdown=True))
    p = FakePortfolio(positions={"BTC/USDT": 4_000.0}, prices={"BTC/USDT": 1.0})

    def step(drawdown):
        p.mark(10_000 * (1 - drawdown))
        out = guard.on_bar(p)
        p.apply(out)
        return out

    assert step(0.0) == [] and step(0.05) == [] and step(0.0999) == []
    out = step(0.10)
    assert out == [GuardAction("open_hedge", "drawdown 10.0% >= 10.0%: hedge 50% of exposure", None, 0.5)]
    assert p.hedged()
    for dd in (0.12, 0.07, 0.0501):           # hysteresis: between the levels it stays hedged
        assert step(dd) == [] and p.hedged()
    out = step(0.05)
    assert [a.kind for a in out] == ["close_hedge"] and "drawdown 5.0% <= 5.0%" in out[0].reason
    assert not p.hedged()
    assert step(0.07) == []                   # no re-hedge between the levels


def test_drawdown_trigger_leaves_other_hedges_alone_and_needs_exposure():
    guard = HedgingGuard(only(use_drawdown=True))
    p = FakePortfolio(positions={}, prices={"BTC/USDT": 1.0})
    p.mark(10_000)
    p.mark(8_500)
    assert guard.on_bar(p) == []              # nothing to hedge
    p.positions["BTC/USDT"] = 3_000.0
    p.hedges.add("*")                         # someone else's hedge is already on
    assert guard.on_bar(p) == []
    p.mark(9_900)
    assert guard.on_bar(p) == []              # released, but the hedge is not ours to close
    assert p.hedged()


def test_drawdown_custom_fraction_option():
    guard = HedgingGuard(only(use_drawdown=True, hedge_fraction=0.8, drawdown_trigger=0.2, drawdown_release=0.1))
    p = FakePortfolio(positions={"X": 1.0}, prices={"X": 1.0})
    p.mark(8_500)
    assert guard.on_bar(p) == []
    p.mark(7_900)
    (action,) = guard.on_bar(p)
    assert action.fraction == 0.8 and "hedge 80%" in action.reason


def run_price_returns(guard, p, returns, symbol="BTC/USDT"):
    """Move ``symbol``'s price by each return (equity untouched: the trigger must not need it)."""
    out = []
    for r in returns:
        p.prices[symbol] *= 1 + r
        actions = guard.on_bar(p)
        p.apply(actions)
        out.append(actions)
    return out


def calm(n, start=0, scale=0.001):
    return [scale * math.sin(1.7 * t) for t in range(start, start + n)]


def spike(n=24, size=0.006):
    return [size * (-1) ** t for t in range(n)]


def test_volatility_trigger_fires_on_a_held_symbols_price_spike():
    guard = HedgingGuard(only(use_volatility=True))
    p = FakePortfolio(positions={"BTC/USDT": 9_000.0}, prices={"BTC/USDT": 100.0})
    # a spike before the baseline has vol_baseline/2 = 360 bars of history is ignored
    early = run_price_returns(guard, p, calm(200) + spike(30, 0.02) + calm(130, 230))
    assert not any(early)
    assert not any(run_price_returns(guard, p, calm(500, 360)))          # calm: never
    out = run_price_returns(guard, p, spike())
    fired = [i for i, a in enumerate(out) if a]
    assert fired and out[fired[0]][0].kind == "open_hedge"
    reason = out[fired[0]][0].reason
    assert reason.startswith("volatility of BTC/USDT ") and "x its median" in reason and ">= 2.5x" in reason
    assert 1 <= fired[0] <= 6                 # reacts within a few bars, not to a single outlier
    after = run_price_returns(guard, p, calm(48, 900))
    kinds = [a[0].kind for a in after if a]
    assert kinds == ["close_hedge"] and not p.hedged()
    # released only once the 24-bar vol is back under 1.5x the baseline: not before the spike
    # has mostly left the window
    assert [i for i, a in enumerate(after) if a][0] >= 12


def test_volatility_trigger_ignores_a_spike_while_flat_and_equity_moves():
    # the same history and spike, but nothing held during the spike: no hedge, and the spike
    # is part of the symbol's history, so holding right after it is measured against it too
    guard = HedgingGuard(only(use_volatility=True))
    p = FakePortfolio(positions={}, prices={"BTC/USDT": 100.0})
    run_price_returns(guard, p, calm(860))
    assert not any(run_price_returns(guard, p, spike()))
    assert guard.active == {}
    # equity swings (e.g. a position just opened in a calm market) are not market volatility
    p.positions["BTC/USDT"] = 9_000.0
    for t in range(30):
        p.mark(10_000 * (1 + 0.03 * (-1) ** t))
        p.apply(guard.on_bar(p))
    assert not p.hedged()


def test_volatility_weights_the_exposed_symbols():
    # two symbols: A spikes, B stays calm. Long A only -> hedge; long B only -> none; a book that
    # is 5% A and 95% B -> A's spike is diluted below the trigger
    def setup(positions):
        guard = HedgingGuard(only(use_volatility=True))
        p = FakePortfolio(positions={}, prices={"A": 100.0, "B": 50.0})
        for r in calm(860):
            p.prices["A"] *= 1 + r
            p.prices["B"] *= 1 + 0.5 * r
            guard.on_bar(p)
        p.positions.update(positions)
        out = []
        for r in spike():
            p.prices["A"] *= 1 + r
            p.prices["B"] *= 1 + 0.0005 * math.sin(3.1 * len(out))
            out.append(guard.on_bar(p))
            p.apply(out[-1])
        return [a[0] for a in out if a]

    fired = setup({"A": 5_000.0})
    assert [a.kind for a in fired] == ["open_hedge"] and "volatility of A " in fired[0].reason
    assert setup({"B": 5_000.0}) == []
    assert setup({"A": 500.0, "B": 9_500.0}) == []


def test_volatility_never_fires_on_a_price_that_does_not_move():
    guard = HedgingGuard(only(use_volatility=True))
    p = FakePortfolio(positions={"X": 1.0}, prices={"X": 1.0})
    assert not any(run_price_returns(guard, p, [0.0] * 800 + [0.01, -0.01] * 10, symbol="X"))


def test_volatility_trigger_on_real_btc_fires_on_genuine_events_only():
    """Always long BTC over 2020-09..2021-09 of real hourly bars: the trigger fires on a handful
    of genuine volatility events (the May 2021 crash among them), never while flat."""
    from mlcoord.backtest.run import bundled_path
    from mlcoord.candles import load_candles

    btc = load_candles(bundled_path("BTC/USDT")).slice(0, 9000)
    fires = {}
    for held in (True, False):
        guard = HedgingGuard(only(use_volatility=True))
        p = FakePortfolio(positions={"BTC/USDT": 5_000.0} if held else {}, prices={})
        opened = []
        for t, c in zip(btc.time.tolist(), btc.close.tolist()):
            p.prices["BTC/USDT"], p.time = c, t
            actions = guard.on_bar(p)
            p.apply(actions)
            opened += [t for a in actions if a.kind == "open_hedge"]
        fires[held] = opened
    assert fires[False] == []
    assert 3 <= len(fires[True]) <= 15                      # events, not hundreds of bars
    may_2021 = (1_621_382_400 * 10**9, 1_621_728_000 * 10**9)   # 2021-05-19 .. 2021-05-23 UTC
    assert any(may_2021[0] <= t < may_2021[1] for t in fires[True])


def test_hedges_are_rare_in_the_real_default_backtest():
    """The default pipeline on 8000 real BTC bars: hedges are occasional protection, not a
    companion of every trade (the equity-volatility trigger used to fire on ~40% of trades)."""
    from mlcoord.backtest.run import bundled_path, run_backtest
    from mlcoord.candles import load_candles
    from mlcoord.config import Settings

    opened = []
    original = HedgingGuard.on_bar

    def on_bar(self, portfolio):
        actions = original(self, portfolio)
        opened.extend(a for a in actions if a.kind == "open_hedge")
        return actions

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HedgingGuard, "on_bar", on_bar)
        r = run_backtest(Settings(), candles=[load_candles(bundled_path("BTC/USDT")).slice(0, 8000)])
    trades = r.stats["trades"]
    assert not r.raw.errors
    assert len(opened) <= 2 + 0.05 * trades
    assert r.stats["hedges"] <= 2 + 0.05 * trades


def co_moving_prices(n, noise, seed=7):
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, n)
    ra = common + rng.normal(0, noise, n)
    rb = common + rng.normal(0, noise, n)
    return 100 * np.exp(np.cumsum(ra)), 50 * np.exp(np.cumsum(rb))


def run_prices(guard, p, pa, pb):
    out = []
    for x, y in zip(pa, pb):
        p.prices["A"], p.prices["B"] = float(x), float(y)
        actions = guard.on_bar(p)
        p.apply(actions)
        out.append(actions)
    return out


def test_correlation_trigger_fires_for_co_moving_longs_only():
    pa, pb = co_moving_prices(200, noise=0.001)
    # co-moving, both long -> hedge once a full 72-bar window exists
    guard = HedgingGuard(only(use_correlation=True))
    p = FakePortfolio(positions={"A": 3_000.0, "B": 3_000.0})
    out = run_prices(guard, p, pa, pb)
    fired = [i for i, a in enumerate(out) if a]
    assert fired[0] == 72 and out[72][0].kind == "open_hedge"
    assert "correlation 0.9" in out[72][0].reason and "long A, B over 72 bars" in out[72][0].reason

    # a pair that does not co-move -> never
    qa, _ = co_moving_prices(200, noise=0.001, seed=1)
    _, qb = co_moving_prices(200, noise=0.001, seed=2)
    p2 = FakePortfolio(positions={"A": 3_000.0, "B": 3_000.0})
    assert not any(run_prices(HedgingGuard(only(use_correlation=True)), p2, qa, qb))

    # co-moving but one long and one short: the book is already offset -> never
    p3 = FakePortfolio(positions={"A": 3_000.0, "B": -3_000.0})
    assert not any(run_prices(HedgingGuard(only(use_correlation=True)), p3, pa, pb))

    # only one symbol exposed -> never
    p4 = FakePortfolio(positions={"A": 3_000.0, "B": 0.0})
    assert not any(run_prices(HedgingGuard(only(use_correlation=True)), p4, pa, pb))


def test_correlation_releases_when_the_pair_decouples():
    pa, pb = co_moving_prices(150, noise=0.001)
    guard = HedgingGuard(only(use_correlation=True))
    p = FakePortfolio(positions={"A": 3_000.0, "B": 3_000.0})
    run_prices(guard, p, pa, pb)
    assert p.hedged()
    qa, _ = co_moving_prices(200, noise=0.001, seed=11)
    _, qb = co_moving_prices(200, noise=0.001, seed=12)
    out = run_prices(guard, p, pa[-1] * qa / qa[0], pb[-1] * qb / qb[0])
    closes = [a[0] for a in out if a]
    assert [a.kind for a in closes] == ["close_hedge"] and "< 0.75" in closes[0].reason
    assert not p.hedged()


def test_market_returns_match_numpy():
    rng = np.random.default_rng(3)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (900, 3)), axis=0))
    tracker = MarketReturns(24, 720, 24, corr_window=72)
    for row in prices:
        tracker.record(("A", "B", "C"), dict(zip("ABC", row.tolist())).__getitem__)
    rets = prices[1:] / prices[:-1] - 1
    expected = np.corrcoef(rets[-72:].T)
    assert tracker.pair("A", "B") == pytest.approx(expected[0, 1], abs=1e-9)
    assert tracker.pair("B", "C") == pytest.approx(expected[1, 2], abs=1e-9)
    assert tracker.mean_pairwise(["A", "B", "C"]) == pytest.approx(
        (expected[0, 1] + expected[0, 2] + expected[1, 2]) / 3, abs=1e-9)
    assert tracker.window_correlation("A", "C") == pytest.approx(np.corrcoef(rets[-24:].T)[0, 2], abs=1e-9)
    vols = [np.std(rets[k - 24:k, 0], ddof=1) for k in range(24, len(rets) + 1)]
    assert tracker.vol("A") == pytest.approx(vols[-1], rel=1e-9)
    assert tracker.baseline("A") == pytest.approx(np.median(vols[-720:]), rel=1e-9)


def test_market_returns_lazy_reads_match_numpy_whenever_asked():
    # reads at irregular bars (runs of consecutive bars, gaps) exercise the incremental vol, its
    # exact recomputation, and the baseline's reuse of windows computed earlier; every read must
    # equal the definition computed afresh with numpy. An invalid price is a zero return.
    w, vb, cw, bars = 5, 40, 12, 400
    rng = np.random.default_rng(7)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (bars, 2)), axis=0))
    raw = prices.copy()
    raw[[50, 51, 230], 0] = [np.nan, 0.0, -1.0]
    prices[[50, 51], 0] = prices[49, 0]
    prices[230, 0] = prices[229, 0]
    tracker = MarketReturns(w, vb, 1, corr_window=cw)
    asked = set(rng.choice(bars, 150, replace=False).tolist()) | set(range(100, 130))
    checked = 0
    for t, row in enumerate(raw):
        tracker.record(["A", "B"], dict(zip("AB", row.tolist())).__getitem__)
        assert len(tracker.series["A"].prices) <= 2 * tracker.keep        # trimmed in chunks
        if t not in asked:
            continue
        rets = prices[1:t + 1] / prices[:t] - 1
        vols = np.array([np.std(rets[k - w:k, 0], ddof=1) for k in range(w, t + 1)])
        if t < w:
            assert tracker.vol("A") is None
        else:
            assert tracker.vol("A") == pytest.approx(vols[-1], rel=1e-9, abs=1e-15)
        n = min(len(vols), vb)
        if 2 * n < vb:
            assert tracker.baseline("A") is None
        else:
            assert tracker.baseline("A") == pytest.approx(np.median(vols[-n:]), rel=1e-9)
            checked += 1
        if t >= cw:
            assert tracker.pair("A", "B") == pytest.approx(np.corrcoef(rets[-cw:].T)[0, 1], abs=1e-9)
        else:
            assert tracker.pair("A", "B") is None
        if t >= w:
            assert tracker.window_correlation("A", "B") == pytest.approx(
                np.corrcoef(rets[-w:].T)[0, 1], abs=1e-9)
    assert checked > 100


def test_rolling_sq_dev_gives_two_cumsums_floats_bit_for_bit():
    """The windows' squared deviations come from one two-row cumulative sum: the same floats, bit
    for bit, as summing the returns and their squares separately (a backtest's hedges must not
    move by a rounding when the baseline's arithmetic is rearranged for speed)."""
    from mlcoord_hedging.trackers import _rolling_sq_dev

    def separately(prices, w):
        r = prices[1:] / prices[:-1] - 1.0
        c1, c2 = np.concatenate(([0.0], np.cumsum(r))), np.concatenate(([0.0], np.cumsum(r * r)))
        s = c1[w:] - c1[:-w]
        return (c2[w:] - c2[:-w]) - s * s / w

    rng = np.random.default_rng(11)
    for w in (2, 5, 24):
        for n in (1, 7, 24, 744):
            prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n + w)))
            prices[rng.integers(0, n + w, 2)] = prices[0]          # some flat bars: zero returns
            assert _rolling_sq_dev(prices, w).tobytes() == separately(prices, w).tobytes()


def test_market_returns_baseline_median_of_an_even_count_is_the_mean_of_both_middles():
    tracker = MarketReturns(3, 8, 100)
    moves = [0.01, -0.02, 0.03, 0.0, 0.05, -0.01, 0.02, -0.04, 0.01, 0.06, -0.03]
    price = 100.0
    for r in [0.0, *moves]:
        price *= 1 + r
        tracker.record(["A"], {"A": price}.__getitem__)
    rets = np.array(moves)
    vols = sorted(float(np.std(rets[k - 3:k], ddof=1)) for k in range(len(rets) - 7, len(rets) + 1))
    assert tracker.baseline("A") == pytest.approx(0.5 * (vols[3] + vols[4]), rel=1e-12)


def test_market_returns_record_many_repeats_the_last_price_over_invalid_ones():
    """A stretch with a nan, a zero or an infinite price is recorded as ``record`` would."""
    stretch = np.array([101.0, np.nan, 102.0, 0.0, np.inf, 103.0])
    one, many = MarketReturns(2, 4, 2), MarketReturns(2, 4, 2)
    for tracker in (one, many):
        tracker.record(["A"], {"A": 100.0}.__getitem__)
    for p in stretch.tolist():
        one.record(["A"], {"A": p}.__getitem__)
    many.record_many(["A"], {"A": stretch})
    assert list(many.series["A"].prices) == list(one.series["A"].prices) == [100, 101, 101, 102, 102, 102, 103]
    assert many.bar == one.bar


def test_market_returns_baseline_refresh_and_lost_history():
    tracker = MarketReturns(4, 20, 6)
    price = {"A": 100.0, "B": 50.0}
    for t in range(40):
        price["A"] *= 1 + 0.01 * math.sin(t)
        tracker.record(["A", "B"], price.__getitem__)
    first = tracker.baseline("A")
    assert first is not None
    for t in range(40, 45):                   # a big move: the cached baseline is kept 5 bars...
        price["A"] *= 1.2 if t % 2 else 0.8
        tracker.record(["A", "B"], price.__getitem__)
        assert tracker.baseline("A") == first
    tracker.record(["A", "B"], price.__getitem__)
    assert tracker.baseline("A") > first      # ...and refreshed on the 6th
    # B not priced for a bar loses its history: no vol until it has a fresh window
    tracker.record(["A"], price.__getitem__)
    for t in range(4):
        tracker.record(["A", "B"], price.__getitem__)
        assert tracker.vol("B") is None
    tracker.record(["A", "B"], price.__getitem__)
    assert tracker.vol("B") == 0.0 and tracker.vol("A") is not None   # B never moved; A kept its history


def test_hedging_flat_bars_keep_every_trigger_working():
    # long flat stretches (where the guard only records prices) between exposures: each later
    # exposure still sees the whole price history, and a drawdown while flat still registers.
    guard = HedgingGuard()
    p = FakePortfolio(positions={}, prices={"BTC/USDT": 100.0})
    run_price_returns(guard, p, calm(800))
    p.mark(8_900)                             # an 11% drawdown while flat: active, nothing to hedge
    assert guard.on_bar(p) == [] and set(guard.active) == {"drawdown"}
    p.mark(10_000)
    p.peak_equity = 10_000.0
    assert guard.on_bar(p) == [] and guard.active == {}
    run_price_returns(guard, p, calm(100, 800))
    p.positions["BTC/USDT"] = 5_000.0
    out = run_price_returns(guard, p, spike())
    assert any(a and a[0].kind == "open_hedge" and a[0].reason.startswith("volatility of BTC/USDT")
               for a in out)
    p.positions.clear()
    out = run_price_returns(guard, p, calm(5, 900))
    assert [a[0].kind for a in out if a] == ["close_hedge"] and not p.hedged()
    assert not any(run_price_returns(guard, p, spike()))   # flat again: a spike is not exposure


def test_hedging_keeps_the_hedge_while_any_trigger_is_active():
    guard = HedgingGuard(HedgingOptions(use_volatility=False))
    pa, pb = co_moving_prices(120, noise=0.001)
    p = FakePortfolio(positions={"A": 3_000.0, "B": 3_000.0})
    run_prices(guard, p, pa, pb)
    assert set(guard.active) == {"correlation"} and p.hedged()
    p.mark(8_800)                                        # drawdown joins
    assert guard.on_bar(p) == [] and set(guard.active) == {"correlation", "drawdown"}
    p.mark(9_800)                                        # drawdown releases, correlation holds
    assert guard.on_bar(p) == [] and p.hedged() and set(guard.active) == {"correlation"}


@pytest.mark.parametrize("raw, words", [
    ({"drawdown_trigger": 0.05, "drawdown_release": 0.1}, "drawdown_release (0.1) must be <= drawdown_trigger"),
    ({"corr_release": 0.95}, "corr_release"),
    ({"hedge_fraction": 0.0}, "hedge_fraction"),
    ({"vol_window": 1}, "vol_window"),
    ({"use_volatility": 1}, "use_volatility"),
])
def test_hedging_options_validation(raw, words):
    with pytest.raises(ConfigError) as err:
        structure(raw, HedgingOptions, path="$.plugins.hedging")
    assert words in str(err.value)


# -- protections -------------------------------------------------------------------------------

def at(hours: float, **kw) -> FakePortfolio:
    return FakePortfolio(time=T0 + round(hours * HOUR), **kw)


def test_max_open_trades():
    guard = Protections()
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(0, n_open=2)) is None
    reason = guard.allow_entry("BTC/USDT", Side.LONG, at(0, n_open=3))
    assert reason == "max_open_trades 3 reached (3 open or entering): until a position closes or a plan expires"
    assert Protections(ProtectionsOptions(max_open_trades=0)).allow_entry("X", Side.LONG, at(0, n_open=50)) is None


def test_cooldown_after_stop_locks_the_pair_and_expires():
    guard = Protections()
    guard.on_trade_closed(trade(exit_reason="stop_loss", closed_at=T0 + HOUR, pnl=5.0), None)
    reason = guard.allow_entry("BTC/USDT", Side.SHORT, at(6.99))
    assert reason.startswith("cooldown_after_stop: BTC/USDT stopped out (stop_loss)")
    assert reason.endswith("locked until 2024-01-01 07:00 UTC")
    assert guard.allow_entry("ETH/USDT", Side.LONG, at(6.99)) is None        # other pairs trade
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(7.0)) is None         # expired
    guard.on_trade_closed(trade(exit_reason="take_profit", pnl=5.0), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(0.5)) is None


def test_a_stop_closed_late_by_catch_up_still_starts_the_cooldown():
    """The bug: a stop the replayed bars crossed (live catch-up) closed with reason ``catch_up``,
    so the protections guard did not see a stop and let the pair trade again at once."""
    guard = Protections()
    guard.on_trade_closed(trade(exit_reason="catch_up:stop_loss", closed_at=T0 + HOUR, pnl=-5.0), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(3)).startswith(
        "cooldown_after_stop: BTC/USDT stopped out (catch_up:stop_loss)")
    other = Protections()
    other.on_trade_closed(trade(exit_reason="catch_up:take_profit", closed_at=T0 + HOUR, pnl=5.0), None)
    assert other.allow_entry("BTC/USDT", Side.LONG, at(3)) is None


def test_protections_shows_its_locks_lifts_a_pair_lock_and_takes_new_options_in_place():
    from mlcoord.api import ExposesLocks, Reconfigurable, ReleasesLocks

    guard = Protections()
    assert isinstance(guard, ExposesLocks) and isinstance(guard, ReleasesLocks) and isinstance(guard, Reconfigurable)
    guard.on_trade_closed(trade(exit_reason="stop_loss", closed_at=T0 + HOUR, pnl=5.0), None)
    p = at(2, equity=9_600.0)
    guard.on_bar(p)                                                          # arms the daily limit
    locks = guard.locks()
    assert set(locks) == {"BTC/USDT", "*"} and locks["BTC/USDT"][0] == T0 + 7 * HOUR
    assert locks["*"][1].startswith("daily_loss_limit") and locks["*"][0] == T0 + 24 * HOUR
    guard.reconfigure(ProtectionsOptions(max_open_trades=1))                # the locks stay
    assert guard.options.max_open_trades == 1 and set(guard.locks()) == {"BTC/USDT", "*"}
    with pytest.raises(TypeError, match="ProtectionsOptions"):
        guard.reconfigure({"max_open_trades": 2})
    assert guard.unlock("BTC/USDT") and not guard.unlock("BTC/USDT") and not guard.unlock("*")
    assert set(guard.locks()) == {"*"}


def test_pair_lock_after_losses_within_the_window():
    guard = Protections()
    guard.on_trade_closed(trade(exit_reason="signal", closed_at=T0), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(1)) is None           # one loss: fine
    guard.on_trade_closed(trade(exit_reason="timeout", closed_at=T0 + 10 * HOUR), None)
    reason = guard.allow_entry("BTC/USDT", Side.LONG, at(33.9))
    assert reason == "pair_lock: 2 losses on BTC/USDT within 24h: locked until 2024-01-02 10:00 UTC"
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(34)) is None
    guard.on_trade_closed(trade(exit_reason="signal", closed_at=T0 + 40 * HOUR), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(41)) is None          # consumed losses don't relock


def test_pair_lock_ignores_losses_outside_the_window_and_hedges():
    guard = Protections()
    guard.on_trade_closed(trade(exit_reason="signal", closed_at=T0), None)
    guard.on_trade_closed(trade(exit_reason="signal", closed_at=T0 + 25 * HOUR), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(26)) is None
    guard.on_trade_closed(trade(exit_reason="stop", closed_at=T0 + 26 * HOUR, hedge=True), None)
    assert guard.allow_entry("BTC/USDT", Side.LONG, at(27)) is None


def test_daily_loss_limit_blocks_until_the_next_utc_day():
    guard = Protections()
    p = at(10, equity=9_700.0)                                               # exactly -3%: allowed
    assert guard.on_bar(p) == [] and guard.allow_entry("BTC/USDT", Side.LONG, p) is None
    p.equity = 9_690.0
    assert guard.on_bar(p) == []                                             # never close_all by default
    p.time, p.equity = T0 + 11 * HOUR, 9_900.0                               # recovered the same day
    reason = guard.allow_entry("ETH/USDT", Side.LONG, p)
    assert reason.startswith("daily_loss_limit 3.0%: equity 9690.00 < 9700.00")
    assert reason.endswith("no entries until 2024-01-02 00:00 UTC")
    p.time, p.day_start_equity = T0 + 24 * HOUR - 1, 9_900.0
    assert guard.allow_entry("ETH/USDT", Side.LONG, p) is not None
    p.time = T0 + 24 * HOUR
    assert guard.allow_entry("ETH/USDT", Side.LONG, p) is None


def test_daily_loss_limit_is_checked_at_entry_time_too_and_close_all_is_opt_in():
    guard = Protections(ProtectionsOptions(close_all_on_daily_loss=True))
    p = at(3, equity=9_000.0)
    assert "daily_loss_limit" in guard.allow_entry("BTC/USDT", Side.LONG, p)
    guard2 = Protections(ProtectionsOptions(close_all_on_daily_loss=True))
    (action,) = guard2.on_bar(p)
    assert action.kind == "close_all" and "daily_loss_limit" in action.reason
    assert guard2.on_bar(p) == []                                            # once, not every bar
    assert Protections(ProtectionsOptions(daily_loss_limit=0.0)).allow_entry("X", Side.LONG, p) is None


@pytest.mark.parametrize("raw, words", [
    ({"max_open_trades": -1}, "max_open_trades"),
    ({"max_open_trades": 2.5}, "an integer"),
    ({"cooldown_after_stop_hours": -1}, "cooldown_after_stop_hours"),
    ({"daily_loss_limit": 1.0}, "daily_loss_limit"),
    ({"pair_lock_hour": 3}, "unknown key"),
])
def test_protections_options_validation(raw, words):
    with pytest.raises(ConfigError) as err:
        structure(raw, ProtectionsOptions, path="$.plugins.protections")
    assert words in str(err.value)


def test_both_guards_register_and_satisfy_the_protocol():
    plugins = load_plugins(entry_points={}, extra_plugins={"hedging": mlcoord_hedging,
                                                           "protections": mlcoord_protections})
    for name, options in (("hedging", HedgingOptions), ("protections", ProtectionsOptions)):
        spec = plugins.components[name]
        assert spec.options is options
        assert structure({}, options) == options()
        if "entry_guards" in spec.roles:
            assert isinstance(spec.factory(options()), EntryGuard)
        assert isinstance(spec.factory(options()), PortfolioWatcher)
    assert plugins.components["hedging"].roles == ("portfolio_watchers",)    # hedging never vetoes entries
    assert set(plugins.components["protections"].roles) == {"entry_guards", "portfolio_watchers"}


# -- restart state -----------------------------------------------------------------------------

def test_hedging_state_survives_a_restart_and_releases_by_the_same_hysteresis():
    """A restarted guard (fresh instance + load_state of a JSON round trip) keeps the hedge it
    opened between the levels and releases it at 5 %, as the original would."""
    import json

    def run(guard, p, drawdowns):
        outs = []
        for dd in drawdowns:
            p.mark(10_000 * (1 - dd))
            out = guard.on_bar(p)
            p.apply(out)
            outs.append([a.kind for a in out])
        return outs

    original = HedgingGuard(only(use_drawdown=True))
    p = FakePortfolio(positions={"BTC/USDT": 4_000.0}, prices={"BTC/USDT": 1.0})
    assert run(original, p, [0.0, 0.11]) == [[], ["open_hedge"]]
    saved = json.loads(json.dumps(original.state(), allow_nan=False))
    restarted = HedgingGuard(only(use_drawdown=True))
    restarted.load_state(saved)
    assert restarted.state() == saved
    tail = [0.08, 0.06, 0.05, 0.07]
    p2 = attrs.evolve(p, hedges=set(p.hedges))
    assert run(restarted, p2, tail) == run(original, p, tail) == [[], [], ["close_hedge"], []]
    # without the saved state a fresh guard would never release the hedge it finds
    p3 = FakePortfolio(positions={"BTC/USDT": 4_000.0}, prices={"BTC/USDT": 1.0}, hedges={"*"})
    p3.mark(10_000), p3.mark(10_000 * 0.89)
    assert run(HedgingGuard(only(use_drawdown=True)), p3, tail)[2] == []
    with pytest.raises(ValueError, match="version"):
        HedgingGuard().load_state({"version": 9})


def test_protections_state_keeps_locks_losses_and_the_daily_limit_across_a_restart():
    import json

    original = Protections()
    original.on_trade_closed(trade(exit_reason="stop_loss", closed_at=T0 + HOUR, pnl=5.0), None)
    original.on_trade_closed(trade(symbol="ETH/USDT", exit_reason="signal", closed_at=T0), None)
    p = at(10, equity=9_600.0)
    original.on_bar(p)                                              # arms the daily limit
    restarted = Protections()
    restarted.load_state(json.loads(json.dumps(original.state(), allow_nan=False)))
    assert restarted.state() == original.state()
    q = at(6.5)
    assert restarted.allow_entry("BTC/USDT", Side.LONG, q) == original.allow_entry("BTC/USDT", Side.LONG, q)
    assert restarted.allow_entry("BTC/USDT", Side.LONG, q).startswith("daily_loss_limit")
    r = at(30)                                                     # next day: the cooldown and the limit are over
    assert restarted.allow_entry("BTC/USDT", Side.LONG, r) is None
    for g in (original, restarted):                                 # one more ETH loss locks ETH in both
        g.on_trade_closed(trade(symbol="ETH/USDT", exit_reason="signal", closed_at=T0 + 20 * HOUR), None)
    s = at(31)
    assert restarted.allow_entry("ETH/USDT", Side.LONG, s) == original.allow_entry("ETH/USDT", Side.LONG, s)
    assert restarted.allow_entry("ETH/USDT", Side.LONG, s).startswith("pair_lock")


def test_guard_state_is_kept_apart_from_the_learning_state(builtin_plugins_only):
    """``Pipeline.state()`` (the backtest's --state file) carries no guard state, whose locks would
    lie in another run's future; ``guard_state()`` (the live store) carries it and restores it."""
    from mlcoord.config import Settings
    from mlcoord.pipeline import build_pipeline

    def pipeline():
        return build_pipeline(Settings(), load_plugins({}))     # the six built-ins (fixture)

    live = pipeline()
    guards = {b.name: b.obj for b in live.components.guards}
    guards["protections"].on_trade_closed(trade(exit_reason="stop_loss", closed_at=T0 + HOUR), None)
    assert "protections" not in live.state()["components"] and "hedging" not in live.state()["components"]
    saved = live.guard_state()
    assert set(saved["guards"]) == {"protections", "hedging"}
    restarted = pipeline()
    restarted.load_guard_state(saved)
    again = {b.name: b.obj for b in restarted.components.guards}
    assert again["protections"].allow_entry("BTC/USDT", Side.LONG, at(3)).startswith("cooldown_after_stop")
    assert restarted.guard_state() == saved


def test_guards_see_the_warm_up_bars_in_paper_trading_and_in_a_backtest_with_a_start(builtin_plugins_only):
    """Guards' price statistics are ready when trading starts: a paper session replays its
    history through them (flat, actions ignored), and so does a backtest for the bars before its
    start; the hedging guard's volatility baseline (360 bars) is then available at once."""
    from mlcoord.backtest.run import run_backtest
    from mlcoord.candles import load_candles
    from mlcoord.config import Settings
    from mlcoord.datasets import bundled_path
    from mlcoord.live.runner import PaperTrader
    from mlcoord.pipeline import build_pipeline

    btc = load_candles(bundled_path("BTC/USDT")).slice(0, 1200)
    settings = Settings()
    paper = PaperTrader(build_pipeline(settings, load_plugins({})), settings, [btc.slice(0, 800)])
    hedging = {b.name: b.obj for b in paper.pipeline.components.guards}["hedging"]
    assert hedging._market.bar == 799                        # every history bar, once
    assert hedging._market.baseline("BTC/USDT") is not None and hedging._market.vol("BTC/USDT") > 0
    assert paper.portfolio.positions == {} and not paper.engine.portfolio.hedge_triggers   # actions ignored
    steps = paper.on_candles([btc])
    assert steps == 400 and hedging._market.bar == 1199

    calls = []

    class Counting:
        def on_bar(self, portfolio):
            calls.append(portfolio.time)
            return []

        def allow_entry(self, symbol, side, portfolio):
            return None

    def make(options):
        return Counting()

    class Plugin:
        @hookimpl
        def register_entry_guards(self, register):
            register("counting", make)

        @hookimpl
        def register_portfolio_watchers(self, register):
            register("counting", make)

    plugins = load_plugins({}, extra_plugins={"counting": Plugin()})
    dated = structure({"data": {"timerange": "20201010-", "higher_timeframes": []},
                       "engine": {"enable": ["counting"]}}, Settings)
    result = run_backtest(dated, plugins=plugins, candles=[btc])
    first = int(np.searchsorted(btc.time, result.raw.times[0]))
    assert first == 480                                      # 2020-09-20 + 20 days of warm-up bars
    assert calls == [int(t) for t in btc.time]               # the warm-up bars first, then every stepped one
