"""ML components whose models saw every bar a backtest would trade are left out, visibly.

A backtest's statistics start after the newest model's training data (no in-sample results).
When a model was trained on all of the data (the shipped models end 2022-03-31; a pre-2022
backtest), that rule left zero bars and the run "succeeded" with 0 bars and exit code 0. Instead
the component is left out of this run with a warning and a note in the summary, and the
technical signal (with any online learners) trades every bar; the note says how to retrain.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import attrs
import structlog

from mlcoord.times import iso

log = structlog.get_logger("mlcoord.model_coverage")




def _retrain_hint(built: Any) -> str:
    options = built.spec.options
    if options is not None and attrs.has(options) and "retrain_every_bars" in attrs.fields_dict(options):
        return f", or let it retrain walking forward with [plugins.{built.name}] retrain_every_bars = 720"
    return ""


def leave_out_models_covering(pipeline: Any, candles: Sequence[Any], start_ns: Optional[int] = None) -> list[str]:
    """Drop the ML components trained at or after the last bar of ``candles``; one note per drop.
    ``start_ns``: the requested first traded bar (earlier bars only warm indicators up)."""
    bars = [c for c in candles if len(c)]
    if not bars:
        return []
    first = min(int(c.time[0]) for c in bars) if start_ns is None else int(start_ns)
    last = max(int(c.time[-1]) for c in bars)
    kept, notes = [], []
    for built in pipeline.components.ml_components:
        fn = getattr(built.obj, "trained_until", None)
        try:
            until = fn() if fn is not None else None
        except Exception as exc:        # the pipeline's own trained_until() logs it; keep the component
            pipeline.errors.failed(built.name, "trained_until", exc)
            until = None
        if until is None or int(until) < last:
            kept.append(built)
            continue
        note = (f"{built.name}: its model was trained on data until {iso(until)}, which covers every bar of this "
                f"backtest ({iso(first)} -> {iso(last)}); left out, so the technical signal trades without it. "
                f"To use it, train it on data before {iso(first)} (`mlcoord train --component {built.name}`)"
                f"{_retrain_hint(built)}")
        log.warning("ml_model_covers_the_data", component=built.name, trained_until=iso(until),
                    data_start=iso(first), data_end=iso(last), action="left out of this backtest")
        notes.append(note)
    if notes:
        pipeline.components.ml_components[:] = kept
    return notes
