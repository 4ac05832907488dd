"""Declared example option sets (``register(..., examples=(...))``): every check that builds the
component runs for the defaults and again for each set, and a set that does not read as the
options class (an unknown option, a wrong type) fails naming the option."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from mlcoord.components import SignalSeries
from mlcoord.testing import ConformanceError, plugin_checks

from fake_plugins import Components


@attrs.frozen
class Options:
    threshold: float = 0.02
    window: int = 24


class Plugin(Components):
    MLCOORD_HOOKS_VERSION = 2

    def __init__(self, factory, examples=(), role: str = "signal_sources"):
        super().__init__(**{role: {"fake": factory}})
        self.examples = examples

    def _register(self, register, *roles):
        for role in roles:
            for name, factory in self.by_role.get(role, {}).items():
                register(name, factory, options=Options, examples=self.examples)


def checks(factory, examples=(), role: str = "signal_sources"):
    return {c.id.removeprefix("fake-"): c for c in plugin_checks(Plugin(factory, examples, role), name="fake")}


class Momentum:
    """A causal source: BUY (SELL) when the ``window``-bar return is above (below) +-threshold.
    Records the options and context it was built with."""

    built: list = []

    def __init__(self, options=Options(), context=None):
        self.options = options
        type(self).built.append((options, context))

    def momentum(self, close: np.ndarray) -> np.ndarray:
        w = self.options.window
        past = np.concatenate([np.full(min(w, len(close)), np.nan), close[:-w]])[:len(close)]
        return close / past - 1.0

    def prepare(self, data):
        roc = np.nan_to_num(self.momentum(np.asarray(data.candles.close, float)))
        t = self.options.threshold
        action = np.where(roc > t, 1, np.where(roc < -t, -1, 0)).astype(np.int8)
        confidence = np.where(action != 0, np.clip(0.5 + np.abs(roc), 0, 1), 0.0)
        return SignalSeries(action, confidence, lambda i: (f"{self.options.window}-bar return {roc[i]:+.3f}",))


class PeeksWhenFast(Momentum):
    """Causal with the default window; with a window under 12 it compares with the next bar."""

    def momentum(self, close):
        if self.options.window >= 12:
            return super().momentum(close)
        return np.append(close[1:], np.nan) / close - 1.0


def test_every_building_check_runs_per_example_with_its_options_and_context():
    Momentum.built = []
    found = checks(Momentum, examples=({"threshold": 0.05}, {"window": 6, "threshold": 0.01}))
    ids = set(found)
    for check in ("protocol", "output", "short_data", "no_lookahead", "deterministic", "no_mutation"):
        assert {check, f"{check}[example1]", f"{check}[example2]"} <= ids, check
    for check in ("options_roundtrip", "options_unknown_key", "options_bad_value", "options_examples"):
        assert check in ids and f"{check}[example1]" not in ids          # the options class is checked once
    for check in found.values():
        check()
    built = {options for options, _ in Momentum.built}
    assert built == {Options(), Options(threshold=0.05), Options(threshold=0.01, window=6)}
    contexts = [context for _, context in Momentum.built]
    assert all(c is not None and c.name == "fake" and c.role == "signal_sources" for c in contexts)
    assert {c.options for c in contexts} == built       # built through build_object, as the engine does


def test_a_fault_that_only_an_example_reaches_fails_only_there():
    found = checks(PeeksWhenFast, examples=({"window": 6},))
    found["no_lookahead"]()
    with pytest.raises(ConformanceError, match=r"with example option set 1 \{'window': 6\}: bar \d+: "
                                               r"prepare\(data.head\(\d+\)\) differs"):
        found["no_lookahead[example1]"]()


@pytest.mark.parametrize("example, message", [
    ({"treshold": 0.05}, r"example option set 1 \{'treshold': 0.05\} does not read as Options: .*'treshold'"
                         r".*\$.plugins.fake"),
    ({"window": "daily"}, r"example option set 1 \{'window': 'daily'\} does not read as Options: .*"
                          r"\$.plugins.fake.window"),
    ({"window": 2.5}, r"\$.plugins.fake.window"),
], ids=["unknown_option", "wrong_type", "float_for_int"])
def test_an_example_that_does_not_read_as_the_options_fails_naming_the_option(example, message):
    found = checks(Momentum, examples=(example,))
    found["output"]()                                   # the defaults are fine
    with pytest.raises(ConformanceError, match=message):
        found["options_examples"]()
    with pytest.raises(ConformanceError, match=message):
        found["output[example1]"]()                     # and a check of the example says why it cannot build
