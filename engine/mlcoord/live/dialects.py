"""How each exchange expresses what the broker does, as data: where conditional orders live, how
an order is found and cancelled by its client id, how a stop or take profit and a hedge-mode
order are written, which "already set" answers are harmless, what an exchange cannot do.

The broker, reconciliation and start-up read the dialect of ``exchange.id``; an exchange without
one gets Binance's (the dialect every other exchange was driven with before), so adding an
exchange is a table entry here plus a test against its emulator, never an ``if`` in the broker.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

#: a ccxt order answer's ``info`` status that ccxt maps too coarsely, and the unified status it means
_BYBIT_STATUS = {"PartiallyFilledCanceled": "expired", "Deactivated": "canceled", "Rejected": "rejected"}


@attrs.frozen
class Dialect:
    """One exchange's order dialect (ccxt 4.5 parameter names)."""

    name: str
    #: markets whose conditional orders are a separate book, listed and cancelled with ``{"trigger": True}``
    trigger_book: tuple[str, ...]
    #: futures stops are Binance algo orders (own id ``clientAlgoId``, a child order carries the fills)
    algo_orders: bool
    #: "fetch_order": ``fetch_order(None, sym, {lookup_key: cid})``; "listing": open then closed
    #: orders filtered by ``lookup_key`` (Bybit's ``orderLinkId``: open and recent closed orders)
    lookup: str
    lookup_key: str
    cancel_key: str
    #: words of an answer that says a setting is already in place (a harmless refusal)
    already_set: tuple[str, ...]
    #: hedge mode: ``positionSide`` per order (Binance) or ccxt's ``hedged`` flag (Bybit's positionIdx)
    hedge_style: str
    #: futures stops: Binance ``STOP_MARKET``/``TAKE_PROFIT_MARKET`` + stopPrice, or a market order
    #: with ``triggerPrice`` and ``triggerDirection`` (Bybit)
    stop_style: str
    #: exchange-side trailing stops as an order (``TRAILING_STOP_MARKET``)
    trailing_orders: bool
    #: spot stop-limit: the ccxt order type and the parameter naming its trigger
    spot_stop: tuple[str, str] = ("STOP_LOSS_LIMIT", "stopPrice")
    #: after setting hedge mode at start, read the positions back and refuse a one-way account
    verify_hedge_mode: bool = False
    #: a create answer carries the order's state and fills (Binance); Bybit's carries its ids only,
    #: so the order is read back at once (a market order's fill is then known as on Binance)
    answer_has_state: bool = True
    #: ccxt's fetch_positions takes one symbol per call (Bybit)
    positions_one_symbol: bool = False
    #: the ``info`` field holding the exchange's own order status, and what some values mean
    info_status: tuple[str, Mapping[str, str]] = ("", {})
    #: the ``info`` field of a position's (or order's) hedge side, and its values for long and short
    position_side: tuple[str, Any, Any] = ("positionSide", "LONG", "SHORT")
    #: a conditional order's client id is this parameter on create and this ``info`` field on answers
    #: (OKX ``algoClOrdId``: ccxt's clientOrderId stays None on algo orders); "": ccxt's clientOrderId
    algo_client_field: str = ""
    #: the ``info`` field of a triggered conditional order naming the regular order that holds its
    #: fills (OKX ``ordId``); "": the answer itself carries them
    algo_child: str = ""
    #: what a listing of the conditional book adds to ``{"trigger": True}``, per market (OKX lists one
    #: algo ``ordType`` at a time: spot stops are ``trigger`` orders, swap stops ``conditional`` ones)
    trigger_listing: Mapping[str, Mapping[str, str]] = {}
    #: parameters of every spot order (OKX ``tgtCcy`` base_ccy: ccxt's default makes a market buy's
    #: amount the quote asset to spend, which would size it in USDT)
    spot_order_params: Mapping[str, str] = {}
    #: the fills endpoint's parameter selecting one order's trades
    trades_order_key: str = "orderId"
    #: margin mode is no symbol setting but each order's (OKX ``tdMode``), set with the leverage
    #: (per position side in isolated margin)
    margin_per_order: bool = False
    #: the account's position mode is read back with ccxt's fetch_position_mode (not inferred from positions)
    position_mode_query: bool = False
    #: a funding event's amount *received* (negative: paid): ccxt's ``amount`` as it is (Binance's
    #: income), or ``sign`` x the ``info`` field named (Bybit's ``execFee``, positive when paid: ccxt
    #: passes it through unsigned, ccxt#26404; read from ``info`` so a ccxt fix cannot flip it twice)
    funding_received: tuple[str, float] = ("", 1.0)
    #: the most candles one request may ask for, below ``[live] candle_page`` (OKX's
    #: history-candles: 100; ccxt passes a larger limit through, and OKX refuses it with 51000)
    candle_page: int = 1_000_000

    def received_funding(self, event: Mapping[str, Any]) -> Any:
        """What a ccxt funding-history event says was received (None when it says nothing)."""
        field, sign = self.funding_received
        if not field:
            return event.get("amount")
        raw = (event.get("info") or {}).get(field)
        try:
            return sign * float(raw) if raw is not None else None
        except (TypeError, ValueError):
            return None


