"""A full disk (every commit refused with ``OSError(ENOSPC)``, as SQLite's writes are, reads still
working) stops the bot at once with one clear StoreFailure naming the store and the OS error; the
stops on the exchange stay; after the restart (disk freed) every position has its stop, every
journaled order is recognised by its client id and none is placed twice.

The disk fills at three points of the order path: at an order's journal (its commit fails: the
order never goes out), right after a journal committed (the order goes out, its answer cannot be
stored), and in the middle of a stop move, for each way a stop moves on each venue (Binance's
three; Bybit's and OKX's cancel-first on spot and place-first on futures: neither has an atomic
cancel-replace)."""

from __future__ import annotations

import errno
import os

import pytest
from sqlalchemy import event

from mlcoord.errors import StoreFailure
from mlcoord.live.database import WriteScope
from mlcoord.live.exit_moves import ExitMoves
from mlcoord.live.records import OrderRecord, OrderState
from mlcoord.live.store import Store
from stop_sessions import duplicate_client_ids, run_session, server_for, working_stops
from test_live_stop_moves import PATHS, SERVER_STATE

NO_SPACE = os.strerror(errno.ENOSPC)


class DiskFull:
    """Once ``full``, every commit fails as on a full disk (the transaction rolled back)."""

    def __init__(self, monkeypatch):
        self.full = self.filled = False
        real = WriteScope._end

        def end(scope, commit):
            if commit and self.full:
                real(scope, False)
                raise OSError(errno.ENOSPC, NO_SPACE)
            return real(scope, commit)

        monkeypatch.setattr(WriteScope, "_end", end)

    def at_journal(self, monkeypatch, which, *, before: bool) -> None:
        """The disk fills at the journal of the first order ``which(record)`` picks: its own commit
        fails (``before``), or every commit after it."""
        real = Store.journal_order

        def journal(store, record: OrderRecord):
            if self.filled or not which(record):
                return real(store, record)
            self.filled = True                 # once: the restart finds the space freed
            if before:
                self.full = True
                return real(store, record)
            out = real(store, record)
            self.full = True
            return out

        monkeypatch.setattr(Store, "journal_order", journal)


def _is(tag: str, attempt_at_least: int = 0):
    """Orders of ``tag``, from the ``attempt_at_least``-th one of the session on."""
    seen = []

    def which(record: OrderRecord) -> bool:
        if record.order.tag.split(":")[0] != tag:
            return False
        seen.append(record.client_order_id)
        return len(seen) > attempt_at_least
    return which


def _moves(monkeypatch) -> list[str]:
    """How each exit order went out, in order ("new", or a move's path): the failing move's path
    is the one its case names."""
    made: list[str] = []
    real = ExitMoves._move_kind

    def move_kind(trader, *args):
        made.append(real(trader, *args))
        return made[-1]

    monkeypatch.setattr(ExitMoves, "_move_kind", move_kind)
    return made


POINTS = [
    pytest.param("spot", True, "binance", "entry", 0, True, id="entry-journal"),
    pytest.param("spot", True, "binance", "entry", 0, False, id="entry-after-journal"),
    pytest.param("spot", True, "binance", "stop", 2, True, id="replace-journal"),
    pytest.param("spot", True, "binance", "stop", 2, False, id="replace-after-journal"),
    # the known gap: the old stop was cancelled before the new one was journaled
    pytest.param("spot", False, "binance", "stop", 2, True, id="fallback-journal"),
    pytest.param("spot", False, "binance", "stop", 2, False, id="fallback-after-journal"),
    pytest.param("futures", True, "binance", "stop", 2, True, id="futures-journal"),
    pytest.param("futures", True, "binance", "stop", 2, False, id="futures-after-journal"),
] + [   # Bybit and OKX (no cancel-replace): the stop moves on spot and futures, as test_live_stop_moves.CASES
    pytest.param(market, market == "futures", venue, "stop", 2, before,
                 id=f"{venue}-{PATHS[market, market == 'futures']}-{point}")
    for venue in ("bybit", "okx") for market in ("spot", "futures")
    for point, before in (("journal", True), ("after-journal", False))]


