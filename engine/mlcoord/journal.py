"""The decision journal: every decision as data, and its structlog event.

One ``decision`` event per decision records each contributor's vote, weight and reasons, the raw
and calibrated confidence, the plan, the sizing and any veto. On a terminal it renders as a
readable block (see :func:`render_decision`); otherwise it is one JSON line.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import structlog

from mlcoord import logs
from mlcoord.model import Decision, GuardAction, Vote
from mlcoord.times import iso

log = structlog.get_logger("mlcoord.decisions")


def _vote_dict(v: Vote) -> dict[str, Any]:
    out = {"component": v.component, "display_name": v.display_name or v.component, "signal": v.action.name, "confidence": round(v.confidence, 6),
           "weight": v.weight, "reasons": list(v.reasons)}
    if v.p_up is not None:
        out["p_up"] = round(v.p_up, 6)
    if v.p_down is not None:
        out["p_down"] = round(v.p_down, 6)
    if v.coefficient is not None:
        out["coefficient"] = v.coefficient
        out["contribution"] = v.contribution
        out["faded"] = v.faded
    return out


def vote_weight_text(vote: Mapping[str, Any]) -> str:
    """How a vote's ensemble figure reads: the signed coefficient (and "faded" when negative) and
    the contribution to the log-odds; a vote from a file without them shows its old weight."""
    coefficient = vote.get("coefficient")
    if coefficient is None:
        return f"weight {vote['weight']:.2f}"
    return (f"coef {coefficient:+.3f}{' (faded)' if coefficient < 0 else ''}, "
            f"contribution {vote.get('contribution') or 0.0:+.3f}")


def decision_to_dict(d: Decision) -> dict[str, Any]:
    """Plain data for JSON and logs."""
    out: dict[str, Any] = {
        "time": iso(d.time), "symbol": d.symbol, "outcome": d.outcome,
        "signal": d.signal.action.name, "technical_signal": d.technical.action.name,
        "raw_confidence": round(d.raw_confidence, 6), "confidence": round(d.confidence, 6),
        "threshold": d.threshold,
        "votes": [_vote_dict(v) for v in d.votes],
        "reasons": list(d.signal.reasons),
    }
    if d.p_signal is not None:
        out["p_signal"] = round(d.p_signal, 6)
    if d.calibrator:
        out["calibrator"] = d.calibrator
    if d.plan is not None:
        out["plan"] = {"planner": d.plan.planner, "side": d.plan.side.name,
                       "legs": [{"price": leg.price, "fraction": leg.fraction, "market": leg.market}
                                for leg in d.plan.legs], "reasons": list(d.plan.reasons)}
    if d.levels is not None:
        out["levels"] = {"stop": d.levels.stop, "take_profit": d.levels.take_profit,
                         "reasons": list(d.levels.reasons)}
    if d.sizing is not None:
        out["sizing"] = {"quantity": d.sizing.quantity, "risk": d.sizing.risk, "reasons": list(d.sizing.reasons),
                         "veto": d.sizing.veto}
    if d.expected_return is not None:
        e = d.expected_return
        out["expected_return"] = {"value": round(e.value, 8), "probability": round(e.probability, 6),
                                  "reward": round(e.reward, 8), "risk": round(e.risk, 8), "costs": round(e.costs, 8),
                                  "minimum": e.minimum, "text": e.describe()}
    if d.veto:
        out["veto"] = d.veto
    return out


class Journal:
    """Keeps decisions in memory and emits one structlog event per decision."""

    def __init__(self, keep: bool = True):
        self.decisions: list[Decision] = []
        self.keep = keep

    def record(self, decision: Decision) -> None:
        if self.keep:
            self.decisions.append(decision)
        if _enabled(logging.INFO):
            log.info("decision", **decision_to_dict(decision))

    def guard(self, guard: str, action: GuardAction, portfolio: Any) -> None:
        log.info("guard_action", guard=guard, action=action.kind, reason=action.reason, symbol=action.symbol,
                    fraction=action.fraction, time=iso(portfolio.time), equity=round(portfolio.equity, 2),
                    drawdown=round(portfolio.drawdown, 4))


def _enabled(level: int) -> bool:
    """Building a decision event costs time; skip it when nothing would print it."""
    return logs.current_level() <= level


_DIGITS = ["1\ufe0f\u20e3", "2\ufe0f\u20e3", "3\ufe0f\u20e3", "4\ufe0f\u20e3", "5\ufe0f\u20e3",
           "6\ufe0f\u20e3", "7\ufe0f\u20e3", "8\ufe0f\u20e3", "9\ufe0f\u20e3"]


def render_decision(event: Mapping[str, Any]) -> str:
    """The terminal block of a decision, as in the product's log example."""
    votes = event.get("votes", [])
    lines = [f"🤖 ML STRATEGY COORDINATOR - UNIFIED ANALYSIS  {event.get('symbol')} {event.get('time')}"]
    for n, vote in enumerate(votes):
        mark = _DIGITS[n] if n < len(_DIGITS) else f"{n + 1}."
        name = vote.get("display_name") or vote["component"]
        reasons = "; ".join(vote["reasons"][:3])
        lines.append(f"{mark}  {name}: {vote['signal']} (conf: {vote['confidence']:.0%}, {vote_weight_text(vote)})"
                     f"{'  - ' + reasons if reasons else ''}")
    if len(votes) > 1 and any(v.get("coefficient") is not None for v in votes):
        lines.append(f"🧮 {'; '.join(event.get('reasons', [])[:2])}")    # the ensemble's verdict and its sum
    lines.append(f"🎯 UNIFIED SIGNAL: {event.get('signal')}  ({event.get('outcome')})")
    lines.append(f"💪 UNIFIED CONFIDENCE: {event.get('raw_confidence', 0):.0%}")
    calibrator = event.get("calibrator")
    mapped = f"{event.get('raw_confidence', 0):.0%} → {event.get('confidence', 0):.0%}" if calibrator else \
        f"not calibrated, {event.get('confidence', 0):.0%}"
    lines.append(f"📊 {calibrator or 'Calibration'}: {mapped}  (threshold {event.get('threshold', 0):.0%})")
    plan = event.get("plan")
    if plan:
        legs = ", ".join(f"{leg['fraction']:.0%} @ {leg['price']:.2f}" for leg in plan["legs"])
        lines.append(f"   plan ({plan['planner']}, {len(plan['legs'])} entries): {legs}")
    levels = event.get("levels")
    if levels:
        tp = f"{levels['take_profit']:.2f}" if levels.get("take_profit") else "none"
        lines.append(f"   stop {levels['stop']:.2f}, take profit {tp}")
    expected = event.get("expected_return")
    if expected:
        lines.append(f"   {expected['text']}")
    sizing = event.get("sizing")
    if sizing and not sizing.get("veto"):
        lines.append(f"   size {sizing['quantity']:.6g}, risk {sizing['risk']:.2f}")
    if event.get("veto"):
        lines.append(f"   VETO: {event['veto']}")
    return "\n".join(lines)
