"""The report of one backtest result: what a trader looks at before trusting a strategy."""

from __future__ import annotations

from typing import Any

from mlcoord.report import analysis as an
from mlcoord.report import charts
from mlcoord.report.page import Page, grid, note, stat_table, table

STAT_ROWS = [  # key, label, kind
    ("start", "start", "time"), ("end", "end", "time"), ("bars", "bars", ""),
    ("initial_equity", "initial equity", "price"), ("final_equity", "final equity", "price"),
    ("total_return", "total return", "pct"), ("cagr", "CAGR", "pct"), ("max_drawdown", "max drawdown", "pct0"),
    ("sharpe", "Sharpe", ""), ("sortino", "Sortino", ""), ("trades", "trades", ""), ("win_rate", "win rate", "pct0"),
    ("profit_factor", "profit factor", ""), ("exposure", "time in market", "pct0"), ("fees_paid", "fees paid", "price"),
    ("funding_paid", "funding paid", "price"), ("hedges", "hedges", ""), ("hedge_pnl", "hedge PnL", "money"),
]
GROUP_HEADER = ["", "trades", "PnL", "win rate"]
GROUP_KINDS = ["", "", "money", "pct0"]


def group_rows(groups: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [[name, g["trades"], g["pnl"], g["win_rate"]] for name, g in groups.items()]


def build(result: dict[str, Any], title: str = "") -> str:
    stats = result["stats"]
    page = Page(title or f"mlcoord backtest: {', '.join(result['symbols'])} {result['timeframe']}",
                f"{an.naive(stats.get('start') or '')} → {an.naive(stats.get('end') or '')} UTC · "
                f"{stats.get('bars', 0):,} bars · total {stats.get('total_return', 0) * 100:+.2f}% · "
                f"max drawdown {stats.get('max_drawdown', 0) * 100:.2f}%")
    _summary(page, result)
    hedges = an.hedge_intervals(result)
    t, eq, dd = an.equity_curve(result)
    s = page.section("equity", "Equity and drawdown")
    s.append(note("Equity marked to each close, drawdown from the running peak underneath; "
                  "purple bands are hedged periods." if hedges else
                  "Equity marked to each close, drawdown from the running peak underneath."))
    s.append(page.figure(charts.equity([("", t, eq, dd)], hedges), 520))
    for k, symbol in enumerate(result["symbols"]):
        s = page.section(f"price-{k}" if k else "price", f"Price and trades: {symbol}")
        fig, text = charts.price(result, symbol)
        s.append(note("Entries (triangles), DCA fills (dots), exits by reason, the stop's trailing path and "
                      "the take-profit (dotted steps, set at each bar's close) and hedges (diamonds, bands). "
                      + text))
        s.append(page.figure(fig, 620))
    _breakdowns(page, result)
    _trades(page, result)
    if an.has_ml(result):
        _learning(page, result)
    return page.html()


def _summary(page: Page, result: dict[str, Any]) -> None:
    stats = result["stats"]
    s = page.section("statistics", "Statistics and cost model")
    s.append(grid(stat_table((label, kind, stats.get(key)) for key, label, kind in STAT_ROWS),
                  "<h3>Cost model</h3>" + note(stats.get("cost_model", "")) +
                  "<h3>Components</h3>" + components_table(result) +
                  ("<h3>Component failures</h3>" + table(result["errors"].items(), ["component", "failures"])
                   if result.get("errors") else "")))


def components_table(result: dict[str, Any]) -> str:
    return table([[k, v if isinstance(v, str) else ", ".join(v) if v else "–"]
                  for k, v in result.get("components", {}).items()], ["role", "component(s)"], ["", "wrap"])


def _breakdowns(page: Page, result: dict[str, Any]) -> None:
    b = result["breakdowns"]
    s = page.section("breakdowns", "Breakdowns")
    s.append(page.figure(charts.bars(b["per_month"], title="PnL per month (by close)"), 300))
    s.append(grid("<h3>Per pair</h3>" + table(group_rows(b["per_pair"]), GROUP_HEADER, GROUP_KINDS),
                  "<h3>Per exit reason</h3>" + table(group_rows(b["per_exit_reason"]), GROUP_HEADER, GROUP_KINDS)))
    bands = [[k, v["plans"], v["entries_planned"], v["entries_filled"],
              v["entries_filled"] / v["entries_planned"] if v["entries_planned"] else None,
              v.get("trades"), v.get("win_rate"), v.get("pnl")]
             for k, v in b["per_dca_band"].items()]
    s.append(grid("<h3>Per DCA band</h3>" + table(bands, ["band", "plans", "legs planned", "legs filled", "fill rate",
                                                          "trades", "win rate", "PnL"],
                                                  ["", "", "", "", "pct0", "", "pct0", "money"]),
                  "<h3>Decisions</h3>" + table(b["decision_outcomes"].items(), ["outcome", "decisions"])
                  + _expected_return(b.get("expected_return"))))
    s.append("<h3>Per entry reason</h3>" + table(group_rows(b["per_entry_reason"]), GROUP_HEADER,
                                                   ["wrap", "", "money", "pct0"]))
    s.append("<h3>Per month</h3>" + table(group_rows(b["per_month"]), GROUP_HEADER, GROUP_KINDS, scroll=True))


def _expected_return(figures: Any) -> str:
    """The cost-aware entry's figures (absent from result files before issue 16)."""
    if not figures or not figures["decisions"]:
        return ""
    return note(f"Expected net return (p x reward - (1 - p) x risk - costs, on the average entry) of the "
                f"{figures['decisions']:,} decisions with a plan and levels: min {figures['min'] * 100:+.3f}%, median "
                f"{figures['median'] * 100:+.3f}%, max {figures['max'] * 100:+.3f}%; {figures['refused']:,} refused "
                f"by [engine] min_expected_return.")


def _trades(page: Page, result: dict[str, Any]) -> None:
    s = page.section("trades", "Trades")
    rows = [[t["id"], t["symbol"], ("hedge " if t["hedge"] else "") + ("long" if t["side"] == 1 else "short"),
             an.naive(t["opened_at"]), an.naive(t["closed_at"]), t["entry_price"], t["exit_price"], t["quantity"],
             f"{t['entries_filled']}/{t['entries_planned']}", t["confidence"], t["pnl"], t["fees"], t["funding"],
             t["exit_reason"], t["entry_reason"]] for t in result.get("trades", [])]
    s.append(note(f"{len(rows)} trades (hedge legs included); PnL net of fees and funding."))
    s.append(table(rows, ["id", "symbol", "side", "opened", "closed", "entry", "exit", "quantity", "legs",
                          "confidence", "PnL", "fees", "funding", "exit reason", "entry reason"],
                   ["", "", "", "", "", "price", "price", "", "", "", "money", "price", "price", "", "wrap"],
                   scroll=True, left=5))


def _learning(page: Page, result: dict[str, Any]) -> None:
    learning = result.get("learning", {})
    resolved = an.outcomes(result)
    s = page.section("learning", "ML coordinator")
    s.append(note(f"Event every probability refers to: {learning.get('event', '')}. "
                  f"Models trained until {learning.get('trained_until') or 'n/a'}."))
    scores = learning.get("component_scores", {})
    weights = learning.get("ensemble_weights", {})
    coefficients = learning.get("ensemble_coefficients")
    if scores and coefficients is not None:
        s.append(table([[k, coefficients.get(k), "faded" if (coefficients.get(k) or 0.0) < 0 else "",
                         weights.get(k), v["outcomes"], v["accuracy"], v["log_loss"]] for k, v in scores.items()],
                       ["component", "final coefficient", "", "share of |coefficients|", "outcomes", "accuracy",
                        "log-loss"], ["", "", "", "", "", "pct0", ""]))
        s.append(note(f"The ensemble's log-odds are the intercept ({learning.get('ensemble_intercept') or 0.0:+.3f}) "
                      "plus each coefficient times its contributor's log-odds: a negative coefficient means the "
                      "ensemble learned to bet against (fade) that contributor."))
    elif scores:
        s.append(table([[k, weights.get(k), v["outcomes"], v["accuracy"], v["log_loss"]] for k, v in scores.items()],
                       ["component", "final weight", "outcomes", "accuracy", "log-loss"], ["", "", "", "pct0", ""]))
    if an.has_coefficients(result):
        s.append("<h3>Component coefficients over time</h3>" + note(
            "Each contributor's signed ensemble coefficient at every decision; below 0 the ensemble fades it."))
        s.append(page.figure(charts.lines(an.weights_over_time(result, "coefficient"), "", "coefficient"), 340))
    else:
        s.append("<h3>Component weights over time</h3>" + note(
            "Each contributor's share of the ensemble's absolute coefficients at every decision (this result "
            "file predates signed coefficients: the share hides whether a contributor is faded)."))
        s.append(page.figure(charts.lines(an.weights_over_time(result), "", "weight"), 340))
    acc = an.running_accuracy(result, resolved)
    s.append("<h3>Running accuracy</h3>" + note("Share of predictions on the right side of 1/2, both "
             "directions of every decision, plotted when the outcome became known (horizon closed)."))
    s.append(page.figure(charts.accuracy(acc, an.ROLLING_OUTCOMES), 340))
    cal = an.calibration(result, resolved)
    threshold = next((d["threshold"] for d in result.get("decisions", [])), None)
    ece = lambda v: f"{v:.3f}" if v is not None else "n/a"  # noqa: E731
    s.append("<h3>Confidence and calibration</h3>" + note(
        f"{cal['n']} BUY/SELL decisions whose horizon closed. Expected calibration error: "
        f"before calibration {ece(cal['ece_raw'])}, after {ece(cal['ece_calibrated'])}."))
    s.append(grid(page.figure(charts.histogram({"before calibration": cal["raw"],
                                                "after calibration": cal["calibrated"]}, threshold), 360),
                  page.figure(charts.reliability({"before calibration": cal["reliability_raw"],
                                                  "after calibration": cal["reliability_calibrated"]}), 360)))
