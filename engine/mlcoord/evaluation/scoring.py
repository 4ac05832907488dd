"""One population's table: every row's figures and intervals, the in-sample climatology and
always-abstain on the reference row's set, and paired differences of chosen rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlcoord.evaluation.baselines import NAMES as BASELINES
from mlcoord.evaluation.bootstrap import WeeklyBootstrap, interval, intervals
from mlcoord.evaluation.collect import EVERY_BAR, SIGNAL_BARS, SIGNALS
from mlcoord.evaluation.labels import EVENT, TRADE
from mlcoord.evaluation.metrics import rounded, score_row


#: what each population scores, by label (:mod:`mlcoord.evaluation.labels`)
POPULATION_EVENTS = {
    EVENT: {
        SIGNAL_BARS: "signal bars (the signal sources' BUY/SELL, no open position in the ML run), event in the "
                     "signal's direction",
        EVERY_BAR: "every bar of the test windows, event up (direction +1)",
    },
    TRADE: {
        SIGNAL_BARS: "signal bars (the signal sources' BUY/SELL, no open position in the ML run), trade label in "
                     "the signal's direction (the ensemble's final rows: in the final decision's direction)",
        EVERY_BAR: "every bar of the test windows, the long side's trade label",
    },
}
ENSEMBLE = "ensemble (raw)"
#: the row issue 16's targets are about: what the engine trades on (the final decision, calibrated)
FINAL = "ensemble (final, calibrated)"
#: paired differences of rows, when both are in the table; each ensemble row is also compared with
#: every ML component of the run (see :func:`differences`)
DIFFERENCES = ((ENSEMBLE, "logistic"), ("logistic", "climatology (causal)"))


def merge(records: dict, into: dict) -> None:
    for population, by_component in records.items():
        for name, cols in by_component.items():
            target = into.setdefault(population, {}).setdefault(name, {key: [] for key in cols})
            for key, values in cols.items():
                target[key].extend(values)


def row_order(names) -> list[str]:
    """The components (the signal sources' row first, the ensemble's rows last), then the baselines."""
    components = sorted((n for n in names if n not in BASELINES), key=lambda n: (n != SIGNALS,
                                                                                 n.startswith("ensemble"), n))
    return components + [n for n in BASELINES if n in names]


def ml_rows(names) -> list[str]:
    """The ML components' rows: every row but the signal sources', the ensemble's and the baselines'."""
    return [n for n in row_order(names) if n != SIGNALS and not n.startswith("ensemble") and n not in BASELINES]


def differences(names) -> list[tuple[str, str]]:
    """The compared pairs for a table with these rows: the raw ensemble, then the final calibrated
    one, each against the logistic baseline and each ML component it combines; then the logistic
    baseline against the causal climatology. (The final row scores the final decisions, a subset of
    the bars in its own direction: the same weekly draws pair it with the others, as the targets
    compare it.)"""
    ml = ml_rows(names)
    return [DIFFERENCES[0], *((ENSEMBLE, n) for n in ml),
            (FINAL, "logistic"), *((FINAL, n) for n in ml), *DIFFERENCES[1:]]


def score_population(by_component: dict[str, dict[str, list]], boot: WeeklyBootstrap, reference: str
                     ) -> dict[str, Any]:
    """Rows with intervals; the in-sample climatology and always-abstain scored on ``reference``'s set."""
    table, samples = {}, {}
    for name in row_order(by_component):
        cols = by_component[name]
        y, p, pc = (np.asarray(cols[k], dtype=float) for k in ("y", "p", "pc"))
        t = np.asarray(cols["time"], dtype=np.int64)
        row = rounded(score_row(y, p, pc))
        samples[name] = boot.scores(t, y, p, pc)
        row["ci"] = intervals(samples[name])
        table[name] = row
    if reference in by_component:
        cols = by_component[reference]
        y = np.asarray(cols["y"], dtype=float)
        t = np.asarray(cols["time"], dtype=np.int64)
        pc = np.asarray(cols["pc"], dtype=float)
        p = np.full(len(y), y.mean() if len(y) else 0.5)
        row = rounded(score_row(y, p, pc))
        row["ci"] = {k: v for k, v in intervals(boot.scores(t, y, p, pc)).items() if k != "auc"}
        row["auc"] = None       # a constant has no ranking
        table["climatology (in-sample)"] = row
        table["always abstain"] = {"n": len(y), "accuracy": round(float(1 - y.mean()), 4) if len(y) else None,
                                   "note": "predicts 'no event' on every bar; trades nothing"}
    diffs = {}
    for a, b in differences(samples):
        if a in samples and b in samples:
            diffs[f"{a} - {b}"] = {
                "auc": None if table[a]["auc"] is None or table[b]["auc"] is None
                else round(table[a]["auc"] - table[b]["auc"], 4),
                "auc_ci": interval(samples[a]["auc"] - samples[b]["auc"]),
                "skill_vs_causal": round(table[a]["skill_vs_causal"] - table[b]["skill_vs_causal"], 4),
                "skill_vs_causal_ci": interval(samples[a]["skill_vs_causal"] - samples[b]["skill_vs_causal"])}
    return {"scores": table, "differences": diffs}
