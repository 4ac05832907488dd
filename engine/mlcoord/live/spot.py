"""Spot accounts (``[exchange] market = "spot"``), a part of :class:`mlcoord.live.trader.LiveTrader`.

A spot account trades long plans only, as the backtest with ``market = "spot"`` does: the
pipeline never enters a short, and a SELL signal while long closes the position at market
(``sell_signal``). No leverage (``[backtest] leverage`` must be 1), no hedge mode; closing orders
are plain sells of the coins the plan holds. What differs from futures:

* the stop is an exchange order, ``STOP_LOSS_LIMIT`` (trigger at the stop, limit
  ``stop_limit_offset`` below it). Binance locks the coins for it, so the take profit cannot be a
  second exchange order: the bot monitors it (a closed bar whose high reaches it: the stop is
  cancelled and the coins sold at market, ``take_profit_monitored``; see
  :meth:`mlcoord.live.venue.ExchangeVenue.monitor_spot`). A stop limit that triggered
  but did not fill (the price gapped below its limit) is seen after the bar: a bar that closes
  below the stop while the plan still holds coins closes it at market (``stop_limit_not_filled``);
* before a closing sell of the whole holding the stop is cancelled (it locks the coins), the sale
  journaled first; before a sale of part of it the stop is resized to the rest (atomically where
  the symbol allows cancel-replace); a sell that fails or fills partly gets a new stop for what is
  left;
* the quantity held is what the fills bought less the fees Binance took in the base asset (as the
  fills report them), capped by the account's free + locked balance of that asset; a remainder
  below the market's minimum amount or notional counts as flat (dust stays in the account);
* the engine's cash is the quote balance plus the held coins at their entry cost, so its equity
  (cash plus unrealised PnL) is the account's quote balance plus the coins at the last close.

Not yet supported (clear errors): spot symbols that share a base asset or have different quote
assets.
"""

from __future__ import annotations

from typing import Optional, Sequence

import structlog

from mlcoord.live.broker import Broker, not_yet_supported
from mlcoord.live.plan_orders import CLOSE, EPS, Tally
from mlcoord.live.records import PlanRecord
from mlcoord.model import Order, OrderKind
from mlcoord.live.trader_parts import TraderParts

log = structlog.get_logger("mlcoord.live.spot")


