"""``mlcoord live``: the session around :class:`mlcoord.live.trader.LiveTrader` (:func:`run_live`).

At start: the store's location logged (``live_store``), the start-up survey (what the exchange
holds that the store does not know: refused, adopted or ignored, :mod:`mlcoord.live.startup`),
reconciliation (:func:`mlcoord.live.reconcile.reconcile`), the session's memory
(decisions, learning and guard state, equity peak: :mod:`mlcoord.live.memory`), then every active
plan is brought up to date and protected, so a position without a stop gets one before any new
entry.
The kill switch blocks new entries (and with ``flatten_on_kill`` closes positions); the loop keeps
running while it is on, so open positions keep their stops moving. The heartbeat is written after
every cycle. A bot that fell behind (a pause, an outage) fetches every missed bar in pages
(:func:`mlcoord.live.runner.fetch_closed`; in scan mode through the scanner's threads) and replays
them (:meth:`LiveTrader.on_candles`: closes with reason ``catch_up``, entries on the newest bar only).

With ``[live] scan = true`` the scanner picks the symbols every cycle and fetches their candles
concurrently (:meth:`mlcoord.live.scanner.Scanner.fetch_bars`); a symbol that drops out keeps its
bars and stops while its plan is active, with no new entry.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import structlog

from mlcoord.live.broker import Broker, BrokerError
from mlcoord.live.memory import SessionMemory
from mlcoord.live.spot import for_market
from mlcoord.live.trader import LiveTrader
from mlcoord.live.universe import LiveUniverse

log = structlog.get_logger("mlcoord.live.session")


def run_live(settings, options, exchange, plugins, *, clock=None, health_clock=None, cycles: Optional[int] = None,
             timeframe: str = "1h", store=None, on_cycle=None, make_exchange=None, history=None,
             adopt: bool = False, ignore: Sequence[str] = (), channel=None) -> LiveTrader:
    """``mlcoord live``: closed candles and real orders on ``exchange`` (USD-M futures in hedge mode,
    or spot: ``[exchange] market``).

    Start: the pipeline is built first (the hedging guard on spot stops here, before the account
    is touched; so does a spot config with leverage), the symbols, timeframe and leverage are
    checked against the exchange's markets (:mod:`mlcoord.live.preflight`), broker setup (futures: hedge mode, leverage,
    margin mode), reconciliation, every active plan protected before anything else. Then per poll: kill switch, new closed bars through
    :class:`LiveTrader`, every plan managed, heartbeat. ``cycles`` bounds the polls; ``on_cycle(trader)``
    is called after each (tests check invariants there). ``health_clock`` times the retry backoff
    (default ``clock``). With ``[live] scan = true`` the scanner picks the symbols every cycle
    (``make_exchange`` builds its ccxt instances; default: ``exchange`` itself); symbols with an
    active plan stay in the loop (bars, exit updates, stops) until the plan closes, without new
    entries. ``history``: closed candles per symbol already at hand (e.g. from the data store,
    named as configured) instead of the last ``history_bars`` fetched at start.

    Before reconciliation touches anything, the start-up survey (:mod:`mlcoord.live.startup`)
    looks for positions, balances and orders the store has no record of: the bot refuses to start
    next to them unless ``adopt`` (take them over: positions get the exit manager's stop and take
    profit) or their symbol is in ``ignore`` (left alone and not traded this session). Bars the
    exchange sends malformed or implausible are left out (:mod:`mlcoord.live.bar_screen`): the
    symbol's entries wait for a sound bar, its stops and exits go on. ``channel``: the API's
    :class:`~mlcoord.live.controls.ControlChannel`, its controls applied at the start of every cycle
    (on live, "stop" blocks entries only: open plans stay managed)."""
    from mlcoord.candles import timeframe_to_ns
    from mlcoord.live.preflight import check_market_arguments
    from mlcoord.live.reconcile import reconcile
    from mlcoord.live.retry import ExchangeHealth, ExchangeUnavailable, SystemClock
    from mlcoord.live.bar_screen import BarScreen
    from mlcoord.live.runner import fetch_closed, market_symbols
    from mlcoord.live.scanner import Scanner
    from mlcoord.live.startup import adopt_positions, resolve, survey
    from mlcoord.live.store import Store
    from mlcoord.live.supervisor import Supervisor
    from mlcoord.pipeline import build_pipeline

    settings = for_market(settings)
    market = settings.exchange.market
    pipeline = build_pipeline(settings, plugins, strict=True, live=True)   # real orders: never short of a component
    clock = clock or SystemClock()
    health = ExchangeHealth(clock=health_clock or clock)
    supervisor = Supervisor(options)
    own_store = store is None
    store = store or Store.open(options.store, exclusive=True)    # one bot per store: a second one stops here
    scanner = None
    try:                     # a start that fails releases the store it opened (and the scanner's threads)
        where = store.where
        log.info("live_store", store=where, new=store.never_used(),
                 note="positions, orders and plans are kept here; a bot started on another store does not know them")
        broker = Broker(exchange, store, market, health=health)
        if getattr(options, "trailing", "bot") == "exchange" and not broker.dialect.trailing_orders:
            raise BrokerError(f"[live] trailing = \"exchange\": {broker.dialect.name} has no exchange-side trailing "
                              "stop order (Bybit trails a whole position by a price distance); use trailing = \"bot\", "
                              "which moves the stop order itself")
        ignore = list(dict.fromkeys(ignore))
        if getattr(options, "scan", False):
            scanner = Scanner(make_exchange or (lambda: exchange), options.scanner, market,
                              clock=health_clock or clock)
            picked = scanner_pick(scanner, health, ignore)
            symbols = picked + sorted({p.symbol for p in store.active_plans()} - set(picked))
            if not symbols:
                raise BrokerError("the scanner found no pair to trade (see [live.scanner] filters)")
        else:
            symbols = market_symbols(settings)[0]
        # symbols, timeframe and leverage against the exchange (reads only) before the account is touched
        check_market_arguments(exchange, market, symbols, [timeframe], settings.backtest.leverage, health=health,
                               whole_leverage=True)
        # what the exchange holds that the store does not know: refused, adopted or ignored (reads only)
        broker.call(exchange.load_markets, "load_markets")
        unknown = survey(broker, symbols, orders=options.unknown_orders == "refuse")
        symbols = resolve(unknown, symbols, adopt=adopt, ignore=ignore, store_name=where,
                          active_symbols={p.symbol for p in store.active_plans()}, scan=scanner is not None)
        ccxt_symbols = {s: broker.symbol(s) for s in symbols}
        adopting = sorted({u.symbol for u in unknown if adopt and u.kind != "order" and u.symbol in symbols})
        broker.setup(symbols, settings.backtest.leverage, options.margin_mode)
        found = reconcile(broker, symbols, "adopt" if adopt else options.unknown_orders, adopting)
        screen = BarScreen(settings.data.max_jump_atr, timeframe_to_ns(timeframe))
        if history is None:
            history = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, options.history_bars,
                                   screen=screen)
        else:
            given = {c.symbol: c for c in history}
            missing = [s for s in symbols if s not in given]
            if missing:
                raise BrokerError(f"history given for {sorted(given)}, but not for {missing}")
            history = [given[s] for s in symbols]
        trader = LiveTrader(pipeline, settings, history, broker,
                            timeframe_ns=timeframe_to_ns(timeframe),
                            reprice_after_bars=getattr(options, "reprice_after_bars", 0),
                            margin_mode=getattr(options, "margin_mode", "isolated"),
                            trailing=getattr(options, "trailing", "bot"),
                            prepare_bars=getattr(options, "prepare_bars", 0) or None, screen=screen)
        universe = LiveUniverse(trader, picked if scanner is not None else symbols, scanner=scanner,
                                make_scanner=lambda opts: Scanner(make_exchange or (lambda: exchange), opts, market,
                                                                  clock=health_clock or clock),
                                ignore=ignore, margin_mode=options.margin_mode, unknown_orders=options.unknown_orders,
                                exchange=exchange, health=health, market=market, timeframe=timeframe,
                                history_bars=options.history_bars, page=options.candle_page,
                                leverage=settings.backtest.leverage)
        universe.symbols = list(symbols)
        trader.entry_symbols = set(universe.wanted)
        trader.sync_wallet(reset_peak=True)
        memory = SessionMemory(store)
        restored = memory.restore(trader)
        if restored:
            log.info("session_state_restored", **restored)
        if adopting:
            adopt_positions(trader, [u for u in unknown if u.symbol in adopting])
        for plan in found.unprotected:
            log.warning("position_without_stop", plan=plan.plan_id, symbol=plan.symbol, stop=plan.levels.stop,
                        note="placing its stop before any new entry")
        trader.manage_all()
        log.info("live_started", symbols=symbols, timeframe=timeframe, history_bars=[len(c) for c in history],
                 active_plans=len(store.active_plans()))
    except BaseException:
        if scanner is not None:
            scanner.close()
        if own_store:
            store.close()
        raise
    done = 0
    if channel is not None:           # orders journaled become the API's order events after each cycle
        store.order_listeners.append(channel.order_changed)
        channel.universe = universe
    try:
        while cycles is None or done < cycles:
            done += 1
            status = "ok"
            started = time.perf_counter()
            try:
                with trader.cycle():     # the plans' order refreshes are shared within it
                    if channel is not None:
                        channel.apply(trader, supervisor)
                    trader.entries_blocked = supervisor.killed()
                    if trader.entries_blocked:
                        status = "killed"
                        log.warning("kill_switch_on", path=options.kill_switch, flatten=options.flatten_on_kill)
                        if options.flatten_on_kill:
                            trader.flatten_all("kill switch")
                    trader.sync_wallet()
                    symbols = universe.refresh()     # the scanner's pick or [data] symbols, and those held
                    ccxt_symbols = universe.ccxt_symbols
                    at_hand = {s: int(trader.history[s].time[-1]) for s in symbols if len(trader.history[s])}
                    if universe.scanner is not None:           # many pairs: their requests overlap
                        fresh = _scan_fetch(universe.scanner, health, symbols, ccxt_symbols, timeframe, options,
                                            at_hand, screen)
                    else:
                        fresh = fetch_closed(exchange, health, symbols, ccxt_symbols, timeframe, options.history_bars,
                                             at_hand, page=options.candle_page, screen=screen)   # every bar missed
                    closed = len(trader.engine.trades)
                    steps = trader.on_candles(fresh)
                    trader.mark_futures(new_bar=steps > 0)   # liquidation prices, funding, vanished positions
                    trader.manage_all()
                    if steps or len(trader.engine.trades) != closed:    # a bar, or a trade fed back
                        memory.save(trader)
            except ExchangeUnavailable as exc:
                steps, status = 0, f"paused: {exc}"
            supervisor.beat(wall_time=clock.now(), bar_time=trader.last_time, status=status,
                            equity=trader.portfolio.equity, bad_bars=screen.dropped)
            if channel is not None:
                channel.cycle_done(trader, status=status, seconds=time.perf_counter() - started,
                                   killed=trader.entries_blocked, extra={"mode": "live", "exchange_pauses": sum(
                                       1 for e in health.events if e.paused), "exchange_retries": dict(health.retries)})
            if steps:
                log.info("live_cycle", bars=steps, positions=sorted(trader.portfolio.positions),
                         plans=len(store.active_plans()))
            if on_cycle is not None:
                on_cycle(trader)
            if cycles is None or done < cycles:
                clock.sleep(options.poll_seconds)
    finally:
        if channel is not None:
            store.order_listeners.remove(channel.order_changed)
        universe.close()
    return trader


def _scan_fetch(scanner, health, symbols, ccxt_symbols, timeframe: str, options, at_hand, screen=None) -> list:
    """Every bar of every symbol closed since the newest at hand (``at_hand``: symbol -> its open
    time), as :func:`~mlcoord.live.runner.fetch_closed` asks for them (at most ``[live]
    history_bars``, the hole before them named; ``[live] candle_page`` rows a request), through the
    scanner's worker threads. A symbol whose answer stayed malformed is left out this cycle (its
    plan keeps its exchange stop; the next poll asks for its bars again)."""
    from mlcoord.live.exchange import exchange_now_ms
    from mlcoord.live.feed import bars_wanted

    now = health.call(lambda: exchange_now_ms(scanner.exchange), what="fetch_time")
    if screen is not None:
        at_hand = screen.at_hand(dict(at_hand))      # a bar already left out is not asked for again
    wanted = bars_wanted(symbols, at_hand, now, timeframe, options.history_bars)
    asked = {ccxt_symbols[s]: w for s, w in wanted.items() if w.count > 0}
    names = {ccxt_symbols[s]: s for s in symbols}
    by_ccxt = health.call(lambda: scanner.fetch_bars(asked, timeframe, now, page=options.candle_page, screen=screen,
                                                     names=names), what="candles (scanner)")
    return [by_ccxt[ccxt_symbols[s]].as_symbol(s) for s in symbols if ccxt_symbols[s] in by_ccxt]


def scanner_pick(scanner, health, ignore: Sequence[str] = ()) -> list[str]:
    """The scanner's pick, named as in ``[data] symbols`` (``BTC/USDT:USDT`` -> ``BTC/USDT``),
    less the ``ignore`` d symbols (``--ignore``)."""
    picked = health.call(scanner.pick, what="scanner pick")
    out = []
    for s in picked:
        base_quote, _, settle = s.partition(":")
        name = base_quote if not settle or settle == base_quote.split("/")[-1] else s
        if name not in ignore:
            out.append(name)
    return out
