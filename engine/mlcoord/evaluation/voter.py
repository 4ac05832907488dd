"""The logistic baseline as an ML voter (``baseline_logistic``), for the trading arm that asks
"would a plain model on the components' own features have traded as well as the ML stack?".

A plugin module like any other (registered through the public hook), loaded by ``evaluate``
only for that arm; it is not an entry point, so a normal backtest never sees it. Its model is
the window's fitted :class:`~mlcoord.evaluation.baselines.BaselineModels` (pickled, trained on
the window's training part only), so its votes are out of sample in the fit and test parts.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from typing import Optional

import attrs

from mlcoord import hookimpl
from mlcoord.model import Action, Vote

MLCOORD_HOOKS_VERSION = 1
NAME = "baseline_logistic"


@attrs.frozen
class LogisticVoterOptions:
    """``model_path``: a pickled BaselineModels written by ``evaluate`` for one window."""

    model_path: str = ""


@lru_cache(maxsize=8)
def _load(path: str):
    with open(path, "rb") as fh:
        return pickle.load(fh)


class _Voter:
    def __init__(self, p_up, p_down):
        self.p_up, self.p_down = p_up, p_down

    def vote(self, i: int, signal=None) -> Optional[Vote]:
        up, down = float(self.p_up[i]), float(self.p_down[i])
        action = Action.BUY if up >= down else Action.SELL
        return Vote(NAME, action, max(up, down), reasons=(f"logistic baseline P(up)={up:.2f}, P(down)={down:.2f}",),
                    p_up=up, p_down=down)


class LogisticVoter:
    def __init__(self, options: LogisticVoterOptions):
        if not options.model_path:
            raise ValueError("baseline_logistic: model_path is empty; evaluate sets it per window")
        self.models = _load(options.model_path)

    def prepare(self, data) -> _Voter:
        p_up, p_down = self.models.predict(data.candles)["logistic"]
        return _Voter(p_up, p_down)


@hookimpl
def register_ml_components(register):
    register(NAME, LogisticVoter, options=LogisticVoterOptions,
             description="evaluation only: the logistic baseline on the feature matrix as a voter")
