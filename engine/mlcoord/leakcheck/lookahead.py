"""``mlcoord check lookahead``: does any output of the configured pipeline use bars after its own?

The pipeline runs once on the full data, then again on the data cut after each of at least 50
sampled bars (spread over the series, drawn from the seed; half of them right after a signal bar,
where a discrete signal shows a leak) plus the data without its last bar. Each run builds fresh
components from the data it is given, higher timeframes rebuilt from the cut base bars (so an
unfinished 4h bar is the last one, as in a live run). Everything before the cut must be exactly
equal, floats bit for bit:

* every signal source's action and confidence on every bar, its reasons on every BUY/SELL bar;
* the combined signal (action, confidence) on every bar;
* every ML component's vote (action, probabilities, weight, or its abstention) on every signal bar,
  given the same technical signal;
* the ensemble's and calibrator's confidence on those bars, given the same votes, and the entry
  decision given the same confidence (outcome, entry plan, initial levels, size; a flat account);
* the exit manager's levels: initial levels of hypothetical long and short entries at bars just
  before the cut (and two earlier ones), and every per-bar update of the held position up to the cut.

A look-ahead shows at the cut: a value computed with a later bar changes (or fails) when that bar
is gone. The cost is one prepare per cut on the cut bars only (vectorised), votes on the signal
bars, and a few short exit-level paths per cut: well under a minute for 20,000 bars.
"""

from __future__ import annotations

import time as _time
from typing import Any, Callable, Mapping, Optional, Sequence

import attrs
import numpy as np

from mlcoord.backtest.run import parse_timerange
from mlcoord.bounds import checked_levels
from mlcoord.candles import Candles
from mlcoord.errors import ConfigError, PluginError
from mlcoord.leakcheck.report import SCHEMA_VERSION, ComponentLookahead, Difference, LookaheadReport, SymbolRun
from mlcoord.leakcheck.runs import Run, check_settings, new_pipeline, prepare, when
from mlcoord.leakcheck.values import ABSTAINED, Raised, plain, same, same_arrays
from mlcoord.market_inputs import MarketInputs
from mlcoord.market_sources import load_inputs
from mlcoord.model import Action, PositionExit, Side, Vote
from mlcoord.model_coverage import leave_out_models_covering
from mlcoord.registry import PluginSet
from mlcoord.testing.fixtures import FakePortfolio, FakePosition
from mlcoord.testing.trading import SIDES, ladder

MIN_SAMPLES = 50
#: hypothetical entries this many bars before a cut's last bar, their levels updated up to it
RECENT_ENTRIES = (0, 1, 5, 23, 47)
#: earlier entries per cut (drawn from the seed), each followed for ``EARLY_BARS`` bars
EARLY_ENTRIES, EARLY_BARS = 2, 24


@attrs.frozen
class _BarDecision:
    """One entry decision, split into what each part of the pipeline contributed."""

    technical: Any                      # (action, confidence, reasons) of the signal sources
    votes: dict[str, Any]               # ML component -> vote tuple, ABSTAINED or Raised
    confidence: Any                     # (action, raw, calibrated, p_signal), or Raised if decide() raised
    entry: Any                          # (outcome, plan, levels, sizing, veto)


def _vote_value(v: Vote) -> tuple:
    return (v.action, v.confidence, v.p_up, v.p_down, v.weight, v.coefficient, v.contribution)


def _vote_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return dict(zip(("action", "confidence", "p_up", "p_down", "weight", "coefficient", "contribution"),
                        plain(value)))
    return plain(value)


def _confidence_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return dict(zip(("action", "raw_confidence", "confidence", "p_signal"), plain(value)))
    return plain(value)


def _entry_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return dict(zip(("outcome", "plan", "levels", "sizing", "veto"), plain(value)))
    return plain(value)


