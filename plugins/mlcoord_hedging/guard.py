"""The ``hedging`` guard: three triggers with hysteresis, one hedge."""

from __future__ import annotations

import math
from typing import Optional

import attrs

from mlcoord.api import Decision, GuardAction, Trade, flag, fraction, integer, number

from mlcoord_hedging.trackers import MarketReturns


_EPS = 1e-12


@attrs.frozen
class HedgingOptions:
    """Options of the ``hedging`` guard, from ``[plugins.hedging]``.

    * ``hedge_fraction`` (0.5): fraction of the net exposure hedged while any trigger is active.
    * ``use_drawdown`` (true), ``drawdown_trigger`` (0.10), ``drawdown_release`` (0.05): hedge at a
      drawdown >= trigger, release at <= release (hysteresis: in between, keep the state).
    * ``use_volatility`` (true), ``vol_window`` (24 bars), ``vol_baseline`` (720 bars),
      ``vol_trigger_ratio`` (2.5), ``vol_release_ratio`` (1.5), ``vol_baseline_refresh`` (24 bars):
      while the portfolio is exposed, hedge when the realised volatility of the market it holds
      reaches trigger x that market's normal volatility; release below release x. Every symbol's
      price returns are tracked every bar, held or not; a symbol's normal volatility is the
      median of its ``vol_window``-bar realised vol over the last ``vol_baseline`` bars (needs
      ``vol_baseline / 2`` bars of history; refreshed at most every ``vol_baseline_refresh``
      bars). One exposed symbol: the ratio is its current vol over its baseline. Several: the
      current vol is that of the exposure-weighted return (signed weights = net exposure / gross,
      today's weights over the last ``vol_window`` bars, so a long/short pair offsets), and the
      baseline is the same portfolio with each symbol's returns rescaled to its baseline vol
      (the current correlations kept), so the ratio measures elevated volatility, not changed
      correlation (the correlation trigger's job). Never fires while flat, nor on a price that
      has not moved (zero baseline).
    * ``use_correlation`` (true), ``corr_window`` (72 bars), ``corr_trigger`` (0.9),
      ``corr_release`` (0.75): hedge when >= 2 symbols are exposed in the same direction and
      the mean pairwise correlation of their per-bar returns is >= trigger; release below release.
      ``corr_refresh_bars`` (4): a 72-bar correlation moves slowly, so it is re-evaluated every
      this-many bars, and at once whenever the set of exposed symbols changes (1: every bar).
    """

    hedge_fraction: float = attrs.field(default=0.5, validator=fraction(lo_open=True))
    use_drawdown: bool = attrs.field(default=True, validator=flag)
    drawdown_trigger: float = attrs.field(default=0.10, validator=fraction(lo_open=True))
    drawdown_release: float = attrs.field(default=0.05, validator=fraction())
    use_volatility: bool = attrs.field(default=True, validator=flag)
    vol_window: int = attrs.field(default=24, validator=integer(2, why=" (bars)"))
    vol_baseline: int = attrs.field(default=720, validator=integer(2, why=" (bars)"))
    vol_trigger_ratio: float = attrs.field(default=2.5, validator=number(0.0, lo_open=True))
    vol_release_ratio: float = attrs.field(default=1.5, validator=number(0.0, lo_open=True))
    vol_baseline_refresh: int = attrs.field(default=24, validator=integer(1, why=" (bars)"))
    use_correlation: bool = attrs.field(default=True, validator=flag)
    corr_window: int = attrs.field(default=72, validator=integer(3, why=" (bars)"))
    corr_trigger: float = attrs.field(default=0.9, validator=fraction(lo_open=True))
    corr_release: float = attrs.field(default=0.75, validator=fraction())
    corr_refresh_bars: int = attrs.field(default=4, validator=integer(1, why=" (bars)"))

    def __attrs_post_init__(self):
        for trigger, release in (("drawdown_trigger", "drawdown_release"),
                                 ("vol_trigger_ratio", "vol_release_ratio"),
                                 ("corr_trigger", "corr_release")):
            if getattr(self, release) > getattr(self, trigger):
                raise ValueError(f"{release} ({getattr(self, release)}) must be <= {trigger} "
                                 f"({getattr(self, trigger)}), or the hedge would flap")


