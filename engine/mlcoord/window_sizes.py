"""Walk-forward window sizes checked against the data before any work starts.

``evaluate`` with its default sizes (two years to train, half a year to fit, half a year per
test window, in 1h bars) needs about 23,000 bars; on a shorter held-out market it used to end in
a raw ``ValueError`` traceback. This check says which sizes were asked for, what they need, and
sizes in the same proportions that fit the bars at hand, ready to paste.
"""

from __future__ import annotations

from typing import Any, Optional

from mlcoord.errors import ConfigError

#: a model's training part shorter than this leaves too little after the indicators' warm-up
MIN_TRAIN_BARS = 1_200


def needed_bars(train_bars: int, fit_bars: int, test_bars: int) -> int:
    """Fewest bars giving one window (:func:`mlcoord.evaluate.plan_windows` drops a last window
    shorter than a quarter of ``test_bars``)."""
    return train_bars + fit_bars + max(test_bars // 4, 1)


def fitting_sizes(n_bars: int, train_bars: int, fit_bars: int, test_bars: int,
                  windows: int = 2) -> Optional[tuple[int, int, int]]:
    """Sizes in the asked-for proportions giving ``windows`` full test windows in ``n_bars``;
    None when the training part would fall below :data:`MIN_TRAIN_BARS` (or under the asked one)."""
    total = train_bars + fit_bars + windows * test_bars
    if total <= 0:
        return None
    scale = n_bars / total
    sizes = (int(train_bars * scale), int(fit_bars * scale), max(int(test_bars * scale), 4))
    if train_bars and sizes[0] < min(MIN_TRAIN_BARS, train_bars):
        return None
    return sizes


def check_window_sizes(n_bars: int, wf: Any) -> None:
    """Raise a :class:`ConfigError` naming the sizes (and sizes that fit) unless ``wf`` gives a window."""
    for name, low in (("train_bars", 0), ("fit_bars", 0), ("test_bars", 4)):
        value = getattr(wf, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"evaluate: --{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
    if wf.windows is not None and (isinstance(wf.windows, bool) or not isinstance(wf.windows, int) or wf.windows < 1):
        raise ConfigError(f"evaluate: --windows must be an integer >= 1, got {wf.windows!r}")
    need = needed_bars(wf.train_bars, wf.fit_bars, wf.test_bars)
    if n_bars >= need:
        return
    asked = f"--train-bars {wf.train_bars} --fit-bars {wf.fit_bars} --test-bars {wf.test_bars}"
    text = (f"evaluate: the data has {n_bars:,} bars, too few for one walk-forward window with {asked}: "
            f"a window needs train + fit = {wf.train_bars + wf.fit_bars:,} bars of history and at least "
            f"test/4 = {max(wf.test_bars // 4, 1):,} bars to score ({need:,} in all).")
    for windows in (2, 1):
        fit = fitting_sizes(n_bars, wf.train_bars, wf.fit_bars, wf.test_bars, windows)
        if fit is not None and n_bars >= needed_bars(*fit):
            text += (f" Sizes in the same proportions that fit {n_bars:,} bars ({windows} window"
                     f"{'s' if windows > 1 else ''}): --train-bars {fit[0]} --fit-bars {fit[1]} --test-bars {fit[2]}.")
            break
    else:
        text += (f" No sizes in these proportions leave the models {MIN_TRAIN_BARS:,} bars to train on; use longer "
                 f"data, or --no-retrain with --train-bars 0 (then {wf.fit_bars + max(wf.test_bars // 4, 1):,} "
                 f"bars are enough).")
    raise ConfigError(text)
