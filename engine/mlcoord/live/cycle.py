"""One poll of a live session as a unit (:meth:`CycleShare.cycle`), a part of
:class:`mlcoord.live.trader.LiveTrader`.

Within a cycle the sync, the loop's intents, the futures marks and the order management all
look at the same plans and orders. What they read is shared while it cannot have changed:

* a plan's orders refreshed from the exchange are not asked for again until an order of its
  symbol goes out or is cancelled (:attr:`Broker.on_change`); what the exchange does on its own
  meanwhile is seen by the next cycle, as it would be a moment later;
* the stored active plans and a plan's stored orders are read again only after the store was
  written (:attr:`Store.writes`), except by an order the trader itself placed: the broker's
  answer is what the store now holds of that order, and it wrote nothing else a shared read
  holds (its fills and position are not shared), so the answer is put in its plan's orders
  (:meth:`CycleShare._placed`) instead of reading them all again.

Outside a cycle (start-up, tests driving the trader by hand) every read asks again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from mlcoord.live.records import OrderRecord, PlanRecord
from mlcoord.live.trader_parts import TraderParts


class CycleShare(TraderParts):
    """The cycle scope and what is shared within it (uses the trader's store)."""

    _in_cycle = False

    def _start_sharing(self) -> None:
        self._in_cycle = False
        self._fresh: dict[str, str] = {}      # plan id -> symbol: refreshed in this cycle, unchanged since
        self._stored: dict[object, tuple[int, list]] = {}    # what -> (store writes when read, rows)

    @contextmanager
    def cycle(self) -> Iterator[None]:
        """One poll of the session: what is read within it is shared while it cannot have changed."""
        self._in_cycle, self._fresh, self._stored = True, {}, {}
        try:
            yield
        finally:
            self._in_cycle, self._fresh, self._stored = False, {}, {}

    def _order_changed(self, symbol: str) -> None:
        """An order of ``symbol`` goes out or is cancelled: its plans' refreshes are stale."""
        for plan_id in [p for p, s in self._fresh.items() if s == symbol]:
            del self._fresh[plan_id]

    def plan_orders(self, plan_id: str) -> list[OrderRecord]:
        return self._read_shared(("orders", plan_id), lambda: self.store.orders(plan_id))

    def active_plans(self) -> list[PlanRecord]:
        return self._read_shared("active", self.store.active_plans)

    def _placed(self, before: int, record: OrderRecord) -> None:
        """The broker placed ``record`` (journal, answer, maybe a fill), the store's only writes
        since it counted ``before`` writes: what was shared then is current again, with ``record``
        among its plan's orders (the store's order: creation time, then client id; on a backend
        whose text order may differ from Python's, that plan's orders are read again)."""
        if not self._in_cycle:
            return
        now, cid = self.store.writes, record.client_order_id
        for what, (writes, rows) in list(self._stored.items()):
            if writes != before:
                continue                      # stale before the order went out: read again anyway
            if what == "active":
                self._stored[what] = (now, rows)
                continue
            if not (isinstance(what, tuple) and what[0] == "orders"):
                continue
            rows = [r for r in rows if r.client_order_id != cid]
            if what[1] == record.plan_id:
                if not self.store.text_sorts_as_python:
                    continue
                rows.append(record)
                rows.sort(key=lambda r: (r.order.created_at, r.client_order_id))
            self._stored[what] = (now, rows)

    def _read_shared(self, what, read) -> list:
        if not self._in_cycle:
            return read()
        writes = self.store.writes
        hit = self._stored.get(what)
        if hit is None or hit[0] != writes:
            hit = self._stored[what] = (writes, read())
        return list(hit[1])