class HedgingGuard:
    """Portfolio guard (see the package docstring). Deterministic; state is only what it saw.

    Per bar it costs a drawdown comparison and one price append per priced symbol; the
    exposure-dependent triggers (and the statistics they need, computed lazily from the recorded
    prices) are evaluated only while the portfolio holds something.
    """

    #: a hedge leg is a short: the engine refuses this guard on a spot account
    markets = ("futures",)

    def __init__(self, options: Optional[HedgingOptions] = None):
        self.options = o = options or HedgingOptions()
        self._market: Optional[MarketReturns] = None
        if o.use_volatility or o.use_correlation:
            self._market = MarketReturns(o.vol_window, o.vol_baseline, o.vol_baseline_refresh,
                                         o.corr_window if o.use_correlation else 0,
                                         track_vol=o.use_volatility)
        self._last_exposure: dict[str, float] = {}
        self._corr_key: tuple = ()
        self._corr_age = 0
        self._corr_best: Optional[tuple[float, int, list[str]]] = None
        self.active: dict[str, str] = {}       # trigger name -> the reason it fired
        self._released: list[str] = []
        self._opened = False                   # this guard asked for the hedge that is on
        # True after a flat bar left nothing to do (no trigger, exposure memory, correlation,
        # release or hedge of ours); any state change clears it. While it holds, a flat bar
        # only records prices and checks the drawdown.
        self._quiet = False
        self._dd_trigger = o.drawdown_trigger - _EPS
        self._dd_release = o.drawdown_release + _EPS
        # the last bar found nothing held and changed nothing: the next flat bars would only add
        # prices (a backtest may then hand them over at once, see skip_flat_bars)
        self._flat_fixed = False

    # -- PortfolioGuard -------------------------------------------------------------------------
    def on_trade_closed(self, trade: Trade, decision: Optional[Decision] = None) -> None:
        """Outcomes do not matter to the hedge: it reacts to the portfolio only."""

    def on_bar(self, portfolio) -> list[GuardAction]:
        """Update every trigger from the portfolio; ask for a hedge while any is active and none
        is on, and close the hedge this guard asked for once none is active."""
        if portfolio.open_positions():
            self._flat_fixed = False
            return self._on_bar(portfolio)
        before = self._signature()
        actions = self._on_bar(portfolio)
        self._flat_fixed = not actions and self._signature() == before
        return actions

    def can_skip_flat_bars(self, portfolio) -> bool:
        """While the portfolio stays flat its drawdown and exposure stay put, so once a flat bar
        changed nothing, the next ones only add prices."""
        return self._flat_fixed

    def skip_flat_bars(self, portfolio, times, closes) -> None:
        """Record the stretch's prices as ``on_bar`` would have, bar by bar."""
        if self._market is not None:
            self._market.record_many(portfolio.symbols(), closes)

    def _signature(self) -> tuple:
        """Everything a flat bar may change, prices aside."""
        return (tuple(self.active), self._opened, len(self._released), len(self._last_exposure),
                self._corr_key, self._corr_best is None, self._quiet)

    def _on_bar(self, portfolio) -> list[GuardAction]:
        o, active, market = self.options, self.active, self._market
        if o.use_drawdown:
            dd = portfolio.drawdown
            # 1 - equity/peak carries rounding (1 - 0.9 = 0.0999...): a tiny tolerance makes a
            # drawdown of exactly the trigger fire and one of exactly the release release.
            if dd <= self._dd_release if "drawdown" in active else dd >= self._dd_trigger:
                self._drawdown(float(dd))
        flat = False
        if market is not None:
            symbols = portfolio.symbols()
            market.record(symbols, portfolio.last_price)
            if portfolio.open_positions():
                self._quiet = False
                exposed = self._exposures(portfolio, symbols)
            elif self._quiet:
                return []
            else:
                exposed, flat = None, True
            if exposed:
                if o.use_volatility:
                    self._volatility(exposed)
                if o.use_correlation:
                    if len(exposed) >= 2:
                        self._correlation(exposed)
                    elif "correlation" in active or self._corr_best is not None:
                        self._no_correlation()
            else:
                if self._last_exposure:
                    self._last_exposure.clear()
                if "volatility" in active:
                    self._set("volatility", False, True, None, lambda: "volatility: nothing exposed")
                if "correlation" in active or self._corr_best is not None:
                    self._no_correlation()
        if active:
            if portfolio.hedged() or portfolio.gross_exposure() <= 0:
                return []
            self._opened, self._released, self._quiet = True, [], False
            reason = "; ".join(active.values())
            return [GuardAction("open_hedge", f"{reason}: hedge {o.hedge_fraction:.0%} of exposure",
                                symbol=None, fraction=o.hedge_fraction)]
        released = self._released
        if released:
            self._released = []
        self._quiet = flat                     # the flat branch cleared the rest
        if self._opened:
            self._opened = False
            if portfolio.hedged():
                return [GuardAction("close_hedge", "; ".join(released) + ": close hedge")]
        return []

    # -- restart ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a restarted live bot must not forget: the active triggers (so a hedge is released
        by the same hysteresis), whether the hedge on is this guard's, the exposures it
        remembers for hedged symbols, and each symbol's volatility baseline with its age (the
        baseline is refreshed every ``vol_baseline_refresh`` bars from when it was last
        computed: without its age a restarted guard would refresh at other bars and compare
        against another median). Prices are rebuilt from the warm-up history."""
        baselines = {}
        m = self._market
        if m is not None and m.track_vol:
            for symbol, x in m.series.items():
                if x.baseline is not None:
                    baselines[symbol] = [float(x.baseline), int(m.bar - x.baseline_bar)]
        return {"version": 1, "active": dict(self.active), "opened": self._opened,
                "last_exposure": dict(self._last_exposure), "released": list(self._released),
                "baselines": baselines}

    def load_state(self, state: dict) -> None:
        if state.get("version") != 1:
            raise ValueError(f"hedging state version {state.get('version')!r} is not 1")
        self.active = {str(k): str(v) for k, v in state["active"].items()}
        self._opened = bool(state["opened"])
        self._last_exposure = {str(k): float(v) for k, v in state["last_exposure"].items()}
        self._released = [str(r) for r in state.get("released", [])]
        self._quiet = self._flat_fixed = False
        self._corr_key, self._corr_best, self._corr_age = (), None, 0
        m = self._market
        for symbol, (value, age) in state.get("baselines", {}).items():
            x = m.series.get(symbol) if m is not None else None
            if x is not None:            # the warm-up replay priced it: same baseline, same phase
                x.baseline, x.baseline_bar = float(value), m.bar - int(age)

    # -- triggers -------------------------------------------------------------------------------
    def _set(self, name: str, on: bool, off: bool, fire_reason, release_reason) -> None:
        """Hysteresis: turn ``name`` on when ``on``, off when ``off``, otherwise keep its state."""
        if name not in self.active and on:
            self.active[name] = fire_reason()
            self._quiet = False
        elif name in self.active and off:
            del self.active[name]
            self._released.append(release_reason())
            self._quiet = False

    def _drawdown(self, dd: float) -> None:
        o = self.options
        self._set("drawdown", dd >= o.drawdown_trigger - _EPS, dd <= o.drawdown_release + _EPS,
                  lambda: f"drawdown {dd:.1%} >= {o.drawdown_trigger:.1%}",
                  lambda: f"drawdown {dd:.1%} <= {o.drawdown_release:.1%}")

    def _no_correlation(self) -> None:
        self._corr_key, self._corr_best = (), None
        self._set("correlation", False, True, None, lambda: "correlation: fewer than 2 symbols exposed")

    def _exposures(self, portfolio, symbols) -> dict[str, float]:
        """Net exposure of every exposed symbol. A full hedge zeroes net exposure, so while a
        symbol is hedged at zero net it keeps the exposure it had before the hedge."""
        out, last = {}, self._last_exposure
        for s in symbols:
            e = float(portfolio.exposure(s))
            if e > 0.0 or e < 0.0:
                out[s] = last[s] = e
            elif s in last:
                if portfolio.hedged(s):
                    out[s] = last[s]
                else:
                    del last[s]
        return out

    def _volatility(self, exposed: dict[str, float]) -> None:
        o, m = self.options, self._market
        held = []                                  # (symbol, exposure, vol, baseline)
        for s, e in exposed.items():
            vol, base = m.vol(s), m.baseline(s)
            if vol is not None and base:
                held.append((s, e, vol, base))
        if not held:
            self._set("volatility", False, True, None,
                      lambda: "volatility baseline unavailable for the exposed symbols")
            return
        if len(held) == 1:
            _, _, vol, base = held[0]
        else:
            vol, base = _book_volatility(m, held, o.vol_window)
            if not base:
                self._set("volatility", False, True, None, lambda: "volatility baseline is zero")
                return
        ratio = vol / base
        if not (ratio < o.vol_release_ratio if "volatility" in self.active else ratio >= o.vol_trigger_ratio):
            return                                 # no transition: skip building the reasons
        names = ", ".join(h[0] for h in held)
        self._set("volatility", ratio >= o.vol_trigger_ratio, ratio < o.vol_release_ratio,
                  lambda: (f"volatility of {names} {vol:.3g} over {o.vol_window} bars = {ratio:.2f}x "
                           f"its median {base:.3g} >= {o.vol_trigger_ratio:g}x"),
                  lambda: (f"volatility of {names} {ratio:.2f}x its median {base:.3g} "
                           f"< {o.vol_release_ratio:g}x"))

    def _correlation(self, exposed: dict[str, float]) -> None:
        o = self.options
        groups: dict[int, list[str]] = {1: [], -1: []}
        for s, e in exposed.items():
            groups[1 if e > 0 else -1].append(s)
        key = (tuple(groups[1]), tuple(groups[-1]))
        self._corr_age += 1
        if key != self._corr_key or self._corr_age >= o.corr_refresh_bars:
            best: Optional[tuple[float, int, list[str]]] = None
            for d, group in groups.items():
                if len(group) >= 2:
                    c = self._market.mean_pairwise(group)
                    if c is not None and (best is None or c > best[0]):
                        best = (c, d, group)
            self._corr_best = best
            if best is not None:           # keep re-evaluating every bar until history suffices
                self._corr_key, self._corr_age = key, 0
        best = self._corr_best
        if best is None:
            self._set("correlation", False, True, None,
                      lambda: "correlation: fewer than 2 symbols exposed the same way")
            return
        c, d, group = best
        names = f"{'long' if d > 0 else 'short'} {', '.join(group)}"
        self._set("correlation", c >= o.corr_trigger, c < o.corr_release,
                  lambda: f"correlation {c:.2f} >= {o.corr_trigger:.2f} of {names} over {o.corr_window} bars",
                  lambda: f"correlation {c:.2f} < {o.corr_release:.2f} of {names}")


def _book_volatility(m: MarketReturns, held, window: int) -> tuple[float, float]:
    """(current, baseline) vol of the exposure-weighted return over the last ``window`` bars,
    with today's signed weights w: current**2 = sum w_i w_j rho_ij vol_i vol_j, and the baseline
    the same with each vol_i replaced by its baseline (today's correlations rho kept)."""
    gross = sum(abs(e) for _, e, _, _ in held)
    cur = base = 0.0
    for i, (s, e, vol, b) in enumerate(held):
        w = e / gross
        cur += (w * vol) ** 2
        base += (w * b) ** 2
        for t, f, vol2, b2 in held[i + 1:]:
            rho2 = 2.0 * w * (f / gross) * m.window_correlation(s, t)
            cur += rho2 * vol * vol2
            base += rho2 * b * b2
    return math.sqrt(max(cur, 0.0)), math.sqrt(max(base, 0.0))
