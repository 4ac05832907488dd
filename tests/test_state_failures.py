"""Issue 15: a plugin failure never loses a run. A ``state()`` that raised or returned what JSON
cannot hold ended in a traceback after the whole backtest, losing the summary and ``--json``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlcoord.cli import main

PLUGIN = '''
from mlcoord.api import hookimpl

MLCOORD_HOOKS_VERSION = 2


class Abstains:
    def vote(self, i, signal):
        return None


class Forgetful:
    def __init__(self, options=None):
        pass

    def prepare(self, data):
        return Abstains()

    def state(self):
        {state}

    def load_state(self, state):
        pass


@hookimpl
def register_ml_components(register):
    register("forgetful", Forgetful)
'''

STATES = {
    "raises": ("raise OSError('disk full')", "OSError: disk full"),
    "a set": ("return {'seen': {1, 2}}", "ComponentFailure: state() is not plain JSON: Object of type set is not "
                                         "JSON serializable"),
    "NaN": ("return {'loss': float('nan')}", "ComponentFailure: state() is not plain JSON: Out of range float "
                                             "values are not JSON compliant"),
}


@pytest.mark.parametrize("kind", list(STATES))
def test_a_failing_state_is_reported_and_the_rest_of_the_result_written(tmp_path, kind):
    body, error = STATES[kind]
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "forgetful.py").write_text(PLUGIN.replace("{state}", body))
    out, state = tmp_path / "result.json", tmp_path / "state.json"
    result = CliRunner().invoke(main, [
        "backtest", "--plugins-dir", str(folder), "--enable", "forgetful", "--timerange", "20240101-20240201",
        "--disable", "lstm,attention,mtf,rl_selector", "--no-progress", "--json", str(out), "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "  equity        10000.00 -> " in result.stdout   # the summary
    note = (f"component 'forgetful' (plugin 'forgetful'): state() failed, its state was not saved: {error}")
    assert json.loads(out.read_text())["notes"][-1] == note
    assert f"note: {note}" in result.stdout
    saved = json.loads(state.read_text())
    assert "forgetful" not in saved["components"] and "bayes" in saved["components"]   # the others are saved
    assert '"component": "forgetful"' in result.stderr and '"call": "state"' in result.stderr
