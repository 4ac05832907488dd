"""A declared warm-up (``warmup_bars`` on the built ML component): the kit looks for votes after it,
fails a voter that abstains after it too, and makes sure its other checks compared real votes."""

from __future__ import annotations

import numpy as np
import pytest

from mlcoord import Vote
from mlcoord.testing import ConformanceError, plugin_checks

from fake_plugins import Components

WARMUP = 2500


def checks(factory):
    class Plugin(Components):
        MLCOORD_HOOKS_VERSION = 2

    return {c.id.removeprefix("fake-"): c for c in plugin_checks(Plugin(ml_components={"fake": factory}), name="fake")}


class LateVoter:
    """Needs ``WARMUP`` bars before it votes (24-bar momentum after that); records the bars it
    voted on, so a test can see a check asked it after its warm-up."""

    voted: list = []
    abstains_after_warmup = False

    def __init__(self, options=None):
        pass

    def prepare(self, data):
        close = np.asarray(data.candles.close, float)
        owner = type(self)

        class Prepared:
            def vote(self, i, signal=None):
                if i < WARMUP or i < 24 or owner.abstains_after_warmup:
                    return None
                p = float(0.5 + 0.4 * np.tanh((close[i] / close[i - 24] - 1.0) * 20))
                owner.voted.append(i)
                return Vote("fake", 1 if p >= 0.5 else -1, max(p, 1 - p), reasons=(f"p_up {p:.2f}",),
                            p_up=p, p_down=1 - p)
        return Prepared()

    def state(self):
        return {}

    def load_state(self, state):
        pass


class DeclaredLateVoter(LateVoter):
    warmup_bars = WARMUP


class NeverVotes(DeclaredLateVoter):
    abstains_after_warmup = True


def test_a_declared_warmup_passes_and_every_check_compares_votes_after_it():
    found = checks(DeclaredLateVoter)
    for name in ("output", "short_data", "no_lookahead", "deterministic", "no_mutation", "state_roundtrip"):
        DeclaredLateVoter.voted = []
        found[name]()
        if name != "short_data":          # short data (at most 60 bars) is all warm-up
            assert any(i >= WARMUP for i in DeclaredLateVoter.voted), f"{name} never asked after the warm-up"


def test_an_undeclared_warmup_leaves_a_check_with_nothing_to_compare():
    found = checks(LateVoter)
    found["output"]()              # its sample reaches the last bars
    with pytest.raises(ConformanceError, match=r"no_lookahead had nothing to compare: it abstained on every bar it "
                                               r"asked \(\d+ bars between 0 and 2016\); .*declares it: warmup_bars = N on the component"):
        found["no_lookahead"]()


def test_a_voter_that_abstains_after_its_declared_warmup_fails():
    with pytest.raises(ConformanceError, match=rf"abstained on every sampled bar after its declared warm-up "
                                               rf"\({WARMUP} of the 3000 bars\) of real data"):
        checks(NeverVotes)["output"]()


@pytest.mark.parametrize("value, message", [
    ("48", r"warmup_bars = '48'; declare the warm-up as an integer number of bars >= 0"),
    (-1, r"warmup_bars = -1; declare"),
    (True, r"warmup_bars = True; declare"),
    (2950, r"declares warmup_bars = 2950, which leaves fewer than 100 of the 3000 bars"),
], ids=["string", "negative", "bool", "too_long"])
def test_a_warmup_that_is_not_a_usable_number_of_bars_fails(value, message):
    voter = type("Voter", (LateVoter,), {"warmup_bars": value})
    with pytest.raises(ConformanceError, match=message):
        checks(voter)["output"]()
