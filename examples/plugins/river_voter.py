"""An online River voter: an ML component written against mlcoord.api only.

A River logistic regression over three causal features (RSI, 10-bar rate of change, 50-bar
z-score of the close) predicts the learning event upwards; it learns from every outcome the
engine hands it (only once the outcome's horizon has closed) and keeps its weights across runs
and restarts (``state`` / ``load_state``).
"""

import attrs
import numpy as np

from mlcoord.api import (Action, MarketData, Outcome, Vote, features, hookimpl, integer, number, river_weights,
                         set_river_weights)

MLCOORD_HOOKS_VERSION = 2


@attrs.frozen
class RiverVoterOptions:
    learning_rate: float = attrs.field(default=0.05, validator=number(0.0, 1.0, lo_open=True))
    window: int = attrs.field(default=50, validator=integer(5))


class RiverVoter:
    def __init__(self, options: RiverVoterOptions):
        from river import linear_model, optim

        self.options = options
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(options.learning_rate))
        self.warmup_bars = options.window            # abstains until its z-score has a full window
        self._seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # symbol -> (bar times, features)
        self.outcomes = 0

    def _features(self, data: MarketData) -> np.ndarray:
        close = data.candles.close
        return np.column_stack([features.rsi(close, 14) / 100.0 - 0.5, features.rate_of_change(close, 10),
                                features.rolling_zscore(close, self.options.window) / 3.0])

    def prepare(self, data: MarketData):
        x = self._features(data)
        self._seen[data.symbol] = (np.asarray(data.candles.time), x)
        model, warmup = self.model, self.warmup_bars

        class Voter:
            def vote(self, i: int, signal) -> Vote | None:
                row = x[i]
                if i < warmup or not np.all(np.isfinite(row)):
                    return None
                p_up = float(model.predict_proba_one(dict(enumerate(row.tolist()))).get(True, 0.5))
                action = Action.BUY if p_up >= 0.5 else Action.SELL
                return Vote("river", action, max(p_up, 1.0 - p_up), reasons=(f"P(up) {p_up:.2f}",),
                            p_up=p_up, p_down=1.0 - p_up)

        return Voter()

    def learn(self, outcome: Outcome) -> None:
        times, x = self._seen.get(outcome.symbol, (None, None))
        if times is None:
            return
        k = int(np.searchsorted(times, outcome.time))
        if k >= len(times) or times[k] != outcome.time or not np.all(np.isfinite(x[k])):
            return
        up = outcome.hit if outcome.direction > 0 else (not outcome.hit and outcome.forward_return > 0)
        self.model.learn_one(dict(enumerate(x[k].tolist())), bool(up))
        self.outcomes += 1

    def state(self) -> dict:
        return {"version": 1, "weights": river_weights(self.model), "intercept": float(self.model.intercept),
                "outcomes": self.outcomes}

    def load_state(self, state: dict) -> None:
        if state.get("version") != 1:
            raise ValueError(f"river_voter state version {state.get('version')!r} is not 1")
        set_river_weights(self.model, {int(k): v for k, v in state["weights"].items()}, state["intercept"])
        self.outcomes = int(state["outcomes"])


@hookimpl
def register_ml_components(register):
    register("river_voter", RiverVoter, options=RiverVoterOptions, description="online River logistic voter",
             display_name="River Voter", examples=({"window": 20},))