def _decisions(run: Run, bars: np.ndarray, settings) -> dict[int, _BarDecision]:
    """``Pipeline.decide`` at ``bars`` in order (a stateful component sees the same sequence of
    calls in every run), for a flat account of fixed equity: only the bars differ between runs."""
    pipeline, sym = run.pipeline, run.sym
    assert sym is not None
    names = [name for name, _ in sym.voters]
    events = run.errors.events
    times = sym.data.candles.time
    portfolio = FakePortfolio(prices={sym.data.symbol: 0.0})
    b = settings.backtest
    out = {}
    for i in bars.tolist():
        portfolio.time = int(times[i])
        portfolio.prices[sym.data.symbol] = float(sym.data.candles.close[i])
        before = len(events)
        try:
            d = pipeline.decide(sym, i, portfolio.view(), time=int(times[i]), leverage=b.leverage,
                                fee_rate=b.fee_taker, slippage=b.slippage)
        except Exception as exc:
            raised = Raised.of(exc)
            out[i] = _BarDecision(raised, {}, raised, raised)
            continue
        failed = {e.component: e.error for e in events[before:] if e.call == "vote"}
        given = {v.component: v for v in d.votes}
        t = d.technical
        out[i] = _BarDecision(
            (t.action, t.confidence, t.reasons),
            {n: failed[n] if n in failed else (_vote_value(given[n]) if n in given else ABSTAINED) for n in names},
            (d.signal.action, d.raw_confidence, d.confidence, d.p_signal),
            (d.outcome, d.plan, d.levels, d.sizing, d.veto))
    return out


@attrs.define
class _Tracker:
    """One component's comparisons over every cut; keeps the earliest difference."""

    symbol: str
    component: str
    role: str
    compared: int = 0
    cuts: int = 0
    differing: int = 0
    first: Optional[Difference] = None
    errors: list[str] = attrs.field(factory=list)
    _now: bool = False

    def start_cut(self) -> None:
        self.cuts += 1
        self._now = False

    def found(self, diff: Difference) -> None:
        if not self._now:
            self.differing += 1
            self._now = True
        if self.first is None or (self.first.cut == diff.cut and (diff.bar if diff.bar is not None else -1)
                                  < (self.first.bar if self.first.bar is not None else -1)):
            self.first = diff

    def result(self) -> ComponentLookahead:
        return ComponentLookahead(self.symbol, self.component, self.role, self.compared, self.cuts,
                                  self.differing, self.first, tuple(self.errors))


