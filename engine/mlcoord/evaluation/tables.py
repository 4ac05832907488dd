"""The evaluation's tables as text (terminal) and Markdown (the README), from the result dict
alone, so the README section is regenerated from a run's JSON without re-running anything."""

from __future__ import annotations

import math
from typing import Any, Optional

from mlcoord.evaluation.arms import ARMS

SCORE_COLUMNS = (  # (field, header, digits)
    ("auc", "AUC", 3), ("log_loss", "log-loss", 4), ("skill_vs_in_sample", "skill vs clim. in-sample", 4),
    ("skill_vs_causal", "skill vs clim. causal", 4), ("ece", "ECE 10 eq-width", 3),
    ("ece_mass15", "ECE 15 eq-mass", 3), ("brier", "Brier", 4), ("accuracy", "accuracy", 3))
ARM_ORDER = ARMS


def _num(v: Any, digits: int, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v * 100:+.{digits}f} %" if pct else f"{v:.{digits}f}"


def _ci(ci: Optional[list], digits: int, pct: bool = False) -> str:
    if not ci or ci[0] is None:
        return ""
    return f" [{_num(ci[0], digits, pct)}, {_num(ci[1], digits, pct)}]"


def _cell(row: dict, field: str, digits: int) -> str:
    if field not in row:
        return "n/a"
    return _num(row[field], digits) + _ci(row.get("ci", {}).get(field), digits)


def _minus(text: str) -> str:
    return text.replace("-", "−") if text[:1] == "-" or " -" in text or "[-" in text else text


def score_rows(table: dict[str, dict]) -> list[list[str]]:
    return [[name, f"{row.get('n', 0):,}"] + [_cell(row, f, d) for f, _, d in SCORE_COLUMNS]
            for name, row in table.items()]


def arm_rows(arms: dict[str, Any]) -> list[list[str]]:
    out = []
    for name in ARM_ORDER:
        a = arms["arms"].get(name)
        if a is None:
            continue
        out.append([name, f"{a['trades']:,}",
                    _num(a["total_return"], 2, True) + _ci(a["total_return_ci"], 2, True),
                    _num(a["per_trade_return"], 3, True) + _ci(a["per_trade_return_ci"], 3, True),
                    _num(a["mean_return"], 2, True), f"{a['mean_sharpe']:.2f}", f"{a['worst_drawdown'] * 100:.1f} %"])
    for name, d in arms["differences"].items():
        out.append([f"difference: {name}", "",
                    _num(d["total_return"], 2, True) + _ci(d["total_return_ci"], 2, True),
                    _num(d["per_trade_return"], 3, True) + _ci(d["per_trade_return_ci"], 3, True), "", "", ""])
    return out


ARM_HEADER = ["trading arm", "trades", "total net return [95 % CI]", "net PnL per trade, % of equity [95 % CI]",
              "mean return per symbol-window", "mean Sharpe", "worst drawdown"]


def _difference_lines(diffs: dict) -> list[str]:
    return [f"{name}: ΔAUC {_num(d['auc'], 3)}{_ci(d['auc_ci'], 3)}, Δskill vs causal climatology "
            f"{_num(d['skill_vs_causal'], 4)}{_ci(d['skill_vs_causal_ci'], 4)}" for name, d in diffs.items()]


def label_of(pop: dict) -> str:
    """What a population scored, for its heading: ``event label`` or ``trade label (exits, horizon 24)``
    (files before evaluation schema 3 scored the event)."""
    label = pop.get("label", "event")
    b = pop.get("barriers") or {}
    return f"{label} label" + (f" ({b['exit_manager']} barriers, horizon {b['horizon']})" if "exit_manager" in b else "")


def _header(result: dict) -> list[str]:
    split = result.get("split")
    b = result.get("bootstrap", {})
    scored = sorted({pop.get("label", "event") for pop in result.get("populations", {}).values()})
    lines = [f"walk-forward: {len(result['windows'])} windows of {', '.join(result.get('symbols', []))}; "
             f"event: {result['event']}" + ("" if scored in ([], ["event"]) else f"; scored: {', '.join(scored)} label")]
    if split:
        lines.append(f"part: {split['part']} (holdout from {split['holdout_from'][:10]}, {split['chosen_by']}); "
                     f"config hash {result.get('config_hash')}")
    if b:
        lines.append(f"intervals: 95 % weekly-block bootstrap, {b['resamples']:,} resamples of {b['weeks']} weeks "
                     f"(seed {b['seed']}; symbols resampled together)")
    return lines


def render_text(result: dict[str, Any]) -> str:
    lines = _header(result)
    for name, pop in result.get("populations", {}).items():
        lines += ["", f"scored: {name}, {label_of(pop)} - {pop['event']}"]
        rows = [["row", "n"] + [h for _, h, _ in SCORE_COLUMNS]] + score_rows(pop["scores"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in rows]
        lines += ["  " + line for line in _difference_lines(pop.get("differences", {}))]
    if "trading_arms" in result:
        lines += ["", "trading arms, fees included, same windows:"]
        rows = [ARM_HEADER] + arm_rows(result["trading_arms"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in rows]
    for line in result.get("failures", []):
        lines.append(f"  FAILED {line}")
    return "\n".join(lines)


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_minus(c) for c in r) + " |" for r in rows]
    return out


def render_markdown(result: dict[str, Any]) -> str:
    """The README's tables (every population, the differences, the trading arms)."""
    lines = []
    for name, pop in result.get("populations", {}).items():
        lines += [f"Scored: **{name.replace('_', ' ')}**, {label_of(pop)} — {pop['event']}.", ""]
        lines += _md(["row", "n"] + [h for _, h, _ in SCORE_COLUMNS], score_rows(pop["scores"]))
        diffs = _difference_lines(pop.get("differences", {}))
        if diffs:
            lines += ["", "Paired differences (same bootstrap draws): " + "; ".join(diffs) + "."]
        lines.append("")
    if "trading_arms" in result:
        lines += _md(ARM_HEADER, arm_rows(result["trading_arms"]))
    return "\n".join(lines)
