"""The ``hedging`` guard: three triggers with hysteresis, one hedge."""

from __future__ import annotations

import math
from typing import Optional

import attrs

from mlcoord import Decision, GuardAction, Side, Trade

from mlcoord_hedging.trackers import EquityVolatility, PriceCorrelation


def _fraction(lo_open: bool = True):
    def check(instance, attribute, value):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (ok and (0 < value if lo_open else 0 <= value) and value <= 1):
            raise ValueError(f"{attribute.name} must be a number in {'(' if lo_open else '['}0, 1], got {value!r}")
    return check


def _positive_number(instance, attribute, value):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _bars(lo: int):
    def check(instance, attribute, value):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= lo):
            raise ValueError(f"{attribute.name} must be an integer >= {lo} (bars), got {value!r}")
    return check


_flag = attrs.validators.instance_of(bool)
_EPS = 1e-12


@attrs.frozen
class HedgingOptions:
    """Options of the ``hedging`` guard, from ``[plugins.hedging]``.

    * ``hedge_fraction`` (0.5): fraction of the net exposure hedged while any trigger is active.
    * ``use_drawdown`` (true), ``drawdown_trigger`` (0.10), ``drawdown_release`` (0.05): hedge at a
      drawdown >= trigger, release at <= release (hysteresis: in between, keep the state).
    * ``use_volatility`` (true), ``vol_window`` (24 bars), ``vol_baseline`` (720 bars),
      ``vol_trigger_ratio`` (2.5), ``vol_release_ratio`` (1.5), ``vol_baseline_refresh`` (24 bars):
      hedge when the equity curve's realised vol over ``vol_window`` exceeds trigger x the median
      of that vol over ``vol_baseline`` bars (needs ``vol_baseline / 2`` bars of vol history;
      the median is refreshed every ``vol_baseline_refresh`` bars); release below release x.
      A zero baseline (an equity curve flat most of the time) never triggers.
    * ``use_correlation`` (true), ``corr_window`` (72 bars), ``corr_trigger`` (0.9),
      ``corr_release`` (0.75): hedge when >= 2 symbols are exposed in the same direction and
      the mean pairwise correlation of their per-bar returns is >= trigger; release below release.
    """

    hedge_fraction: float = attrs.field(default=0.5, validator=_fraction())
    use_drawdown: bool = attrs.field(default=True, validator=_flag)
    drawdown_trigger: float = attrs.field(default=0.10, validator=_fraction())
    drawdown_release: float = attrs.field(default=0.05, validator=_fraction(lo_open=False))
    use_volatility: bool = attrs.field(default=True, validator=_flag)
    vol_window: int = attrs.field(default=24, validator=_bars(2))
    vol_baseline: int = attrs.field(default=720, validator=_bars(2))
    vol_trigger_ratio: float = attrs.field(default=2.5, validator=_positive_number)
    vol_release_ratio: float = attrs.field(default=1.5, validator=_positive_number)
    vol_baseline_refresh: int = attrs.field(default=24, validator=_bars(1))
    use_correlation: bool = attrs.field(default=True, validator=_flag)
    corr_window: int = attrs.field(default=72, validator=_bars(3))
    corr_trigger: float = attrs.field(default=0.9, validator=_fraction())
    corr_release: float = attrs.field(default=0.75, validator=_fraction(lo_open=False))

    def __attrs_post_init__(self):
        for trigger, release in (("drawdown_trigger", "drawdown_release"),
                                 ("vol_trigger_ratio", "vol_release_ratio"),
                                 ("corr_trigger", "corr_release")):
            if getattr(self, release) > getattr(self, trigger):
                raise ValueError(f"{release} ({getattr(self, release)}) must be <= {trigger} "
                                 f"({getattr(self, trigger)}), or the hedge would flap")


