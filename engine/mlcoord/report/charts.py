"""The figures, as plotly objects. Each function takes plain numbers and returns one figure."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlcoord.report import analysis as an

COLOURS = ["#2a6fdb", "#e8833a", "#13803a", "#8e44ad", "#c0392b", "#16a2b8", "#7f8c8d", "#d4ac0d"]
EXIT_STYLE = {   # exit reason -> (marker symbol, colour)
    "take_profit": ("star", "#13803a"), "partial_take_profit": ("star-open", "#13803a"),
    "stop_loss": ("x", "#c0392b"), "trailing_stop": ("x", "#e8833a"), "liquidation": ("x-thin", "#000000"),
}


def equity(curves: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
           hedges: Sequence[tuple[str, str, str]] = ()) -> go.Figure:
    """Equity on top, drawdown underneath (shared time axis); several curves overlay."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.04)
    for k, (name, t, eq, dd) in enumerate(curves):
        colour = COLOURS[k % len(COLOURS)]
        x, y = an.decimate(an.to_datetime(t), eq)
        fig.add_trace(go.Scatter(x=x, y=y, name=f"{name} equity", line=dict(color=colour, width=1.4)), 1, 1)
        x, y = an.decimate(an.to_datetime(t), -dd * 100)
        fig.add_trace(go.Scatter(x=x, y=y, name=f"{name} drawdown", fill="tozeroy", line=dict(color=colour, width=1),
                                 opacity=0.6, showlegend=len(curves) > 1), 2, 1)
    shade_hedges(fig, hedges, (("x", "y"), ("x2", "y2")))
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return fig


HEDGE_BAND = dict(type="rect", fillcolor="#8e44ad", opacity=0.15, line=dict(width=0), layer="below", y0=0, y1=1)


def shade_hedges(fig: go.Figure, hedges: Sequence[tuple[str, str, str]],
                 axes: Sequence[tuple[str, str]] = (("x", "y"),)) -> None:
    """Hedged periods as purple bands across the whole height of each subplot ``axes`` names
    ((x axis, y axis) pairs), with one legend entry. Every band is one layout shape (what
    ``add_vrect`` made), but the whole list is set in one layout update: ``add_vrect`` per period
    re-validated every shape already there, quadratic in the hedges (49 s for 204 hedges)."""
    if not hedges:
        return
    bands = [{**HEDGE_BAND, "x0": an.naive(opened), "x1": an.naive(closed), "xref": x, "yref": f"{y} domain"}
             for opened, closed, _ in hedges for x, y in axes]
    fig.update_layout(shapes=[*fig.layout.shapes, *bands])
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="hedged",
                             marker=dict(symbol="square", size=12, color="rgba(142,68,173,0.35)")))


def price(result: dict[str, Any], symbol: str) -> tuple[go.Figure, str]:
    """Candles with entries, DCA fills, exits, the stop / take-profit paths and hedges. Returns the
    figure and a note on downsampling."""
    frame = an.candle_frame(result, symbol)
    bars, label = an.downsample_candles(frame)
    fig = go.Figure(go.Candlestick(x=bars.index.values, open=bars["open"], high=bars["high"], low=bars["low"],
                                   close=bars["close"], name=f"{symbol} {label or result.get('timeframe', '')}".strip(),
                                   increasing_line_color="#26a69a", decreasing_line_color="#ef5350",
                                   line=dict(width=1)))
    xs, stops, tps = an.level_paths(result, symbol)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=stops, name="stop (trailing path)", mode="lines", line_shape="hv",
                                 line=dict(color="#c0392b", width=1.2, dash="dot"), connectgaps=False))
        if any(v is not None for v in tps):
            fig.add_trace(go.Scatter(x=xs, y=tps, name="take profit", mode="lines", line_shape="hv",
                                     line=dict(color="#13803a", width=1.2, dash="dot"), connectgaps=False))
    fills = an.fill_markers(result, symbol)
    _fill_trace(fig, fills["entry"], "entry", lambda f: "triangle-up" if f["side"] == 1 else "triangle-down",
                lambda f: "#13803a" if f["side"] == 1 else "#c0392b", 11)
    _fill_trace(fig, fills["ladder"], "DCA fill", lambda f: "circle", lambda f: "#2a6fdb", 7)
    by_reason: dict[str, list] = {}
    for f in fills["exit"]:
        by_reason.setdefault(f["tag"] if f["tag"] in EXIT_STYLE else "other exit", []).append(f)
    for reason, items in sorted(by_reason.items()):
        symbol_, colour = EXIT_STYLE.get(reason, ("square", "#34495e"))
        _fill_trace(fig, items, f"exit: {reason.replace('_', ' ')}", lambda f, s=symbol_: s,
                    lambda f, c=colour: c, 10)
    _fill_trace(fig, fills["hedge"], "hedge fill", lambda f: "diamond", lambda f: "#8e44ad", 9)
    shade_hedges(fig, [h for h in an.hedge_intervals(result) if h[2] == symbol])
    fig.update_layout(xaxis_rangeslider_visible=False, yaxis_title="price", hovermode="closest")
    text = (f"{len(frame):,} {result.get('timeframe', '')} bars drawn as {len(bars):,} {label} candles; "
            "markers and level paths keep their exact times and prices." if label else "")
    return fig, text


