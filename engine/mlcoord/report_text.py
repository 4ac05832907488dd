"""The readable summary ``mlcoord backtest`` prints."""

from __future__ import annotations

from mlcoord.times import strftime


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _expected_line(figures) -> list[str]:
    if not figures or not figures["decisions"]:
        return []
    return [f"  exp. return   {figures['decisions']} planned decisions: min {figures['min'] * 100:+.3f}%, median "
            f"{figures['median'] * 100:+.3f}%, max {figures['max'] * 100:+.3f}%; {figures['refused']} refused"]


def summary(result, show_trades: int = 10) -> str:
    s, b = result.stats, result.breakdowns
    lines = [
        f"mlcoord backtest: {', '.join(result.symbols)} {result.timeframe}  {s['start']} -> {s['end']} ({s['bars']} bars)",
        "components: " + "; ".join(f"{k}={v}" for k, v in result.components.items() if v),
        *(f"note: {n}" for n in getattr(result, "notes", ())),
        "",
        f"  equity        {s['initial_equity']:.2f} -> {s['final_equity']:.2f}   total {_pct(s['total_return'])}"
        f"   CAGR {_pct(s['cagr'])}",
        f"  risk          max drawdown {s['max_drawdown'] * 100:.2f}%   Sharpe {s['sharpe']:.2f}   Sortino {s['sortino']:.2f}",
        f"  trades        {s['trades']}   win rate {s['win_rate'] * 100:.1f}%   profit factor {s['profit_factor']:.2f}"
        f"   time in market {s['exposure'] * 100:.1f}%",
        f"  costs         fees {s['fees_paid']:.2f}   funding {s['funding_paid']:.2f}   hedges {s['hedges']}"
        f" (PnL {s['hedge_pnl']:.2f})",
        f"  cost model    {s['cost_model']}",
        "",
        "  decisions     " + ", ".join(f"{k} {v}" for k, v in b["decision_outcomes"].items()),
        *_expected_line(b.get("expected_return")),
        "  DCA bands     " + ", ".join(f"{k}: {v['plans']} plans, {v['entries_filled']}/{v['entries_planned']} legs filled"
                                       + _band_trades(v) for k, v in b["per_dca_band"].items()),
        "  confidence    " + " ".join(f"{k}:{v}" for k, v in b["confidence_histogram"].items() if v),
        "  exits         " + ", ".join(f"{k} {v['trades']} ({v['pnl']:+.0f})" for k, v in b["per_exit_reason"].items()),
    ]
    if len(b["per_pair"]) > 1:
        lines.append("  per pair      " + ", ".join(f"{k} {v['trades']} ({v['pnl']:+.0f})" for k, v in b["per_pair"].items()))
    reasons = sorted(b["per_entry_reason"].items(), key=lambda kv: -kv[1]["trades"])[:5]
    if reasons:
        lines.append("  top entry reasons:")
        lines += [f"    {v['trades']:>4} trades  pnl {v['pnl']:>+10.2f}  {k}" for k, v in reasons]
    trades = [t for t in result.raw.trades if not t.hedge][-show_trades:] if show_trades else []
    if trades:
        lines.append(f"  last {len(trades)} trades:")
        for t in trades:
            opened = strftime(t.opened_at, "%Y-%m-%d %H:%M")
            lines.append(f"    {opened} {t.symbol} {t.side.name:<5} {t.entries_filled}/{t.entries_planned} legs "
                         f"{t.entry_price:>10.2f} -> {t.exit_price:>10.2f}  {t.pnl:>+9.2f}  {t.exit_reason}")
    scores = result.learning.get("component_scores") or {}
    if scores:
        coefficients = result.learning.get("ensemble_coefficients", {})
        lines.append(f"  learning      {result.learning['event']}")
        for name, sc in scores.items():
            acc = f"{sc['accuracy'] * 100:.1f}%" if sc["accuracy"] is not None else "n/a"
            loss = f"{sc['log_loss']:.3f}" if sc["log_loss"] is not None else "n/a"
            coef = coefficients.get(name, 0.0)
            lines.append(f"    {name:<12} coef {coef:+.3f}{' (faded)' if coef < 0 else '        '}  accuracy {acc}"
                         f"  log-loss {loss}  ({sc['outcomes']} outcomes)")
    if result.raw.errors:
        lines.append("  component failures (left out of those decisions): " +
                     ", ".join(f"{k} x{v}" for k, v in result.raw.errors.items()))
    lines.append(f"  time: load {result.elapsed['load']:.2f}s, prepare {result.elapsed['prepare']:.2f}s, "
                 f"loop {result.elapsed['loop']:.2f}s")
    return "\n".join(lines)


def _band_trades(band: dict) -> str:
    """The band's closed trades and realised win rate (absent from result files before them)."""
    if not band.get("trades"):
        return ""
    return f", {band['trades']} trades won {band['win_rate'] * 100:.0f}%"
