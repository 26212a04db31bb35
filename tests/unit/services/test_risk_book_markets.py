"""Risk's book keeps spot and futures positions apart: fills of one symbol in two markets
make two positions (and two ledger rows), the per-symbol checks read the order's market,
and exposure and PnL count both."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from services.domain import MarketType, OrderStatus, OrderType, Side, TradingState
from services.risk.book import Book
from services.risk.checks import check_order
from services.risk.limits import RiskLimits
from services.risk.prices import StaticPrices

D = Decimal
NOW = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)
SPOT, FUTURES = MarketType.SPOT, MarketType.FUTURES
PRICES = StaticPrices({"BTCUSDT": D("50000")})
LIMITS = RiskLimits(allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None, max_quantity_per_order=None,
                    max_price=None, reference_prices={"BTCUSDT": D("50000")}, price_band=None,
                    max_position_notional=D("100000"), max_gross_exposure=D("1000000"), max_leverage=None,
                    daily_loss_limit=None, order_rate_limit=None)


def filled(book: Book, market: MarketType, side: Side, quantity: str, price: str, trade_id: str,
           commission: str = "0", asset: str | None = "USDT") -> None:
    book.fill(order_id=f"o-{trade_id}", account="acct-1", symbol="BTCUSDT", side=side, venue="aster",
              trade_id=trade_id, quantity=D(quantity), price=D(price), commission=D(commission), trade_time=NOW,
              final=True, market_type=market, commission_asset=asset)


def test_fills_in_spot_and_futures_make_two_positions_and_two_ledger_rows():
    book = Book(LIMITS, clock=lambda: NOW)
    filled(book, FUTURES, Side.BUY, "1", "50000", "f1", "20")
    filled(book, SPOT, Side.SELL, "0.4", "51000", "s1", "0.0004", asset="BTC")

    held = book.accounts["acct-1"].positions
    assert (held[FUTURES, "BTCUSDT"].quantity, held[SPOT, "BTCUSDT"].quantity) == (D("1"), D("-0.4"))
    assert held[SPOT, "BTCUSDT"].fees == (("BTC", D("0.0004")),)
    assert held[FUTURES, "BTCUSDT"].fees == (("USDT", D("20")),)
    entries, positions = book.drain()
    assert [(e["market_type"], e["commission_asset"]) for e in entries] == [(FUTURES, "USDT"), (SPOT, "BTC")]
    assert sorted((p.market_type.value, p.quantity) for p in positions) == [("FUTURES", D("1")), ("SPOT", D("-0.4"))]


def test_a_spot_sell_does_not_reduce_the_futures_position(make_order):
    book = Book(LIMITS, clock=lambda: NOW)
    filled(book, FUTURES, Side.BUY, "1.5", "50000", "f1")
    order = make_order(market_type=SPOT, side=Side.BUY, order_type=OrderType.MARKET, price=None,
                       quantity=D("1"))

    context = book.context(order, PRICES, NOW)

    assert context.position("BTCUSDT") == 0  # the order's market: spot, flat
    assert context.gross_exposure() == D("75000")  # every market
    # 1 BTC spot = 50,000 is within the per-position limit although futures already hold 1.5.
    assert [v.code for v in check_order(order, LIMITS, context)] == []
    futures_order = make_order(market_type=FUTURES, side=Side.BUY, order_type=OrderType.MARKET, price=None,
                               quantity=D("1"))
    assert [v.code for v in check_order(futures_order, LIMITS, book.context(futures_order, PRICES, NOW))] == [
        "MAX_POSITION_EXCEEDED"]


def test_reducing_reads_the_position_in_the_orders_market(make_order):
    book = Book(LIMITS, clock=lambda: NOW)
    book.set_trading({"global": TradingState.REDUCING})
    filled(book, FUTURES, Side.BUY, "1", "50000", "f1")
    spot_sell = make_order(market_type=SPOT, side=Side.SELL, order_type=OrderType.MARKET, price=None,
                           quantity=D("0.5"))
    futures_sell = make_order(market_type=FUTURES, side=Side.SELL, order_type=OrderType.MARKET, price=None,
                              quantity=D("0.5"))

    assert [v.code for v in check_order(spot_sell, LIMITS, book.context(spot_sell, PRICES, NOW))] == [
        "REDUCING_ONLY"]
    assert [v.code for v in check_order(futures_sell, LIMITS, book.context(futures_sell, PRICES, NOW))] == []


def test_the_daily_loss_counts_fees_in_the_quote_currency_only(make_order):
    """A fee charged in a fee token (BNB) has no USDT value here: it is listed by asset,
    left out of the net PnL, and so of the daily loss (as the ledger: fee_in_quote)."""
    limits = dataclasses.replace(LIMITS, daily_loss_limit=D("100"))
    book = Book(limits, clock=lambda: NOW)
    filled(book, FUTURES, Side.BUY, "1", "50000", "f1", "20")  # USDT
    filled(book, FUTURES, Side.BUY, "1", "50000", "f2", "500", asset="BNB")
    filled(book, SPOT, Side.BUY, "0.1", "50000", "s1", "0.0001", asset="BTC")  # a spot buy's base asset
    order = make_order(market_type=FUTURES, side=Side.BUY, order_type=OrderType.MARKET, price=None,
                       quantity=D("0.1"))

    context = book.context(order, PRICES, NOW)

    assert context.realised_today == D("-20")
    held = book.accounts["acct-1"].positions
    assert (held[FUTURES, "BTCUSDT"].commission, dict(held[FUTURES, "BTCUSDT"].fees)) == (
        D("20"), {"USDT": D("20"), "BNB": D("500")})
    assert held[SPOT, "BTCUSDT"].commission == 0
    assert "DAILY_LOSS_LIMIT" not in [v.code for v in check_order(order, limits, context)]
    filled(book, FUTURES, Side.SELL, "1", "49919", "f3", "1")  # realises -81, fee 1 USDT: -102 in all
    assert "DAILY_LOSS_LIMIT" in [v.code for v in check_order(order, limits, book.context(order, PRICES, NOW))]


def test_reducing_counts_only_the_working_orders_of_the_orders_market(make_order):
    """A futures sell working against the futures long cannot fill against the spot
    holding: a spot sell of all of it only reduces, and passes in REDUCING."""
    book = Book(LIMITS, clock=lambda: NOW)
    book.set_trading({"global": TradingState.REDUCING})
    filled(book, FUTURES, Side.BUY, "1", "50000", "f1")
    filled(book, SPOT, Side.BUY, "1", "50000", "s1")
    working = make_order(market_type=FUTURES, side=Side.SELL, order_type=OrderType.MARKET, price=None,
                         quantity=D("1"), order_time=NOW)
    working.transition(OrderStatus.APPROVED)
    book.record(working)  # approved, its token live: it may still fill
    spot_sell = make_order(market_type=SPOT, side=Side.SELL, order_type=OrderType.MARKET, price=None,
                           quantity=D("1"))
    futures_sell = make_order(market_type=FUTURES, side=Side.SELL, order_type=OrderType.MARKET, price=None,
                              quantity=D("0.5"))

    assert book.context(spot_sell, PRICES, NOW).working_same_side == 0
    assert [v.code for v in check_order(spot_sell, LIMITS, book.context(spot_sell, PRICES, NOW))] == []
    # In the futures market the working sell still counts: 0.5 more would flip the long.
    assert book.context(futures_sell, PRICES, NOW).working_same_side == D("1")
    assert [v.code for v in check_order(futures_sell, LIMITS, book.context(futures_sell, PRICES, NOW))] == [
        "REDUCING_ONLY"]
