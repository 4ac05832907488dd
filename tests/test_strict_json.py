"""Result files are strict JSON (issue 14): no ``NaN`` / ``Infinity`` tokens, which strict parsers
refuse; a number that is not finite is written as null ("undefined", see mlcoord.strict_json)."""

from __future__ import annotations

import json
import math

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

from mlcoord import strict_json
from mlcoord.cli import main

pytestmark = pytest.mark.usefixtures("builtin_plugins_only")


def _reject(token: str):
    raise AssertionError(f"not strict JSON: {token}")


def strict_loads(text: str):
    """``json.loads`` as a strict parser reads: NaN, Infinity and -Infinity are errors."""
    return json.loads(text, parse_constant=_reject)


def test_the_strict_parser_refuses_what_python_writes():
    with pytest.raises(AssertionError, match="not strict JSON: NaN"):
        strict_loads(json.dumps({"x": math.nan}))


def test_not_finite_numbers_become_null():
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float64("nan"), "d": np.array([1.0, np.inf]),
             "e": (np.float32(2.0), None, "NaN"), "f": 3}
    assert strict_loads(strict_json.dumps(value)) == {"a": None, "b": [None, None, 1.5], "c": None,
                                                      "d": [1.0, None], "e": [2.0, None, "NaN"], "f": 3}


def test_backtest_result_file(tmp_path):
    """A run's stats with an undefined ratio (profit factor with no losing trade: inf; a ratio
    with nothing to divide: nan) write null."""
    from mlcoord.backtest.run import run_backtest
    from mlcoord.config import load_settings

    settings = load_settings(None, {"data": {"timerange": "20240101-20240103"}})
    result = run_backtest(settings)
    result = attrs.evolve(result, stats={**result.stats, "profit_factor": math.inf, "sharpe": math.nan})
    out = tmp_path / "result.json"
    result.write_json(out)
    stats = strict_loads(out.read_text(encoding="utf-8"))["stats"]
    assert stats["profit_factor"] is None and stats["sharpe"] is None


def test_evaluate_result_file(tmp_path, monkeypatch):
    import mlcoord.evaluate as evaluation

    real = evaluation.evaluate

    def with_undefined_scores(*args, **kwargs):
        result = real(*args, **kwargs)
        first = next(iter(result["scores"]))
        result["scores"][first] = {**result["scores"][first], "auc": math.nan, "brier": np.float64(np.inf)}
        return result

    monkeypatch.setattr(evaluation, "evaluate", with_undefined_scores)
    out = tmp_path / "wf.json"
    run = CliRunner().invoke(main, ["evaluate", "--windows", "1", "--train-bars", "2000", "--fit-bars", "500",
                                    "--test-bars", "300", "--no-retrain", "--no-progress", "--executor", "inline",
                                    "--resamples", "20", "--json", str(out)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    scores = strict_loads(out.read_text(encoding="utf-8"))["scores"]
    first = next(iter(scores))
    assert scores[first]["auc"] is None and scores[first]["brier"] is None


def test_walk_forward_sweep_table_file(tmp_path, monkeypatch):
    from test_walk_forward_sweep import write_config

    import mlcoord.walk_forward_sweep as wfs

    real = wfs.run_walk_forward

    def with_an_undefined_gap(*args, **kwargs):
        return {**real(*args, **kwargs), "gap": math.nan}

    monkeypatch.setattr(wfs, "run_walk_forward", with_an_undefined_gap)
    out = tmp_path / "wf.json"
    run = CliRunner().invoke(main, ["sweep", "--config", str(write_config(tmp_path)), "--walk-forward",
                                    "--no-progress", "--json", str(out)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    assert strict_loads(out.read_text(encoding="utf-8"))["gap"] is None