@pytest.mark.parametrize("market, cancel_replace, venue, tag, nth, before", POINTS)
def test_a_full_disk_stops_the_bot_and_the_restart_places_nothing_twice(tmp_path, monkeypatch, market,
                                                                         cancel_replace, venue, tag, nth, before):
    disk = DiskFull(monkeypatch)
    disk.at_journal(monkeypatch, _is(tag, nth), before=before)
    moves = _moves(monkeypatch)
    with server_for(market, cancel_replace, venue) as server:
        with pytest.raises(StoreFailure) as failed:
            run_session(server, tmp_path, market, 8)
        message = str(failed.value)
        assert message.startswith(f"store {tmp_path / 'live.db'}: ") and f"{NO_SPACE} (ENOSPC)" in message
        assert "\n" not in message
        if tag == "stop":                      # the position keeps a stop on the exchange
            assert moves[-1] == PATHS[market, cancel_replace], moves     # the move failed on its case's path
            assert not server.state.coverage.open, server.state.coverage.open
            # futures place the new stop first: the old one stays with it until the restart (unless the
            # new one's journal failed: it never went out)
            assert len(working_stops(server, market)) == (2 if market == "futures" and not before else 1)
        disk.full = False                      # space freed: the restart
        trader, _ = run_session(server, tmp_path, market, 2)
        store = trader.store
        assert not server.state.coverage.open                         # every position has its stop
        # the entry whose journal failed never went out (its plan, journaled with it, is gone too)
        assert len(working_stops(server, market)) == (0 if (tag, before) == ("entry", True) else 1)
        assert not duplicate_client_ids(server)
        assert not [r for r in store.orders() if r.state in (OrderState.PENDING, OrderState.REJECTED)]
        orders = server.state.spot.orders if market == "spot" else {**server.state.futures.orders,
                                                                    **server.state.futures.algos}
        on_server = {o.client_id: o.status for o in orders.values()}
        assert set(on_server) == {r.client_order_id for r in store.orders()}   # nothing lost, nothing extra
        stops = {r.client_order_id: r.state for r in store.orders() if r.order.tag == "stop"}
        assert stops == {c: SERVER_STATE[on_server[c]] for c in stops}


def test_a_full_sqlite_database_is_one_clear_error(tmp_path):
    """SQLite's own disk-full answer (SQLITE_FULL, here from a page limit) at an order's journal."""
    from mlcoord.model import Order, OrderKind, Side

    store = Store.open(tmp_path / "live.db")
    event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA max_page_count = 1"))
    store.engine.dispose()            # new connections, with the limit
    with pytest.raises(StoreFailure, match=f"^store {tmp_path / 'live.db'}: write failed: database or disk is full"):
        for k in range(200):
            order = Order(f"mcTEST{k}", "BTC/USDT", Side.LONG, OrderKind.MARKET, 0.1, None, 1, tag="entry:1/1")
            store.journal_order(OrderRecord(order))
    store.close()


def test_the_fee_lookup_does_not_take_a_store_failure_for_an_unreadable_trade_list():
    from types import SimpleNamespace

    from mlcoord.live.fees import ExchangeFees

    def failing(_):
        raise StoreFailure("store live.db: read failed: disk I/O error")

    fees = ExchangeFees()
    fees.broker = SimpleNamespace(symbol=lambda s: s, exchange=SimpleNamespace(market=lambda s: {"quote": "USDT",
                                                                                                  "base": "BTC"}),
                                  store=SimpleNamespace(fills=failing), market="spot")
    plan = SimpleNamespace(symbol="BTC/USDT", plan_id="p")
    filled = [SimpleNamespace(client_order_id="c", filled_quantity=1.0)]
    with pytest.raises(StoreFailure):
        fees.exchange_fees(plan, filled)
