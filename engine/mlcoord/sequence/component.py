"""The model voter shared by sequence-model plugins: options, the component (shipped or configured
artifact, walk-forward retraining, expiry, drift warning, training to an artifact) and its voter.

A plugin subclasses :class:`SequenceComponent` with its :class:`SequenceModel` and registers the
class as an ML component; it never touches the engine to add a network.
"""

from __future__ import annotations

import math
from collections import deque
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog
from attrs import validators as v

from mlcoord.feature_matrix import FEATURES
from mlcoord.option_checks import fraction, integer, number
from mlcoord.sequence.family import Model, SequenceModel
from mlcoord.sequence.sided import INPUTS, Barriers, trade_label_matrix
from mlcoord.sequence.training import FitOptions, Series, fit

if TYPE_CHECKING:
    from mlcoord.learning import RunningScore
    from mlcoord.registry import ComponentContext

_NS_PER_DAY = 86_400 * 10**9
WARMUP = 200            # first bars of a series are never training samples (ema200 warm-up)
LAZY_BLOCK = 256        # windows computed together when vote() meets an uncomputed bar (one batch ~ 7 ms)
log = structlog.get_logger("mlcoord.sequence")
#: what a model predicts: "trade_label" (direction as an input, P(this trade wins)) or "event"
#: (two heads, P(the [learning] move up / down))
TARGETS = ("trade_label", "event")


@attrs.frozen
class SequenceOptions:
    """Options shared by windowed model voters (each plugin adds window, hidden, layers).

    target="trade_label": the model takes the direction as an input and predicts P(this trade
    wins) for each side (:mod:`mlcoord.sequence.sided`; ``p_up`` / ``p_down`` = P(a long / short
    entered at this bar closes positive net of costs), barriers ``stop_atr``=2.0 ATR(14),
    ``reward_risk``=1.5, ``fee``=0.0005, ``slippage``=0.0005, time barrier ``[learning] horizon``);
    "event": the seed's two heads, P(the ``[learning]`` move up / down).
    Training (``mlcoord train`` and walk-forward retraining): epochs=30 (maximum; early stopping
    after ``patience``=4 epochs without a better validation log-loss, never before
    ``min_epochs``=5; the best epoch is kept), batch_size=256, lr=1e-3 (AdamW; at 3e-3 the
    seed's models were best after epoch 1-2 in every window), weight_decay=1e-4,
    val_fraction=0.2 (the *later* part of each series validates; chronological, with a
    ``horizon``-bar purge between the parts), stride=2 (every 2nd training bar: neighbouring
    windows are near duplicates), seed=0, threads=1 (torch threads).
    model_path=None: the artifact to vote with; None is the model shipped in the plugin package.
    retrain_every_bars=0: off. When > 0, ``prepare`` walks forward instead: bars in block
    ``[k*N, (k+1)*N)`` are scored by a model trained on the trailing ``train_bars``=17520 bars whose
    labels are known at bar ``k*N`` (up to bar ``k*N - horizon``); a block with fewer than
    ``min_train_bars``=2000 labelled bars abstains. Trained models are cached per series and block.
    max_model_age_days=1095: a bar later than the model's last training bar plus this age gets no
    vote, with one warning naming the fix.
    drift_window=200, drift_accuracy=0.45: the accuracy (``p >= 0.5`` versus the event) of the
    component's own votes over the last ``drift_window`` outcomes handed to ``learn``; below
    ``drift_accuracy`` a warning is logged once (a whole-run RunningScore is kept as well).
    """

    epochs: int = attrs.field(default=30, validator=integer(1))
    batch_size: int = attrs.field(default=256, validator=integer(1))
    lr: float = attrs.field(default=1e-3, validator=number(0, lo_open=True))
    weight_decay: float = attrs.field(default=1e-4, validator=number(0))
    patience: int = attrs.field(default=4, validator=integer(1))
    val_fraction: float = attrs.field(default=0.2, validator=fraction(lo_open=True, hi_open=True))
    stride: int = attrs.field(default=2, validator=integer(1))
    seed: int = attrs.field(default=0, validator=integer(0))
    threads: int = attrs.field(default=1, validator=integer(1))
    model_path: Optional[str] = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    retrain_every_bars: int = attrs.field(default=0, validator=integer(0))
    train_bars: int = attrs.field(default=17_520, validator=integer(1))
    min_train_bars: int = attrs.field(default=2_000, validator=integer(1))
    max_model_age_days: float = attrs.field(default=1095.0, validator=number(0, lo_open=True))
    drift_window: int = attrs.field(default=200, validator=integer(1))
    drift_accuracy: float = attrs.field(default=0.45, validator=fraction())
    target: str = attrs.field(default="trade_label", validator=v.in_(TARGETS))
    min_epochs: int = attrs.field(default=5, validator=integer(1))
    stop_atr: float = attrs.field(default=2.0, validator=number(0, lo_open=True))
    reward_risk: float = attrs.field(default=1.5, validator=number(0, lo_open=True))
    fee: float = attrs.field(default=0.0005, validator=fraction(hi_open=True))
    slippage: float = attrs.field(default=0.0005, validator=fraction(hi_open=True))

    @property
    def barriers(self) -> Barriers:
        return Barriers(self.stop_atr, self.reward_risk, self.fee, self.slippage)


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