def _fill_trace(fig: go.Figure, fills: list[dict], name: str, symbol, colour, size: int) -> None:
    if not fills:
        return
    text = [f"{f['tag']} {'long' if f['side'] == 1 else 'short'}{' hedge' if f.get('hedge') else ''}<br>"
            f"{f['quantity']:.6g} @ {f['price']:,.2f}<br>fee {f['fee']:.2f}<br>{f['time']}" for f in fills]
    fig.add_trace(go.Scatter(
        x=[an.naive(f["time"]) for f in fills], y=[f["price"] for f in fills], mode="markers", name=name,
        hovertext=text, hoverinfo="text",
        marker=dict(symbol=[symbol(f) for f in fills], color=[colour(f) for f in fills], size=size,
                    line=dict(width=0.8, color="#1d2733"))))


def bars(groups: dict[str, dict[str, Any]], value: str = "pnl", title: str = "") -> go.Figure:
    names = list(groups)
    values = [groups[n][value] for n in names]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=["#13803a" if v >= 0 else "#c0392b" for v in values],
                           hovertext=[f"{groups[n].get('trades', '')} trades" for n in names]))
    fig.update_layout(title=title, yaxis_title=value, xaxis_type="category")
    return fig


def lines(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    for k, (name, (t, y)) in enumerate(series.items()):
        idx = an.thin(len(y))
        fig.add_trace(go.Scatter(x=an.to_datetime(t[idx]), y=y[idx], name=name, mode="lines",
                                 line=dict(color=COLOURS[k % len(COLOURS)], width=1.3)))
    fig.update_layout(title=title, yaxis_title=y_title)
    return fig


def accuracy(scores: dict[str, dict[str, np.ndarray]], window: int) -> go.Figure:
    """Cumulative accuracy per component, with a button for the rolling one."""
    fig = go.Figure()
    names = list(scores)
    for kind in ("cumulative", "rolling"):
        for k, name in enumerate(names):
            s = scores[name]
            idx = an.thin(len(s["time"]))
            fig.add_trace(go.Scatter(x=an.to_datetime(s["time"][idx]), y=s[kind][idx] * 100, name=name,
                                     mode="lines", visible=kind == "cumulative",
                                     line=dict(color=COLOURS[k % len(COLOURS)], width=1.3)))
    fig.add_hline(y=50, line=dict(color="#7f8c8d", dash="dash", width=1))
    n = len(names)
    fig.update_layout(yaxis_title="accuracy %", updatemenus=[dict(
        type="buttons", direction="right", x=1, xanchor="right", y=1.18, yanchor="top", buttons=[
            dict(label="cumulative", method="update", args=[{"visible": [True] * n + [False] * n}]),
            dict(label=f"last {window} predictions", method="update", args=[{"visible": [False] * n + [True] * n}]),
        ])])
    return fig


def reliability(tables: dict[str, list[dict]]) -> go.Figure:
    """Predicted probability against observed frequency, per bin; marker size ~ count."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line=dict(color="#7f8c8d", dash="dash", width=1)))
    for k, (name, rows) in enumerate(tables.items()):
        rows = [r for r in rows if r["count"]]
        if not rows:
            continue
        counts = np.asarray([r["count"] for r in rows], float)
        fig.add_trace(go.Scatter(
            x=[r["predicted"] for r in rows], y=[r["observed"] for r in rows], name=name, mode="lines+markers",
            line=dict(color=COLOURS[k % len(COLOURS)]),
            marker=dict(size=6 + 18 * np.sqrt(counts / counts.max())),
            hovertext=[f"bin {r['bin']}: n={r['count']}, predicted {r['predicted']:.3f}, observed {r['observed']:.3f}"
                       for r in rows], hoverinfo="text"))
    fig.update_layout(xaxis=dict(title="predicted probability", range=[0, 1]),
                      yaxis=dict(title="observed frequency of the event", range=[0, 1]))
    return fig


def histogram(samples: dict[str, Sequence[float]], threshold: float | None = None) -> go.Figure:
    fig = go.Figure()
    for k, (name, values) in enumerate(samples.items()):
        fig.add_trace(go.Histogram(x=list(values), name=name, xbins=dict(start=0, end=1, size=0.02), opacity=0.6,
                                   marker_color=COLOURS[k % len(COLOURS)]))
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color="#c0392b", dash="dash", width=1),
                      annotation_text=f"min confidence {threshold:.2f}")
    fig.update_layout(barmode="overlay", xaxis=dict(title="confidence", range=[0, 1]), yaxis_title="decisions")
    return fig


def grouped(categories: Sequence[str], series: dict[str, Sequence[float]], y_title: str) -> go.Figure:
    fig = go.Figure([go.Bar(x=list(categories), y=list(v), name=name, marker_color=COLOURS[k % len(COLOURS)])
                     for k, (name, v) in enumerate(series.items())])
    fig.update_layout(barmode="group", yaxis_title=y_title, xaxis_type="category")
    return fig

