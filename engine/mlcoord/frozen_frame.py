"""A pandas DataFrame that refuses writes: what ``Candles.frame`` hands every plugin.

All plugins and the engine share one frame per series. A signal source that added a column to
``data.candles.frame`` in ``prepare`` passed backtests, then stopped paper trading at the next bar
with a ``CandleError`` that named no plugin; one that scaled prices in place wrote prices 16x the
real ones into the stored session history after 5 cycles. Here every write to the frame itself
(``frame["x"] = ...``, ``frame.loc[...] = ...``, ``frame.iloc``/``at``/``iat``, ``del``,
``insert``, ``pop``, ``update``, ``+=`` and the other in-place operators, ``inplace=True``,
setting ``index``/``columns``) raises :class:`FrozenFrameError`, which the engine logs under the
plugin's name; the columns are read-only numpy arrays, so a write through ``frame["close"].values``
raises too. What a plugin derives from the frame (``frame.copy()``, ``frame[["close"]]``,
``frame.rolling(20).mean()``, ``frame.assign(x=...)``) is a plain DataFrame it may change freely.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pandas as pd

from mlcoord.views import FrozenDict

_TEXT = ("this DataFrame is read-only (market data shared by every plugin and the engine): work on a "
         "copy, e.g. frame = data.candles.frame.copy(), or build new columns with frame.assign(...)")
_IN_PLACE_OPERATORS = ("__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
                       "__ipow__", "__iand__", "__ior__", "__ixor__")


class FrozenFrameError(TypeError):
    """A plugin tried to change a read-only DataFrame."""


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise FrozenFrameError(_TEXT)


class _Indexer:
    """``loc``, ``iloc``, ``at``, ``iat`` of a read-only frame: reading works, setting raises."""

    __slots__ = ("_indexer",)
    _indexer: Any

    def __init__(self, indexer: Any):
        object.__setattr__(self, "_indexer", indexer)

    def __getitem__(self, key: Any) -> Any:
        return self._indexer[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._indexer(*args, **kwargs)

    __setitem__ = __setattr__ = _refuse


class ReadOnlyFrame(pd.DataFrame):
    """A DataFrame whose writes raise :class:`FrozenFrameError`; build it over read-only arrays
    (``copy=False``). Operations that make a new frame give a plain (writable) DataFrame."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    @classmethod
    def _from_arrays(cls, *args: Any, **kwargs: Any) -> pd.DataFrame:   # rolling/transpose results: plain
        return pd.DataFrame._from_arrays(*args, **kwargs)

    # pandas' fast paths for a plain DataFrame's results (a subclass's went through an extra copy
    # of every column read: frame.loc[t, "close"] took twice as long)
    def _constructor_from_mgr(self, mgr: Any, axes: Any) -> pd.DataFrame:
        return pd.DataFrame._from_mgr(mgr, axes=axes)

    def _constructor_sliced_from_mgr(self, mgr: Any, axes: Any) -> pd.Series:
        series = pd.Series._from_mgr(mgr, axes)
        object.__setattr__(series, "_name", None)       # as pandas does: the caller names it
        return series

    def __setattr__(self, name: str, value: Any) -> None:
        # pandas sets private attributes while it builds a frame and caches; those stay allowed
        # (``_mgr`` only once). A public name would be a column or an axis.
        if name.startswith("_") and (name != "_mgr" or "_mgr" not in self.__dict__):
            object.__setattr__(self, name, value)
        else:
            _refuse(self)

    __setitem__ = __delitem__ = insert = pop = isetitem = update = _refuse
    _update_inplace = _set_axis = _refuse
    for _name in _IN_PLACE_OPERATORS:
        locals()[_name] = _refuse
    del _name

    def __reduce__(self):              # pickled (to another process), it arrives as a plain copy
        return self.copy().__reduce__()

    @property
    def attrs(self) -> dict:
        return FrozenDict(super().attrs)

    @attrs.setter
    def attrs(self, value: Any) -> None:
        _refuse(self)

    @property
    def loc(self) -> Any:
        return _Indexer(super().loc)

    @property
    def iloc(self) -> Any:
        return _Indexer(super().iloc)

    @property
    def at(self) -> Any:
        return _Indexer(super().at)

    @property
    def iat(self) -> Any:
        return _Indexer(super().iat)


__all__ = ["FrozenFrameError", "ReadOnlyFrame"]