class SequenceVoter:
    """Votes of one series. Probabilities are computed lazily in small batches (the engine asks
    only on non-HOLD bars) or all at once with :meth:`probabilities`; every window is computed
    independently, so the order of requests never changes a number."""

    def __init__(self, component: "SequenceComponent", data, matrix: np.ndarray,
                 segments: Sequence[tuple[int, int, Model]]):
        n = len(data)
        self.component, self.data, self.matrix = component, data, matrix
        self.models = [m for _, _, m in segments]
        self.segment = np.full(n, -1, dtype=np.int64)
        for k, (a, b, _) in enumerate(segments):
            self.segment[a:b] = k
        self.p = np.full((n, 2), np.nan)
        self.extra: Optional[np.ndarray] = None
        self.done = self.segment < 0
        event = data.event
        if component.options.target == "trade_label":
            self._head = f"{component.title}({component.options.window} bars): P(long wins)="
            self._down = "P(short wins)"
        else:
            self._head = (f"{component.title}({component.options.window} bars): "
                          f"P(up {event.threshold * 100:g}%/{event.horizon} bars)=")
            self._down = "P(down)"
        focus = getattr(data, "focus", None)
        if focus is not None and len(focus):      # batch every bar the engine may ask about
            self._compute(np.asarray(focus, dtype=np.int64))

    def _compute(self, index: np.ndarray) -> None:
        index = index[~self.done[index]]
        if not len(index):
            return
        for k in np.unique(self.segment[index]):
            idx = index[self.segment[index] == k]
            p, extra = self.models[k].predict(self.matrix, idx)
            self.p[idx] = p
            if extra is not None:
                if self.extra is None:
                    self.extra = np.full((len(self.p), extra.shape[1]), np.nan)
                self.extra[idx] = extra
        self.done[index] = True

    def probabilities(self, index: Optional[np.ndarray] = None) -> np.ndarray:
        """``(len(index), 2)`` [P(up), P(down)] (NaN where the component abstains), batched."""
        index = np.arange(len(self.p)) if index is None else np.asarray(index, dtype=np.int64)
        self._compute(index)
        return self.p[index]

    def vote(self, i: int, signal=None):
        from mlcoord.model import Action, Vote
        if not self.done[i]:
            block = np.arange(i, min(i + LAZY_BLOCK, len(self.p)))
            self._compute(block[self.segment[block] == self.segment[i]])
        p_up, p_down = self.p[i]
        if not (p_up == p_up and p_down == p_down):      # abstain (no model for this bar)
            return None
        p_up, p_down = float(p_up), float(p_down)
        reasons = (f"{self._head}{p_up:.2f}, {self._down}={p_down:.2f}",
                   *self.component.extra_reasons(self, i))
        up = p_up >= p_down
        return Vote(self.component.name, Action.BUY if up else Action.SELL, p_up if up else p_down,
                    reasons=reasons, p_up=p_up, p_down=p_down)


