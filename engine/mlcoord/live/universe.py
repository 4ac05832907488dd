"""Which symbols a paper or live session trades, and changing them while it runs (the API's reload).

A session trades ``[data] symbols`` or, on live with ``[live] scan = true``, the scanner's pick.
Changing either never abandons a position: a symbol taken out keeps its bars, exits and stops while
it holds a position or a working entry (managed only: no new entry) and leaves the fetch list once
flat. A symbol put in is checked against the exchange's markets first (on live also against what
the exchange holds that the store does not know, and its leverage is set); it gets its warm-up
history without being stepped (no decision on the past) and trades from its next closed bar.
A change that cannot be applied is refused whole: the session goes on with what it had.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import structlog

from mlcoord.errors import MlcoordError
from mlcoord.live.feed import CANDLE_PAGE

log = structlog.get_logger("mlcoord.live.universe")

class Universe:
    """The configured symbols of a session (paper; live without the scanner: :class:`LiveUniverse`).

    ``symbols`` is this cycle's fetch list (the wanted symbols, then those held but no longer
    wanted), ``ccxt_symbols`` their exchange names; the trader's entries are limited to the wanted
    ones (``trader.entry_symbols``)."""

    def __init__(self, trader, wanted: Sequence[str], *, exchange, health, market: str, timeframe: str,
                 history_bars: int, page: int = CANDLE_PAGE, leverage: Optional[float] = None):
        from mlcoord.live.exchange import market_symbol

        self.trader, self.exchange, self.health = trader, exchange, health
        self.market, self.timeframe, self.history_bars, self.page = market, timeframe, history_bars, page
        self.leverage = leverage
        self._ccxt = lambda s: market_symbol(s, market)
        self.wanted: list[str] = list(wanted)
        self.symbols: list[str] = list(wanted)
        self.ccxt_symbols: dict[str, str] = {s: self._ccxt(s) for s in self.symbols}

    # -- every cycle ---------------------------------------------------------------------------
    def held(self, symbols: Sequence[str]) -> set[str]:
        """Those of ``symbols`` with a position or a working entry (they stay until flat)."""
        loop = self.trader.engine.loop
        return {s for s in symbols if s in loop.ledger.positions or loop.venue.has_entries(s)}

    def refresh(self) -> list[str]:
        """This cycle's symbols: the wanted ones, then those a reload took out that are still held
        (no new entry on those). Nothing is asked while no symbol is on its way out."""
        wanted = set(self.wanted)
        leaving = [s for s in self.symbols if s not in wanted]
        still = self.held(leaving) if leaving else set()
        gone = [s for s in leaving if s not in still]
        if gone:
            log.info("universe_symbols_left", symbols=gone, note="flat now: no longer fetched or traded")
        symbols = self.wanted + [s for s in leaving if s in still]
        if symbols != self.symbols:
            self.symbols = symbols
            self.ccxt_symbols = {s: self._ccxt(s) for s in symbols}
        self.trader.entry_symbols = wanted
        return self.symbols

    # -- a reload (the trading thread, at a cycle's start) -------------------------------------
    def reload(self, settings, keys: Sequence[str]) -> str:
        """Apply the universe keys among ``keys`` from ``settings``; the result text for the audit."""
        if any(k == "live.scan" or k.startswith("live.scanner") for k in keys):
            return ("refused: a paper session trades [data] symbols; the scanner ([live] scan, [live.scanner]) "
                    "runs on live only")
        return self.set_symbols(_configured(settings))

    def set_symbols(self, new: Sequence[str]) -> str:
        new = list(dict.fromkeys(new))
        if not new:
            return "refused: [data] symbols is empty"
        before = set(self.wanted)
        added = [s for s in new if s not in before]
        try:
            self.admit(added)
        except MlcoordError as exc:
            return f"refused: {exc}"
        removed = [s for s in self.wanted if s not in new]
        self.wanted = new
        self.refresh()
        managed = [s for s in removed if s in self.symbols]
        log.info("universe_symbols_changed", symbols=new, added=added, removed=removed, managed_only=managed)
        return _changed(new, added, removed, managed)

    def admit(self, symbols: Sequence[str]) -> None:
        """New symbols: known to the exchange's markets, then their warm-up history (not stepped)."""
        if not symbols:
            return
        from mlcoord.live.preflight import check_market_arguments

        check_market_arguments(self.exchange, self.market, list(symbols), [self.timeframe], self.leverage,
                               health=self.health, whole_leverage=True)
        self.prepare(symbols)
        self._warm_up(symbols)

    def prepare(self, symbols: Sequence[str]) -> None:
        """What the account needs before a new symbol trades (nothing on a simulated one)."""

    def _warm_up(self, symbols: Sequence[str]) -> None:
        from mlcoord.live.runner import fetch_closed

        found = fetch_closed(self.exchange, self.health, list(symbols), {s: self._ccxt(s) for s in symbols},
                             self.timeframe, self.history_bars, page=self.page, screen=self.trader.screen)
        for c in found:
            self.trader.add_history(c)


