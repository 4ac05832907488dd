"""One rule for sorting an exchange's fee into the quote asset vs another asset.

The broker books a fill's fee from its order answer or its trade list, and the trader totals a
finished plan's fees from its trade lists (:mod:`mlcoord.live.fees`). All three must agree: a
quote-asset fee counts as charged, a base-asset fee is priced at the trade's price, and a fee in a
third asset (e.g. BNB) cannot be priced, so it is kept apart in that asset. A fee without a
currency is taken to be in the quote asset. This module imports no other live module, so the
broker and the trader can both use it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import attrs
import structlog

from mlcoord.model.instruments import contract_size, in_units

log = structlog.get_logger("mlcoord.live.broker")


@attrs.frozen
class TradeListFee:
    """The fee of (the first units of) a trade list, sorted by the asset it was charged in."""

    in_quote: float                  # the quote- and base-asset fees, in the quote asset
    other: Mapping[str, float]       # the third-asset fees, as charged, by asset
    currencies: frozenset[str]       # every asset a counted trade was charged in
    amount: float                    # the quantity the counted trades cover


def fee_in_quote(cost: float, currency: str, price: float, market: Mapping[str, Any]) -> Optional[float]:
    """``cost`` in the quote asset (a base-asset fee at ``price``), or None for a third asset."""
    if currency == market["quote"]:
        return cost
    if currency == market["base"]:
        return cost * price
    return None


def trade_list_fee(trades: Sequence[Mapping[str, Any]], market: Mapping[str, Any],
                   filled: Optional[float] = None) -> TradeListFee:
    """The fee of ccxt ``trades`` in time order; with ``filled``, of only their first ``filled``
    units (a trade that crosses it counts pro rata: the rest fills a later booking)."""
    ordered = sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id") or "")))
    unit = contract_size(market)
    total, amount, other, currencies = 0.0, 0.0, dict[str, float](), set[str]()
    for t in ordered:
        qty = in_units(t.get("amount") or 0.0, unit)     # contracts on a contract market: coins here
        if filled is not None and amount >= filled * (1 - 1e-9):
            break
        share = min(1.0, (filled - amount) / qty) if filled is not None and qty > 0 else 1.0
        amount += qty
        fee = t.get("fee") or {}
        cost, currency = float(fee.get("cost") or 0.0) * share, str(fee.get("currency") or market["quote"])
        currencies.add(currency)
        priced = fee_in_quote(cost, currency, float(t.get("price") or 0.0), market)
        if priced is None:
            other[currency] = other.get(currency, 0.0) + cost
        else:
            total += priced
    return TradeListFee(total, other, frozenset(currencies), amount)


def order_fee(listed: TradeListFee, market: Mapping[str, Any]) -> tuple[float, str]:
    """One fee and the asset it is booked in, for a fill counted from a trade list: the quote-asset
    total (labelled with the base asset when any trade was charged in it: what a spot holding
    lacks), or, when every fee was charged in a third asset, that fee as charged. A list charged
    partly in the quote or base asset and partly in a third one books the priced part: adding BNB to
    USDT into one number would be neither (the third-asset part is warned about as unpriced)."""
    if listed.other and not listed.in_quote:
        currency = sorted(listed.other)[0]
        return sum(listed.other.values()), currency
    return listed.in_quote, market["base"] if market["base"] in listed.currencies else market["quote"]


def warn_unpriced(client_id: str, currency: str, cost: float) -> None:
    """The one warning for a fee booked in a third asset (its cost is kept in that asset)."""
    log.warning("fee_in_other_asset", client_id=client_id, currency=currency, fee=cost,
                note="recorded in that asset: this cannot price it in the quote asset")