class SequenceComponent:
    """An ML component voting with a windowed model of its ``family`` (see the package docstring).

    Subclasses set ``family`` (a :class:`SequenceModel`: the network and the artifact kind),
    ``title`` (in reasons), ``package`` (the package holding ``models/default.npz``),
    ``hyper_fields`` (options that define the network and must match the artifact) and may
    override :meth:`extra_reasons`.

    Its ``name`` is the name it was registered under (``context.name``): votes, learning and
    saved state are keyed by it, so one class registered twice gives two components that each
    learn from their own votes. Built without a context (directly, in code), it is the family's kind.
    """

    family: ClassVar[SequenceModel]
    title: ClassVar[str] = ""
    package: ClassVar[str] = ""
    hyper_fields: ClassVar[tuple[str, ...]] = ("window", "hidden", "layers")

    def __init__(self, options: Any, context: Optional[ComponentContext] = None) -> None:
        family = getattr(type(self), "family", None)
        if not isinstance(family, SequenceModel):
            raise TypeError(f"{type(self).__name__}.family must be a SequenceModel, got {family!r}")
        self.options = options
        self.name: str = context.name if context is not None else family.kind
        self._artifact: Optional[tuple[dict, dict, Path]] = None
        self._walk_forward: dict[tuple, Model] = {}
        self._score: Optional[RunningScore] = None
        self._recent: deque = deque(maxlen=options.drift_window)
        self._drift_warned = False
        self._expiry_warned = False

    @property
    def kind(self) -> str:
        """The artifact kind of this component's family."""
        return self.family.kind

    # -- configuration ----------------------------------------------------------------------
    def hyper(self) -> dict:
        """Options an artifact must match: the network's and what it predicts."""
        out = {f: getattr(self.options, f) for f in self.hyper_fields}
        out["target"] = self.options.target
        if self.sided:
            out.update(attrs.asdict(self.options.barriers))
        return out

    def fit_options(self) -> FitOptions:
        o = self.options
        return FitOptions(window=o.window, hidden=o.hidden, layers=getattr(o, "layers", 1),
                          feature_dropout=float(getattr(o, "feature_dropout", 0.0)), epochs=o.epochs,
                          batch_size=o.batch_size, lr=float(o.lr), weight_decay=float(o.weight_decay),
                          patience=o.patience, val_fraction=o.val_fraction, stride=o.stride, seed=o.seed,
                          threads=o.threads, min_epochs=o.min_epochs, sided=self.sided,
                          outputs=1 if self.sided else 2)

    @property
    def sided(self) -> bool:
        """True when the model takes the direction as an input and predicts the trade label."""
        return self.options.target == "trade_label"

    def labels(self, candles, cut: int, event) -> np.ndarray:
        """``(cut + 1, 2)`` training labels of bars ``0..cut`` known at bar ``cut`` (NaN while
        unknown): [long wins, short wins] for the trade label, else [event up, event down]."""
        from mlcoord.learning import event_labels
        if self.sided:
            return trade_label_matrix(candles, cut, event.horizon, self.options.barriers)
        up, down = event_labels(candles.close[:cut + 1], event)
        return np.column_stack([up, down])

    def model_path(self) -> Path:
        """``model_path`` if set, else the model shipped in ``package`` (``models/default.npz``)."""
        if self.options.model_path:
            return Path(self.options.model_path).expanduser()
        if not self.package:
            from mlcoord.errors import ConfigError
            raise ConfigError(f"{self.name}: model_path is not set and {type(self).__name__} ships no model "
                              f"(no package); train one with `mlcoord train --component {self.name}` and set "
                              f"model_path in [plugins.{self.name}]")
        return Path(str(resources.files(self.package) / "models" / "default.npz"))

    def extra_reasons(self, voter: SequenceVoter, i: int) -> Sequence[str]:
        return ()

    def model_inputs(self) -> tuple[str, ...]:
        """The names of the network's input channels, in order (``side`` last when sided)."""
        return INPUTS if self.sided else FEATURES

    # -- the shipped / configured model ------------------------------------------------------
    def _read_artifact(self) -> tuple[dict, dict, Path]:
        if self._artifact is None:
            from mlcoord.artifacts import load_artifact
            path = self.model_path()
            arrays, meta = load_artifact(path)
            self._artifact = (arrays, meta, path)
        return self._artifact

    def load_model(self, event) -> Model:
        """The configured artifact as a :class:`Model`, refused if it does not fit ``event`` or the options."""
        from mlcoord.artifacts import check_compatible
        arrays, meta, path = self._read_artifact()
        meta = {"target": "event", **meta}        # artifacts older than the target option
        check_compatible(meta, path, kind=self.kind, features=FEATURES, horizon=event.horizon,
                         threshold=event.threshold, **self.hyper())
        weights = {k[2:]: v.astype(np.float64) for k, v in arrays.items() if k.startswith("w.")}
        return Model(self.family, weights, arrays["norm_mean"], arrays["norm_std"], self.options.window,
                     int(meta["data_last_time"]), self.sided)

    def trained_until(self) -> Optional[int]:
        """Last bar time (ns) the configured model saw; None when walking forward (never in-sample)."""
        if self.options.retrain_every_bars:
            return None
        return int(self._read_artifact()[1]["data_last_time"])

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, data) -> SequenceVoter:
        from mlcoord.feature_matrix import feature_matrix
        c = data.candles
        matrix = feature_matrix(c.open, c.high, c.low, c.close, c.volume)
        if self.options.retrain_every_bars:
            segments = self._walk_forward_segments(data, matrix)
        else:
            segments = [self._static_segment(data)]
        return SequenceVoter(self, data, matrix, [s for s in segments if s[1] > s[0]])

    def _static_segment(self, data) -> tuple[int, int, Model]:
        model = self.load_model(data.event)
        limit = model.trained_until + int(self.options.max_model_age_days * _NS_PER_DAY)
        end = int(np.searchsorted(data.candles.time, limit, side="right"))
        if end < len(data) and not self._expiry_warned:
            self._expiry_warned = True
            log.warning("ml_model_expired", component=self.name, symbol=data.symbol,
                        trained_until=_iso(model.trained_until), first_bar_without_vote=_iso(data.candles.time[end]),
                        max_model_age_days=self.options.max_model_age_days,
                        fix=f"retrain with `mlcoord train --component {self.name}` and point model_path to it, "
                            f"or set retrain_every_bars in [plugins.{self.name}]")
        return 0, end, model

    def _walk_forward_segments(self, data, matrix) -> list[tuple[int, int, Model]]:
        from mlcoord.artifacts import data_hash
        from mlcoord.learning import trainable_until
        o, c, event = self.options, data.candles, data.event
        segments = []
        for start in range(0, len(data), o.retrain_every_bars):
            last_label = trainable_until(start, event)
            first = max(WARMUP, last_label + 1 - o.train_bars)
            if last_label + 1 - first < o.min_train_bars:
                continue
            key = (data.symbol, event, tuple(self.hyper().items()), start,
                   data_hash(c.time[:start + 1], c.open[:start + 1], c.high[:start + 1], c.low[:start + 1],
                             c.close[:start + 1], c.volume[:start + 1]))
            model = self._walk_forward.get(key)
            if model is None:
                labels = self.labels(c, start, event)
                samples = np.arange(first, last_label + 1)
                weights, mean, std, _ = fit(self.family, [Series(matrix[:last_label + 1], labels, samples)],
                                            self.fit_options(), event.horizon,
                                            desc=f"{self.name} {data.symbol} block {start}")
                model = Model(self.family, weights, mean, std, o.window, int(c.time[start]), self.sided)
                self._walk_forward[key] = model
            segments.append((start, min(start + o.retrain_every_bars, len(data)), model))
        return segments

    # -- training ----------------------------------------------------------------------------
    def train(self, datasets, out: Path, progress: Optional[Callable[[dict], None]] = None) -> dict:
        """Train on ``datasets`` (MarketData, e.g. several symbols) and save the artifact to ``out``
        (a ``.npz`` path, or a directory receiving ``<name>.npz``). Returns the training report."""
        import datetime

        import mlcoord
        from mlcoord.artifacts import data_hash, save_artifact
        from mlcoord.errors import ConfigError
        from mlcoord.feature_matrix import feature_matrix
        if not datasets:
            raise ConfigError(f"{self.name}: no data to train on")
        event = datasets[0].event
        if any(d.event != event for d in datasets):
            raise ConfigError(f"{self.name}: all training series must use the same [learning] event")
        series, hashes = [], []
        for d in datasets:
            c = d.candles
            labels = self.labels(c, len(d) - 1, event)
            samples = np.flatnonzero(~np.isnan(labels).all(axis=1))
            series.append(Series(feature_matrix(c.open, c.high, c.low, c.close, c.volume), labels,
                                 samples[samples >= WARMUP]))
            hashes.append(data_hash(c.time, c.close))
        weights, mean, std, report = fit(self.family, series, self.fit_options(), event.horizon, progress,
                                         desc=f"train {self.name}")
        first = min(int(d.candles.time[min(WARMUP, len(d) - 1)]) for d in datasets)
        last = max(int(d.candles.time[-1]) for d in datasets)
        meta = {
            "kind": self.kind, "features": list(FEATURES), "horizon": event.horizon,
            "threshold": event.threshold, **self.hyper(),
            "data_first_time": first, "data_last_time": last,
            "data_first": _iso(first), "data_last": _iso(last),
            "symbols": [d.symbol for d in datasets], "data_hash": data_hash(np.array(hashes).astype("S64")),
            "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "package_version": mlcoord.__version__, "seed": self.options.seed,
            "report": {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in report.items()},
        }
        arrays = {"norm_mean": mean, "norm_std": std, **{f"w.{k}": val for k, val in weights.items()}}
        out = Path(out)
        path = out if out.suffix == ".npz" else out / f"{self.name}.npz"
        save_artifact(path, arrays, meta)
        self._artifact = None
        return {**report, "path": str(path), "data_first": meta["data_first"], "data_last": meta["data_last"]}

    # -- online feedback ---------------------------------------------------------------------
    def learn(self, outcome) -> None:
        """Track the accuracy of this component's own past votes; warn once on drift."""
        from mlcoord.learning import RunningScore
        mine = next((vt for vt in outcome.votes if vt.component == self.name), None)
        if mine is None:
            return
        p = mine.probability(outcome.direction)
        if self.sided:           # its number is P(the trade wins): score it on the trade label
            trade = outcome.trade(outcome.direction)
            if trade is None:
                return
            hit = bool(trade.win)
        else:
            hit = bool(outcome.hit)
        if self._score is None:
            self._score = RunningScore()
        self._score.update(p, hit)
        self._recent.append(int((p >= 0.5) == hit))
        o = self.options
        if len(self._recent) == o.drift_window and not self._drift_warned:
            recent = sum(self._recent) / len(self._recent)
            if recent < o.drift_accuracy:
                self._drift_warned = True
                log.warning("ml_model_drift", component=self.name, symbol=outcome.symbol,
                            recent_accuracy=round(recent, 4), window=o.drift_window,
                            threshold=o.drift_accuracy, run_accuracy=self._score.accuracy,
                            fix=f"retrain with `mlcoord train --component {self.name}` or set retrain_every_bars")

    def state(self) -> dict:
        s = self._score
        return {"n": s.n if s else 0, "correct": s.correct if s else 0, "loss": s.loss if s else 0.0,
                "recent": list(self._recent), "drift_warned": self._drift_warned}

    def load_state(self, state: Mapping[str, Any]) -> None:
        from mlcoord.learning import RunningScore
        score = RunningScore()
        score.n, score.correct, score.loss = int(state["n"]), int(state["correct"]), float(state["loss"])
        self._score = score
        self._recent = deque((int(x) for x in state.get("recent", ())), maxlen=self.options.drift_window)
        self._drift_warned = bool(state.get("drift_warned", False))

    @property
    def running_score(self):
        return self._score
