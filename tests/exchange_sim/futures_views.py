"""The JSON a USD-M futures account answers with (orders, algo orders, positions, account)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .markets import fmt
from .state import Order

ZERO = Decimal(0)


@dataclass
class Position:
    amt: Decimal = ZERO  # signed: LONG >= 0, SHORT <= 0, BOTH either
    entry: Decimal = ZERO
    isolated_margin: Decimal = ZERO
    update_time: int = 0


class FuturesViews:
    """Renders :class:`~exchange_sim.futures.FuturesAccount` state as Binance's ``/fapi`` JSON."""

    def order_json(self, o: Order) -> dict:
        return {"orderId": o.order_id, "symbol": o.symbol, "status": o.status,
                "clientOrderId": o.client_id, "price": fmt(o.price or 0), "avgPrice": fmt(o.avg_price),
                "origQty": fmt(o.qty), "executedQty": fmt(o.executed), "cumQty": fmt(o.executed),
                "cumQuote": fmt(o.cum_quote), "timeInForce": o.time_in_force, "type": o.type,
                "reduceOnly": o.reduce_only, "closePosition": o.close_position, "side": o.side,
                "positionSide": o.position_side, "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "origType": o.type, "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "time": o.time,
                "updateTime": o.update_time}

    def algo_json(self, o: Order) -> dict:
        out = {"algoId": o.order_id, "clientAlgoId": o.client_id, "algoType": "CONDITIONAL",
               "orderType": o.type, "symbol": o.symbol, "side": o.side,
               "positionSide": o.position_side, "timeInForce": o.time_in_force,
               "quantity": fmt(o.qty), "algoStatus": o.status,
               "triggerPrice": fmt(o.stop_price or 0), "price": fmt(o.price or 0),
               "icebergQuantity": None, "selfTradePreventionMode": "EXPIRE_MAKER",
               "workingType": "CONTRACT_PRICE", "priceMatch": "NONE",
               "closePosition": o.close_position, "priceProtect": False,
               "reduceOnly": o.reduce_only, "createTime": o.time, "updateTime": o.update_time,
               "triggerTime": o.update_time if o.triggered else 0, "goodTillDate": 0}
        if o.callback_rate is not None:
            out.update(callbackRate=str(o.callback_rate), activatePrice=fmt(o.activation_price or 0))
        if o.child_id is not None:
            child = self.orders.get(o.child_id)
            out.update(actualOrderId=str(o.child_id), executedQty=fmt(child.executed if child else 0),
                       avgPrice=fmt(child.avg_price if child else 0),
                       actualPrice=fmt(child.avg_price if child else 0))
        return out

    def position_rows(self, only_open: bool, symbol: str | None = None, v2: bool = False) -> list[dict]:
        st = self.state
        rows = []
        for m, spec in st.futures_markets.items():
            if symbol and m != symbol:
                continue
            for side in (("LONG", "SHORT") if self.dual else ("BOTH",)):
                pos = self.positions.get((m, side)) or Position()
                if only_open and not pos.amt:
                    continue
                mark = st.price(m)
                notional = pos.amt * mark
                im = abs(notional) / self.lev(m)
                row = {"symbol": m, "positionSide": side, "positionAmt": fmt(pos.amt, 3),
                       "entryPrice": fmt(pos.entry), "breakEvenPrice": fmt(pos.entry),
                       "markPrice": fmt(mark), "unRealizedProfit": fmt(self.upnl(m, pos)),
                       "liquidationPrice": fmt(self.liquidation_price(m, side)),
                       "isolatedMargin": fmt(pos.isolated_margin), "notional": fmt(notional),
                       "marginAsset": "USDT", "isolatedWallet": fmt(pos.isolated_margin),
                       "initialMargin": fmt(im), "maintMargin": fmt(abs(notional) * spec.maint_margin_ratio),
                       "positionInitialMargin": fmt(im), "openOrderInitialMargin": "0", "adl": 0,
                       "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time,
                       "leverage": str(self.lev(m)),
                       "marginType": self.margin_type.get(m, "CROSSED").lower().replace("crossed", "cross")}
                if v2:
                    row.update(isAutoAddMargin="false", maxNotionalValue="1000000000")
                rows.append(row)
        return rows

    def account_json(self) -> dict:
        upnl, pim, oim = self.total_upnl(), self.position_margin(), self.order_margin()
        maint = sum((abs(p.amt) * self.state.price(m) * self.state.futures_markets[m].maint_margin_ratio
                     for (m, _), p in self.positions.items()), ZERO)
        avail = self.wallet + upnl - pim - oim
        asset = {"asset": "USDT", "walletBalance": fmt(self.wallet), "unrealizedProfit": fmt(upnl),
                 "marginBalance": fmt(self.wallet + upnl), "maintMargin": fmt(maint),
                 "initialMargin": fmt(pim + oim), "positionInitialMargin": fmt(pim),
                 "openOrderInitialMargin": fmt(oim), "crossWalletBalance": fmt(self.wallet),
                 "crossUnPnl": fmt(upnl), "availableBalance": fmt(avail),
                 "maxWithdrawAmount": fmt(max(avail, ZERO)), "marginAvailable": True,
                 "updateTime": self.state.now_ms}
        return {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "totalInitialMargin": fmt(pim + oim), "totalMaintMargin": fmt(maint),
                "totalWalletBalance": fmt(self.wallet), "totalUnrealizedProfit": fmt(upnl),
                "totalMarginBalance": fmt(self.wallet + upnl), "totalPositionInitialMargin": fmt(pim),
                "totalOpenOrderInitialMargin": fmt(oim), "totalCrossWalletBalance": fmt(self.wallet),
                "totalCrossUnPnl": fmt(upnl), "availableBalance": fmt(avail),
                "maxWithdrawAmount": fmt(max(avail, ZERO)), "assets": [asset],
                "positions": self.position_rows(only_open=True)}

    def balance_json(self) -> list[dict]:
        a = self.account_json()["assets"][0]
        return [{"accountAlias": "sim", "asset": "USDT", "balance": a["walletBalance"],
                 "crossWalletBalance": a["crossWalletBalance"], "crossUnPnl": a["crossUnPnl"],
                 "availableBalance": a["availableBalance"], "maxWithdrawAmount": a["maxWithdrawAmount"],
                 "marginAvailable": True, "updateTime": a["updateTime"]}]
