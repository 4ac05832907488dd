"""A backtest on data its models were trained on says so and trades on (issue 12).

Before: shipped models (trained to 2022-03-31) on pre-2022 data gave a 0-bar run, exit code 0.
"""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from mlcoord.cli import main
from test_ml_pipeline import FakeML, plugins_with, run


class DatedML(FakeML):
    """A FakeML whose model was trained until a given time."""

    def __init__(self, until):
        super().__init__("good")
        self.until = until

    def trained_until(self):
        return self.until


def test_a_model_trained_on_every_bar_is_left_out_with_a_note(short_candles):
    covering = DatedML(int(short_candles.time[-1]))
    result = run(short_candles, plugins_with(covering=covering, fresh=FakeML("good")))
    assert result.stats["bars"] > 0 and result.raw.trades
    assert result.components["ml_components"] == ["fresh"]
    assert {v.component for d in result.raw.decisions for v in d.votes} == {"technical", "fresh"}
    (note,) = result.notes
    assert note.startswith("covering:") and pd.Timestamp(covering.until, tz="UTC").isoformat() in note
    assert result.to_json()["notes"] == [note]


def test_a_model_trained_on_part_of_the_data_is_kept_and_statistics_start_after_it(short_candles):
    half = int(short_candles.time[len(short_candles) // 2])
    result = run(short_candles, plugins_with(dated=DatedML(half)))
    (note,) = result.notes
    assert note.startswith("statistics start after " + pd.Timestamp(half, tz="UTC").isoformat())
    assert result.components["ml_components"] == ["dated"]
    assert result.raw.times[0] > half and result.stats["bars"] > 0


def test_shipped_models_on_pre_2022_data_fall_back_visibly_instead_of_a_0_bar_run(tmp_path):
    out = tmp_path / "run.json"
    result = CliRunner().invoke(main, ["backtest", "--timerange", "20210101-20210401", "--no-progress",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: lstm:" in result.output and "note: attention:" in result.output
    assert "2022-03-31" in result.output
    saved = json.loads(out.read_text())
    assert saved["stats"]["bars"] > 2000 and saved["stats"]["trades"] > 0
    assert "lstm" not in saved["components"]["ml_components"]
    assert len(saved["notes"]) == 2


def test_retraining_walking_forward_when_asked_keeps_the_models(tmp_path):
    config = tmp_path / "retrain.toml"
    config.write_text("".join(f"[plugins.{name}]\nretrain_every_bars = 720\ntrain_bars = 1500\nmin_train_bars = 1000\n"
                              for name in ("lstm", "attention")))
    out = tmp_path / "run.json"
    result = CliRunner().invoke(main, ["backtest", "--config", str(config), "--timerange", "20210101-20210301",
                                       "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["notes"] == [] and {"lstm", "attention"} <= set(saved["components"]["ml_components"])
    voted = {v["component"] for d in saved["decisions"] for v in d.get("votes", [])}
    assert "lstm" in voted and saved["stats"]["bars"] > 1000