class LiveUniverse(Universe):
    """A live session's symbols: ``[data] symbols``, or the scanner's pick each cycle
    (``scanner``; ``make_scanner(options)`` builds one when a reload turns scanning on or changes
    its options). Held symbols are those with an active plan in the store."""

    def __init__(self, trader, wanted: Sequence[str], *, scanner=None,
                 make_scanner: Optional[Callable[[Any], Any]] = None, ignore: Sequence[str] = (),
                 margin_mode: str = "isolated", unknown_orders: str = "refuse", **kw):
        super().__init__(trader, wanted, **kw)
        self.scanner, self.make_scanner = scanner, make_scanner
        self.ignore = list(ignore)
        self.margin_mode, self.unknown_orders = margin_mode, unknown_orders

    def held(self, symbols: Optional[Sequence[str]] = None) -> set[str]:
        """Symbols with an active plan in the store (of ``symbols`` only, if given)."""
        active = {p.symbol for p in self.trader.store.active_plans()}
        return active if symbols is None else active & set(symbols)

    def refresh(self) -> list[str]:
        """This cycle's symbols: the scanner's pick plus every symbol with an active plan (or, with
        no scanner, the wanted ones and those held). A symbol new to the session gets its leverage
        set and its warm-up history; one back after an absence gets the bars it missed (history
        only, never stepped)."""
        if self.scanner is None:
            return super().refresh()
        from mlcoord.live.runner import fetch_closed
        from mlcoord.live.session import scanner_pick

        picked = scanner_pick(self.scanner, self.health, self.ignore)
        held = sorted(self.held() - set(picked))
        symbols = picked + held
        self.trader.entry_symbols = set(picked)
        self.wanted = list(picked)
        catch_up = [s for s in symbols if s not in self.symbols]
        if catch_up:
            broker = self.trader.broker
            broker.setup_symbols([s for s in catch_up if s not in self.trader.history], self.leverage,
                                 self.margin_mode)
            found = fetch_closed(broker.exchange, self.health, catch_up, {s: broker.symbol(s) for s in catch_up},
                                 self.timeframe, self.history_bars, page=self.page, screen=self.trader.screen)
            for c in found:
                self.trader.add_history(c)
            log.info("scanner_symbols", picked=picked, managed_only=held, added=catch_up)
        self.symbols = symbols
        self.ccxt_symbols = {s: self._ccxt(s) for s in symbols}
        return symbols

    def reload(self, settings, keys: Sequence[str]) -> str:
        scan_keys = [k for k in keys if k == "live.scan" or k.startswith("live.scanner")]
        if not scan_keys:
            if self.scanner is not None:
                return "reloaded: [data] symbols (used once the scanner is off: it picks the symbols now)"
            return self.set_symbols(_configured(settings))
        return self._rescanner(settings)

    def _rescanner(self, settings) -> str:
        from mlcoord.config import structure
        from mlcoord.live.runner import LiveLoopOptions

        try:
            options = structure(dict(settings.live), LiveLoopOptions, path="$.live")
        except MlcoordError as exc:
            return f"refused: {exc}"
        if not options.scan:
            was = self.scanner
            if was is None:
                return "reloaded: scanner options (used once [live] scan is on)"
            self.scanner = None            # [data] symbols from now on, unless they are refused
            done = self.set_symbols(_configured(settings))
            if done.startswith("refused"):
                self.scanner = was
                return done
            was.close()
            return "reloaded: scanner off; " + done[len("reloaded: "):]
        if self.make_scanner is None:
            return "refused: this session cannot start a scanner (restart required)"
        try:
            scanner = self.make_scanner(options.scanner)
        except MlcoordError as exc:
            return f"refused: {exc}"
        was = self.scanner
        self.scanner = scanner
        if was is not None:
            was.close()
        self.refresh()
        return (f"reloaded: scanner {'options' if was is not None else 'on'}; trading {', '.join(self.symbols)}")

    def close(self) -> None:
        if self.scanner is not None:
            self.scanner.close()

    def prepare(self, symbols: Sequence[str]) -> None:
        """Refused when the exchange holds something on a new symbol that the store does not know
        (as at start, where --adopt or --ignore decide); else its margin mode and leverage are set."""
        from mlcoord.live.broker import BrokerError
        from mlcoord.live.startup import survey

        ignored = [s for s in symbols if s in self.ignore]
        if ignored:
            raise BrokerError(f"{', '.join(ignored)} ignored for this session (--ignore): restart to trade it")
        broker = self.trader.broker
        unknown = survey(broker, list(symbols), orders=self.unknown_orders == "refuse")
        if unknown:
            raise BrokerError("the exchange holds what the store has no record of: "
                              + "; ".join(u.line() for u in unknown)
                              + ". Restart with --adopt or --ignore to decide about it")
        broker.setup_symbols(list(symbols), self.leverage, self.margin_mode)


def _configured(settings) -> list[str]:
    return list(settings.data.symbols or ["BTC/USDT"])


def _changed(new: Sequence[str], added: Sequence[str], removed: Sequence[str], managed: Sequence[str]) -> str:
    out = f"reloaded: symbols {', '.join(new)}"
    if added:
        out += f" (added {', '.join(added)})"
    if removed:
        out += f"; removed {', '.join(removed)}"
    if managed:
        out += f" ({', '.join(managed)} managed without new entries until flat)"
    return out
