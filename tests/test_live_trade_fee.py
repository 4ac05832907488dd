"""The one fee-sorting rule the broker and the trader share (mlcoord.live.trade_fee)."""

from mlcoord.live.trade_fee import fee_in_quote, order_fee, trade_list_fee

MARKET = {"base": "BTC", "quote": "USDT"}


def _trade(ts, amount, price, cost, currency):
    return {"id": str(ts), "timestamp": ts, "amount": amount, "price": price,
            "fee": {"cost": cost, "currency": currency}}


def test_a_base_fee_is_priced_at_the_trade_and_a_third_asset_kept_apart():
    listed = trade_list_fee([_trade(2, 1.0, 100.0, 0.001, "BTC"), _trade(1, 1.0, 90.0, 0.5, "USDT"),
                             _trade(3, 1.0, 95.0, 0.02, "BNB"), _trade(4, 1.0, 95.0, 0.3, None)], MARKET)
    assert listed.in_quote == 0.5 + 0.1 + 0.3
    assert dict(listed.other) == {"BNB": 0.02}
    assert listed.currencies == {"USDT", "BTC", "BNB"} and listed.amount == 4.0


def test_filled_counts_the_first_units_in_time_order_pro_rata():
    listed = trade_list_fee([_trade(2, 2.0, 100.0, 2.0, "USDT"), _trade(1, 1.0, 100.0, 1.0, "USDT"),
                             _trade(3, 1.0, 100.0, 5.0, "USDT")], MARKET, filled=2.0)
    assert listed.in_quote == 1.0 + 1.0 and listed.amount == 3.0


def test_fee_in_quote_cannot_price_a_third_asset():
    assert fee_in_quote(0.1, "BNB", 100.0, MARKET) is None
    assert fee_in_quote(0.1, "BTC", 100.0, MARKET) == 0.1 * 100.0


def test_an_order_charged_in_usdt_and_bnb_books_the_usdt_part_not_their_sum():
    """Before: 0.5 USDT + 0.02 BNB was booked as a fee of 0.52 BNB (neither currency's figure)."""
    mixed = trade_list_fee([_trade(1, 1.0, 100.0, 0.5, "USDT"), _trade(2, 1.0, 100.0, 0.02, "BNB")], MARKET)
    assert order_fee(mixed, MARKET) == (0.5, "USDT")
    only_bnb = trade_list_fee([_trade(1, 1.0, 100.0, 0.02, "BNB")], MARKET)
    assert order_fee(only_bnb, MARKET) == (0.02, "BNB")
    base = trade_list_fee([_trade(1, 1.0, 100.0, 0.001, "BTC"), _trade(2, 1.0, 100.0, 0.02, "BNB")], MARKET)
    assert order_fee(base, MARKET) == (0.1, "BTC")          # what a spot holding lacks is the base asset