def sample_cuts(n: int, samples: int, seed: int, signal_bars: np.ndarray) -> list[int]:
    """Bars kept by each truncated run: one per stratum of ``samples`` equal strata over the series
    (the first 5% left out: too short to say much), every other one right after a signal bar of the
    full run when the stratum has one; plus ``n - 1`` (the data without its last bar)."""
    lo, hi = max(2, n // 20), n - 1
    if hi - lo < samples:
        raise ConfigError(f"{n} bars are too few for {samples} truncations (samples); at least "
                          f"{samples + 2 + max(2, n // 20)} bars are needed")
    rng = np.random.default_rng(seed)
    edges = np.linspace(lo, hi, samples + 1).astype(np.int64)
    after_signal = np.asarray(signal_bars, dtype=np.int64) + 1
    cuts = []
    for j in range(samples):
        a, b = int(edges[j]), int(edges[j + 1])
        pool = after_signal[(after_signal >= a) & (after_signal < b)]
        cuts.append(int(rng.choice(pool)) if j % 2 == 0 and len(pool) else int(rng.integers(a, b)))
    return sorted({*cuts, n - 1})


def _entries(k: int, seed: int) -> list[tuple[int, int]]:
    """(entry bar, end) of the hypothetical positions checked at cut ``k``: levels from the entry
    bar's initial() through update() of every bar before ``end``."""
    last = k - 1
    out = [(last - d, k) for d in RECENT_ENTRIES if last - d >= 0]
    room = last - max(RECENT_ENTRIES)
    if room > 0:
        rng = np.random.default_rng((seed, k))
        out += [(int(i), min(int(i) + EARLY_BARS, k)) for i in rng.integers(0, room, EARLY_ENTRIES)]
    return out


def _path(run: Run, i: int, side: Side, end: int) -> list[Any]:
    """Initial levels of a two-leg entry at bar ``i``, then the engine's update after every bar up
    to ``end`` (the stop only tightens, as ``Pipeline.update_levels`` enforces); a failing call
    ends the path with its :class:`Raised`."""
    pipeline, sym = run.pipeline, run.sym
    assert sym is not None
    c = sym.data.candles
    price = float(c.close[i])
    plan = ladder(side, price)
    try:
        levels = sym.positions.initial(i, side, plan)
        checked_levels(levels, side, plan, price)
    except Exception as exc:
        return [Raised.of(exc)]
    out: list[Any] = [levels]
    position = FakePosition(side, plan.average_price, i + 1, price, quantity=1.0, entries_filled=2,
                            entries_planned=2)
    events = run.errors.events
    for j in range(i + 1, end):
        position.best_price = max(position.best_price, float(c.high[j])) if side is Side.LONG \
            else min(position.best_price, float(c.low[j]))
        before = len(events)
        answer = pipeline.update_levels(sym, j, position.view(levels), levels)
        if len(events) > before:
            out.append(events[-1].error)
            break
        out.append(answer)
        if isinstance(answer, PositionExit):
            break
        levels = answer
    return out


def _reasons(series: Any, i: int) -> Any:
    try:
        return tuple(series.explain(i))
    except Exception as exc:
        return Raised.of(exc)


def _source_value(action: np.ndarray, confidence: np.ndarray, i: int, reasons: Any = None) -> dict[str, Any]:
    out = {"action": Action(int(action[i])).name, "confidence": plain(float(confidence[i]))}
    if reasons is not None:
        out["reasons"] = plain(reasons)
    return out


class _SymbolCheck:
    """The full run of one symbol and its comparison with every truncated run."""

    def __init__(self, settings, plugins: PluginSet, candles: Candles, samples: int, seed: int,
                 start_ns: Optional[int], inputs: Optional[MarketInputs] = None):
        self.settings, self.plugins, self.candles, self.seed = settings, plugins, candles, seed
        self.inputs = inputs
        self.symbol = candles.symbol
        pipeline = new_pipeline(settings, plugins)
        before = [b.name for b in pipeline.components.ml_components]
        self.notes = [f"{self.symbol}: {n}" for n in leave_out_models_covering(pipeline, [candles], start_ns)]
        self.left_out = frozenset(before) - {b.name for b in pipeline.components.ml_components}
        full = self.full = prepare(pipeline, settings, candles, inputs)
        if full.failure is not None or full.sym is None:
            raise PluginError(f"the pipeline cannot run on the full data of {self.symbol}: {full.failure}")
        sym = full.sym
        comps = pipeline.components
        self.source_names = [b.name for b in comps.signal_sources]
        self.voter_names = [b.name for b in comps.ml_components]
        self.full_sources = dict(sym.sources)
        self.full_voters = {name for name, _ in sym.voters}
        cal = comps.calibrator.name if comps.calibrator else None
        tracker = lambda name, role: _Tracker(self.symbol, name, role)  # noqa: E731
        self.sources = {name: tracker(name, "signal source") for name in self.source_names}
        self.combined = tracker("signals (combined)", "combined signal")
        self.voters = {name: tracker(name, "ML component") for name in self.voter_names}
        self.confidence = tracker("+".join([*(["ensemble"] if self.voter_names else []), *([cal] if cal else [])])
                                  or "confidence", "confidence")
        self.entry = tracker("entry", "entry decision")
        self.exits = tracker(comps.exit_manager.name, "exit manager")
        failed = [*(t for n, t in self.sources.items() if n not in self.full_sources),
                  *(t for n, t in self.voters.items() if n not in self.full_voters)]
        for t in failed:
            error = full.errors.first(t.component, "prepare")
            t.errors.append(f"prepare failed on the full data ({error}); the backtest runs without it")
        self.full_decisions = _decisions(full, np.flatnonzero(sym.action), settings)
        self.full_reasons: dict[tuple[str, int], Any] = {}
        live = [np.flatnonzero(np.asarray(s.action)) for s in self.full_sources.values()]
        try:
            self.cuts = sample_cuts(len(candles), samples, seed, np.unique(np.concatenate(
                [np.flatnonzero(sym.action), *live])))
        except ConfigError as exc:
            raise ConfigError(f"{self.symbol}: {exc}") from None
        for key, count in sorted(full.errors.counts.items()):
            if not key.endswith(".prepare"):
                first = next(e for e in full.errors.events if f"{e.component}.{e.call}" == key)
                at = f" at bar {first.bar}" if first.bar is not None else ""
                self.notes.append(f"{self.symbol}: {key} failed {count} time(s) on the full data (first{at}: "
                                  f"{first.error}); the backtest leaves those calls out too")

    def trackers(self) -> list[_Tracker]:
        combined = [self.combined] if len(self.full_sources) > 1 else []
        return [*self.sources.values(), *combined, *self.voters.values(), self.confidence, self.entry, self.exits]

    def run_cut(self, k: int) -> None:
        for t in self.trackers():
            t.start_cut()
        run = prepare(new_pipeline(self.settings, self.plugins, self.left_out), self.settings,
                      self.candles.slice(0, k, own=True), self.inputs)
        cut_time = when(self.candles, k - 1)
        if run.failure is not None or run.sym is None:
            self.exits.found(Difference(k, cut_time, None, None, "prepare", "prepared", plain(run.failure)))
            return
        self._sources(run, k, cut_time)
        self._decisions(run, k, cut_time)
        self._exits(run, k, cut_time)

    def _diff(self, k: int, cut_time: str, bar: Optional[int], what: str, full: Any, cut: Any) -> Difference:
        return Difference(k, cut_time, bar, when(self.candles, bar) if bar is not None else None, what, full, cut)

    def _sources(self, run: Run, k: int, cut_time: str) -> None:
        assert run.sym is not None
        cut_sources = dict(run.sym.sources)
        pairs: list[tuple[_Tracker, Any, Any, Optional[str]]] = [
            (self.sources[name], self.full_sources[name], cut_sources.get(name), name)
            for name in self.source_names if name in self.full_sources]
        full_sym = self.full.sym
        assert full_sym is not None
        if len(self.full_sources) > 1:     # one source passes through unchanged
            pairs.append((self.combined, _Combined(full_sym.action, full_sym.confidence),
                          _Combined(run.sym.action, run.sym.confidence), None))
        for t, full, cut, name in pairs:
            if cut is None:
                t.found(self._diff(k, cut_time, None, "prepare", f"a series of {len(self.candles)} bars",
                                   plain(run.errors.first(name or "", "prepare"))))
                continue
            fa, fc = np.asarray(full.action)[:k], np.asarray(full.confidence, dtype=np.float64)[:k]
            ca, cc = np.asarray(cut.action), np.asarray(cut.confidence, dtype=np.float64)
            t.compared += k
            differs = ~(same_arrays(fa, ca) & same_arrays(fc, cc))
            first = int(np.argmax(differs)) if differs.any() else k
            if first < k:
                what = "action" if not same_arrays(fa[first:first + 1], ca[first:first + 1])[0] else "confidence"
                t.found(self._diff(k, cut_time, first, what, _source_value(fa, fc, first),
                                   _source_value(ca, cc, first)))
            if name is None:
                continue
            for i in np.flatnonzero(ca[:first] != 0).tolist():
                key = (name, i)
                if key not in self.full_reasons:
                    self.full_reasons[key] = _reasons(full, i)
                said = _reasons(cut, i)
                if not same(self.full_reasons[key], said):
                    t.found(self._diff(k, cut_time, i, "reasons", _source_value(fa, fc, i, self.full_reasons[key]),
                                       _source_value(ca, cc, i, said)))
                    break

    def _decisions(self, run: Run, k: int, cut_time: str) -> None:
        assert run.sym is not None
        cut_voters = {name for name, _ in run.sym.voters}
        checked = [n for n in self.voter_names if n in self.full_voters]
        for name in checked:
            if name not in cut_voters:
                self.voters[name].found(self._diff(k, cut_time, None, "prepare", "prepared",
                                                   plain(run.errors.first(name, "prepare"))))
        decisions = _decisions(run, np.flatnonzero(run.sym.action), self.settings)
        for i, cut in decisions.items():
            full = self.full_decisions.get(i)
            if full is None or not same(full.technical, cut.technical):
                continue            # the signal differs: reported by the source / combined comparison
            agree = True
            signal = Action(int(full.technical[0])).name if isinstance(full.technical, tuple) else "a"
            for name in checked:
                if name not in cut_voters:
                    agree = False
                    continue
                t = self.voters[name]
                t.compared += 1
                fv, cv = full.votes.get(name), cut.votes.get(name)
                if not same(fv, cv):
                    agree = False
                    t.found(self._diff(k, cut_time, i, f"vote on a {signal} signal", _vote_plain(fv), _vote_plain(cv)))
            if not agree:
                continue
            self.confidence.compared += 1
            if not same(full.confidence, cut.confidence):
                self.confidence.found(self._diff(k, cut_time, i, f"confidence of a {signal} signal",
                                                 _confidence_plain(full.confidence),
                                                 _confidence_plain(cut.confidence)))
                continue
            self.entry.compared += 1
            if not same(full.entry, cut.entry):
                self.entry.found(self._diff(k, cut_time, i, f"decision on a {signal} signal",
                                            _entry_plain(full.entry), _entry_plain(cut.entry)))

    def _exits(self, run: Run, k: int, cut_time: str) -> None:
        t = self.exits
        for i, end in _entries(k, self.seed):
            for side in SIDES:
                full, cut = _path(self.full, i, side, end), _path(run, i, side, end)
                for step in range(max(len(full), len(cut))):
                    t.compared += 1
                    fv = full[step] if step < len(full) else None
                    cv = cut[step] if step < len(cut) else None
                    if not same(fv, cv):
                        what = f"initial levels of a {side.name} entry" if step == 0 else \
                            f"update({i + step}) of a {side.name} opened at bar {i}"
                        t.found(self._diff(k, cut_time, i + step, what,
                                           plain(fv) if step < len(full) else "no call (the path ended)",
                                           plain(cv) if step < len(cut) else "no call (the path ended)"))
                        break


@attrs.frozen
class _Combined:
    action: np.ndarray
    confidence: np.ndarray


def check_options(samples: Any, seed: Any) -> None:
    """Bad option values stop with their name and value (before any data is loaded)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_SAMPLES:
        raise ConfigError(f"samples must be an integer >= {MIN_SAMPLES}, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")


def check_lookahead(settings, plugins: PluginSet, candles: Sequence[Candles], *, samples: int = MIN_SAMPLES,
                    seed: int = 0, progress: Optional[Callable[[int, int], None]] = None,
                    inputs: Optional[Mapping[str, MarketInputs]] = None) -> LookaheadReport:
    """Run the configured pipeline on ``candles`` in full and cut after sampled bars; compare (see
    the module docstring). ``progress(done, total)`` is called after every truncated run.
    ``inputs``: each symbol's market inputs, cut with the data (None: the configured ones)."""
    check_options(samples, seed)
    if not candles:
        raise ConfigError("no candles to check")
    started = _time.perf_counter()
    settings = check_settings(settings)
    start = parse_timerange(settings.data.timerange)[0]
    inputs = load_inputs(settings, candles) if inputs is None else inputs
    checks = [_SymbolCheck(settings, plugins, c, samples, seed, start,
                           inputs.get(c.symbol)) for c in candles]
    total, done = sum(len(s.cuts) for s in checks), 0
    for s in checks:
        for k in s.cuts:
            s.run_cut(k)
            done += 1
            if progress is not None:
                progress(done, total)
    notes = [n for s in checks for n in s.notes]
    if settings.learning.state_file:
        notes.append(f"the learning state {settings.learning.state_file!r} is not restored: every run starts "
                     f"fresh (a state is dated and checked by the backtest itself)")
    return LookaheadReport(
        SCHEMA_VERSION, candles[0].timeframe, samples, seed,
        tuple(SymbolRun(s.symbol, len(s.candles), when(s.candles, 0), when(s.candles, len(s.candles) - 1),
                        tuple(s.cuts)) for s in checks),
        tuple(t.result() for s in checks for t in s.trackers()), tuple(notes),
        round(_time.perf_counter() - started, 3))
