"""One self-contained HTML page: plotly.js inlined once, then sections of charts and tables.

The file opens offline, from a mail attachment or an archive, years later: no CDN, no fonts or
styles from the network. Div ids are fixed (not plotly's random ones), so the same result gives
the same file.
"""

from __future__ import annotations

import html
import math
from typing import Any, Collection, Iterable, Optional, Sequence

import plotly.graph_objects as go

PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c9d2dc}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde2e8;padding:6px 24px;z-index:10;font-size:13px}
nav a{margin-right:14px;color:#2a6fdb;text-decoration:none}
main{padding:8px 24px 40px;max-width:1500px}section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:16px 0;padding:12px 16px}
h2{font-size:17px;margin:4px 0 8px}h3{font-size:14px;margin:14px 0 6px}p.note{color:#5b6774;margin:4px 0 8px;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0 10px}th,td{padding:3px 9px;border-bottom:1px solid #eceff3;text-align:right;white-space:nowrap}
th{background:#f0f3f6;position:sticky;top:0}td.l,th.l{text-align:left}td.wrap{white-space:normal;text-align:left;max-width:420px}
.pos{color:#13803a}.neg{color:#c0392b}.grid{display:grid;gap:18px}.grid>div{min-width:0;overflow-x:auto}@media(max-width:900px){.grid{grid-template-columns:minmax(0,1fr)!important}}
.scroll{max-height:520px;overflow:auto;border:1px solid #eceff3}
"""


class Page:
    """Sections in order; :meth:`html` renders the whole file."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.sections: list[tuple[str, str, list[str]]] = []
        self._figures = 0

    def section(self, key: str, title: str) -> list[str]:
        """A new section (``id="key"``); returns the list its parts are appended to."""
        parts: list[str] = []
        self.sections.append((key, title, parts))
        return parts

    def figure(self, fig: go.Figure, height: int = 420) -> str:
        self._figures += 1
        fig.update_layout(height=height, margin=dict(l=60, r=20, t=60, b=40), template="plotly_white",
                          legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0))
        return fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG,
                           div_id=f"fig{self._figures}", default_width="100%", default_height=f"{height}px")

    def html(self) -> str:
        from plotly.offline import get_plotlyjs

        nav = "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t, _ in self.sections)
        body = "\n".join(f'<section id="{k}"><h2>{html.escape(t)}</h2>\n' + "\n".join(parts) + "</section>"
                         for k, t, parts in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style>\n"
                f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n<body>'
                f"<header><h1>{html.escape(self.title)}</h1><p>{html.escape(self.subtitle)}</p></header>"
                f"<nav>{nav}</nav><main>\n{body}\n</main></body></html>\n")


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def fmt(value: Any, kind: str = "") -> str:
    """A table cell: percentages, money and counts the way a trader reads them."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "time" and isinstance(value, str):   # ISO UTC from the result file
        return html.escape(value[:16].replace("T", " ") + " UTC")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return "∞" if value == math.inf else ("–" if math.isnan(value) else "-∞")
        if kind == "pct":
            return f"{value * 100:+.2f}%"
        if kind == "pct0":
            return f"{value * 100:.1f}%"
        if kind == "money":
            return f"{value:+,.2f}"
        if kind == "price":
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    return html.escape(str(value))


def table(rows: Iterable[Sequence[Any]], header: Sequence[str], kinds: Optional[Sequence[str]] = None,
          scroll: bool = False, left: int = 1) -> str:
    """An HTML table; ``kinds`` per column ("pct", "money", "price", "text", "wrap", ""); the first
    ``left`` columns are left-aligned. Money and percentages are coloured by sign."""
    kinds = list(kinds or [""] * len(header))
    head = "".join(f'<th class="{"l" if j < left else ""}">{html.escape(h)}</th>' for j, h in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for j, (v, k) in enumerate(zip(row, kinds)):
            cls = "wrap" if k == "wrap" else ("l" if j < left else "")
            if k in ("pct", "money") and isinstance(v, (int, float)) and v:
                cls += " pos" if v > 0 else " neg"
            cells.append(f'<td class="{cls.strip()}">{fmt(v, k)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    out = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def stat_table(rows: Iterable[Sequence[Any]], header: Sequence[str] = (),
               lower_is_better: Collection[str] = ()) -> str:
    """Rows of (label, kind, value, value, ...): each row's values formatted by that row's kind
    (statistics differ per row, not per column), or ``kind`` a tuple with one kind per value;
    money and percentages coloured by sign: a positive value green, or red in the rows labelled
    in ``lower_is_better`` (a larger drawdown or more fees)."""
    cells = []
    for label, kinds, *values in rows:
        tds = []
        good, bad = ("neg", "pos") if label in lower_is_better else ("pos", "neg")
        for v, kind in zip(values, kinds if isinstance(kinds, tuple) else [kinds] * len(values)):
            signed = kind in ("pct", "money") and isinstance(v, (int, float)) and not isinstance(v, bool) and v
            tds.append(f'<td class="{(good if v > 0 else bad) if signed else ""}">{fmt(v, kind)}</td>')
        cells.append(f'<tr><td class="l">{html.escape(label)}</td>{"".join(tds)}</tr>')
    head = ("<thead><tr>" + "".join(f'<th class="{"l" if j == 0 else ""}">{html.escape(h)}</th>'
                                    for j, h in enumerate(header)) + "</tr></thead>") if header else ""
    return f"<table>{head}<tbody>{''.join(cells)}</tbody></table>"


def grid(*parts: str) -> str:
    """Side by side. The column count is fixed up front: a chart is drawn as soon as its script is
    parsed, and must not be squeezed afterwards by a neighbour that arrives later."""
    return (f'<div class="grid" style="grid-template-columns:repeat({len(parts)},minmax(0,1fr))">'
            + "".join(f"<div>{p}</div>" for p in parts) + "</div>")
