"""Validators for plugins' attrs options classes: one spelling of "a number in [0, 1]".

Each returns an attrs validator whose error names the option and the value, as config errors do
(``stop_atr must be a number in (0, 20], got -1``). TOML gives typed values, so a bool is never
taken for a number.

    @attrs.frozen
    class Options:
        period: int = attrs.field(default=20, validator=integer(2))
        weight: float = attrs.field(default=0.5, validator=fraction())
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import attrs

Validator = Callable[[Any, Any, Any], None]


@attrs.frozen
class AccountSettings:
    """The engine's account settings (``[exchange] market``, ``[backtest]`` leverage and costs):
    what an options class may check its own values against when the config is read."""

    market: str
    leverage: float
    fee_taker: float
    fee_maker: float
    slippage: float


@runtime_checkable
class ChecksAccount(Protocol):
    """An options class whose values must agree with the account's settings: the engine calls
    ``check_account`` when it reads ``[plugins.NAME]``; a ValueError naming the option first
    (``max_leverage must be >= ...``) stops the run with that option's key path. A contradiction
    is an error at start rather than a run that silently vetoes every entry."""

    def check_account(self, account: AccountSettings) -> None: ...


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def env_name(instance: Any, attribute: Any, value: Any) -> None:
    """The name of an environment variable holding a credential (never the credential itself).
    The value is not echoed: a key pasted here by mistake must not reach the terminal."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ValueError(f"{attribute.name} must name an environment variable (A-Z, 0-9, _), e.g. "
                         f"{attribute.default}; the secret itself goes into that variable (exchange keys: or the keys file)",
                         attribute)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False,
           hi_open: bool = False, why: str = "") -> Validator:
    """A finite number within the bounds given (closed unless ``lo_open``/``hi_open``)."""
    def check(instance: Any, attribute: Any, value: Any) -> None:
        ok = _real(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            raise ValueError(f"{attribute.name} must be {_range('a finite number', lo, hi, lo_open, hi_open)}, "
                             f"got {value!r}{why}")
    return check


def fraction(*, lo_open: bool = False, hi_open: bool = False, why: str = "") -> Validator:
    """A number in [0, 1] (ends open as asked)."""
    return number(0.0, 1.0, lo_open=lo_open, hi_open=hi_open, why=why)


def integer(lo: Optional[int] = None, hi: Optional[int] = None, *, why: str = "") -> Validator:
    """An integer (not a bool) within [lo, hi]."""
    def check(instance: Any, attribute: Any, value: Any) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
        if not ok:
            raise ValueError(f"{attribute.name} must be {_range('an integer', lo, hi, False, False)}, "
                             f"got {value!r}{why}")
    return check


def flag(instance: Any, attribute: Any, value: Any) -> None:
    """true or false (not 0/1)."""
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")


def _range(what: str, lo: Any, hi: Any, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"{'a number' if what.endswith('number') else what} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi:g}"
    return what


__all__ = ["number", "fraction", "integer", "flag", "AccountSettings", "ChecksAccount"]