BINANCE = Dialect("binance", trigger_book=("futures",), algo_orders=True, lookup="fetch_order",
                  lookup_key="origClientOrderId", cancel_key="origClientOrderId", already_set=("no need",),
                  hedge_style="positionSide", stop_style="binance", trailing_orders=True)
BYBIT = Dialect("bybit", trigger_book=("spot",), algo_orders=False, lookup="listing", lookup_key="orderLinkId",
                cancel_key="orderLinkId", already_set=("not modified",), hedge_style="hedged",
                stop_style="trigger_direction", trailing_orders=False, spot_stop=("limit", "triggerPrice"),
                verify_hedge_mode=True, answer_has_state=False,
                positions_one_symbol=True,
                info_status=("orderStatus", _BYBIT_STATUS), position_side=("positionIdx", 1, 2),
                funding_received=("execFee", -1.0))

#: OKX v5 (tests/exchange_sim/okx.py): stops are algo orders in their own book with an ``algoClOrdId``
#: whose fills are on the regular order they place (``ordId``); futures stops and take profits are
#: ``conditional`` (stop-loss / take-profit trigger, market); swap sizes are contracts (ccxt's
#: ``contractSize``, converted by the broker); no trailing stop order the emulator proves.
OKX = Dialect("okx", trigger_book=("spot", "futures"), algo_orders=False, lookup="fetch_order",
              lookup_key="clientOrderId", cancel_key="clientOrderId", already_set=(), hedge_style="hedged",
              stop_style="conditional", trailing_orders=False, spot_stop=("limit", "triggerPrice"),
              verify_hedge_mode=True, answer_has_state=False, position_side=("posSide", "long", "short"),
              candle_page=100,
              algo_client_field="algoClOrdId", algo_child="ordId", trades_order_key="ordId",
              trigger_listing={"spot": {"ordType": "trigger"}, "futures": {"ordType": "conditional"}},
              spot_order_params={"tgtCcy": "base_ccy"},
              margin_per_order=True, position_mode_query=True)

DIALECTS = {"binance": BINANCE, "binanceusdm": BINANCE, "bybit": BYBIT, "okx": OKX}


def dialect_for(exchange: Any) -> Dialect:
    """The dialect of a ccxt exchange object (by its ``id``; Binance's for one without its own)."""
    return DIALECTS.get(str(getattr(exchange, "id", "") or ""), BINANCE)


def trigger_direction(closes_long: bool, take_profit: bool) -> str:
    """ccxt's ``triggerDirection`` of a closing conditional order: a long's stop triggers on a fall
    and its take profit on a rise, a short's the other way round."""
    return "ascending" if closes_long == take_profit else "descending"
