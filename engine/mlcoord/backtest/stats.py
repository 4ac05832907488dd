"""Backtest statistics and breakdowns, from the loop's raw result."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from mlcoord.backtest.engine import RawResult
from mlcoord.times import iso

YEAR_NS = 365.25 * 24 * 3_600_000_000_000
CONFIDENCE_BINS = [0.0, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0]


def _per_period_sharpe(returns: np.ndarray, periods_per_year: float, downside: bool = False) -> float:
    if len(returns) < 2:
        return 0.0
    mean = returns.mean()
    if downside:
        neg = np.minimum(returns, 0.0)
        dev = math.sqrt((neg ** 2).mean())
    else:
        dev = returns.std(ddof=1)
    return float(mean / dev * math.sqrt(periods_per_year)) if dev > 0 else 0.0


def _group(trades, key) -> dict[str, dict[str, Any]]:
    groups: dict[str, list] = defaultdict(list)
    for t in trades:
        groups[key(t)].append(t)
    out = {}
    for name in sorted(groups):
        items = groups[name]
        wins = sum(1 for t in items if t.pnl > 0)
        out[name] = {"trades": len(items), "pnl": round(sum(t.pnl for t in items), 6),
                     "win_rate": round(wins / len(items), 6)}
    return out


def compute_stats(raw: RawResult) -> dict[str, Any]:
    equity = raw.equity
    initial = raw.initial_equity
    trades = [t for t in raw.trades if not t.hedge]
    hedges = [t for t in raw.trades if t.hedge]
    final = float(equity[-1]) if len(equity) else initial
    span_ns = float(raw.times[-1] - raw.times[0]) if len(raw.times) > 1 else 0.0
    years = span_ns / YEAR_NS
    periods_per_year = (len(equity) - 1) / years if years > 0 else 0.0
    returns = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.array([])
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    drawdown = 1.0 - equity / peak if len(equity) else equity
    gross_win = sum(t.pnl for t in trades if t.pnl > 0)
    gross_loss = -sum(t.pnl for t in trades if t.pnl < 0)
    wins = sum(1 for t in trades if t.pnl > 0)
    total_return = final / initial - 1.0
    cagr = (final / initial) ** (1.0 / years) - 1.0 if years > 0 and final > 0 else 0.0
    stats = {
        "start": iso(raw.times[0]) if len(raw.times) else None,
        "end": iso(raw.times[-1]) if len(raw.times) else None,
        "bars": int(len(raw.times)),
        "initial_equity": initial,
        "final_equity": round(final, 6),
        "total_return": round(total_return, 6),
        "cagr": round(cagr, 6),
        "sharpe": round(_per_period_sharpe(returns, periods_per_year), 4),
        "sortino": round(_per_period_sharpe(returns, periods_per_year, downside=True), 4),
        "max_drawdown": round(float(drawdown.max()) if len(drawdown) else 0.0, 6),
        "trades": len(trades),
        "win_rate": round(wins / len(trades), 6) if trades else 0.0,
        "profit_factor": round(gross_win / gross_loss, 4) if gross_loss > 0 else (math.inf if gross_win else 0.0),
        "exposure": round(float((raw.exposure > 0).mean()) if len(raw.exposure) else 0.0, 6),
        "fees_paid": round(sum(f.fee for f in raw.fills), 6),
        "funding_paid": round(sum(t.funding for t in raw.trades), 6),
        "hedges": len(hedges),
        "hedge_pnl": round(sum(t.pnl for t in hedges), 6),
        "cost_model": raw.cost_model.describe(),
    }
    return stats


def breakdowns(raw: RawResult) -> dict[str, Any]:
    trades = [t for t in raw.trades if not t.hedge]
    month = lambda t: iso(t.closed_at)[:7]  # noqa: E731  ("%Y-%m" without a Timestamp per trade)
    bands: dict[str, dict[str, Any]] = defaultdict(lambda: {"plans": 0, "entries_planned": 0, "entries_filled": 0,
                                                            "trades": 0, "wins": 0, "pnl": 0.0})
    for plan in raw.plans:
        b = bands[plan["band"]]
        b["plans"] += 1
        b["entries_planned"] += plan["planned"]
        b["entries_filled"] += plan["filled"]
    for t in trades:        # a trade's band: the entries its plan had (the DCA rule's output)
        b = bands[f"{t.entries_planned} entries"]
        b["trades"] += 1
        b["wins"] += t.pnl > 0
        b["pnl"] += t.pnl
    for b in bands.values():
        b["pnl"] = round(b["pnl"], 6)
        b["win_rate"] = round(b["wins"] / b["trades"], 6) if b["trades"] else None
    confidences = [d.confidence for d in raw.decisions if d.signal.action != 0]
    counts, _ = np.histogram(confidences, bins=CONFIDENCE_BINS) if confidences else (np.zeros(10, int), None)
    outcomes: dict[str, int] = defaultdict(int)
    for d in raw.decisions:
        outcomes[d.outcome] += 1
    return {
        "per_pair": _group(trades, lambda t: t.symbol),
        "per_month": _group(trades, month),
        "per_entry_reason": _group(trades, lambda t: t.entry_reason),
        "per_exit_reason": _group(trades, lambda t: t.exit_reason),
        "per_dca_band": dict(sorted(bands.items())),
        "confidence_histogram": {f"{lo:.2f}-{hi:.2f}": int(c) for lo, hi, c in
                                 zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:], counts)},
        "decision_outcomes": dict(sorted(outcomes.items())),
        "expected_return": expected_returns(raw.decisions),
    }


def expected_returns(decisions) -> dict[str, Any]:
    """The cost-aware entry's figures (decisions that reached a plan with levels): how many, how
    many it refused, and their spread (fractions of the average entry price)."""
    values = np.array([d.expected_return.value for d in decisions if d.expected_return is not None])
    refused = sum(1 for d in decisions if d.expected_return is not None and not d.expected_return.passed)
    spread = {k: float(f(values)) if len(values) else None for k, f in (("min", np.min), ("median", np.median),
                                                                         ("max", np.max))}
    return {"decisions": int(len(values)), "refused": refused, **spread}
