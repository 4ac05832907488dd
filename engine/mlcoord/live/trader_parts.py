"""What the live trader's mixins share, declared once for the type checker.

:class:`mlcoord.live.trader.LiveTrader` is assembled from mixins (spot accounts, hedge legs,
exchange trailing, futures marks, exchange fees); each uses attributes and helpers the trader
itself sets or defines. This base says what they are, so each mixin is checked on its own.
Nothing here runs: the attributes are annotations and the methods exist for type checking only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    from mlcoord.live.broker import Broker
    from mlcoord.live.plan_orders import Tally
    from mlcoord.live.records import OrderRecord, PlanRecord
    from mlcoord.live.store import Store
    from mlcoord.model import Order


class TraderParts:
    broker: "Broker"
    store: "Store"
    engine: Any                 # the session: loop, ledger and venue (mlcoord.simulation.TradingSession)
    venue: Any                  # mlcoord.live.venue.ExchangeVenue
    settings: Any
    pipeline: Any
    history: Any                # symbol -> Candles
    books: Any                  # symbol -> its prepared series (mlcoord.loop.SymbolSeries)
    last_time: int
    timeframe_ns: int
    spot: bool
    quote: str
    margin_mode: str
    trailing: str
    _balances: dict[str, float]
    _balance_seen: dict[str, tuple]
    _fresh: dict[str, str]           # plan id -> symbol: orders refreshed in this cycle (LiveTrader.cycle)

    if TYPE_CHECKING:
        def tally(self, plan: "PlanRecord", refresh: bool = False) -> "Tally": ...
        def plan_orders(self, plan_id: str) -> list["OrderRecord"]: ...
        def _placed(self, before: int, record: "OrderRecord") -> None: ...
        def active_plans(self) -> list["PlanRecord"]: ...
        def _place(self, order: "Order", plan: "PlanRecord") -> "OrderRecord": ...
        def _next_attempt(self, plan: "PlanRecord", tag: str) -> int: ...
        def _finish(self, plan: "PlanRecord", tally: "Tally", reason: str) -> None: ...
        def _close_plan(self, plan: "PlanRecord", tally: "Tally", reason: str) -> None: ...
        def _last_close(self, symbol: str, default: Optional[float] = None) -> Optional[float]: ...
        def _free(self, symbol: str) -> float: ...
        def _journal_then(self, plan: "PlanRecord", order: "Order",
                          clear: Callable[[], float]) -> Optional["OrderRecord"]: ...
        def exchange_fees(self, plan: "PlanRecord", filled: Sequence["OrderRecord"]) -> Optional[float]: ...
