"""Two backtest results side by side: the figures compared, the curves overlaid."""

from __future__ import annotations

import html
from typing import Any

from mlcoord.report import analysis as an
from mlcoord.report import charts
from mlcoord.report.backtest_page import STAT_ROWS, components_table
from mlcoord.report.page import Page, grid, note, stat_table


#: statistics where less is better: a larger difference is coloured red, a smaller one green
LOWER_IS_BETTER = ("max drawdown", "fees paid", "funding paid")


def build(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> str:
    na, nb = names
    page = Page(f"mlcoord comparison: {na} vs {nb}",
                f"{na}: {', '.join(a['symbols'])} {a['timeframe']} · {nb}: {', '.join(b['symbols'])} {b['timeframe']}")
    s = page.section("statistics", "Statistics compared")
    rows = []
    for key, label, kind in STAT_ROWS:
        va, vb = a["stats"].get(key), b["stats"].get(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        signed = {"pct0": "pct", "price": "money"}.get(kind, kind)   # the difference shows its sign
        rows.append((label, (kind, kind, signed), va, vb, vb - va if numeric else None))
    s.append(stat_table(rows, ["", na, nb, f"{nb} − {na}"], lower_is_better=LOWER_IS_BETTER))
    s.append(grid(*(f"<h3>{html.escape(n)}: cost model</h3>" + note(r["stats"].get("cost_model", "")) +
                    f"<h3>{html.escape(n)}: components</h3>" + components_table(r) for n, r in ((na, a), (nb, b)))))
    s = page.section("equity", "Equity and drawdown")
    s.append(note("Both equity curves marked to each close; drawdowns from each curve's running peak underneath."))
    s.append(page.figure(charts.equity([(na, *an.equity_curve(a)), (nb, *an.equity_curve(b))]), 560))
    s = page.section("breakdowns", "Breakdowns compared")
    for key, title in (("per_exit_reason", "PnL per exit reason"), ("per_pair", "PnL per pair"),
                       ("per_month", "PnL per month")):
        ga, gb = a["breakdowns"][key], b["breakdowns"][key]
        cats = sorted(set(ga) | set(gb))
        s.append(f"<h3>{title}</h3>")
        s.append(page.figure(charts.grouped(cats, {na: [ga.get(c, {}).get("pnl", 0.0) for c in cats],
                                                   nb: [gb.get(c, {}).get("pnl", 0.0) for c in cats]}, "PnL"), 300))
    return page.html()