class HedgingGuard:
    """Portfolio guard (see the package docstring). Deterministic; state is only what it saw."""

    def __init__(self, options: Optional[HedgingOptions] = None):
        self.options = o = options or HedgingOptions()
        self._vol = EquityVolatility(o.vol_window, o.vol_baseline, o.vol_baseline_refresh)
        self._corr = PriceCorrelation(o.corr_window)
        self._direction: dict[str, int] = {}
        self.active: dict[str, str] = {}       # trigger name -> the reason it fired
        self._released: list[str] = []
        self._opened = False                   # this guard asked for the hedge that is on

    # -- PortfolioGuard -------------------------------------------------------------------------
    def allow_entry(self, symbol: str, side: Side, portfolio) -> Optional[str]:
        """Hedging never vetoes entries."""
        return None

    def on_trade_closed(self, trade: Trade, decision: Optional[Decision] = None) -> None:
        """Outcomes do not matter to the hedge: it reacts to the portfolio only."""

    def on_bar(self, portfolio) -> list[GuardAction]:
        o = self.options
        if o.use_drawdown:
            self._drawdown(portfolio)
        if o.use_volatility:
            self._volatility(portfolio)
        if o.use_correlation:
            self._correlation(portfolio)

        hedged = portfolio.hedged()
        if self.active:
            if hedged or portfolio.gross_exposure() <= 0:
                return []
            self._opened, self._released = True, []
            reason = "; ".join(self.active.values())
            return [GuardAction("open_hedge", f"{reason}: hedge {o.hedge_fraction:.0%} of exposure",
                                symbol=None, fraction=o.hedge_fraction)]
        if self._opened:
            self._opened = False
            if hedged:
                return [GuardAction("close_hedge", "; ".join(self._released) + ": close hedge")]
        return []

    # -- triggers -------------------------------------------------------------------------------
    def _set(self, name: str, on: bool, off: bool, fire_reason, release_reason) -> None:
        """Hysteresis: turn ``name`` on when ``on``, off when ``off``, otherwise keep its state."""
        if name not in self.active and on:
            self.active[name] = fire_reason()
        elif name in self.active and off:
            del self.active[name]
            self._released.append(release_reason())

    def _drawdown(self, portfolio) -> None:
        o, dd = self.options, float(portfolio.drawdown)
        # 1 - equity/peak carries rounding (1 - 0.9 = 0.0999...): compare with a tiny tolerance so
        # a drawdown of exactly the trigger fires and one of exactly the release releases.
        self._set("drawdown", dd >= o.drawdown_trigger - _EPS, dd <= o.drawdown_release + _EPS,
                  lambda: f"drawdown {dd:.1%} >= {o.drawdown_trigger:.1%}",
                  lambda: f"drawdown {dd:.1%} <= {o.drawdown_release:.1%}")

    def _volatility(self, portfolio) -> None:
        o, v = self.options, self._vol
        v.update(float(portfolio.equity))
        if v.vol is None or not v.baseline:
            self._set("volatility", False, True, None,
                      lambda: "volatility baseline unavailable (flat equity)")
            return
        ratio = v.vol / v.baseline
        self._set("volatility", ratio > o.vol_trigger_ratio, ratio < o.vol_release_ratio,
                  lambda: (f"volatility {v.vol:.3g} over {o.vol_window} bars = {ratio:.2f}x median "
                           f"{v.baseline:.3g} > {o.vol_trigger_ratio:g}x"),
                  lambda: (f"volatility {ratio:.2f}x median {v.baseline:.3g} < {o.vol_release_ratio:g}x"))

    def _correlation(self, portfolio) -> None:
        o = self.options
        symbols = tuple(portfolio.symbols())
        self._corr.update(symbols, [portfolio.last_price(s) for s in symbols])
        groups: dict[int, list[str]] = {1: [], -1: []}
        for s in symbols:
            d = self._exposure_direction(s, portfolio)
            if d:
                groups[d].append(s)
        best: Optional[tuple[float, int, list[str]]] = None
        for d, group in groups.items():
            if len(group) >= 2:
                c = self._corr.mean_pairwise(group)
                if c is not None and (best is None or c > best[0]):
                    best = (c, d, group)
        if best is None:
            self._set("correlation", False, True, None,
                      lambda: "correlation: fewer than 2 symbols exposed the same way")
            return
        c, d, group = best
        names = f"{'long' if d > 0 else 'short'} {', '.join(group)}"
        self._set("correlation", c >= o.corr_trigger, c < o.corr_release,
                  lambda: f"correlation {c:.2f} >= {o.corr_trigger:.2f} of {names} over {o.corr_window} bars",
                  lambda: f"correlation {c:.2f} < {o.corr_release:.2f} of {names}")

    def _exposure_direction(self, symbol: str, portfolio) -> int:
        """Sign of the symbol's net exposure. A full hedge zeroes net exposure, so while a symbol
        is hedged at zero net it keeps the direction it had before the hedge."""
        e = float(portfolio.exposure(symbol))
        if e > 0 or e < 0:
            d = 1 if e > 0 else -1
            self._direction[symbol] = d
            return d
        if portfolio.hedged(symbol):
            return self._direction.get(symbol, 0)
        self._direction.pop(symbol, None)
        return 0
