"""Report building stays linear in one big run (issue 14): the plotly calls a report makes do not
grow with the bars or the hedge periods (one shape list set once, never a shape per period), and
every hedged period is still shaded, on the equity and drawdown panels and on its symbol's price."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mlcoord.report import analysis as an
from mlcoord.report import build_report, charts
from mlcoord.report.page import Page

SYMBOL = "BTC/USDT"
PLOTLY_CALLS = ("add_trace", "add_traces", "add_shape", "add_vrect", "add_hrect", "add_vline", "add_hline",
                "add_annotation", "update_layout", "update_xaxes", "update_yaxes")


def iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").isoformat()


def synthetic_result(bars: int, hedges: int, seed: int = 3) -> dict:
    """A backtest result file's content: ``bars`` 1m candles and ``hedges`` hedge legs (each with an
    ordinary position it covers), the way ``BacktestResult.to_json`` writes them."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01", tz="UTC").value
    times = [iso(t0 + k * 60_000_000_000) for k in range(bars)]
    close = 40_000 * np.exp(np.cumsum(rng.standard_normal(bars) * 1e-3))
    trades, fills = [], []
    span = bars // max(hedges, 1)
    for k in range(hedges):
        a, b = k * span + 1, k * span + max(2, span // 2)
        for tid, hedge in ((2 * k, False), (2 * k + 1, True)):
            side = -1 if hedge else 1
            trades.append({"id": tid, "symbol": SYMBOL, "hedge": hedge, "side": side, "opened_at": times[a],
                           "closed_at": times[b], "entry_price": float(close[a]), "exit_price": float(close[b]),
                           "quantity": 0.1, "entries_filled": 1, "entries_planned": 1, "confidence": 0.6,
                           "pnl": 1.0, "fees": 0.1, "funding": 0.0, "exit_reason": "take_profit",
                           "entry_reason": "trend"})
            for i, reduce in ((a, False), (b, True)):
                fills.append({"symbol": SYMBOL, "hedge": hedge, "reduce_only": reduce, "side": side * (-1 if reduce else 1),
                              "order_id": f"{SYMBOL}:{a}:{'hedge' if hedge else 'entry:1'}", "quantity": 0.1,
                              "price": float(close[i]), "fee": 0.01, "time": times[i],
                              "tag": "take_profit" if reduce else "entry"})
    equity = (10_000 + np.cumsum(rng.standard_normal(bars))).round(6).tolist()
    group = {"m": {"trades": 1, "pnl": 1.0, "win_rate": 1.0}}
    return {
        "mlcoord_result": 2, "symbols": [SYMBOL], "timeframe": "1m",
        "stats": {"start": times[0], "end": times[-1], "bars": bars, "total_return": 0.01, "max_drawdown": 0.02,
                  "hedges": hedges, "cost_model": "test"},
        "breakdowns": {"per_month": group, "per_pair": group, "per_exit_reason": group, "per_entry_reason": group,
                       "per_dca_band": {"1 entries": {"plans": 1, "entries_planned": 1, "entries_filled": 1}},
                       "decision_outcomes": {"entered": 1}},
        "components": {}, "learning": {}, "notes": [], "plugins": {}, "errors": {},
        "equity": {"time": times, "value": equity},
        "trades": trades, "fills": fills, "decisions": [], "levels": [],
        "candles": {SYMBOL: {"time": times, "open": close.tolist(), "high": (close * 1.001).tolist(),
                             "low": (close * 0.999).tolist(), "close": close.tolist()}},
    }


@pytest.fixture
def plotly_calls(monkeypatch):
    """Counts the figure-building calls plotly re-validates the figure on, by name."""
    counts: Counter = Counter()
    for name in PLOTLY_CALLS:
        real = getattr(go.Figure, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(go.Figure, name, counted)
    return counts


@pytest.fixture
def figures(monkeypatch):
    """The figures a report puts on its page, in order."""
    seen: list[go.Figure] = []
    real = Page.figure

    def keep(self, fig, height=420):
        seen.append(fig)
        return real(self, fig, height)

    monkeypatch.setattr(Page, "figure", keep)
    return seen


def test_plotly_calls_do_not_grow_with_bars_or_hedge_periods(plotly_calls):
    build_report(synthetic_result(bars=600, hedges=3))
    small = Counter(plotly_calls)
    plotly_calls.clear()
    build_report(synthetic_result(bars=12_000, hedges=150))
    assert plotly_calls == small, "a figure call per bar, fill or hedge period is quadratic in plotly"
    for name in ("add_shape", "add_vrect", "add_annotation"):
        assert plotly_calls[name] == 0, name


def test_every_hedge_period_is_one_band_per_panel(figures):
    result = synthetic_result(bars=9_000, hedges=120)
    build_report(result)
    periods = [(an.naive(a), an.naive(b)) for a, b, _ in an.hedge_intervals(result)]
    assert len(periods) == 120
    equity, price = figures[0], figures[1]
    for fig, axes in ((equity, [("x", "y domain"), ("x2", "y2 domain")]), (price, [("x", "y domain")])):
        bands = [(s.x0, s.x1, s.xref, s.yref) for s in fig.layout.shapes]
        assert bands == [(a, b, x, y) for a, b in periods for x, y in axes]
        for s in fig.layout.shapes:
            assert (s.type, s.fillcolor, s.opacity, s.y0, s.y1, s.layer) == ("rect", "#8e44ad", 0.15, 0, 1, "below")
        assert sum(trace.name == "hedged" for trace in fig.data) == 1, "one legend entry for the bands"


def test_bands_are_what_add_vrect_made():
    """The batched bands equal plotly's own ``add_vrect`` shapes, on a plain figure and on subplots."""
    from plotly.subplots import make_subplots

    hedges = [("2024-01-01T00:00:00+00:00", "2024-01-01T02:00:00+00:00", SYMBOL),
              ("2024-01-02T00:00:00+00:00", "2024-01-02T05:30:00+00:00", SYMBOL)]
    def subplots() -> go.Figure:       # add_vrect skips empty subplots: a trace in each, as the report has
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True)
        for row in (1, 2):
            fig.add_trace(go.Scatter(x=["2024-01-01"], y=[1]), row, 1)
        return fig

    for make, axes in ((go.Figure, (("x", "y"),)), (subplots, (("x", "y"), ("x2", "y2")))):
        ours, theirs = make(), make()
        charts.shade_hedges(ours, hedges, axes)
        for opened, closed, _ in hedges:
            theirs.add_vrect(x0=an.naive(opened), x1=an.naive(closed), fillcolor="#8e44ad", opacity=0.15,
                             line_width=0, layer="below")
        assert ours.layout.shapes == theirs.layout.shapes


def test_no_hedges_no_bands(figures):
    build_report(synthetic_result(bars=500, hedges=0))
    assert all(not fig.layout.shapes for fig in figures[:2])
    assert all(trace.name != "hedged" for fig in figures for trace in fig.data)
