"""Paper and live trading loops: the backtest's pipeline on candles as they close.

Paper trading *is* the backtest's loop, driven bar by bar: :class:`PaperTrader` keeps each
symbol's closed candles, re-prepares the latest ones when a bar closes (every ``prepare`` is
causal, so bar ``i`` sees what the backtest's bar ``i`` saw) and steps the trading loop
(:class:`mlcoord.loop.TradingLoop`) on the simulated venue: same fills (:mod:`mlcoord.simulated`),
same guards, same DCA ladders, same exit updates. ``tests/test_paper_parity.py`` proves the two
agree fill for fill.

A cycle's cost is bounded by ``[live] prepare_bars`` (the window re-prepared per bar; the ML
components compute only the newest bar's votes); ``tests/test_live_window.py`` shows the window
leaves the default pipeline's decisions unchanged on a history five times its length.

:class:`LiveTrader` (see :mod:`mlcoord.live.trader`) steps the same loop on the exchange venue.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import attrs
import numpy as np
import structlog

from mlcoord.results import RawResult
from mlcoord.simulation import SimulatedSession, TradingSession
from mlcoord.costs import FundingSeries
from mlcoord.candles import Candles
from mlcoord.components import build_market_data
from mlcoord.config import Settings
from mlcoord.journal import Journal
from mlcoord.live.bar_screen import BarScreen
from mlcoord.live.feed import CANDLE_PAGE, bars_wanted, closed_candles
from mlcoord.live.scanner import ScannerOptions
from mlcoord.live.supervisor import LiveOptions
from mlcoord.live.universe import Universe
from mlcoord.pipeline import Pipeline, PreparedSymbol

log = structlog.get_logger("mlcoord.live.runner")


class PaperTrader:
    """The trading loop on a simulated account, stepped as bars close.

    ``history`` holds each symbol's closed candles up to now (the indicators' warm-up); every
    later bar goes through :meth:`on_candles`. Symbols keep the order given (the backtest's order
    within a timestamp). The live trader steps the same loop on the exchange venue
    (:meth:`_make_engine`).

    ``prepare_bars`` bounds a cycle's cost: each new bar re-prepares only the latest
    ``prepare_bars`` to 1.25 x ``prepare_bars`` bars (None: the whole history, as a backtest
    does), most of it from cached results. Indicators with an
    infinite memory (EMAs, Wilder's ATR and RSI) then start from the window's first bar instead of
    the data's; past a few hundred of their periods the difference is below float noise (see
    ``tests/test_live_window.py`` for the decisions it leaves unchanged)."""

    def __init__(self, pipeline: Pipeline, settings: Settings, history: Sequence[Candles],
                 journal: Optional[Journal] = None, funding: Optional[Mapping[str, FundingSeries]] = None,
                 *, prepare_bars: Optional[int] = None, screen: Optional[BarScreen] = None):
        if not history:
            raise ValueError("paper trading needs at least one symbol's candle history")
        if prepare_bars is not None and prepare_bars < 2:
            raise ValueError(f"prepare_bars must be at least 2 (or None: the whole history), got {prepare_bars!r}")
        self.pipeline, self.settings = pipeline, settings
        self.prepare_bars = prepare_bars
        #: the symbols that may get new entries (None: every one); the others are only managed
        self.entry_symbols: Optional[set] = None
        #: bars left out (malformed, implausible) and the symbols whose entries wait for a sound bar
        self.screen = screen if screen is not None else BarScreen(settings.data.max_jump_atr, history[0].timeframe_ns)
        history = [self.screen.clean_history(c) for c in history]
        self.engine = self._make_engine(journal or Journal(), funding)
        self.engine.loop.may_enter = self._may_enter
        self.history = {c.symbol: self._kept(c) for c in history}
        self.order = [c.symbol for c in history]
        series = self.engine.series_class
        self.books = {c.symbol: series(self._prepare(c.symbol, None)) for c in history}
        self.engine.begin([self.books[s] for s in self.order])
        self.engine.warm_up_guards([self.books[s] for s in self.order])
        self.last_time = max(int(c.time[-1]) for c in history if len(c)) if any(len(c) for c in history) else -1
        self.interrupted = False             # run_paper: ended by Ctrl-C
        self.summary: dict = {}              # run_paper: the session's last saved summary

    def _may_enter(self, symbol: str) -> bool:
        """No entry on a symbol taken out of the traded ones (:attr:`entry_symbols`), nor on one
        whose newest bar was left out (:class:`BarScreen`)."""
        return (self.entry_symbols is None or symbol in self.entry_symbols) and not self.screen.paused(symbol)

    def _make_engine(self, journal: Journal, funding: Optional[Mapping[str, FundingSeries]]) -> TradingSession:
        """The account the bars are stepped on: a simulated one here (the live trader's is on the
        exchange venue)."""
        return SimulatedSession(self.pipeline, self.settings, journal, funding=funding)

    def _kept(self, candles: Candles) -> Candles:
        """The bars worth keeping: with a window, the latest ``prepare_bars`` (once it is a quarter
        over, so appending stays cheap); else all."""
        w = self.prepare_bars
        if w is not None and len(candles) > w + w // 4:
            return candles.slice(len(candles) - w, None)
        return candles

    def _prepare(self, symbol: str, since: Optional[int]) -> PreparedSymbol:
        """``Pipeline.prepare`` on the symbol's kept bars (the window), asked about from ``since``
        bars before its end on (None: every bar). The window's first bar stays put until it is a
        quarter over, so each bar's inputs extend the last bar's and the indicators carry their
        kept results on (:data:`mlcoord.features.CACHE`) instead of recomputing the window."""
        candles = self.history[symbol]
        data = build_market_data(candles, self.settings.data.higher_timeframes, event=self.settings.learning.event)
        return self.pipeline.prepare(data, since=None if since is None else len(candles) - since)

    def _reload(self, symbol: str, added: int, since: Optional[int]) -> int:
        """The last ``added`` bars of the symbol's history are new: the series takes them (bar
        indices unchanged, however many: a symbol back after a long absence brings more than a
        window) and is re-pointed at the re-prepared window (the history trimmed to what is kept
        first); returns the index of its newest bar."""
        book, history = self.books[symbol], self.history[symbol]
        new = history.slice(len(history) - added, None)
        for mine, theirs in ((book.t, new.time), (book.o, new.open), (book.h, new.high), (book.l, new.low),
                             (book.c, new.close)):
            mine.extend(theirs.tolist())
        book.action.extend([0] * added)
        self.history[symbol] = self._kept(history)
        prepared = self._prepare(symbol, since)
        book.load(prepared, len(book.t) - len(prepared.data), changed=added)
        return len(book.t) - 1

    @property
    def portfolio(self):
        return self.engine.account

    def on_candles(self, candles: Iterable[Candles]) -> int:
        """:meth:`_step_bars` of ``candles`` once :meth:`screened`."""
        return self._step_bars(self.screened(candles))

    def screened(self, candles: Iterable[Candles]) -> list[Candles]:
        """``candles`` less their implausible new bars (:meth:`BarScreen.admit`: logged, counted,
        the symbol's entries paused until a sound bar)."""
        return [self.screen.admit(c, self.history[c.symbol]) if c.symbol in self.history else c for c in candles]

    def _step_bars(self, candles: Iterable[Candles]) -> int:
        """Take the bars of ``candles`` newer than what was seen (closed bars only: the caller's
        feed drops the open one) and step through them in time order; returns the steps taken.

        A symbol's bars at or before the last stepped bar (they arrive late: its answer was
        skipped while other symbols moved on) cannot be stepped any more (the loop only moves
        forward): they join its history unstepped (:meth:`add_history`), with a warning
        ``late_bars`` naming the symbol and the bars."""
        from mlcoord.times import iso

        fresh = {}
        for c in candles:
            if c.symbol not in self.history:
                raise ValueError(f"{c.symbol} was not in the paper session's symbols {self.order}")
            known = self.history[c.symbol]
            start = int(np.searchsorted(c.time, known.time[-1], side="right")) if len(known) else 0
            late = int(np.searchsorted(c.time, self.last_time, side="right"))
            if start < late:
                log.warning("late_bars", symbol=c.symbol, first=iso(int(c.time[start])),
                            last=iso(int(c.time[late - 1])), count=late - start,
                            note=f"{c.symbol}: bars older than the last stepped bar join the history unstepped")
                self._add_history(c.slice(0, late))
                start = late
            if start < len(c):
                fresh[c.symbol] = c.slice(start, None)
        times = sorted({int(t) for c in fresh.values() for t in c.time.tolist()})
        for t in times:
            self._step(t, {s: c for s, c in fresh.items()})
        return len(times)

    def add_history(self, candles: Candles) -> None:
        """Bars of ``candles`` up to the last stepped bar join the symbol's history without being
        stepped (no decision on the past): a symbol the scanner picks mid-session, or one coming
        back after cycles without it (its missed bars fill the gap). Later bars go through
        :meth:`on_candles` as usual. Implausible bars are left out first (:class:`BarScreen`)."""
        known = self.history.get(candles.symbol)
        self._add_history(self.screen.admit(candles, known) if known is not None
                          else self.screen.clean_history(candles))

    def _add_history(self, candles: Candles) -> None:
        sym = candles.symbol
        upto = candles.slice(0, int(np.searchsorted(candles.time, self.last_time, side="right")))
        if sym in self.history:
            if not len(upto):
                return
            before = self.history[sym]
            grown = before.followed_by(upto)
            added = len(grown) - len(before)
            if not added:
                return
            self.history[sym] = grown
            self._reload(sym, added, None)
            return
        if not len(upto):
            upto = candles.slice(0, 1)   # a listing younger than the session: its first bar starts it
        self.history[sym] = self._kept(upto)
        self.order.append(sym)
        book = self.books[sym] = self.engine.series_class(self._prepare(sym, None))
        self.engine.add_series(book)

    def _step(self, t: int, fresh: Mapping[str, Candles]) -> None:
        slot = []
        for sym in self.order:
            c = fresh.get(sym)
            if c is None:
                continue
            j = int(np.searchsorted(c.time, t))
            if j >= len(c) or int(c.time[j]) != t:
                continue
            self.history[sym] = self.history[sym].followed_by(c.slice(j, j + 1))
            slot.append((self.books[sym], self._reload(sym, 1, 1)))
        self.engine.step(t, slot)
        self.last_time = t

    def result(self, close: bool = False) -> RawResult:
        """What the session did so far; ``close=True`` also closes open positions at the last close
        (what the backtest does at the end of its data)."""
        return self.engine.finish(close=close)


# -- the paper and live commands ---------------------------------------------------------------

@attrs.frozen
class LiveLoopOptions(LiveOptions):
    """``[live]`` options of the order loop on top of :class:`~mlcoord.live.supervisor.LiveOptions`.

    ``prepare_bars`` (5000; 0 = the whole history): the latest bars re-prepared per new bar,
    which bounds a cycle's cost (see :class:`PaperTrader`).
    ``reprice_after_bars`` (0 = off): an unfilled DCA limit leg older than this many bars (and not
    expired) is cancelled and placed again at the plan's offset from the current close.
    ``scan`` (False): the market scanner picks the traded symbols every cycle (``[live.scanner]``:
    :class:`~mlcoord.live.scanner.ScannerOptions`) instead of ``[data] symbols``; a symbol that
    drops out keeps being managed while it has an open plan, but gets no new entry.
    ``trailing`` ("bot"): who trails the stop. "bot": the exit manager's trailing moves the stop
    order (cancel and replace). "exchange" (futures): the stop order stays at the plan's initial
    stop and a ``TRAILING_STOP_MARKET`` trails on the exchange, at the exit manager's trailing
    distance (as a percent of price, within the exchange's 0.1-10 %) from its activation price.
    ``candle_page`` (1000, Binance spot's cap; futures allow 1500): rows per candle request; more
    bars (a long history, the bars a paper session missed while paused) come page by page."""

    prepare_bars: int = attrs.field(default=5000, validator=attrs.validators.or_(
        attrs.validators.in_((0,)), attrs.validators.ge(500)))
    reprice_after_bars: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    scan: bool = False
    scanner: ScannerOptions = ScannerOptions()
    trailing: str = attrs.field(default="bot")
    candle_page: int = attrs.field(default=CANDLE_PAGE, validator=attrs.validators.ge(2))

    @trailing.validator
    def _check_trailing(self, attribute, value):
        if value not in TRAILING_MODES:
            raise ValueError(f'trailing must be "bot" (the bot moves its stop order) or "exchange" (a '
                             f'TRAILING_STOP_MARKET order trails on the exchange), got {value!r}')


#: ``[live] trailing``: who moves a trailing stop
TRAILING_MODES = ("bot", "exchange")


def load_live_settings(path, overrides=None):
    """Settings (the backtest's loader: same errors for a missing file, bad TOML or a bad value,
    and the same market, ``[exchange] market``, so a config backtests what it trades) plus the
    ``[live]`` table as :class:`LiveLoopOptions`. A config file without ``[live] store`` keeps the
    store next to itself (``mlcoord-live.db`` in its folder), as a relative ``store`` would: the
    bot finds the same store wherever it is started from."""
    from mlcoord.config import load_settings, structure

    from pathlib import Path

    from mlcoord.live.supervisor import DEFAULT_STORE

    settings = load_settings(path, overrides)
    live = dict(settings.live)
    if path is not None and "store" not in live:      # the default store lives next to the config too
        live["store"] = str(Path(path).resolve().parent / DEFAULT_STORE)
    options = structure(live, LiveLoopOptions, path="$.live")
    return settings, options


def market_symbols(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The configured symbols and their ccxt symbols on the configured market."""
    from mlcoord.live.exchange import market_symbol

    symbols = list(settings.data.symbols or ["BTC/USDT"])
    return symbols, {s: market_symbol(s, settings.exchange.market) for s in symbols}


def fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe: str, limit: int,
                 known: Optional[Mapping[str, int]] = None, *, page: int = CANDLE_PAGE,
                 screen: Optional[BarScreen] = None) -> list[Candles]:
    """The last ``limit`` closed candles of every symbol (named as configured), on the exchange's clock.

    ``known``: symbol -> open time (ns) of the newest bar already at hand. Only the bars that can
    have closed since are asked for (at most ``limit``, ``page`` rows a request), and a symbol
    whose next bar cannot have closed yet on the exchange's clock is not asked at all (left out):
    its answer could hold no newer closed bar. A live loop polls many times per bar, so most polls
    ask for no candles. When more than ``limit`` bars closed since, the newest ``limit`` are
    fetched and the hole before them is logged (``candles_hole``: symbol, first and last missing
    bar, count). With ``known`` given, a symbol whose answer stayed empty or malformed after the
    retries is left out this cycle (``candles_skipped``: symbol and cause; the next poll asks for
    its bars again); without it (a start's history) that is raised as ExchangeUnavailable. An
    answer whose bad rows stay bad through the retries (the exchange's own data is wrong) is used
    without them: they are reported to ``screen`` (:class:`~mlcoord.live.bar_screen.BarScreen`:
    logged once, counted, the symbol's entries paused), which also leaves them out quietly next
    time instead of retrying."""
    from mlcoord.live.bar_screen import salvage
    from mlcoord.live.exchange import exchange_now_ms
    from mlcoord.live.retry import ExchangeUnavailable, MalformedAnswer

    screen = screen if screen is not None else BarScreen(0)
    known = screen.at_hand(dict(known)) if known is not None else None

    now = health.call(lambda: exchange_now_ms(exchange), what="fetch_time")
    wanted = bars_wanted(symbols, known, now, timeframe, limit)
    asked = [s for s in symbols if wanted[s].count > 0]
    out = []
    for s in asked:
        skip = screen.known(s)
        try:
            found = health.call(lambda s=s: closed_candles(exchange, ccxt_symbols[s], timeframe, wanted[s].count, now,
                                                           first_ms=wanted[s].first_ms, page=page, skip=skip),
                                what=f"candles {s}")
        except MalformedAnswer as exc:
            sound, bad = salvage(exc)
            screen.report(s, bad, sound)        # never asked for again, nor retried
            if sound is not None:
                found = sound
            elif known is None:                 # a start cannot do without the symbol's history
                raise ExchangeUnavailable(str(exc), reason="malformed", attempts=0, outage=0.0,
                                          last_error=exc) from exc
            else:
                if not bad:
                    log.warning("candles_skipped", symbol=s, cause=str(exc),
                                note=f"{s}: no usable candles this cycle; asked again next cycle")
                continue
        out.append(found.as_symbol(s))
    return out


def run_paper(settings: Settings, options, exchange, plugins, *, clock=None, cycles: Optional[int] = None,
              timeframe: str = "1h", store=None, on_cycle=None, health_clock=None, channel=None) -> PaperTrader:
    """``mlcoord paper``: closed candles from ``exchange`` (public data, no keys), simulated fills.

    Every ``poll_seconds`` it asks for the bars closed since the newest one at hand; each new bar
    goes through the backtest's per-bar code. After a pause or an outage every missed bar is
    replayed in order (fetched ``[live] candle_page`` rows a request; a line ``catch_up_bar`` per
    replayed bar and a ``catch_up`` summary per symbol); beyond ``[live] history_bars`` missed
    bars, the newest ones are processed and the hole is logged (``candles_hole``). Transient
    exchange errors pause the cycle (retried with backoff by :class:`ExchangeHealth`); an empty or
    malformed candle answer is retried, then that symbol waits for the next cycle
    (``candles_skipped``). The kill switch ends the session; the heartbeat is written after every
    cycle. ``cycles`` bounds the number of polls (None: run until stopped); ``on_cycle(trader)`` is
    called after each; ``health_clock`` times the retry backoff (default ``clock``).

    The session's summary, closed trades and fills are saved in ``store`` (default: ``[live]
    store``, tables ``paper_*``, opened shared: a live bot may hold the same store) after every
    cycle with a new bar and at the end. Ctrl-C (KeyboardInterrupt) ends the session cleanly: the
    summary is saved with status ``interrupted``, logged (``paper_summary``) and the trader
    returned with ``interrupted`` set (``mlcoord paper`` prints it and exits with 130).
    ``trader.summary`` holds the last summary. ``channel``: a
    :class:`~mlcoord.live.controls.ControlChannel` (the API's): its controls are applied at the
    start of every cycle, its snapshot and events published at the end."""
    from mlcoord.candles import timeframe_to_ns
    from mlcoord.live.retry import ExchangeHealth, SystemClock
    from mlcoord.live.store import Store
    from mlcoord.live.supervisor import Supervisor
    from mlcoord.pipeline import build_pipeline

    if getattr(options, "scan", False):
        from mlcoord.live.broker import not_yet_supported

        raise not_yet_supported("the market scanner in paper sessions ([live] scan = true): a paper session "
                                "trades [data] symbols; set scan = false (the scanner runs on live)")
    clock = clock or SystemClock()
    health = ExchangeHealth(clock=health_clock or clock)
    supervisor = Supervisor(options)
    symbols, ccxt_symbols = market_symbols(settings)
    page = getattr(options, "candle_page", CANDLE_PAGE)
    own_store = store is None
    store = store if store is not None else Store.open(options.store)
    screen = BarScreen(settings.data.max_jump_atr, timeframe_to_ns(timeframe))
    try:
        health.call(exchange.load_markets, what="load_markets")
        history = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, options.history_bars, page=page,
                               screen=screen)
        trader = PaperTrader(build_pipeline(settings, plugins, live=True), settings, history,
                             prepare_bars=getattr(options, "prepare_bars", 0) or None, screen=screen)
        record = _PaperRecord(store, trader, symbols, timeframe, clock)
        log.info("paper_started", session=record.session_id, symbols=symbols, timeframe=timeframe,
                 history_bars=[len(c) for c in history])
        universe = Universe(trader, symbols, exchange=exchange, health=health, market=settings.exchange.market,
                            timeframe=timeframe, history_bars=options.history_bars, page=page,
                            leverage=settings.backtest.leverage)
        if channel is not None:
            channel.universe = universe
        status = "stopped"
        try:
            status = _paper_loop(trader, record, exchange, health, supervisor, universe, options,
                                 timeframe, page, clock, cycles, on_cycle, channel)
        except KeyboardInterrupt:
            status = "interrupted"
            trader.interrupted = True
        trader.summary = record.save(status)
        log.info("paper_summary", **trader.summary)
        return trader
    finally:
        if own_store:
            store.close()


def _paper_loop(trader: PaperTrader, record: "_PaperRecord", exchange, health, supervisor, universe, options, timeframe: str, page: int, clock, cycles: Optional[int], on_cycle, channel=None) -> str:
    """The polls of :func:`run_paper`; returns how the session ended (``stopped``, ``killed``)."""
    import time

    from mlcoord.live.retry import ExchangeUnavailable

    done = 0
    while cycles is None or done < cycles:
        done += 1
        record.cycles = done
        started = time.perf_counter()
        if channel is not None:
            channel.apply(trader, supervisor)
            if channel.stopped:       # stopped through the API: nothing stepped, missed bars replayed at start
                supervisor.beat(wall_time=clock.now(), bar_time=trader.last_time, status="stopped (api)")
                channel.cycle_done(trader, status="stopped (api)", seconds=time.perf_counter() - started,
                                   killed=False)
                if cycles is None or done < cycles:
                    clock.sleep(options.poll_seconds)
                continue
        if supervisor.killed():
            log.warning("kill_switch_on", path=options.kill_switch, note="paper session stopped")
            supervisor.beat(wall_time=clock.now(), bar_time=trader.last_time, status="killed",
                            bad_bars=trader.screen.dropped)
            return "killed"
        try:
            symbols = record.symbols = universe.refresh()   # [data] symbols, and those held after a reload took them out
            known = {s: int(trader.history[s].time[-1]) for s in symbols if len(trader.history[s])}
            fresh = fetch_closed(exchange, health, symbols, universe.ccxt_symbols, timeframe, options.history_bars, known,
                                 page=page, screen=trader.screen)
            _log_catch_up(fresh, known)
            steps = trader.on_candles(fresh)
            status = "ok"
        except ExchangeUnavailable as exc:
            steps, status = 0, f"paused: {exc}"
        record.bars += steps
        p = trader.portfolio
        if steps:
            record.save("running")
        supervisor.beat(wall_time=clock.now(), bar_time=trader.last_time, status=status, equity=p.equity,
                        bad_bars=trader.screen.dropped)
        if steps:
            log.info("paper_cycle", bars=steps, equity=round(p.equity, 2), positions=sorted(p.positions))
        if channel is not None:
            channel.cycle_done(trader, status=status, seconds=time.perf_counter() - started, killed=False,
                               extra={"session_id": record.session_id, "mode": "paper",
                                      "exchange_pauses": sum(1 for e in health.events if e.paused),
                                      "exchange_retries": dict(health.retries)})
        if on_cycle is not None:
            on_cycle(trader)
        if cycles is None or done < cycles:
            clock.sleep(options.poll_seconds)
    return "stopped"


def _log_catch_up(fresh: Sequence[Candles], known: Mapping[str, int]) -> None:
    """One line per missed bar a poll brings (``catch_up_bar``: all but the newest, which is the
    bar a poll on time would have brought) and a ``catch_up`` line per symbol."""
    from mlcoord.times import iso

    for c in fresh:
        last = known.get(c.symbol)
        new = [int(t) for t in c.time.tolist() if last is None or t > last]
        if len(new) < 2:
            continue
        for t in new[:-1]:
            log.info("catch_up_bar", symbol=c.symbol, bar_time=iso(t), bar_time_ns=t)
        log.warning("catch_up", symbol=c.symbol, bars=len(new), replayed=len(new) - 1, first=iso(new[0]),
                    last=iso(new[-1]), note=f"{c.symbol}: {len(new) - 1} missed bars replayed in order")


class _PaperRecord:
    """A paper session's record in the store: summary, closed trades, fills (:meth:`Store.save_paper_run`)."""

    def __init__(self, store, trader: PaperTrader, symbols, timeframe: str, clock):
        from mlcoord.times import iso

        self.store, self.trader, self.symbols, self.timeframe = store, trader, list(symbols), timeframe
        started = int(clock.now() * 1e9)
        base = "paper-" + iso(started)[:19].replace(":", "").replace("-", "")
        taken = {s["session_id"] for s in store.paper_sessions()}
        self.session_id = base if base not in taken else next(
            f"{base}-{k}" for k in range(2, len(taken) + 3) if f"{base}-{k}" not in taken)
        self.started_at, self.bars, self.cycles = started, 0, 0
        self.save("running")

    def summary(self, status: str) -> dict:
        from mlcoord.times import iso

        t, ledger = self.trader, self.trader.engine.account
        trades = t.engine.trades
        return {"session_id": self.session_id, "status": status, "started_at": self.started_at,
                "symbols": self.symbols, "timeframe": self.timeframe, "bars": self.bars, "cycles": self.cycles,
                "trades": len(trades), "pnl": round(float(sum(x.pnl for x in trades)), 8),
                "equity": round(float(ledger.equity), 8), "fills": len(t.engine.fills),
                "open_positions": sorted({str(s) for s in t.portfolio.positions}),
                "last_bar": iso(t.last_time) if t.last_time >= 0 else None}

    def save(self, status: str) -> dict:
        summary = self.summary(status)
        self.store.save_paper_run(self.session_id, summary, self.trader.engine.trades, self.trader.engine.fills)
        return summary


def paper_summary_line(summary: Mapping) -> str:
    """The one line ``mlcoord paper`` prints at the end (also on Ctrl-C)."""
    return (f"paper session {summary['session_id']} {summary['status']}: {summary['bars']} bars processed, "
            f"{summary['trades']} trades, PnL {summary['pnl']:+,.2f}, equity {summary['equity']:,.2f}, "
            f"open positions {', '.join(summary['open_positions']) or 'none'}")


def check_live_start(settings: Settings, plugins, *, real_money: bool, env=None):
    """Everything ``mlcoord live`` checks before it may touch an account; returns the credentials.

    The pipeline is built first (so the hedging guard on spot stops start-up with the backtest's
    error); then keys must come from the environment or the key file."""
    from mlcoord.errors import ConfigError
    from mlcoord.live.exchange import load_credentials
    from mlcoord.pipeline import build_pipeline

    build_pipeline(settings, plugins, strict=True)     # live never runs a pipeline short of a component
    if not real_money:
        raise ConfigError("mlcoord live places real orders; it needs --i-understand-this-is-real-money. "
                          "Without it, use `mlcoord paper` (dry run: live candles, simulated fills)")
    credentials = load_credentials(settings.exchange, env)
    if credentials is None:
        raise ConfigError(f"no API keys: set {settings.exchange.key_env} and {settings.exchange.secret_env} "
                          "or [exchange] keys_file (keys are never taken from the command line)")
    return credentials

