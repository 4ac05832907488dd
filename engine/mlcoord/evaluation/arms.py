"""The trading arms: the same windows traded by pipelines that differ only in who votes.

* ``signals_only`` - the signal sources alone (no ML, no calibrator);
* ``signals + calibrator`` - the calibrator and the entry threshold on the signal sources'
  confidence, no ML votes: what trading *less* is worth, without any model;
* ``logistic voter`` - the logistic baseline as the only ML voter (with the ensemble and the
  calibrator): what a plain model on the components' own features is worth;
* ``with_ml`` - the configured ML components (the product);
* ``always abstain`` - no trade at all: zero return, the bar every arm must clear after fees.

The arms name no component: the signal sources and ML components are whatever the configuration
(``[pipeline]``, else the profile) selects.

Per arm: trade count, total net return (closed trades' net PnL over the capital of all
symbol-windows) and net expectancy per trade (mean net PnL per trade over the initial equity, so
``total = trades x per trade / symbol-windows`` and the two never disagree in sign, as a mean
return on each trade's notional can when losers are sized larger), with weekly-block bootstrap
intervals (trades by the week they opened), and the equity-based mean return, Sharpe and worst
drawdown per window.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import numpy as np

from mlcoord.config import Settings
from mlcoord.coordinator import DEFAULT_WEIGHT
from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval
from mlcoord.evaluation.voter import NAME as LOGISTIC_VOTER
from mlcoord.pipeline import Pipeline, resolve_components
from mlcoord.registry import PluginSet

SIGNALS_ONLY, SIGNALS_CALIBRATED, LOGISTIC_ARM, WITH_ML, ABSTAIN = (
    "signals_only", "signals + calibrator", "logistic voter", "with_ml", "always abstain")
ARMS = (SIGNALS_ONLY, SIGNALS_CALIBRATED, LOGISTIC_ARM, WITH_ML, ABSTAIN)
BACKTESTED = (SIGNALS_ONLY, SIGNALS_CALIBRATED, LOGISTIC_ARM, WITH_ML)
DIFFERENCES = ((WITH_ML, SIGNALS_CALIBRATED), (WITH_ML, LOGISTIC_ARM), (SIGNALS_CALIBRATED, SIGNALS_ONLY))
#: the logistic voter's starting weight when the configuration runs no ML component to take it from
FALLBACK_ML_WEIGHT = 0.7


def voter_weights(settings: Settings, plugins: PluginSet,
                  option_changes: Optional[dict[str, dict[str, Any]]] = None) -> dict[str, float]:
    """Starting weights for the logistic voter arm: the signal sources' vote keeps the weight the
    configured pipeline starts it with, and the logistic voter takes the ML components' combined
    starting weight (:data:`FALLBACK_ML_WEIGHT` when the configuration runs none).

    The pipeline is the one ``settings`` selects, built as a run builds it (a component that cannot
    load is left out as there), so the signal vote carries the pipeline's name for it (one source's
    registered name, several joined by "+") and both weights come from
    :func:`mlcoord.pipeline.pipeline_weights` as the coordinator reads them."""
    pipe = Pipeline(settings, plugins, resolve_components(settings, plugins, option_changes))
    start = pipe.coordinator.start_weights
    ml_weight = sum(start.get(b.name, DEFAULT_WEIGHT) for b in pipe.components.ml_components) or FALLBACK_ML_WEIGHT
    return {pipe.signal_name: start.get(pipe.signal_name, DEFAULT_WEIGHT), LOGISTIC_VOTER: ml_weight}


def arm_settings(settings: Settings, arm: str, plugins: Optional[PluginSet] = None,
                 option_changes: Optional[dict[str, dict[str, Any]]] = None) -> Settings:
    """``settings`` with the pipeline of ``arm`` (the rest, fees and sizing included, unchanged).
    The logistic voter arm needs ``plugins`` (and the run's ``option_changes``) to weigh its votes
    like the configured pipeline's (:func:`voter_weights`)."""
    p = settings.pipeline
    if arm == SIGNALS_ONLY:
        return attrs.evolve(settings, pipeline=attrs.evolve(p, ml_components=(), calibrator=""))
    if arm == SIGNALS_CALIBRATED:
        return attrs.evolve(settings, pipeline=attrs.evolve(p, ml_components=()))
    if arm == LOGISTIC_ARM:
        if plugins is None:
            raise ValueError(f"the {LOGISTIC_ARM!r} arm needs the plugins, to weigh the votes as the pipeline does")
        weights = voter_weights(settings, plugins, option_changes)
        return attrs.evolve(settings, pipeline=attrs.evolve(p, ml_components=(LOGISTIC_VOTER,), weights=weights))
    if arm == WITH_ML:
        return settings
    raise ValueError(f"unknown trading arm {arm!r}; arms: {', '.join(BACKTESTED)}")


def trades_of(result: Any, start: int) -> list[list[float]]:
    """[opened_at, net PnL, net return on notional] of every non-hedge trade opened from ``start``
    (the return on notional is exported for other metrics; the arms' figures use the PnL)."""
    return [[int(t.opened_at), float(t.pnl), float(t.return_pct)]
            for t in result.raw.trades if not t.hedge and t.opened_at >= start]


def summarise(rows: list[dict], capital: float, boot: WeeklyBootstrap) -> dict[str, Any]:
    """Per arm: figures and intervals over every symbol-window; paired differences of arms."""
    units = len(rows)
    out: dict[str, Any] = {}
    samples: dict[str, dict[str, np.ndarray]] = {}
    for arm in ARMS:
        if arm == ABSTAIN:
            zero = np.zeros(boot.resamples)
            samples[arm] = {"total": zero, "per_trade": np.full(boot.resamples, np.nan)}
            out[arm] = {"trades": 0, "total_return": 0.0, "total_return_ci": [0.0, 0.0],
                        "per_trade_return": None, "per_trade_return_ci": [None, None],
                        "mean_return": 0.0, "mean_sharpe": 0.0, "worst_drawdown": 0.0, "symbol_windows": units}
            continue
        per = [r["arms"][arm] for r in rows if arm in r["arms"]]
        if not per and rows:        # an arm this run did not trade (EvalOptions.all_arms=False)
            continue
        trades = np.array([t for p in per for t in p["trades"]], dtype=float).reshape(-1, 3)
        t, pnl = trades[:, 0].astype(np.int64), trades[:, 1]
        denominator = capital * max(len(per), 1)
        total = boot.total(t, pnl) / denominator
        per_trade = boot.mean(t, pnl / capital)
        samples[arm] = {"total": total, "per_trade": per_trade}
        out[arm] = {
            "trades": int(len(trades)), "symbol_windows": len(per),
            "total_return": float(pnl.sum() / denominator), "total_return_ci": interval(total),
            "per_trade_return": float(pnl.mean() / capital) if len(pnl) else None,
            "per_trade_return_ci": interval(per_trade),
            "mean_return": float(np.mean([p["return"] for p in per])) if per else 0.0,
            "mean_sharpe": float(np.mean([p["sharpe"] for p in per])) if per else 0.0,
            "worst_drawdown": float(max((p["max_drawdown"] for p in per), default=0.0)),
        }
    diffs = {}
    for a, b in DIFFERENCES:
        if a in out and b in out:
            diffs[f"{a} - {b}"] = {
                "total_return": out[a]["total_return"] - out[b]["total_return"],
                "total_return_ci": interval(samples[a]["total"] - samples[b]["total"]),
                "per_trade_return": (None if out[a]["per_trade_return"] is None or out[b]["per_trade_return"] is None
                                     else out[a]["per_trade_return"] - out[b]["per_trade_return"]),
                "per_trade_return_ci": interval(samples[a]["per_trade"] - samples[b]["per_trade"])}
    return {"arms": out, "differences": diffs,
            "definition": "total_return: net PnL of the trades opened in the test windows / (initial equity x "
                          "symbol-windows); per_trade_return: mean net PnL per trade / initial equity; 95 % weekly-block "
                          "bootstrap intervals (trades by opening week)"}
