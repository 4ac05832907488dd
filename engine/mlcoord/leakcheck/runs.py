"""One run of a check: a freshly built pipeline prepared on full or cut data.

Every run builds its components anew (as the backtest does, through ``build_pipeline``), so an
online learner or a component's cache cannot carry what it saw in one run into the next: two runs
differ only in the bars they were given. Component failures are recorded (not logged): a call that
fails only on the cut data is a finding, shown in the report.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from mlcoord.candles import Candles
from mlcoord.components import MarketData
from mlcoord.config import Settings
from mlcoord.times import iso
from mlcoord.leakcheck.values import Raised
from mlcoord.market_inputs import MarketInputs
from mlcoord.market_sources import market_datasets
from mlcoord.pipeline import Guarded, Pipeline, PreparedSymbol, build_pipeline
from mlcoord.registry import PluginSet


def check_settings(settings: Settings) -> Settings:
    """The settings a check runs with: hook tracing off (it would log every call of every run)."""
    return attrs.evolve(settings, engine=attrs.evolve(settings.engine, trace_hooks=False, vote_timeout_ms=0.0,
                                                      call_timeout_ms=0.0))


def market_data(settings: Settings, candles: Candles, inputs: Optional[MarketInputs] = None) -> MarketData:
    """Context and higher timeframes rebuilt from ``candles`` alone, as the backtest builds them:
    on cut data the last higher-timeframe bar is the unfinished one a live bot would see, and the
    market ``inputs`` (funding, other symbols...) are cut at the last bar's close."""
    return market_datasets(settings, [candles], {candles.symbol: inputs} if inputs is not None else {})[0]


def when(candles: Candles, i: int) -> str:
    return iso(int(candles.time[i]))


@attrs.frozen
class Failure:
    component: str
    call: str
    error: Raised
    bar: Optional[int]


class Recorder(Guarded):
    """The pipeline's failure counter, keeping every failure for the report instead of logging it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Failure] = []

    def failed(self, component: str, call: str, error: BaseException | str, **where: Any) -> None:
        key = f"{component}.{call}"
        self.counts[key] = self.counts.get(key, 0) + 1
        self.events.append(Failure(component, call, Raised.of(error), where.get("bar")))

    def first(self, component: str, call: str) -> Optional[Raised]:
        return next((e.error for e in self.events if e.component == component and e.call == call), None)


@attrs.define
class Run:
    pipeline: Pipeline
    errors: Recorder
    sym: Optional[PreparedSymbol]
    failure: Optional[Raised] = None     # Pipeline.prepare itself raised (the exit manager failed)


def new_pipeline(settings: Settings, plugins: PluginSet, left_out: frozenset[str] = frozenset()) -> Pipeline:
    """A pipeline with components of its own, the ML components in ``left_out`` removed (those the
    backtest leaves out because their model saw every bar). Time budgets are off
    (:func:`check_settings`): a slow call must not make two runs differ."""
    pipeline = build_pipeline(settings, plugins)
    if left_out:
        pipeline.components.ml_components[:] = [b for b in pipeline.components.ml_components
                                                if b.name not in left_out]
    pipeline.errors = Recorder()
    return pipeline


def prepare(pipeline: Pipeline, settings: Settings, candles: Candles, inputs: Optional[MarketInputs] = None) -> Run:
    errors = pipeline.errors
    assert isinstance(errors, Recorder)
    try:
        sym = pipeline.prepare(market_data(settings, candles, inputs))
    except Exception as exc:
        return Run(pipeline, errors, None, Raised.of(exc))
    return Run(pipeline, errors, sym)
