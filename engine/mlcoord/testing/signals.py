"""Checks of the components that judge the market: signal sources and ML voters.

Each check takes ``(spec, get_data)``; ``get_data()`` returns the kit's MarketData.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from mlcoord import bounds
from mlcoord.bounds import checked_series
from mlcoord.components import SignalSeries
from mlcoord.model import Action, Signal, Vote
from mlcoord.testing.core import (
    ConformanceError, build, call, close, engine_accepts, expect, probability, reasons_ok, role_check, warmup_bars, who,
)
from mlcoord.testing.fixtures import array_digests, private_copy
from mlcoord.testing.state import SAVE_AT, differs, feed_trades, has_state, restored, saved_state

SHORT_LENGTHS = (0, 1, 10, 60)
#: truncation points: not multiples of 4 or 24, so the last 4h and 1d bars are unfinished
TRUNCATIONS = (1001, 2017)
SIGNALS = (Signal(Action.BUY, 0.7, ("conformance check",), "conformance"),
           Signal(Action.SELL, 0.7, ("conformance check",), "conformance"))


def truncations(n: int) -> list[int]:
    """The fixed truncation points that fit in ``n`` bars (fewer when a caller passes short data)."""
    return [k for k in TRUNCATIONS if k < n]


# -- signal sources ---------------------------------------------------------------------------------
def prepared_series(spec, source, data) -> SignalSeries:
    """``source.prepare(data)``, checked for type, length, actions and confidence ranges."""
    n = len(data)
    series = call(spec, f"prepare() on {n} bars", source.prepare, data)
    expect(isinstance(series, SignalSeries), f"{who(spec)}: prepare() returned {type(series).__name__}, "
                                             f"expected mlcoord.components.SignalSeries")
    action, confidence = np.asarray(series.action), np.asarray(series.confidence)
    expect(len(action) == n and len(confidence) == n,
           f"{who(spec)}: {len(action)} actions and {len(confidence)} confidences for {n} bars")
    bad = ~np.isin(action, (-1, 0, 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise ConformanceError(f"{who(spec)}: action {action[i].item()!r} at bar {i} is not -1, 0 or 1")
    conf = confidence.astype(float)
    live = action != 0
    bad = live & ~((conf >= 0) & (conf <= 1))             # NaN fails too
    bad |= ~live & ((conf < 0) | (conf > 1))              # HOLD bars: NaN allowed, never out of range
    if bad.any():
        i = int(np.argmax(bad))
        raise ConformanceError(f"{who(spec)}: confidence {float(conf[i])!r} at bar {i} ({Action(int(action[i])).name}) "
                               f"is not in [0, 1]")
    return engine_accepts(spec, f"prepare() on {n} bars", checked_series, series, n)


def explained(spec, series: SignalSeries, i: int) -> tuple[str, ...]:
    reasons = call(spec, f"explain({i})", series.explain, i)
    expect(reasons_ok(reasons), f"{who(spec)}: bar {i} is {Action(int(series.action[i])).name} but explain({i}) "
                                f"gave {reasons!r}; every non-HOLD bar needs at least one non-empty reason")
    return tuple(reasons)


@role_check("signal_sources", name="output")
def source_output(spec, get_data) -> None:
    data = get_data()
    series = prepared_series(spec, build(spec), data)
    live = np.flatnonzero(np.asarray(series.action))
    expect(len(live), f"{who(spec)}: no BUY or SELL on {len(data)} bars of real BTC/USDT 1h data; a source "
                      f"that never signals cannot be checked (or used)")
    for i in live:
        explained(spec, series, int(i))


@role_check("signal_sources", name="short_data")
def source_short_data(spec, get_data) -> None:
    data = get_data()
    for n in SHORT_LENGTHS:
        series = prepared_series(spec, build(spec), data.head(n))
        for i in np.flatnonzero(np.asarray(series.action)):
            explained(spec, series, int(i))


def _compare_series(spec, a: SignalSeries, b: SignalSeries, k: int, what: str, tol: float) -> None:
    """``a`` and ``b`` must agree on bars ``[0, k)``: actions, confidences, recent reasons."""
    act_a, act_b = np.asarray(a.action)[:k], np.asarray(b.action)[:k]
    diff = act_a != act_b
    if diff.any():
        i = int(np.argmax(diff))
        raise ConformanceError(f"{who(spec)}: bar {i}: {what} ({Action(int(act_a[i])).name} vs "
                               f"{Action(int(act_b[i])).name})")
    conf_a = np.asarray(a.confidence, float)[:k]
    conf_b = np.asarray(b.confidence, float)[:k]
    live = act_a != 0
    diff = live & ~(np.abs(conf_a - conf_b) <= tol)
    if diff.any():
        i = int(np.argmax(diff))
        raise ConformanceError(f"{who(spec)}: bar {i}: {what} (confidence {float(conf_a[i])!r} vs {float(conf_b[i])!r})")
    for i in np.flatnonzero(live)[-10:]:
        ra, rb = explained(spec, a, int(i)), explained(spec, b, int(i))
        expect(ra == rb, f"{who(spec)}: bar {i}: {what} (reasons {ra!r} vs {rb!r})")


def signal_truncations(full: SignalSeries, count: int = 20) -> list[int]:
    """The fixed truncation points plus ``k = i + 1`` for ``count`` signal bars ``i`` spread over the
    data: a look-ahead of a bar or two only shows at the end of the truncated data, and a discrete
    signal only shows it where the full data has a signal."""
    live = np.flatnonzero(np.asarray(full.action))
    picks = live[np.linspace(0, len(live) - 1, min(count, len(live))).astype(int)] + 1 if len(live) else []
    return sorted({*truncations(len(full)), *(int(k) for k in picks)} & set(range(1, len(full) + 1)))


@role_check("signal_sources", name="no_lookahead")
def source_no_lookahead(spec, get_data) -> None:
    data = get_data()
    full = prepared_series(spec, build(spec), data)
    for k in signal_truncations(full):
        part = prepared_series(spec, build(spec), data.head(k))
        _compare_series(spec, part, full, k,
                        f"prepare(data.head({k})) differs from prepare(data): the signal uses later bars", 1e-9)


@role_check("signal_sources", name="deterministic")
def source_deterministic(spec, get_data) -> None:
    data = get_data()
    n = len(data)
    one = build(spec)
    a = prepared_series(spec, one, data)
    b = prepared_series(spec, build(spec), data)
    _compare_series(spec, a, b, n, "two fresh instances disagree on the same data (randomness? global state?)", 0.0)
    again = prepared_series(spec, one, data)
    _compare_series(spec, a, again, n, "a second prepare() on the same instance differs (state leaks between "
                                       "calls)", 0.0)


@role_check("signal_sources", name="no_mutation")
def source_no_mutation(spec, get_data) -> None:
    data = private_copy(get_data())
    before = array_digests(data)
    series = prepared_series(spec, build(spec), data)
    for i in np.flatnonzero(np.asarray(series.action))[:50]:
        explained(spec, series, int(i))
    _expect_unchanged(spec, before, data)


def _expect_unchanged(spec, before: dict[str, str], data) -> None:
    changed = [name for name, digest in array_digests(data).items() if before.get(name) != digest]
    expect(not changed, f"{who(spec)} changed its input data in place: {', '.join(changed)}; copy before modifying")


@role_check("signal_sources", name="state_roundtrip", applies=has_state)
def source_state_roundtrip(spec, get_data) -> None:
    data = get_data()
    original = build(spec)
    prepared_series(spec, original, data.head(SAVE_AT))
    feed_trades(spec, original, data)
    fresh = restored(spec, saved_state(spec, original))
    _compare_series(spec, prepared_series(spec, original, data), prepared_series(spec, fresh, data), len(data),
                    differs(spec, "signals differently"), 0.0)


# -- ML components ---------------------------------------------------------------------------------
def prepared_voter(spec, component, data):
    voter = call(spec, f"prepare() on {len(data)} bars", component.prepare, data)
    expect(callable(getattr(voter, "vote", None)),
           f"{who(spec)}: prepare() returned {type(voter).__name__} without a vote(i, signal) method")
    return voter


def checked_vote(spec, voter, i: int, signal: Signal) -> Optional[Vote]:
    vote = call(spec, f"vote({i}, {signal.action.name})", voter.vote, i, signal)
    if vote is None:
        return None
    expect(isinstance(vote, Vote), f"{who(spec)}: vote({i}) returned {type(vote).__name__}, expected Vote or None")
    for field in ("confidence", "p_up", "p_down", "weight"):
        value = getattr(vote, field)
        if field == "weight":
            ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        else:
            ok = value is None or probability(value)
        expect(ok, f"{who(spec)}: vote({i}) has {field}={value!r}, not a probability in [0, 1]")
    engine_accepts(spec, f"vote({i})", bounds.checked_vote, vote, spec.name)
    if vote.action != Action.HOLD:
        expect(reasons_ok(vote.reasons), f"{who(spec)}: vote({i}) says {vote.action.name} without reasons")
    return vote


def vote_values(spec, voter, bars: Iterable[int] | np.ndarray) -> list[tuple[int, int, Any]]:
    """(bar, signal direction, (action, confidence, p_up, p_down) or None) for each bar and signal."""
    out = []
    for i in bars:
        for signal in SIGNALS:
            v = checked_vote(spec, voter, int(i), signal)
            out.append((int(i), int(signal.action),
                        None if v is None else (int(v.action), v.confidence, v.p_up, v.p_down)))
    return out


def _compare_votes(spec, a, b, what: str, tol: float) -> None:
    for (i, d, va), (_, _, vb) in zip(a, b):
        same = (va is None and vb is None) or (
            va is not None and vb is not None and va[0] == vb[0] and all(close(x, y, tol) for x, y in zip(va[1:], vb[1:])))
        expect(same, f"{who(spec)}: bar {i} ({Action(d).name} signal): {what}: {va} vs {vb}")


def sample_bars(n: int, stride: int = 23, tail: int = 24, warm: int = 0) -> np.ndarray:
    """Every ``stride``-th bar from the start and from the end of the warm-up, and the last ``tail``."""
    return np.unique(np.concatenate([np.arange(0, n, stride), np.arange(min(warm, n), n, stride),
                                     np.arange(max(n - tail, 0), n)])).astype(int)


def built_voter(spec, data) -> tuple[Any, int]:
    """A fresh ML component and the warm-up it declares (``warmup_bars``: the bars at the start of
    the data it abstains on by design), checked to leave bars of ``data`` to vote on."""
    component = build(spec)
    warm = warmup_bars(spec, component)
    expect(warm < len(data) - 100, f"{who(spec)} declares warmup_bars = {warm}, which leaves fewer than 100 of the "
                                   f"{len(data)} bars to check it on; pass longer data (component_checks(data=...))")
    return component, warm


def expect_voted(spec, votes, warm: int, what: str) -> None:
    """A check that compared abstentions only tested nothing: some bar after the warm-up must get a vote."""
    if any(v is not None for i, _, v in votes if i >= warm):
        return
    bars = sorted({i for i, _, _ in votes})
    where = f"{len(bars)} bars between {bars[0]} and {bars[-1]}" if bars else "no bars"
    if warm:
        hint = f" after its declared warm-up of {warm} bars (warmup_bars)"
    else:
        hint = ("; a voter that abstains while it warms up declares it: warmup_bars = N on the component, and "
                "the kit then checks the bars after it")
    raise ConformanceError(f"{who(spec)}: {what} had nothing to compare: it abstained on every bar it asked ({where})"
                           f"{hint}")


def ml_truncations(n: int, warm: int) -> list[int]:
    """The fixed truncation points, plus one after the warm-up if none is (odd: not a multiple of 4)."""
    ks = truncations(n)
    if not any(k > warm + 40 for k in ks):
        ks.append((warm + (n - warm) // 2) | 1)
    return ks


@role_check("ml_components", name="output")
def ml_output(spec, get_data) -> None:
    """Votes of the right types and ranges; and it votes somewhere after its warm-up."""
    data = get_data()
    component, warm = built_voter(spec, data)
    votes = vote_values(spec, prepared_voter(spec, component, data), sample_bars(len(data), warm=warm))
    if not any(v is not None for i, _, v in votes if i >= warm):
        after = f" after its declared warm-up ({warm} of the {len(data)} bars)" if warm else f" of {len(data)} bars"
        hint = "" if warm else " (a voter that abstains while it warms up declares warmup_bars = N)"
        raise ConformanceError(f"{who(spec)} abstained on every sampled bar{after} of real data; it cannot be "
                               f"checked{hint}")


@role_check("ml_components", name="short_data")
def ml_short_data(spec, get_data) -> None:
    data = get_data()
    for n in SHORT_LENGTHS:
        vote_values(spec, prepared_voter(spec, build(spec), data.head(n)), range(n))


@role_check("ml_components", name="no_lookahead")
def ml_no_lookahead(spec, get_data) -> None:
    data = get_data()
    component, warm = built_voter(spec, data)
    full = prepared_voter(spec, component, data)
    compared = []
    for k in ml_truncations(len(data), warm):
        bars = np.unique(np.concatenate([np.arange(k - 40, k), np.arange(60, k, 97), np.arange(warm, k, 97)]))
        bars = bars[bars >= 0]
        part = vote_values(spec, prepared_voter(spec, build(spec), data.head(k)), bars)
        _compare_votes(spec, part, vote_values(spec, full, bars),
                       f"prepare(data.head({k})) votes differently from prepare(data): the vote uses later bars", 1e-9)
        compared += part
    expect_voted(spec, compared, warm, "no_lookahead")


@role_check("ml_components", name="deterministic")
def ml_deterministic(spec, get_data) -> None:
    data = get_data()
    one, warm = built_voter(spec, data)
    bars = sample_bars(len(data), stride=41, warm=warm)
    a = vote_values(spec, prepared_voter(spec, one, data), bars)
    expect_voted(spec, a, warm, "deterministic")
    _compare_votes(spec, a, vote_values(spec, prepared_voter(spec, build(spec), data), bars),
                   "two fresh instances vote differently (randomness? global state?)", 0.0)
    _compare_votes(spec, a, vote_values(spec, prepared_voter(spec, one, data), bars),
                   "a second prepare() on the same instance votes differently", 0.0)


@role_check("ml_components", name="no_mutation")
def ml_no_mutation(spec, get_data) -> None:
    data = private_copy(get_data())
    before = array_digests(data)
    component, warm = built_voter(spec, data)
    votes = vote_values(spec, prepared_voter(spec, component, data), sample_bars(len(data), stride=97, warm=warm))
    _expect_unchanged(spec, before, data)
    expect_voted(spec, votes, warm, "no_mutation")
