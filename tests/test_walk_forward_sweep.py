"""``mlcoord sweep --walk-forward``: in-sample search, out-of-sample scoring, the gap (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlcoord.errors import ConfigError

optuna = pytest.importorskip("optuna")

from mlcoord.backtest.run import WARMUP_BARS, load_market  # noqa: E402
from mlcoord.cli import main  # noqa: E402
from mlcoord.executors import InlineExecutor  # noqa: E402
from mlcoord.registry import load_plugins  # noqa: E402
from mlcoord.sweep import load_sweep  # noqa: E402
from mlcoord.walk_forward_sweep import (  # noqa: E402
    WalkForwardSpec, WfJob, YEAR_NS, _sharpe, part_task, plan, run_walk_forward,
)

WF_SWEEP = """
[sweep]
objective = "{objective}"
trials = 3
seed = 5
[sweep.space]
"plugins.exits.atr_stop_multiplier" = {{ float = [1.0, 4.0] }}
"plugins.dca.expire_after_bars" = {{ int = [6, 48] }}
[sweep.walk_forward]
in_sample_bars = {in_bars}
out_of_sample_bars = 250
batch = 2
[executor]
kind = "inline"
[pipeline]
ml_components = []
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timerange = "20250101-20250301"
"""


def write_config(tmp_path: Path, objective: str = "sharpe", in_bars: int = 500) -> Path:
    path = tmp_path / "wf.toml"
    path.write_text(WF_SWEEP.format(objective=objective, in_bars=in_bars), encoding="utf-8")
    return path


def small_job(tmp_path):
    """Spec, walk-forward sizes, raw config, plugins and candles of the small test sweep."""
    spec, settings, raw, _ = load_sweep(write_config(tmp_path))
    from mlcoord.config import structure
    wf = structure(spec.walk_forward, WalkForwardSpec, "$.sweep.walk_forward")
    return spec, wf, raw, load_plugins({}), load_market(settings)


@pytest.mark.parametrize("anchored", [False, True])
def test_out_of_sample_parts_tile_the_data_after_their_in_sample_parts(anchored):
    times = np.arange(5_000, dtype=np.int64) * 10
    wf = WalkForwardSpec(in_sample_bars=1_000, out_of_sample_bars=400, anchored=anchored)
    windows = plan(times, wf)
    assert len(windows) == (5_000 - WARMUP_BARS - 1_000) // 400 + 1    # last part: 200 bars >= 400/4
    for k, w in enumerate(windows):
        assert w.in_start < w.in_end < w.out_end
        first = int(np.searchsorted(times, w.in_start))
        assert first == (WARMUP_BARS if anchored else WARMUP_BARS + k * 400)
        assert int(np.searchsorted(times, w.in_end)) - first == 1_000 + (k * 400 if anchored else 0)
        if k:
            assert w.in_end == windows[k - 1].out_end                     # no overlap, no hole
    assert windows[-1].out_end == times[-1] + 1
    import attrs
    assert plan(times, attrs.evolve(wf, windows=2)) == windows[-2:]


def test_a_part_never_sees_bars_after_its_end(tmp_path):
    spec, wf, raw, plugins, candles = small_job(tmp_path)
    w = plan(np.unique(np.concatenate([c.time for c in candles])), wf)[0]
    params = {"plugins.exits.atr_stop_multiplier": 2.0, "plugins.dca.expire_after_bars": 24}
    base = part_task(WfJob(raw, plugins, tuple(candles)), params, 0, w.in_start, w.in_end)
    c = candles[0]
    cut = int(np.searchsorted(c.time, w.in_end))
    changed = c.frame.copy()
    changed.iloc[cut:, :4] *= 3.0                 # a very different future
    from mlcoord.candles import candles_from_frame
    future = candles_from_frame(changed, symbol=c.symbol, timeframe=c.timeframe)
    again = part_task(WfJob(raw, plugins, (future, *candles[1:])), params, 0, w.in_start, w.in_end)
    assert again == base and base["bars"] == cut - int(np.searchsorted(c.time, w.in_start))


def test_the_table_reports_what_the_parts_give(tmp_path):
    spec, wf, raw, plugins, candles = small_job(tmp_path)
    table = run_walk_forward(spec, wf, raw, plugins, candles, InlineExecutor())
    assert table["failures"] == [] and len(table["windows"]) >= 2
    job = WfJob(raw, plugins, tuple(candles))
    times = np.unique(np.concatenate([c.time for c in candles]))
    per_year = YEAR_NS / float(np.median(np.diff(times)))
    concatenated = {c.symbol: [] for c in candles}
    for row, w in zip(table["windows"], plan(times, wf)):
        assert row["trials"] == spec.trials
        ins = [part_task(job, row["best"], j, w.in_start, w.in_end) for j in range(len(candles))]
        outs = [part_task(job, row["best"], j, w.in_end, w.out_end) for j in range(len(candles))]
        assert row["in_sample_sharpe"] == pytest.approx(np.mean([r["sharpe"] for r in ins]))
        assert row["out_of_sample_sharpe"] == pytest.approx(np.mean([r["sharpe"] for r in outs]))
        assert row["gap"] == pytest.approx(row["in_sample_sharpe"] - row["out_of_sample_sharpe"])
        for c, r in zip(candles, outs):
            concatenated[c.symbol] += r["returns"]
    expected = np.mean([_sharpe(np.asarray(r), per_year) for r in concatenated.values()])
    assert table["out_of_sample"]["sharpe"] == pytest.approx(expected)
    rows = table["windows"]
    assert table["gap"] == pytest.approx(np.mean([r["in_sample_sharpe"] for r in rows])
                                         - np.mean([r["out_of_sample_sharpe"] for r in rows]))


def test_cli_prints_the_table_and_writes_it(tmp_path):
    out = tmp_path / "wf.json"
    result = CliRunner().invoke(main, ["sweep", "--config", str(write_config(tmp_path)), "--walk-forward",
                                       "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "out of sample, concatenated: Sharpe" in result.output and "gap" in result.output
    assert len(json.loads(out.read_text())["windows"]) >= 2


def test_log_loss_objective_is_a_clear_not_yet(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "--config", str(write_config(tmp_path, "log_loss")),
                                       "--walk-forward", "--no-progress"])
    assert result.exit_code == 2 and "not supported yet" in result.output


def test_too_short_data_names_sizes_that_fit(tmp_path):
    result = CliRunner().invoke(main, ["sweep", "--config", str(write_config(tmp_path, in_bars=5_000)),
                                       "--walk-forward", "--no-progress"])
    assert result.exit_code == 2
    assert "in_sample_bars = 5000" in result.output and "Sizes in the same proportions that fit" in result.output


def test_bad_walk_forward_settings_name_the_field(tmp_path):
    spec, *_ = load_sweep(write_config(tmp_path))
    from mlcoord.config import structure
    with pytest.raises(ConfigError, match="out_of_sample_bars"):
        structure({**spec.walk_forward, "out_of_sample_bars": 0}, WalkForwardSpec, "$.sweep.walk_forward")
    with pytest.raises(ConfigError, match="in_sample"):
        structure({"in_sample": 10}, WalkForwardSpec, "$.sweep.walk_forward")