class SpotAccount(TraderParts):
    """:class:`~mlcoord.live.trader.LiveTrader` on a spot account (uses its broker, store, history
    and engine; every method but :meth:`_closable` is called on spot only)."""

    def _release_stops(self, plan: PlanRecord, tally: Tally) -> Tally:
        """Spot: the stop locks the coins it would sell, so it is cancelled before a closing sell
        (what it filled meanwhile is read back by the cancel)."""
        live = [r for r in tally.orders if r.order.kind == OrderKind.STOP and not r.state.terminal]
        for r in live:
            self.broker.cancel(r)
        if live:
            log.info("spot_stop_released", plan=plan.plan_id, client_ids=[r.client_order_id for r in live])
        return self.tally(plan) if live else tally

    def _sell_after_release(self, plan: PlanRecord, tally: Tally) -> Tally:
        """Spot, closing the position: the stop released and the holding sold at market, the sale
        journaled before the stop is cancelled, so a store failing in between still sends it (the
        coins are never left with neither). Returns the tally after (the sale may have failed:
        the caller tries again and protects what is left)."""
        live = [r for r in tally.orders if r.order.kind == OrderKind.STOP and not r.state.terminal]
        qty = self._closable(plan.symbol, tally.net) if tally.net > EPS else 0.0
        if not live or qty <= 0:
            return self._release_stops(plan, tally)
        attempt = self._next_attempt(plan, CLOSE)
        order = Order(self.broker.client_id(plan.symbol, plan.decision_time, CLOSE, attempt), plan.symbol,
                      plan.side, OrderKind.MARKET, qty, None, self.last_time, reduce_only=True, tag=CLOSE)

        def release() -> float:
            after = self._release_stops(plan, tally)
            return self._closable(plan.symbol, after.net) if after.net > EPS else 0.0

        self._journal_then(plan, order, release)
        return self.tally(plan, refresh=True)

    def _closable(self, symbol: str, quantity: float) -> float:
        """``quantity`` rounded as a closing order carries it; 0.0 when it is dust (below the minimum
        amount, or on spot below the minimum notional at the last close): dust counts as flat."""
        qty = self.broker.amount(symbol, quantity)
        if self.spot and qty > 0:
            close = self._last_close(symbol)
            if close is not None and qty * close < self.broker.min_notional(symbol):
                return 0.0
        return qty

    def _last_close(self, symbol: str, default: Optional[float] = None) -> Optional[float]:
        history = self.history.get(symbol)
        return float(history.close[-1]) if history is not None and len(history) else default

    def _spot_held(self, plan: PlanRecord, records, entered: float, exited: float, refresh: bool) -> float:
        """What a spot plan really holds: its entry fills less the fees Binance took in the base
        asset (as the fills report them), capped by the account's free + locked balance of that
        asset (fees a fill did not report; coins sold outside the bot). The balance is fetched
        again on a refresh or when the plan's fills changed since the last fetch."""
        base = self.broker.base_asset(plan.symbol)
        fees = 0.0
        for r in records:
            if not r.order.reduce_only and r.filled_quantity > 0:
                fees += sum(f.fill.fee / f.fill.price for f in self.store.fills(r.client_order_id)
                            if f.fee_currency == base and f.fill.price > 0)
        seen = (entered, exited)
        if refresh or base not in self._balances or self._balance_seen.get(plan.plan_id) != seen:
            self._fetch_balances()
            self._balance_seen[plan.plan_id] = seen
        return max(min(entered - exited - fees, self._balances.get(base, 0.0)), 0.0)

    def _fetch_balances(self) -> dict[str, float]:
        self._fetch_balance()
        return self._balances

    def _fetch_balance(self) -> dict:
        balance = self.broker.call(self.broker.exchange.fetch_balance, "fetch_balance")
        self._balances = {a: float(v or 0.0) for a, v in (balance.get("total") or {}).items()}
        return balance

    def _free(self, symbol: str) -> float:
        """The account's free balance of ``symbol``'s base asset (what no order locks), read now:
        whether a new stop can be placed before the old one, which locks what it covers, goes."""
        free = self._fetch_balance().get("free") or {}
        return float(free.get(self.broker.base_asset(symbol)) or 0.0)

    def _spot_cash(self) -> None:
        """Spot: the engine keeps the backtest's margin-style books (equity = cash + unrealised PnL),
        so its cash is the quote balance plus the held coins at their entry cost; the equity it
        marks is then the quote balance plus the coins at the last close: the real account."""
        if not self._balances:
            self._fetch_balances()
        ledger = self.engine.ledger
        ledger.set_wallet(self._balances.get(self.quote, 0.0) + sum(pos.quantity * pos.entry_price
                                                                    for pos in ledger.positions.values()))

    def _sync_spot_wallet(self, reset_peak: bool) -> None:
        """:meth:`sync_wallet` on spot: the quote balance and the coins the active plans hold."""
        self._fetch_balances()
        held = []
        for plan in self.store.active_plans():
            tally = self.tally(plan)
            if tally.net > EPS:
                held.append((plan.symbol, tally.net, tally.average))
        ledger = self.engine.ledger
        quote = self._balances.get(self.quote, 0.0)
        ledger.set_wallet(quote + sum(q * average for _, q, average in held), reset_peak=reset_peak,
                          equity=quote + sum(q * (self._last_close(s) or average) for s, q, average in held))


def for_market(settings):
    """``settings`` if the account can trade them: a spot account cannot borrow, so leverage other
    than 1 there is refused (the market itself is one setting, ``[exchange] market``)."""
    if settings.exchange.market == "spot" and settings.backtest.leverage != 1:
        from mlcoord.errors import ConfigError

        raise ConfigError(f"[backtest] leverage = {settings.backtest.leverage:g} but [exchange] market = \"spot\": "
                          "a spot account cannot borrow; set leverage = 1 to trade spot live")
    return settings


def spot_quote(broker: Broker, symbols: Sequence[str]) -> str:
    """The quote asset a spot session's cash is in. Symbols with different quotes, or sharing a
    base asset (one balance, two plans), are refused: the held-quantity cap could not tell them
    apart."""
    quotes: set[str] = set()
    bases: dict[str, str] = {}
    for s in symbols:
        market = broker.exchange.market(broker.symbol(s))
        quotes.add(market["quote"])
        if market["base"] in bases:
            raise not_yet_supported(f"spot symbols sharing a base asset ({bases[market['base']]} and {s})")
        bases[market["base"]] = s
    if len(quotes) > 1:
        raise not_yet_supported(f"spot symbols with different quote assets ({', '.join(sorted(quotes))})")
    return quotes.pop() if quotes else "USDT"
